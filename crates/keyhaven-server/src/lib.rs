//! Keyhaven's HTTP layer: routing, auth header parsing, JSON in and out in Aiven's shapes,
//! error bodies and status codes. It never touches a valkey-server: every handler calls
//! the application layer ([`keyhaven_control::App`]) and renders what it returns.
//!
//! `router(app)` builds the whole API, so most HTTP tests need no socket.

mod error;
mod extract;
pub mod openapi;
mod routes;
mod view;

use axum::Router;
use keyhaven_control::App;
use std::sync::Arc;

pub use error::HttpError;

/// The complete HTTP API.
pub fn router(app: Arc<App>) -> Router {
    routes::router().with_state(app)
}

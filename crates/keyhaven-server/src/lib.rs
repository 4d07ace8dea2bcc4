//! Keyhaven's HTTP layer: routing, auth header parsing, JSON in and out in Aiven's shapes,
//! error bodies and status codes. It never touches a valkey-server: every handler calls
//! the application layer ([`keyhaven_control::App`]) and renders what it returns.
//!
//! It also serves the web console at `/console` (`console.rs`): files embedded in the
//! binary, a client of this same API.
//!
//! `router(app)` builds the whole API, so most HTTP tests need no socket; served over
//! [`ApiListener`], even hyper's own refusals (414, 431, 400) keep Aiven's error shape.

mod console;
mod error;
mod extract;
mod forward;
mod listener;
mod metrics;
pub mod openapi;
mod routes;
mod view;

use axum::Router;
use keyhaven_control::App;
use std::sync::Arc;

pub use error::HttpError;
pub use listener::ApiListener;

/// The complete HTTP API, and the web console at `/console` (a client of that API,
/// served from assets embedded in the binary).
pub fn router(app: Arc<App>) -> Router {
    routes::router().merge(console::router()).with_state(app)
}

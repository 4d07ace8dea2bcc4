//! The wire types of Keyhaven's `/v1` API, shaped like Aiven's so that the real `avn` CLI
//! and the curl commands of Aiven's docs work unchanged. Field names and wrapper keys
//! follow Aiven's OpenAPI document; where Keyhaven adds information (replication health)
//! it does so in clearly named extra fields, never by changing an Aiven field.
//!
//! These types derive `utoipa::ToSchema`: the checked-in OpenAPI document is generated from
//! them, so the document and the code cannot disagree.

pub mod error;
pub mod identity;
pub mod project;
pub mod service;

pub use error::{ApiError, ErrorBody, ErrorItem};

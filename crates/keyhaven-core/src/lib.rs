//! Keyhaven's pure domain rules: what a valid name, plan, cloud and service configuration
//! are, and the limits every layer agrees on. Nothing here does I/O, so every rule can be
//! unit-tested on its own and reused by the API, the control plane and the CLI alike.

pub mod cloud;
pub mod health;
pub mod limits;
pub mod name;
pub mod plan;
pub mod role;
pub mod secret;
pub mod time;
pub mod user_config;
pub mod valkey_version;

pub use cloud::Cloud;
pub use health::NodeHealth;
pub use name::{NameError, validate_name};
pub use plan::Plan;
pub use role::{Role, ServiceState};
pub use secret::PrivateKeyPem;
pub use user_config::{UserConfig, UserConfigError};

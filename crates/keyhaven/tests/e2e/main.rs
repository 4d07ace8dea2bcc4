//! End-to-end tests: the real `keyhaven` binary, real SQLite, real valkey-server processes,
//! real clients (HTTP, a Valkey client crate, curl, and the real `avn`).

mod harness;

mod avn;
mod cli;
mod console;
#[cfg(feature = "failpoints")]
mod crashes;
mod faults;
mod identity;
mod lifecycle;
mod monitoring;
mod observe;
mod ops;
mod promotion;
mod replicas;
mod security;
mod service_api;
mod startup;
mod tenant;
mod update;

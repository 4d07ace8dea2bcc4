//! End-to-end tests: the real `keyhaven` binary, real SQLite and PostgreSQL, real valkey-server processes,
//! real clients (HTTP, a Valkey client crate, curl, and the real `avn`).

mod harness;

mod avn;
mod cli;
mod console;
#[cfg(feature = "failpoints")]
mod crashes;
mod endpoint;
mod endpoints;
mod faults;
mod identity;
mod lifecycle;
mod monitoring;
mod multihost;
mod observe;
mod on_postgres;
mod ops;
mod pg;
mod project_ca;
mod promotion;
mod replicas;
mod security;
mod service_api;
mod startup;
mod tenant;
mod update;

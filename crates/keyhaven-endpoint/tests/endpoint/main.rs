//! The endpoint's integration tests: `run()` in this process on a temporary directory, in
//! front of real valkey-servers, reached by real TCP and TLS clients.

mod harness;
mod reader;
mod reload;
mod service;

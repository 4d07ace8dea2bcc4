//! Crash points for fault tests. Built with the `failpoints` feature, the process kills
//! itself with SIGKILL at the point named by `KEYHAVEN_FAILPOINT`, exactly as `kill -9` or
//! a power cut would: no destructor runs, nothing is flushed. Without the feature every
//! call compiles to nothing.
//!
//! Points: `service_create.committed`, `reconciler.node_started`,
//! `promotion.intent_recorded`, `promotion.staged`, `promotion.writes_paused`,
//! `promotion.detached`, `promotion.node_updated`.

#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    if std::env::var("KEYHAVEN_FAILPOINT").as_deref() == Ok(name) {
        eprintln!("failpoint {name}: killing the process");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}

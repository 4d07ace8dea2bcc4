//! Crash points for fault tests. Built with the `failpoints` feature, the process kills
//! itself with SIGKILL at the point named by `KEYHAVEN_FAILPOINT`, exactly as `kill -9` or
//! a power cut would: no destructor runs, nothing is flushed. Without the feature every
//! call compiles to nothing.
//!
//! Crash points: `service_create.committed`, `reconciler.node_started`,
//! `promotion.intent_recorded`, `promotion.staged`, `promotion.writes_paused`,
//! `promotion.detached`, `promotion.node_updated`.
//!
//! Fault points ([`active`]) make Keyhaven itself cause a fault at one exact moment that a
//! test could not hit from outside: `promotion.replica_stalls` cuts the replica off its
//! primary right after the promotion checked that it is linked, so the catch-up cannot
//! succeed and the `replica_behind` path runs; `promotion.detach_unconfirmed` takes the
//! replica's answer to `REPLICAOF NO ONE` for lost (as a timeout would), so the request
//! answers 202 and the roll-forward finishes the promotion; `reconciler.stalls` stops the
//! reconciler after its first activation (as a hung node call would), so `/readyz` turns
//! unready.

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

/// Whether the fault point `name` is switched on (`KEYHAVEN_FAILPOINT=name`).
#[cfg(feature = "failpoints")]
pub fn active(name: &str) -> bool {
    std::env::var("KEYHAVEN_FAILPOINT").as_deref() == Ok(name)
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn active(_name: &str) -> bool {
    false
}

//! Figures about this Keyhaven process itself (its reconciler), for `/metrics`, where only
//! admin tokens see them. In memory: they start from zero at each start.

use crate::App;
use crate::heartbeat::Delays;
use std::time::Duration;

/// The reconciler's activations so far.
#[derive(Debug, Clone, Default)]
pub struct ReconcilerStats {
    pub activations: u64,
    /// Activations whose report listed at least one error.
    pub activations_with_errors: u64,
    /// Errors listed, summed over activations (one per node that failed, per activation).
    pub errors: u64,
    /// How long each activation took.
    pub durations: Delays,
}

impl App {
    pub(crate) fn reconciler_activation(&self, took: Duration, errors: usize) {
        let mut s = self
            .reconciler_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        s.activations += 1;
        s.activations_with_errors += (errors > 0) as u64;
        s.errors += errors as u64;
        s.durations.observe(took.as_secs_f64());
    }

    pub fn reconciler_stats(&self) -> ReconcilerStats {
        self.reconciler_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

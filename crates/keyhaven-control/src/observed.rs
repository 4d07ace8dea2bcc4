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

/// Timings of the promotions of one project answered by this process.
#[derive(Debug, Clone, Default)]
pub struct PromotionTimings {
    /// How long writes on the primary were paused (promotions whose primary answered).
    pub write_pause: Delays,
    /// How long the DELETE took, from the handler's start to its answer (every outcome).
    pub request: Delays,
}

impl App {
    /// Records a promotion request: its time, and the write pause when there was one.
    pub fn promotion_timed(&self, project: &str, request: Duration, write_pause: Option<Duration>) {
        let mut all = self
            .promotion_timings
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let t = all.entry(project.to_string()).or_default();
        t.request.observe(request.as_secs_f64());
        if let Some(p) = write_pause {
            t.write_pause.observe(p.as_secs_f64());
        }
    }

    pub fn promotion_timings(&self) -> Vec<(String, PromotionTimings)> {
        self.promotion_timings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

//! Readiness (`GET /readyz`): the store answers and takes writes, and the reconciler
//! finished an activation within [`RECONCILER_STALE`]. Liveness (`/healthz`) is only "the
//! process answers".

use crate::App;
use crate::reconciler::IDLE_PERIOD;
use keyhaven_core::time::now_micros;
use std::time::{Duration, Instant};

/// How long after its last activation the reconciler counts as stalled: three idle
/// periods (it runs at least once per idle period, faster while something is busy).
pub const RECONCILER_STALE: Duration = Duration::from_secs(3 * IDLE_PERIOD.as_secs());

impl App {
    /// Records that the reconciler finished an activation.
    pub(crate) fn reconciler_ran(&self) {
        *self.reconciled_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// `Ok` when this server can do its work, else why not (one sentence an operator can
    /// act on).
    pub async fn readiness(&self) -> Result<(), String> {
        if self.is_fenced() {
            return Err(format!(
                "another Keyhaven took cloud '{}' over; this instance acts on no node and should be stopped",
                self.my_cloud()
            ));
        }
        self.store
            .probe_write(now_micros())
            .await
            .map_err(|e| format!("the store cannot be written: {e}"))?;
        let last = *self.reconciled_at.lock().unwrap_or_else(|p| p.into_inner());
        match last {
            None => Err("the reconciler has not finished its first activation yet".into()),
            Some(at) if at.elapsed() > RECONCILER_STALE => Err(format!(
                "the reconciler last finished an activation {:.1} s ago (it runs at least every {} s)",
                at.elapsed().as_secs_f64(),
                IDLE_PERIOD.as_secs()
            )),
            Some(_) => Ok(()),
        }
    }
}

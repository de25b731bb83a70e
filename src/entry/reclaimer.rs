//! The background reclaimer thread: keeps free frames between the watermarks, reaps killed
//! arenas, and runs the periodic pressure and low-swap checks.

use crate::engine::Core;
use crate::engine::reclaim::BACKGROUND_BATCH;
use crate::util::panic_text;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub(crate) fn reclaimer_loop(core: &Core) {
    // Wake often enough to notice pressure within a fraction of its window.
    let tick = [core.cfg.pressure_kill, core.cfg.pressure_warn]
        .iter()
        .flatten()
        .map(|t| t.window / 8)
        .min()
        .unwrap_or(Duration::from_millis(250))
        .clamp(Duration::from_millis(2), Duration::from_millis(250));
    while !core.health.shutdown.load(Ordering::Acquire) && !core.is_failed() {
        // A panic must not leave the runtime half-working: it stops, and says so (see `fail`).
        let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| core.reclaim_round(tick)));
        // What in-thread faults logged meanwhile (they queue their lines: see `engine::logq`).
        crate::engine::logq::flush();
        if let Err(p) = round {
            core.fail(format!("the reclaimer panicked: {}", panic_text(&p)));
            // Threads parked on pages the panic left evicting.
            core.release_parked();
        }
    }
}

impl Core {
    /// One round of the reclaimer: reap, housekeeping, then evict up to the high watermark.
    fn reclaim_round(&self, tick: Duration) {
        let mut st = self.lock();
        st = self.reap_some(st);
        self.housekeeping(&mut st);
        if st.frames.free() >= self.cfg.low {
            drop(self.wait(st, &self.signals.reclaim, tick));
            return;
        }
        while st.frames.free() < self.cfg.high && !self.health.shutdown.load(Ordering::Acquire) {
            let want = (self.cfg.high - st.frames.free()).min(BACKGROUND_BATCH);
            let (g, freed) = self.escalate(st, want);
            st = g;
            if freed == 0 {
                // Nothing evictable now; faults will escalate if it stays so.
                drop(self.wait(st, &self.signals.reclaim, Duration::from_millis(10)));
                return;
            }
        }
    }
}

//! Events the runtime publishes on its channel, and the OOM kill report.

use std::fmt;
use std::time::Duration;

/// Something the runtime wants its user to know. Read them from [`Runtime::events`](crate::Runtime::events).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// An arena was killed.
    Killed(OomReport),
    /// A write to swap failed; swap is treated as full from now on (dirty pages stay in memory).
    SwapFailed {
        /// The error.
        error: String,
    },
}

/// Why an arena was killed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KillTrigger {
    /// A fault needed a frame, none was free, nothing could be reclaimed and swap was full.
    Exhaustion {
        /// The arena whose fault could not be served.
        faulting_arena: String,
    },
    /// [`Arena::kill`](crate::Arena::kill).
    Manual,
}

/// What a kill did, kernel-report style.
#[derive(Debug, Clone)]
pub struct OomReport {
    /// The victim.
    pub arena: String,
    /// The victim's id.
    pub arena_id: u64,
    /// What triggered the kill.
    pub trigger: KillTrigger,
    /// Frames freed at once (pages in flight are freed when their I/O ends).
    pub frames_freed: u64,
    /// Swap slots freed.
    pub slots_freed: u64,
    /// The frame budget.
    pub budget_frames: u64,
    /// Frames in use before the kill.
    pub frames_in_use_before: u64,
    /// Swap slots in use before the kill.
    pub swap_used_before: u64,
    /// Swap capacity in slots.
    pub swap_slots: u64,
    /// Time from the decision to the victim's frames being free.
    pub elapsed: Duration,
}

impl fmt::Display for OomReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let trig = match &self.trigger {
            KillTrigger::Exhaustion { faulting_arena } => {
                format!(
                    "out of memory: fault in '{faulting_arena}', no free frame, nothing reclaimable, swap full"
                )
            }
            KillTrigger::Manual => "killed on request".to_string(),
        };
        write!(
            f,
            "pagewarden: {trig}; frames {}/{} in use, swap {}/{} slots; killed arena '{}' (id {}): \
             freed {} frames and {} swap slots in {:?}",
            self.frames_in_use_before,
            self.budget_frames,
            self.swap_used_before,
            self.swap_slots,
            self.arena,
            self.arena_id,
            self.frames_freed,
            self.slots_freed,
            self.elapsed
        )
    }
}

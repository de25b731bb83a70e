//! When memory runs out: the arena OOM profile, victim policies, the report, and pressure
//! (stall) accounting. The kill itself is the engine's (`engine::kill`).
//!
//! The runtime calls the OOM killer in two situations:
//! * **exhaustion** — a fault needs a frame, none is free, and reclaim can make no progress (swap
//!   is full, the remaining pages are pinned or in flight);
//! * **pressure** (opt-in, [`RuntimeBuilder::pressure_kill`](crate::RuntimeBuilder::pressure_kill))
//!   — faults kept threads stalled for more than a share of a short window: thrashing is an
//!   outage too, and a kill relieves it in milliseconds.
//!
//! It builds a candidate table of every live arena (what each holds, what killing it would really
//! free, its profile), hands the killable ones to the [`VictimPolicy`], kills the chosen arenas
//! (or, in dry-run mode, only reports them) and publishes an [`OomReport`].

pub(crate) mod policy;
pub(crate) mod pressure;
pub(crate) mod report;

use policy::{Impact, OomHints};
use std::time::Instant;

/// An arena's OOM profile (kept under the runtime's state lock).
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    pub(crate) adj: i16,
    pub(crate) impact: Impact,
    pub(crate) hints: OomHints,
    pub(crate) prefer: bool,
    pub(crate) avoid: bool,
    pub(crate) created: Instant,
}

/// A policy's name; user code, so a panic in it gives a placeholder rather than unwinding.
pub(crate) fn policy_name(p: &dyn policy::VictimPolicy) -> String {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.name().to_string()))
        .unwrap_or_else(|_| "(a policy whose name() panicked)".into())
}

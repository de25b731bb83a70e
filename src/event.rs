//! Events the runtime publishes on its channel.

use crate::oom::pressure::Pressure;
use crate::oom::report::OomReport;
use std::time::Duration;

/// Something the runtime wants its user to know. Read them from [`Runtime::events`](crate::Runtime::events).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The OOM killer killed one or more arenas.
    Killed(OomReport),
    /// Dry-run mode: the OOM killer chose victims but killed nothing.
    WouldKill(OomReport),
    /// The OOM killer found nothing it may kill (every arena exempt): the fault that needed memory
    /// failed (`Error::OutOfMemory` from a safe accessor, SIGBUS for raw access).
    OomUnresolved(OomReport),
    /// Threads spent more than the warning share of a window stalled on faults.
    Pressure {
        /// Share of the window (0..=1) with at least one thread stalled.
        stalled_share: f64,
        /// The window.
        window: Duration,
        /// The runtime's pressure figures.
        pressure: Pressure,
    },
    /// Free swap fell below a tenth of capacity (published again after it recovers to a fifth),
    /// or the disk holding the swap file filled up before the file reached its capacity (then
    /// [`Stats::swap_usable_slots`](crate::Stats::swap_usable_slots) shows how far it got).
    SwapLow {
        /// Free slots.
        free_slots: u64,
        /// Capacity in slots.
        capacity: u64,
    },
    /// A page's swap copy could not be read back intact (an I/O error or a checksum mismatch):
    /// the page is poisoned — safe accessors get `Error::Corrupted`, raw access SIGBUS — rather
    /// than returned with wrong contents.
    PageLost {
        /// The arena.
        arena: String,
        /// Offset of the page in its region.
        offset: usize,
    },
    /// A write to swap failed; swap is treated as full from now on (dirty pages stay in memory).
    SwapFailed {
        /// The error.
        error: String,
    },
}

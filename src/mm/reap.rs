//! The OOM reaper's queue: runs of a killed arena's pages whose frames are still to be
//! discarded. They count as in use until the reaper has discarded them.

use crate::sys::mem::Mapping;
use std::collections::VecDeque;
use std::sync::Arc;

/// Runs of (mapping, first page, pages) waiting for the reaper, and the frames they hold.
#[derive(Default)]
pub(crate) struct ReapQueue {
    runs: VecDeque<(Arc<Mapping>, u64, u64)>,
    /// The pages of every run: always the sum of their lengths.
    frames: usize,
}

impl ReapQueue {
    /// Queues pages `first..end` of `map`.
    pub(crate) fn push(&mut self, map: &Arc<Mapping>, first: u64, end: u64) {
        debug_assert!(first < end);
        self.runs.push_back((map.clone(), first, end - first));
        self.frames += super::idx(end - first);
    }

    /// Takes up to `max` pages from the front of the queue: (mapping, first page, pages). The
    /// frames stay counted until [`reaped`](Self::reaped).
    pub(crate) fn take(&mut self, max: u64) -> Option<(Arc<Mapping>, u64, u64)> {
        let (map, first, pages) = self.runs.pop_front()?;
        let n = pages.min(max);
        if n < pages {
            self.runs.push_front((map.clone(), first + n, pages - n));
        }
        Some((map, first, n))
    }

    /// `n` pages taken were discarded.
    pub(crate) fn reaped(&mut self, n: u64) {
        debug_assert!(self.frames >= super::idx(n));
        self.frames -= super::idx(n);
    }

    /// Frames queued or being discarded.
    pub(crate) fn frames(&self) -> usize {
        self.frames
    }
}

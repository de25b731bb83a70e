//! Sequential fault-around: when faults walk a region in order, install the next pages with the
//! same ioctl (and read their swap slots with the same I/O).
//!
//! The window doubles on every fault that lands exactly where the previous window ended — the
//! stream consumed what was installed ahead — up to the configured maximum, and falls back to one
//! page on any other fault. Pages installed ahead and then reached by the stream count as hits;
//! pages installed ahead of a stream that broke off count as misses.

/// Per-region stream state.
#[derive(Debug, Default, Clone)]
pub(crate) struct Stream {
    /// The page after the last installed window.
    next: u64,
    window: u32,
    /// Pages installed ahead in the last window and not yet confirmed.
    ahead: u32,
}

/// What the detector concluded for one fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Pages to try to install, starting at the faulting page.
    pub(crate) window: u32,
    /// Pages of the previous window the stream has now consumed.
    pub(crate) hits: u32,
    /// Pages of the previous window the stream abandoned.
    pub(crate) misses: u32,
}

impl Stream {
    pub(crate) fn on_fault(&mut self, page: u64, max: u32) -> Decision {
        let max = max.max(1);
        if page == self.next && self.window > 0 {
            let hits = self.ahead;
            self.window = (self.window * 2).min(max);
            Decision { window: self.window, hits, misses: 0 }
        } else {
            let misses = self.ahead;
            self.window = 1;
            Decision { window: 1, hits: 0, misses }
        }
    }

    /// Records what was actually installed for the fault at `page` (`n` pages including it).
    pub(crate) fn installed(&mut self, page: u64, n: u32) {
        self.next = page + u64::from(n.max(1));
        self.ahead = n.saturating_sub(1);
        if n < self.window {
            // Frames or a resident neighbour cut the window short: grow from what worked.
            self.window = n.max(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_on_sequence_and_resets_on_jump() {
        let mut s = Stream::default();
        let mut p = 100;
        let mut windows = Vec::new();
        for _ in 0..8 {
            let d = s.on_fault(p, 16);
            windows.push(d.window);
            s.installed(p, d.window);
            p += u64::from(d.window);
        }
        assert_eq!(windows, vec![1, 2, 4, 8, 16, 16, 16, 16]);
        let d = s.on_fault(5, 16);
        assert_eq!(d, Decision { window: 1, hits: 0, misses: 15 });
        s.installed(5, 1);
        let d = s.on_fault(6, 16);
        assert_eq!(d.window, 2);
        s.installed(6, 1);
        assert_eq!(s.on_fault(7, 16).window, 2);
    }
}

//! Sequential fault-around: when faults walk a region in order, install the next pages with the
//! same ioctl (and read their swap slots with the same I/O).
//!
//! A region follows up to [`STREAMS`] sequential streams at once (threads scanning their own
//! slices of one region, or one thread walking two arrays), each with its own window, as the
//! kernel keeps one `file_ra_state` per open file rather than per inode. A fault that lands
//! where one stream's last window ended continues that stream: its window doubles, up to the
//! configured maximum. "Where it ended" includes the resident pages right after the window (a
//! scan over data that is partly in memory, as after random writes, faults only on the gaps and
//! must not lose its window at each resident page). Any other fault starts a stream of one page in the slot used least
//! recently, so a random fault costs one compare per slot and reads nothing ahead, and interleaved
//! streams no longer reset each other. Pages installed ahead and then reached by their stream
//! count as hits; pages installed ahead of a stream that broke off (or was pushed out of its slot)
//! count as misses.

/// Streams followed per region.
pub(crate) const STREAMS: usize = 8;

/// One stream's state.
#[derive(Debug, Default, Clone, Copy)]
struct One {
    /// The page after the last installed window (0 with `window` 0: an empty slot).
    next: u64,
    /// The last page where a fault still continues the stream: `next` plus the resident pages
    /// that followed the window when it was installed.
    reach: u64,
    /// The faulting page of the window being installed (see [`Stream::installed`]).
    start: u64,
    window: u32,
    /// Pages installed ahead in the last window and not yet confirmed.
    ahead: u32,
    /// When the stream was last used, in faults of this region (for replacement).
    used: u32,
}

/// Per-region readahead state: the streams it follows.
#[derive(Debug, Default, Clone)]
pub(crate) struct Stream {
    slots: [One; STREAMS],
    /// Faults seen, as a clock for `One::used`.
    clock: u32,
}

/// What the detector concluded for one fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Pages to try to install, starting at the faulting page.
    pub(crate) window: u32,
    /// Pages of the stream's previous window it has now consumed.
    pub(crate) hits: u32,
    /// Pages read ahead for a stream whose slot this fault took over (never reached).
    pub(crate) misses: u32,
}

impl Stream {
    pub(crate) fn on_fault(&mut self, page: u64, max: u32) -> Decision {
        let max = max.max(1);
        self.clock = self.clock.wrapping_add(1);
        let now = self.clock;
        if let Some(s) = self.slots.iter_mut().find(|s| s.window > 0 && s.next <= page && page <= s.reach) {
            let hits = s.ahead;
            s.window = (s.window * 2).min(max);
            s.start = page;
            s.used = now;
            return Decision { window: s.window, hits, misses: 0 };
        }
        // A new stream, in the slot used least recently (empty slots first).
        let s = self
            .slots
            .iter_mut()
            .min_by_key(|s| if s.window == 0 { 0 } else { 1 + u64::from(u32::MAX - now.wrapping_sub(s.used)) })
            .expect("STREAMS > 0");
        let misses = s.ahead;
        *s = One { next: page + 1, reach: page + 1, start: page, window: 1, ahead: 0, used: now };
        Decision { window: 1, hits: 0, misses }
    }

    /// Records what was actually installed for the fault at `page`: `n` pages including it,
    /// followed by `resident` pages already in memory (or on their way in).
    pub(crate) fn installed(&mut self, page: u64, n: u32, resident: u32) {
        // The stream this fault belongs to, unless another fault took its slot meanwhile.
        let Some(s) = self.slots.iter_mut().find(|s| s.window > 0 && s.start == page) else { return };
        s.next = page + u64::from(n.max(1));
        s.reach = s.next + u64::from(resident);
        s.ahead = n.saturating_sub(1);
        if n < s.window && resident == 0 {
            // Frames (or a page that cannot be read ahead) cut the window short: grow from what
            // worked. A window that stopped at a resident page was not too large.
            s.window = n.max(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks a stream from `p` for `faults` faults, installing each window whole.
    fn walk(s: &mut Stream, p: &mut u64, faults: usize, max: u32) -> Vec<u32> {
        (0..faults)
            .map(|_| {
                let d = s.on_fault(*p, max);
                s.installed(*p, d.window, 0);
                *p += u64::from(d.window);
                d.window
            })
            .collect()
    }

    #[test]
    fn grows_on_sequence_and_a_jump_starts_a_new_stream() {
        let mut s = Stream::default();
        let mut p = 100;
        assert_eq!(walk(&mut s, &mut p, 8, 16), vec![1, 2, 4, 8, 16, 16, 16, 16]);
        // A jump: a new stream of one page; the old one keeps its window.
        let d = s.on_fault(5, 16);
        assert_eq!(d, Decision { window: 1, hits: 0, misses: 0 });
        s.installed(5, 1, 0);
        assert_eq!(s.on_fault(6, 16).window, 2);
        s.installed(6, 1, 0);
        // Cut short to one page: grows from what worked.
        assert_eq!(s.on_fault(7, 16).window, 2);
        s.installed(7, 2, 0);
        assert_eq!(walk(&mut s, &mut p, 1, 16), vec![16], "the first stream lost its window");
    }

    #[test]
    fn interleaved_streams_keep_their_windows() {
        let mut s = Stream::default();
        let mut at: Vec<u64> = (0..4).map(|i| i * 100_000).collect();
        let mut last = vec![0; 4];
        for _ in 0..10 {
            for (i, p) in at.iter_mut().enumerate() {
                last[i] = walk(&mut s, p, 1, 64)[0];
            }
        }
        assert_eq!(last, vec![64; 4], "each of four interleaved streams reaches the full window");
    }

    #[test]
    fn random_faults_read_nothing_ahead_and_push_out_the_oldest_stream() {
        let mut s = Stream::default();
        let mut p = 0;
        walk(&mut s, &mut p, 6, 32);
        let mut x: u64 = 12345;
        for _ in 0..1000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let page = 1_000_000 + (x >> 33) % 1_000_000;
            let d = s.on_fault(page, 32);
            assert_eq!(d.window, 1, "a random fault read ahead");
            s.installed(page, 1, 0);
        }
        // The old stream was pushed out by newer faults: its next fault starts afresh, and the
        // pages it had read ahead were counted as misses when its slot was taken.
        assert_eq!(s.on_fault(p, 32).window, 1);
    }

    #[test]
    fn a_stream_in_use_is_not_pushed_out_by_random_faults_between_its_faults() {
        let mut s = Stream::default();
        let mut p = 0;
        let mut x: u64 = 99;
        let mut windows = Vec::new();
        for _ in 0..12 {
            windows.push(walk(&mut s, &mut p, 1, 64)[0]);
            // Fewer random faults between two of its faults than there are slots.
            for _ in 0..STREAMS - 2 {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let page = 10_000_000 + (x >> 33) % 1_000_000;
                let d = s.on_fault(page, 64);
                s.installed(page, d.window, 0);
            }
        }
        assert_eq!(*windows.last().unwrap(), 64, "{windows:?}");
    }

    #[test]
    fn a_scan_keeps_its_window_across_resident_pages() {
        let mut s = Stream::default();
        let mut p = 0;
        walk(&mut s, &mut p, 5, 64);
        // The window of 32 installs 20 pages, then stops at 12 resident ones: the scan's next
        // fault is after them, and the window is not cut.
        let d = s.on_fault(p, 64);
        assert_eq!(d.window, 32);
        s.installed(p, 20, 12);
        let d = s.on_fault(p + 32, 64);
        assert_eq!((d.window, d.hits), (64, 19), "the stream went on past the resident pages");
        s.installed(p + 32, 64, 0);
        // Past the resident stretch (a page of it was evicted meanwhile and faults later): a
        // fault beyond the reach is not the stream.
        assert_eq!(s.on_fault(p + 32 + 64 + 1, 64).window, 1);
    }
}

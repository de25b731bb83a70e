//! Page I/O in flight: what reclaim may still wait for before it escalates, and what the
//! bookkeeping checks count as holding a frame or a slot without being in the page table's
//! resident or swapped states.

/// Counts of pages in flight, each raised when its work starts and lowered when it ends.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    /// Pages in eviction I/O (they still hold their frames).
    evicting: usize,
    /// Of those, pages being written back to a mapped file (they hold no swap slot).
    to_files: usize,
    /// Clean pages whose frames are being discarded (not counted in `evicting`).
    dropping: usize,
    /// Pages in page-in I/O (they hold frames not yet in the page table).
    paging_in: usize,
}

impl InFlight {
    /// A dirty page starts its eviction; `to_file`: it is written back to its mapped file.
    pub(crate) fn start_evict(&mut self, to_file: bool) {
        self.evicting += 1;
        self.to_files += usize::from(to_file);
    }

    /// An eviction started with [`start_evict`](Self::start_evict)`(to_file)` ended.
    pub(crate) fn end_evict(&mut self, to_file: bool) {
        debug_assert!(self.evicting > 0 && (!to_file || self.to_files > 0));
        self.evicting -= 1;
        self.to_files -= usize::from(to_file);
    }

    /// A clean page's frame starts being discarded.
    pub(crate) fn start_drop(&mut self) {
        self.dropping += 1;
    }

    pub(crate) fn end_drop(&mut self) {
        debug_assert!(self.dropping > 0);
        self.dropping -= 1;
    }

    /// `n` pages start paging in.
    pub(crate) fn start_page_in(&mut self, n: usize) {
        self.paging_in += n;
    }

    pub(crate) fn end_page_in(&mut self, n: usize) {
        debug_assert!(self.paging_in >= n);
        self.paging_in -= n;
    }

    /// Whether any page I/O is in flight (its end frees or settles something to wait for).
    pub(crate) fn any(&self) -> bool {
        self.evicting > 0 || self.dropping > 0 || self.paging_in > 0
    }

    /// Pages paging in: frames taken and not yet in the page table.
    pub(crate) fn paging_in(&self) -> usize {
        self.paging_in
    }

    /// Pages being written to swap: slots taken and not yet in the page table.
    pub(crate) fn to_swap(&self) -> usize {
        self.evicting - self.to_files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rise_and_fall_together() {
        let mut f = InFlight::default();
        assert!(!f.any());
        f.start_evict(true);
        f.start_evict(false);
        assert_eq!(f.to_swap(), 1);
        f.end_evict(true);
        assert_eq!(f.to_swap(), 1);
        f.end_evict(false);
        assert!(!f.any());
        f.start_page_in(3);
        assert_eq!(f.paging_in(), 3);
        f.end_page_in(3);
        f.start_drop();
        assert!(f.any());
        f.end_drop();
        assert!(!f.any());
    }
}

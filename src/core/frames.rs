//! The frame budget and, on the MOVE path, the pool that makes it literal.
//!
//! ```text
//!   pool mapping (budget pages, registered with the same userfaultfd as the arenas)
//!   ┌────┬────┬────┬────┬────┬────┬────┬────┐
//!   │ P  │ -  │ -  │ P  │ -  │ -  │ -  │ -  │   P = holds a free physical page ("populated")
//!   └────┴────┴────┴────┴────┴────┴────┴────┘   - = a hole: its page is in an arena, or unused
//!
//!   eviction (dirty):  UFFDIO_MOVE arena page ──► a hole      (the hole becomes P after write-out)
//!   install (write):   UFFDIO_MOVE a P page  ──► arena page   (the P becomes a hole)
//!   install (copy):    UFFDIO_COPY from a buffer; the kernel allocates the page
//! ```
//!
//! Invariant: `in_use + populated.len() <= budget`, where `in_use` counts resident arena pages and
//! pages in flight. Physical pages held by the runtime are at most that sum, so the budget holds
//! with every operation in flight.

/// Frame accounting.
#[derive(Debug)]
pub(crate) struct Frames {
    budget: usize,
    in_use: usize,
    populated: Vec<u32>,
    holes: Vec<u32>,
}

impl Frames {
    /// `pool`: whether there is a pool mapping (MOVE path) whose indices we hand out.
    pub(crate) fn new(budget: usize, pool: bool) -> Frames {
        let holes = if pool { (0..super::n32(budget)).rev().collect() } else { Vec::new() };
        Frames { budget, in_use: 0, populated: Vec::new(), holes }
    }

    pub(crate) fn budget(&self) -> usize {
        self.budget
    }

    /// Frames counted against the budget for arena pages (resident or in flight).
    pub(crate) fn in_use(&self) -> usize {
        self.in_use
    }

    /// Frames that can still be given to a page.
    pub(crate) fn free(&self) -> usize {
        self.budget - self.in_use
    }

    /// Free pool pages that hold a physical page.
    pub(crate) fn populated(&self) -> usize {
        self.populated.len()
    }

    /// Takes up to `want` frames (at least one must be free). Returns how many were taken.
    pub(crate) fn take(&mut self, want: usize) -> usize {
        let n = want.min(self.free());
        self.in_use += n;
        n
    }

    /// Gives back `n` frames whose pages were dropped (MADV_DONTNEED) or never installed.
    pub(crate) fn give(&mut self, n: usize) {
        debug_assert!(n <= self.in_use, "frame accounting underflow");
        self.in_use -= n.min(self.in_use);
    }

    /// A free pool page that holds a physical page, for a MOVE install. It is neither populated
    /// nor a hole until the install ends: [`Frames::moved_out`] when its page went to the arena,
    /// [`Frames::unpop`] when it did not. (Were it a hole meanwhile, an eviction could pick it as
    /// a destination while it still holds the page being filled, and fail on it.)
    pub(crate) fn pop_populated(&mut self) -> Option<u32> {
        self.populated.pop()
    }

    /// A pool page taken with [`Frames::pop_populated`] gave its page to the arena: a hole now.
    pub(crate) fn moved_out(&mut self, p: u32) {
        self.holes.push(p);
    }

    /// Puts back a populated pool page taken with [`Frames::pop_populated`] but not moved out.
    pub(crate) fn unpop(&mut self, p: u32) {
        self.populated.push(p);
    }

    /// An empty pool page to MOVE an evicted page into.
    pub(crate) fn take_hole(&mut self) -> Option<u32> {
        self.holes.pop()
    }

    /// A hole taken with [`Frames::take_hole`] now holds a page that is free again (the page was
    /// written out): it counts as populated, and the arena page's frame is released.
    pub(crate) fn evicted_into(&mut self, hole: u32) {
        self.populated.push(hole);
        self.give(1);
    }

    /// A hole taken with [`Frames::take_hole`] was not used (or its page was moved back).
    pub(crate) fn return_hole(&mut self, hole: u32) {
        self.holes.push(hole);
    }

    /// Pool pages that must be dropped before the kernel may allocate `extra` more pages for
    /// UFFDIO_COPY installs already counted in `in_use`. Their indices become holes.
    pub(crate) fn trim_for_copy(&mut self) -> Vec<u32> {
        let excess = (self.in_use + self.populated.len()).saturating_sub(self.budget);
        let mut out = Vec::with_capacity(excess);
        for _ in 0..excess {
            if let Some(p) = self.populated.pop() {
                self.holes.push(p);
                out.push(p);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_invariant_holds() {
        let mut f = Frames::new(4, true);
        assert_eq!(f.take(3), 3);
        assert_eq!(f.take(3), 1);
        assert_eq!(f.free(), 0);
        // Evict two pages into holes; they become populated free pages.
        let h1 = f.take_hole().unwrap();
        let h2 = f.take_hole().unwrap();
        f.evicted_into(h1);
        f.evicted_into(h2);
        assert_eq!((f.in_use(), f.populated(), f.free()), (2, 2, 2));
        // A MOVE install uses a populated page.
        assert_eq!(f.take(1), 1);
        let p = f.pop_populated().unwrap();
        assert!(p == h1 || p == h2);
        // In flight it is neither a hole nor populated: an eviction cannot pick it.
        let other = f.take_hole().unwrap();
        assert_ne!(other, p);
        f.return_hole(other);
        f.moved_out(p);
        assert!(f.in_use() + f.populated() <= f.budget());
        // A COPY install needs physical headroom: one populated page must go.
        assert_eq!(f.take(1), 1);
        assert_eq!(f.trim_for_copy().len(), 1);
        assert!(f.in_use() + f.populated() <= f.budget());
    }
}

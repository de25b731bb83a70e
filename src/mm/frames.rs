//! The frame budget and, on the MOVE path, the pool that makes it literal.
//!
//! ```text
//!   pool mapping (budget pages, registered with the same userfaultfd as the arenas)
//!   ┌────┬────┬────┬────┬────┬────┬────┬────┐
//!   │ P  │ -  │ -  │ P  │ -  │ -  │ -  │ -  │   P = holds a free physical page ("populated")
//!   └────┴────┴────┴────┴────┴────┴────┴────┘   - = a hole: its page is in an arena, or unused
//!
//!   eviction (dirty):  UFFDIO_MOVE arena pages ──► holes (a run of neighbouring pages into a
//!                      run of neighbouring holes); after the write-out their frames are dropped
//!                      in one batch and the holes are empty again (P only when the write
//!                      failed and the page's region died meanwhile)
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
    holes: Holes,
}

/// The empty pool pages, as a bitmap, so that evictions can take runs of neighbouring holes
/// (one UFFDIO_MOVE, and one TLB flush, per run of neighbouring arena pages).
#[derive(Debug, Default)]
struct Holes {
    bits: Vec<u64>,
    count: usize,
    /// Where the next search starts (next fit: runs stay long while the pool cycles).
    cursor: usize,
}

impl Holes {
    fn full(n: usize) -> Holes {
        let mut h = Holes { bits: vec![0; n.div_ceil(64)], count: 0, cursor: 0 };
        for i in 0..n {
            h.push(super::n32(i));
        }
        h
    }

    fn has(&self, i: usize) -> bool {
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    fn push(&mut self, i: u32) {
        let i = i as usize;
        debug_assert!(!self.has(i), "pool frame {i} is a hole already");
        self.bits[i / 64] |= 1 << (i % 64);
        self.count += 1;
    }

    fn clear(&mut self, i: usize) {
        self.bits[i / 64] &= !(1 << (i % 64));
        self.count -= 1;
    }

    /// The first of `n` neighbouring holes, taken; `None` when there is no such run.
    fn take_run(&mut self, n: usize) -> Option<u32> {
        let len = self.bits.len() * 64;
        if n == 0 || self.count < n {
            return None;
        }
        // Two passes from the cursor: to the end, then from the start.
        for (from, to) in [(self.cursor, len), (0, self.cursor.min(len))] {
            let mut i = from;
            while i < to {
                let w = self.bits[i / 64] >> (i % 64);
                if w == 0 {
                    i = (i / 64 + 1) * 64;
                    continue;
                }
                i += w.trailing_zeros() as usize;
                if i >= to {
                    break;
                }
                let start = i;
                while i < len && i - start < n && self.has(i) {
                    i += 1;
                }
                if i - start == n {
                    for k in start..i {
                        self.clear(k);
                    }
                    self.cursor = i % len;
                    return Some(super::n32(start));
                }
            }
        }
        None
    }
}

impl Frames {
    /// `pool`: whether there is a pool mapping (MOVE path) whose indices we hand out.
    pub(crate) fn new(budget: usize, pool: bool) -> Frames {
        let holes = if pool { Holes::full(budget) } else { Holes::default() };
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
        self.holes.take_run(1)
    }

    /// `n` neighbouring empty pool pages (the first is returned), for a run of neighbouring
    /// arena pages moved with one ioctl; `None` when there is no such run.
    pub(crate) fn take_hole_run(&mut self, n: usize) -> Option<u32> {
        self.holes.take_run(n)
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
    fn hole_runs() {
        let mut h = Holes::full(200);
        assert_eq!(h.take_run(3), Some(0));
        assert_eq!(h.take_run(1), Some(3));
        // Punch holes back in at 1 and 2: a run of 2 there, but the cursor moves on first.
        h.push(1);
        h.push(2);
        assert_eq!(h.take_run(100), Some(4));
        assert_eq!(h.take_run(100), None, "96 left after the cursor, 2 before it");
        assert_eq!(h.take_run(96), Some(104));
        assert_eq!(h.take_run(2), Some(1));
        assert_eq!(h.count, 0);
        assert_eq!(h.take_run(1), None);
        for i in [7, 9, 10, 11, 63, 64, 65] {
            h.push(i);
        }
        assert_eq!(h.take_run(3), Some(9));
        assert_eq!(h.take_run(3), Some(63));
        assert_eq!(h.take_run(1), Some(7));
        assert_eq!(h.count, 0);
    }

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

//! Swap slots: page-sized places in the swap file, handed out in O(1).
//!
//! ```text
//!   swap file:  [slot 0][slot 1][slot 2] ... [slot next-1][ never used ... limit ... capacity )
//!                           ^ freed slots go on a stack and are reused first, one at a time;
//!                             runs for batched writes come from the never-used tail.
//! ```
//!
//! The file grows as the tail is first written. When growing it fails because the disk is full,
//! the `limit` drops to what the file holds: slots past it are never handed out again.

/// The slot allocator.
#[derive(Debug)]
pub(crate) struct Slots {
    capacity: u32,
    /// Slots that may be handed out: `capacity`, or less once the disk filled up.
    limit: u32,
    next: u32,
    /// Slots handed out and not freed.
    used: u32,
    free: Vec<u32>,
}

impl Slots {
    /// The free stack has room for every slot from the start (4 bytes per slot, like the
    /// runtime's checksums; untouched until slots are freed), so that freeing a slot never
    /// allocates: pages are released from swap in the in-thread fault path's signal handler.
    pub(crate) fn new(capacity: u32) -> Slots {
        Slots { capacity, limit: capacity, next: 0, used: 0, free: Vec::with_capacity(capacity as usize) }
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Slots that may still be handed out at most: the capacity, or less after the disk filled.
    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }

    /// Slots holding a page.
    pub(crate) fn used(&self) -> u32 {
        self.used
    }

    /// Slots that can be handed out now.
    pub(crate) fn available(&self) -> u32 {
        super::n32(self.free.len()) + self.limit.saturating_sub(self.next)
    }

    /// One slot, or `None` when swap is full.
    pub(crate) fn alloc(&mut self) -> Option<u32> {
        let s = match self.free.pop() {
            Some(s) => s,
            None if self.next < self.limit => {
                self.next += 1;
                self.next - 1
            }
            None => return None,
        };
        self.used += 1;
        Some(s)
    }

    /// `n` consecutive slots from the never-used tail, if there is room; for one large write.
    pub(crate) fn alloc_run(&mut self, n: u32) -> Option<u32> {
        (n > 1 && self.limit.saturating_sub(self.next) >= n).then(|| {
            self.next += n;
            self.used += n;
            self.next - n
        })
    }

    pub(crate) fn free(&mut self, s: u32) {
        debug_assert!(s < self.next, "freeing a slot never handed out");
        debug_assert!(
            !cfg!(debug_assertions) || self.free.len() > 4096 || !self.free.contains(&s),
            "double free of slot {s}"
        );
        self.used -= 1;
        // A slot past the limit is not handed out again (the file cannot grow to hold it).
        if s < self.limit {
            self.free.push(s);
        }
        // Give the tail back when it is entirely free, so runs stay available.
        if self.used == 0 {
            self.free.clear();
            self.next = 0;
        }
    }

    /// No slot at or past `limit` is handed out from now on (the swap file could not grow past
    /// it). Slots past it already handed out stay valid until freed; free ones are forgotten.
    pub(crate) fn set_limit(&mut self, limit: u32) {
        self.limit = limit.min(self.capacity);
        let l = self.limit;
        self.free.retain(|&s| s < l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_free_and_runs() {
        let mut s = Slots::new(8);
        let r = s.alloc_run(4).unwrap();
        assert_eq!(r, 0);
        let a = s.alloc().unwrap();
        assert_eq!(a, 4);
        assert_eq!(s.used(), 5);
        assert!(s.alloc_run(4).is_none());
        s.free(1);
        assert_eq!(s.alloc(), Some(1));
        for _ in 0..3 {
            assert!(s.alloc().is_some());
        }
        assert_eq!(s.alloc(), None);
        assert_eq!(s.available(), 0);
        assert!(s.free.capacity() >= 8, "room to free every slot handed out");
        for i in 0..8 {
            s.free(i);
        }
        assert_eq!(s.used(), 0);
        assert_eq!(s.alloc_run(8), Some(0));
    }

    #[test]
    fn a_lowered_limit_hands_out_nothing_past_it() {
        let mut s = Slots::new(16);
        let r = s.alloc_run(8).unwrap();
        assert_eq!(r, 0);
        s.free(6);
        s.free(2);
        s.set_limit(4);
        // Slot 6 was free and past the limit: forgotten. Slot 2 is still free.
        assert_eq!(s.available(), 1);
        assert_eq!(s.used(), 6);
        assert_eq!(s.alloc(), Some(2));
        assert_eq!(s.alloc(), None);
        assert!(s.alloc_run(2).is_none());
        // Slots past the limit handed out before stay valid; freed, they are not reused.
        s.free(7);
        assert_eq!(s.available(), 0);
        for i in [0, 1, 2, 3, 4, 5] {
            s.free(i);
        }
        assert_eq!(s.used(), 0);
        assert_eq!(s.available(), 4);
        assert_eq!(s.alloc_run(4), Some(0));
        assert!(s.alloc().is_none());
    }
}

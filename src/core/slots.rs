//! Swap slots: page-sized places in the swap file, handed out in O(1).
//!
//! ```text
//!   swap file:  [slot 0][slot 1][slot 2] ... [slot next-1][ never used ... capacity )
//!                           ^ freed slots go on a stack and are reused first, one at a time;
//!                             runs for batched writes come from the never-used tail.
//! ```

/// The slot allocator.
#[derive(Debug)]
pub(crate) struct Slots {
    capacity: u32,
    next: u32,
    free: Vec<u32>,
}

impl Slots {
    /// The free stack has room for every slot from the start (4 bytes per slot, like the
    /// runtime's checksums; untouched until slots are freed), so that freeing a slot never
    /// allocates: pages are released from swap in the in-thread fault path's signal handler.
    pub(crate) fn new(capacity: u32) -> Slots {
        Slots { capacity, next: 0, free: Vec::with_capacity(capacity as usize) }
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Slots holding a page.
    pub(crate) fn used(&self) -> u32 {
        self.next - super::n32(self.free.len())
    }

    pub(crate) fn available(&self) -> u32 {
        self.capacity - self.used()
    }

    /// One slot, or `None` when swap is full.
    pub(crate) fn alloc(&mut self) -> Option<u32> {
        if let Some(s) = self.free.pop() {
            return Some(s);
        }
        (self.next < self.capacity).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    /// `n` consecutive slots from the never-used tail, if there is room; for one large write.
    pub(crate) fn alloc_run(&mut self, n: u32) -> Option<u32> {
        (n > 1 && self.capacity - self.next >= n).then(|| {
            self.next += n;
            self.next - n
        })
    }

    pub(crate) fn free(&mut self, s: u32) {
        debug_assert!(s < self.next, "freeing a slot never handed out");
        debug_assert!(
            !cfg!(debug_assertions) || self.free.len() > 4096 || !self.free.contains(&s),
            "double free of slot {s}"
        );
        self.free.push(s);
        // Give the tail back when it is entirely free, so runs stay available.
        if super::n32(self.free.len()) == self.next {
            self.free.clear();
            self.next = 0;
        }
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
}

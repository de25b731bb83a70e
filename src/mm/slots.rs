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
//!
//! The table also owns what is known of each slot's contents (the checksum of the page written
//! there: recorded when the write lands, forgotten when the slot is freed, so that a slot's
//! ownership and its checksum change together) and of swap as a whole (broken after a failed
//! write; whether `SwapLow` may be published).

/// The slot allocator, the slots' checksums and swap's health.
#[derive(Debug)]
pub(crate) struct Slots {
    capacity: u32,
    /// Slots that may be handed out: `capacity`, or less once the disk filled up.
    limit: u32,
    next: u32,
    /// Slots handed out and not freed.
    used: u32,
    free: Vec<u32>,
    /// Checksum of each slot's page (0: none recorded).
    sums: Vec<u32>,
    /// A swap write failed: nothing more is written (swap counts as full).
    broken: bool,
    /// `SwapLow` may be published (re-armed when swap recovers).
    low_armed: bool,
}

impl Slots {
    /// The free stack has room for every slot from the start (4 bytes per slot, like the
    /// runtime's checksums; untouched until slots are freed), so that freeing a slot never
    /// allocates: pages are released from swap in the in-thread fault path's signal handler.
    pub(crate) fn new(capacity: u32) -> Slots {
        Slots {
            capacity,
            limit: capacity,
            next: 0,
            used: 0,
            free: Vec::with_capacity(capacity as usize),
            sums: vec![0; capacity as usize],
            broken: false,
            low_armed: true,
        }
    }

    /// Records the checksum of the page just written to slot `s` (handed out, not freed).
    pub(crate) fn record(&mut self, s: u32, sum: u32) {
        self.sums[s as usize] = sum;
    }

    /// The checksum recorded for slot `s` (0: none).
    pub(crate) fn sum(&self, s: u32) -> u32 {
        self.sums[s as usize]
    }

    /// Whether a dirty page can be written to swap now.
    pub(crate) fn writable(&self) -> bool {
        !self.broken && self.available() > 0
    }

    /// A swap write failed: swap counts as full from now on. Returns whether it was not already
    /// (the failure is to be reported once).
    pub(crate) fn mark_broken(&mut self) -> bool {
        !std::mem::replace(&mut self.broken, true)
    }

    /// Whether `SwapLow` is to be published now: free slots fell under a tenth of the capacity
    /// (or, with `now`, whatever is free: the disk filled up) while armed. It re-arms once a
    /// fifth is free again. Returns (free, capacity) when it fires.
    pub(crate) fn low(&mut self, now: bool) -> Option<(u64, u64)> {
        let (free, cap) = (u64::from(self.available()), u64::from(self.capacity));
        if cap == 0 {
            return None;
        }
        if self.low_armed && (now || free * 10 < cap) {
            self.low_armed = false;
            return Some((free, cap));
        }
        if !self.low_armed && !now && free * 5 >= cap {
            self.low_armed = true;
        }
        None
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
        self.sums[s as usize] = 0;
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

    #[test]
    fn a_freed_slot_forgets_its_checksum() {
        let mut s = Slots::new(4);
        let a = s.alloc().unwrap();
        s.record(a, 7);
        assert_eq!(s.sum(a), 7);
        s.free(a);
        assert_eq!(s.sum(a), 0, "a freed slot vouches for nothing");
        let b = s.alloc().unwrap();
        assert_eq!((b, s.sum(b)), (a, 0));
    }

    #[test]
    fn broken_swap_is_reported_once_and_takes_nothing() {
        let mut s = Slots::new(4);
        assert!(s.writable());
        assert!(s.mark_broken());
        assert!(!s.mark_broken());
        assert!(!s.writable());
    }

    #[test]
    fn swap_low_fires_under_a_tenth_and_rearms_at_a_fifth() {
        let mut s = Slots::new(20);
        let taken: Vec<u32> = (0..18).map(|_| s.alloc().unwrap()).collect();
        assert_eq!(s.low(false), None, "2 of 20 free: a tenth, not under it");
        let last = s.alloc().unwrap();
        assert_eq!(s.low(false), Some((1, 20)));
        assert_eq!(s.low(false), None, "once");
        s.free(last);
        s.free(taken[0]);
        assert_eq!(s.low(false), None, "3 free: not re-armed");
        let again: Vec<u32> = (0..2).map(|_| s.alloc().unwrap()).collect();
        assert_eq!(s.low(false), None, "still disarmed: no second warning");
        for &t in again.iter().chain(&taken[1..3]) {
            s.free(t);
        }
        assert_eq!(s.low(false), None, "5 free: a fifth, re-armed");
        let again: Vec<u32> = (0..4).map(|_| s.alloc().unwrap()).collect();
        assert_eq!(s.low(false), Some((1, 20)), "armed again: fires again");
        s.free(again[0]);
        s.free(again[1]);
        assert_eq!(s.low(true), None, "disarmed: a full disk adds nothing");
        for &t in &again[2..] {
            s.free(t);
        }
        s.free(taken[3]);
        assert_eq!(s.low(false), None, "re-armed");
        assert_eq!(s.low(true), Some((6, 20)), "a full disk says so at once");
        assert_eq!(Slots::new(0).low(true), None, "no swap, no warning");
    }
}

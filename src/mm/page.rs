//! Per-page state, packed into 8 bytes, and the sparse page table of a region.
//!
//! ```text
//!                      first touch (read: installed write-protected, clean)
//!   Unpopulated ──────────────────────────────► PageIn ──► Resident{dirty?, slot?}
//!        ▲                                        ▲            │  │ write-protect fault:
//!        │ clean drop (no slot: was zero)         │ fault      │  └─ dirty, slot freed
//!        └────────────────────────────────────────┼────────────┤
//!                                                 │            │ reclaim picks it
//!                     Swapped{slot} ◄─────────────┼── Evicting{slot}   (dirty: MOVE or WP, write)
//!                          ▲  clean drop (slot still valid: no I/O)    │
//!                          └───────────────────────────────────────────┘
//!   Poisoned: the page's data was lost (swap read failed); access raises SIGBUS.
//!   Shared{share}: not resident; the data is a copy-on-write share's (a fork's pages). A
//!   resident page may refer to a share too: it is then a clean, write-protected copy of it.
//! ```
//!
//! Bit layout of an [`Entry`]:
//!
//! ```text
//!   63          32 31       12   11     10      9      8      7     6      5      4    3   2..0
//!   [slot|share(32)| shadow(20) |share?|reserve|pinned|queued|active|refd|waiters|slot?|dirty|state]
//! ```
//! `shadow` is the eviction clock at the time the page last left memory: the distance to the
//! clock at refault tells the replacement policy whether the page was evicted too early.
//! `pinned`: resident and unevictable until unpinned. `reserve`: the page is logically missing
//! (unpopulated or swapped) but a write-protected emergency copy from the reserve is mapped for a
//! safe accessor whose fault could not be served; it is dropped when the accessor returns.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The state of one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageState {
    Unpopulated = 0,
    Resident = 1,
    Swapped = 2,
    PageIn = 3,
    Evicting = 4,
    Poisoned = 5,
    /// Not resident; the data is a copy-on-write share's (see [`super::shares`]).
    Shared = 6,
}

/// One packed page entry. The all-zero entry is a never-touched page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Entry(u64);

const STATE_MASK: u64 = 0b111;
const DIRTY: u64 = 1 << 3;
const HAS_SLOT: u64 = 1 << 4;
const WAITERS: u64 = 1 << 5;
const REFERENCED: u64 = 1 << 6;
const ACTIVE: u64 = 1 << 7;
const QUEUED: u64 = 1 << 8;
const PINNED: u64 = 1 << 9;
const RESERVE: u64 = 1 << 10;
/// The upper 32 bits hold a share id, not a slot.
const SHARE: u64 = 1 << 11;
const SHADOW_SHIFT: u32 = 12;
/// Width of the shadow clock in bits.
pub(crate) const SHADOW_BITS: u32 = 20;
const SHADOW_MASK: u64 = ((1 << SHADOW_BITS) - 1) << SHADOW_SHIFT;

macro_rules! flag {
    ($get:ident, $set:ident, $bit:ident) => {
        pub(crate) fn $get(self) -> bool {
            self.0 & $bit != 0
        }
        pub(crate) fn $set(&mut self, on: bool) {
            if on { self.0 |= $bit } else { self.0 &= !$bit }
        }
    };
}

impl Entry {
    pub(crate) fn state(self) -> PageState {
        match self.0 & STATE_MASK {
            0 => PageState::Unpopulated,
            1 => PageState::Resident,
            2 => PageState::Swapped,
            3 => PageState::PageIn,
            4 => PageState::Evicting,
            6 => PageState::Shared,
            _ => PageState::Poisoned,
        }
    }

    pub(crate) fn set_state(&mut self, s: PageState) {
        self.0 = (self.0 & !STATE_MASK) | s as u64;
    }

    pub(crate) fn with_state(mut self, s: PageState) -> Entry {
        self.set_state(s);
        self
    }

    pub(crate) fn is_resident(self) -> bool {
        self.state() == PageState::Resident
    }

    flag!(dirty, set_dirty, DIRTY);
    flag!(waiters, set_waiters, WAITERS);
    flag!(referenced, set_referenced, REFERENCED);
    flag!(active, set_active, ACTIVE);
    flag!(queued, set_queued, QUEUED);
    flag!(pinned, set_pinned, PINNED);
    flag!(reserve, set_reserve, RESERVE);

    /// The swap slot holding a copy of this page, if any.
    pub(crate) fn slot(self) -> Option<u32> {
        (self.0 & HAS_SLOT != 0).then_some((self.0 >> 32) as u32)
    }

    /// Sets or clears the slot. An entry referring to a share has no slot of its own: clearing is
    /// then a no-op (the share id stays).
    pub(crate) fn set_slot(&mut self, slot: Option<u32>) {
        if self.0 & SHARE != 0 {
            debug_assert!(slot.is_none(), "a shared page cannot own a slot");
            return;
        }
        self.0 &= !(HAS_SLOT | (u64::from(u32::MAX) << 32));
        if let Some(s) = slot {
            self.0 |= HAS_SLOT | (u64::from(s) << 32);
        }
    }

    /// The copy-on-write share whose data this page reads, if any: the page is then clean and
    /// write-protected when resident, and `Shared` when not.
    pub(crate) fn share(self) -> Option<u32> {
        (self.0 & SHARE != 0).then_some((self.0 >> 32) as u32)
    }

    /// Sets or clears the share (an entry with a share has no slot).
    pub(crate) fn set_share(&mut self, share: Option<u32>) {
        self.0 &= !(HAS_SLOT | SHARE | (u64::from(u32::MAX) << 32));
        if let Some(s) = share {
            self.0 |= SHARE | (u64::from(s) << 32);
        }
    }

    pub(crate) fn shadow(self) -> u32 {
        ((self.0 & SHADOW_MASK) >> SHADOW_SHIFT) as u32
    }

    pub(crate) fn set_shadow(&mut self, clock: u32) {
        self.0 = (self.0 & !SHADOW_MASK) | ((u64::from(clock) << SHADOW_SHIFT) & SHADOW_MASK);
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Pages per leaf of the page table (512 bytes of entries).
const LEAF: usize = 64;

struct Leaf {
    e: [Entry; LEAF],
    used: u16,
}

/// A fast, non-cryptographic hasher for page-table keys (leaf indices we generate ourselves).
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
}

pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
pub(crate) type IdSet<K> = std::collections::HashSet<K, BuildHasherDefault<IdHasher>>;

/// The sparse page table of one region: leaves of 64 entries, allocated on first touch of any page
/// in their 256 KiB span and freed when all their pages are back to never-touched. A reservation
/// costs nothing here; a touched page costs its 8-byte entry plus its share of a leaf.
#[derive(Default)]
pub(crate) struct PageTable {
    leaves: IdMap<u64, Box<Leaf>>,
}

impl PageTable {
    pub(crate) fn get(&self, page: u64) -> Entry {
        self.leaves.get(&(page / LEAF as u64)).map_or(Entry::default(), |l| l.e[super::idx(page % LEAF as u64)])
    }

    pub(crate) fn set(&mut self, page: u64, e: Entry) {
        let key = page / LEAF as u64;
        let i = super::idx(page % LEAF as u64);
        if e.is_empty() {
            if let Some(l) = self.leaves.get_mut(&key) {
                if !l.e[i].is_empty() {
                    l.e[i] = e;
                    l.used -= 1;
                    if l.used == 0 {
                        self.leaves.remove(&key);
                    }
                }
            }
            return;
        }
        let l = self.leaves.entry(key).or_insert_with(|| Box::new(Leaf { e: [Entry::default(); LEAF], used: 0 }));
        if l.e[i].is_empty() {
            l.used += 1;
        }
        l.e[i] = e;
    }

    /// Every non-empty entry, in page order.
    pub(crate) fn entries(&self) -> Vec<(u64, Entry)> {
        let mut keys: Vec<u64> = self.leaves.keys().copied().collect();
        keys.sort_unstable();
        let mut out = Vec::new();
        for k in keys {
            let l = &self.leaves[&k];
            for (i, e) in l.e.iter().enumerate() {
                if !e.is_empty() {
                    out.push((k * LEAF as u64 + i as u64, *e));
                }
            }
        }
        out
    }

    /// Visits every non-empty entry, in no particular order, allocating nothing.
    pub(crate) fn for_each(&self, mut f: impl FnMut(u64, Entry)) {
        for (&k, l) in &self.leaves {
            for (i, &e) in l.e.iter().enumerate().filter(|(_, e)| !e.is_empty()) {
                f(k * LEAF as u64 + i as u64, e);
            }
        }
    }

    /// Visits every non-empty entry in page order; `f` may change it, and returns whether to keep
    /// it (a dropped entry becomes never-touched). One pass, no per-page lookups: for kills and
    /// releases of large regions.
    pub(crate) fn retain(&mut self, mut f: impl FnMut(u64, &mut Entry) -> bool) {
        let mut keys: Vec<u64> = self.leaves.keys().copied().collect();
        keys.sort_unstable();
        for k in keys {
            let Some(l) = self.leaves.get_mut(&k) else { continue };
            for (i, e) in l.e.iter_mut().enumerate() {
                if e.is_empty() {
                    continue;
                }
                if !f(k * LEAF as u64 + i as u64, e) || e.is_empty() {
                    *e = Entry::default();
                    l.used -= 1;
                }
            }
            if l.used == 0 {
                self.leaves.remove(&k);
            }
        }
    }

    /// Sets the entries of pages listed in increasing order, one leaf lookup per leaf rather than
    /// per page (for building a fork's table). Entries must not be empty.
    pub(crate) fn extend_sorted(&mut self, entries: impl IntoIterator<Item = (u64, Entry)>) {
        let mut cur: Option<(u64, &mut Box<Leaf>)> = None;
        for (page, e) in entries {
            debug_assert!(!e.is_empty());
            let key = page / LEAF as u64;
            let l = match &mut cur {
                Some((k, l)) if *k == key => l,
                _ => {
                    let l = self
                        .leaves
                        .entry(key)
                        .or_insert_with(|| Box::new(Leaf { e: [Entry::default(); LEAF], used: 0 }));
                    // Keep the leaf for the following pages of the same leaf.
                    cur = Some((key, l));
                    &mut cur.as_mut().expect("just set").1
                }
            };
            let i = super::idx(page % LEAF as u64);
            if l.e[i].is_empty() {
                l.used += 1;
            }
            l.e[i] = e;
        }
    }

    /// Bytes of heap this table holds (leaves plus the map's slots), for the metadata figures.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.leaves.len() * std::mem::size_of::<Leaf>()
            + self.leaves.capacity() * (std::mem::size_of::<(u64, Box<Leaf>)>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_fields_are_independent() {
        let mut e = Entry::default();
        assert!(e.is_empty());
        e.set_state(PageState::Swapped);
        e.set_slot(Some(u32::MAX - 3));
        e.set_shadow(0xF_FFFF);
        e.set_dirty(true);
        e.set_queued(true);
        e.set_reserve(true);
        assert_eq!(e.state(), PageState::Swapped);
        assert_eq!(e.slot(), Some(u32::MAX - 3));
        assert_eq!(e.shadow(), 0xF_FFFF);
        e.set_slot(None);
        assert_eq!(e.slot(), None);
        assert!(e.dirty() && e.queued() && e.reserve() && !e.pinned());
        assert!(!e.active() && !e.waiters() && !e.referenced());
        assert_eq!(e.shadow(), 0xF_FFFF);
        e.set_shadow(1 << 20);
        assert_eq!(e.shadow(), 0);
        e.set_pinned(true);
        assert!(e.pinned() && e.reserve() && e.dirty());
    }

    #[test]
    fn retain_visits_in_order_and_drops() {
        let mut t = PageTable::default();
        for p in [200u64, 3, 64, 65] {
            t.set(p, Entry::default().with_state(PageState::Resident));
        }
        let mut seen = Vec::new();
        t.retain(|p, e| {
            seen.push(p);
            if p == 64 {
                e.set_state(PageState::Swapped);
            }
            p == 64
        });
        assert_eq!(seen, vec![3, 64, 65, 200]);
        assert_eq!(t.entries(), vec![(64, Entry::default().with_state(PageState::Swapped))]);
        assert_eq!(t.leaves.len(), 1);
    }

    #[test]
    fn table_is_sparse_and_frees_leaves() {
        let mut t = PageTable::default();
        let big = 1u64 << 40;
        t.set(big, Entry::default().with_state(PageState::Resident));
        t.set(3, Entry::default().with_state(PageState::Swapped));
        assert_eq!(t.get(big).state(), PageState::Resident);
        assert_eq!(t.get(big + 1).state(), PageState::Unpopulated);
        assert_eq!(t.entries().iter().map(|x| x.0).collect::<Vec<_>>(), vec![3, big]);
        t.set(big, Entry::default());
        t.set(3, Entry::default());
        assert!(t.entries().is_empty());
        assert_eq!(t.leaves.len(), 0);
    }
}

//! Page replacement without an accessed bit.
//!
//! The kernel gives a userspace pager no accessed bit, so the policy learns from what it does see:
//! faults, refaults and writes. It is a two-list design in the spirit of the kernel's
//! active/inactive lists and of 2Q / CLOCK-Pro:
//!
//! ```text
//!   fault ──► inactive ──(oldest first)──► evicted, shadow = eviction clock
//!                │ referenced (a write-protect fault hit it)        │
//!                ▼                                                  │ refault with distance
//!              active ◄─────────────────────────────────────────────┘ ≤ the resident set
//!                │ demoted (oldest first) when inactive < 1/3 of resident
//!                └──────────► inactive
//! ```
//!
//! * A page enters on the inactive list and, untouched, is evicted in fault order (FIFO).
//! * A write to a clean page (the write-protect fault) marks it referenced: at the inactive tail it
//!   gets a second chance on the active list instead of being evicted.
//! * A refault is the strongest signal. Each eviction stamps the page with the eviction clock; when
//!   it faults back, the refault distance (evictions since) says whether the page would have
//!   stayed resident with a little more memory. If so it was evicted too early and goes straight
//!   to the active list; scan-once and uniformly random pages do not qualify and stay inactive.
//! * The active list is kept to at most two thirds of the resident pages so new pages get a
//!   fair trial.
//!
//! Queues hold page keys; a page's entry says which list it logically belongs to, so a page that
//! left memory behind its queue entry is skipped when that entry comes up (the `queued` flag keeps
//! it to one entry per page). Pinned pages have left the lists: their entries are skipped too.

use super::page::{Entry, SHADOW_BITS};
use std::collections::VecDeque;

/// `region << 32 | page index`.
pub(crate) type PageKey = u64;

pub(crate) fn key(region: u32, page: u64) -> PageKey {
    (u64::from(region) << 32) | (page & 0xFFFF_FFFF)
}

pub(crate) fn unkey(k: PageKey) -> (u32, u64) {
    ((k >> 32) as u32, k & 0xFFFF_FFFF)
}

/// Access to page entries by key, for the policy.
pub(crate) trait PageStore {
    /// The entry, or `None` when the page's region is gone.
    fn entry(&self, k: PageKey) -> Option<Entry>;
    fn set_entry(&mut self, k: PageKey, e: Entry);
}

/// The replacement policy state.
#[derive(Debug)]
pub(crate) struct Lru {
    inactive: VecDeque<PageKey>,
    active: VecDeque<PageKey>,
    n_active: usize,
    n_inactive: usize,
    clock: u32,
}

const CLOCK_MASK: u32 = (1 << SHADOW_BITS) - 1;

impl Default for Lru {
    fn default() -> Self {
        Lru { inactive: VecDeque::new(), active: VecDeque::new(), n_active: 0, n_inactive: 0, clock: 1 }
    }
}

impl Lru {
    /// Queues with room for `frames` resident pages each, so that admitting a page does not
    /// allocate until stale entries outnumber the budget (the in-thread fault path admits pages
    /// from a signal handler).
    pub(crate) fn with_capacity(frames: usize) -> Lru {
        Lru { inactive: VecDeque::with_capacity(frames), active: VecDeque::with_capacity(frames), ..Lru::default() }
    }

    /// Every key in the queues (for consistency checks).
    pub(crate) fn queued_keys(&self) -> impl Iterator<Item = PageKey> + '_ {
        self.inactive.iter().chain(self.active.iter()).copied()
    }

    /// Resident pages the policy tracks.
    pub(crate) fn resident(&self) -> usize {
        self.n_active + self.n_inactive
    }

    /// Whether a page faulting back in was evicted too early (see the module docs).
    pub(crate) fn refault_activates(&self, e: Entry) -> bool {
        let shadow = e.shadow();
        if shadow == 0 {
            return false;
        }
        let distance = self.clock.wrapping_sub(shadow) & CLOCK_MASK;
        distance as usize <= self.resident().max(1)
    }

    /// A page became resident.
    pub(crate) fn admit(&mut self, k: PageKey, e: &mut Entry, activate: bool) {
        e.set_active(activate);
        e.set_referenced(false);
        if activate {
            self.n_active += 1;
        } else {
            self.n_inactive += 1;
        }
        if !e.queued() {
            e.set_queued(true);
            if activate { self.active.push_back(k) } else { self.inactive.push_back(k) }
        }
    }

    /// A resident page left memory (evicted, discarded, killed or released).
    pub(crate) fn leave(&mut self, e: &mut Entry) {
        if e.active() {
            self.n_active -= 1;
        } else {
            self.n_inactive -= 1;
        }
        e.set_active(false);
        e.set_referenced(false);
    }

    /// Stamps an evicted page with the eviction clock.
    pub(crate) fn stamp(&mut self, e: &mut Entry) {
        e.set_shadow(self.clock);
        self.clock = (self.clock + 1) & CLOCK_MASK;
        if self.clock == 0 {
            self.clock = 1;
        }
    }

    /// A victim chosen by [`Lru::victim`] could not be evicted after all: back to its list's tail.
    pub(crate) fn requeue(&mut self, k: PageKey, e: &mut Entry) {
        if !e.queued() {
            e.set_queued(true);
            if e.active() { self.active.push_back(k) } else { self.inactive.push_back(k) }
        }
    }

    /// Picks the next page to evict among those `can_evict` accepts, or `None` when none is left.
    /// The returned page is no longer queued; the caller evicts it (then [`Lru::leave`]) or hands
    /// it back with [`Lru::requeue`].
    #[cfg(test)]
    pub(crate) fn victim(
        &mut self,
        store: &mut impl PageStore,
        can_evict: impl Fn(PageKey, Entry) -> bool,
    ) -> Option<PageKey> {
        self.victim_within(store, can_evict, usize::MAX)
    }

    /// [`Lru::victim`], looking at no more than `max_steps` queue entries (for opportunistic
    /// reclaim that must stay cheap).
    pub(crate) fn victim_within(
        &mut self,
        store: &mut impl PageStore,
        can_evict: impl Fn(PageKey, Entry) -> bool,
        max_steps: usize,
    ) -> Option<PageKey> {
        let mut steps = (3 * (self.inactive.len() + self.active.len()) + 4).min(max_steps);
        // Inactive pages passed over because `can_evict` refused them. After a full pass, active
        // pages are demoted to the front of the inactive list so they are considered at once.
        let mut skipped = 0;
        while steps > 0 {
            steps -= 1;
            let resident = self.resident();
            let forced = skipped > 0 && skipped >= self.inactive.len();
            if (self.n_inactive * 3 < resident || self.inactive.is_empty() || forced) && !self.active.is_empty() {
                let k = self.active.pop_front()?;
                let Some(mut e) = store.entry(k) else {
                    continue;
                };
                if !e.is_resident() || e.pinned() {
                    e.set_queued(false);
                    store.set_entry(k, e);
                    continue;
                }
                if e.active() {
                    e.set_active(false);
                    self.n_active -= 1;
                    self.n_inactive += 1;
                }
                e.set_referenced(false);
                if forced {
                    self.inactive.push_front(k);
                    skipped = 0;
                } else {
                    self.inactive.push_back(k);
                }
                store.set_entry(k, e);
                continue;
            }
            let k = self.inactive.pop_front()?;
            let Some(mut e) = store.entry(k) else {
                continue;
            };
            if !e.is_resident() || e.pinned() {
                e.set_queued(false);
                store.set_entry(k, e);
                continue;
            }
            if e.active() {
                self.active.push_back(k);
                continue;
            }
            if e.referenced() {
                e.set_referenced(false);
                e.set_active(true);
                self.n_inactive -= 1;
                self.n_active += 1;
                self.active.push_back(k);
                store.set_entry(k, e);
                continue;
            }
            if !can_evict(k, e) {
                self.inactive.push_back(k);
                skipped += 1;
                continue;
            }
            e.set_queued(false);
            store.set_entry(k, e);
            return Some(k);
        }
        None
    }

    /// Up to `want` pages that `can_evict` accepts, the coldest first, among the first
    /// `max_steps` entries of the inactive list — unreferenced ones only, so recently used pages
    /// keep their second chance — or, with `strict`, of the inactive and then the active list,
    /// referenced or not. They are taken out of their queue; the rest of the lists stay exactly
    /// as they were (no rotation, no second chances given). For reclaim that prefers some kind of
    /// page (clean before dirty) without disturbing the order of the others. The pages are
    /// appended to `out`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn peek_victims(
        &mut self,
        store: &mut impl PageStore,
        can_evict: impl Fn(PageKey, Entry) -> bool,
        want: usize,
        max_steps: usize,
        strict: bool,
        out: &mut Vec<PageKey>,
    ) {
        let start = out.len();
        let lists: &[bool] = if strict { &[false, true] } else { &[false] };
        for &active in lists {
            let list = if active { &mut self.active } else { &mut self.inactive };
            // The first `max_steps` entries, in order; a picked one leaves the list (no
            // allocation: eviction runs in the in-thread fault path too).
            let (mut i, mut seen) = (0, 0);
            while seen < max_steps && i < list.len() && out.len() - start < want {
                seen += 1;
                let k = list[i];
                let fits = store.entry(k).is_some_and(|e| {
                    e.is_resident()
                        && !e.pinned()
                        && e.active() == active
                        && e.queued()
                        && (strict || !e.referenced())
                        && can_evict(k, e)
                });
                if !fits {
                    i += 1;
                    continue;
                }
                list.remove(i);
                if let Some(mut e) = store.entry(k) {
                    e.set_queued(false);
                    store.set_entry(k, e);
                }
                out.push(k);
            }
            if out.len() - start >= want {
                break;
            }
        }
    }

    /// Drops queue entries of a region that is gone (keeps the queues from holding dead keys).
    pub(crate) fn forget_region(&mut self, region: u32) {
        self.inactive.retain(|&k| unkey(k).0 != region);
        self.active.retain(|&k| unkey(k).0 != region);
    }
}

#[cfg(test)]
mod tests {
    use super::super::page::PageState;
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[derive(Default)]
    struct Store(HashMap<PageKey, Entry>);
    impl PageStore for Store {
        fn entry(&self, k: PageKey) -> Option<Entry> {
            Some(self.0.get(&k).copied().unwrap_or_default())
        }
        fn set_entry(&mut self, k: PageKey, e: Entry) {
            self.0.insert(k, e);
        }
    }

    /// One read access of page `p` under the policy with `frames` frames: a hit, or a fault
    /// that evicts (when full) and admits the page. Returns whether it hit.
    fn access(lru: &mut Lru, s: &mut Store, p: u64, frames: usize) -> bool {
        let k = key(0, p);
        if s.entry(k).unwrap().is_resident() {
            return true;
        }
        if lru.resident() >= frames {
            let v = lru.victim(s, |_, _| true).unwrap();
            let mut ve = s.entry(v).unwrap();
            lru.leave(&mut ve);
            lru.stamp(&mut ve);
            ve.set_state(PageState::Swapped);
            s.set_entry(v, ve);
        }
        let mut e = s.entry(k).unwrap();
        let act = lru.refault_activates(e);
        e.set_state(PageState::Resident);
        lru.admit(k, &mut e, act);
        s.set_entry(k, e);
        false
    }

    /// Runs a read trace through the policy with `frames` frames; returns the hit ratio.
    fn simulate(trace: &[u64], frames: usize) -> f64 {
        let (mut lru, mut s) = (Lru::default(), Store::default());
        let hits = trace.iter().filter(|&&p| access(&mut lru, &mut s, p, frames)).count();
        hits as f64 / trace.len() as f64
    }

    fn fifo(trace: &[u64], frames: usize) -> f64 {
        let mut q = VecDeque::new();
        let mut set = HashSet::new();
        let mut hits = 0;
        for &p in trace {
            if set.contains(&p) {
                hits += 1;
                continue;
            }
            if q.len() >= frames {
                set.remove(&q.pop_front().unwrap());
            }
            q.push_back(p);
            set.insert(p);
        }
        hits as f64 / trace.len() as f64
    }

    fn zipf_trace(n: u64, len: usize, seed: u64) -> Vec<u64> {
        // Inverse-CDF sampling of Zipf(0.99) over n items, items shuffled over the page space.
        let s = 0.99f64;
        let mut cdf = Vec::with_capacity(super::super::idx(n));
        let mut acc = 0.0;
        for i in 1..=n {
            acc += 1.0 / (i as f64).powf(s);
            cdf.push(acc);
        }
        let mut x = seed;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..len)
            .map(|_| {
                let u = (next() % 1_000_000_007) as f64 / 1_000_000_007.0 * acc;
                let r = cdf.partition_point(|&c| c < u) as u64;
                (r.wrapping_mul(0x9E37_79B9) ^ 0x5bd1) % (n * 4)
            })
            .collect()
    }

    #[test]
    fn beats_fifo_on_zipf() {
        let trace = zipf_trace(4096, 200_000, 0x1234_5678);
        let ours = simulate(&trace, 1024);
        let base = fifo(&trace, 1024);
        assert!(ours > base + 0.01, "policy hit ratio {ours:.3} vs FIFO {base:.3}");
    }

    #[test]
    fn scan_does_not_flush_hot_set() {
        // A hot set of 100 pages revisited between one-time pages, then a long one-time scan:
        // the hot set (activated by its refaults) survives the scan.
        let mut trace = Vec::new();
        for r in 0..5u64 {
            trace.extend(0..100u64);
            trace.extend((0..400u64).map(|i| 10_000 + r * 400 + i));
        }
        trace.extend((0..2000u64).map(|i| 100_000 + i));
        let tail: Vec<u64> = (0..100u64).collect();
        trace.extend(&tail);
        let (mut lru, mut s) = (Lru::default(), Store::default());
        let start_tail = trace.len() - tail.len();
        let mut hits_tail = 0;
        for (i, &p) in trace.iter().enumerate() {
            if access(&mut lru, &mut s, p, 300) && i >= start_tail {
                hits_tail += 1;
            }
        }
        assert!(hits_tail >= 60, "hot set hits after scan: {hits_tail}/100");
    }

    #[test]
    fn unevictable_inactive_pages_do_not_hide_evictable_active_ones() {
        let mut lru = Lru::default();
        let mut s = Store::default();
        // One clean active page behind many dirty inactive ones.
        let mut e = Entry::default().with_state(PageState::Resident);
        lru.admit(key(2, 0), &mut e, true);
        s.set_entry(key(2, 0), e);
        for p in 1..10 {
            let mut e = Entry::default().with_state(PageState::Resident);
            e.set_dirty(true);
            lru.admit(key(2, p), &mut e, false);
            s.set_entry(key(2, p), e);
        }
        assert_eq!(lru.victim(&mut s, |_, e| !e.dirty()), Some(key(2, 0)));
        assert_eq!(lru.victim(&mut s, |_, e| !e.dirty()), None);
    }

    #[test]
    fn victim_respects_filter_and_requeue() {
        let mut lru = Lru::default();
        let mut s = Store::default();
        for p in 0..4 {
            let mut e = Entry::default().with_state(PageState::Resident);
            e.set_dirty(p % 2 == 0);
            lru.admit(key(1, p), &mut e, false);
            s.set_entry(key(1, p), e);
        }
        let v = lru.victim(&mut s, |_, e| !e.dirty()).unwrap();
        assert_eq!(unkey(v), (1, 1));
        let mut e = s.entry(v).unwrap();
        lru.requeue(v, &mut e);
        s.set_entry(v, e);
        let v2 = lru.victim(&mut s, |_, e| !e.dirty()).unwrap();
        assert_eq!(unkey(v2), (1, 3));
        assert_eq!(lru.resident(), 4);
    }
}

//! Commit accounting, pinned pages, and the pages a safe write holds resident while it copies.

use crate::config::Overcommit;
use crate::engine::{Core, Liveness, State};
use crate::error::{Error, Result};
use crate::mm::lru::key;
use crate::mm::page::PageState;

/// What [`Core::hold_page`] found.
pub(crate) enum Hold {
    /// The page is resident and now held: it cannot be evicted until released.
    Held,
    /// Not resident: fault it in (with a read) and try again.
    Missing,
    /// The access must stop with this error.
    Failed(Error),
}

/// `swap + ratio × budget`, in bytes. The configuration keeps `ratio` finite and within 0..=100,
/// so the product is non-negative and far below 2^64 for any real budget.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub(crate) fn commit_limit(swap: u64, budget: u64, ratio: f64) -> u64 {
    swap + (ratio * budget as f64) as u64
}

impl Core {
    /// Charges a reservation of `bytes` against the overcommit policy.
    pub(crate) fn commit(&self, bytes: u64) -> Result<()> {
        let mut st = self.lock();
        let ps = self.page() as u64;
        let budget = st.frames.budget() as u64 * ps;
        let swap = u64::from(st.slots.capacity()) * ps;
        let limit = match self.cfg.overcommit {
            Overcommit::Always => None,
            // A single reservation larger than all the memory there is.
            Overcommit::Heuristic if bytes > budget + swap => Some(budget + swap),
            Overcommit::Heuristic => None,
            Overcommit::Strict { ratio } => {
                let limit = commit_limit(swap, budget, ratio);
                (st.usage.committed + bytes > limit).then_some(limit)
            }
        };
        if let Some(limit) = limit {
            return Err(Error::CommitLimit { requested: bytes, committed: st.usage.committed, limit });
        }
        st.usage.committed += bytes;
        Ok(())
    }

    /// Checks that no page of `range` is pinned and reserves pin quota for all of it.
    pub(crate) fn pin_reserve(&self, rid: u32, range: std::ops::Range<u64>) -> Result<()> {
        let ps = self.page();
        let mut st = self.lock();
        let r = st.regions.get(&rid).ok_or(Error::InvalidArgument { what: "region", detail: "released".into() })?;
        if let Some(p) = range.clone().find(|&p| r.pages.get(p).pinned()) {
            return Err(Error::AlreadyPinned { offset: crate::mm::idx(p) * ps });
        }
        let n = range.end - range.start;
        let limit = self.cfg.pin_limit as u64;
        if st.usage.pinned as u64 + n > limit {
            return Err(Error::PinLimit { requested: n, pinned: st.usage.pinned as u64, limit });
        }
        st.usage.pinned += crate::mm::idx(n);
        Ok(())
    }

    /// Pins one page if it is resident (`Ok(true)`); `Ok(false)` if it must be faulted in first.
    pub(crate) fn pin_page(&self, rid: u32, page: u64) -> Result<bool> {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(r) = st.regions.get_mut(&rid) else { return Ok(false) };
        if r.live != Liveness::Live {
            let arena = st.arenas.get(&r.arena).map(|a| a.shared.name.clone()).unwrap_or_default();
            return Err(Error::Killed { arena });
        }
        let mut e = r.pages.get(page);
        if !e.is_resident() {
            return Ok(false);
        }
        if !e.pinned() {
            st.lru.leave(&mut e);
            st.usage.clean -= usize::from(!e.dirty());
            e.set_pinned(true);
            r.counts.pinned += 1;
            r.pages.set(page, e);
        }
        Ok(true)
    }

    /// Unpins the pages of `range` that are pinned; each gives back its frame of pin quota.
    pub(crate) fn unpin_pages(&self, rid: u32, range: std::ops::Range<u64>) {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(r) = st.regions.get_mut(&rid) else { return };
        for p in range {
            let mut e = r.pages.get(p);
            if e.pinned() {
                e.set_pinned(false);
                r.counts.pinned -= 1;
                st.usage.pinned -= 1;
                if e.is_resident() {
                    st.lru.admit(key(rid, p), &mut e, false);
                    st.usage.clean += usize::from(!e.dirty());
                }
                r.pages.set(p, e);
            }
        }
    }

    /// Gives back pin quota reserved by [`Core::pin_reserve`] for pages that were never pinned.
    pub(crate) fn release_pin_quota(&self, pages: u64) {
        let mut st = self.lock();
        st.usage.pinned -= crate::mm::idx(pages).min(st.usage.pinned);
    }

    /// The first page of `range` that is not pinned.
    pub(crate) fn first_unpinned(&self, rid: u32, range: std::ops::Range<u64>) -> Option<u64> {
        let st = self.lock();
        let r = st.regions.get(&rid)?;
        range.into_iter().find(|&p| !r.pages.get(p).pinned())
    }

    /// Why a safe accessor must not touch a page, if it must not: its data is lost (poisoned), or
    /// it is unavailable because memory is exhausted (an emergency copy or OOM poison is mapped).
    fn untouchable(&self, st: &State, rid: u32, page: u64, write: bool) -> Option<Error> {
        let r = st.regions.get(&rid)?;
        let e = r.pages.get(page);
        let arena = || st.arenas.get(&r.arena).map(|a| a.shared.name.clone()).unwrap_or_default();
        if r.live == Liveness::Killed {
            return Some(Error::Killed { arena: arena() });
        }
        if e.state() == PageState::Poisoned {
            return Some(Error::Corrupted { offset: crate::mm::idx(page) * self.page() });
        }
        // An emergency copy may be read (it is the real data), never written; OOM poison never
        // touched.
        if e.reserve() && (write || st.emergency.oom_poisoned.contains(&(rid, page))) {
            return Some(Error::OutOfMemory { arena: arena() });
        }
        None
    }

    /// Holds a page resident for a safe write: the write then never needs a frame (at most a
    /// write-protect fault), so a write can never be lost to an emergency copy.
    pub(crate) fn hold_page(&self, rid: u32, page: u64) -> Hold {
        let mut st = self.lock();
        // A failed runtime answers faults with emergency pages that never count as resident:
        // holding would wait for ever.
        if let Err(e) = self.check() {
            return Hold::Failed(e);
        }
        if let Some(e) = self.untouchable(&st, rid, page, true) {
            return Hold::Failed(e);
        }
        let Some(r) = st.regions.get(&rid) else { return Hold::Missing };
        let e = r.pages.get(page);
        if !e.is_resident() {
            return Hold::Missing;
        }
        // The write is coming: make the page dirty now rather than through a write-protect fault.
        if e.share().is_some() {
            // Copy-on-write: private first (which may need a frame, and so wait for one).
            let mut f =
                crate::engine::fault::Fault::new(rid, page, true, crate::sys::gettid(), std::time::Instant::now());
            st = self.write_fault(st, &mut f);
            let e = st.regions.get(&rid).map(|r| r.pages.get(page)).unwrap_or_default();
            if !(e.is_resident() && e.dirty()) {
                return Hold::Missing;
            }
        } else if !e.dirty() {
            self.make_dirty(&mut st, rid, page, e);
        }
        *st.usage.held.entry(key(rid, page)).or_insert(0) += 1;
        Hold::Held
    }

    /// Releases a page held by [`Core::hold_page`].
    pub(crate) fn release_page(&self, rid: u32, page: u64) {
        let mut st = self.lock();
        let k = key(rid, page);
        if let Some(n) = st.usage.held.get_mut(&k) {
            *n -= 1;
            if *n == 0 {
                st.usage.held.remove(&k);
            }
        }
    }

    /// For safe reads in a region or arena with poisoned pages: whether this page may be touched.
    pub(crate) fn check_readable(&self, rid: u32, page: u64) -> Result<()> {
        let st = self.lock();
        self.untouchable(&st, rid, page, false).map_or(Ok(()), Err)
    }
}

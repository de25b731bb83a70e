//! Reclaim: freeing frames by eviction, the background reclaimer, and killing an arena when
//! nothing else can give.
//!
//! The escalation path, in order:
//! 1. free frames (above the low watermark, readahead may use them too);
//! 2. clean pages — their swap copy is still valid, or they were never written (zero): dropped
//!    with no I/O;
//! 3. dirty pages — written to swap in batches (consecutive slots, one vectored write per run);
//! 4. nothing evictable, swap full, nothing in flight: kill (here, the faulting arena).
//!
//! Eviction of a dirty page never loses a concurrent write:
//!
//! ```text
//!   MOVE path:          under lock: state = Evicting, slot and pool hole chosen (a fault on the
//!                                   page from now on waits for the eviction to end)
//!                       no lock:    UFFDIO_MOVE arena page ─► pool hole   (atomic: a write before
//!                                   it goes out with the page, one after it faults and waits)
//!                                   pwritev(pool pages) ─► swap slots, then the pool frames dropped
//!                       under lock: state = Swapped, the hole empty again, wake waiters
//!
//!   WRITEPROTECT path:  under lock: state = Evicting, slot chosen
//!                       no lock:    UFFDIO_WRITEPROTECT page (writers park; readers still read)
//!                                   pwritev(arena pages) ─► swap slots, then MADV_DONTNEED
//!                       under lock: state = Swapped, wake waiters
//!                                   (a parked writer re-faults MISSING and pages the data back in)
//! ```
//! A failed write puts the page back (MOVE back, or lift the protection) and marks swap broken.
//! A copy-on-write share's last copy is moved under the lock instead: the share's bookkeeping
//! must never see its frame half gone.
//!
//! What costs here is the TLB: every ioctl or madvise that unmaps pages of a process running on
//! another CPU interrupts that CPU, which on a virtual machine costs tens of microseconds on both
//! sides. So evictions go in batches: neighbouring dirty pages leave together (one UFFDIO_MOVE
//! or UFFDIO_WRITEPROTECT per run, into neighbouring pool holes: see [`CLUSTER`]), and every
//! frame a batch drops — clean pages, written-out pool frames — goes in one `process_madvise`
//! (one flush per 256 ranges).

use crate::config::EvictionPath;
use crate::engine::logq::note;
use crate::engine::{Core, Guard, Liveness, State};
use crate::event::Event;
use crate::mm::lru::{PageKey, key, unkey};
use crate::mm::page::{Entry, PageState};
use crate::mm::{idx, n32};
use crate::sys::mem::Mapping;
use crate::sys::uffd::Filled;
use crate::util::lock;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Pages a fault reclaims directly when no frame is free.
const DIRECT_BATCH: usize = 16;
/// Pages the background reclaimer evicts per round.
pub(crate) const BACKGROUND_BATCH: usize = 64;
/// Most neighbouring dirty pages evicted together (see `Core::cluster`): one UFFDIO_MOVE or
/// UFFDIO_WRITEPROTECT, and so one TLB flush, per run instead of per page.
const CLUSTER: u64 = 16;
/// How far from the cold end of the replacement lists reclaim looks for dirty file pages before
/// it swaps, and for clean pages when nothing can be written. (Clean pages are otherwise looked
/// for among the coldest few only: see `Victims::Clean`.)
const PREFER_WINDOW: usize = 1024;

/// Which pages to evict.
pub(crate) enum Victims {
    /// Up to this many, chosen by the replacement policy.
    Policy(usize),
    /// Up to this many clean pages (no I/O), among the coldest few (4 per page wanted, at least
    /// 32), without reordering the rest.
    Clean(usize),
    /// Up to this many dirty pages of `Shared` file maps (written back to their files), among
    /// the coldest.
    FileDirty(usize),
    /// These pages of one region (page-out on request).
    Pages(u32, std::ops::Range<u64>),
}

/// A dirty page being written out.
struct Job {
    rid: u32,
    page: u64,
    slot: u32,
    /// Pool page holding the data (MOVE path).
    hole: Option<u32>,
    map: Arc<Mapping>,
    /// Whether the page has left its arena (moved out, or write-protected): `None` until tried,
    /// else `Err(errno)` when it could not be.
    taken: Option<Result<(), i32>>,
    /// A copy-on-write share's last copy (taken under the lock).
    shared: bool,
    ok: bool,
    /// Checksum of the page as written.
    sum: u32,
    /// A `Shared` file map's page: written back to the file, not to `slot` (unused).
    file: Option<Arc<crate::filemap::FileMap>>,
}

/// The vectors of one eviction, kept between evictions (see `Core::evict_bufs`) so that evicting
/// allocates nothing once they have grown to the batch sizes: direct reclaim runs in the
/// in-thread fault path, in a signal handler.
#[derive(Default)]
pub(crate) struct EvictBufs {
    /// The victims.
    chosen: Vec<PageKey>,
    /// Dirty victims being written out.
    jobs: Vec<Job>,
    /// Clean frames of copy-on-write shares, discarded under the lock.
    clean_shared: Vec<PageKey>,
    /// Other clean victims, their frames discarded without the lock.
    drops: Vec<(PageKey, Arc<Mapping>)>,
}

impl EvictBufs {
    /// Room for the largest batch reclaim evicts: a background round with its cluster
    /// neighbours, or the clean pages a fault drops to make room for a readahead window of up to
    /// `max_readahead` pages.
    fn for_batches(max_readahead: usize) -> EvictBufs {
        let n = (BACKGROUND_BATCH + idx(CLUSTER)).max(max_readahead);
        EvictBufs {
            chosen: Vec::with_capacity(n),
            jobs: Vec::with_capacity(n),
            clean_shared: Vec::with_capacity(n),
            drops: Vec::with_capacity(n),
        }
    }

    /// A runtime's pool: ready for the reclaimer and a faulting thread at once, with room for
    /// as many evictions at once as there are CPUs.
    pub(crate) fn pool(max_readahead: usize) -> Vec<EvictBufs> {
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        let mut pool = Vec::with_capacity(cpus.max(2) + 2);
        pool.extend((0..2).map(|_| EvictBufs::for_batches(max_readahead)));
        pool
    }

    fn clear(&mut self) {
        self.chosen.clear();
        self.jobs.clear();
        self.clean_shared.clear();
        self.drops.clear();
    }
}

/// The runs of `items`: each item with how many items from it on form a run (see [`run_len`]).
fn runs<'i, T>(
    items: &'i [T],
    next: impl Fn(&T, &T) -> bool + Copy + 'i,
) -> impl Iterator<Item = (&'i T, usize)> + Clone {
    let mut i = 0;
    std::iter::from_fn(move || {
        let first = items.get(i)?;
        let n = run_len(&items[i..], next);
        i += n;
        Some((first, n))
    })
}

/// How many of `items` from the first on form a run: each next to the one before by `next`.
fn run_len<T>(items: &[T], next: impl Fn(&T, &T) -> bool) -> usize {
    let mut n = 1;
    while n < items.len() && next(&items[n - 1], &items[n]) {
        n += 1;
    }
    n.min(items.len())
}

impl Core {
    /// Takes frames for a fault: at least one, up to `want` when there are frames to spare above
    /// the low watermark. Reclaims directly when none is free. `None` means exhaustion: no frame,
    /// nothing evictable, nothing in flight that will free one. `rid` is the faulting region.
    pub(crate) fn acquire<'a>(&'a self, mut st: Guard<'a>, want: usize, rid: u32) -> (Guard<'a>, Option<usize>) {
        if st.frames.free() == 0 {
            st.counters(rid).direct_reclaims += 1;
        }
        // A readahead window larger than the spare frames: make room by dropping clean pages
        // (no I/O; a scan leaves them behind it), so streams keep their full window.
        let spare = st.frames.free().saturating_sub(self.cfg.low);
        if want > spare + 1 && st.usage.clean > 0 {
            let (g, _) = self.evict(st, Victims::Clean(want - spare));
            st = g;
        }
        loop {
            // A failed runtime's in-flight work never completes: waiting for it would never end.
            if self.is_failed() {
                return (st, None);
            }
            let free = st.frames.free();
            if free > 0 {
                let spare = free.saturating_sub(self.cfg.low);
                let n = st.frames.take(want.min(spare).max(1));
                if st.frames.free() < self.cfg.low {
                    self.signals.reclaim.notify_one();
                }
                return (st, Some(n));
            }
            self.signals.reclaim.notify_one();
            // Reclaim toward the high watermark, as the background reclaimer would.
            let (g, freed) = self.escalate(st, self.cfg.high.clamp(1, DIRECT_BATCH));
            st = g;
            if freed > 0 || st.frames.free() > 0 {
                continue;
            }
            if st.inflight.any() || st.reap.frames() > 0 {
                st = self.wait_progress(st, Duration::from_millis(20));
                continue;
            }
            note!(
                Debug,
                "pagewarden: reclaim: no free frame and nothing evictable or in flight; escalating to the OOM killer"
            );
            return (st, None);
        }
    }

    /// Frees up to `want` frames along the escalation path: clean pages first (no I/O), then
    /// dirty pages of `Shared` file maps (written back to their files), then anything the
    /// replacement policy picks (dirty anonymous and private pages go to swap). Pinned pages are
    /// never taken. The OOM killer is the caller's last step.
    pub(crate) fn escalate<'a>(&'a self, mut st: Guard<'a>, want: usize) -> (Guard<'a>, usize) {
        // Each step runs only when the ones before it found nothing (callers loop for more).
        if st.usage.clean > 0 {
            let (g, f) = self.evict(st, Victims::Clean(want));
            st = g;
            if f > 0 {
                return (st, f);
            }
        }
        if st.file_maps.any() {
            let (g, f) = self.evict(st, Victims::FileDirty(want));
            st = g;
            if f > 0 {
                return (st, f);
            }
        }
        self.evict(st, Victims::Policy(want))
    }

    /// Evicts now, for [`Runtime::reclaim`](crate::Runtime::reclaim).
    pub(crate) fn reclaim_now(&self, frames: usize) -> usize {
        let mut st = self.lock();
        let mut total = 0;
        while total < frames {
            let (g, freed) = self.escalate(st, (frames - total).min(BACKGROUND_BATCH));
            st = g;
            if freed == 0 {
                break;
            }
            total += freed;
        }
        total
    }

    /// Evicts the resident pages of `range` in region `rid`, returning frames freed.
    pub(crate) fn page_out(&self, rid: u32, range: std::ops::Range<u64>) -> usize {
        let st = self.lock();
        self.evict(st, Victims::Pages(rid, range)).1
    }

    /// Evicts pages; returns the guard and the number of frames freed. May drop the lock for I/O.
    pub(crate) fn evict<'a>(&'a self, st: Guard<'a>, victims: Victims) -> (Guard<'a>, usize) {
        let mut bufs = lock(&self.bufs.evict).pop().unwrap_or_default();
        let res = self.evict_with(st, victims, &mut bufs);
        bufs.clear();
        let mut pool = lock(&self.bufs.evict);
        // Kept while the pool has room (it never grows here).
        if pool.len() < pool.capacity() {
            pool.push(bufs);
        }
        res
    }

    fn evict_with<'a>(&'a self, mut st: Guard<'a>, victims: Victims, bufs: &mut EvictBufs) -> (Guard<'a>, usize) {
        let EvictBufs { chosen, jobs, clean_shared, drops } = bufs;
        if !self.select_victims(&mut st, victims, chosen) {
            return (st, 0);
        }
        let mut freed = self.plan_evictions(&mut st, chosen, jobs, clean_shared, drops);
        if jobs.is_empty() && drops.is_empty() {
            if freed > 0 {
                self.notify_progress();
            }
            return (st, freed);
        }
        drop(st);
        let (disk_full, broken) = self.write_out(jobs, drops);
        let mut st = self.lock();
        for (k, _) in drops.drain(..) {
            freed += self.dropped(&mut st, k);
        }
        let (settled, file_failed) = self.finish_evictions(&mut st, jobs);
        freed += settled;
        if !st.held_events.is_empty() {
            self.publish_landed(&mut st);
        }
        if file_failed {
            self.publish(Event::SwapFailed {
                error: "writing back to a mapped file failed; its dirty pages stay in memory".into(),
            });
        }
        if disk_full {
            self.swap_disk_full(&mut st);
        }
        if broken && st.slots.mark_broken() {
            self.publish(Event::SwapFailed { error: "swap write failed; dirty pages stay in memory".into() });
        }
        self.notify_progress();
        (st, freed)
    }

    /// Chooses the victims into `chosen`; false when there is nothing to look at.
    fn select_victims(&self, st: &mut State, victims: Victims, chosen: &mut Vec<PageKey>) -> bool {
        match victims {
            // With swap unwritable only clean pages can go: when there are none, skip the scan.
            Victims::Policy(_) if !st.swap_writable() && st.usage.clean == 0 && !st.file_maps.any() => {
                return false;
            }
            Victims::Clean(max) => {
                // Clean pages among the coldest few, without disturbing the order of the rest: a
                // cold dirty page is passed over now, not protected for ever.
                let st = &mut *st;
                let (held, shares) = (&st.usage.held, &st.shares);
                let evictable = |k, e: Entry| !held.contains_key(&k) && !shares.must_write(e);
                st.lru.peek_victims(
                    &mut st.regions,
                    evictable,
                    max.min(st.usage.clean),
                    (4 * max).max(32),
                    false,
                    chosen,
                );
            }
            Victims::FileDirty(max) => {
                let st = &mut *st;
                let (held, files) = (&st.usage.held, &st.file_maps);
                let evictable = |k, e: Entry| !held.contains_key(&k) && e.dirty() && files.writable(unkey(k).0);
                // Strictly before any swap write: referenced or active pages too.
                st.lru.peek_victims(&mut st.regions, evictable, max, PREFER_WINDOW.max(8 * max), true, chosen);
            }
            Victims::Policy(max) => {
                let mut dirty = 0usize;
                while chosen.len() < max {
                    let can_dirty = st.swap_writable() && (st.slots.available() as usize) > dirty;
                    let st = &mut *st;
                    let (held, shares, files) = (&st.usage.held, &st.shares, &st.file_maps);
                    let evictable = |k, e: Entry| {
                        let r = unkey(k).0;
                        !held.contains_key(&k)
                            && (!shares.must_write(e) || if files.is_shared(r) { files.writable(r) } else { can_dirty })
                    };
                    // With nothing writable, only clean pages can go: look for them among the
                    // coldest pages, not the whole resident set (a full scan per fault would make
                    // a thrashing runtime slower still instead of letting exhaustion be declared).
                    let steps = if can_dirty || files.any() { usize::MAX } else { 4 * PREFER_WINDOW };
                    let taken = &*chosen;
                    let evictable = |k, e| !taken.contains(&k) && evictable(k, e);
                    let Some(k) = st.lru.victim_within(&mut st.regions, evictable, steps) else { break };
                    let (r, p) = unkey(k);
                    let e = st.regions[&r].pages.get(p);
                    let to_swap = st.shares.must_write(e) && !st.file_maps.is_shared(r);
                    dirty += usize::from(to_swap);
                    chosen.push(k);
                    if to_swap && e.share().is_none() {
                        let room = (max - chosen.len()).min((st.slots.available() as usize).saturating_sub(dirty));
                        dirty += self.cluster(st, chosen, r, p, room);
                    }
                }
            }
            Victims::Pages(rid, range) => {
                let mut dirty = 0usize;
                let Some(r) = st.regions.get(&rid) else {
                    return false;
                };
                if r.live != Liveness::Live {
                    return false;
                }
                for p in range {
                    let e = r.pages.get(p);
                    if !e.is_resident() || e.pinned() || st.usage.held.contains_key(&key(rid, p)) {
                        continue;
                    }
                    if st.shares.must_write(e) {
                        if st.file_maps.is_shared(rid) {
                            if !st.file_maps.writable(rid) {
                                continue;
                            }
                        } else if !(st.swap_writable() && (st.slots.available() as usize) > dirty) {
                            continue;
                        } else {
                            dirty += 1;
                        }
                    }
                    chosen.push(key(rid, p));
                }
            }
        }
        !chosen.is_empty()
    }

    /// Under the lock: marks the chosen pages in flight. Clean pages need no I/O (those of
    /// copy-on-write shares are dropped at once, the others go to `drops`); dirty ones become
    /// `jobs` with a slot (or their file) and, on the MOVE path, a pool hole. Returns the frames
    /// freed already.
    fn plan_evictions(
        &self,
        st: &mut State,
        chosen: &mut Vec<PageKey>,
        jobs: &mut Vec<Job>,
        clean_shared: &mut Vec<PageKey>,
        drops: &mut Vec<(PageKey, Arc<Mapping>)>,
    ) -> usize {
        // In page order: neighbours get neighbouring slots and pool holes, and leave together.
        chosen.sort_unstable();
        let mut freed = 0;
        let n_dirty = chosen
            .iter()
            .filter(|&&k| {
                let (rid, page) = unkey(k);
                st.shares.must_write(st.regions[&rid].pages.get(page)) && !st.writes_back(rid)
            })
            .count();
        let run = st.slots.alloc_run(n32(n_dirty));
        // Slots of the run handed to jobs (the rest go back before the I/O).
        let mut from_run = 0usize;
        // Clean frames of copy-on-write shares are discarded before the lock goes (see below);
        // other clean pages are in flight from here, their frames discarded without the lock.
        for k in chosen.drain(..) {
            let (rid, page) = unkey(k);
            let mut e = st.region(rid).pages.get(page);
            if !st.shares.must_write(e) {
                // Clean: the swap copy is valid (or the page was never written, or a relative
                // holds the shared data too). No I/O.
                freed += self.plan_clean(st, k, e, clean_shared, drops);
                continue;
            }
            // A dirty page of a `Shared` file map goes back to its file: no slot.
            let file = if e.dirty() && st.writes_back(rid) { st.region(rid).file.clone() } else { None };
            let slot = match run {
                _ if file.is_some() => u32::MAX,
                Some(start) if from_run < n_dirty => {
                    from_run += 1;
                    start + n32(from_run - 1)
                }
                _ => match st.slots.alloc() {
                    Some(s) => s,
                    None => {
                        st.lru.requeue(k, &mut e);
                        st.region_mut(rid).pages.set(page, e);
                        continue;
                    }
                },
            };
            st.lru.leave(&mut e);
            // A shared page's last copy counted as clean until now.
            st.usage.clean -= usize::from(!e.dirty());
            e.set_state(PageState::Evicting);
            let r = st.region_mut(rid);
            r.pages.set(page, e);
            r.counts.inflight += 1;
            r.counts.writing_back += u64::from(file.is_some());
            let map = r.map.clone();
            st.inflight.start_evict(file.is_some());
            let shared = e.share().is_some();
            jobs.push(Job { rid, page, slot, hole: None, map, shared, taken: None, ok: false, sum: 0, file });
        }
        if self.path == EvictionPath::Move {
            self.assign_holes(st, jobs);
        }
        freed += self.take_shared(st, jobs);
        self.discard_runs(st, clean_shared);
        if let Some(start) = run {
            // The run's slots no job took.
            for s in start + n32(from_run)..start + n32(n_dirty) {
                st.slots.free(s);
            }
        }
        freed
    }

    /// Plans the eviction of clean page `k` (entry `e`): no I/O. A copy-on-write share's frame
    /// goes at once (into `clean_shared`, discarded before the lock is released: returns 1, the
    /// frame freed); any other page is in flight until its frame is discarded (into `drops`).
    fn plan_clean(
        &self,
        st: &mut State,
        k: PageKey,
        mut e: Entry,
        clean_shared: &mut Vec<PageKey>,
        drops: &mut Vec<(PageKey, Arc<Mapping>)>,
    ) -> usize {
        let (rid, page) = unkey(k);
        st.lru.leave(&mut e);
        st.lru.stamp(&mut e);
        st.usage.clean -= 1;
        if let Some(id) = e.share() {
            // A share's frame stops counting as a copy at once, so that its relatives'
            // `must_write` sees it gone, and the page is `Shared` at once, so that a
            // relative dying meanwhile can hand it the last copy: its frame must be gone
            // before the lock is, and is discarded under it.
            st.shares.get_mut(id).resident -= 1;
            let r = st.region_mut(rid);
            r.counts.shared_resident -= 1;
            r.counts.resident -= 1;
            e.set_state(PageState::Shared);
            r.pages.set(page, e);
            st.frames.give(1);
            self.count_clean_drop(st, rid);
            clean_shared.push(k);
            return 1;
        }
        // In flight until its frame is discarded: readers may go on reading it, and a
        // fault on it waits for the drop to end.
        e.set_state(PageState::Evicting);
        let r = st.region_mut(rid);
        r.pages.set(page, e);
        r.counts.inflight += 1;
        let map = r.map.clone();
        st.inflight.start_drop();
        drops.push((k, map));
        0
    }

    /// Pool holes for the jobs: a run of neighbouring ones for each run of neighbouring pages.
    fn assign_holes(&self, st: &mut State, jobs: &mut [Job]) {
        let mut i = 0;
        while i < jobs.len() {
            let j = i + run_len(&jobs[i..], |a, b| a.rid == b.rid && b.page == a.page + 1);
            let run = if j - i > 1 { st.frames.take_hole_run(j - i) } else { None };
            match run {
                Some(h) => (i..j).for_each(|k| jobs[k].hole = Some(h + n32(k - i))),
                None => (i..j).for_each(|k| {
                    jobs[k].hole = Some(st.frames.take_hole().expect("a resident page implies a pool hole"));
                }),
            }
            i = j;
        }
    }

    /// A share's last copy leaves its page under the lock, so that the share's bookkeeping never
    /// sees its frame half gone. Returns the frames freed by jobs that could not be taken.
    fn take_shared(&self, st: &mut State, jobs: &mut Vec<Job>) -> usize {
        let mut freed = 0;
        let mut k = 0;
        while k < jobs.len() {
            if jobs[k].shared {
                if let Err(errno) = self.take(&jobs[k]) {
                    let job = jobs.remove(k);
                    freed += self.not_taken(st, job, errno);
                    continue;
                }
                jobs[k].taken = Some(Ok(()));
            }
            k += 1;
        }
        freed
    }

    /// Without the lock: takes the dirty pages out of their arenas, writes them (to their files
    /// or to swap) and drops the frames of the clean ones and of those written out. Returns
    /// whether the disk filled up and whether a swap write failed.
    fn write_out(&self, jobs: &mut [Job], drops: &mut [(PageKey, Arc<Mapping>)]) -> (bool, bool) {
        let ps = self.page();
        // Without the lock. A page in flight changes hands only here: a fault on it waits, and
        // the replacement policy, forks and kills leave it to this function.
        // Dirty pages: taken out of their arena (moved into pool holes, or write-protected), a
        // run of neighbours at a time. A write that lands before the take goes out with the
        // page; one after it faults and waits.
        {
            let _moving = self.moving.read().unwrap_or_else(|p| p.into_inner());
            let mut i = 0;
            while i < jobs.len() {
                if jobs[i].taken.is_some() {
                    // A share's last copy, taken under the lock above.
                    i += 1;
                    continue;
                }
                let j = i + run_len(&jobs[i..], |a, b| {
                    b.taken.is_none()
                        && b.rid == a.rid
                        && b.page == a.page + 1
                        && b.hole.map(|h| h.wrapping_sub(1)) == a.hole
                });
                self.take_run(&mut jobs[i..j]);
                i = j;
            }
        }
        debug_assert!(jobs.iter().all(|j| j.taken.is_some()), "every job was tried");
        // Then written: file pages to their place in their file, the rest one vectored write per
        // run of consecutive slots.
        jobs.sort_by_key(|j| (j.taken != Some(Ok(())), j.file.is_none(), j.slot));
        let takes = jobs.iter().take_while(|j| j.taken == Some(Ok(()))).count();
        let files = jobs[..takes].iter().take_while(|j| j.file.is_some()).count();
        for job in &mut jobs[..files] {
            let (m, off) = self.written_from(job);
            let f = job.file.as_ref().expect("a file job");
            let res = f.write_back(job.page, 1, m, off, ps);
            match res {
                Ok(()) => job.ok = true,
                Err(e) => note!(Error, "pagewarden: writing a page back to its file failed: {e}"),
            }
        }
        let mut i = files;
        // A write the swap file could not grow for (the disk is full), and one that failed.
        let (mut disk_full, mut broken) = (false, false);
        while i < takes {
            let j = i + run_len(&jobs[i..takes], |a, b| b.slot == a.slot + 1);
            let res = self.swap_write(jobs[i].slot, j - i, &|k| self.written_from(&jobs[i + k]));
            match &res {
                Err(e) if e.is_full() => disk_full = true,
                Err(e) => {
                    broken = true;
                    note!(Error, "pagewarden: swap write failed: {e}; swap is treated as full from now on");
                }
                Ok(()) => {}
            }
            // The pages cannot change while they are written (moved out, or write-protected), so
            // their checksum now is the checksum of what is in the slots.
            for job in &mut jobs[i..j] {
                let (m, off) = self.written_from(job);
                job.sum = crate::engine::swap::page_sum(m, off, ps);
                job.ok = res.is_ok();
            }
            i = j;
        }

        // The frames to drop, with as few TLB flushes as the kernel allows (see `discard_many`):
        // the clean pages', neighbours as one range, and the pool frames whose pages were
        // written out.
        drops.sort_unstable_by_key(|d| d.0);
        let clean_runs = runs(drops, |a, b| b.0 == a.0 + 1).map(|(d, n)| (&*d.1, idx(unkey(d.0).1) * ps, n * ps));
        // Written out: a pool frame, or the page itself where it was write-protected in place.
        let written = jobs.iter().filter(|j| j.ok).map(|job| {
            let (m, off) = self.written_from(job);
            (m, off, ps)
        });
        if let Err(err) = crate::sys::mem::discard_many(clean_runs.chain(written)) {
            note!(Error, "pagewarden: dropping frames failed: {err}");
        }

        (disk_full, broken)
    }

    /// Under the lock again: each page settles in its new state (or back where it was when its
    /// write failed). Returns the frames freed and whether a file refused a write.
    fn finish_evictions(&self, st: &mut State, jobs: &mut Vec<Job>) -> (usize, bool) {
        let mut freed = 0;
        let mut file_failed = false;
        for job in jobs.drain(..) {
            if let Some(Err(errno)) = job.taken {
                freed += self.not_taken(st, job, errno);
                continue;
            }
            st.inflight.end_evict(job.file.is_some());
            st.region_mut(job.rid).counts.writing_back -= u64::from(job.file.is_some());
            let (rid, page) = (job.rid, job.page);
            let live = st.region(rid).live;
            let mut e = st.region(rid).pages.get(page);
            st.region_mut(rid).counts.inflight -= 1;
            let waiters = e.waiters();
            e.set_waiters(false);
            if job.ok || live != Liveness::Live {
                self.settle_written(st, job, e, live);
                freed += 1;
            } else {
                file_failed |= self.put_back(st, job, e);
            }
            if waiters {
                self.wake(st, rid, page, 1);
            }
            if live == Liveness::Released {
                self.forget_if_done(st, rid);
            }
        }
        (freed, file_failed)
    }

    /// A page written out (or whose region died meanwhile) settles: its frame is free, and the
    /// page is swapped, back in its file, or gone with its region.
    fn settle_written(&self, st: &mut State, job: Job, mut e: Entry, live: Liveness) {
        let ps = self.page();
        let Job { rid, page, slot, hole, map, ok, sum, file, .. } = job;
        let off = idx(page) * ps;
        match hole {
            // Its page was written out and dropped above: an empty hole again.
            Some(h) if ok => {
                st.frames.return_hole(h);
                st.frames.give(1);
            }
            None if ok => st.frames.give(1),
            Some(h) => st.frames.evicted_into(h),
            None => {
                let _ = map.discard(off, ps);
                st.frames.give(1);
            }
        }
        st.stalls.evicted();
        if let Some(id) = e.share() {
            self.evicted_shared(st, rid, page, e, id, ok.then_some((slot, sum)));
        } else if file.is_some() {
            // Back in its file: missing again, read from the file when next touched.
            let r = st.region_mut(rid);
            r.counts.resident -= 1;
            if live == Liveness::Live {
                e.set_state(PageState::Unpopulated);
                e.set_dirty(false);
                st.lru.stamp(&mut e);
                st.region_mut(rid).pages.set(page, e);
                let c = st.counters(rid);
                c.evictions += 1;
                c.file_writebacks += 1;
            } else {
                r.pages.set(page, Entry::default());
            }
        } else if live == Liveness::Live {
            e.set_state(PageState::Swapped);
            e.set_dirty(false);
            st.attach_slot(rid, &mut e, slot);
            st.slots.record(slot, sum);
            st.lru.stamp(&mut e);
            let r = st.region_mut(rid);
            r.counts.resident -= 1;
            r.counts.swapped += 1;
            r.pages.set(page, e);
            let c = st.counters(rid);
            c.evictions += 1;
            c.writebacks += 1;
        } else {
            st.slots.free(slot);
            let r = st.region_mut(rid);
            r.counts.resident -= 1;
            r.pages.set(page, Entry::default());
        }
    }

    /// A page whose write failed goes back exactly as it was: resident and dirty. Returns whether
    /// it was a file's (which refuses writes from now on).
    fn put_back(&self, st: &mut State, job: Job, mut e: Entry) -> bool {
        let ps = self.page();
        let Job { rid, page, slot, hole, map, file, .. } = job;
        let off = idx(page) * ps;
        let mut file_failed = false;
        // Put it back exactly as it was: resident and dirty.
        if file.is_some() {
            // A file that refuses writes: its dirty pages stay in memory from now on.
            st.file_maps.stick(rid);
            file_failed = true;
        } else {
            st.slots.free(slot);
        }
        // A shared page stays write-protected: its next write must break the sharing.
        let shared = e.share().is_some();
        let back = match hole {
            Some(h) => {
                let pool = self.mem.pool.as_ref().expect("pool exists on the MOVE path");
                let r = self.uffd.move_pages(&map, off, pool, h as usize * ps, ps, !shared);
                if r.is_ok() {
                    st.frames.return_hole(h);
                }
                r.map(|_| ())
                    .and_then(|()| if shared { self.uffd.writeprotect(&map, off, ps, true, true) } else { Ok(()) })
            }
            None if shared => self.uffd.wake(&map, off, ps),
            None => self.uffd.writeprotect(&map, off, ps, false, true),
        };
        st.usage.clean += usize::from(shared);
        if let Err(err) = back {
            note!(Error, "pagewarden: restoring page {page} after a failed write failed: {err}");
        }
        e.set_state(PageState::Resident);
        e.set_slot(None);
        st.lru.admit(key(rid, page), &mut e, false);
        st.region_mut(rid).pages.set(page, e);
        file_failed
    }

    /// The swap store could not grow: the disk (or whatever holds it) is full. The slots it holds
    /// stay in use; those past it are never handed out again, so swap is as full as the disk made
    /// it (the pages whose writes failed are back in memory, dirty).
    fn swap_disk_full(&self, st: &mut State) {
        let Some(swap) = self.swap.as_ref() else { return };
        let held = swap.backed().min(swap.capacity());
        if held < st.slots.limit() {
            let ps = self.page() as u64;
            note!(
                Warn,
                "pagewarden: the disk holding the swap file is full: swap stops at {} of {} slots ({} of {} bytes)",
                held,
                st.slots.capacity(),
                u64::from(held) * ps,
                u64::from(swap.capacity()) * ps
            );
            st.slots.set_limit(held);
            // Swap is full as far as the disk goes: say so now, however many slots the file
            // still has free.
            if let Some((free, cap)) = st.slots.low(true) {
                self.publish(Event::SwapLow { free_slots: free, capacity: cap });
            }
        }
        self.check_swap_low(st);
    }

    /// Takes a run of neighbouring dirty pages (with neighbouring pool holes on the MOVE path)
    /// out of their arena with one ioctl; pages after the first that fails are tried one by one.
    fn take_run(&self, run: &mut [Job]) {
        let ps = self.page();
        if let Some(plan) = &self.cfg.swap_faults {
            if let Some(d) = plan.take_delay {
                std::thread::sleep(d);
            }
            if let Some(errno) = plan.take_errno {
                run.iter_mut().for_each(|job| job.taken = Some(Err(errno)));
                return;
            }
        }
        let taken = if run.len() == 1 {
            0
        } else {
            let (map, off, len) = (&run[0].map, idx(run[0].page) * ps, run.len() * ps);
            let res = match run[0].hole {
                Some(h) => {
                    let pool = self.mem.pool.as_ref().expect("pool exists on the MOVE path");
                    self.uffd.move_run(pool, h as usize * ps, map, off, len, false).map(|(bytes, _)| bytes / ps)
                }
                None => self.uffd.writeprotect(map, off, len, true, false).map(|()| run.len()),
            };
            res.unwrap_or(0)
        };
        for (k, job) in run.iter_mut().enumerate() {
            job.taken = Some(if k < taken { Ok(()) } else { self.take(job) });
        }
    }

    /// Dirty neighbours of victim `page` of `rid` that may leave with it, up to `room` of them
    /// and [`CLUSTER`] pages in all: resident, written, plain (no share, no file to write back),
    /// not pinned or held, and cold — on the inactive list, not referenced since they were
    /// admitted. For uniformly random access any page is as likely to be used next as another;
    /// for streams and for data written together, neighbours go cold together.
    fn cluster(&self, st: &State, chosen: &mut Vec<PageKey>, rid: u32, page: u64, room: usize) -> usize {
        let r = st.region(rid);
        if st.writes_back(rid) {
            return 0;
        }
        let fits = |chosen: &[PageKey], p: u64| {
            let e = r.pages.get(p);
            let k = key(rid, p);
            e.is_resident()
                && e.dirty()
                && e.queued()
                && !e.active()
                && !e.referenced()
                && !e.pinned()
                && e.share().is_none()
                && !st.usage.held.contains_key(&k)
                && !chosen.contains(&k)
        };
        let pages = u64::try_from(r.map.len() / self.page()).unwrap_or(0);
        let start = chosen.len();
        let mut p = page + 1;
        while chosen.len() - start < room && p < pages && p < page + CLUSTER && fits(chosen, p) {
            chosen.push(key(rid, p));
            p += 1;
        }
        let mut p = page;
        while chosen.len() - start < room
            && p > 0
            && ((chosen.len() - start) as u64) < CLUSTER - 1
            && fits(chosen, p - 1)
        {
            p -= 1;
            chosen.push(key(rid, p));
        }
        chosen.len() - start
    }

    /// Where a dirty page's data is while it is written: its pool frame (MOVE path), or the page
    /// itself, write-protected in place.
    fn written_from<'m>(&'m self, job: &'m Job) -> (&'m Mapping, usize) {
        match job.hole {
            Some(h) => (self.mem.pool.as_ref().expect("pool exists on the MOVE path"), h as usize * self.page()),
            None => (&*job.map, idx(job.page) * self.page()),
        }
    }

    /// Takes a dirty page out of its arena for writing: moved into its pool hole (MOVE path) or
    /// write-protected in place. `Err(errno)` when it could not be.
    fn take(&self, job: &Job) -> Result<(), i32> {
        let ps = self.page();
        let off = idx(job.page) * ps;
        match job.hole {
            Some(h) => {
                let pool = self.mem.pool.as_ref().expect("pool exists on the MOVE path");
                match self.uffd.move_pages(pool, h as usize * ps, &job.map, off, ps, false) {
                    Ok(Filled::All) => Ok(()),
                    Ok(Filled::Exists { .. }) => {
                        note!(Error, "pagewarden: pool frame {h} was not empty");
                        Err(libc::EEXIST)
                    }
                    Err(err) => Err(err.errno),
                }
            }
            None => self.uffd.writeprotect(&job.map, off, ps, true, false).map_err(|e| e.errno),
        }
    }

    /// Ends the eviction of a page that could not be taken out of its arena (`errno`). A page that
    /// was not there (the application discarded it itself: `ENOENT`) or whose region died is gone
    /// and its frame freed; any other stays resident and dirty, for another time. Returns the
    /// frames freed.
    fn not_taken(&self, st: &mut State, job: Job, errno: i32) -> usize {
        let ps = self.page();
        let Job { rid, page, slot, hole, map, file, .. } = job;
        st.inflight.end_evict(file.is_some());
        st.region_mut(rid).counts.writing_back -= u64::from(file.is_some());
        if let Some(h) = hole {
            st.frames.return_hole(h);
        }
        if file.is_none() {
            st.slots.free(slot);
        }
        let live = st.region(rid).live;
        let mut e = st.region(rid).pages.get(page);
        st.region_mut(rid).counts.inflight -= 1;
        let waiters = e.waiters();
        e.set_waiters(false);
        let freed = if errno == libc::ENOENT || live != Liveness::Live {
            if errno != libc::ENOENT {
                // A dirty page of a `Shared` file map whose region died meanwhile: the kill or
                // release left it to this eviction, so it goes to its file now (it is still
                // mapped, and nobody can write it any more), or the write would be lost.
                if file.is_some() && e.dirty() {
                    self.write_back_dropped(st, rid, &[page]);
                }
                let _ = map.discard(idx(page) * ps, ps);
            }
            let r = st.region_mut(rid);
            r.counts.resident -= 1;
            r.pages.set(page, Entry::default());
            if let Some(id) = e.share() {
                self.unref_share(st, rid, page, id, true);
            }
            st.frames.give(1);
            1
        } else {
            // EBUSY: pinned by in-progress I/O or shared. Try it another time.
            note!(Debug, "pagewarden: cannot evict page {page} of region {rid} now (errno {errno})");
            e.set_state(PageState::Resident);
            st.usage.clean += usize::from(!e.dirty());
            st.lru.admit(key(rid, page), &mut e, false);
            st.region_mut(rid).pages.set(page, e);
            0
        };
        if waiters {
            self.wake(st, rid, page, 1);
        }
        if file.is_some() && !st.held_events.is_empty() {
            self.publish_landed(st);
        }
        if live == Liveness::Released {
            self.forget_if_done(st, rid);
        }
        freed
    }

    /// Ends the drop of a clean page whose frame was discarded: swapped (its slot holds the data),
    /// or missing again. Returns the frames freed.
    fn dropped(&self, st: &mut State, k: PageKey) -> usize {
        let (rid, page) = unkey(k);
        st.inflight.end_drop();
        let live = st.region(rid).live;
        let r = st.region_mut(rid);
        r.counts.inflight -= 1;
        r.counts.resident -= 1;
        let mut e = r.pages.get(page);
        let waiters = e.waiters();
        e.set_waiters(false);
        if live == Liveness::Live {
            if e.slot().is_some() {
                e.set_state(PageState::Swapped);
                r.counts.swapped += 1;
            } else {
                e.set_state(PageState::Unpopulated);
            }
            r.pages.set(page, e);
            self.count_clean_drop(st, rid);
        } else {
            st.release_slot(rid, &mut e);
            st.region_mut(rid).pages.set(page, Entry::default());
        }
        st.frames.give(1);
        if waiters {
            self.wake(st, rid, page, 1);
        }
        if live == Liveness::Released {
            self.forget_if_done(st, rid);
        }
        1
    }

    fn count_clean_drop(&self, st: &mut State, rid: u32) {
        st.stalls.evicted();
        let c = st.counters(rid);
        c.evictions += 1;
        c.clean_drops += 1;
    }

    /// Discards the frames of these pages, neighbours as one range (under the lock).
    fn discard_runs(&self, st: &State, keys: &mut [PageKey]) {
        let ps = self.page();
        keys.sort_unstable();
        let ranges = runs(keys, |a, b| *b == *a + 1).map(|(&k, n)| {
            let (rid, first) = unkey(k);
            (&*st.region(rid).map, idx(first) * ps, n * ps)
        });
        if let Err(err) = crate::sys::mem::discard_many(ranges) {
            note!(Error, "pagewarden: dropping clean pages failed: {err}");
        }
    }

    /// Finishes the eviction of a copy-on-write page whose frame held its share's only copy:
    /// `written` is the slot and checksum when the write succeeded (the share keeps the slot).
    /// The frame is already released.
    fn evicted_shared(&self, st: &mut State, rid: u32, page: u64, mut e: Entry, id: u32, written: Option<(u32, u32)>) {
        if let Some((slot, sum)) = written {
            let sh = st.shares.get_mut(id);
            if sh.slot.is_none() {
                sh.slot = Some(slot);
                st.slots.record(slot, sum);
            } else {
                st.slots.free(slot);
            }
        }
        let live = st.region(rid).live;
        st.region_mut(rid).counts.resident -= 1;
        if live == Liveness::Live {
            st.shares.get_mut(id).resident -= 1;
            st.region_mut(rid).counts.shared_resident -= 1;
            e.set_state(PageState::Shared);
            st.lru.stamp(&mut e);
            st.region_mut(rid).pages.set(page, e);
            let c = st.counters(rid);
            c.evictions += 1;
            c.writebacks += 1;
            if st.shares.get(id).refs == 1 {
                self.normalize_share(st, page, id);
            }
            return;
        }
        st.region_mut(rid).pages.set(page, Entry::default());
        self.unref_share(st, rid, page, id, true);
        if written.is_none() {
            self.lose_share(st, page, id);
        }
    }

    /// Drops every page of a region that is not in flight: pins released, slots freed, entries
    /// cleared, and the frames discarded — at once, or with `defer` by the reaper in chunks (the
    /// frames count as in use until their chunk is discarded, so the budget holds throughout).
    /// In-flight pages are finished by their owner, which sees the region dead; emergency copies
    /// for accessors are dropped when the accessor returns. Returns (frames freed, slots freed).
    pub(crate) fn drop_pages(&self, st: &mut State, rid: u32, defer: bool) -> (u64, u64) {
        let ps = self.page();
        let (mut frames, mut slots, mut pinned, mut kept_slots) = (0u64, 0u64, 0u64, 0u64);
        // Runs of resident pages, discarded with one madvise each.
        let mut runs: Vec<(u64, u64)> = Vec::new();
        // Copy-on-write references, settled once the table is walked: (page, share, resident).
        let mut refs: Vec<(u64, u32, bool)> = Vec::new();
        let mut shared_frames = 0u64;
        // Dirty pages of a `Shared` file map: written back before their frames go.
        let writes_back = st.writes_back(rid);
        let mut wb: Vec<u64> = Vec::new();
        let state = &mut *st;
        let r = state.regions.get_mut(&rid).expect("dropping pages of a live region");
        let map = r.map.clone();
        r.pages.retain(|p, e| {
            match e.state() {
                PageState::PageIn | PageState::Evicting => {
                    kept_slots += u64::from(e.slot().is_some());
                    return true;
                }
                PageState::Resident => {
                    if e.pinned() {
                        pinned += 1;
                    } else {
                        state.lru.leave(e);
                        state.usage.clean -= usize::from(!e.dirty());
                    }
                    if let Some(id) = e.share() {
                        refs.push((p, id, true));
                        shared_frames += 1;
                        return false;
                    }
                    if writes_back && e.dirty() {
                        wb.push(p);
                    }
                    match runs.last_mut() {
                        Some(run) if run.1 == p => run.1 = p + 1,
                        _ => runs.push((p, p + 1)),
                    }
                    frames += 1;
                }
                PageState::Swapped => slots += 1,
                PageState::Shared => refs.extend(e.share().map(|id| (p, id, false))),
                PageState::Unpopulated | PageState::Poisoned => {}
            }
            if let Some(s) = e.slot() {
                state.slots.free(s);
            }
            false
        });
        r.counts.slots = kept_slots;
        r.counts.resident -= frames + shared_frames;
        r.counts.pinned -= pinned;
        r.counts.swapped = 0;
        r.stream = Default::default();
        st.usage.pinned -= idx(pinned).min(st.usage.pinned);
        self.write_back_dropped(st, rid, &wb);
        // A frame holding a share's only copy goes to a relative (moved, or copied and then
        // discarded here); any other shared frame is freed like the rest.
        for (p, id, resident) in refs {
            let sh = *st.shares.get(id);
            if resident && sh.refs > 1 && sh.slot.is_none() && sh.resident == 1 && self.donate(st, rid, p, id, false) {
                let _ = map.discard(idx(p) * ps, ps);
            } else if resident {
                runs.push((p, p + 1));
                frames += 1;
            }
            self.unref_share(st, rid, p, id, resident);
            if resident {
                self.lose_share(st, p, id);
            }
        }
        runs.sort_unstable();
        if defer {
            debug_assert_eq!(runs.iter().map(|&(a, b)| b - a).sum::<u64>(), frames);
            for (a, b) in runs {
                st.reap.push(&map, a, b);
            }
            self.signals.reclaim.notify_all();
        } else {
            let ranges: Vec<_> = runs.iter().map(|&(a, b)| (&*map, idx(a) * ps, idx(b - a) * ps)).collect();
            if let Err(e) = crate::sys::mem::discard_many(ranges.iter().copied()) {
                note!(Error, "pagewarden: discarding pages failed: {e}");
            }
            st.frames.give(idx(frames));
        }
        (frames, slots)
    }

    /// The OOM reaper: discards killed arenas' frames in chunks, dropping the lock between them
    /// so that waiting faults get the first frames within a chunk's time, not the whole arena's.
    pub(crate) fn reap_some<'a>(&'a self, mut st: Guard<'a>) -> Guard<'a> {
        const CHUNK: u64 = 1024;
        let ps = self.page();
        while let Some((map, first, n)) = st.reap.take(CHUNK) {
            drop(st);
            if let Err(e) = map.discard(idx(first) * ps, idx(n) * ps) {
                note!(Error, "pagewarden: reaping pages failed: {e}");
            }
            st = self.lock();
            st.frames.give(idx(n));
            st.reap.reaped(n);
            self.notify_progress();
        }
        st
    }

    /// Releases a region: frames and slots freed at once (after waiting for the region's
    /// in-flight I/O to end), range unregistered, mapping unmapped.
    pub(crate) fn release_region(&self, rid: u32) {
        let mut st = self.lock();
        let Some(r) = st.regions.get_mut(&rid) else {
            return;
        };
        r.live = Liveness::Released;
        let (arena, map) = (r.arena, r.map.clone());
        st.regions.unmap(rid);
        if let Some(a) = st.arenas.get_mut(&arena) {
            a.regions.remove(&rid);
        }
        let (dropped, _) = self.drop_pages(&mut st, rid, false);
        st.usage.committed -= (map.len() as u64).min(st.usage.committed);
        let gone = st.emergency.oom_poisoned.iter().filter(|&&(r, _)| r == rid).count();
        st.emergency.oom_poisoned.retain(|&(r, _)| r != rid);
        if let Some(a) = st.arenas.get(&arena) {
            a.shared.oom_poisoned.fetch_sub(gone, Ordering::AcqRel);
        }
        let scrubbed = st.emergency.reserve.iter().filter(|&&(r, _, _)| r == rid).count();
        st.emergency.reserve.retain(|&(r, _, _)| r != rid);
        if let Some(a) = st.arenas.get(&arena) {
            a.shared.reserve_pages.fetch_sub(scrubbed, Ordering::AcqRel);
        }
        // Stale queue entries would be skipped anyway; sweep them when there are any.
        if dropped > 0 {
            st.lru.forget_region(rid);
        }
        // Pages in flight are finished by their owners (they see the region released). Wait for
        // them, so that when the region's drop returns all of its frames and slots are free.
        // (A failed runtime's in-flight work will never finish: do not wait for it.)
        // The range stays registered until then: an eviction still has to take its page out
        // (write-protect or move it) before writing it back, and on an unregistered range that
        // fails (ENOENT), which would drop a dirty page of a `Shared` map unwritten.
        while !self.is_failed() && st.regions.get(&rid).is_some_and(|r| r.counts.inflight > 0) {
            st = self.wait_progress(st, Duration::from_millis(5));
        }
        if let Err(e) = self.uffd.unregister(&map, 0, map.len()) {
            note!(Error, "pagewarden: unregistering a released region failed: {e}");
        }
        self.forget_if_done(&mut st, rid);
        self.notify_progress();
    }

    /// Removes a released region's state once nothing is in flight on it.
    pub(crate) fn forget_if_done(&self, st: &mut State, rid: u32) {
        if st.regions.get(&rid).is_some_and(|r| r.live == Liveness::Released && r.counts.inflight == 0) {
            st.file_maps.remove(rid);
            if let Some(r) = st.regions.remove(&rid) {
                st.shares.leave_family(r.family, rid);
            }
        }
    }

    /// Drops the emergency pages handed to the safe accessor of thread `tid` in an arena (zero
    /// pages for dead pages, copies for faults that found no memory) when it returns. Pages whose
    /// owner is unknown (no thread ids from the kernel) go too: an accessor still using one just
    /// faults again. On a live page the copy goes and the page is missing again, its data where it
    /// was; writers waiting on it wake. Raw access to a killed arena's page faults again and finds
    /// it poisoned.
    pub(crate) fn scrub_reserve(&self, aid: u32, tid: u32) {
        let ps = self.page();
        let mut st = self.lock();
        let Some(shared) = st.arenas.get(&aid).map(|a| a.shared.clone()) else { return };
        let mut n = 0;
        let mut wake = Vec::new();
        for (rid, page, owner) in std::mem::take(&mut st.emergency.reserve) {
            match st.regions.get_mut(&rid) {
                Some(r) if r.arena == aid && (owner == tid || owner == 0 || !self.caps.has_tid) => {
                    let _ = r.map.discard(idx(page) * ps, ps);
                    n += 1;
                    let mut e = r.pages.get(page);
                    if e.reserve() {
                        if e.waiters() {
                            wake.push((rid, page));
                        }
                        e.set_reserve(false);
                        e.set_waiters(false);
                        r.pages.set(page, e);
                    }
                }
                Some(_) => st.emergency.reserve.push((rid, page, owner)),
                None => {}
            }
        }
        for (rid, page) in wake {
            self.wake(&st, rid, page, 1);
        }
        self.notify_progress();
        shared.reserve_pages.fetch_sub(n.min(shared.reserve_pages.load(Ordering::Acquire)), Ordering::AcqRel);
    }

    /// Lifts the poison from pages whose raw access found no memory, now that frames are free.
    pub(crate) fn clear_oom_poison(&self, st: &mut State) {
        let ps = self.page();
        for (rid, page) in std::mem::take(&mut st.emergency.oom_poisoned) {
            let st = &mut *st;
            let Some(r) = st.regions.get_mut(&rid) else { continue };
            if let Some(a) = st.arenas.get(&r.arena) {
                a.shared.oom_poisoned.fetch_sub(1, Ordering::AcqRel);
            }
            let mut e = r.pages.get(page);
            if r.live == Liveness::Live && e.reserve() {
                // MADV_DONTNEED removes the poison marker: the page is missing again.
                let _ = r.map.discard(idx(page) * ps, ps);
                e.set_reserve(false);
                r.pages.set(page, e);
            }
        }
    }
}

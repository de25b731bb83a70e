//! Resolving one fault (both fault modes): the dispatch on the page, page-in, write faults, dead pages.
//!
//! Event ordering notes (why the handler side looks the way it does):
//! * Several threads can fault on the same page; each produces its own event. The first one we
//!   handle marks the page `PageIn`; the others find it in flight and do nothing, because the
//!   installing ioctl (COPY or MOVE without DONTWAKE) wakes every thread parked on the range.
//! * An event can be stale: by the time we read it the page may be resident (someone installed
//!   it), or gone again (evicted). Waking is always safe: a woken thread retries its access and
//!   faults again if the page is still missing. The only unsafe outcome is a thread never woken,
//!   so every path below ends in an install, an explicit wake, or a recorded waiter that the
//!   eviction in progress will wake.
//! * We enable no non-cooperative events (fork, remap, remove, unmap), so REMOVE-related EAGAIN
//!   and the REMOVE deadlock (KERNEL_NOTES trap 3) cannot arise; EAGAIN is still retried in `sys`.

use crate::config::EvictionPath;
use crate::engine::dispatch::{Access, Need, need};
use crate::engine::kill::OomOutcome;
use crate::engine::logq::note;
use crate::engine::{Core, Guard, Liveness, State};
use crate::mm::lru::key;
use crate::mm::page::{Entry, PageState};
use crate::mm::{idx, n32};
use crate::oom::report::KillTrigger;
use crate::sys::mem::Mapping;
use crate::sys::uffd::Filled;
use crate::util::lock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Per-handler-thread buffers, sized once for the largest page-in, so that resolving a fault
/// allocates nothing (the in-thread path runs in a signal handler).
pub(crate) struct Scratch {
    /// Page-aligned staging for multi-page installs (swap reads land here, then one COPY).
    bounce: Mapping,
    /// The page-in run being installed: its pages and their entries before the page-in.
    run: Vec<(u64, Entry)>,
    /// Where each page of the run comes from.
    sources: Vec<Source>,
    /// What each page's slot must read back as.
    expect: Vec<u32>,
    /// Pages whose data could not be read.
    failed: Vec<bool>,
}

impl Scratch {
    pub(crate) fn new(core: &Core) -> crate::sys::SysResult<Scratch> {
        let n = core.cfg.max_readahead;
        Ok(Scratch {
            bounce: Mapping::anonymous(n * core.page())?,
            run: Vec::with_capacity(n),
            sources: Vec::with_capacity(n),
            expect: Vec::with_capacity(n),
            failed: Vec::with_capacity(n),
        })
    }
}

/// The `tid` an in-thread fault passes down: "the calling thread", looked up (one syscall) only
/// on the rare paths that need the kernel's thread id.
pub(crate) const THIS_THREAD: u32 = u32::MAX;

/// One fault being resolved: what its steps need, carried down instead of a list of arguments
/// (the kernel's `struct vm_fault` is the model), and what they decided for the faulting thread.
pub(crate) struct Fault {
    /// The region faulted on.
    pub(crate) rid: u32,
    /// The page faulted on, in the region.
    pub(crate) page: u64,
    /// A write access.
    pub(crate) write: bool,
    /// The faulting thread: the kernel's id, or [`THIS_THREAD`].
    pub(crate) tid: u32,
    /// When the fault was first seen (for the latency histogram).
    pub(crate) t0: Instant,
    /// Set by a step that decides the access fails: an in-thread fault then lets its SIGBUS
    /// through. (Handler threads never need it: they poison the page instead.)
    pub(crate) sigbus: bool,
}

impl Fault {
    pub(crate) fn new(rid: u32, page: u64, write: bool, tid: u32, t0: Instant) -> Fault {
        Fault { rid, page, write, tid, t0, sigbus: false }
    }
}

/// The kernel's id of the thread `tid` names.
fn kernel_tid(tid: u32) -> u32 {
    if tid == THIS_THREAD { crate::sys::gettid() } else { tid }
}

/// Where the data for one installed page comes from.
#[derive(Clone, Copy)]
enum Source {
    Zero,
    Slot(u32),
    /// A mapped file, at this offset.
    File(u64),
}

/// What a page-in's plan decided (its run's pages, sources and checksums are in [`Scratch`]).
struct Plan {
    /// Pages in the run.
    n: usize,
    /// A free pool frame the single page is filled in and moved from (MOVE path).
    pool_frame: Option<u32>,
    /// Every page of the run is a zero fill: nothing to read.
    all_zero: bool,
    /// The region's mapped file, if it has one.
    file: Option<std::sync::Arc<crate::filemap::FileMap>>,
}

impl Core {
    /// Thread `tid` starts waiting on a fault at `addr`; returns the arena, if the address is ours.
    pub(crate) fn stall_enter_one(&self, st: &mut State, addr: usize, tid: u32, now: Instant) -> Option<u32> {
        st.stalls.psi().enter(tid, now);
        let (rid, _) = st.locate(addr, self.page())?;
        let aid = st.region(rid).arena;
        st.arenas.get_mut(&aid)?.psi.enter(tid, now);
        Some(aid)
    }

    pub(crate) fn stall_leave(&self, arena: Option<u32>, tid: u32) {
        let now = Instant::now();
        let mut st = self.lock();
        st.stalls.psi().leave(tid, now);
        if let Some(a) = arena.and_then(|a| st.arenas.get_mut(&a)) {
            a.psi.leave(tid, now);
        }
    }

    /// Resolves one fault event.
    pub(crate) fn fault(&self, addr: usize, write: bool, wp: bool, tid: u32, scratch: &mut Scratch) {
        let t0 = Instant::now();
        let ps = self.page();
        let mut st = self.lock();
        let Some((rid, page)) = st.locate(addr, ps) else {
            if self.mem.pool.as_ref().is_some_and(|p| p.contains(addr)) {
                note!(Error, "pagewarden: fault on the frame pool at {addr:#x}: this is a bug");
            }
            // A region released while this event was queued: unregistering woke its threads.
            return;
        };
        let mut f = Fault::new(rid, page, write, tid, t0);
        if st.region(rid).live != Liveness::Live || self.is_failed() {
            self.resolve_dead(&mut st, &mut f);
            return;
        }
        let e = st.region(rid).pages.get(page);
        // A handler thread cannot wait here (the others queue behind it): what has to wait is
        // left parked in the kernel, and whoever settles the page wakes it.
        match need(e, Access { write, wp: Some(wp) }) {
            Need::PageIn => self.page_in(st, &mut f, scratch),
            Need::MakeWritable => {
                let mut st = self.write_fault(st, &mut f);
                self.record(&mut st, &f);
            }
            Need::Dead => self.resolve_dead(&mut st, &mut f),
            // The installing ioctl wakes every thread parked on the page.
            Need::InFlight if e.state() == PageState::PageIn => st.counters(rid).spurious += 1,
            // The eviction wakes the page's waiters when it ends; so does dropping an emergency
            // copy (see `fail_fault`): a write then faults normally. Nobody ever writes into the
            // copy, so dropping it loses nothing.
            Need::InFlight | Need::Reserved => {
                let mut e = e;
                e.set_waiters(true);
                st.region_mut(rid).pages.set(page, e);
            }
            Need::Retry => {
                self.wake(&st, rid, page, 1);
                if !e.reserve() {
                    st.counters(rid).spurious += 1;
                }
            }
        }
    }

    /// Records the fault's latency in its arena's histogram.
    pub(crate) fn record(&self, st: &mut State, f: &Fault) {
        let a = st.region(f.rid).arena;
        if let Some(a) = st.arenas.get_mut(&a) {
            a.hist.record(u64::try_from(f.t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
    }

    pub(crate) fn wake(&self, st: &State, rid: u32, page: u64, n: u64) {
        let ps = self.page();
        let r = st.region(rid);
        if let Err(e) = self.uffd.wake(&r.map, idx(page) * ps, idx(n) * ps) {
            note!(Error, "pagewarden: wake failed: {e}");
        }
    }

    /// A write fault on a clean resident page: it becomes dirty (and private, if it was a
    /// copy-on-write share). Breaking a share may need a frame for the share's copy: reclaimed
    /// here, or, when none can be had, the page is written out (the share keeps the slot) and the
    /// writer faults it back as its own. When nothing can be had at all (no frame, nothing
    /// evictable, no victim), a safe accessor's write fails with `OutOfMemory` (`tid`, the writing
    /// thread, is marked failed) and an in-thread raw write gets SIGBUS; a raw write served by a
    /// handler thread waits for memory.
    pub(crate) fn write_fault<'a>(&'a self, mut st: Guard<'a>, f: &mut Fault) -> Guard<'a> {
        let (rid, page, tid) = (f.rid, f.page, f.tid);
        loop {
            let e = st.regions.get(&rid).filter(|r| r.live == Liveness::Live).map(|r| r.pages.get(page));
            // A failed runtime waits for nothing: the thread retries, and its next fault (or the
            // safe write's next look) finds the runtime failed.
            let e = e.filter(|_| !self.is_failed());
            match e {
                Some(e) if e.is_resident() && !e.dirty() => {}
                // Changed meanwhile, or the region died: the thread retries (and a dead page's
                // next fault is resolved as dead).
                _ => {
                    if st.regions.contains_key(&rid) {
                        self.wake(&st, rid, page, 1);
                    }
                    return st;
                }
            }
            if self.unshare_for_write(&mut st, rid, page) {
                st.counters(rid).wp_faults += 1;
                return st;
            }
            // No frame for the copy (reclaim first), or a frame but no relative able to take the
            // copy now (each is busy).
            let exhausted = st.frames.free() == 0 && {
                let (g, got) = self.acquire(st, 1, rid);
                st = g;
                if let Some(n) = got {
                    st.frames.give(n);
                    continue;
                }
                true
            };
            // Write the page out instead (the share keeps the slot); the writer faults it back.
            let (g, freed) = self.evict(st, crate::engine::reclaim::Victims::Pages(rid, page..page + 1));
            st = g;
            if freed > 0 {
                self.wake(&st, rid, page, 1);
                return st;
            }
            if !exhausted {
                // Wait for a relative to settle.
                st = self.wait_progress(st, Duration::from_millis(5));
                continue;
            }
            // Nothing can be written either: the OOM killer.
            let Some(arena) = st.regions.get(&rid).map(|r| r.arena) else { return st };
            let name = st.arenas.get(&arena).map(|a| a.shared.name.clone()).unwrap_or_default();
            let deficit = self.exhaustion_deficit(&st);
            if self.oom(&mut st, KillTrigger::Exhaustion { faulting_arena: name }, deficit, Some(arena)).0
                == OomOutcome::Unresolved
            {
                // Waiting could last for ever: fail the write where it can be failed cleanly.
                let shared = st.arenas.get(&arena).map(|a| a.shared.clone());
                if shared.is_some_and(|a| a.fail_accessor(kernel_tid(tid), self.caps.has_tid)) {
                    // The safe write finds its access failed (the page stays as it was). A thread
                    // parked on the page retries.
                    self.wake(&st, rid, page, 1);
                    return st;
                }
                if self.caps.in_thread && tid == THIS_THREAD {
                    f.sigbus = true;
                    return st;
                }
                note!(Warn, "pagewarden: a write to a shared page waits for memory: no frame, no swap, no victim");
                st = self.wait_progress(st, Duration::from_millis(20));
            }
        }
    }

    /// First write to a clean resident page: it becomes dirty, its swap copy is stale and freed,
    /// and write protection is lifted (which wakes the writer). Done under the lock so eviction
    /// cannot pick the page between the state change and the ioctl.
    pub(crate) fn make_dirty(&self, st: &mut State, rid: u32, page: u64, mut e: Entry) {
        if !e.pinned() {
            st.usage.clean -= 1;
        }
        e.set_dirty(true);
        e.set_referenced(true);
        st.release_slot(rid, &mut e);
        let ps = self.page();
        let r = st.region_mut(rid);
        r.pages.set(page, e);
        if let Err(err) = self.uffd.writeprotect(&r.map, idx(page) * ps, ps, false, true) {
            note!(Error, "pagewarden: lifting write protection failed: {err}");
            self.wake(st, rid, page, 1);
        }
    }

    /// Releases a thread that faulted on a page whose data is gone (killed arena, lost page).
    /// A thread inside a safe accessor gets a zero page from the reserve (the accessor then
    /// reports `Killed`/`Corrupted` rather than the zeros); any other thread finds the page
    /// poisoned and takes SIGBUS, so raw access never reads made-up data.
    pub(crate) fn resolve_dead(&self, st: &mut State, f: &mut Fault) {
        let ps = self.page();
        let (rid, page, tid) = (f.rid, f.page, kernel_tid(f.tid));
        let arena = st.region(rid).arena;
        let Some(shared) = st.arenas.get(&arena).map(|a| a.shared.clone()) else {
            return;
        };
        let accessor = shared.is_accessor(tid, self.caps.has_tid);
        // While safe accessors are inside, no page of the arena is poisoned: they must never touch
        // one. A raw thread then gets the zero page too (owned by nobody: the next accessor to
        // return drops it).
        let busy = !lock(&shared.accessors).is_empty();
        let owner = if accessor { tid } else { 0 };
        let map = st.region(rid).map.clone();
        let off = idx(page) * ps;
        if accessor || busy || (!self.caps.can_poison && !self.caps.in_thread) {
            self.install_reserve(st, rid, page, owner, (&self.mem.zero, 0), false);
        } else if self.caps.in_thread {
            // The faulting thread is running this very code in its SIGBUS handler: let the signal
            // through to the previous handler or the default action.
            f.sigbus = true;
        } else if let Err(e) = self.uffd.poison(&map, off, ps, true) {
            note!(Error, "pagewarden: poisoning a dead page failed: {e}");
            let _ = self.uffd.wake(&map, off, ps);
        }
    }

    /// A fault found no memory and the OOM killer freed none (every arena exempt, or a dry run):
    /// fail this access cleanly without harming the page.
    ///
    /// * A thread inside a safe accessor gets a write-protected emergency copy of the page's real
    ///   contents (zeros if never written, else its swap slot) from outside the budget, and its
    ///   accessor returns [`Error::OutOfMemory`](crate::Error::OutOfMemory). Safe writes only
    ///   ever touch pages they hold resident, so this fault was a read: nobody writes the copy.
    ///   The page's state never changes (its data stays where it was); the copy is dropped when
    ///   the accessor returns, and writers waiting on it then fault normally.
    /// * Any other thread gets SIGBUS (UFFDIO_POISON on the page); the poison is lifted once
    ///   memory is free again. While safe accessors are inside the arena, such a thread gets the
    ///   read-only copy instead, so an accessor can never touch a poisoned page.
    fn fail_fault(&self, st: &mut State, f: &mut Fault, scratch: &mut Scratch) {
        let ps = self.page();
        let (rid, page, tid) = (f.rid, f.page, kernel_tid(f.tid));
        let arena = st.region(rid).arena;
        let Some(shared) = st.arenas.get(&arena).map(|a| a.shared.clone()) else { return };
        let map = st.region(rid).map.clone();
        let off = idx(page) * ps;
        let mut e = st.region(rid).pages.get(page);
        let accessor = shared.fail_accessor(tid, self.caps.has_tid);
        let busy = !lock(&shared.accessors).is_empty();
        if !accessor && !busy && self.caps.in_thread {
            f.sigbus = true;
            return;
        }
        if !accessor && !busy && self.caps.can_poison {
            match self.uffd.poison(&map, off, ps, true) {
                Ok(()) => {
                    e.set_reserve(true);
                    st.region_mut(rid).pages.set(page, e);
                    st.emergency.oom_poisoned.push((rid, page));
                    shared.oom_poisoned.fetch_add(1, Ordering::AcqRel);
                }
                Err(err) => note!(Error, "pagewarden: poisoning page {page} failed: {err}"),
            }
            return;
        }
        // A raw thread's copy has no owner: the next accessor to return drops it.
        let owner = if accessor { tid } else { 0 };
        // The real contents: a rare emergency path, so the slot is read with the lock held. A
        // slot that cannot be read back intact loses the page rather than show wrong data.
        let mut src: (&Mapping, usize) = (&self.mem.zero, 0);
        // A copy-on-write page: a relative's resident frame, else the share's slot.
        let relative = e
            .share()
            .and_then(|id| st.find_ref(rid, page, id, |x| x.state() == PageState::Resident))
            .map(|q| st.region(q).map.clone());
        if let Some(m) = &relative {
            src = (m, off);
        } else if let Some(s) = st.data_slot(e) {
            let ok = self.swap_read(s, &scratch.bounce, 0, 1).is_ok()
                && crate::engine::swap::page_sum(&scratch.bounce, 0, ps) == st.slots.sum(s);
            if !ok {
                self.lose_page(st, rid, page);
                self.resolve_dead(st, f);
                return;
            }
            src = (&scratch.bounce, 0);
        }
        if self.install_reserve(st, rid, page, owner, src, true) {
            e.set_reserve(true);
            st.region_mut(rid).pages.set(page, e);
        }
    }

    /// A page whose swap copy cannot be read back: poisoned (safe accessors get
    /// `Error::Corrupted`, raw access SIGBUS), its slot freed, and reported.
    pub(crate) fn lose_page(&self, st: &mut State, rid: u32, page: u64) {
        let mut e = st.region(rid).pages.get(page);
        if e.state() == PageState::Swapped {
            st.region_mut(rid).counts.swapped -= 1;
        }
        st.release_slot(rid, &mut e);
        st.region_mut(rid).pages.set(page, Entry::default().with_state(PageState::Poisoned));
        if let Some(id) = e.share() {
            self.unref_share(st, rid, page, id, false);
        }
        let r = st.region_mut(rid);
        r.poisoned.fetch_add(1, Ordering::AcqRel);
        st.counters(rid).lost_pages += 1;
        let arena = st.region(rid).arena;
        let name = st.arenas.get(&arena).map(|a| a.shared.name.clone()).unwrap_or_default();
        self.publish(crate::Event::PageLost { arena: name, offset: idx(page) * self.page() });
    }

    /// Maps an emergency page from the reserve (outside the budget) to release a thread parked on
    /// `page`, and records it for scrubbing when `owner`'s accessor returns. `wp`: read-only.
    /// Returns whether the page was installed.
    fn install_reserve(
        &self,
        st: &mut State,
        rid: u32,
        page: u64,
        owner: u32,
        src: (&Mapping, usize),
        wp: bool,
    ) -> bool {
        let ps = self.page();
        let map = st.region(rid).map.clone();
        let off = idx(page) * ps;
        match self.uffd.copy(&map, off, src.0, src.1, ps, wp, true) {
            Ok(Filled::All) => {
                st.emergency.reserve.push((rid, page, owner));
                let arena = st.region(rid).arena;
                if let Some(a) = st.arenas.get(&arena) {
                    a.shared.reserve_pages.fetch_add(1, Ordering::AcqRel);
                }
                true
            }
            Ok(Filled::Exists { .. }) => false,
            Err(err) => {
                note!(Error, "pagewarden: releasing a thread from page {page} failed: {err}");
                let _ = self.uffd.wake(&map, off, ps);
                false
            }
        }
    }

    /// Brings a missing page (and, for a sequential stream, its successors) into memory: plan
    /// (locked: the frames, the run marked in flight, where each page's data lies), fill (the I/O
    /// into a staging buffer, unlocked), commit (locked: one installing ioctl, then bookkeeping).
    pub(crate) fn page_in<'a>(&'a self, st: Guard<'a>, f: &mut Fault, scratch: &mut Scratch) {
        let Some((st, plan)) = self.plan_page_in(st, f, scratch) else { return };
        drop(st);
        let Scratch { bounce, sources, expect, failed, .. } = &mut *scratch;
        // Pages whose slot could not be read.
        failed.clear();
        failed.resize(plan.n, false);
        if !(plan.pool_frame.is_none() && plan.all_zero) {
            let (buf, buf_off) = self.staging(&plan, bounce);
            self.fill_pages(sources, expect, failed, buf, buf_off, plan.file.as_deref());
        }
        self.commit_page_in(self.lock(), f, &plan, scratch);
    }

    /// Where a page-in's data is staged: a free pool frame (one page written at once on the MOVE
    /// path: no allocation, no copy), the zero mapping (nothing to read), else the bounce buffer.
    fn staging<'b>(&'b self, plan: &Plan, bounce: &'b Mapping) -> (&'b Mapping, usize) {
        match (plan.pool_frame, plan.all_zero) {
            (Some(f), _) => (self.mem.pool.as_ref().expect("pool exists on the MOVE path"), f as usize * self.page()),
            (None, true) => (&self.mem.zero, 0),
            (None, false) => (bounce, 0),
        }
    }

    /// A page-in's plan, under the lock: the readahead window, frames for it, and the run of
    /// missing pages marked in flight with each page's source and expected checksum in `scratch`.
    /// `None` when the fault was resolved on the way (see [`Core::frames_for_page_in`]).
    fn plan_page_in<'a>(
        &'a self,
        mut st: Guard<'a>,
        f: &mut Fault,
        scratch: &mut Scratch,
    ) -> Option<(Guard<'a>, Plan)> {
        let ps = self.page();
        let (rid, page) = (f.rid, f.page);
        let (want, hits) = {
            let r = st.region_mut(rid);
            let d = r.stream.on_fault(page, n32(self.cfg.max_readahead));
            (u64::from(d.window).min(r.npages - page), d.hits)
        };
        st.counters(rid).readahead_hits += u64::from(hits);
        let (mut st, got) = self.frames_for_page_in(st, f, want, scratch)?;
        // A copy-on-write page: copied from a relative's frame where there is one (no I/O), else
        // read from the share's slot below, with its neighbours.
        let first = st.region(rid).pages.get(page);
        if let Some(id) = first.share() {
            st = self.page_in_shared(st, f, id, got)?;
        }
        // A file-backed region: never-touched pages fill from the file, up to its end.
        let file = st.region(rid).file.clone();
        let in_file = match &file {
            Some(m) => m.pages_in_file(ps).unwrap_or_else(|e| {
                note!(Error, "pagewarden: {e}");
                0
            }),
            None => u64::MAX,
        };
        if first.state() == PageState::Unpopulated && page >= in_file {
            // Past the end of the file: SIGBUS for raw access, as with mmap (a safe accessor
            // checked the file length first; it only gets here if the file shrank meanwhile).
            st.frames.give(got);
            self.fail_fault(&mut st, f, scratch);
            return None;
        }
        // The run of missing pages starting at `page`, up to the frames we got (at most
        // `max_readahead`, the scratch vectors' capacity: nothing below allocates).
        let Scratch { run, sources, expect, .. } = scratch;
        let n = self.mark_run(&mut st, rid, page, got, in_file, run);
        sources.clear();
        sources.extend(run.iter().map(|&(p, e)| match (st.data_slot(e), &file) {
            (Some(s), _) => Source::Slot(s),
            (None, Some(m)) if e.state() == PageState::Unpopulated => Source::File(m.at(p, ps)),
            (None, _) => Source::Zero,
        }));
        // What each slot must read back as (the slots are this run's while it is in flight, and a
        // share keeps its slot while a reference is paging in).
        expect.clear();
        expect.extend(run.iter().map(|&(_, e)| st.data_slot(e).map_or(0, |s| st.slots.sum(s))));
        let all_zero = sources.iter().all(|s| matches!(s, Source::Zero));
        // A single page written at once can take a free pool frame by MOVE: no allocation, no copy.
        let pool_frame =
            if self.path == EvictionPath::Move && n == 1 && f.write { st.frames.pop_populated() } else { None };
        Some((st, Plan { n, pool_frame, all_zero, file }))
    }

    /// A page-in's commit, under the lock again after the fill: installs the run (or forgets it,
    /// if its region died meanwhile, or abandons it, if a page could not be read), then counts it.
    fn commit_page_in(&self, mut st: Guard<'_>, f: &Fault, plan: &Plan, scratch: &mut Scratch) {
        let (rid, page, n, pool_frame) = (f.rid, f.page, plan.n, plan.pool_frame);
        let Scratch { bounce, run, sources, failed, .. } = scratch;
        st.inflight.end_page_in(n);
        let live = {
            let r = st.region_mut(rid);
            r.counts.inflight -= n as u64;
            r.live
        };
        if live != Liveness::Live {
            self.forget_run(&mut st, rid, page, run, pool_frame, live);
            return;
        }
        if failed.iter().any(|&f| f) {
            self.abandon_run(&mut st, rid, run, pool_frame, Some(failed));
            return;
        }
        let installed = self.install_run(&mut st, f, n, pool_frame, self.staging(plan, bounce));
        if let Some(f) = pool_frame.filter(|_| installed == n) {
            st.frames.moved_out(f);
        }
        if installed < n {
            // Give back what was not installed; the threads retry.
            self.abandon_run(&mut st, rid, &run[installed..], if installed == 0 { pool_frame } else { None }, None);
            run.truncate(installed);
            if run.is_empty() {
                return;
            }
        }
        let n = run.len();
        let activations = self.settle_installed(&mut st, f, run, sources);
        let resident = self.resident_after(&st, rid, page + n as u64);
        st.region_mut(rid).stream.installed(page, n32(n), resident);
        {
            let files = sources[..n].iter().filter(|s| matches!(s, Source::File(_))).count() as u64;
            let c = st.counters(rid);
            c.file_reads += files;
            c.readahead += n as u64 - 1;
            c.refault_activations += activations;
        }
        self.record(&mut st, f);
        if st.frames.free() < self.cfg.low {
            self.signals.reclaim.notify_one();
        }
        // In-thread faults waiting for this page-in to finish.
        self.notify_progress();
    }

    /// How many pages from `from` on are resident or paging in (at most `max_readahead`): a
    /// scan's next fault comes after them.
    fn resident_after(&self, st: &State, rid: u32, from: u64) -> u32 {
        let r = st.region(rid);
        let end = r.npages.min(from.saturating_add(self.cfg.max_readahead as u64));
        let n = (from..end)
            .take_while(|&p| matches!(r.pages.get(p).state(), PageState::Resident | PageState::PageIn))
            .count();
        n32(n)
    }

    /// Frames for a page-in of up to `want` pages: reclaimed, or freed by the OOM killer when
    /// nothing else gives. `None` when the fault was resolved on the way (the runtime failed, the
    /// arena died or was refused memory, or the page was served meanwhile).
    fn frames_for_page_in<'a>(
        &'a self,
        mut st: Guard<'a>,
        f: &mut Fault,
        want: u64,
        scratch: &mut Scratch,
    ) -> Option<(Guard<'a>, usize)> {
        let (rid, page) = (f.rid, f.page);
        let got = loop {
            let (g, got) = self.acquire(st, idx(want), rid);
            st = g;
            if let Some(n) = got {
                break n;
            }
            // The runtime failed meanwhile (acquire gives up then): answered as a dead page.
            if self.is_failed() {
                if st.regions.contains_key(&rid) {
                    self.resolve_dead(&mut st, f);
                }
                return None;
            }
            // Out of frames, nothing reclaimable: the OOM killer chooses a victim.
            let arena = st.regions.get(&rid).map(|r| r.arena)?;
            let name = st.arenas.get(&arena).map(|a| a.shared.name.clone()).unwrap_or_default();
            let deficit = self.exhaustion_deficit(&st);
            let trigger = KillTrigger::Exhaustion { faulting_arena: name };
            match self.oom(&mut st, trigger, deficit, Some(arena)).0 {
                // Frames were freed (or this very arena died): look again.
                OomOutcome::Killed if st.regions.get(&rid).is_some_and(|r| r.live == Liveness::Live) => continue,
                OomOutcome::Killed => {
                    if st.regions.contains_key(&rid) {
                        self.resolve_dead(&mut st, f);
                    }
                    return None;
                }
                // The policy panicked: the runtime has failed.
                OomOutcome::Unresolved if self.is_failed() => {
                    if st.regions.contains_key(&rid) {
                        self.resolve_dead(&mut st, f);
                    }
                    return None;
                }
                OomOutcome::Unresolved => {
                    self.fail_fault(&mut st, f, scratch);
                    return None;
                }
            }
        };
        // The lock may have been dropped while reclaiming: look again.
        let still = st.regions.get(&rid).map(|r| (r.live, r.pages.get(page).state()));
        match still {
            Some((Liveness::Live, PageState::Unpopulated | PageState::Swapped | PageState::Shared)) => {}
            Some((Liveness::Killed, _)) => {
                st.frames.give(got);
                self.resolve_dead(&mut st, f);
                return None;
            }
            Some((Liveness::Live, _)) => {
                // Someone else resolved or moved it meanwhile: release and let the thread retry.
                st.frames.give(got);
                self.wake(&st, rid, page, 1);
                return None;
            }
            _ => {
                st.frames.give(got);
                return None;
            }
        }
        Some((st, got))
    }

    /// A copy-on-write reference faulting: copied from a relative's resident frame where there is
    /// one (no I/O); when the share's only copy is on its way to swap, the fault waits for it and
    /// retries. `None` when the fault was dealt with here; otherwise the share's slot is read
    /// like any swapped page.
    fn page_in_shared<'a>(&'a self, mut st: Guard<'a>, f: &Fault, id: u32, got: usize) -> Option<Guard<'a>> {
        let (rid, page) = (f.rid, f.page);
        if let Some(src) = st.find_ref(rid, page, id, |e| e.state() == PageState::Resident) {
            self.copy_shared_in(&mut st, rid, page, src, f.write, got);
            self.record(&mut st, f);
            return None;
        }
        if st.shares.get(id).slot.is_none() {
            st.frames.give(got);
            if st.share_in_flight(rid, page, id) {
                // Its only copy is on its way to swap: wait for the write, then retry.
                let st = self.wait_progress(st, Duration::from_millis(5));
                self.wake(&st, rid, page, 1);
            } else {
                // Nowhere at all: a bookkeeping bug. Lose the page loudly rather than wait.
                note!(Error, "pagewarden: shared page {page} of region {rid} has no copy left");
                self.lose_page(&mut st, rid, page);
                self.wake(&st, rid, page, 1);
            }
            return None;
        }
        Some(st)
    }

    /// Marks the run of missing pages from `page` in flight (at most `got`, the frames taken:
    /// never-touched pages within the file, swapped pages, and the faulting page if it is a
    /// copy-on-write reference), gives the frames it does not need back, and returns its length.
    fn mark_run(
        &self,
        st: &mut State,
        rid: u32,
        page: u64,
        got: usize,
        in_file: u64,
        run: &mut Vec<(u64, Entry)>,
    ) -> usize {
        run.clear();
        {
            let r = st.region(rid);
            for p in page..page + got as u64 {
                let e = r.pages.get(p);
                let readable = match e.state() {
                    PageState::Unpopulated => p < in_file,
                    PageState::Swapped => true,
                    // A copy-on-write neighbour is not read ahead: its copy would be charged to
                    // this side for a page it never asked for.
                    PageState::Shared => p == page && st.data_slot(e).is_some(),
                    _ => false,
                };
                if !readable || e.reserve() {
                    break;
                }
                run.push((p, e));
            }
            let r = st.region_mut(rid);
            for &(p, e) in run.iter() {
                r.pages.set(p, e.with_state(PageState::PageIn));
            }
            r.counts.inflight += run.len() as u64;
        }
        let n = run.len();
        st.frames.give(got - n);
        st.inflight.start_page_in(n);
        n
    }

    /// Installs the run's `n` pages, filled in `src`, with one ioctl that wakes the threads
    /// waiting on them (MOVE of a pool frame for a single written page, else COPY, read-only
    /// for a read). Returns how many were installed.
    fn install_run(
        &self,
        st: &mut State,
        f: &Fault,
        n: usize,
        pool_frame: Option<u32>,
        src: (&Mapping, usize),
    ) -> usize {
        let (rid, page, write) = (f.rid, f.page, f.write);
        let ps = self.page();
        let (buf, buf_off) = src;
        let map = st.region(rid).map.clone();
        if pool_frame.is_none() {
            self.trim_pool(st);
        }
        let res = if pool_frame.is_some() {
            self.uffd.move_pages(&map, idx(page) * ps, buf, buf_off, ps, true)
        } else {
            self.uffd.copy(&map, idx(page) * ps, buf, buf_off, n * ps, !write, true)
        };
        match res {
            Ok(Filled::All) => n,
            Ok(Filled::Exists { bytes }) => {
                note!(Error, "pagewarden: page {page} of region {rid} was populated behind the runtime's back");
                bytes / ps
            }
            Err(e) => {
                note!(Error, "pagewarden: installing page {page} failed: {e}");
                0
            }
        }
    }

    /// A run paged in for a region killed or released during the I/O: nothing to install; what
    /// the pages held goes back (frames, the pool frame, slots, share references).
    fn forget_run(
        &self,
        st: &mut State,
        rid: u32,
        page: u64,
        run: &[(u64, Entry)],
        pool_frame: Option<u32>,
        live: Liveness,
    ) {
        let n = run.len();
        // Killed or released during the I/O: nothing to install. Free what the pages held.
        st.frames.give(n);
        if let Some(f) = pool_frame {
            st.frames.unpop(f);
        }
        for &(p, _) in run.iter() {
            let mut e = st.region(rid).pages.get(p);
            if e.state() == PageState::PageIn {
                st.release_slot(rid, &mut e);
                st.region_mut(rid).pages.set(p, Entry::default());
                if let Some(id) = e.share() {
                    self.unref_share(st, rid, p, id, false);
                }
            }
        }
        if live == Liveness::Killed {
            // Threads parked on the window retry and are resolved as dead.
            self.wake(st, rid, page, n as u64);
        } else {
            self.forget_if_done(st, rid);
        }
        self.notify_progress();
    }

    /// The pages of an installed run become resident (dirty and private for a write, clean and
    /// still shared for a read), enter the replacement lists and are counted. Returns how many
    /// refaults were activated.
    fn settle_installed(&self, st: &mut State, f: &Fault, run: &[(u64, Entry)], sources: &[Source]) -> u64 {
        let (rid, write) = (f.rid, f.write);
        let mut activations = 0;
        for (i, &(p, prev)) in run.iter().enumerate() {
            // Start from the entry as it is now, not as it was before the I/O: its flags may have
            // changed meanwhile (the replacement policy may have dropped a stale queue entry).
            let mut e = st.region(rid).pages.get(p).with_state(PageState::Resident);
            e.set_waiters(false);
            e.set_dirty(write);
            if write {
                st.release_slot(rid, &mut e);
            }
            let act = st.lru.refault_activates(prev);
            activations += u64::from(act);
            st.lru.admit(key(rid, p), &mut e, act);
            st.usage.clean += usize::from(!write);
            let share = e.share();
            if write {
                // Written at once: private from the start.
                e.set_share(None);
            } else if let Some(id) = share {
                st.shares.get_mut(id).resident += 1;
                st.region_mut(rid).counts.shared_resident += 1;
            }
            let r = st.region_mut(rid);
            if prev.state() == PageState::Swapped {
                r.counts.swapped -= 1;
            }
            r.counts.resident += 1;
            r.pages.set(p, e);
            match (write, share) {
                (true, Some(id)) => {
                    self.unref_share(st, rid, p, id, false);
                    st.counters(rid).cow_copies += 1;
                }
                // The other references went while this one paged in.
                (false, Some(id)) if st.shares.get(id).refs == 1 => self.normalize_share(st, p, id),
                _ => {}
            }
            if i == 0 {
                let c = st.counters(rid);
                match sources[0] {
                    Source::Zero => c.zero_fills += 1,
                    Source::Slot(_) => c.swap_ins += 1,
                    Source::File(_) => {}
                }
            }
        }
        activations
    }

    /// Without the lock: fills `sources.len()` pages of `buf` from `buf_off` — zeros, runs of
    /// file pages (one read each), runs of consecutive slots (one read each, a failed run retried
    /// slot by slot) — and marks in `failed` each page that could not be read or whose slot fails
    /// its checksum (`expect`).
    fn fill_pages(
        &self,
        sources: &[Source],
        expect: &[u32],
        failed: &mut [bool],
        buf: &Mapping,
        buf_off: usize,
        file: Option<&crate::filemap::FileMap>,
    ) {
        let ps = self.page();
        let n = sources.len();
        let mut i = 0;
        while i < n {
            match sources[i] {
                Source::Zero => {
                    let _ = buf.fill(buf_off + i * ps, ps, 0);
                    i += 1;
                }
                Source::File(at) => {
                    // Consecutive file pages: one read; the part past the end reads as zeros.
                    let mut j = i + 1;
                    while j < n && matches!(sources[j], Source::File(b) if b == at + ((j - i) * ps) as u64) {
                        j += 1;
                    }
                    let f = file.expect("file sources come from a file-backed region");
                    match f.file.read_into(at, buf, buf_off + i * ps, (j - i) * ps) {
                        Ok(got) => {
                            let _ = buf.fill(buf_off + i * ps + got, (j - i) * ps - got, 0);
                        }
                        Err(e) => {
                            note!(Error, "pagewarden: reading the mapped file failed: {e}; pages poisoned");
                            failed[i..j].fill(true);
                        }
                    }
                    i = j;
                }
                Source::Slot(s) => {
                    // Coalesce consecutive slots into one read.
                    let mut j = i + 1;
                    while j < n && matches!(sources[j], Source::Slot(t) if t == s + n32(j - i)) {
                        j += 1;
                    }
                    if self.swap_read(s, buf, buf_off + i * ps, j - i).is_err() {
                        // Isolate the bad slot(s): only pages that cannot be read are lost.
                        for (k, bad) in failed.iter_mut().enumerate().take(j).skip(i) {
                            let slot = s + n32(k - i);
                            if let Err(e) = self.swap_read(slot, buf, buf_off + k * ps, 1) {
                                note!(Error, "pagewarden: swap read of slot {slot} failed: {e}; page poisoned");
                                *bad = true;
                            }
                        }
                    }
                    for k in i..j {
                        if !failed[k] && crate::engine::swap::page_sum(buf, buf_off + k * ps, ps) != expect[k] {
                            note!(Error, "pagewarden: slot {} failed its checksum; page poisoned", s + n32(k - i));
                            failed[k] = true;
                        }
                    }
                    i = j;
                }
            }
        }
    }

    /// Installs page `page` of `rid` (a `Shared` reference) as a copy of relative `src`'s resident
    /// frame, under the lock: read-only and still a reference for a read, private for a write.
    /// `got` frames were taken for the fault; one is used.
    fn copy_shared_in(&self, st: &mut State, rid: u32, page: u64, src: u32, write: bool, got: usize) {
        let ps = self.page();
        let off = idx(page) * ps;
        st.frames.give(got - 1);
        self.trim_pool(st);
        let (dst_map, src_map) = (st.region(rid).map.clone(), st.region(src).map.clone());
        // The source page is resident, and stays so while the lock is held: reading it cannot
        // fault into this runtime.
        match self.uffd.copy(&dst_map, off, &src_map, off, ps, !write, true) {
            Ok(Filled::All) => {}
            other => {
                note!(Error, "pagewarden: copying shared page {page} from a relative failed: {other:?}");
                st.frames.give(1);
                self.wake(st, rid, page, 1);
                return;
            }
        }
        let prev = st.region(rid).pages.get(page);
        let id = prev.share().expect("a shared page refers to a share");
        let mut e = prev.with_state(PageState::Resident);
        e.set_waiters(false);
        e.set_dirty(write);
        st.lru.admit(key(rid, page), &mut e, false);
        st.region_mut(rid).counts.resident += 1;
        if write {
            e.set_share(None);
            st.region_mut(rid).pages.set(page, e);
            self.unref_share(st, rid, page, id, false);
            st.counters(rid).cow_copies += 1;
        } else {
            st.usage.clean += 1;
            st.shares.get_mut(id).resident += 1;
            let r = st.region_mut(rid);
            r.counts.shared_resident += 1;
            r.pages.set(page, e);
        }
        st.counters(rid).shared_faults += 1;
        self.notify_progress();
    }

    /// Puts a page-in run back as it was (frames returned, pages missing again) and wakes its
    /// threads so they retry. Pages flagged in `poison` (their slot could not be read) are marked
    /// poisoned instead.
    fn abandon_run(
        &self,
        st: &mut State,
        rid: u32,
        run: &[(u64, Entry)],
        pool_frame: Option<u32>,
        poison: Option<&[bool]>,
    ) {
        st.frames.give(run.len());
        if let Some(f) = pool_frame {
            st.frames.unpop(f);
        }
        for (k, &(p, prev)) in run.iter().enumerate() {
            // Back to the state before the page-in, keeping flags changed meanwhile.
            let e = st.region(rid).pages.get(p).with_state(prev.state());
            st.region_mut(rid).pages.set(p, e);
            if poison.is_some_and(|f| f[k]) {
                self.lose_page(st, rid, p);
            }
        }
        if let (Some(&(first, _)), n) = (run.first(), run.len()) {
            self.wake(st, rid, first, n as u64);
        }
        self.notify_progress();
    }
}

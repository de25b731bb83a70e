//! The runtime: its shared core (userfaultfd, pool, swap, state lock), threads and public handle.
//!
//! ```text
//!   app threads ──touch──► kernel ──PAGEFAULT──► uffd ──batch read──► handler thread(s)
//!        ▲                                                              │ lock state
//!        └──────── wake (COPY / MOVE / WRITEPROTECT / WAKE) ◄───────────┤ decide, mark in flight
//!                                                                       │ unlock: swap I/O
//!   reclaimer thread: keeps free frames between the watermarks ─────────┘ lock: install, account
//! ```
//!
//! One mutex guards all paging state. It is held for decisions and for the short ioctls that must
//! be atomic with them, never across swap I/O and never while touching managed memory: a thread
//! that holds it must not fault on a page only the handler can serve.
//!
//! # Locks, in the order they are taken
//!
//! A thread holding one lock takes only locks further down this list, never one above it:
//!
//! 1. the in-thread registry (`IN_THREAD`, fault.rs): held only to find a runtime for a SIGBUS
//!    and count a reader, or to add and remove one; nothing else is taken while it is held, and
//!    it is never taken with the state lock held.
//! 2. the state lock ([`Core::lock`], a [`Guard`]): one per runtime. A function that takes the
//!    guard by value may unlock on the way (to wait, or for I/O) and hands it back; one that takes
//!    `&State` or `&mut State` never unlocks. Debug builds abort, with a message, a thread that
//!    takes it while holding it. The victim policy's `select` runs under it (user code: it must
//!    not call back into the runtime).
//! 3. leaves, each held for a few instructions and taking nothing else: an arena's accessors
//!    (`ArenaShared::accessors`), the staging-buffer pools (`Core::scratch`, `Core::evict_bufs`),
//!    the failure message (`Core::failure`), the encryption metadata (swap.rs) and the swap file's
//!    growth lock (sys/file.rs). The last two are taken during swap I/O, with no other lock held.
//!
//! Every mutex is taken through [`crate::util::lock`], which ignores poisoning.

use crate::config::{Config, EvictionPath, SwapLocation};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::mm::filemaps::FileMaps;
use crate::mm::frames::Frames;
use crate::mm::inflight::InFlight;
use crate::mm::lru::{Lru, PageKey, PageStore, unkey};
use crate::mm::page::{Entry, IdMap, PageTable};
use crate::mm::readahead::Stream;
use crate::mm::reap::ReapQueue;
use crate::mm::slots::Slots;
use crate::oom::policy::VictimPolicy;
use crate::oom::pressure::{Psi, StallWatch};
use crate::stats::{ArenaStats, Counters, Histogram, Stats};
use crate::store::SwapStore;
use crate::sys::file::{Location, SwapFile};
use crate::sys::mem::Mapping;
use crate::sys::poll::Waker;
use crate::sys::uffd::{self, Uffd, UffdSource};
use crate::util::lock;
use crossbeam_channel::{Receiver, Sender};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Whether a region can still be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    Live,
    Killed,
    Released,
}

pub(crate) struct RegionState {
    pub(crate) arena: u32,
    pub(crate) map: Arc<Mapping>,
    pub(crate) pages: PageTable,
    pub(crate) npages: u64,
    /// Pages holding a frame (resident, or evicting until the write completes).
    pub(crate) resident: u64,
    /// Pages whose only copy is in swap.
    pub(crate) swapped: u64,
    /// Pinned pages (part of `resident`).
    pub(crate) pinned: u64,
    /// Swap slots held by this region's pages (swapped, or resident and clean).
    pub(crate) slots: u64,
    /// Pages of this region in flight (page-in or eviction I/O).
    pub(crate) inflight: u64,
    /// Of those, dirty pages an eviction is writing back to the region's file (`Shared` maps).
    /// A flush, a release and a kill are not done until the ones they found have landed.
    pub(crate) writing_back: u64,
    pub(crate) stream: Stream,
    pub(crate) live: Liveness,
    /// Count of poisoned pages, read lock-free by the safe accessors.
    pub(crate) poisoned: Arc<AtomicU64>,
    /// The fork family: regions whose pages may refer to the same copy-on-write shares.
    pub(crate) family: u32,
    /// Pages referring to a share, in any state.
    pub(crate) shared: u64,
    /// Pages referring to a share and holding a frame (part of `resident`).
    pub(crate) shared_resident: u64,
    /// The file behind a file-backed region.
    pub(crate) file: Option<Arc<crate::filemap::FileMap>>,
}

/// State of an arena shared with its public handle without the state lock.
#[derive(Debug)]
pub(crate) struct ArenaShared {
    pub(crate) id: u32,
    pub(crate) name: String,
    pub(crate) killed: AtomicBool,
    /// Threads currently inside a safe accessor of this arena.
    pub(crate) accessors: Mutex<Vec<Accessor>>,
    /// Bumped whenever an accessor's fault fails; accessors compare it before and after.
    pub(crate) failures: AtomicU64,
    /// Zero pages handed to accessors of dead pages, not yet scrubbed.
    pub(crate) reserve_pages: AtomicUsize,
    /// Pages poisoned because a raw access found no memory (safe reads check pages while > 0).
    pub(crate) oom_poisoned: AtomicUsize,
}

/// A thread inside a safe accessor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Accessor {
    /// Kernel thread id (as userfaultfd reports it).
    pub(crate) tid: u32,
    /// A fault of this access could not be served (no memory and nothing killable).
    pub(crate) failed: bool,
}

impl ArenaShared {
    /// Whether `tid` is inside a safe accessor (every thread counts when the kernel does not
    /// report thread ids).
    pub(crate) fn is_accessor(&self, tid: u32, has_tid: bool) -> bool {
        !has_tid || lock(&self.accessors).iter().any(|a| a.tid == tid)
    }

    /// Records that `tid`'s access failed; returns whether `tid` is an accessor.
    pub(crate) fn fail_accessor(&self, tid: u32, has_tid: bool) -> bool {
        let mut a = lock(&self.accessors);
        let mut found = false;
        for x in a.iter_mut().filter(|x| x.tid == tid || !has_tid) {
            x.failed = true;
            found = true;
        }
        if found {
            self.failures.fetch_add(1, Ordering::AcqRel);
        }
        found
    }
}

pub(crate) struct ArenaState {
    pub(crate) shared: Arc<ArenaShared>,
    /// Region ids (a set: releasing one of many regions must not cost a scan).
    pub(crate) regions: crate::mm::page::IdSet<u32>,
    pub(crate) counters: Counters,
    pub(crate) hist: Histogram,
    pub(crate) profile: crate::oom::Profile,
    pub(crate) psi: Psi,
}

/// The arena table: each arena's accounting and OOM profile, what arenas that are gone
/// leave behind (counters, latency, kills), and the victim policy that chooses among them.
pub(crate) struct Arenas {
    map: IdMap<u32, ArenaState>,
    next: u32,
    /// Counters and latency of arenas that are gone.
    retired: Counters,
    retired_hist: Histogram,
    /// Arenas killed so far.
    kills: u64,
    policy: Arc<dyn VictimPolicy>,
}

impl Arenas {
    pub(crate) fn new(policy: Arc<dyn VictimPolicy>) -> Arenas {
        Arenas {
            map: IdMap::default(),
            next: 1,
            retired: Counters::default(),
            retired_hist: Histogram::default(),
            kills: 0,
            policy,
        }
    }

    pub(crate) fn get(&self, id: &u32) -> Option<&ArenaState> {
        self.map.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: &u32) -> Option<&mut ArenaState> {
        self.map.get_mut(id)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &u32> {
        self.map.keys()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &ArenaState> {
        self.map.values()
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut ArenaState> {
        self.map.values_mut()
    }

    /// Adds the arena `make(id)` returns under a new id; `None` when ids ran out.
    pub(crate) fn insert(&mut self, make: impl FnOnce(u32) -> ArenaState) -> Option<Arc<ArenaShared>> {
        let id = self.next;
        self.next = self.next.checked_add(1)?;
        let a = make(id);
        debug_assert_eq!(a.shared.id, id);
        let shared = a.shared.clone();
        self.map.insert(id, a);
        Some(shared)
    }

    /// The arena is gone: its counters and latency join the retired totals.
    pub(crate) fn retire(&mut self, id: u32) {
        if let Some(a) = self.map.remove(&id) {
            self.retired.add(&a.counters);
            self.retired_hist.merge(&a.hist);
        }
    }

    /// Counters and latency of arenas that are gone.
    pub(crate) fn retired(&self) -> (&Counters, &Histogram) {
        (&self.retired, &self.retired_hist)
    }

    /// `n` more arenas were killed.
    pub(crate) fn count_kills(&mut self, n: u64) {
        self.kills += n;
    }

    pub(crate) fn kills(&self) -> u64 {
        self.kills
    }

    pub(crate) fn policy(&self) -> &dyn VictimPolicy {
        &*self.policy
    }

    /// The policy, to call without the state lock's borrow.
    pub(crate) fn policy_handle(&self) -> Arc<dyn VictimPolicy> {
        self.policy.clone()
    }

    pub(crate) fn set_policy(&mut self, p: Arc<dyn VictimPolicy>) {
        self.policy = p;
    }
}

impl std::ops::Index<&u32> for Arenas {
    type Output = ArenaState;
    fn index(&self, id: &u32) -> &ArenaState {
        &self.map[id]
    }
}

/// The address space: the regions by id, and the live ones by address. Implements
/// [`PageStore`] for the replacement policy.
pub(crate) struct Regions {
    map: IdMap<u32, RegionState>,
    /// Live (not released) regions by start address.
    by_addr: BTreeMap<usize, u32>,
    next: u32,
}

impl Default for Regions {
    fn default() -> Regions {
        Regions { map: IdMap::default(), by_addr: BTreeMap::new(), next: 1 }
    }
}

impl Regions {
    pub(crate) fn get(&self, rid: &u32) -> Option<&RegionState> {
        self.map.get(rid)
    }

    pub(crate) fn get_mut(&mut self, rid: &u32) -> Option<&mut RegionState> {
        self.map.get_mut(rid)
    }

    pub(crate) fn contains_key(&self, rid: &u32) -> bool {
        self.map.contains_key(rid)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &RegionState> {
        self.map.values()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&u32, &RegionState)> {
        self.map.iter()
    }

    /// The id the next region will get, if any is left.
    pub(crate) fn next_id(&self) -> Option<u32> {
        self.next.checked_add(1).map(|_| self.next)
    }

    /// Adds a region under [`next_id`](Self::next_id), found by its mapping's address from now on.
    pub(crate) fn insert(&mut self, r: RegionState) -> u32 {
        let id = self.next;
        self.next += 1;
        self.by_addr.insert(r.map.addr(), id);
        self.map.insert(id, r);
        id
    }

    /// Faults at `rid`'s addresses are no longer its own (it is being released); the region stays
    /// until [`remove`](Self::remove).
    pub(crate) fn unmap(&mut self, rid: u32) {
        if let Some(r) = self.map.get(&rid) {
            self.by_addr.remove(&r.map.addr());
        }
    }

    pub(crate) fn remove(&mut self, rid: &u32) -> Option<RegionState> {
        let r = self.map.remove(rid)?;
        if self.by_addr.get(&r.map.addr()) == Some(rid) {
            self.by_addr.remove(&r.map.addr());
        }
        Some(r)
    }

    /// Checks that exactly the live regions are found by address, each at its own.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        let live = self.map.values().filter(|r| r.live != Liveness::Released).count();
        if live != self.by_addr.len() {
            return Err(format!("{live} regions not released, {} found by address", self.by_addr.len()));
        }
        for (&addr, rid) in &self.by_addr {
            match self.map.get(rid) {
                Some(r) if r.map.addr() == addr && r.live != Liveness::Released => {}
                _ => return Err(format!("address {addr:#x} leads to region {rid}, which is not there")),
            }
        }
        Ok(())
    }

    /// The live region containing `addr` and the page index in it (`page`: the page size).
    pub(crate) fn locate(&self, addr: usize, page: usize) -> Option<(u32, u64)> {
        let (_, &rid) = self.by_addr.range(..=addr).next_back()?;
        let r = self.map.get(&rid)?;
        r.map.contains(addr).then(|| (rid, ((addr - r.map.addr()) / page) as u64))
    }
}

impl std::ops::Index<&u32> for Regions {
    type Output = RegionState;
    fn index(&self, rid: &u32) -> &RegionState {
        &self.map[rid]
    }
}

impl PageStore for Regions {
    fn entry(&self, k: PageKey) -> Option<Entry> {
        let (r, p) = unkey(k);
        self.map.get(&r).map(|r| r.pages.get(p))
    }
    fn set_entry(&mut self, k: PageKey, e: Entry) {
        let (r, p) = unkey(k);
        if let Some(r) = self.map.get_mut(&r) {
            r.pages.set(p, e);
        }
    }
}

pub(crate) struct State {
    pub(crate) frames: Frames,
    pub(crate) slots: Slots,
    pub(crate) lru: Lru,
    pub(crate) regions: Regions,
    pub(crate) arenas: Arenas,
    /// Page I/O in flight.
    pub(crate) inflight: InFlight,
    /// Emergency pages given to safe accessors: (region, page, the accessor's thread id).
    pub(crate) reserve: Vec<(u32, u64, u32)>,
    /// Frames pinned.
    pub(crate) pinned: usize,
    /// Commit charge: bytes of live reservations.
    pub(crate) committed: u64,
    /// Pages poisoned because a raw access found no memory; cleared when memory is free again.
    pub(crate) oom_poisoned: Vec<(u32, u64)>,
    /// Runtime-wide stall accounting and the pressure trigger's record.
    pub(crate) stalls: StallWatch,
    /// Events held back until the file write-backs in flight on these regions have landed: a
    /// kill is reported only once every write to its `Shared` maps is in the file.
    pub(crate) held_events: Vec<(Event, Vec<u32>)>,
    /// Killed arenas' page runs waiting for the reaper.
    pub(crate) reap: ReapQueue,
    /// Resident, clean, unpinned pages: what reclaim can take without swap.
    pub(crate) clean: usize,
    /// Pages a safe write holds resident while it copies into them (key → holders).
    pub(crate) held: IdMap<PageKey, u32>,
    /// Copy-on-write shares and the fork families referring to them.
    pub(crate) shares: crate::mm::shares::Shares,
    /// The `Shared` file maps among the regions.
    pub(crate) file_maps: FileMaps,
    /// When the last reclaim summary was logged, and the counters then.
    pub(crate) reclaim_log: Option<(Instant, [u64; 5])>,
}

impl State {
    /// The state of a new runtime: `budget` frames (with a pool on the MOVE path), `swap_slots`
    /// slots, no region and no arena.
    pub(crate) fn new(budget: usize, pool: bool, swap_slots: u32, policy: Arc<dyn VictimPolicy>) -> State {
        State {
            frames: Frames::new(budget, pool),
            slots: Slots::new(swap_slots),
            lru: Lru::with_capacity(budget),
            regions: Regions::default(),
            arenas: Arenas::new(policy),
            inflight: InFlight::default(),
            reserve: Vec::new(),
            pinned: 0,
            committed: 0,
            oom_poisoned: Vec::new(),
            stalls: StallWatch::new(Instant::now()),
            held_events: Vec::new(),
            reap: ReapQueue::default(),
            clean: 0,
            held: IdMap::default(),
            shares: Default::default(),
            file_maps: FileMaps::default(),
            reclaim_log: None,
        }
    }

    pub(crate) fn region(&self, rid: u32) -> &RegionState {
        &self.regions[&rid]
    }

    /// Pages an eviction is writing back to region `rid`'s file (0 for a region that is gone).
    pub(crate) fn writing_back(&self, rid: u32) -> u64 {
        self.regions.get(&rid).map_or(0, |r| r.writing_back)
    }

    pub(crate) fn region_mut(&mut self, rid: u32) -> &mut RegionState {
        self.regions.get_mut(&rid).expect("region id refers to a live region")
    }

    /// The region containing `addr` and the page index in it.
    pub(crate) fn locate(&self, addr: usize, page: usize) -> Option<(u32, u64)> {
        self.regions.locate(addr, page)
    }

    pub(crate) fn counters(&mut self, rid: u32) -> &mut Counters {
        let a = self.regions[&rid].arena;
        &mut self.arenas.get_mut(&a).expect("region's arena exists").counters
    }

    /// Whether dirty pages can be written out now.
    pub(crate) fn swap_writable(&self) -> bool {
        self.slots.writable()
    }

    /// Frees the swap slot an entry holds, if any.
    pub(crate) fn release_slot(&mut self, rid: u32, e: &mut Entry) {
        if let Some(s) = e.slot() {
            self.slots.free(s);
            e.set_slot(None);
            if let Some(r) = self.regions.get_mut(&rid) {
                r.slots -= 1;
            }
        }
    }

    /// Records that an entry's data now also lives in slot `s`.
    pub(crate) fn attach_slot(&mut self, rid: u32, e: &mut Entry, s: u32) {
        debug_assert!(e.slot().is_none());
        e.set_slot(Some(s));
        self.region_mut(rid).slots += 1;
    }
}

/// The state lock, held. Functions that take it by value (and hand it back) may unlock and
/// relock on the way, so what was read before may have changed; functions that take `&State` or
/// `&mut State` never unlock.
///
/// In debug builds the thread is marked as holding it: taking it again on the same thread — a
/// fault taken while holding it, which the SIGBUS resolver would serve by locking again — aborts
/// with a message instead of deadlocking without a word.
pub(crate) struct Guard<'a> {
    /// Always `Some`, except inside [`wait_on`](Self::wait_on).
    g: Option<MutexGuard<'a, State>>,
}

#[cfg(debug_assertions)]
thread_local! {
    /// This thread holds the state lock (const-initialised: no allocation, safe in a handler).
    static HOLDS_STATE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as holding the state lock or not (debug builds only).
fn mark_holding(holds: bool) {
    #[cfg(debug_assertions)]
    HOLDS_STATE.with(|h| h.set(holds));
    #[cfg(not(debug_assertions))]
    let _ = holds;
}

impl<'a> Guard<'a> {
    fn new(m: &'a Mutex<State>) -> Guard<'a> {
        #[cfg(debug_assertions)]
        if HOLDS_STATE.with(std::cell::Cell::get) {
            crate::sys::die(
                "pagewarden: this thread already holds the runtime's state lock (a fault taken while \
                 holding it?); aborting instead of deadlocking\n",
            );
        }
        let g = lock(m);
        mark_holding(true);
        Guard { g: Some(g) }
    }

    /// Waits on `cv` for at most `d`, the lock released meanwhile.
    fn wait_on(mut self, cv: &Condvar, d: Duration) -> Guard<'a> {
        let g = self.g.take().expect("a guard holds the lock");
        mark_holding(false);
        let g = match cv.wait_timeout(g, d) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        };
        mark_holding(true);
        self.g = Some(g);
        self
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if self.g.is_some() {
            mark_holding(false);
        }
    }
}

impl std::ops::Deref for Guard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.g.as_ref().expect("a guard holds the lock")
    }
}

impl std::ops::DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.g.as_mut().expect("a guard holds the lock")
    }
}

impl crate::config::RuntimeBuilder {
    /// Creates the runtime: applies the `PAGEWARDEN_*` environment variables to the settings the
    /// program did not set (see [the table](crate::RuntimeBuilder#configuration-from-the-environment)),
    /// checks every setting, opens the userfaultfd, creates the swap file and starts the threads.
    ///
    /// Errors: [`Error::InvalidConfig`] and [`Error::InvalidEnv`] for bad settings (the latter
    /// names the variable), [`Error::UserfaultfdUnavailable`] and [`Error::MissingKernelFeature`]
    /// for the kernel, [`Error::SwapFile`] for the swap file, [`Error::StoreNotSignalSafe`] for
    /// a [`swap_store`](Self::swap_store) that cannot serve [`FaultMode::InThread`](crate::FaultMode::InThread).
    ///
    /// ```
    /// let rt = pagewarden::Runtime::builder().frame_budget(4 << 20).swap_capacity(8 << 20).build()?;
    /// assert_eq!(rt.stats().swap_slots, (8 << 20) / rt.page_size() as u64);
    /// # Ok::<(), pagewarden::Error>(())
    /// ```
    pub fn build(self) -> Result<Runtime> {
        Runtime::start(self.into_config()?)
    }
}

/// Everything the threads share.
pub(crate) struct Core {
    pub(crate) cfg: Config,
    pub(crate) uffd: Uffd,
    pub(crate) path: EvictionPath,
    /// The frame pool (MOVE path only).
    pub(crate) pool: Option<Mapping>,
    /// A never-written mapping: the source of zero-filled pages for UFFDIO_COPY (it maps only the
    /// shared zero page, so it costs no frames).
    pub(crate) zero: Mapping,
    /// Where evicted pages go: the store with its layers (encryption, the fault injector).
    pub(crate) swap: Option<Arc<dyn SwapStore>>,
    pub(crate) state: Mutex<State>,
    /// Signalled when frames are freed or in-flight work completes. Wait on it with
    /// [`Core::wait_progress`] and signal it with [`Core::notify_progress`].
    pub(crate) progress: Condvar,
    /// Threads waiting on `progress`. Changed and read only with the state lock held, so that a
    /// signal with nobody waiting (most page-ins) costs no futex call.
    pub(crate) progress_waiters: std::sync::atomic::AtomicUsize,
    /// Wakes the background reclaimer.
    pub(crate) reclaim_cv: Condvar,
    pub(crate) events: Sender<Event>,
    pub(crate) events_rx: Receiver<Event>,
    pub(crate) dropped_events: AtomicU64,
    pub(crate) shutdown: AtomicBool,
    pub(crate) waker: Waker,
    /// The kernel reports faulting thread ids.
    pub(crate) has_tid: bool,
    /// UFFDIO_POISON is available.
    pub(crate) can_poison: bool,
    /// Faults are resolved in the faulting thread's SIGBUS handler.
    pub(crate) in_thread: bool,
    /// Staging buffers for in-thread faults (one per fault in progress).
    pub(crate) scratch: Mutex<Vec<crate::engine::fault::Scratch>>,
    /// Vectors for evictions, reused (see [`EvictBufs`](crate::engine::reclaim::EvictBufs)).
    pub(crate) evict_bufs: Mutex<Vec<crate::engine::reclaim::EvictBufs>>,
    /// Held (shared) while reclaim moves pages out of arenas without the state lock; taken
    /// (exclusive) by [`Runtime::resident_frames_measured`] so that no page is counted twice.
    pub(crate) moving: std::sync::RwLock<()>,
    /// Set when a handler, the reclaimer or the victim policy panicked: the runtime serves no more
    /// faults.
    pub(crate) failed: AtomicBool,
    pub(crate) failure: Mutex<String>,
}

impl Core {
    /// Locks the state. A panic in another thread while it held the lock leaves the state as that
    /// thread left it; we keep serving rather than leave app threads parked forever.
    pub(crate) fn lock(&self) -> Guard<'_> {
        Guard::new(&self.state)
    }

    pub(crate) fn page(&self) -> usize {
        self.cfg.page
    }

    /// Stops serving faults after an internal failure (a panic in a handler, the reclaimer or the
    /// victim policy):
    /// its bookkeeping can no longer be trusted. From now on every fault is answered as for a dead
    /// page (a safe accessor returns [`Error::RuntimeFailed`], raw access gets SIGBUS) and every
    /// call returns `RuntimeFailed`. The userfaultfd stays open, so no thread ever resumes on a
    /// page of zeros in place of its data.
    pub(crate) fn fail(&self, why: String) {
        log::error!("pagewarden: runtime failed: {why}");
        let mut f = lock(&self.failure);
        if f.is_empty() {
            *f = why;
        }
        self.failed.store(true, Ordering::Release);
        self.progress.notify_all();
    }

    /// After [`Core::fail`] from a thread that holds no state lock (a panic caught in a handler
    /// or the reclaimer): wakes every thread parked on any region, so that none stays parked on a
    /// page whose page-in or eviction the panic abandoned. Each retries its access, and its next
    /// fault is answered as on a failed runtime.
    pub(crate) fn release_parked(&self) {
        let st = self.lock();
        for r in st.regions.values() {
            if let Err(e) = self.uffd.wake(&r.map, 0, r.map.len()) {
                log::error!("pagewarden: waking the threads of a failed runtime failed: {e}");
            }
        }
    }

    pub(crate) fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// `Err(RuntimeFailed)` once the runtime has failed.
    pub(crate) fn check(&self) -> Result<()> {
        if self.is_failed() {
            return Err(Error::RuntimeFailed { detail: lock(&self.failure).clone() });
        }
        Ok(())
    }

    pub(crate) fn publish(&self, ev: Event) {
        if self.events.try_send(ev).is_err() {
            self.dropped_events.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Publishes `ev` once no eviction is writing back to the files of `rids` (at once when none
    /// is): an event must not announce what the files do not show yet.
    pub(crate) fn publish_after_writebacks(&self, st: &mut State, ev: Event, rids: Vec<u32>) {
        if rids.iter().any(|&r| st.writing_back(r) > 0) {
            st.held_events.push((ev, rids));
        } else {
            self.publish(ev);
        }
    }

    /// Publishes the held events whose write-backs have all landed, in the order they were held.
    pub(crate) fn publish_landed(&self, st: &mut State) {
        let mut i = 0;
        while i < st.held_events.len() {
            if st.held_events[i].1.iter().all(|&r| st.writing_back(r) == 0) {
                let (ev, _) = st.held_events.remove(i);
                self.publish(ev);
            } else {
                i += 1;
            }
        }
    }

    /// Waits until no eviction is writing back to the files of `rids` (or the runtime failed:
    /// its in-flight work will never end).
    pub(crate) fn wait_writebacks<'a>(&'a self, mut st: Guard<'a>, rids: &[u32]) -> Guard<'a> {
        while !self.is_failed() && rids.iter().any(|&r| st.writing_back(r) > 0) {
            st = self.wait_progress(st, Duration::from_millis(5));
        }
        st
    }

    pub(crate) fn wait<'a>(&'a self, st: Guard<'a>, cv: &Condvar, d: Duration) -> Guard<'a> {
        st.wait_on(cv, d)
    }

    /// Waits (at most `d`) for frames to be freed or in-flight work to complete.
    pub(crate) fn wait_progress<'a>(&'a self, st: Guard<'a>, d: Duration) -> Guard<'a> {
        // Counted while the lock is held, before `wait` releases it: a signaller changes the state
        // under the same lock, so it either runs before this thread looks at the state or sees
        // the count.
        self.progress_waiters.fetch_add(1, Ordering::Relaxed);
        let st = self.wait(st, &self.progress, d);
        self.progress_waiters.fetch_sub(1, Ordering::Relaxed);
        st
    }

    /// Wakes the threads waiting for progress, if any. Call with the state lock held.
    pub(crate) fn notify_progress(&self) {
        if self.progress_waiters.load(Ordering::Relaxed) > 0 {
            self.progress.notify_all();
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut st = self.lock();
        let now = Instant::now();
        let (retired, retired_hist) = st.arenas.retired();
        let mut totals = *retired;
        let mut hist = retired_hist.clone();
        let mut arenas = Vec::new();
        let mut metadata = 0u64;
        let mut tracked = 0u64;
        for r in st.regions.values() {
            metadata += r.pages.heap_bytes() as u64;
            tracked += r.resident + r.swapped;
        }
        metadata += (st.lru.resident() * std::mem::size_of::<PageKey>()) as u64;
        metadata += st.shares.heap_bytes() as u64;
        let mut ids: Vec<u32> = st.arenas.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let a = &st.arenas[&id];
            totals.add(&a.counters);
            hist.merge(&a.hist);
            arenas.push(self.arena_stats(&mut st, id, now));
        }
        let budget = st.frames.budget() as u64;
        let swap = u64::from(st.slots.capacity());
        let usage = self.swap.as_ref().map(|s| s.usage()).unwrap_or_default();
        let ps = self.page() as u64;
        let ratio = match self.cfg.overcommit {
            crate::Overcommit::Strict { ratio } => ratio,
            _ => 0.5,
        };
        Stats {
            page_size: self.page(),
            budget_frames: budget,
            frames_in_use: st.frames.in_use() as u64,
            frames_pooled: st.frames.populated() as u64,
            pinned_frames: st.pinned as u64,
            pin_limit_frames: self.cfg.pin_limit as u64,
            swap_slots: swap,
            swap_usable_slots: u64::from(st.slots.limit()),
            swap_used: u64::from(st.slots.used()),
            swap_file_bytes: usage.occupied_bytes,
            swap_cut_by_disk: self.cfg.swap_cut_by_disk || st.slots.limit() < st.slots.capacity(),
            swap_direct: self.swap.as_ref().is_some_and(|s| s.is_direct()),
            swap_read_ios: usage.read_ios,
            swap_write_ios: usage.write_ios,
            committed_bytes: st.committed,
            commit_limit_bytes: crate::engine::pin::commit_limit(swap * ps, budget * ps, ratio),
            overcommit: self.cfg.overcommit,
            fault_mode: self.cfg.fault_mode,
            eviction: self.path,
            uffd_source: self.uffd.source(),
            policy: crate::oom::policy_name(st.arenas.policy()),
            metadata_bytes: metadata,
            tracked_pages: tracked,
            kills: st.arenas.kills(),
            pressure: st.stalls.psi().snapshot(now),
            totals,
            latency: hist.summary(),
            arenas,
        }
    }

    pub(crate) fn check_invariants(&self) -> std::result::Result<(), String> {
        use crate::mm::page::PageState as S;
        let st = self.lock();
        let queued: std::collections::HashSet<PageKey> = st.lru.queued_keys().collect();
        let (mut resident, mut in_lru, mut slots, mut pinned, mut clean) = (0u64, 0usize, 0u64, 0u64, 0usize);
        // Share id → (references, references holding a frame), counted from the pages.
        let mut refs: std::collections::HashMap<u32, (u32, u32)> = std::collections::HashMap::new();
        st.regions.check()?;
        for (&rid, r) in st.regions.iter() {
            let (mut res, mut sw, mut pin, mut sl) = (0u64, 0u64, 0u64, 0u64);
            let (mut sh, mut sh_res) = (0u64, 0u64);
            for (p, e) in r.pages.entries() {
                let k = crate::mm::lru::key(rid, p);
                if let Some(id) = e.share() {
                    let held = matches!(e.state(), S::Resident | S::Evicting);
                    let c = refs.entry(id).or_default();
                    c.0 += 1;
                    c.1 += u32::from(held);
                    sh += 1;
                    sh_res += u64::from(held);
                    if !matches!(e.state(), S::Resident | S::Evicting | S::PageIn | S::Shared) {
                        return Err(format!("region {rid} page {p}: {:?} refers to share {id}", e.state()));
                    }
                    if e.dirty() {
                        return Err(format!("region {rid} page {p}: dirty, yet refers to share {id}"));
                    }
                } else if e.state() == S::Shared {
                    return Err(format!("region {rid} page {p}: shared without a share"));
                }
                match e.state() {
                    S::Resident => {
                        res += 1;
                        if e.pinned() {
                            pin += 1;
                        } else {
                            in_lru += 1;
                            clean += usize::from(!e.dirty());
                            if !e.queued() || !queued.contains(&k) {
                                return Err(format!(
                                    "region {rid} page {p}: resident but not on a replacement list ({e:?})"
                                ));
                            }
                        }
                    }
                    S::Evicting => res += 1,
                    S::Swapped if e.slot().is_none() && !e.reserve() => {
                        return Err(format!("region {rid} page {p}: swapped without a slot"));
                    }
                    S::Swapped => sw += 1,
                    // On its way in from swap: still counted as swapped until installed.
                    S::PageIn if e.slot().is_some() => sw += 1,
                    _ => {}
                }
                sl += u64::from(e.slot().is_some());
            }
            if (res, sw, pin, sl) != (r.resident, r.swapped, r.pinned, r.slots) {
                let odd: Vec<String> = r
                    .pages
                    .entries()
                    .into_iter()
                    .filter(|(_, e)| e.slot().is_some() && e.state() != S::Swapped)
                    .take(8)
                    .map(|(p, e)| format!("{p}:{e:?}/{:?}", e.state()))
                    .collect();
                return Err(format!(
                    "region {rid}: counted resident/swapped/pinned/slots {:?}, recorded {:?} ({})",
                    (res, sw, pin, sl),
                    (r.resident, r.swapped, r.pinned, r.slots),
                    odd.join(" ")
                ));
            }
            if (sh, sh_res) != (r.shared, r.shared_resident) {
                return Err(format!(
                    "region {rid}: counted shared/shared-resident {:?}, recorded {:?}",
                    (sh, sh_res),
                    (r.shared, r.shared_resident)
                ));
            }
            resident += res;
            slots += sl;
            pinned += pin;
        }
        let mut live_shares = 0;
        for (id, s) in st.shares.iter() {
            live_shares += 1;
            let counted = refs.get(&id).copied().unwrap_or_default();
            if counted != (s.refs, s.resident) {
                return Err(format!(
                    "share {id}: pages count references/frames {counted:?}, it records {:?}",
                    (s.refs, s.resident)
                ));
            }
            if s.slot.is_none() && s.resident == 0 {
                return Err(format!("share {id}: {} references, but its data is nowhere", s.refs));
            }
            slots += u64::from(s.slot.is_some());
        }
        if live_shares != refs.len() || live_shares != st.shares.len() {
            return Err(format!(
                "{} shares referred to by pages, {live_shares} live, {} recorded",
                refs.len(),
                st.shares.len()
            ));
        }
        if in_lru != st.lru.resident() {
            return Err(format!("{in_lru} unpinned resident pages, the replacement lists count {}", st.lru.resident()));
        }
        let in_use = crate::mm::idx(resident) + st.inflight.paging_in() + st.reap.frames();
        if in_use != st.frames.in_use() {
            return Err(format!("frames: pages account for {in_use}, the budget counts {}", st.frames.in_use()));
        }
        let in_flight = st.inflight.to_swap() as u64;
        if slots + in_flight != u64::from(st.slots.used()) {
            return Err(format!(
                "slots: pages hold {slots} (+{in_flight} in flight), the allocator counts {}",
                st.slots.used()
            ));
        }
        if clean != st.clean {
            return Err(format!("clean pages: {clean} counted, {} recorded", st.clean));
        }
        if crate::mm::idx(pinned) != st.pinned {
            return Err(format!("pins: pages hold {pinned}, the runtime counts {}", st.pinned));
        }
        Ok(())
    }

    pub(crate) fn arena_stats(&self, st: &mut State, id: u32, now: Instant) -> ArenaStats {
        let total = self.total_pages(st);
        let a = &st.arenas[&id];
        let c = self.candidate(st, a, None, now);
        let reserved = a.regions.iter().map(|rid| st.region(*rid).map.len() as u64).sum();
        let (shared, regions, counters, latency, adj, impact) =
            (a.shared.clone(), a.regions.len(), a.counters, a.hist.summary(), a.profile.adj, a.profile.impact);
        let pressure = st.arenas.get_mut(&id).expect("arena exists").psi.snapshot(now);
        ArenaStats {
            id: u64::from(id),
            name: shared.name.clone(),
            killed: shared.killed.load(Ordering::Acquire),
            regions,
            reserved_bytes: reserved,
            resident_pages: c.resident,
            swapped_pages: c.swapped,
            pinned_pages: c.pinned,
            shared_pages: st.arenas[&id].regions.iter().map(|r| st.region(*r).shared).sum(),
            unique_pages: c.unique(),
            oom_score: if shared.killed.load(Ordering::Acquire) { 0 } else { c.oom_score(total) },
            oom_score_adj: adj,
            impact,
            counters,
            latency,
            pressure,
        }
    }
}

impl std::fmt::Debug for RtHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RtHandle")
    }
}

/// Owns the threads; when the last handle (runtime, arena or region) goes, they stop.
pub(crate) struct RtHandle {
    pub(crate) core: Arc<Core>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for RtHandle {
    fn drop(&mut self) {
        self.core.shutdown.store(true, Ordering::Release);
        self.core.waker.wake();
        {
            let _g = self.core.lock();
            self.core.reclaim_cv.notify_all();
            self.core.progress.notify_all();
        }
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            let _ = t.join();
        }
        if self.core.in_thread {
            crate::entry::sigbus::unregister_in_thread(&self.core);
        }
    }
}

/// The pagewarden runtime: one userfaultfd, its handler threads, a frame budget and a swap store.
///
/// Cheap to clone (a handle). The threads run until the runtime and every arena and region made
/// from it are dropped; dropping the `Runtime` first is fine and never strands a faulting thread.
///
/// ```
/// let rt = pagewarden::Runtime::builder().frame_budget(32 << 20).build()?;
/// let arena = rt.arena("cache").create()?;
/// let region = arena.reserve(1 << 30)?;     // 1 GiB of address space, no frames yet
/// region.write(4096, b"hello")?;             // a real page fault, served by the runtime
/// let mut buf = [0u8; 5];
/// region.read(4096, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// println!("{}", rt.stats());
/// # Ok::<(), pagewarden::Error>(())
/// ```
#[derive(Clone)]
pub struct Runtime {
    pub(crate) h: Arc<RtHandle>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("budget_frames", &self.h.core.cfg.budget_frames)
            .field("eviction", &self.h.core.path)
            .finish_non_exhaustive()
    }
}

fn open_failure(e: uffd::OpenFailure) -> Error {
    Error::UserfaultfdUnavailable {
        device: e.device.io(),
        syscall: e.syscall.io(),
        user_mode_only: e.user_mode_only.io(),
    }
}

impl Runtime {
    /// A builder with every setting at its default.
    pub fn builder() -> crate::RuntimeBuilder {
        crate::RuntimeBuilder::default()
    }

    pub(crate) fn start(cfg: Config) -> Result<Runtime> {
        let ps = cfg.page;
        let in_thread = cfg.fault_mode == crate::FaultMode::InThread;
        let mut wanted =
            uffd::feature::MOVE | uffd::feature::POISON | uffd::feature::THREAD_ID | uffd::feature::PAGEFAULT_FLAG_WP;
        if in_thread {
            wanted |= uffd::feature::SIGBUS;
        }
        let ufd = Uffd::open(wanted).map_err(open_failure)?;
        if in_thread && ufd.features() & uffd::feature::SIGBUS == 0 {
            return Err(Error::MissingKernelFeature {
                feature: "UFFD_FEATURE_SIGBUS",
                needed_for: "FaultMode::InThread (Linux 4.14+)",
            });
        }
        // Probe what an anonymous range supports on this kernel.
        let probe = Mapping::anonymous(ps)?;
        let ioctls = ufd.register(&probe, 0, ps, uffd::MODE_MISSING | uffd::MODE_WP).map_err(|e| {
            if e.errno == libc::EINVAL {
                Error::MissingKernelFeature {
                    feature: "UFFDIO_REGISTER_MODE_WP on anonymous memory",
                    needed_for: "dirty tracking and race-free eviction (Linux 5.7+)",
                }
            } else {
                e.into()
            }
        })?;
        ufd.unregister(&probe, 0, ps)?;
        drop(probe);
        if ioctls & uffd::ioctl_bit::WRITEPROTECT == 0 {
            return Err(Error::MissingKernelFeature {
                feature: "UFFDIO_WRITEPROTECT",
                needed_for: "dirty tracking and race-free eviction (Linux 5.7+)",
            });
        }
        let has_move = ufd.features() & uffd::feature::MOVE != 0 && ioctls & uffd::ioctl_bit::MOVE != 0;
        let path = match cfg.eviction {
            EvictionPath::Auto if has_move => EvictionPath::Move,
            EvictionPath::Auto => EvictionPath::WriteProtect,
            EvictionPath::Move if !has_move => {
                return Err(Error::MissingKernelFeature {
                    feature: "UFFD_FEATURE_MOVE",
                    needed_for: "EvictionPath::Move (Linux 6.8+); use EvictionPath::WriteProtect or Auto",
                });
            }
            p => p,
        };
        let can_poison = ufd.features() & uffd::feature::POISON != 0 && ioctls & uffd::ioctl_bit::POISON != 0;
        let has_tid = ufd.features() & uffd::feature::THREAD_ID != 0;
        let pool = if path == EvictionPath::Move {
            let m = Mapping::anonymous(cfg.budget_frames * ps)
                .map_err(|e| Error::AddressSpace { requested: cfg.budget_frames * ps, source: e.io() })?;
            // The pool is a MOVE destination, so it must be registered with the same uffd. We never
            // touch a hole in it (trap 9: that would fault into our own handler).
            ufd.register(&m, 0, m.len(), uffd::MODE_MISSING)?;
            Some(m)
        } else {
            None
        };
        let zero = Mapping::anonymous(cfg.max_readahead * ps)?;
        let swap: Option<Arc<dyn SwapStore>> = if let Some(store) = &cfg.swap_store {
            Some(store.clone())
        } else if cfg.swap_slots > 0 {
            let cap = u64::from(cfg.swap_slots) * ps as u64;
            let direct = cfg.swap_io == crate::SwapIo::Direct;
            let (loc, path) = match &cfg.swap {
                SwapLocation::TempIn(d) => (Location::TempIn(d), d.clone()),
                SwapLocation::Named(p) => (Location::Named(p), p.clone()),
            };
            let f = SwapFile::create(loc, cap, direct, cfg.preallocate)
                .map_err(|e| Error::SwapFile { path, source: e.io() })?;
            if direct && !f.is_direct() {
                log::warn!("pagewarden: the swap file system refuses O_DIRECT; swap I/O goes through the page cache");
            }
            let f = crate::store::FileStore::new(f, cfg.swap_slots, ps);
            if cfg.swap_faults.as_ref().is_some_and(|f| f.short_io) {
                f.limit_pages_per_call(1);
            }
            Some(Arc::new(f))
        } else {
            None
        };
        // The layers, over any store: encryption, then (tests only) the fault injector on top.
        let swap = match swap {
            Some(s) if cfg.encrypt_swap => Some(Arc::new(crate::store::Encrypted::new(s)?) as Arc<dyn SwapStore>),
            s => s,
        };
        let swap = match (swap, &cfg.swap_faults) {
            (Some(s), Some(plan)) => Some(Arc::new(crate::store::Injected::new(s, plan.clone())) as Arc<dyn SwapStore>),
            (s, _) => s,
        };
        let (tx, rx) = crossbeam_channel::bounded(cfg.event_capacity);
        let state = State::new(cfg.budget_frames, pool.is_some(), cfg.swap_slots, cfg.policy.clone());
        let core = Arc::new(Core {
            uffd: ufd,
            path,
            pool,
            zero,
            swap,
            state: Mutex::new(state),
            progress: Condvar::new(),
            progress_waiters: std::sync::atomic::AtomicUsize::new(0),
            reclaim_cv: Condvar::new(),
            events: tx,
            events_rx: rx,
            dropped_events: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            waker: Waker::new()?,
            has_tid,
            can_poison,
            in_thread,
            scratch: Mutex::new(Vec::new()),
            evict_bufs: Mutex::new(crate::engine::reclaim::EvictBufs::pool(cfg.max_readahead)),
            moving: std::sync::RwLock::new(()),
            failed: AtomicBool::new(false),
            failure: Mutex::new(String::new()),
            cfg,
        });
        if in_thread {
            crate::entry::sigbus::register_in_thread(&core)?;
        }
        let mut threads = Vec::new();
        let handlers = if core.in_thread { 0 } else { core.cfg.handler_threads };
        for i in 0..handlers {
            let c = core.clone();
            let t = std::thread::Builder::new()
                .name(format!("pw-fault-{i}"))
                .spawn(move || crate::entry::handler::handler_loop(&c))
                .map_err(|e| Error::Sys { op: "spawn handler thread", source: e })?;
            threads.push(t);
        }
        let c = core.clone();
        let t = std::thread::Builder::new()
            .name("pw-reclaim".into())
            .spawn(move || crate::entry::reclaimer::reclaimer_loop(&c))
            .map_err(|e| Error::Sys { op: "spawn reclaim thread", source: e })?;
        threads.push(t);
        log::debug!(
            "pagewarden: runtime up: budget {} frames, swap {} slots, path {:?}, uffd {:?}",
            core.cfg.budget_frames,
            core.cfg.swap_slots,
            core.path,
            core.uffd.source()
        );
        Ok(Runtime { h: Arc::new(RtHandle { core, threads: Mutex::new(threads) }) })
    }

    /// Starts creating an arena named `name` (names need not be unique; ids are): set its OOM
    /// profile on the builder, then `.create()`.
    ///
    /// ```
    /// # let rt = pagewarden::Runtime::builder().frame_budget(16 << 20).build()?;
    /// let a = rt.arena("cache").oom_score_adj(300).create()?;
    /// # Ok::<(), pagewarden::Error>(())
    /// ```
    pub fn arena(&self, name: &str) -> crate::ArenaBuilder {
        crate::ArenaBuilder::new(self.h.clone(), name)
    }

    /// Runs the OOM killer now, as if memory were short by `deficit` (like the kernel's
    /// SysRq-f): the policy chooses, the victims die (unless in dry-run mode), and the report is
    /// returned and published.
    pub fn run_oom_killer(&self, deficit: crate::Deficit) -> crate::OomReport {
        let c = &self.h.core;
        let mut st = c.lock();
        let report = c.oom(&mut st, crate::KillTrigger::Requested, deficit, None).1;
        c.settle(st, &report);
        report
    }

    /// Checks the runtime's bookkeeping for consistency (frames, slots, pins, replacement lists
    /// against every page's state) and describes the first inconsistency found. Meant for tests:
    /// it holds the state lock for a walk over every tracked page.
    #[doc(hidden)]
    pub fn debug_check_invariants(&self) -> std::result::Result<(), String> {
        self.h.core.check_invariants()
    }

    /// Replaces the victim policy.
    pub fn set_victim_policy(&self, policy: impl VictimPolicy + 'static) {
        self.h.core.lock().arenas.set_policy(Arc::new(policy));
    }

    /// A receiver of the runtime's [`Event`]s (kills, swap failures). All receivers share one
    /// queue: each event goes to one of them.
    pub fn events(&self) -> Receiver<Event> {
        self.h.core.events_rx.clone()
    }

    /// A snapshot of budget, swap and per-arena figures. `Display` prints it as a table.
    pub fn stats(&self) -> Stats {
        self.h.core.stats()
    }

    /// Evicts up to `frames` pages now (as the reclaimer would), returning how many frames were
    /// freed. Useful before a known burst of allocation, and in tests.
    pub fn reclaim(&self, frames: usize) -> usize {
        self.h.core.reclaim_now(frames)
    }

    /// The eviction path in use (never `Auto`).
    pub fn eviction_path(&self) -> EvictionPath {
        self.h.core.path
    }

    /// How the userfaultfd was created.
    pub fn uffd_source(&self) -> UffdSource {
        self.h.core.uffd.source()
    }

    /// The page (frame) size in bytes.
    pub fn page_size(&self) -> usize {
        self.h.core.page()
    }

    /// The frame budget, in frames.
    pub fn budget_frames(&self) -> usize {
        self.h.core.cfg.budget_frames
    }

    /// Physical pages the runtime holds right now, counted by the kernel (`mincore`) over every
    /// region and the frame pool. For checking the budget from outside the accounting.
    ///
    /// The count is taken with the runtime's state lock held and reclaim's page moves paused, so
    /// no page moves between an arena and the pool while it is counted: it is an exact snapshot
    /// (and it stalls faults while it runs, so call it for checks, not on a hot path).
    pub fn resident_frames_measured(&self) -> Result<usize> {
        let c = &self.h.core;
        let st = c.lock();
        // Lock order: state, then `moving` (reclaim holds `moving` without the state lock).
        let _still = c.moving.write().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for r in st.regions.values() {
            n += r.map.resident_pages(0, r.map.len())?;
        }
        if let Some(p) = &c.pool {
            n += p.resident_pages(0, p.len())?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the child process of `taking_the_state_lock_twice_aborts_with_a_message`.
    const CHILD: &str = "PAGEWARDEN_TEST_LOCK_TWICE_CHILD";

    fn state() -> Mutex<State> {
        Mutex::new(State::new(8, false, 8, Arc::new(crate::oom::policy::LinuxBadness)))
    }

    #[test]
    fn the_state_lock_can_be_taken_again_once_released_and_across_waits() {
        let m = state();
        let cv = Condvar::new();
        let g = Guard::new(&m);
        let g = g.wait_on(&cv, Duration::from_millis(1));
        drop(g);
        let g = Guard::new(&m);
        assert_eq!(g.frames.budget(), 8);
    }

    /// In debug builds a thread that takes the state lock while holding it (a fault taken while
    /// holding it, served in the same thread) aborts with a message rather than deadlocking. Run
    /// in a child process: the abort ends it.
    #[test]
    #[cfg(debug_assertions)]
    fn taking_the_state_lock_twice_aborts_with_a_message() {
        if std::env::var_os(CHILD).is_some() {
            let m = state();
            let _g = Guard::new(&m);
            let _again = Guard::new(&m);
            unreachable!("the second lock returned");
        }
        use std::os::unix::process::ExitStatusExt;
        let exe = std::env::current_exe().unwrap();
        let mut child = std::process::Command::new(exe)
            .args(["--exact", "runtime::tests::taking_the_state_lock_twice_aborts_with_a_message", "--nocapture"])
            .env(CHILD, "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A child that deadlocks instead is killed after 20 s, and the test fails.
        let t0 = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(20) {
                child.kill().unwrap();
                panic!("the child deadlocked on the second lock instead of aborting");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.signal(), Some(libc::SIGABRT), "the child must abort: {status:?}\n{stderr}");
        assert!(stderr.contains("already holds the runtime's state lock"), "{stderr}");
    }
}

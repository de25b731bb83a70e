//! The runtime's state: one value behind one lock, made of tables that each keep their own
//! invariants (the address space, the arena table, frames and their use, swap slots, shares, I/O
//! in flight, emergency pages, the reaper's queue, the stall record), and the guard that holds
//! the lock.

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
use crate::stats::{Counters, Histogram};
use crate::sys::mem::Mapping;
use crate::util::lock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
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
    /// Where the region's pages are, counted (kept in step with `pages`).
    pub(crate) counts: PageCounts,
    pub(crate) stream: Stream,
    pub(crate) live: Liveness,
    /// Count of poisoned pages, read lock-free by the safe accessors.
    pub(crate) poisoned: Arc<AtomicU64>,
    /// The fork family: regions whose pages may refer to the same copy-on-write shares.
    pub(crate) family: u32,
    /// The file behind a file-backed region.
    pub(crate) file: Option<Arc<crate::filemap::FileMap>>,
}

/// A region's pages counted by where they are; `Core::check_invariants` recounts them from the
/// page table.
#[derive(Default)]
pub(crate) struct PageCounts {
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
    /// Pages referring to a share, in any state.
    pub(crate) shared: u64,
    /// Pages referring to a share and holding a frame (part of `resident`).
    pub(crate) shared_resident: u64,
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

/// Pages served or poisoned from outside the budget when memory ran out.
#[derive(Default)]
pub(crate) struct Emergency {
    /// Emergency pages given to safe accessors: (region, page, the accessor's thread id).
    pub(crate) reserve: Vec<(u32, u64, u32)>,
    /// Pages poisoned because a raw access found no memory; cleared when memory is free again.
    pub(crate) oom_poisoned: Vec<(u32, u64)>,
}

/// How the frames in use are held, beyond the budget's count (see [`Frames`]).
#[derive(Default)]
pub(crate) struct FrameUse {
    /// Resident, clean, unpinned pages: what reclaim can take without swap.
    pub(crate) clean: usize,
    /// Frames pinned.
    pub(crate) pinned: usize,
    /// Commit charge: bytes of live reservations.
    pub(crate) committed: u64,
    /// Pages a safe write holds resident while it copies into them (key → holders).
    pub(crate) held: IdMap<PageKey, u32>,
}

pub(crate) struct State {
    pub(crate) frames: Frames,
    pub(crate) slots: Slots,
    pub(crate) lru: Lru,
    pub(crate) regions: Regions,
    pub(crate) arenas: Arenas,
    /// Page I/O in flight.
    pub(crate) inflight: InFlight,
    /// Pages served or poisoned from outside the budget when memory ran out.
    pub(crate) emergency: Emergency,
    /// How the frames in use are held: clean, pinned, held by safe writes, and the commit charge.
    pub(crate) usage: FrameUse,
    /// Runtime-wide stall accounting and the pressure trigger's record.
    pub(crate) stalls: StallWatch,
    /// Events held back until the file write-backs in flight on these regions have landed: a
    /// kill is reported only once every write to its `Shared` maps is in the file.
    pub(crate) held_events: Vec<(Event, Vec<u32>)>,
    /// Killed arenas' page runs waiting for the reaper.
    pub(crate) reap: ReapQueue,
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
            emergency: Emergency::default(),
            usage: FrameUse::default(),
            stalls: StallWatch::new(Instant::now()),
            held_events: Vec::new(),
            reap: ReapQueue::default(),
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
        self.regions.get(&rid).map_or(0, |r| r.counts.writing_back)
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
                r.counts.slots -= 1;
            }
        }
    }

    /// Records that an entry's data now also lives in slot `s`.
    pub(crate) fn attach_slot(&mut self, rid: u32, e: &mut Entry, s: u32) {
        debug_assert!(e.slot().is_none());
        e.set_slot(Some(s));
        self.region_mut(rid).counts.slots += 1;
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
    pub(crate) fn new(m: &'a Mutex<State>) -> Guard<'a> {
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
    pub(crate) fn wait_on(mut self, cv: &Condvar, d: Duration) -> Guard<'a> {
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
        // This test's name as the harness knows it: the module path without the crate's name.
        let me = format!(
            "{}::taking_the_state_lock_twice_aborts_with_a_message",
            module_path!().split_once("::").unwrap().1
        );
        let mut child = std::process::Command::new(exe)
            .args(["--exact", me.as_str(), "--nocapture"])
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

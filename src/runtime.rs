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

use crate::config::{Config, EvictionPath, SwapLocation};
use crate::core::frames::Frames;
use crate::core::lru::{Lru, PageKey, PageStore, unkey};
use crate::core::page::{Entry, IdMap, PageTable};
use crate::core::readahead::Stream;
use crate::core::slots::Slots;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::stats::{ArenaStats, Counters, Histogram, Stats};
use crate::sys::file::{Location, SwapFile};
use crate::sys::mem::Mapping;
use crate::sys::poll::Waker;
use crate::sys::uffd::{self, Uffd, UffdSource};
use crossbeam_channel::{Receiver, Sender};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

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
    /// Pages of this region in flight (page-in or eviction I/O).
    pub(crate) inflight: u64,
    pub(crate) stream: Stream,
    pub(crate) live: Liveness,
    /// Count of poisoned pages, read lock-free by the safe accessors.
    pub(crate) poisoned: Arc<AtomicU64>,
}

/// State of an arena shared with its public handle without the state lock.
#[derive(Debug)]
pub(crate) struct ArenaShared {
    pub(crate) id: u32,
    pub(crate) name: String,
    pub(crate) killed: AtomicBool,
    /// Kernel thread ids currently inside a safe accessor of this arena.
    pub(crate) accessors: Mutex<Vec<u32>>,
    /// Zero pages handed to accessors of dead pages, not yet scrubbed.
    pub(crate) reserve_pages: AtomicUsize,
}

pub(crate) struct ArenaState {
    pub(crate) shared: Arc<ArenaShared>,
    pub(crate) regions: Vec<u32>,
    pub(crate) counters: Counters,
    pub(crate) hist: Histogram,
}

/// The regions, by id; implements [`PageStore`] for the replacement policy.
#[derive(Default)]
pub(crate) struct Regions(pub(crate) IdMap<u32, RegionState>);

impl PageStore for Regions {
    fn entry(&self, k: PageKey) -> Option<Entry> {
        let (r, p) = unkey(k);
        self.0.get(&r).map(|r| r.pages.get(p))
    }
    fn set_entry(&mut self, k: PageKey, e: Entry) {
        let (r, p) = unkey(k);
        if let Some(r) = self.0.get_mut(&r) {
            r.pages.set(p, e);
        }
    }
}

pub(crate) struct State {
    pub(crate) frames: Frames,
    pub(crate) slots: Slots,
    pub(crate) lru: Lru,
    pub(crate) regions: Regions,
    pub(crate) by_addr: BTreeMap<usize, u32>,
    pub(crate) arenas: IdMap<u32, ArenaState>,
    pub(crate) next_region: u32,
    pub(crate) next_arena: u32,
    /// Pages in eviction I/O.
    pub(crate) evicting: usize,
    /// Pages in page-in I/O.
    pub(crate) paging_in: usize,
    /// Zero pages given to safe accessors of dead pages: (region, page).
    pub(crate) reserve: Vec<(u32, u64)>,
    /// Counters of arenas that are gone.
    pub(crate) retired: Counters,
    pub(crate) retired_hist: Histogram,
    pub(crate) kills: u64,
    /// A swap write failed: treat swap as full.
    pub(crate) swap_broken: bool,
}

impl State {
    pub(crate) fn region(&self, rid: u32) -> &RegionState {
        &self.regions.0[&rid]
    }

    pub(crate) fn region_mut(&mut self, rid: u32) -> &mut RegionState {
        self.regions
            .0
            .get_mut(&rid)
            .expect("region id refers to a live region")
    }

    /// The region containing `addr` and the page index in it.
    pub(crate) fn locate(&self, addr: usize, page: usize) -> Option<(u32, u64)> {
        let (_, &rid) = self.by_addr.range(..=addr).next_back()?;
        let r = self.regions.0.get(&rid)?;
        r.map
            .contains(addr)
            .then(|| (rid, ((addr - r.map.addr()) / page) as u64))
    }

    pub(crate) fn counters(&mut self, rid: u32) -> &mut Counters {
        let a = self.regions.0[&rid].arena;
        &mut self
            .arenas
            .get_mut(&a)
            .expect("region's arena exists")
            .counters
    }

    /// Whether dirty pages can be written out now.
    pub(crate) fn swap_writable(&self) -> bool {
        !self.swap_broken && self.slots.available() > 0
    }
}

pub(crate) type Guard<'a> = MutexGuard<'a, State>;

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
    pub(crate) swap: Option<SwapFile>,
    pub(crate) state: Mutex<State>,
    /// Signalled when frames are freed or in-flight work completes.
    pub(crate) progress: Condvar,
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
}

impl Core {
    /// Locks the state. A panic in another thread while it held the lock leaves the state as that
    /// thread left it; we keep serving rather than leave app threads parked forever.
    pub(crate) fn lock(&self) -> Guard<'_> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn page(&self) -> usize {
        self.cfg.page
    }

    pub(crate) fn publish(&self, ev: Event) {
        if self.events.try_send(ev).is_err() {
            self.dropped_events.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn wait<'a>(&'a self, st: Guard<'a>, cv: &Condvar, d: Duration) -> Guard<'a> {
        match cv.wait_timeout(st, d) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let st = self.lock();
        let mut totals = st.retired;
        let mut hist = st.retired_hist.clone();
        let mut arenas = Vec::new();
        let mut metadata = 0u64;
        let mut tracked = 0u64;
        for r in st.regions.0.values() {
            metadata += r.pages.heap_bytes() as u64;
            tracked += r.resident + r.swapped;
        }
        metadata += (st.lru.resident() * std::mem::size_of::<PageKey>()) as u64;
        let mut ids: Vec<u32> = st.arenas.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let a = &st.arenas[&id];
            totals.add(&a.counters);
            hist.merge(&a.hist);
            arenas.push(arena_stats(&st, a));
        }
        Stats {
            page_size: self.page(),
            budget_frames: st.frames.budget() as u64,
            frames_in_use: st.frames.in_use() as u64,
            frames_pooled: st.frames.populated() as u64,
            swap_slots: u64::from(st.slots.capacity()),
            swap_used: u64::from(st.slots.used()),
            swap_direct: self.swap.as_ref().is_some_and(|s| s.is_direct()),
            eviction: self.path,
            uffd_source: self.uffd.source(),
            metadata_bytes: metadata,
            tracked_pages: tracked,
            kills: st.kills,
            totals,
            latency: hist.summary(),
            arenas,
        }
    }
}

pub(crate) fn arena_stats(st: &State, a: &ArenaState) -> ArenaStats {
    let (mut res, mut sw, mut reserved) = (0, 0, 0);
    for rid in &a.regions {
        let r = st.region(*rid);
        res += r.resident;
        sw += r.swapped;
        reserved += r.map.len() as u64;
    }
    ArenaStats {
        id: u64::from(a.shared.id),
        name: a.shared.name.clone(),
        killed: a.shared.killed.load(Ordering::Acquire),
        regions: a.regions.len(),
        reserved_bytes: reserved,
        resident_pages: res,
        swapped_pages: sw,
        counters: a.counters,
        latency: a.hist.summary(),
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
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// The pagewarden runtime: one userfaultfd, its handler threads, a frame budget and a swap store.
///
/// Cheap to clone (a handle). The threads run until the runtime and every arena and region made
/// from it are dropped; dropping the `Runtime` first is fine and never strands a faulting thread.
///
/// ```no_run
/// let rt = pagewarden::Runtime::builder().frame_budget(32 << 20).build()?;
/// let arena = rt.arena("cache")?;
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
        let wanted = uffd::feature::MOVE
            | uffd::feature::POISON
            | uffd::feature::THREAD_ID
            | uffd::feature::PAGEFAULT_FLAG_WP;
        let ufd = Uffd::open(wanted).map_err(open_failure)?;
        // Probe what an anonymous range supports on this kernel.
        let probe = Mapping::anonymous(ps)?;
        let ioctls = ufd
            .register(&probe, 0, ps, uffd::MODE_MISSING | uffd::MODE_WP)
            .map_err(|e| {
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
        let has_move =
            ufd.features() & uffd::feature::MOVE != 0 && ioctls & uffd::ioctl_bit::MOVE != 0;
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
        let can_poison =
            ufd.features() & uffd::feature::POISON != 0 && ioctls & uffd::ioctl_bit::POISON != 0;
        let has_tid = ufd.features() & uffd::feature::THREAD_ID != 0;
        let pool = if path == EvictionPath::Move {
            let m =
                Mapping::anonymous(cfg.budget_frames * ps).map_err(|e| Error::AddressSpace {
                    requested: cfg.budget_frames * ps,
                    source: e.io(),
                })?;
            // The pool is a MOVE destination, so it must be registered with the same uffd. We never
            // touch a hole in it (trap 9: that would fault into our own handler).
            ufd.register(&m, 0, m.len(), uffd::MODE_MISSING)?;
            Some(m)
        } else {
            None
        };
        let zero = Mapping::anonymous(cfg.max_readahead * ps)?;
        let swap = if cfg.swap_slots > 0 {
            let cap = u64::from(cfg.swap_slots) * ps as u64;
            let direct = cfg.swap_io == crate::SwapIo::Direct;
            let (loc, path) = match &cfg.swap {
                SwapLocation::TempIn(d) => (Location::TempIn(d), d.clone()),
                SwapLocation::Named(p) => (Location::Named(p), p.clone()),
            };
            let f = SwapFile::create(loc, cap, direct).map_err(|e| Error::SwapFile {
                path,
                source: e.io(),
            })?;
            if direct && !f.is_direct() {
                log::warn!(
                    "pagewarden: the swap file system refuses O_DIRECT; swap I/O goes through the page cache"
                );
            }
            Some(f)
        } else {
            None
        };
        let (tx, rx) = crossbeam_channel::bounded(cfg.event_capacity);
        let state = State {
            frames: Frames::new(cfg.budget_frames, pool.is_some()),
            slots: Slots::new(cfg.swap_slots),
            lru: Lru::default(),
            regions: Regions::default(),
            by_addr: BTreeMap::new(),
            arenas: IdMap::default(),
            next_region: 1,
            next_arena: 1,
            evicting: 0,
            paging_in: 0,
            reserve: Vec::new(),
            retired: Counters::default(),
            retired_hist: Histogram::default(),
            kills: 0,
            swap_broken: false,
        };
        let core = Arc::new(Core {
            uffd: ufd,
            path,
            pool,
            zero,
            swap,
            state: Mutex::new(state),
            progress: Condvar::new(),
            reclaim_cv: Condvar::new(),
            events: tx,
            events_rx: rx,
            dropped_events: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            waker: Waker::new()?,
            has_tid,
            can_poison,
            cfg,
        });
        let mut threads = Vec::new();
        for i in 0..core.cfg.handler_threads {
            let c = core.clone();
            let t = std::thread::Builder::new()
                .name(format!("pw-fault-{i}"))
                .spawn(move || crate::fault::handler_loop(&c))
                .map_err(|e| Error::Sys {
                    op: "spawn handler thread",
                    source: e,
                })?;
            threads.push(t);
        }
        let c = core.clone();
        let t = std::thread::Builder::new()
            .name("pw-reclaim".into())
            .spawn(move || crate::reclaim::reclaimer_loop(&c))
            .map_err(|e| Error::Sys {
                op: "spawn reclaim thread",
                source: e,
            })?;
        threads.push(t);
        log::debug!(
            "pagewarden: runtime up: budget {} frames, swap {} slots, path {:?}, uffd {:?}",
            core.cfg.budget_frames,
            core.cfg.swap_slots,
            core.path,
            core.uffd.source()
        );
        Ok(Runtime {
            h: Arc::new(RtHandle {
                core,
                threads: Mutex::new(threads),
            }),
        })
    }

    /// Creates an arena named `name`. Names need not be unique; ids are.
    pub fn arena(&self, name: &str) -> Result<crate::Arena> {
        crate::arena::Arena::create(self.h.clone(), name)
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
    /// The count is taken with the runtime's state lock held, so no page moves between an arena
    /// and the pool while it is counted: it is an exact snapshot (and it stalls faults while it
    /// runs, so call it for checks, not on a hot path).
    pub fn resident_frames_measured(&self) -> Result<usize> {
        let c = &self.h.core;
        let st = c.lock();
        let mut n = 0;
        for r in st.regions.0.values() {
            n += r.map.resident_pages(0, r.map.len())?;
        }
        if let Some(p) = &c.pool {
            n += p.resident_pages(0, p.len())?;
        }
        Ok(n)
    }
}

//! The public runtime handle: starting a runtime (the userfaultfd, the pool, the store, the
//! engine's state, the threads) and what it reports.

use crate::config::{Config, EvictionPath, SwapLocation};
use crate::engine::core::{Buffers, Caps, Core, Events, Health, Memory, Signals};
use crate::engine::state::State;
use crate::entry::RtHandle;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::oom::policy::VictimPolicy;
use crate::stats::Stats;
use crate::store::SwapStore;
use crate::sys::file::{Location, SwapFile};
use crate::sys::mem::Mapping;
use crate::sys::poll::Waker;
use crate::sys::uffd::{self, Uffd, UffdSource};
use crossbeam_channel::Receiver;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex};

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

/// What the kernel's userfaultfd offers, as the runtime uses it.
struct Kernel {
    /// The eviction path: the configured one, or the best available for `Auto`.
    path: EvictionPath,
    can_poison: bool,
    has_tid: bool,
}

/// Opens the userfaultfd with the features `cfg` needs and probes what an anonymous range
/// supports: a typed error naming the missing feature if the kernel lacks one.
fn open_userfaultfd(cfg: &Config) -> Result<(Uffd, Kernel)> {
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
    Ok((ufd, Kernel { path, can_poison, has_tid }))
}

/// The swap store `cfg` asks for (the user's, else a swap file; none without swap) with its
/// layers: encryption, then (tests only) the fault injector on top.
fn open_store(cfg: &Config) -> Result<Option<Arc<dyn SwapStore>>> {
    let ps = cfg.page;
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
    let swap = match swap {
        Some(s) if cfg.encrypt_swap => Some(Arc::new(crate::store::Encrypted::new(s)?) as Arc<dyn SwapStore>),
        s => s,
    };
    Ok(match (swap, &cfg.swap_faults) {
        (Some(s), Some(plan)) => Some(Arc::new(crate::store::Injected::new(s, plan.clone())) as Arc<dyn SwapStore>),
        (s, _) => s,
    })
}

impl Runtime {
    /// A builder with every setting at its default.
    pub fn builder() -> crate::RuntimeBuilder {
        crate::RuntimeBuilder::default()
    }

    pub(crate) fn start(cfg: Config) -> Result<Runtime> {
        let in_thread = cfg.fault_mode == crate::FaultMode::InThread;
        let (ufd, kernel) = open_userfaultfd(&cfg)?;
        let pool = if kernel.path == EvictionPath::Move {
            let m = Mapping::anonymous(cfg.budget_frames * cfg.page)
                .map_err(|e| Error::AddressSpace { requested: cfg.budget_frames * cfg.page, source: e.io() })?;
            // The pool is a MOVE destination, so it must be registered with the same uffd. We never
            // touch a hole in it (trap 9: that would fault into our own handler).
            ufd.register(&m, 0, m.len(), uffd::MODE_MISSING)?;
            Some(m)
        } else {
            None
        };
        let zero = Mapping::anonymous(cfg.max_readahead * cfg.page)?;
        let swap = open_store(&cfg)?;
        let (tx, rx) = crossbeam_channel::bounded(cfg.event_capacity);
        let state = State::new(cfg.budget_frames, pool.is_some(), cfg.swap_slots, cfg.policy.clone());
        let core = Arc::new(Core {
            uffd: ufd,
            path: kernel.path,
            caps: Caps { has_tid: kernel.has_tid, can_poison: kernel.can_poison, in_thread },
            mem: Memory { pool, zero },
            swap,
            state: Mutex::new(state),
            signals: Signals {
                progress: Condvar::new(),
                waiters: std::sync::atomic::AtomicUsize::new(0),
                reclaim: Condvar::new(),
            },
            events: Events { tx, rx, dropped: AtomicU64::new(0) },
            waker: Waker::new()?,
            bufs: Buffers {
                scratch: Mutex::new(Vec::new()),
                evict: Mutex::new(crate::engine::reclaim::EvictBufs::pool(cfg.max_readahead)),
            },
            moving: std::sync::RwLock::new(()),
            health: Health {
                shutdown: AtomicBool::new(false),
                failed: AtomicBool::new(false),
                failure: Mutex::new(String::new()),
            },
            cfg,
        });
        if in_thread {
            crate::entry::sigbus::register_in_thread(&core)?;
        }
        // The handle owns the threads from the first one on: if a later one cannot be started,
        // dropping it stops and joins those already running.
        let h = RtHandle::new(core.clone(), Vec::new());
        let handlers = if in_thread { 0 } else { core.cfg.handler_threads };
        for i in 0..handlers {
            let c = core.clone();
            h.adopt(
                std::thread::Builder::new()
                    .name(format!("pw-fault-{i}"))
                    .spawn(move || crate::entry::handler::handler_loop(&c))
                    .map_err(|e| Error::Sys { op: "spawn handler thread", source: e })?,
            );
        }
        let c = core.clone();
        h.adopt(
            std::thread::Builder::new()
                .name("pw-reclaim".into())
                .spawn(move || crate::entry::reclaimer::reclaimer_loop(&c))
                .map_err(|e| Error::Sys { op: "spawn reclaim thread", source: e })?,
        );
        log::debug!(
            "pagewarden: runtime up: budget {} frames, swap {} slots, path {:?}, uffd {:?}",
            core.cfg.budget_frames,
            core.cfg.swap_slots,
            core.path,
            core.uffd.source()
        );
        Ok(Runtime { h: Arc::new(h) })
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
        self.h.core.events.rx.clone()
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
        if let Some(p) = &c.mem.pool {
            n += p.resident_pages(0, p.len())?;
        }
        Ok(n)
    }
}

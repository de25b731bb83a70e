//! Runtime configuration: the builder and its defaults.

use crate::error::{Error, Result};
use crate::oom::policy::{Balanced, Greedy, KillFaulting, LinuxBadness, VictimPolicy};
use crate::sys;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How much address space the runtime promises, like the kernel's `vm.overcommit_memory`.
///
/// The commit charge is the total size of live reservations (a private mapping charges its full
/// size, as in the kernel). [`Stats::committed_bytes`](crate::Stats::committed_bytes) and
/// [`Stats::commit_limit_bytes`](crate::Stats::commit_limit_bytes) show it like `Committed_AS` and
/// `CommitLimit`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Overcommit {
    /// Every reservation succeeds (mode 1). The default: reserving far more than the budget is
    /// what the runtime is for; the OOM killer handles the bet going wrong.
    #[default]
    Always,
    /// Refuse a single reservation larger than frames plus swap together (mode 0's "obvious
    /// overcommit" check).
    Heuristic,
    /// Refuse a reservation that would take the commit charge past `swap + ratio × budget`
    /// (mode 2; the kernel's default ratio is 0.5).
    Strict {
        /// Share of the frame budget counted towards the limit (0..=100).
        ratio: f64,
    },
}

/// How pages are taken out of memory without losing a concurrent write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictionPath {
    /// `Move` where the kernel has UFFDIO_MOVE (6.8+), `WriteProtect` otherwise.
    #[default]
    Auto,
    /// UFFDIO_MOVE the page out of the arena into the frame pool, atomically, then write it from
    /// there and drop it. Zero-copy: neighbouring pages leave with one ioctl. Linux 6.8+.
    Move,
    /// Write-protect the page, write it out from where it is, then drop it; a writer that arrives
    /// meanwhile waits and re-faults after the page is in swap. Linux 5.7+.
    WriteProtect,
}

/// Who resolves a page fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultMode {
    /// Handler threads read fault events from the userfaultfd and wake the faulting thread.
    /// Every access works, including a system call (`read(2)`, `write(2)`, ...) whose buffer is a
    /// non-resident managed page.
    #[default]
    HandlerThreads,
    /// The faulting thread resolves its own fault in a SIGBUS handler (`UFFD_FEATURE_SIGBUS`):
    /// no handler thread and no wake-up, several times faster on machines where waking a thread
    /// is slow. Costs: a system call whose buffer is a non-resident managed page fails with
    /// `EFAULT` instead of faulting it in (use [`Region::prefault`](crate::Region::prefault)
    /// first); the runtime installs a process-wide SIGBUS handler (faults that are not its own go
    /// to the previous handler or the default action); and application code must not touch
    /// managed memory from inside its own signal handlers or while holding a lock the runtime's
    /// fault path could need.
    ///
    /// The handler allocates nothing on its ordinary paths once the runtime is warm: zero-fill,
    /// swap-in with readahead, the first write to a page read before, and the evictions it makes
    /// itself when no frame is free. It does allocate the first time one of a region's 64-page
    /// page-table leaves is touched, when bookkeeping outgrows its high-water mark, for
    /// copy-on-write and mapped-file bookkeeping, when the OOM killer runs, and with
    /// `encrypt_swap`. So a managed region must not back the memory allocator itself.
    InThread,
}

/// How the swap file is read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SwapIo {
    /// `O_DIRECT`: swapped pages leave RAM for real. Falls back to buffered (with a warning) on
    /// file systems that refuse it.
    #[default]
    Direct,
    /// Through the page cache. Faster on a warm cache, but "swapped" pages may still occupy RAM
    /// outside the budget (and be charged to the container's memory limit).
    Buffered,
}

#[derive(Debug, Clone)]
pub(crate) enum SwapLocation {
    /// An unlinked temporary file in this directory.
    TempIn(PathBuf),
    /// This file, created (or truncated) and removed when the runtime ends.
    Named(PathBuf),
}

/// Builds a [`Runtime`](crate::Runtime). Every setting has a default.
///
/// ```
/// let rt = pagewarden::Runtime::builder()
///     .frame_budget(8 << 20)           // 8 MiB of frames
///     .swap_capacity(32 << 20)         // 32 MiB of swap, in an unlinked temp file
///     .build()?;
/// assert_eq!(rt.budget_frames(), (8 << 20) / rt.page_size());
/// # Ok::<(), pagewarden::Error>(())
/// ```
///
/// # Configuration from the environment
///
/// A program that cannot change its code (or whose operator wants to tune it without a
/// rebuild) can be configured with environment variables, in the spirit of LLNL umap's
/// `UMAP_BUFSIZE` and friends. [`build`](RuntimeBuilder::build) reads them **only for the
/// settings the program did not set**: a value set in code always wins. Empty variables count
/// as unset; [`read_env(false)`](RuntimeBuilder::read_env) turns the whole mechanism off.
///
/// | variable | setting | value |
/// |---|---|---|
/// | `PAGEWARDEN_BUDGET` | [`frame_budget`](RuntimeBuilder::frame_budget) | a size: `268435456`, `256M`, `1.5G` (K, M, G, T are binary) |
/// | `PAGEWARDEN_SWAP` | [`swap_capacity`](RuntimeBuilder::swap_capacity) | a size; `0` disables swap |
/// | `PAGEWARDEN_SWAP_DIR` | [`swap_dir`](RuntimeBuilder::swap_dir) | an existing directory |
/// | `PAGEWARDEN_PREALLOCATE` | [`preallocate`](RuntimeBuilder::preallocate) | a boolean |
/// | `PAGEWARDEN_SWAP_IO` | [`swap_io`](RuntimeBuilder::swap_io) | `direct`, `buffered` |
/// | `PAGEWARDEN_ENCRYPT_SWAP` | [`encrypt_swap`](RuntimeBuilder::encrypt_swap) | `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off` |
/// | `PAGEWARDEN_EVICTION` | [`eviction`](RuntimeBuilder::eviction) | `auto`, `move`, `write-protect` (or `wp`) |
/// | `PAGEWARDEN_FAULT_MODE` | [`fault_mode`](RuntimeBuilder::fault_mode) | `handler-threads`, `in-thread` |
/// | `PAGEWARDEN_HANDLER_THREADS` | [`handler_threads`](RuntimeBuilder::handler_threads) | `1`..=`64` |
/// | `PAGEWARDEN_WATERMARKS` | [`watermarks`](RuntimeBuilder::watermarks) | `LOW,HIGH` in frames, e.g. `64,128` |
/// | `PAGEWARDEN_READAHEAD` | [`max_readahead`](RuntimeBuilder::max_readahead) | pages, `1`..=`1024` |
/// | `PAGEWARDEN_EVENT_CAPACITY` | [`event_capacity`](RuntimeBuilder::event_capacity) | at least `1` |
/// | `PAGEWARDEN_OVERCOMMIT` | [`overcommit`](RuntimeBuilder::overcommit) | `always`, `heuristic`, `strict`, `strict:RATIO` |
/// | `PAGEWARDEN_POLICY` | [`victim_policy`](RuntimeBuilder::victim_policy) | `greedy`, `linux-badness`, `balanced`, `kill-faulting` |
/// | `PAGEWARDEN_OOM_DRY_RUN` | [`oom_dry_run`](RuntimeBuilder::oom_dry_run) | a boolean |
/// | `PAGEWARDEN_PRESSURE_KILL` | [`pressure_kill`](RuntimeBuilder::pressure_kill) | `SHARE,WINDOW`, e.g. `0.8,2s` or `80%,500ms`; `off` |
/// | `PAGEWARDEN_PRESSURE_WARN` | [`pressure_warn`](RuntimeBuilder::pressure_warn) | `SHARE,WINDOW` |
/// | `PAGEWARDEN_PIN_LIMIT` | [`pin_limit`](RuntimeBuilder::pin_limit) | a size |
///
/// A value that does not parse makes `build` fail with [`Error::InvalidEnv`], which names the
/// variable, its value and what was expected — even when the program sets that setting itself,
/// so that a typo never goes unnoticed. A value that parses but is out of range (say
/// `PAGEWARDEN_HANDLER_THREADS=0`) is reported the same way. Other `PAGEWARDEN_*` names are
/// ignored with a warning in the log (a misspelt variable), and each applied variable is logged
/// at `info`.
///
/// ```sh
/// PAGEWARDEN_BUDGET=512M PAGEWARDEN_SWAP=8G PAGEWARDEN_POLICY=balanced ./my-app
/// ```
#[derive(Debug, Clone, Default)]
pub struct RuntimeBuilder {
    budget: Option<usize>,
    swap: Option<SwapLocation>,
    swap_capacity: Option<usize>,
    preallocate: Option<bool>,
    swap_io: Option<SwapIo>,
    handler_threads: Option<usize>,
    watermarks: Option<(usize, usize)>,
    eviction: Option<EvictionPath>,
    max_readahead: Option<usize>,
    event_capacity: Option<usize>,
    overcommit: Option<Overcommit>,
    policy: Option<Arc<dyn VictimPolicy>>,
    oom_dry_run: Option<bool>,
    /// `Some(None)`: explicitly off.
    pressure_kill: Option<Option<(f64, Duration)>>,
    pressure_warn: Option<(f64, Duration)>,
    pin_limit: Option<usize>,
    fault_mode: Option<FaultMode>,
    swap_faults: Option<crate::store::SwapFaults>,
    encrypt_swap: Option<bool>,
    swap_store: Option<Arc<dyn crate::store::SwapStore>>,
    /// Do not read `PAGEWARDEN_*` variables.
    no_env: bool,
    /// Settings taken from the environment: (setting, variable, value).
    from_env: Vec<(&'static str, &'static str, String)>,
}

/// A stall threshold: share of a sliding window during which some thread was stalled on a fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StallThreshold {
    pub(crate) share: f64,
    pub(crate) window: Duration,
}

/// Resolved configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) page: usize,
    pub(crate) budget_frames: usize,
    pub(crate) swap: SwapLocation,
    pub(crate) swap_slots: u32,
    /// Allocate the whole swap file at start instead of growing it on demand.
    pub(crate) preallocate: bool,
    /// The default swap capacity was cut short by the free space of the swap directory.
    pub(crate) swap_cut_by_disk: bool,
    pub(crate) swap_io: SwapIo,
    pub(crate) handler_threads: usize,
    pub(crate) low: usize,
    pub(crate) high: usize,
    pub(crate) eviction: EvictionPath,
    pub(crate) max_readahead: usize,
    pub(crate) event_capacity: usize,
    pub(crate) overcommit: Overcommit,
    pub(crate) policy: Arc<dyn VictimPolicy>,
    pub(crate) oom_dry_run: bool,
    pub(crate) pressure_kill: Option<StallThreshold>,
    pub(crate) pressure_warn: Option<StallThreshold>,
    pub(crate) pin_limit: usize,
    pub(crate) fault_mode: FaultMode,
    pub(crate) swap_faults: Option<crate::store::SwapFaults>,
    pub(crate) encrypt_swap: bool,
    /// The program's own store, in place of the swap file.
    pub(crate) swap_store: Option<Arc<dyn crate::store::SwapStore>>,
}

/// The default swap capacity, in multiples of the machine's RAM (before the free-space cap).
pub(crate) const DEFAULT_SWAP_PER_RAM: u64 = 8;

/// Smallest budget that leaves room for readahead, watermarks and a working fault path.
pub(crate) const MIN_FRAMES: usize = 8;

fn invalid(what: &'static str, detail: String) -> Error {
    Error::InvalidConfig { what, detail }
}

impl RuntimeBuilder {
    /// The hard budget of physical frames, in bytes (rounded down to whole pages). The runtime
    /// never holds more arena pages in memory than this, in flight included.
    ///
    /// Default: a quarter of the memory available now (`MemAvailable`, or the cgroup's headroom).
    pub fn frame_budget(mut self, bytes: usize) -> Self {
        self.budget = Some(bytes);
        self
    }

    /// Swap to a named file at `path` of up to `capacity` bytes (see
    /// [`swap_capacity`](Self::swap_capacity)). The file is created with mode 0600 and removed when
    /// the runtime ends. It must not exist yet: an existing file (or a symlink) at `path` is
    /// refused with [`Error::SwapFile`](crate::Error::SwapFile), never overwritten, so swapped
    /// data can never land in a file others may read.
    pub fn swap_file(mut self, path: impl Into<PathBuf>, capacity: usize) -> Self {
        self.swap = Some(SwapLocation::Named(path.into()));
        self.swap_capacity = Some(capacity);
        self
    }

    /// Put the (unlinked, 0600) temporary swap file in `dir` instead of the system temp directory.
    /// `dir` must be an existing directory: otherwise [`build`](Self::build) fails with
    /// [`Error::SwapFile`](crate::Error::SwapFile) naming it.
    pub fn swap_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.swap = Some(SwapLocation::TempIn(dir.into()));
        self
    }

    /// The most swap, in bytes (rounded down to pages); 0 disables swap, so only clean pages can
    /// be reclaimed.
    ///
    /// The swap file starts empty and grows as pages are first written to it, 64 MiB at a time
    /// (sparse until then), so a large capacity costs no disk until it is used. If the disk fills
    /// up before the file reaches its capacity, swap is full from then on: dirty pages stay in
    /// memory, [`Event::SwapLow`](crate::Event::SwapLow) is published, and memory that runs out
    /// goes to the OOM killer as with any full swap — no page is lost.
    /// [`Stats::swap_usable_slots`](crate::Stats::swap_usable_slots) then shows what the disk
    /// held. Use [`preallocate(true)`](Self::preallocate) to have `build` claim all of it at once
    /// and fail if it does not fit.
    ///
    /// Default: as much as fits — eight times the machine's RAM, at most half the free space of
    /// the swap directory when the runtime starts. When the free space cuts it short, this is
    /// logged (at `warn`) and [`Stats::swap_cut_by_disk`](crate::Stats::swap_cut_by_disk) is set.
    pub fn swap_capacity(mut self, bytes: usize) -> Self {
        self.swap_capacity = Some(bytes);
        self
    }

    /// Allocate the whole swap file when the runtime starts (`fallocate`) instead of growing it
    /// on demand (default off). A capacity that does not fit on the disk then fails
    /// [`build`](Self::build) with [`Error::SwapFile`](crate::Error::SwapFile), and a full disk
    /// can never cut swap short later.
    pub fn preallocate(mut self, on: bool) -> Self {
        self.preallocate = Some(on);
        self
    }

    /// Swap to `store` instead of a swap file: evicted pages go wherever the store keeps them, and
    /// its [`capacity`](crate::SwapStore::capacity) is the swap capacity in slots (pages). The
    /// swap file settings ([`swap_capacity`](Self::swap_capacity), [`swap_dir`](Self::swap_dir),
    /// [`swap_file`](Self::swap_file), [`preallocate`](Self::preallocate),
    /// [`swap_io`](Self::swap_io) and their `PAGEWARDEN_*` variables) then have no effect;
    /// [`encrypt_swap`](Self::encrypt_swap) still applies, on top of the store, and the runtime
    /// still checks every page it reads back against its checksum.
    ///
    /// A store that is not [`signal_safe`](crate::SwapStore::signal_safe) cannot serve
    /// [`FaultMode::InThread`]: `build` fails with
    /// [`Error::StoreNotSignalSafe`](crate::Error::StoreNotSignalSafe). See [`SwapStore`](crate::SwapStore)
    /// for an example.
    pub fn swap_store(mut self, store: Arc<dyn crate::store::SwapStore>) -> Self {
        self.swap_store = Some(store);
        self
    }

    /// `O_DIRECT` (default) or buffered swap I/O.
    pub fn swap_io(mut self, io: SwapIo) -> Self {
        self.swap_io = Some(io);
        self
    }

    /// Threads that read and resolve faults in [`FaultMode::HandlerThreads`] (1..=64; default
    /// twice the CPUs, from 2 to 8: see [`default_handler_threads`]).
    ///
    /// A handler thread serves one fault at a time and sleeps through that fault's swap read, so
    /// with one handler the misses of all application threads queue behind each other. Several
    /// handlers keep several reads in flight.
    pub fn handler_threads(mut self, n: usize) -> Self {
        self.handler_threads = Some(n);
        self
    }

    /// Reclaim watermarks, in free frames: the background reclaimer wakes when fewer than `low`
    /// frames are free and evicts until `high` are. Default: `low` = budget/64 (at least 2, at most
    /// 2048), `high` = 2 × `low`.
    pub fn watermarks(mut self, low: usize, high: usize) -> Self {
        self.watermarks = Some((low, high));
        self
    }

    /// The eviction path (default [`EvictionPath::Auto`]).
    pub fn eviction(mut self, path: EvictionPath) -> Self {
        self.eviction = Some(path);
        self
    }

    /// Largest sequential fault-around window, in pages (default 256 = 1 MiB, at most a quarter
    /// of the budget; 1 disables it). Clean pages are dropped to make room for a full window.
    pub fn max_readahead(mut self, pages: usize) -> Self {
        self.max_readahead = Some(pages);
        self
    }

    /// Capacity of the event channel (default 1024). When it is full, new events are dropped and
    /// counted, never blocking the fault path.
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = Some(n);
        self
    }

    /// How reservations are accounted (default [`Overcommit::Always`]).
    pub fn overcommit(mut self, mode: Overcommit) -> Self {
        self.overcommit = Some(mode);
        self
    }

    /// The policy that chooses whom to kill when memory runs out (default [`Greedy`]); see
    /// [`VictimPolicy`] for the built-in ones and for writing your own.
    pub fn victim_policy(mut self, policy: impl VictimPolicy + 'static) -> Self {
        self.policy = Some(Arc::new(policy));
        self
    }

    /// Dry-run mode: the OOM killer reports whom it would kill (`Event::WouldKill`) and kills
    /// nothing. A fault that finds no memory then fails (as when nothing is killable).
    pub fn oom_dry_run(mut self, on: bool) -> Self {
        self.oom_dry_run = Some(on);
        self
    }

    /// Kill under sustained pressure: when, over the last `window`, threads were stalled on faults
    /// for more than `share` (0..=1) of the time while the runtime was evicting, the OOM killer runs
    /// (trigger `Pressure`) with a deficit of an eighth of the budget. At most one kill per window.
    /// Off by default.
    pub fn pressure_kill(mut self, share: f64, window: Duration) -> Self {
        self.pressure_kill = Some(Some((share, window)));
        self
    }

    /// Publish `Event::Pressure` (at most once per `window`) when threads were stalled more than
    /// `share` of the last `window`. Default: 0.5 over 1 s.
    pub fn pressure_warn(mut self, share: f64, window: Duration) -> Self {
        self.pressure_warn = Some((share, window));
        self
    }

    /// Most memory that may be pinned at once, in bytes (default: half the budget). Pinned pages
    /// stay resident and cannot be reclaimed.
    pub fn pin_limit(mut self, bytes: usize) -> Self {
        self.pin_limit = Some(bytes);
        self
    }

    /// Who resolves faults (default [`FaultMode::HandlerThreads`]).
    pub fn fault_mode(mut self, mode: FaultMode) -> Self {
        self.fault_mode = Some(mode);
        self
    }

    /// Encrypts swap at rest with ChaCha20-Poly1305 under a per-runtime random key that never
    /// leaves memory (default off). A page that does not authenticate on the way back is lost
    /// (`Error::Corrupted`), never returned altered. Costs CPU on every swap write and read (see the
    /// README's benchmark section) and 24 bytes of memory per swap slot.
    pub fn encrypt_swap(mut self, on: bool) -> Self {
        self.encrypt_swap = Some(on);
        self
    }

    /// Injects swap I/O failures, for testing error paths. Not a stable interface.
    #[doc(hidden)]
    pub fn swap_faults(mut self, faults: crate::store::SwapFaults) -> Self {
        self.swap_faults = Some(faults);
        self
    }

    /// Whether [`build`](RuntimeBuilder::build) reads the `PAGEWARDEN_*` environment variables
    /// (default: on). Turn it off when the environment must not change the configuration (a
    /// library that builds a private runtime, a test).
    ///
    /// ```
    /// let rt = pagewarden::Runtime::builder()
    ///     .read_env(false)            // PAGEWARDEN_* variables are ignored
    ///     .frame_budget(2 << 20)
    ///     .swap_capacity(4 << 20)
    ///     .build()?;
    /// assert_eq!(rt.budget_frames() * rt.page_size(), 2 << 20);
    /// # Ok::<(), pagewarden::Error>(())
    /// ```
    pub fn read_env(mut self, on: bool) -> Self {
        self.no_env = !on;
        self
    }

    /// The resolved configuration: the `PAGEWARDEN_*` environment variables applied to the
    /// settings the program did not set (unless [`read_env(false)`](Self::read_env)), and every
    /// setting checked. [`build`](Self::build) starts a runtime from it.
    pub(crate) fn into_config(self) -> Result<Config> {
        let b = if self.no_env {
            self
        } else {
            warn_unknown_env();
            self.apply_env(&|var| std::env::var_os(var))?
        };
        b.resolve_blaming_env()
    }

    /// [`resolve`](Self::resolve), with a range error in a setting that came from the
    /// environment reported against its variable.
    pub(crate) fn resolve_blaming_env(self) -> Result<Config> {
        let from_env = self.from_env.clone();
        self.resolve().map_err(|e| match e {
            Error::InvalidConfig { what, detail } => match from_env.into_iter().find(|(s, _, _)| *s == what) {
                Some((_, var, value)) => Error::InvalidEnv { var, value, detail: format!("{what}: {detail}") },
                None => Error::InvalidConfig { what, detail },
            },
            e => e,
        })
    }

    pub(crate) fn resolve(self) -> Result<Config> {
        let page = sys::page_size();
        let mem = sys::mem_info();
        let budget_bytes = match self.budget {
            Some(b) => b,
            None => usize::try_from(mem.available / 4).unwrap_or(usize::MAX),
        };
        let budget_frames = budget_bytes / page;
        if budget_frames < MIN_FRAMES {
            return Err(invalid(
                "frame_budget",
                format!(
                    "{budget_bytes} bytes is {budget_frames} frames; the minimum is {MIN_FRAMES} frames ({} bytes)",
                    MIN_FRAMES * page
                ),
            ));
        }
        if budget_bytes as u64 > mem.total {
            return Err(invalid(
                "frame_budget",
                format!(
                    "{budget_bytes} bytes is more than this machine's {} bytes of RAM; a budget is a limit on real memory",
                    mem.total
                ),
            ));
        }
        if budget_frames > u32::MAX as usize {
            return Err(invalid("frame_budget", format!("{budget_frames} frames is more than 2^32")));
        }
        let explicit_location = self.swap.is_some();
        let swap = self.swap.unwrap_or_else(|| {
            let mut dir = std::env::temp_dir();
            if sys::file::fs_info(&dir).map(|(_, ram)| ram).unwrap_or(false)
                && std::path::Path::new("/var/tmp").is_dir()
            {
                // A swap file on tmpfs would live in RAM: prefer a disk-backed directory.
                dir = PathBuf::from("/var/tmp");
            }
            SwapLocation::TempIn(dir)
        });
        let dir = match &swap {
            SwapLocation::TempIn(d) => d.clone(),
            SwapLocation::Named(p) => {
                p.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), |p| p.to_path_buf())
            }
        };
        let preallocate = self.preallocate.unwrap_or(false);
        let mut swap_cut_by_disk = false;
        let swap_bytes = if let Some(store) = &self.swap_store {
            u64::from(store.capacity()) * page as u64
        } else if self.swap_capacity == Some(0) {
            0
        } else {
            if explicit_location && !dir.is_dir() {
                // Where the user asked for swap, there must be a directory to put it in.
                let errno = if dir.exists() { libc::ENOTDIR } else { libc::ENOENT };
                let path = match &swap {
                    SwapLocation::TempIn(d) => d.clone(),
                    SwapLocation::Named(p) => p.clone(),
                };
                return Err(Error::SwapFile { path, source: std::io::Error::from_raw_os_error(errno) });
            }
            let free = sys::file::fs_info(&dir).map(|(f, _)| f);
            match self.swap_capacity {
                Some(c) => {
                    let c = c as u64;
                    if let Ok(free) = free {
                        if c > free && preallocate {
                            // Refused before fallocate, which on some file systems would fill the
                            // disk before it fails.
                            let path = match &swap {
                                SwapLocation::TempIn(d) => d.clone(),
                                SwapLocation::Named(p) => p.clone(),
                            };
                            return Err(Error::SwapFile {
                                path,
                                source: std::io::Error::from_raw_os_error(libc::ENOSPC),
                            });
                        }
                        if c > free {
                            log::warn!(
                                "pagewarden: swap capacity {c} bytes is more than the {free} bytes free in {} now; \
                                 swap is full when the disk is",
                                dir.display()
                            );
                        }
                    }
                    c
                }
                None => {
                    let free = free.unwrap_or_else(|e| {
                        log::warn!("pagewarden: no swap: the swap directory {} is unusable: {e}", dir.display());
                        0
                    });
                    let wanted = mem.total.saturating_mul(DEFAULT_SWAP_PER_RAM).min(u64::from(u32::MAX) * page as u64);
                    if free / 2 < wanted {
                        swap_cut_by_disk = true;
                        log::warn!(
                            "pagewarden: swap capacity cut to {} bytes, half the free space in {} (the default \
                             is {DEFAULT_SWAP_PER_RAM} x RAM, {wanted} bytes); free space there or set swap_dir",
                            free / 2 / page as u64 * page as u64,
                            dir.display()
                        );
                    }
                    wanted.min(free / 2)
                }
            }
        };
        let slots = swap_bytes / page as u64;
        let swap_slots = u32::try_from(slots)
            .map_err(|_| invalid("swap_capacity", format!("{swap_bytes} bytes is more than 2^32 pages")))?;
        let handler_threads = self.handler_threads.unwrap_or_else(default_handler_threads);
        if !(1..=64).contains(&handler_threads) {
            return Err(invalid("handler_threads", format!("{handler_threads}; must be 1..=64")));
        }
        let (low, high) = match self.watermarks {
            Some(w) => w,
            None => {
                let low = (budget_frames / 64).clamp(2, 2048);
                (low, 2 * low)
            }
        };
        if low == 0 || low > high || high > budget_frames / 2 {
            return Err(invalid(
                "watermarks",
                format!("low {low}, high {high}: need 0 < low <= high <= budget/2 ({})", budget_frames / 2),
            ));
        }
        let max_readahead = self.max_readahead.unwrap_or(256);
        if !(1..=1024).contains(&max_readahead) {
            return Err(invalid("max_readahead", format!("{max_readahead} pages; must be 1..=1024")));
        }
        let max_readahead = max_readahead.min(budget_frames / 4).max(1);
        let event_capacity = self.event_capacity.unwrap_or(1024);
        if event_capacity == 0 {
            return Err(invalid("event_capacity", "0; must be at least 1".into()));
        }
        let overcommit = self.overcommit.unwrap_or_default();
        if let Overcommit::Strict { ratio } = overcommit {
            if !(0.0..=100.0).contains(&ratio) {
                return Err(invalid("overcommit", format!("Strict ratio {ratio}; must be 0..=100")));
            }
        }
        let threshold = |what, v: Option<(f64, Duration)>| -> Result<Option<StallThreshold>> {
            match v {
                None => Ok(None),
                Some((share, window)) if share > 0.0 && share <= 1.0 && window >= Duration::from_millis(10) => {
                    Ok(Some(StallThreshold { share, window }))
                }
                Some((share, window)) => Err(invalid(
                    what,
                    format!("share {share} over {window:?}: need 0 < share <= 1 and a window of at least 10 ms"),
                )),
            }
        };
        let pressure_kill = threshold("pressure_kill", self.pressure_kill.flatten())?;
        let pressure_warn = threshold("pressure_warn", self.pressure_warn.or(Some((0.5, Duration::from_secs(1)))))?;
        let pin_limit = self.pin_limit.map_or(budget_frames / 2, |b| b / page);
        if pin_limit + high >= budget_frames {
            return Err(invalid(
                "pin_limit",
                format!(
                    "{pin_limit} frames; pinned pages cannot be reclaimed, so the limit plus the high watermark ({high}) must stay below the budget ({budget_frames} frames)"
                ),
            ));
        }
        let fault_mode = self.fault_mode.unwrap_or_default();
        if fault_mode == FaultMode::InThread && self.swap_store.as_ref().is_some_and(|s| !s.signal_safe()) {
            return Err(Error::StoreNotSignalSafe);
        }
        Ok(Config {
            page,
            budget_frames,
            swap,
            swap_slots,
            preallocate,
            swap_cut_by_disk,
            swap_io: self.swap_io.unwrap_or_default(),
            handler_threads,
            low,
            high,
            eviction: self.eviction.unwrap_or_default(),
            max_readahead,
            event_capacity,
            overcommit,
            policy: self.policy.unwrap_or_else(|| Arc::new(Greedy)),
            oom_dry_run: self.oom_dry_run.unwrap_or(false),
            pressure_kill,
            pressure_warn,
            pin_limit,
            fault_mode,
            swap_faults: self.swap_faults,
            encrypt_swap: self.encrypt_swap.unwrap_or(false),
            swap_store: self.swap_store,
        })
    }
}

/// The environment variables [`RuntimeBuilder::build`] reads: (variable, setting, accepted values).
pub(crate) const ENV_VARS: &[(&str, &str, &str)] = &[
    ("PAGEWARDEN_BUDGET", "frame_budget", "a size: bytes, or with a K, M, G or T suffix (e.g. 256M)"),
    ("PAGEWARDEN_SWAP", "swap_capacity", "a size (e.g. 4G); 0 disables swap"),
    ("PAGEWARDEN_SWAP_DIR", "swap_dir", "an existing directory"),
    ("PAGEWARDEN_PREALLOCATE", "preallocate", "a boolean (1/0, true/false, yes/no, on/off)"),
    ("PAGEWARDEN_SWAP_IO", "swap_io", "direct or buffered"),
    ("PAGEWARDEN_ENCRYPT_SWAP", "encrypt_swap", "a boolean (1/0, true/false, yes/no, on/off)"),
    ("PAGEWARDEN_EVICTION", "eviction", "auto, move or write-protect (wp)"),
    ("PAGEWARDEN_FAULT_MODE", "fault_mode", "handler-threads or in-thread"),
    ("PAGEWARDEN_HANDLER_THREADS", "handler_threads", "a number, 1..=64"),
    ("PAGEWARDEN_WATERMARKS", "watermarks", "LOW,HIGH in frames (e.g. 64,128)"),
    ("PAGEWARDEN_READAHEAD", "max_readahead", "pages, 1..=1024"),
    ("PAGEWARDEN_EVENT_CAPACITY", "event_capacity", "a number, at least 1"),
    ("PAGEWARDEN_OVERCOMMIT", "overcommit", "always, heuristic, strict or strict:RATIO (e.g. strict:0.5)"),
    ("PAGEWARDEN_POLICY", "victim_policy", "greedy, linux-badness, balanced or kill-faulting"),
    ("PAGEWARDEN_OOM_DRY_RUN", "oom_dry_run", "a boolean"),
    ("PAGEWARDEN_PRESSURE_KILL", "pressure_kill", "SHARE,WINDOW (e.g. 0.8,2s or 80%,500ms), or off"),
    ("PAGEWARDEN_PRESSURE_WARN", "pressure_warn", "SHARE,WINDOW (e.g. 0.5,1s)"),
    ("PAGEWARDEN_PIN_LIMIT", "pin_limit", "a size (e.g. 16M)"),
];

/// Logs (at warn) `PAGEWARDEN_*` variables the runtime does not know: most likely a typo.
fn warn_unknown_env() {
    for (k, _) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        if k.starts_with("PAGEWARDEN_") && !ENV_VARS.iter().any(|(v, _, _)| *v == k) {
            log::warn!("pagewarden: environment variable {k} is not a runtime setting and is ignored");
        }
    }
}

/// Parses a size: a number of bytes, optionally fractional, with an optional binary suffix
/// (`K`, `M`, `G`, `T`, also written `KiB`, `KB`, ...).
pub(crate) fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = (&s[..split], s[split..].trim());
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("unknown unit '{unit}' (use K, M, G or T)")),
    };
    if num.is_empty() {
        return Err("no number".into());
    }
    let bytes = if num.contains('.') {
        let v: f64 = num.parse().map_err(|_| format!("'{num}' is not a number"))?;
        v * (1u64 << shift) as f64
    } else {
        let v: u64 = num.parse().map_err(|_| format!("'{num}' is not a number"))?;
        return v.checked_mul(1u64 << shift).ok_or_else(|| "too large".to_string());
    };
    if !(0.0..1.8e19).contains(&bytes) {
        return Err("too large".into());
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(bytes as u64)
}

/// Parses a duration: a number with a unit `us`, `ms`, `s` or `m` (e.g. `500ms`, `2s`).
pub(crate) fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = (&s[..split], s[split..].trim());
    let v: f64 = num.parse().map_err(|_| format!("'{s}' is not a duration (e.g. 500ms, 2s)"))?;
    let secs = match unit {
        "us" | "µs" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" | "min" => v * 60.0,
        "" => return Err(format!("'{s}' needs a unit: us, ms, s or m")),
        _ => return Err(format!("unknown unit '{unit}' in '{s}' (use us, ms, s or m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("'{s}': {e}"))
}

fn parse_bool(s: &str) -> std::result::Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected a boolean: 1/0, true/false, yes/no or on/off".into()),
    }
}

/// `SHARE,WINDOW`: a share in 0..=1 (or a percentage) and a duration.
fn parse_threshold(s: &str) -> std::result::Result<(f64, Duration), String> {
    let (share, window) =
        s.split_once(',').ok_or_else(|| "expected SHARE,WINDOW (e.g. 0.8,2s or 80%,500ms)".to_string())?;
    let share = share.trim();
    let share = match share.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => share.parse::<f64>(),
    }
    .map_err(|_| format!("'{share}' is not a share (e.g. 0.8 or 80%)"))?;
    Ok((share, parse_duration(window)?))
}

/// Lower case, with `_` and spaces read as `-`.
fn keyword(s: &str) -> String {
    s.trim().to_ascii_lowercase().replace(['_', ' '], "-")
}

impl RuntimeBuilder {
    /// Applies the environment, read through `get`, to every setting not set in code.
    pub(crate) fn apply_env(mut self, get: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> Result<Self> {
        for &(var, setting, expected) in ENV_VARS {
            let Some(raw) = get(var) else { continue };
            let value = match raw.into_string() {
                Ok(v) => v,
                Err(raw) => {
                    return Err(Error::InvalidEnv {
                        var,
                        value: raw.to_string_lossy().into_owned(),
                        detail: "not valid UTF-8".into(),
                    });
                }
            };
            let v = value.trim();
            if v.is_empty() {
                continue;
            }
            let bad = |detail: String| Error::InvalidEnv {
                var,
                value: value.clone(),
                detail: format!("{detail}; expected {expected}"),
            };
            let size = || parse_size(v).map_err(bad);
            let count = || v.parse::<usize>().map_err(|_| bad(format!("'{v}' is not a whole number")));
            // Parse first, so a malformed value is an error even when the program sets the setting.
            let set_in_code = match setting {
                "frame_budget" => {
                    let b = usize::try_from(size()?).map_err(|_| bad("too large".into()))?;
                    self.budget.replace(self.budget.unwrap_or(b)).is_some()
                }
                "swap_capacity" => {
                    let c = usize::try_from(size()?).map_err(|_| bad("too large".into()))?;
                    self.swap_capacity.replace(self.swap_capacity.unwrap_or(c)).is_some()
                }
                "preallocate" => {
                    let on = parse_bool(v).map_err(bad)?;
                    self.preallocate.replace(self.preallocate.unwrap_or(on)).is_some()
                }
                "swap_dir" => {
                    let dir = PathBuf::from(v);
                    if !dir.is_dir() {
                        return Err(bad(format!("{} is not a directory", dir.display())));
                    }
                    self.swap.replace(self.swap.clone().unwrap_or(SwapLocation::TempIn(dir))).is_some()
                }
                "swap_io" => {
                    let io = match keyword(v).as_str() {
                        "direct" | "o-direct" => SwapIo::Direct,
                        "buffered" => SwapIo::Buffered,
                        _ => return Err(bad(format!("unknown swap I/O mode '{v}'"))),
                    };
                    self.swap_io.replace(self.swap_io.unwrap_or(io)).is_some()
                }
                "encrypt_swap" => {
                    let on = parse_bool(v).map_err(bad)?;
                    self.encrypt_swap.replace(self.encrypt_swap.unwrap_or(on)).is_some()
                }
                "eviction" => {
                    let p = match keyword(v).as_str() {
                        "auto" => EvictionPath::Auto,
                        "move" => EvictionPath::Move,
                        "write-protect" | "writeprotect" | "wp" => EvictionPath::WriteProtect,
                        _ => return Err(bad(format!("unknown eviction path '{v}'"))),
                    };
                    self.eviction.replace(self.eviction.unwrap_or(p)).is_some()
                }
                "fault_mode" => {
                    let m = match keyword(v).as_str() {
                        "handler-threads" | "handler" | "handlers" => FaultMode::HandlerThreads,
                        "in-thread" | "inthread" => FaultMode::InThread,
                        _ => return Err(bad(format!("unknown fault mode '{v}'"))),
                    };
                    self.fault_mode.replace(self.fault_mode.unwrap_or(m)).is_some()
                }
                "handler_threads" => {
                    let n = count()?;
                    self.handler_threads.replace(self.handler_threads.unwrap_or(n)).is_some()
                }
                "watermarks" => {
                    let w = v
                        .split_once(',')
                        .and_then(|(l, h)| Some((l.trim().parse().ok()?, h.trim().parse().ok()?)))
                        .ok_or_else(|| bad(format!("'{v}' is not two whole numbers")))?;
                    self.watermarks.replace(self.watermarks.unwrap_or(w)).is_some()
                }
                "max_readahead" => {
                    let n = count()?;
                    self.max_readahead.replace(self.max_readahead.unwrap_or(n)).is_some()
                }
                "event_capacity" => {
                    let n = count()?;
                    self.event_capacity.replace(self.event_capacity.unwrap_or(n)).is_some()
                }
                "overcommit" => {
                    let k = keyword(v);
                    let mode = match k.split_once([':', ',', '=']) {
                        None if k == "always" => Overcommit::Always,
                        None if k == "heuristic" => Overcommit::Heuristic,
                        None if k == "strict" => Overcommit::Strict { ratio: 0.5 },
                        Some(("strict", r)) => Overcommit::Strict {
                            ratio: r.trim().parse().map_err(|_| bad(format!("'{r}' is not a ratio")))?,
                        },
                        _ => return Err(bad(format!("unknown overcommit mode '{v}'"))),
                    };
                    self.overcommit.replace(self.overcommit.unwrap_or(mode)).is_some()
                }
                "victim_policy" => {
                    let p: Arc<dyn VictimPolicy> = match keyword(v).as_str() {
                        "greedy" => Arc::new(Greedy),
                        "linux-badness" | "linuxbadness" | "linux" | "badness" => Arc::new(LinuxBadness),
                        "balanced" => Arc::new(Balanced),
                        "kill-faulting" | "killfaulting" | "faulting" => Arc::new(KillFaulting),
                        _ => return Err(bad(format!("unknown policy '{v}'"))),
                    };
                    self.policy.replace(self.policy.clone().unwrap_or(p)).is_some()
                }
                "oom_dry_run" => {
                    let on = parse_bool(v).map_err(bad)?;
                    self.oom_dry_run.replace(self.oom_dry_run.unwrap_or(on)).is_some()
                }
                "pressure_kill" => {
                    let t = if keyword(v) == "off" { None } else { Some(parse_threshold(v).map_err(bad)?) };
                    self.pressure_kill.replace(self.pressure_kill.unwrap_or(t)).is_some()
                }
                "pressure_warn" => {
                    let t = parse_threshold(v).map_err(bad)?;
                    self.pressure_warn.replace(self.pressure_warn.unwrap_or(t)).is_some()
                }
                "pin_limit" => {
                    let b = usize::try_from(size()?).map_err(|_| bad("too large".into()))?;
                    self.pin_limit.replace(self.pin_limit.unwrap_or(b)).is_some()
                }
                _ => unreachable!("every variable in ENV_VARS is handled"),
            };
            if set_in_code {
                log::debug!("pagewarden: {var}={value} ignored: the program sets {setting} itself");
            } else {
                log::info!("pagewarden: {setting} from the environment: {var}={value}");
                self.from_env.push((setting, var, value));
            }
        }
        Ok(self)
    }
}

/// The default number of handler threads: twice the CPUs this process may run on, from 2 to 8.
///
/// Handler threads spend most of a miss asleep in its swap read, so more of them than CPUs keep
/// the disk busy; measured on 2 CPUs with 4 application threads doing random reads from swap,
/// one handler served 13 700 pages/s, two 22 900 and four 26 100 (the disk's own limit at that
/// concurrency was 29 000–34 000 reads/s), with no loss for a single application thread.
pub fn default_handler_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (2 * cpus).clamp(2, 8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;

    fn with_env(b: RuntimeBuilder, vars: &[(&str, &str)]) -> Result<RuntimeBuilder> {
        let map: HashMap<String, OsString> = vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        b.apply_env(&|k| map.get(k).cloned())
    }

    fn env_var_of(e: Error) -> &'static str {
        match e {
            Error::InvalidEnv { var, .. } => var,
            e => panic!("expected InvalidEnv, got {e:?}"),
        }
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1.5 GiB"), Ok(3 << 29));
        assert_eq!(parse_size("2k"), Ok(2048));
        assert!(parse_size("banana").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("2").is_err());
        assert_eq!(parse_threshold("80%,1s"), Ok((0.8, Duration::from_secs(1))));
    }

    #[test]
    fn env_fills_only_what_the_builder_left_unset() {
        let b = RuntimeBuilder::default().swap_capacity(1 << 20);
        let b = with_env(
            b,
            &[
                ("PAGEWARDEN_BUDGET", "8M"),
                ("PAGEWARDEN_SWAP", "64M"),
                ("PAGEWARDEN_POLICY", "linux-badness"),
                ("PAGEWARDEN_OVERCOMMIT", "strict:0.75"),
                ("PAGEWARDEN_PRESSURE_KILL", "90%,2s"),
                ("PAGEWARDEN_EVICTION", "wp"),
                ("PAGEWARDEN_OOM_DRY_RUN", "yes"),
                ("PAGEWARDEN_PREALLOCATE", "on"),
            ],
        )
        .unwrap();
        let cfg = b.resolve_blaming_env().unwrap();
        assert_eq!(cfg.budget_frames * cfg.page, 8 << 20);
        assert_eq!(u64::from(cfg.swap_slots) * cfg.page as u64, 1 << 20, "the builder's swap wins");
        assert_eq!(cfg.policy.name(), "LinuxBadness");
        assert_eq!(cfg.overcommit, Overcommit::Strict { ratio: 0.75 });
        assert_eq!(cfg.pressure_kill, Some(StallThreshold { share: 0.9, window: Duration::from_secs(2) }));
        assert_eq!(cfg.eviction, EvictionPath::WriteProtect);
        assert!(cfg.oom_dry_run);
        assert!(cfg.preallocate);
        // Set in code, the environment does not apply.
        let b = RuntimeBuilder::default().frame_budget(4 << 20).oom_dry_run(false).eviction(EvictionPath::Auto);
        let cfg = with_env(
            b,
            &[("PAGEWARDEN_BUDGET", "8M"), ("PAGEWARDEN_OOM_DRY_RUN", "1"), ("PAGEWARDEN_EVICTION", "move")],
        )
        .unwrap()
        .resolve_blaming_env()
        .unwrap();
        assert_eq!(cfg.budget_frames * cfg.page, 4 << 20);
        assert!(!cfg.oom_dry_run);
        assert_eq!(cfg.eviction, EvictionPath::Auto);
        // An empty value counts as unset.
        let cfg = with_env(RuntimeBuilder::default().swap_capacity(0), &[("PAGEWARDEN_BUDGET", "")])
            .unwrap()
            .frame_budget(4 << 20)
            .resolve()
            .unwrap();
        assert_eq!(cfg.budget_frames * cfg.page, 4 << 20);
    }

    #[test]
    fn bad_env_values_name_their_variable() {
        for (var, value) in [
            ("PAGEWARDEN_BUDGET", "banana"),
            ("PAGEWARDEN_SWAP", "-1"),
            ("PAGEWARDEN_SWAP_DIR", "/no/such/dir"),
            ("PAGEWARDEN_PREALLOCATE", "sometimes"),
            ("PAGEWARDEN_SWAP_IO", "sideways"),
            ("PAGEWARDEN_ENCRYPT_SWAP", "maybe"),
            ("PAGEWARDEN_EVICTION", "teleport"),
            ("PAGEWARDEN_FAULT_MODE", "psychic"),
            ("PAGEWARDEN_HANDLER_THREADS", "four"),
            ("PAGEWARDEN_WATERMARKS", "64"),
            ("PAGEWARDEN_READAHEAD", "1M"),
            ("PAGEWARDEN_EVENT_CAPACITY", "-3"),
            ("PAGEWARDEN_OVERCOMMIT", "sometimes"),
            ("PAGEWARDEN_POLICY", "random"),
            ("PAGEWARDEN_OOM_DRY_RUN", "2"),
            ("PAGEWARDEN_PRESSURE_KILL", "0.8"),
            ("PAGEWARDEN_PRESSURE_WARN", "half,1s"),
            ("PAGEWARDEN_PIN_LIMIT", "lots"),
        ] {
            // Malformed values are errors even when the program sets the setting itself.
            let b = RuntimeBuilder::default().frame_budget(4 << 20).swap_capacity(0).handler_threads(1);
            let e = with_env(b, &[(var, value)]).expect_err(var);
            assert!(e.to_string().contains(var) && e.to_string().contains(value), "{e}");
            assert_eq!(env_var_of(e), var);
        }
        // Values that parse but are out of range are blamed on their variable too.
        for (var, value) in [
            ("PAGEWARDEN_HANDLER_THREADS", "0"),
            ("PAGEWARDEN_BUDGET", "4K"),
            ("PAGEWARDEN_WATERMARKS", "100,10"),
            ("PAGEWARDEN_OVERCOMMIT", "strict:1000"),
            ("PAGEWARDEN_PRESSURE_WARN", "2,1s"),
        ] {
            let e = with_env(RuntimeBuilder::default().swap_capacity(0), &[(var, value)])
                .unwrap()
                .resolve_blaming_env()
                .expect_err(var);
            assert_eq!(env_var_of(e), var);
        }
    }
}

//! Runtime configuration: the builder and its defaults.

use crate::error::{Error, Result};
use crate::oom::policy::{Greedy, VictimPolicy};
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
    /// there. Zero-copy: the budget is a literal pool of frames that circulate between arenas and
    /// the pool. Linux 6.8+.
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
/// ```no_run
/// let rt = pagewarden::Runtime::builder()
///     .frame_budget(64 << 20)          // 64 MiB of frames
///     .swap_capacity(1 << 30)          // 1 GiB of swap, in an unlinked temp file
///     .build()?;
/// # Ok::<(), pagewarden::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct RuntimeBuilder {
    budget: Option<usize>,
    swap: Option<SwapLocation>,
    swap_capacity: Option<u64>,
    swap_io: SwapIo,
    handler_threads: Option<usize>,
    watermarks: Option<(usize, usize)>,
    eviction: EvictionPath,
    max_readahead: Option<usize>,
    event_capacity: Option<usize>,
    overcommit: Overcommit,
    policy: Option<Arc<dyn VictimPolicy>>,
    oom_dry_run: bool,
    pressure_kill: Option<(f64, Duration)>,
    pressure_warn: Option<(f64, Duration)>,
    pin_limit: Option<usize>,
    fault_mode: FaultMode,
    swap_faults: Option<crate::swap::SwapFaults>,
    encrypt_swap: bool,
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
    pub(crate) swap_faults: Option<crate::swap::SwapFaults>,
    pub(crate) encrypt_swap: bool,
}

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

    /// Swap to a named file at `path` of `capacity` bytes. The file is created with mode 0600
    /// (truncated if it exists) and removed when the runtime ends.
    pub fn swap_file(mut self, path: impl Into<PathBuf>, capacity: u64) -> Self {
        self.swap = Some(SwapLocation::Named(path.into()));
        self.swap_capacity = Some(capacity);
        self
    }

    /// Put the (unlinked, 0600) temporary swap file in `dir` instead of the system temp directory.
    pub fn swap_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.swap = Some(SwapLocation::TempIn(dir.into()));
        self
    }

    /// Swap capacity in bytes (rounded down to pages); 0 disables swap, so only clean pages can be
    /// reclaimed. The file is preallocated, so a full disk is reported by `build`, not mid-run.
    ///
    /// Default: four times the budget, at most half the free space of the swap directory.
    pub fn swap_capacity(mut self, bytes: u64) -> Self {
        self.swap_capacity = Some(bytes);
        self
    }

    /// `O_DIRECT` (default) or buffered swap I/O.
    pub fn swap_io(mut self, io: SwapIo) -> Self {
        self.swap_io = io;
        self
    }

    /// Threads that read and resolve faults (default 1; 1..=64).
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
        self.eviction = path;
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
        self.overcommit = mode;
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
        self.oom_dry_run = on;
        self
    }

    /// Kill under sustained pressure: when, over the last `window`, threads were stalled on faults
    /// for more than `share` (0..=1) of the time while the runtime was evicting, the OOM killer runs
    /// (trigger `Pressure`) with a deficit of an eighth of the budget. At most one kill per window.
    /// Off by default.
    pub fn pressure_kill(mut self, share: f64, window: Duration) -> Self {
        self.pressure_kill = Some((share, window));
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
        self.fault_mode = mode;
        self
    }

    /// Encrypts swap at rest with ChaCha20-Poly1305 under a per-runtime random key that never
    /// leaves memory (default off). A page that does not authenticate on the way back is lost
    /// (`Error::Corrupted`), never returned altered. Costs CPU on every swap write and read (see the
    /// README's benchmark section) and 24 bytes of memory per swap slot.
    pub fn encrypt_swap(mut self, on: bool) -> Self {
        self.encrypt_swap = on;
        self
    }

    /// Injects swap I/O failures, for testing error paths. Not a stable interface.
    #[doc(hidden)]
    pub fn swap_faults(mut self, faults: crate::swap::SwapFaults) -> Self {
        self.swap_faults = Some(faults);
        self
    }

    /// Creates the runtime: opens the userfaultfd, creates the swap file, starts the threads.
    pub fn build(self) -> Result<crate::Runtime> {
        crate::runtime::Runtime::start(self.resolve()?)
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
        let swap_bytes = match self.swap_capacity {
            Some(c) => c,
            None => {
                let free = sys::file::fs_info(&dir).map(|(f, _)| f).unwrap_or(0);
                (4 * budget_frames as u64 * page as u64).min(free / 2)
            }
        };
        let slots = swap_bytes / page as u64;
        let swap_slots = u32::try_from(slots)
            .map_err(|_| invalid("swap_capacity", format!("{swap_bytes} bytes is more than 2^32 pages")))?;
        let handler_threads = self.handler_threads.unwrap_or(1);
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
        if let Overcommit::Strict { ratio } = self.overcommit {
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
        let pressure_kill = threshold("pressure_kill", self.pressure_kill)?;
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
        Ok(Config {
            page,
            budget_frames,
            swap,
            swap_slots,
            swap_io: self.swap_io,
            handler_threads,
            low,
            high,
            eviction: self.eviction,
            max_readahead,
            event_capacity,
            overcommit: self.overcommit,
            policy: self.policy.unwrap_or_else(|| Arc::new(Greedy)),
            oom_dry_run: self.oom_dry_run,
            pressure_kill,
            pressure_warn,
            pin_limit,
            fault_mode: self.fault_mode,
            swap_faults: self.swap_faults,
            encrypt_swap: self.encrypt_swap,
        })
    }
}

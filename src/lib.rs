//! # pagewarden
//!
//! A userspace virtual-memory runtime driven by real page faults. Reserve regions far larger than
//! the memory you allow yourself; touch them as ordinary memory; the runtime serves every first
//! touch through Linux **userfaultfd**, keeps the pages it holds inside a hard **frame budget**,
//! swaps the rest to a file, and — when frames and swap are both exhausted — kills an arena
//! rather than letting the whole process drown.
//!
//! ```
//! use pagewarden::Runtime;
//!
//! let rt = Runtime::builder()
//!     .frame_budget(8 << 20)             // at most 8 MiB of pages in memory
//!     .swap_capacity(64 << 20)           // 64 MiB of swap in an unlinked temp file
//!     .build()?;
//! let arena = rt.arena("cache").create()?;
//! let region = arena.reserve(4 << 30)?;  // 4 GiB of address space: overcommitted
//!
//! // Safe accessors: bounds-checked, fault through the runtime, typed errors.
//! region.write(3 << 30, b"far away")?;
//! let mut buf = [0u8; 8];
//! region.read(3 << 30, &mut buf)?;
//! assert_eq!(&buf, b"far away");
//!
//! // Raw access works too: the same faults, served the same way.
//! let p = region.as_ptr();
//! // SAFETY: `p` is valid for `region.len()` bytes while `region` lives, and no one else
//! // accesses this byte.
//! unsafe { p.add(4096).write(7) };
//!
//! println!("{}", rt.stats());
//! # Ok::<(), pagewarden::Error>(())
//! ```
//!
//! ## Architecture
//!
//! * [`Runtime`] owns one userfaultfd, the handler thread(s) that read its fault events in
//!   batches, a background reclaimer thread, the frame budget and the swap file. Build it with
//!   [`RuntimeBuilder`]; settings the program does not set can come from `PAGEWARDEN_*`
//!   environment variables ([see the table](RuntimeBuilder#configuration-from-the-environment)).
//! * An [`Arena`] is a guest: a named owner of memory with an OOM profile (`oom_score_adj`,
//!   [`Impact`], hints), accounted and killed as one.
//! * A [`Region`] is one reserved range of an arena. Reserving costs address space and a little
//!   metadata; a page costs a frame only when first touched. A region can also map a file
//!   ([`Arena::map_file`], [`MapMode::Shared`] or [`MapMode::Private`]): its pages fill from the
//!   file, and clean ones are dropped under pressure with no I/O.
//! * [`Arena::fork`] makes a copy-on-write child ([`Fork`]): every page is shared, backed once,
//!   until one side writes it; only then is a copy made and charged.
//!
//! **A fault, end to end.** The kernel parks the touching thread and queues an event; a handler
//! reads it (or, in [`FaultMode::InThread`], the faulting thread itself catches it as SIGBUS),
//! looks the page up (never touched → zero-filled; swapped → read from its slot and checked
//! against the slot's checksum), takes a frame (reclaiming if none is free), installs the page
//! with one ioctl — write-protected when the access was a read, so a clean page can later be
//! dropped without I/O — and the thread runs on. Sequential faults install whole windows at once
//! (fault-around / readahead).
//!
//! **Reclaim.** The reclaimer keeps free frames between two watermarks. Replacement learns from
//! faults (the kernel gives a userspace pager no accessed bit): an inactive/active pair of lists,
//! with refaults of recently evicted pages promoted. Eviction never loses a concurrent write: with
//! [`EvictionPath::Move`] (Linux 6.8+) the page is atomically moved out of the arena into the
//! frame pool before it is written; with [`EvictionPath::WriteProtect`] it is write-protected
//! first and writers wait until it is in swap.
//!
//! **When memory runs out**, reclaim escalates: free frames, then clean pages (no I/O), then dirty
//! pages of shared file maps (written back to their files), then anonymous and private dirty
//! pages (written to swap), then the OOM killer. It builds a table of every arena ([`Candidate`]:
//! what it holds, what killing it would really free, its profile), lets the [`VictimPolicy`]
//! choose, kills the victims, and publishes an [`OomReport`] as [`Event::Killed`] (and logs it at
//! `warn`). Arenas marked `oom_score_adj(-1000)` or [`Impact::Critical`] are never killed; when
//! nothing may be killed, the access fails with [`Error::OutOfMemory`] instead of hanging.
//! Optionally, sustained fault stalls ([`Pressure`]) trigger it too
//! ([`RuntimeBuilder::pressure_kill`]).
//!
//! ```
//! use pagewarden::{Deficit, Event, Impact, Runtime};
//!
//! let rt = Runtime::builder().frame_budget(4 << 20).swap_capacity(4 << 20).build()?;
//! let db = rt.arena("database").oom_score_adj(-500).impact(Impact::Interactive).create()?;
//! let batch = rt.arena("batch").impact(Impact::Background).create()?;
//! let (d, b) = (db.reserve(1 << 20)?, batch.reserve(1 << 20)?);
//! d.fill(0, 1 << 20, 1)?;
//! b.fill(0, 1 << 20, 2)?;
//!
//! // As if a fault found no memory (the kernel's SysRq-f): the default policy picks the batch job.
//! let report = rt.run_oom_killer(Deficit { frames: 64, slots: 0 });
//! assert_eq!(report.victims[0].name, "batch");
//! assert!(batch.is_killed() && !db.is_killed());
//! assert!(matches!(rt.events().try_recv(), Ok(Event::Killed(_))));
//! assert!(matches!(b.read(0, &mut [0u8; 1]), Err(pagewarden::Error::Killed { .. })));
//! # Ok::<(), pagewarden::Error>(())
//! ```
//!
//! ## Choosing a victim policy
//!
//! The essay behind this crate puts it as a knapsack: each arena is an item whose *weight* is the
//! memory a kill frees and whose *value* is what losing it costs the user; fill the deficit while
//! losing as little value as possible. The built-in policies answer differently:
//!
//! | policy | kills | use it when |
//! |---|---|---|
//! | [`Greedy`] (default) | the best memory freed per impact cost, as few and as cheap arenas as cover the deficit | arenas have honest profiles ([`Impact`], `oom_score_adj`, hints): it spares important arenas even when they are the largest |
//! | [`LinuxBadness`] | the one arena with the largest footprint, shifted by `oom_score_adj` (the kernel's `oom_badness`) | you want the kernel's behaviour, or profiles are not set: it needs nothing but sizes |
//! | [`Balanced`] | arenas that make progress on *both* deficits when frames and swap are short together | swap often fills up: a victim that frees only frames leaves the next eviction nowhere to go |
//! | [`KillFaulting`] | the arena whose fault found no memory | each arena is one tenant and the one asking is to blame (the kernel's `oom_kill_allocating_task`) |
//!
//! Your own policy implements [`VictimPolicy`]. [`RuntimeBuilder::oom_dry_run`] reports whom a
//! policy would kill ([`Event::WouldKill`]) without killing, to try one on a live workload. The
//! `knapsack` and `two_deficits` examples show the policies disagreeing, and why:
//!
//! ```
//! use pagewarden::{Candidate, Deficit, Greedy, Impact, LinuxBadness, OomContext, OomHints, VictimPolicy};
//! use std::time::Duration;
//!
//! let arena = |name: &str, pages: u64, impact| Candidate {
//!     id: 0, name: name.into(), resident: pages, swapped: 0, pinned: 0, shared: 0,
//!     unique_frames: pages, unique_slots: 0, metadata_pages: 0, oom_score_adj: 0, impact,
//!     hints: OomHints::default(), age: Duration::from_secs(60), prefer: false, avoid: false,
//!     faulting: false,
//! };
//! let c = [
//!     arena("ui", 1000, Impact::Interactive),
//!     arena("batch-1", 300, Impact::Background),
//!     arena("batch-2", 300, Impact::Background),
//! ];
//! let ctx = OomContext { total_pages: 4096, deficit: Deficit { frames: 500, slots: 0 } };
//! assert_eq!(LinuxBadness.select(&c, &ctx), [0]);        // the largest: the ui
//! let mut greedy = Greedy.select(&c, &ctx);
//! greedy.sort();
//! assert_eq!(greedy, [1, 2]);                            // two cheap batch jobs cover it
//! ```
//!
//! ## Logging
//!
//! The runtime logs through the [`log`](https://docs.rs/log) facade: kills, dry-run verdicts,
//! pressure and low-swap warnings at `warn`; failures (a swap write that failed, a lost page) at
//! `error`; settings taken from the environment at `info`; reclaim and OOM decisions at `debug`.
//! Install any logger. A misspelt `PAGEWARDEN_*` variable is only logged (at `warn`), so a
//! program with no logger does not see it. The examples use `env_logger` and, without
//! `RUST_LOG`, show the configuration warnings (`pagewarden::config` and `pagewarden::runtime` at
//! `warn`); `RUST_LOG=pagewarden=debug cargo run --release --example stress` shows everything.
//!
//! ## Troubleshooting
//!
//! **`Error::UserfaultfdUnavailable`.** The runtime tries `/dev/userfaultfd`, then the
//! `userfaultfd(2)` system call, then the call with `UFFD_USER_MODE_ONLY`, and the error says why
//! each failed ([`Runtime::uffd_source`] tells which one worked). Any one of these fixes it:
//! * give the process read/write access to `/dev/userfaultfd` (Linux 6.1+; e.g. a group and a udev
//!   rule, or `chmod 0666 /dev/userfaultfd` on a single-user machine);
//! * `sysctl -w vm.unprivileged_userfaultfd=1` (lets unprivileged processes use the system call);
//! * run as root, or grant the process `CAP_SYS_PTRACE`.
//!
//! **Containers.** Docker's default seccomp profile blocks the `userfaultfd` system call (all
//! three ways then fail with `EPERM` or `ENOSYS`). Run with a seccomp profile that allows it
//! (`--security-opt seccomp=<profile>`), or pass the device in (`--device /dev/userfaultfd`),
//! which is opened rather than created by that system call.
//!
//! **Kernel versions** ([`Error::MissingKernelFeature`] names the feature):
//! * 5.7+ for write-protect faults on anonymous memory (required: dirty tracking and safe eviction);
//! * 6.8+ for `UFFDIO_MOVE` ([`EvictionPath::Move`]; `Auto` falls back to `WriteProtect`);
//! * 6.6+ for `UFFDIO_POISON` (SIGBUS on a killed arena's pages; older kernels map a zero page);
//! * 4.14+ for `UFFD_FEATURE_SIGBUS` ([`FaultMode::InThread`]); 5.11+ for `UFFD_USER_MODE_ONLY`;
//!   6.1+ for `/dev/userfaultfd`;
//! * faster, not required: 6.14+ for `process_madvise` on the calling process (`PIDFD_SELF`: a
//!   batch of evicted frames dropped with one TLB flush; older kernels get one `madvise` per run
//!   of pages).
//!
//! **`Error::SwapFile`** at `build`: the swap directory does not exist or cannot hold files, or
//! (with [`preallocate(true)`](RuntimeBuilder::preallocate)) the capacity does not fit on the
//! disk; choose a smaller [`swap_capacity`](RuntimeBuilder::swap_capacity) or another
//! [`swap_dir`](RuntimeBuilder::swap_dir) (or `PAGEWARDEN_SWAP` / `PAGEWARDEN_SWAP_DIR`). Without
//! preallocation the swap file grows on demand, so a disk that fills up mid-run shows instead as
//! [`Event::SwapLow`] and [`Stats::swap_usable_slots`] below [`Stats::swap_slots`]: swap is full,
//! dirty pages stay in memory, and memory that runs out goes to the OOM killer — no page is lost.
//! On a file system that refuses `O_DIRECT` the runtime falls back to buffered I/O and logs a
//! warning.
//!
//! **`Error::InvalidEnv`**: a `PAGEWARDEN_*` variable does not parse or is out of range; the
//! message names it. **A process killed by SIGBUS**: raw access (through [`Region::as_ptr`]) to a
//! killed arena's pages, or to a page lost from swap; use the safe accessors, which return
//! [`Error::Killed`] and [`Error::Corrupted`] instead.
//!
//! **Everything is slow under pressure**: the working set does not fit in the budget. Look at
//! the stats table ([`Stats`]: swap-ins, direct reclaims, pressure) and raise the budget, or try
//! [`FaultMode::InThread`], which resolves faults several times faster.

#![deny(unsafe_code)]

mod arena;
mod config;
mod engine;
mod entry;
mod error;
mod event;
mod filemap;
mod mm;
mod oom;
mod runtime;
mod stats;
mod store;
mod sys;
mod util;

pub use arena::{Arena, ArenaBuilder, Fork, Region};
pub use config::{EvictionPath, FaultMode, Overcommit, RuntimeBuilder, SwapIo, default_handler_threads};
pub use error::{Error, Result};
pub use event::Event;
pub use filemap::MapMode;
pub use oom::policy::{
    Balanced, Candidate, Deficit, Greedy, Impact, KillFaulting, LinuxBadness, OomContext, OomHints, VictimPolicy,
    impact_cost,
};
pub use oom::pressure::{Pressure, PsiLine};
pub use oom::report::{CandidateRow, KillTrigger, OomReport, Victim};
pub use runtime::Runtime;
pub use stats::{ArenaStats, Counters, Latency, Stats};
#[doc(hidden)]
pub use store::SwapFaults;
pub use store::{PageBufs, PageBufsMut, StoreError, StoreUsage, SwapStore};
pub use sys::uffd::UffdSource;

/// The README's examples, compiled and run as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

#[cfg(test)]
pub(crate) mod test_support {
    use std::cell::Cell;

    std::thread_local! {
        /// Whether this test (each runs on its own thread) has said it skips.
        static SAID: Cell<bool> = const { Cell::new(false) };
    }

    /// A test needing userfaultfd cannot run here: fails, saying why, unless
    /// `PAGEWARDEN_SKIP_UFFD_TESTS=1` is set; then says once per test that it skips.
    pub(crate) fn uffd_unavailable(why: &str) {
        if std::env::var_os("PAGEWARDEN_SKIP_UFFD_TESTS").is_none_or(|v| v != "1") {
            panic!(
                "userfaultfd unavailable ({why}): this test needs one of /dev/userfaultfd (read/write access), \
                 the userfaultfd(2) system call, or that call with UFFD_USER_MODE_ONLY (Linux 5.11+, no privilege \
                 needed, but a seccomp filter may block it); set PAGEWARDEN_SKIP_UFFD_TESTS=1 to skip such tests"
            );
        }
        if !SAID.replace(true) {
            eprintln!("*** SKIPPING (PAGEWARDEN_SKIP_UFFD_TESTS=1): userfaultfd unavailable: {why}");
        }
    }
}

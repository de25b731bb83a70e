//! # pagewarden
//!
//! A userspace virtual-memory runtime driven by real page faults. Reserve regions far larger than
//! the memory you allow yourself; touch them as ordinary memory; the runtime serves every first
//! touch through Linux **userfaultfd**, keeps the pages it holds inside a hard **frame budget**,
//! swaps the rest to a file, and — when frames and swap are both exhausted — kills an arena
//! rather than letting the whole process drown.
//!
//! ```no_run
//! use pagewarden::Runtime;
//!
//! let rt = Runtime::builder()
//!     .frame_budget(64 << 20)            // at most 64 MiB of pages in memory
//!     .swap_capacity(1 << 30)            // 1 GiB of swap in an unlinked temp file
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
//! // SAFETY (for the reader): `p` is valid for `region.len()` bytes while `region` lives.
//! unsafe { p.add(4096).write(7) };
//!
//! println!("{}", rt.stats());
//! # Ok::<(), pagewarden::Error>(())
//! ```
//!
//! ## How it fits together
//!
//! * [`Runtime`] owns one userfaultfd, handler thread(s) that read its fault events in batches, a
//!   background reclaimer, the frame budget and the swap file. Build it with [`RuntimeBuilder`].
//! * An [`Arena`] is a guest: a named owner of memory, accounted and killed as one.
//! * A [`Region`] is one reserved range of an arena. Reserving costs address space and a little
//!   metadata; a page costs a frame when first touched.
//!
//! A fault, end to end: the kernel parks the touching thread and queues an event; a handler reads
//! it, looks up the page (never touched → zero-filled; swapped → read from its slot), takes a
//! frame (reclaiming if none is free), installs the page with one ioctl — write-protected when
//! the access was a read, so a clean page can later be dropped without I/O — and the kernel wakes
//! the thread. Sequential faults install whole windows at once (fault-around / readahead).
//!
//! Eviction never loses a concurrent write: with [`EvictionPath::Move`] (Linux 6.8+) the page is
//! atomically moved out of the arena into the frame pool before it is written; with
//! [`EvictionPath::WriteProtect`] it is write-protected first and writers wait until it is in
//! swap. See the `reclaim` notes in the README.
//!
//! ## When memory runs out
//!
//! Reclaim escalates: free frames, then clean pages (no I/O), then dirty pages (written to swap),
//! then the OOM killer. It builds a table of every arena ([`Candidate`]: what it holds, what
//! killing it would really free, its profile), lets the [`VictimPolicy`] choose — [`Greedy`] by
//! default; [`LinuxBadness`], [`Balanced`] and [`KillFaulting`] are built in, and the trait's docs
//! explain when to use which — kills the victims and publishes an [`OomReport`] as
//! [`Event::Killed`]. Arenas marked `oom_score_adj(-1000)` or [`Impact::Critical`] are never
//! killed; when nothing may be killed, the access fails with [`Error::OutOfMemory`] instead of
//! hanging. Optionally, sustained fault stalls ([`Pressure`]) trigger it too
//! ([`RuntimeBuilder::pressure_kill`]).
//!
//! ```no_run
//! use pagewarden::{Balanced, Impact, Runtime};
//!
//! let rt = Runtime::builder().frame_budget(256 << 20).victim_policy(Balanced).build()?;
//! let db = rt.arena("database").oom_score_adj(-500).impact(Impact::Interactive).create()?;
//! let batch = rt.arena("batch").impact(Impact::Background).prefer().create()?;
//! for ev in rt.events().try_iter() {
//!     println!("{ev:?}");
//! }
//! # Ok::<(), pagewarden::Error>(())
//! ```
//!
//! ## Requirements
//!
//! Linux with userfaultfd and write-protect support for anonymous memory (5.7+; 6.8+ for the MOVE
//! path, 6.6+ for poisoning a killed arena's pages), and permission to use userfaultfd: root,
//! access to `/dev/userfaultfd`, or `vm.unprivileged_userfaultfd=1`. [`Error::UserfaultfdUnavailable`]
//! says which applies.

#![deny(unsafe_code)]

mod arena;
mod config;
mod core;
mod cow;
mod error;
mod event;
mod fault;
mod filemap;
mod oom;
mod pin;
mod reclaim;
mod runtime;
mod stats;
mod swap;
mod sys;

pub use arena::{Arena, ArenaBuilder, Fork, Region};
pub use config::{EvictionPath, FaultMode, Overcommit, RuntimeBuilder, SwapIo};
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
pub use swap::SwapFaults;
pub use sys::uffd::UffdSource;

#[cfg(test)]
pub(crate) mod test_support {
    /// Reports, loudly, that a test needing userfaultfd cannot run here; fails unless the
    /// environment says skipping is acceptable.
    pub(crate) fn uffd_unavailable(why: &str) {
        eprintln!("\n*** userfaultfd unavailable: {why}\n*** this test needs root or vm.unprivileged_userfaultfd=1\n");
        if std::env::var_os("PAGEWARDEN_SKIP_UFFD_TESTS").is_none() {
            panic!("userfaultfd unavailable ({why}); set PAGEWARDEN_SKIP_UFFD_TESTS=1 to skip such tests");
        }
    }
}

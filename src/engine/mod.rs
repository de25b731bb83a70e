//! The engine: what happens to a page. It owns the runtime's state ([`State`], one lock, its
//! tables) and decides every fault, eviction, fork and kill; the public handles and the
//! threads above call into it, and it calls down into the tables (`mm`), the OOM policy (`oom`),
//! swap I/O and the platform layer (`sys`).
//!
//! * [`dispatch`] — the table of what a fault needs, by page state and access (pure).
//! * [`fault`] — one fault, in either mode: locate, decide, page in (plan, fill, commit).
//! * [`reclaim`] — eviction (select, plan, write out, finish), the background reclaimer, the
//!   reaper, region release.
//! * [`cow`] — copy-on-write shares between fork relatives.
//! * [`filemap`] — `Shared` file maps written back on flush.
//! * [`kill`] — the OOM kill and reaping, the pressure and low-swap checks.
//! * [`pin`] — pins and the holds of safe accessors.
//! * [`logq`] — log lines, queued rather than written while in the SIGBUS handler.
//! * [`swap`] — swap I/O through the store, with a checksum per slot verified on every swap-in.

pub(crate) mod core;
pub(crate) mod cow;
pub(crate) mod dispatch;
pub(crate) mod fault;
pub(crate) mod filemap;
pub(crate) mod kill;
pub(crate) mod logq;
pub(crate) mod pin;
pub(crate) mod reclaim;
pub(crate) mod state;
pub(crate) mod swap;

pub(crate) use self::core::Core;
pub(crate) use state::{Accessor, ArenaShared, ArenaState, Guard, Liveness, RegionState, State};

//! Where faults and background work enter the engine: the handler threads, the in-thread SIGBUS
//! resolver, and the reclaimer thread. Each reads its input (fault events, a SIGBUS, a timer),
//! asks the engine, and acts on the answer.

pub(crate) mod handler;
pub(crate) mod reclaimer;
pub(crate) mod sigbus;

//! Memory management tables: page table, frame budget, swap slots, replacement and readahead. Pure
//! data structures with no system calls; the engine drives them under its state lock.

pub(crate) mod filemaps;
pub(crate) mod frames;
pub(crate) mod inflight;
pub(crate) mod lru;
pub(crate) mod page;
pub(crate) mod readahead;
pub(crate) mod reap;
pub(crate) mod shares;
pub(crate) mod slots;

pub(crate) use crate::util::{idx, n32};

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

// Page indices are u64 and offsets usize: lossless only on 64-bit targets, which are the only
// ones userfaultfd-based paging is built for.
const _: () = assert!(usize::BITS == 64, "pagewarden supports 64-bit targets only");

/// A page index (or count) as `usize`; lossless on the 64-bit targets the crate builds for.
#[allow(clippy::cast_possible_truncation)]
pub(crate) const fn idx(x: u64) -> usize {
    x as usize
}

/// A count the caller has bounded (by the budget, the swap capacity or a batch size) as `u32`.
pub(crate) fn n32(x: usize) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

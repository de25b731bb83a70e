//! The paging core: page table, frame budget, swap slots, replacement and readahead. Pure data
//! structures with no system calls; the runtime drives them under its state lock.

pub(crate) mod frames;
pub(crate) mod lru;
pub(crate) mod page;
pub(crate) mod readahead;
pub(crate) mod slots;

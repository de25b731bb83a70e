//! The file store: swap in a file that grows on demand ([`SwapFile`] does the system calls).

use super::{PageBufs, PageBufsMut, StoreError, StoreUsage, SwapStore};
use crate::sys::file::{SwapFile, is_disk_full};
use std::sync::atomic::Ordering;

/// Slots in a [`SwapFile`]: slot `s` at byte `s × page`. The default store.
#[derive(Debug)]
pub(crate) struct FileStore {
    file: SwapFile,
    page: usize,
    slots: u32,
}

impl FileStore {
    /// A store of `slots` slots of `page` bytes in `file` (created with that capacity).
    pub(crate) fn new(file: SwapFile, slots: u32, page: usize) -> FileStore {
        debug_assert_eq!(file.capacity(), u64::from(slots) * page as u64);
        FileStore { file, page, slots }
    }

    /// Every read and write system call moves at most `pages` pages (tests set 1).
    pub(crate) fn limit_pages_per_call(&self, pages: usize) {
        self.file.max_pages_per_call.store(pages, Ordering::Relaxed);
    }

    fn offset(&self, slot: u32) -> u64 {
        u64::from(slot) * self.page as u64
    }
}

/// A growth failure is "full" only when the disk (or the quota) is; anything else is an error.
fn grow_error(e: crate::sys::SysError) -> StoreError {
    if is_disk_full(&e) { StoreError::full(e.errno, e.op) } else { e.into() }
}

impl SwapStore for FileStore {
    fn capacity(&self) -> u32 {
        self.slots
    }

    fn grow(&self, slots: u32) -> Result<(), StoreError> {
        self.file.ensure_len(self.offset(slots), true).map_err(grow_error)
    }

    fn backed(&self) -> u32 {
        crate::mm::n32(crate::mm::idx(self.file.allocated() / self.page as u64))
    }

    fn write(&self, first: u32, pages: &PageBufs<'_>) -> Result<(), StoreError> {
        // Allocates nothing: the iovecs are built on the stack, the bytes moved by the kernel.
        self.file.write_pages_with(self.offset(first), pages.len(), |k| pages.at(k)).map_err(grow_error)
    }

    fn read(&self, first: u32, pages: &mut PageBufsMut<'_>) -> Result<(), StoreError> {
        let n = pages.len();
        let pages = &*pages;
        Ok(self.file.read_pages_with(self.offset(first), n, |k| pages.at(k))?)
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(self.file.sync()?)
    }

    fn is_direct(&self) -> bool {
        self.file.is_direct()
    }

    fn signal_safe(&self) -> bool {
        true
    }

    fn usage(&self) -> StoreUsage {
        StoreUsage {
            occupied_bytes: self.file.occupied(),
            allocated_bytes: self.file.allocated(),
            read_ios: self.file.read_ios.load(Ordering::Relaxed),
            write_ios: self.file.write_ios.load(Ordering::Relaxed),
        }
    }
}

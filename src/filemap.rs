//! File-backed regions: pages fill from a file on first touch; a `Shared` map writes dirty pages
//! back to the file (on eviction, [`Region::flush`](crate::Region::flush) and release), a
//! `Private` map never changes the file (its written pages go to swap like anonymous ones).
//!
//! ```text
//!   file:    [ offset ......................... offset + len )      (may end early: EOF)
//!   region:  [ page 0 | page 1 | ... ]  never touched → read from the file (tail past EOF zeroed)
//!            clean page → dropped with no I/O, read again later
//!            dirty page → Shared: written back to its place in the file, then dropped
//!                         Private: swapped out like an anonymous page
//! ```

use crate::error::{Error, Result};
use crate::mm::idx;
use crate::sys::file::DataFile;
use crate::sys::mem::Mapping;

/// How a file-backed region treats writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapMode {
    /// Writes go back to the file: on eviction, on [`Region::flush`](crate::Region::flush), and
    /// when the region is released (or its arena killed). Like `MAP_SHARED`.
    Shared,
    /// Writes are copy-on-write: they stay in memory or swap and never reach the file. Pages not
    /// yet written show the file's current contents. Like `MAP_PRIVATE`.
    Private,
}

/// The file behind a region.
#[derive(Debug)]
pub(crate) struct FileMap {
    pub(crate) file: DataFile,
    /// File offset of the region's first byte (page-aligned).
    pub(crate) offset: u64,
    pub(crate) mode: MapMode,
}

impl FileMap {
    /// File offset of page `page`.
    pub(crate) fn at(&self, page: u64, ps: usize) -> u64 {
        self.offset + page * ps as u64
    }

    /// Pages of the region that lie at least partly inside the file now (the rest are past EOF).
    pub(crate) fn pages_in_file(&self, ps: usize) -> Result<u64> {
        let len = self.file.len().map_err(|e| Error::FileIo { op: "fstat", source: e.io() })?;
        Ok(len.saturating_sub(self.offset).div_ceil(ps as u64))
    }

    /// Writes `pages` pages of `m` at `off` (region page `page` onwards) to the file, clipped at
    /// the end of the file (the kernel never extends a file from a mapping either).
    pub(crate) fn write_back(&self, page: u64, pages: u64, m: &Mapping, off: usize, ps: usize) -> Result<()> {
        let len = self.file.len().map_err(|e| Error::FileIo { op: "fstat", source: e.io() })?;
        let at = self.at(page, ps);
        let n = (pages * ps as u64).min(len.saturating_sub(at));
        if n == 0 {
            return Ok(());
        }
        self.file.write_from(at, m, off, idx(n)).map_err(|e| Error::FileIo { op: "write back", source: e.io() })
    }
}

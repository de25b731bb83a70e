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
use crate::mm::lru::key;
use crate::mm::page::PageState;
use crate::runtime::{Core, Liveness, State};
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

impl State {
    /// Whether dirty pages of region `rid` are written back to a file rather than to swap.
    pub(crate) fn writes_back(&self, rid: u32) -> bool {
        self.file_maps.is_shared(rid)
    }
}

impl Core {
    /// Writes the dirty pages of `range` of a `Shared` file-backed region back to the file and
    /// syncs it; the pages stay resident, clean. Pages written meanwhile are dirty again (their
    /// write-protect fault says so) and go out with the next flush.
    pub(crate) fn flush_region(&self, rid: u32, range: std::ops::Range<u64>) -> Result<()> {
        let ps = self.page();
        let mut st = self.lock();
        let Some(r) = st.regions.get(&rid) else { return Ok(()) };
        let Some(fm) = r.file.clone().filter(|f| f.mode == MapMode::Shared) else { return Ok(()) };
        if r.live != Liveness::Live {
            return Ok(());
        }
        let map = r.map.clone();
        let dirty: Vec<u64> =
            range.clone().filter(|&p| r.pages.get(p).is_resident() && r.pages.get(p).dirty()).collect();
        // Dirty pages an eviction is writing back now: in the file before this call returns too.
        // (Waited for below, once the dirty pages are held: a held page cannot start an eviction
        // meanwhile, and later evictions carry later writes.)
        let evicting = |st: &State, p: u64| st.region(rid).pages.get(p).state() == PageState::Evicting;
        let pending: Vec<u64> =
            if r.writing_back > 0 { range.filter(|&p| evicting(&st, p)).collect() } else { Vec::new() };
        // Write-protect and mark clean first: a write from now on faults and marks the page dirty
        // again. Holding the pages keeps reclaim from dropping a page whose write is not done.
        for &p in &dirty {
            self.uffd.writeprotect(&map, idx(p) * ps, ps, true, false)?;
            let mut e = st.region(rid).pages.get(p);
            e.set_dirty(false);
            st.clean += usize::from(!e.pinned());
            st.region_mut(rid).pages.set(p, e);
            *st.held.entry(key(rid, p)).or_insert(0) += 1;
        }
        drop(st);
        let mut res = Ok(());
        let mut i = 0;
        while i < dirty.len() {
            let mut j = i + 1;
            while j < dirty.len() && dirty[j] == dirty[i] + (j - i) as u64 {
                j += 1;
            }
            // The pages are resident and held: reading them cannot fault.
            if let Err(e) = fm.write_back(dirty[i], (j - i) as u64, &map, idx(dirty[i]) * ps, ps) {
                res = Err(e);
                break;
            }
            i = j;
        }
        let written = if res.is_ok() { dirty.len() } else { i };
        let mut st = self.lock();
        for (k, &p) in dirty.iter().enumerate() {
            let kk = key(rid, p);
            if let Some(n) = st.held.get_mut(&kk) {
                *n -= 1;
                if *n == 0 {
                    st.held.remove(&kk);
                }
            }
            if k >= written {
                // Not written: dirty again, unless the region went meanwhile.
                let live = st.regions.get(&rid).is_some_and(|r| r.live == Liveness::Live);
                let e = st.region(rid).pages.get(p);
                if live && e.is_resident() && !e.dirty() {
                    self.make_dirty(&mut st, rid, p, e);
                }
            }
        }
        if st.regions.contains_key(&rid) {
            st.counters(rid).file_writebacks += written as u64;
        }
        while !self.is_failed() && st.writing_back(rid) > 0 && pending.iter().any(|&p| evicting(&st, p)) {
            st = self.wait_progress(st, std::time::Duration::from_millis(5));
        }
        drop(st);
        res?;
        fm.file.sync().map_err(|e| Error::FileIo { op: "fdatasync", source: e.io() })
    }

    /// Writes back dirty pages of a `Shared` file-backed region that is being dropped (released
    /// or killed), with the lock held: the pages are still mapped. Failures are logged.
    pub(crate) fn write_back_dropped(&self, st: &mut State, rid: u32, pages: &[u64]) {
        let ps = self.page();
        let Some(r) = st.regions.get(&rid) else { return };
        let Some(fm) = r.file.clone() else { return };
        let map = r.map.clone();
        for &p in pages {
            if let Err(e) = fm.write_back(p, 1, &map, idx(p) * ps, ps) {
                log::error!("pagewarden: writing back page {p} of a dropped file map failed: {e}");
            }
        }
        if !pages.is_empty() {
            if let Some(a) = st.arenas.get_mut(&r.arena) {
                a.counters.file_writebacks += pages.len() as u64;
            }
            if let Err(e) = fm.file.sync() {
                log::error!("pagewarden: syncing a dropped file map failed: {e}");
            }
        }
    }
}

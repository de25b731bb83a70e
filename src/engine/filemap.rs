//! Writing `Shared` file maps back: `Region::flush`, and which regions write back at all.

use crate::engine::logq::note;
use crate::engine::{Core, Liveness, State};
use crate::error::{Error, Result};
use crate::filemap::MapMode;
use crate::mm::idx;
use crate::mm::lru::key;
use crate::mm::page::PageState;

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
        let fm = {
            let st = self.lock();
            let Some(r) = st.regions.get(&rid).filter(|r| r.live == Liveness::Live) else { return Ok(()) };
            let Some(fm) = r.file.clone().filter(|f| f.mode == MapMode::Shared) else { return Ok(()) };
            fm
        };
        // Again while an eviction this pass waited for could not take its page after all (the
        // kernel may refuse, e.g. EBUSY): the page is then still dirty in memory.
        while self.flush_pass(rid, range.clone(), &fm)? {}
        fm.file.sync().map_err(|e| Error::FileIo { op: "fdatasync", source: e.io() })
    }

    /// One pass of [`Core::flush_region`]: writes the dirty resident pages and waits for the
    /// write-backs in flight. Returns whether a page whose write-back it waited for is dirty
    /// again in memory (its eviction did not write it).
    fn flush_pass(&self, rid: u32, range: std::ops::Range<u64>, fm: &crate::filemap::FileMap) -> Result<bool> {
        let ps = self.page();
        let mut st = self.lock();
        let Some(r) = st.regions.get(&rid).filter(|r| r.live == Liveness::Live) else { return Ok(false) };
        let map = r.map.clone();
        let dirty: Vec<u64> =
            range.clone().filter(|&p| r.pages.get(p).is_resident() && r.pages.get(p).dirty()).collect();
        // Dirty pages an eviction is writing back now: in the file before this call returns too.
        // (Waited for below, once the dirty pages are held: a held page cannot start an eviction
        // meanwhile, and later evictions carry later writes.)
        let evicting = |st: &State, p: u64| st.region(rid).pages.get(p).state() == PageState::Evicting;
        let pending: Vec<u64> =
            if r.counts.writing_back > 0 { range.filter(|&p| evicting(&st, p)).collect() } else { Vec::new() };
        // Write-protect and mark clean first: a write from now on faults and marks the page dirty
        // again. Holding the pages keeps reclaim from dropping a page whose write is not done.
        for &p in &dirty {
            self.uffd.writeprotect(&map, idx(p) * ps, ps, true, false)?;
            let mut e = st.region(rid).pages.get(p);
            e.set_dirty(false);
            st.usage.clean += usize::from(!e.pinned());
            st.region_mut(rid).pages.set(p, e);
            *st.usage.held.entry(key(rid, p)).or_insert(0) += 1;
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
            if let Some(n) = st.usage.held.get_mut(&kk) {
                *n -= 1;
                if *n == 0 {
                    st.usage.held.remove(&kk);
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
        res?;
        let dirty_again = |p: u64| {
            st.regions
                .get(&rid)
                .is_some_and(|r| r.live == Liveness::Live && r.pages.get(p).is_resident() && r.pages.get(p).dirty())
        };
        Ok(!self.is_failed() && pending.iter().any(|&p| dirty_again(p)))
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
                note!(Error, "pagewarden: writing back page {p} of a dropped file map failed: {e}");
            }
        }
        if !pages.is_empty() {
            if let Some(a) = st.arenas.get_mut(&r.arena) {
                a.counters.file_writebacks += pages.len() as u64;
            }
            if let Err(e) = fm.file.sync() {
                note!(Error, "pagewarden: syncing a dropped file map failed: {e}");
            }
        }
    }
}

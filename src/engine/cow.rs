//! Copy-on-write forks: sharing a region's pages with a child region, and breaking the sharing
//! when one side writes.
//!
//! ```text
//!   fork:      every touched page of the parent region becomes a share (or joins its share);
//!              the child's page refers to it. No data is copied and no frame is charged.
//!   read:      a child page pages in from the share: a copy of a resident relative's frame, or a
//!              read of the share's swap slot. It is mapped read-only and stays a share reference.
//!   write:     the writer's page becomes private. If its frame was the share's only copy, the
//!              data is first copied into a relative's page (one frame, charged then), so no other
//!              side ever sees the write.
//!   evict:     a share reference with other copies (slot, or another frame) is dropped with no
//!              I/O; the last copy is written to a slot that the share keeps.
//!   kill/free: the side's references go; a last copy in a frame is moved (or copied) into a
//!              relative first. A share with one reference left becomes that page's own data.
//! ```
//!
//! A private anonymous page cannot be mapped at two addresses, so a page read on both sides holds
//! two frames; the second is clean and is the first thing reclaim takes, with no I/O.

use crate::config::EvictionPath;
use crate::engine::logq::note;
use crate::engine::{Core, Liveness, State};
use crate::mm::idx;
use crate::mm::lru::key;
use crate::mm::page::{Entry, PageState};
use crate::mm::shares::Share;
use crate::sys::uffd::Filled;

impl State {
    /// The swap slot holding a page's data: its own, or its share's.
    pub(crate) fn data_slot(&self, e: Entry) -> Option<u32> {
        e.slot().or_else(|| e.share().and_then(|id| self.shares.get(id).slot))
    }

    /// A live region of `rid`'s family, other than `rid`, whose page `page` refers to share `id`
    /// and satisfies `want`.
    pub(crate) fn find_ref(&self, rid: u32, page: u64, id: u32, want: impl Fn(Entry) -> bool) -> Option<u32> {
        self.find_ref_in(rid, page, id, |x, e| x.live == Liveness::Live && want(e))
    }

    /// Whether a region of `rid`'s family other than `rid`, live or dying, is writing the only
    /// copy of share `id` out (its page `page` is evicting). A dying region's eviction still
    /// gives the share its slot when it ends, so a relative waits for it like for a live one.
    pub(crate) fn share_in_flight(&self, rid: u32, page: u64, id: u32) -> bool {
        self.find_ref_in(rid, page, id, |_, e| e.state() == PageState::Evicting).is_some()
    }

    fn find_ref_in(
        &self,
        rid: u32,
        page: u64,
        id: u32,
        want: impl Fn(&crate::engine::RegionState, Entry) -> bool,
    ) -> Option<u32> {
        let fam = self.regions.get(&rid)?.family;
        self.shares.family(fam).iter().copied().filter(|&r| r != rid).find(|r| {
            self.regions.get(r).is_some_and(|x| {
                let e = x.pages.get(page);
                e.share() == Some(id) && want(x, e)
            })
        })
    }
}

impl Core {
    /// Drops the reference that page `page` of `rid` held on share `id` (the caller has changed
    /// the entry). `resident`: the reference held a frame. A share left with one reference
    /// becomes that page's own data; with none, it is freed with its slot.
    pub(crate) fn unref_share(&self, st: &mut State, rid: u32, page: u64, id: u32, resident: bool) {
        if let Some(r) = st.regions.get_mut(&rid) {
            r.counts.shared -= 1;
            r.counts.shared_resident -= u64::from(resident);
        }
        let sh = st.shares.get_mut(id);
        sh.refs -= 1;
        sh.resident -= u32::from(resident);
        match sh.refs {
            0 => {
                if let Some(s) = sh.slot {
                    st.slots.free(s);
                }
                st.shares.free(id);
            }
            1 => self.normalize_share(st, page, id),
            _ => {}
        }
    }

    /// A share with one reference left: the referring page takes the data (slot or frame) as its
    /// own, unless it is in flight (its owner then finishes with the share as it is).
    pub(crate) fn normalize_share(&self, st: &mut State, page: u64, id: u32) {
        let sh = *st.shares.get(id);
        let Some(rid) = st
            .shares
            .family(sh.family)
            .iter()
            .copied()
            .find(|r| st.regions.get(r).is_some_and(|x| x.pages.get(page).share() == Some(id)))
        else {
            return;
        };
        let ps = self.page();
        let r = st.regions.get_mut(&rid).expect("found above");
        let mut e = r.pages.get(page);
        match e.state() {
            PageState::Resident => {
                e.set_share(None);
                r.counts.shared -= 1;
                r.counts.shared_resident -= 1;
                if let Some(s) = sh.slot {
                    e.set_slot(Some(s));
                    r.counts.slots += 1;
                } else {
                    // The frame is the only copy: the page is dirty from now on.
                    e.set_dirty(true);
                    if let Err(err) = self.uffd.writeprotect(&r.map, idx(page) * ps, ps, false, true) {
                        note!(Error, "pagewarden: lifting write protection of an unshared page failed: {err}");
                    }
                    if !e.pinned() {
                        st.usage.clean -= 1;
                    }
                }
            }
            PageState::Shared => {
                let Some(s) = sh.slot else {
                    // Its data is nowhere (a bookkeeping bug): leave the page referring to the
                    // share, so that its next fault loses it loudly.
                    note!(Error, "pagewarden: share {id} has no copy left; page {page} of region {rid} is lost");
                    return;
                };
                e.set_share(None);
                r.counts.shared -= 1;
                e.set_state(PageState::Swapped);
                e.set_slot(Some(s));
                r.counts.slots += 1;
                r.counts.swapped += 1;
            }
            _ => return,
        }
        r.pages.set(page, e);
        st.shares.free(id);
    }

    /// A share whose only copy is gone (its last frame died while its write to swap failed): the
    /// pages still referring to it are lost, and reported, rather than read as anything else.
    pub(crate) fn lose_share(&self, st: &mut State, page: u64, id: u32) {
        let sh = *st.shares.get(id);
        if sh.refs == 0 || sh.slot.is_some() || sh.resident > 0 {
            return;
        }
        let rel = st.shares.family(sh.family).to_vec();
        for rid in rel {
            let e = st.regions.get(&rid).map(|r| r.pages.get(page));
            if e.is_some_and(|e| e.share() == Some(id) && e.state() == PageState::Shared) {
                self.lose_page(st, rid, page);
            }
        }
    }

    /// Gives the frame of page `page` of `rid` (a resident reference to share `id` holding the
    /// share's only copy, about to be written or dropped) to a relative that refers to the share
    /// without a frame: moved where the kernel can, else copied. Returns false when there is no
    /// such relative or no frame for a copy (`copy_only`: the caller keeps its frame, so the copy
    /// needs a new one; otherwise the caller's frame is being freed and the copy takes over its
    /// place in the budget).
    pub(crate) fn donate(&self, st: &mut State, rid: u32, page: u64, id: u32, copy_only: bool) -> bool {
        let ps = self.page();
        let off = idx(page) * ps;
        let Some(q) = st.find_ref(rid, page, id, |e| e.state() == PageState::Shared && !e.reserve()) else {
            return false;
        };
        if copy_only {
            if st.frames.free() == 0 {
                return false;
            }
            st.frames.take(1);
            self.trim_pool(st);
        }
        let (src, dst) = (st.region(rid).map.clone(), st.region(q).map.clone());
        let moved = !copy_only
            && self.path == EvictionPath::Move
            && matches!(self.uffd.move_pages(&dst, off, &src, off, ps, false), Ok(Filled::All));
        let res = if moved {
            // A moved page arrives writable: protect it before its threads wake.
            self.uffd.writeprotect(&dst, off, ps, true, true).map(|()| Filled::All)
        } else {
            self.uffd.copy(&dst, off, &src, off, ps, true, true)
        };
        match res {
            Ok(Filled::All) => {}
            other => {
                note!(Error, "pagewarden: handing a shared page to a relative failed: {other:?}");
                if copy_only {
                    st.frames.give(1);
                }
                return false;
            }
        }
        let rq = st.regions.get_mut(&q).expect("found above");
        let mut e = rq.pages.get(page).with_state(PageState::Resident);
        e.set_waiters(false);
        rq.counts.resident += 1;
        rq.counts.shared_resident += 1;
        st.lru.admit(key(q, page), &mut e, false);
        st.usage.clean += 1;
        st.region_mut(q).pages.set(page, e);
        st.shares.get_mut(id).resident += 1;
        true
    }

    /// Drops pool pages that no longer fit beside the frames in use, before a COPY install
    /// allocates (MOVE path; a no-op otherwise).
    pub(crate) fn trim_pool(&self, st: &mut State) {
        let ps = self.page();
        let frames = st.frames.trim_for_copy();
        if let Some(p) = &self.mem.pool {
            let ranges: Vec<_> = frames.iter().map(|&f| (p, f as usize * ps, ps)).collect();
            if let Err(err) = crate::sys::mem::discard_many(ranges.iter().copied()) {
                note!(Error, "pagewarden: dropping pool frames failed: {err}");
            }
        }
    }

    /// Makes resident page `page` of `rid`, a reference to a share, private ahead of a write:
    /// dirty, writable and charged to this side alone. If its frame was the share's only copy,
    /// the data is first copied into a relative. `false` when that copy needs a frame and none
    /// is free (nothing was changed).
    pub(crate) fn unshare_for_write(&self, st: &mut State, rid: u32, page: u64) -> bool {
        let e = st.region(rid).pages.get(page);
        let Some(id) = e.share() else {
            self.make_dirty(st, rid, page, e);
            return true;
        };
        let sh = *st.shares.get(id);
        if sh.refs > 1 && sh.slot.is_none() && sh.resident == 1 && !self.donate(st, rid, page, id, true) {
            return false;
        }
        let mut e = st.region(rid).pages.get(page);
        e.set_share(None);
        st.region_mut(rid).pages.set(page, e);
        self.unref_share(st, rid, page, id, true);
        st.counters(rid).cow_copies += 1;
        let e = st.region(rid).pages.get(page);
        self.make_dirty(st, rid, page, e);
        true
    }

    /// Shares every touched page of region `parent` with the new, empty region `child` of the
    /// same size (state lock held, nothing in flight in `parent`). Dirty pages become clean
    /// references, write-protected so that the parent's next write breaks the sharing.
    pub(crate) fn share_region(&self, st: &mut State, parent: u32, child: u32) -> crate::Result<()> {
        let fam = st.region(parent).family;
        st.region_mut(child).family = fam;
        st.shares.join_family(fam, parent, child);
        let child_poison = st.region(child).poisoned.clone();
        // One pass over the parent's table, changing entries in place; the child's entries are
        // collected in page order and inserted leaf by leaf.
        let mut out: Vec<(u64, Entry)> = Vec::new();
        let (mut poisoned, mut to_shared, mut slots_moved, mut swapped_moved, mut res_shared, mut cleaned) =
            (0u64, 0u64, 0u64, 0u64, 0u64, 0usize);
        let mut in_flight = None;
        let state = &mut *st;
        let (shares, regions) = (&mut state.shares, &mut state.regions);
        let r = regions.get_mut(&parent).expect("the parent region exists");
        r.pages.retain(|p, e| {
            let id = match (e.state(), e.share()) {
                (PageState::Poisoned, _) => {
                    out.push((p, Entry::default().with_state(PageState::Poisoned)));
                    poisoned += 1;
                    return true;
                }
                (PageState::Unpopulated, _) => return true,
                // Never written: it reads as zeros (or the file) on both sides, sharing nothing.
                (PageState::Resident, None) if !e.dirty() && e.slot().is_none() => return true,
                (_, Some(id)) => {
                    shares.get_mut(id).refs += 1;
                    id
                }
                (PageState::Swapped, None) => {
                    let id = shares.alloc(Share { refs: 2, resident: 0, slot: e.slot(), family: fam });
                    e.set_share(Some(id));
                    e.set_state(PageState::Shared);
                    slots_moved += 1;
                    swapped_moved += 1;
                    to_shared += 1;
                    id
                }
                (PageState::Resident, None) => {
                    let slot = e.slot();
                    let id = shares.alloc(Share { refs: 2, resident: 1, slot, family: fam });
                    if e.dirty() {
                        e.set_dirty(false);
                        cleaned += usize::from(!e.pinned());
                    }
                    e.set_share(Some(id));
                    slots_moved += u64::from(slot.is_some());
                    to_shared += 1;
                    res_shared += 1;
                    id
                }
                (s, None) => {
                    in_flight = Some((p, s));
                    return true;
                }
            };
            let mut c = Entry::default().with_state(PageState::Shared);
            c.set_share(Some(id));
            out.push((p, c));
            true
        });
        r.counts.slots -= slots_moved;
        r.counts.swapped -= swapped_moved;
        r.counts.shared += to_shared;
        r.counts.shared_resident += res_shared;
        st.usage.clean += cleaned;
        if let Some((p, s)) = in_flight {
            return Err(crate::Error::InvalidArgument {
                what: "fork",
                detail: format!("page {p} is in flight ({s:?}); this is a bug"),
            });
        }
        child_poison.fetch_add(poisoned, std::sync::atomic::Ordering::AcqRel);
        let shared = out.len() as u64 - poisoned;
        let c = st.region_mut(child);
        c.pages.extend_sorted(out);
        c.counts.shared += shared;
        // From here the parent's writes fault and break the sharing.
        let map = st.region(parent).map.clone();
        self.uffd.writeprotect(&map, 0, map.len(), true, false)?;
        Ok(())
    }
}

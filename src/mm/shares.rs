//! Copy-on-write shares: one page of data referred to by the same page of several regions of a
//! fork family, until each side writes its own.
//!
//! ```text
//!   parent region  page 7: Resident{share 3}  ─┐   share 3: refs 3, resident 1, slot none
//!   child region   page 7: Shared{share 3}    ─┤   (the data lives in the parent's frame)
//!   grandchild     page 7: Shared{share 3}    ─┘
//! ```
//!
//! A share's data is always somewhere: in its swap slot, or in the frame of at least one resident
//! page that refers to it (`resident` counts those, an evicting one included). Only pages with
//! the same index in regions of one family can refer to the same share, so the referring pages
//! are found by looking at that index in each region of the family.

/// One shared page of data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Share {
    /// Entries that refer to it, in any state.
    pub(crate) refs: u32,
    /// Referring entries that hold a frame (resident, or evicting until the write completes).
    pub(crate) resident: u32,
    /// The swap slot holding the data, if it was written out.
    pub(crate) slot: Option<u32>,
    /// The fork family of the referring regions.
    pub(crate) family: u32,
}

/// The shares, by id (a slab with reuse), and the fork families whose regions refer to them.
#[derive(Debug, Default)]
pub(crate) struct Shares {
    v: Vec<Share>,
    free: Vec<u32>,
    live: usize,
    /// Fork families with more than one region: family id → region ids.
    families: super::page::IdMap<u32, Vec<u32>>,
}

impl Shares {
    /// Region `child` joins `parent`'s family `fam` (created with `parent` on its first fork).
    pub(crate) fn join_family(&mut self, fam: u32, parent: u32, child: u32) {
        self.families.entry(fam).or_insert_with(|| vec![parent]).push(child);
    }

    /// Region `rid` is gone from family `fam` (which goes once empty).
    pub(crate) fn leave_family(&mut self, fam: u32, rid: u32) {
        if let Some(rel) = self.families.get_mut(&fam) {
            rel.retain(|&x| x != rid);
            if rel.is_empty() {
                self.families.remove(&fam);
            }
        }
    }

    /// The regions of family `fam` (none for a region never forked).
    pub(crate) fn family(&self, fam: u32) -> &[u32] {
        self.families.get(&fam).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn alloc(&mut self, s: Share) -> u32 {
        self.live += 1;
        if let Some(id) = self.free.pop() {
            self.v[super::idx(u64::from(id))] = s;
            return id;
        }
        self.v.push(s);
        super::n32(self.v.len() - 1)
    }

    pub(crate) fn get(&self, id: u32) -> &Share {
        &self.v[super::idx(u64::from(id))]
    }

    pub(crate) fn get_mut(&mut self, id: u32) -> &mut Share {
        &mut self.v[super::idx(u64::from(id))]
    }

    pub(crate) fn free(&mut self, id: u32) {
        let s = self.get_mut(id);
        s.refs = 0;
        s.resident = 0;
        s.slot = None;
        self.free.push(id);
        self.live -= 1;
    }

    /// Whether evicting resident page `e` needs a write: it is dirty, or it holds the only copy
    /// of a share that has no slot.
    pub(crate) fn must_write(&self, e: super::page::Entry) -> bool {
        e.dirty()
            || e.share().is_some_and(|id| {
                let s = self.get(id);
                s.slot.is_none() && s.resident <= 1
            })
    }

    /// Shares in use.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Every live share with its id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Share)> + '_ {
        self.v.iter().enumerate().filter(|(_, s)| s.refs > 0).map(|(i, s)| (super::n32(i), s))
    }

    /// Bytes of heap held, for the metadata figures.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.v.capacity() * std::mem::size_of::<Share>() + self.free.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_reuses_ids() {
        let mut s = Shares::default();
        let a = s.alloc(Share { refs: 2, resident: 1, slot: None, family: 1 });
        let b = s.alloc(Share { refs: 2, resident: 0, slot: Some(9), family: 1 });
        assert_eq!((a, b, s.len()), (0, 1, 2));
        s.free(a);
        assert_eq!(s.iter().map(|(i, _)| i).collect::<Vec<_>>(), vec![1]);
        let c = s.alloc(Share { refs: 3, resident: 0, slot: Some(1), family: 2 });
        assert_eq!(c, a);
        assert_eq!(s.get(c).refs, 3);
        assert_eq!(s.len(), 2);
    }
}

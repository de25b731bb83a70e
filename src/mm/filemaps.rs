//! Which regions are `Shared` file maps: their dirty pages are written back to their files, not
//! to swap, unless the file refused a write ("stuck": its dirty pages then stay in memory).

use super::page::IdSet;

/// The `Shared` file maps among the regions.
#[derive(Default)]
pub(crate) struct FileMaps {
    shared: IdSet<u32>,
    /// Of those, the ones whose file refused a write.
    stuck: IdSet<u32>,
}

impl FileMaps {
    /// Region `rid` is a `Shared` file map.
    pub(crate) fn add(&mut self, rid: u32) {
        self.shared.insert(rid);
    }

    /// Region `rid` is gone.
    pub(crate) fn remove(&mut self, rid: u32) {
        self.shared.remove(&rid);
        self.stuck.remove(&rid);
    }

    /// Region `rid`'s file refused a write: its dirty pages stay in memory from now on (nothing
    /// to remember when the region is gone already).
    pub(crate) fn stick(&mut self, rid: u32) {
        if self.shared.contains(&rid) {
            self.stuck.insert(rid);
        }
    }

    /// Whether dirty pages of region `rid` belong to a file rather than to swap.
    pub(crate) fn is_shared(&self, rid: u32) -> bool {
        self.shared.contains(&rid)
    }

    /// Whether a dirty page of region `rid` can be written back to its file now.
    pub(crate) fn writable(&self, rid: u32) -> bool {
        self.shared.contains(&rid) && !self.stuck.contains(&rid)
    }

    /// Whether any region is a `Shared` file map.
    pub(crate) fn any(&self) -> bool {
        !self.shared.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stuck_map_stays_shared_but_takes_no_write() {
        let mut f = FileMaps::default();
        assert!(!f.any());
        f.add(3);
        assert!(f.any() && f.is_shared(3) && f.writable(3) && !f.is_shared(4));
        f.stick(3);
        assert!(f.is_shared(3) && !f.writable(3));
        f.remove(3);
        assert!(!f.any() && !f.writable(3));
        f.add(3);
        assert!(f.writable(3), "a new region with the id of a gone one is not stuck");
    }
}

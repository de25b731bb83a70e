//! What a fault needs, decided from the page's entry and the access alone: the one table both
//! fault modes dispatch on. Pure, so it is tested here without a kernel.
//!
//! | page (entry)                            | write-protect fault or write | otherwise  |
//! |-----------------------------------------|------------------------------|------------|
//! | emergency copy (`reserve`)              | `Reserved` (wait it out)     | `Retry`    |
//! | resident, clean                         | `MakeWritable`               | `Retry`    |
//! | resident, dirty                         | `Retry`                      | `Retry`    |
//! | paging in or evicting                   | `InFlight`                   | `InFlight` |
//! | poisoned                                | `Dead`                       | `Dead`     |
//! | never touched, swapped or a COW reference | `PageIn` (a handler's stale write-protect fault: `Retry`) | `PageIn` |
//!
//! A handler thread knows whether the kernel reported a missing page or a write-protect fault;
//! the in-thread SIGBUS does not, and a write stands for both (a write to a missing page is
//! served by paging it in, dirty).

use crate::mm::page::{Entry, PageState};

/// How the kernel reported the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Access {
    /// The access was a write.
    pub(crate) write: bool,
    /// From a userfaultfd event: whether it was a write-protect fault (`Some(true)`) or a
    /// missing page (`Some(false)`). `None` in-thread: SIGBUS does not say.
    pub(crate) wp: Option<bool>,
}

/// What a fault on a page of a live region needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Missing (never touched, swapped, or a copy-on-write reference): page it in.
    PageIn,
    /// A write to a clean resident page: make it dirty (and private, if it was shared).
    MakeWritable,
    /// Lost: the access fails (SIGBUS for raw access, an error for a safe accessor).
    Dead,
    /// On its way in or out: wait until it settles, then retry.
    InFlight,
    /// A write to a read-only emergency copy: wait until the copy is gone, then retry.
    Reserved,
    /// Nothing to do here (already resident, or a stale event): retry the access.
    Retry,
}

/// The table above.
pub(crate) fn need(e: Entry, a: Access) -> Need {
    let writes = a.wp.unwrap_or(a.write);
    if e.reserve() {
        return if writes { Need::Reserved } else { Need::Retry };
    }
    match e.state() {
        PageState::Resident if writes && !e.dirty() => Need::MakeWritable,
        PageState::Resident => Need::Retry,
        PageState::PageIn | PageState::Evicting => Need::InFlight,
        PageState::Poisoned => Need::Dead,
        // A write-protect event for a page evicted since it was queued.
        PageState::Unpopulated | PageState::Swapped | PageState::Shared if a.wp == Some(true) => Need::Retry,
        PageState::Unpopulated | PageState::Swapped | PageState::Shared => Need::PageIn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PageState as S;

    fn entry(state: PageState, dirty: bool, reserve: bool) -> Entry {
        let mut e = Entry::default();
        e.set_state(state);
        e.set_dirty(dirty);
        e.set_reserve(reserve);
        e
    }

    const READ: Access = Access { write: false, wp: None };
    const WRITE: Access = Access { write: true, wp: None };
    const MISSING_READ: Access = Access { write: false, wp: Some(false) };
    const MISSING_WRITE: Access = Access { write: true, wp: Some(false) };
    const WP: Access = Access { write: true, wp: Some(true) };

    /// Every page state × {read, write} in-thread and {missing read, missing write, WP} from a
    /// handler thread.
    #[test]
    fn the_dispatch_table() {
        use Need::*;
        #[rustfmt::skip]
        let table: &[(PageState, bool, [Need; 5])] = &[
            //  state          dirty   read      write         missing read  missing write  wp
            (S::Unpopulated,  false, [PageIn,   PageIn,       PageIn,       PageIn,        Retry]),
            (S::Swapped,      false, [PageIn,   PageIn,       PageIn,       PageIn,        Retry]),
            (S::Shared,       false, [PageIn,   PageIn,       PageIn,       PageIn,        Retry]),
            (S::Resident,     false, [Retry,    MakeWritable, Retry,        Retry,         MakeWritable]),
            (S::Resident,     true,  [Retry,    Retry,        Retry,        Retry,         Retry]),
            (S::PageIn,       false, [InFlight, InFlight,     InFlight,     InFlight,      InFlight]),
            (S::Evicting,     true,  [InFlight, InFlight,     InFlight,     InFlight,      InFlight]),
            (S::Poisoned,     false, [Dead,     Dead,         Dead,         Dead,          Dead]),
        ];
        let accesses = [READ, WRITE, MISSING_READ, MISSING_WRITE, WP];
        for &(state, dirty, want) in table {
            for (a, want) in accesses.iter().zip(want) {
                assert_eq!(need(entry(state, dirty, false), *a), want, "{state:?} dirty={dirty} {a:?}");
            }
        }
    }

    #[test]
    fn an_emergency_copy_is_waited_out_by_writes_only() {
        for state in [S::Unpopulated, S::Swapped, S::Shared] {
            let e = entry(state, false, true);
            assert_eq!(need(e, WRITE), Need::Reserved);
            assert_eq!(need(e, WP), Need::Reserved);
            assert_eq!(need(e, READ), Need::Retry);
            assert_eq!(need(e, MISSING_READ), Need::Retry);
            // A missing-page write event on a page that has its copy mapped is stale.
            assert_eq!(need(e, MISSING_WRITE), Need::Retry);
        }
    }
}

//! Swap I/O failures, injected: a failed write keeps the page in memory and nothing is lost; a
//! failed read or a corrupted slot loses only that page, which reads as `Error::Corrupted` (never
//! as wrong data) and is reported.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use pagewarden::{Error, Event, SwapFaults};

/// Eight pages written and paged out in one run: page `i` lands in slot `i`.
fn eight_swapped(r: &pagewarden::Region) {
    for i in 0..8 {
        r.fill(i * PAGE, PAGE, 0x40 + i as u8).unwrap();
    }
    assert_eq!(r.page_out(0, 8 * PAGE).unwrap(), 8);
}

fn check_page(r: &pagewarden::Region, i: usize) -> Result<(), Error> {
    let mut b = vec![0u8; PAGE];
    r.read(i * PAGE, &mut b)?;
    assert!(b.iter().all(|&x| x == 0x40 + i as u8), "page {i} came back with wrong data");
    Ok(())
}

#[test]
fn failed_swap_writes_lose_nothing() {
    for path in PATHS {
        let faults = SwapFaults { fail_writes_after: Some(1), write_errno: Some(libc::ENOSPC), ..Default::default() };
        let Some(rt) = runtime_with(24, 256, path, |b| b.swap_faults(faults).max_readahead(1)) else { continue };
        let keep = rt.arena("keep").oom_score_adj(-1000).create().unwrap();
        let k = keep.reserve(8 * PAGE).unwrap();
        eight_swapped(&k); // the one write that succeeds
        // From now on every swap write fails: dirty pages must stay in memory, intact.
        let a = rt.arena("writer").create().unwrap();
        let w = a.reserve(16 * PAGE).unwrap();
        for i in 0..16 {
            w.fill(i * PAGE, PAGE, i as u8).unwrap();
        }
        assert_eq!(w.page_out(0, 16 * PAGE).unwrap(), 0, "{path:?}: a page whose write failed was dropped");
        for i in 0..16 {
            let mut b = vec![0u8; PAGE];
            w.read(i * PAGE, &mut b).unwrap();
            assert!(b.iter().all(|&x| x == i as u8), "{path:?}: page {i} lost its data after a failed write");
        }
        for i in 0..8 {
            check_page(&k, i).unwrap();
        }
        let evs: Vec<Event> = rt.events().try_iter().collect();
        assert!(evs.iter().any(|e| matches!(e, Event::SwapFailed { .. })), "{evs:?}");
        rt.debug_check_invariants().unwrap();
    }
}

#[test]
fn a_failed_swap_read_loses_only_that_page() {
    for path in PATHS {
        for mode in MODES {
            let faults = SwapFaults { fail_read_slots: vec![3], ..Default::default() };
            let Some(rt) = runtime_with(16, 64, path, |b| b.swap_faults(faults).max_readahead(8).fault_mode(mode))
            else {
                continue;
            };
            let a = rt.arena("a").create().unwrap();
            let r = a.reserve(8 * PAGE).unwrap();
            eight_swapped(&r);
            for i in 0..8 {
                match check_page(&r, i) {
                    Err(Error::Corrupted { offset }) if i == 3 => assert_eq!(offset, 3 * PAGE),
                    Ok(()) if i != 3 => {}
                    other => panic!("{path:?} {mode:?} page {i}: {other:?}"),
                }
            }
            // It stays lost (no made-up data later either), and it was reported.
            assert!(matches!(check_page(&r, 3), Err(Error::Corrupted { .. })));
            let evs: Vec<Event> = rt.events().try_iter().collect();
            assert!(evs.iter().any(|e| matches!(e, Event::PageLost { offset, .. } if *offset == 3 * PAGE)), "{evs:?}");
            assert_eq!(rt.stats().totals.lost_pages, 1);
            rt.debug_check_invariants().unwrap();
        }
    }
}

#[test]
fn a_corrupted_slot_is_caught_by_its_checksum() {
    for path in PATHS {
        let faults = SwapFaults { flip_bit_slots: vec![5], ..Default::default() };
        let Some(rt) = runtime_with(16, 64, path, |b| b.swap_faults(faults).max_readahead(8)) else { continue };
        let a = rt.arena("a").create().unwrap();
        let r = a.reserve(8 * PAGE).unwrap();
        eight_swapped(&r);
        for i in 0..8 {
            match check_page(&r, i) {
                Err(Error::Corrupted { offset }) if i == 5 => assert_eq!(offset, 5 * PAGE),
                Ok(()) if i != 5 => {}
                other => panic!("{path:?} page {i}: {other:?}"),
            }
        }
        assert!(rt.events().try_iter().any(|e| matches!(e, Event::PageLost { .. })));
    }
}

#[test]
fn slow_swap_is_only_slow() {
    let faults = SwapFaults { delay: Some(std::time::Duration::from_millis(2)), ..Default::default() };
    let Some(rt) = runtime_with(16, 256, pagewarden::EvictionPath::Auto, |b| b.swap_faults(faults)) else { return };
    let a = rt.arena("a").create().unwrap();
    let r = a.reserve(48 * PAGE).unwrap();
    for i in 0..48 {
        r.fill(i * PAGE, PAGE, i as u8).unwrap();
    }
    for i in 0..48 {
        let mut b = vec![0u8; PAGE];
        r.read(i * PAGE, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == i as u8));
    }
}

#[test]
fn a_panic_in_the_fault_path_fails_the_runtime_cleanly() {
    for mode in MODES {
        let faults = SwapFaults { panic_on_read: true, ..Default::default() };
        let Some(rt) = runtime_with(16, 64, pagewarden::EvictionPath::Auto, |b| b.swap_faults(faults).fault_mode(mode))
        else {
            continue;
        };
        let a = rt.arena("a").create().unwrap();
        let r = a.reserve(8 * PAGE).unwrap();
        eight_swapped(&r);
        // The swap-in panics inside the runtime: the access fails, it does not hang or crash.
        let e = check_page(&r, 0).unwrap_err();
        assert!(matches!(e, Error::RuntimeFailed { ref detail } if detail.contains("injected panic")), "{mode:?}: {e}");
        // Every later call says so too.
        assert!(matches!(r.write(PAGE, &[1]), Err(Error::RuntimeFailed { .. })));
        assert!(matches!(a.reserve(PAGE), Err(Error::RuntimeFailed { .. })));
        assert!(matches!(rt.arena("b").create(), Err(Error::RuntimeFailed { .. })));
        // And it shuts down.
        drop(r);
        drop(a);
        drop(rt);
    }
}

#[test]
fn short_transfers_are_resumed() {
    for path in PATHS {
        let faults = SwapFaults { short_io: true, ..Default::default() };
        let Some(rt) = runtime_with(16, 256, path, |b| b.swap_faults(faults).max_readahead(8)) else { continue };
        let a = rt.arena("a").create().unwrap();
        let r = a.reserve(64 * PAGE).unwrap();
        for i in 0..64 {
            r.fill(i * PAGE, PAGE, i as u8).unwrap();
        }
        r.page_out(0, 64 * PAGE).unwrap();
        for i in 0..64 {
            let mut b = vec![0u8; PAGE];
            r.read(i * PAGE, &mut b).unwrap();
            assert!(b.iter().all(|&x| x == i as u8), "{path:?}: page {i}");
        }
        let st = rt.stats();
        assert!(st.totals.writebacks >= 48 && st.totals.readahead > 0, "{st}");
    }
}

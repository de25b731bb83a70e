//! Copy-on-write forks: what each side reads, what a fork and its copies cost in frames, and
//! that either side can die without harming the other.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use pagewarden::{Deficit, Error, EvictionPath, FaultMode, Overcommit};

fn page_of(tag: u8, i: usize) -> Vec<u8> {
    (0..PAGE).map(|b| tag ^ (i as u8).wrapping_mul(31) ^ (b as u8)).collect()
}

fn read_page(r: &pagewarden::Region, i: usize) -> Vec<u8> {
    let mut b = vec![0u8; PAGE];
    r.read(i * PAGE, &mut b).unwrap();
    b
}

#[test]
fn fork_charges_nothing_and_each_write_charges_one_frame() {
    for path in PATHS {
        for mode in MODES {
            let Some(rt) = runtime_with(256, 256, path, |b| b.fault_mode(mode)) else { continue };
            let parent = rt.arena("parent").create().unwrap();
            let r = parent.reserve(64 * PAGE).unwrap();
            for i in 0..64 {
                r.write(i * PAGE, &page_of(1, i)).unwrap();
            }
            let before = rt.stats().frames_in_use;
            let measured = rt.resident_frames_measured().unwrap();
            let fork = parent.fork("child").unwrap();
            let c = fork.region(&r).unwrap();
            let st = rt.stats();
            assert_eq!(st.frames_in_use, before, "{path:?}/{mode:?}: a fork charges no frame");
            assert_eq!(rt.resident_frames_measured().unwrap(), measured, "{path:?}/{mode:?}: and holds none");
            assert_eq!(fork.arena().stats().shared_pages, 64);
            assert_eq!(parent.stats().shared_pages, 64);
            // k writes in the child: k frames, k copies.
            let k = 10;
            for i in 0..k {
                c.write(i * PAGE + 7, &[0xEE]).unwrap();
            }
            let st = rt.stats();
            assert_eq!(st.frames_in_use, before + k as u64, "{path:?}/{mode:?}: each child write copies one page");
            assert_eq!(fork.arena().stats().counters.cow_copies, k as u64);
            // The parent never sees the child's writes; the child sees the parent's data around them.
            for i in 0..64 {
                assert_eq!(read_page(&r, i), page_of(1, i), "{path:?}/{mode:?}: parent page {i}");
                let mut want = page_of(1, i);
                if i < k {
                    want[7] = 0xEE;
                }
                assert_eq!(read_page(c, i), want, "{path:?}/{mode:?}: child page {i}");
            }
            rt.debug_check_invariants().unwrap();
        }
    }
}

#[test]
fn parent_writes_after_the_fork_stay_private_raw_and_safe() {
    for path in PATHS {
        for mode in MODES {
            let Some(rt) = runtime_with(128, 256, path, |b| b.fault_mode(mode)) else { continue };
            let parent = rt.arena("parent").create().unwrap();
            let r = parent.reserve(16 * PAGE).unwrap();
            r.fill(0, 16 * PAGE, 0x11).unwrap();
            let fork = parent.fork("snap").unwrap();
            let c = fork.region(&r).unwrap();
            // Raw writes in the parent: write-protect faults that break the sharing.
            for i in 0..8 {
                // SAFETY: inside the region, which outlives the access; no other thread touches it.
                unsafe { r.as_ptr().add(i * PAGE + 3).write_volatile(0x22) };
            }
            // Safe writes in the parent, the rest of the pages.
            r.fill(8 * PAGE, 8 * PAGE, 0x33).unwrap();
            let mut b = vec![0u8; 16 * PAGE];
            c.read(0, &mut b).unwrap();
            assert!(b.iter().all(|&x| x == 0x11), "{path:?}/{mode:?}: the child must keep the fork's moment");
            r.read(0, &mut b).unwrap();
            for i in 0..8 {
                assert_eq!(b[i * PAGE + 3], 0x22);
            }
            assert!(b[8 * PAGE..].iter().all(|&x| x == 0x33));
            assert_eq!(parent.stats().counters.cow_copies, 16, "{path:?}/{mode:?}");
            assert_eq!(parent.stats().shared_pages, 0);
            assert_eq!(fork.arena().stats().shared_pages, 0, "a share with one reference left is private again");
            rt.debug_check_invariants().unwrap();
        }
    }
}

#[test]
fn forks_of_forks_and_swapped_pages() {
    for path in PATHS {
        // A budget smaller than the data: the shared pages live in swap slots too.
        let Some(rt) = runtime_with(16, 512, path, |b| b.max_readahead(4)) else { continue };
        let a = rt.arena("a").create().unwrap();
        let ra = a.reserve(48 * PAGE).unwrap();
        for i in 0..48 {
            ra.write(i * PAGE, &page_of(0xA0, i)).unwrap();
        }
        let mut fb = a.fork("b").unwrap();
        let rb = fb.take_region(&ra).unwrap();
        for i in (0..48).step_by(3) {
            rb.write(i * PAGE, &page_of(0xB0, i)).unwrap();
        }
        let mut fc = fb.arena().fork("c").unwrap();
        let rc = fc.take_region(&rb).unwrap();
        for i in (0..48).step_by(4) {
            rc.write(i * PAGE, &page_of(0xC0, i)).unwrap();
        }
        for i in (1..48).step_by(5) {
            ra.write(i * PAGE, &page_of(0xA1, i)).unwrap();
        }
        rt.reclaim(64);
        let want_a = |i: usize| if i % 5 == 1 { page_of(0xA1, i) } else { page_of(0xA0, i) };
        let want_b = |i: usize| if i % 3 == 0 { page_of(0xB0, i) } else { page_of(0xA0, i) };
        let want_c = |i: usize| if i % 4 == 0 { page_of(0xC0, i) } else { want_b(i) };
        for round in 0..2 {
            for i in 0..48 {
                assert_eq!(read_page(&ra, i), want_a(i), "{path:?} round {round}: a page {i}");
                assert_eq!(read_page(&rb, i), want_b(i), "{path:?} round {round}: b page {i}");
                assert_eq!(read_page(&rc, i), want_c(i), "{path:?} round {round}: c page {i}");
            }
            rt.debug_check_invariants().unwrap();
        }
        assert!(rt.stats().totals.swap_ins > 0, "{path:?}: shared pages must have come back from swap");
        // Kill the middle generation: both others keep every byte.
        fb.arena().kill().unwrap();
        drop(rb);
        for i in 0..48 {
            assert_eq!(read_page(&ra, i), want_a(i), "{path:?}: a page {i} after b died");
            assert_eq!(read_page(&rc, i), want_c(i), "{path:?}: c page {i} after b died");
        }
        rt.debug_check_invariants().unwrap();
        // Release the original: the grandchild still has its pages.
        drop(ra);
        for i in 0..48 {
            assert_eq!(read_page(&rc, i), want_c(i), "{path:?}: c page {i} after a was released");
        }
        rt.debug_check_invariants().unwrap();
        assert_eq!(fc.arena().stats().shared_pages, 0, "{path:?}: no relatives left, nothing shared");
    }
}

#[test]
fn killing_the_parent_hands_its_frames_to_the_child() {
    for path in PATHS {
        let Some(rt) = runtime_with(128, 64, path, |b| b) else { continue };
        let parent = rt.arena("parent").create().unwrap();
        let r = parent.reserve(32 * PAGE).unwrap();
        for i in 0..32 {
            r.write(i * PAGE, &page_of(5, i)).unwrap();
        }
        let fork = parent.fork("child").unwrap();
        let before = rt.stats().frames_in_use;
        parent.kill().unwrap();
        // The frames held the only copy: they now belong to the child, nothing was freed or
        // written.
        assert_eq!(rt.stats().frames_in_use, before, "{path:?}");
        assert_eq!(rt.stats().totals.writebacks, 0, "{path:?}");
        let c = fork.region(&r).unwrap();
        for i in 0..32 {
            assert_eq!(read_page(c, i), page_of(5, i), "{path:?}: child page {i}");
        }
        assert!(matches!(r.read(0, &mut [0u8; 1]), Err(Error::Killed { .. })));
        assert!(matches!(parent.fork("again"), Err(Error::Killed { .. })), "a killed arena cannot fork");
        rt.debug_check_invariants().unwrap();
    }
}

#[test]
fn strict_overcommit_charges_the_fork() {
    let Some(rt) = runtime_with(64, 64, EvictionPath::Auto, |b| b.overcommit(Overcommit::Strict { ratio: 1.0 })) else {
        return;
    };
    let parent = rt.arena("big").create().unwrap();
    // 100 of the 128 pages the commit limit allows.
    let _r = parent.reserve(100 * PAGE).unwrap();
    match parent.fork("child") {
        Err(Error::CommitLimit { requested, .. }) => assert_eq!(requested, (100 * PAGE) as u64),
        other => panic!("a fork beyond the commit limit must be refused, got {other:?}"),
    }
    // The refused fork left nothing behind.
    assert_eq!(rt.stats().committed_bytes, (100 * PAGE) as u64);
    assert_eq!(rt.stats().arenas.len(), 1);
    // Under the default heuristic the same fork succeeds.
    let Some(rt) = runtime_with(64, 64, EvictionPath::Auto, |b| b) else { return };
    let parent = rt.arena("big").create().unwrap();
    let r = parent.reserve(100 * PAGE).unwrap();
    r.fill(0, 100 * PAGE, 9).unwrap();
    let fork = parent.fork("child").unwrap();
    assert_eq!(fork.region(&r).unwrap().len(), 100 * PAGE);
}

#[test]
fn shared_pages_are_not_unique_to_the_oom_killer() {
    let Some(rt) = runtime_with(256, 64, EvictionPath::Auto, |b| b.oom_dry_run(true)) else { return };
    let parent = rt.arena("parent").create().unwrap();
    let r = parent.reserve(100 * PAGE).unwrap();
    r.fill(0, 100 * PAGE, 1).unwrap();
    let fork = parent.fork("child").unwrap();
    let c = fork.region(&r).unwrap();
    // The child reads everything (100 clean copies) and writes 10 pages of its own.
    let mut b = vec![0u8; 100 * PAGE];
    c.read(0, &mut b).unwrap();
    c.fill(0, 10 * PAGE, 2).unwrap();
    let other = rt.arena("other").create().unwrap();
    let o = other.reserve(40 * PAGE).unwrap();
    o.fill(0, 40 * PAGE, 3).unwrap();
    let st = fork.arena().stats();
    assert_eq!(st.resident_pages, 100);
    assert_eq!(st.shared_pages, 90);
    assert_eq!(st.unique_pages, 10, "only the child's own writes are freed by killing it");
    // By resident size the child is the biggest; by what a kill frees, "other" is.
    let report = rt.run_oom_killer(Deficit { frames: 20, slots: 0 });
    let victim = &report.victims[0];
    assert_eq!(victim.name, "other", "{report}");
}

#[test]
fn in_thread_mode_forks_too() {
    let Some(rt) = runtime_with(12, 128, EvictionPath::Auto, |b| b.fault_mode(FaultMode::InThread).max_readahead(4))
    else {
        return;
    };
    let parent = rt.arena("p").create().unwrap();
    let r = parent.reserve(40 * PAGE).unwrap();
    for i in 0..40 {
        r.write(i * PAGE, &page_of(7, i)).unwrap();
    }
    let fork = parent.fork("c").unwrap();
    let c = fork.region(&r).unwrap();
    for i in 0..40 {
        // SAFETY: inside the region, which outlives the access; no other thread touches it.
        unsafe { c.as_ptr().add(i * PAGE).write_volatile(0xFF) };
    }
    for i in 0..40 {
        assert_eq!(read_page(&r, i), page_of(7, i), "parent page {i}");
        let mut want = page_of(7, i);
        want[0] = 0xFF;
        assert_eq!(read_page(c, i), want, "child page {i}");
    }
    rt.debug_check_invariants().unwrap();
}

/// A share's last copy and a private dirty neighbour evicted in one batch: the share leaves
/// under the lock, the neighbour with the rest. Both must be written out (no swap failure, no
/// page left behind) and read back intact on both sides.
#[test]
fn a_shared_last_copy_and_its_dirty_neighbour_leave_together() {
    for path in PATHS {
        for mode in MODES {
            let Some(rt) = runtime_with(64, 256, path, |b| b.fault_mode(mode)) else { continue };
            let events = rt.events();
            let parent = rt.arena("parent").create().unwrap();
            let r = parent.reserve(8 * PAGE).unwrap();
            for i in 0..8 {
                r.write(i * PAGE, &page_of(3, i)).unwrap();
            }
            let fork = parent.fork("child").unwrap();
            let c = fork.region(&r).unwrap();
            // Odd pages become the parent's own again (dirty, private); even pages stay shares
            // whose only copy is the parent's frame.
            for i in (1..8).step_by(2) {
                r.write(i * PAGE, &page_of(4, i)).unwrap();
            }
            let before = parent.stats().counters.writebacks;
            r.page_out(0, 8 * PAGE).unwrap();
            assert!(events.try_recv().is_err(), "{path:?}/{mode:?}: no swap failure, no kill");
            assert_eq!(parent.stats().resident_pages, 0, "{path:?}/{mode:?}: every page left");
            assert_eq!(parent.stats().counters.writebacks - before, 8, "{path:?}/{mode:?}: and was written");
            for i in 0..8 {
                let want = if i % 2 == 1 { page_of(4, i) } else { page_of(3, i) };
                assert_eq!(read_page(&r, i), want, "{path:?}/{mode:?}: parent page {i}");
                assert_eq!(read_page(c, i), page_of(3, i), "{path:?}/{mode:?}: child page {i}");
            }
            rt.debug_check_invariants().unwrap();
        }
    }
}

/// The seed's point about copy-on-write: a child that writes k pages is charged k frames, also
/// with the default readahead, when the shared copies are in swap (a sequential stream of faults
/// must not copy the shared neighbours it never asked for).
#[test]
fn a_child_writing_k_shared_pages_from_swap_is_charged_k_frames_with_default_readahead() {
    const PAGES: usize = 512;
    const K: usize = 256;
    for path in PATHS {
        for mode in MODES {
            for raw in [false, true] {
                let Some(rt) = runtime_with(1024, 2048, path, |b| b.fault_mode(mode).watermarks(16, 32)) else {
                    continue;
                };
                let what = format!("{path:?}/{mode:?}/{}", if raw { "raw writes" } else { "safe writes" });
                let parent = rt.arena("parent").create().unwrap();
                let r = parent.reserve(PAGES * PAGE).unwrap();
                for i in 0..PAGES {
                    r.write(i * PAGE, &page_of(3, i)).unwrap();
                }
                let fork = parent.fork("child").unwrap();
                let c = fork.region(&r).unwrap();
                // Every share's only copy goes to swap.
                r.page_out(0, PAGES * PAGE).unwrap();
                assert_eq!(parent.stats().resident_pages, 0, "{what}: parent paged out");
                let before = rt.stats().frames_in_use;
                for i in 0..K {
                    if raw {
                        // SAFETY: inside the child's live region; only this thread touches it.
                        unsafe { c.as_ptr().add(i * PAGE + 9).write_volatile(0xAB) };
                    } else {
                        c.write(i * PAGE + 9, &[0xAB]).unwrap();
                    }
                }
                let st = fork.arena().stats();
                assert_eq!(st.counters.cow_copies, K as u64, "{what}: one private copy per written page");
                assert_eq!(st.resident_pages, K as u64, "{what}: the child holds the pages it wrote, no more");
                assert_eq!(rt.stats().frames_in_use - before, K as u64, "{what}: K writes charge K frames");
                for i in (0..PAGES).step_by(37) {
                    let mut want = page_of(3, i);
                    if i < K {
                        want[9] = 0xAB;
                    }
                    assert_eq!(read_page(c, i), want, "{what}: child page {i}");
                    assert_eq!(read_page(&r, i), page_of(3, i), "{what}: parent page {i}");
                }
                rt.debug_check_invariants().unwrap();
            }
        }
    }
}

//! Paging behaviours on both eviction paths: overcommit, release, clean drops without I/O,
//! readahead, and the swap I/O mode.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;

#[test]
fn write_evict_read_back() {
    for path in PATHS {
        let Some(rt) = runtime(16, 256, path) else {
            continue;
        };
        let a = rt.arena("a").create().unwrap();
        let r = a.reserve(64 * PAGE).unwrap();
        for i in 0..64usize {
            r.write(i * PAGE + 7, &[(i as u8) ^ 0x5a; 100]).unwrap();
        }
        for i in 0..64usize {
            let mut b = [0u8; 100];
            r.read(i * PAGE + 7, &mut b).unwrap();
            assert_eq!(b, [(i as u8) ^ 0x5a; 100], "page {i} path {path:?}");
        }
        let st = rt.stats();
        assert!(st.totals.writebacks > 0 && st.totals.swap_ins > 0, "{st}");
        assert!(st.swap_direct, "swap I/O should bypass the page cache here (O_DIRECT)");
    }
}

#[test]
fn overcommit_64_gib_on_a_small_budget() {
    let Some(rt) = runtime(32, 256, pagewarden::EvictionPath::Auto) else {
        return;
    };
    let a = rt.arena("big").create().unwrap();
    let r = a.reserve(64 << 30).unwrap();
    assert_eq!(r.len(), 64 << 30);
    // Touch pages spread over the whole range.
    for i in 0..100usize {
        let off = i * ((64usize << 30) / 100) / PAGE * PAGE;
        r.write(off, &(i as u64).to_le_bytes()).unwrap();
    }
    for i in 0..100usize {
        let off = i * ((64usize << 30) / 100) / PAGE * PAGE;
        let mut b = [0u8; 8];
        r.read(off, &mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), i as u64);
    }
    assert!(rt.stats().frames_in_use <= 32);
}

#[test]
fn release_frees_frames_and_slots_at_once() {
    for path in PATHS {
        let Some(rt) = runtime(16, 256, path) else {
            continue;
        };
        let a = rt.arena("a").create().unwrap();
        let keep = a.reserve(4 * PAGE).unwrap();
        keep.fill(0, 4 * PAGE, 9).unwrap();
        let r = a.reserve(100 * PAGE).unwrap();
        r.fill(0, 100 * PAGE, 1).unwrap();
        let before = rt.stats();
        assert!(before.swap_used >= 80, "{before}");
        drop(r);
        let after = rt.stats();
        assert!(after.frames_in_use <= 4, "{path:?}: {} frames still in use after release", after.frames_in_use);
        assert!(after.swap_used <= 4, "{path:?}: {} slots still in use after release", after.swap_used);
        let mut b = vec![0u8; 4 * PAGE];
        keep.read(0, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == 9));
    }
}

#[test]
fn clean_pages_are_dropped_without_io() {
    for path in PATHS {
        let Some(rt) = runtime_with(16, 256, path, |b| b.max_readahead(1)) else {
            continue;
        };
        let a = rt.arena("a").create().unwrap();
        let r = a.reserve(8 * PAGE).unwrap();
        for i in 0..8 {
            r.write(i * PAGE, &[i as u8 + 1; 16]).unwrap();
        }
        r.page_out(0, 8 * PAGE).unwrap();
        let written = rt.stats().totals.writebacks;
        assert_eq!(written, 8, "{path:?}");
        // Read them back (clean, their swap copy still valid), evict again: no new writes.
        for i in 0..8 {
            let mut b = [0u8; 16];
            r.read(i * PAGE, &mut b).unwrap();
            assert_eq!(b, [i as u8 + 1; 16]);
        }
        // A raw write after the swap-in makes that page dirty (a write-protect fault says so); a
        // safe write does too (it marks the page dirty before copying).
        // SAFETY: inside the region, which outlives the access.
        unsafe { r.as_ptr().add(3 * PAGE).write_volatile(0xEE) };
        assert_eq!(rt.stats().totals.wp_faults, 1, "{path:?}");
        r.write(5 * PAGE, &[0xEF; 4]).unwrap();
        assert_eq!(r.page_out(0, 8 * PAGE).unwrap(), 8);
        let st = rt.stats();
        assert_eq!(st.totals.writebacks, written + 2, "{path:?}: only the rewritten pages may be written: {st}");
        assert!(st.totals.clean_drops >= 6, "{path:?}: {st}");
        let mut b = [0u8; 4];
        r.read(3 * PAGE, &mut b).unwrap();
        assert_eq!(b, [0xEE, 4, 4, 4]);
        r.read(5 * PAGE, &mut b).unwrap();
        assert_eq!(b, [0xEF; 4]);
        // Never-written pages read as zero and are dropped as zero, with no slot.
        let z = a.reserve(4 * PAGE).unwrap();
        let mut b = [1u8; 64];
        z.read(2 * PAGE, &mut b).unwrap();
        assert_eq!(b, [0u8; 64]);
        let used = rt.stats().swap_used;
        z.page_out(0, 4 * PAGE).unwrap();
        assert_eq!(rt.stats().swap_used, used, "a zero page took a swap slot");
    }
}

#[test]
fn sequential_faults_grow_the_readahead_window() {
    let Some(rt) = runtime_with(512, 1024, pagewarden::EvictionPath::Auto, |b| b.max_readahead(32)) else {
        return;
    };
    let a = rt.arena("seq").create().unwrap();
    let r = a.reserve(400 * PAGE).unwrap();
    for p in 0..400 {
        // SAFETY: inside the region, which outlives the loop.
        unsafe { r.as_ptr().add(p * PAGE).write_volatile(1) };
    }
    let st = rt.stats();
    assert!(st.totals.faults() < 40, "400 sequential pages took {} faults", st.totals.faults());
    assert!(st.totals.readahead > 300 && st.totals.readahead_hits > 300, "{st}");
    // Random faults shrink the window back to one page.
    let r2 = a.reserve(400 * PAGE).unwrap();
    let before = rt.stats().totals.readahead;
    for i in 0..50usize {
        let p = (i * 97) % 400;
        r2.write(p * PAGE, &[1]).unwrap();
    }
    let st = rt.stats();
    assert!(st.totals.readahead - before < 25, "random faults kept reading ahead: {st}");
}

#[test]
fn buffered_swap_io_works_too() {
    let Some(rt) = runtime_with(16, 256, pagewarden::EvictionPath::Auto, |b| b.swap_io(pagewarden::SwapIo::Buffered))
    else {
        return;
    };
    let a = rt.arena("a").create().unwrap();
    let r = a.reserve(64 * PAGE).unwrap();
    r.fill(0, 64 * PAGE, 3).unwrap();
    let mut b = vec![0u8; 64 * PAGE];
    r.read(0, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 3));
    assert!(!rt.stats().swap_direct);
}

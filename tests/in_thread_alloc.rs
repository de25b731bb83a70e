//! The in-thread fault path allocates nothing: it runs in the faulting thread's SIGBUS handler,
//! where the thread may have been interrupted inside the allocator. This binary counts the
//! allocator calls each thread makes (its own binary: the counting allocator is process-wide)
//! and checks that resolving faults in place makes none, once the runtime is warm: zero-fill
//! reads and writes, the first write to a page read before, swap-ins with readahead, and
//! evictions the faulting thread makes itself when no frame is free.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use pagewarden::FaultMode;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting the calls of each thread.
struct Counting;

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = CALLS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to the system allocator with the caller's arguments; counting
// touches only a const-initialised thread-local and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        count();
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn calls() -> u64 {
    CALLS.with(Cell::get)
}

/// Allocator calls this thread makes while `f` runs.
fn calls_in(f: impl FnOnce()) -> u64 {
    let before = calls();
    f();
    calls() - before
}

#[test]
fn in_thread_faults_allocate_nothing() {
    const PAGES: usize = 64;
    for path in PATHS {
        let Some(rt) = runtime_with(4 * PAGES, 4 * PAGES, path, |b| b.fault_mode(FaultMode::InThread)) else {
            continue;
        };
        let a = rt.arena("a").create().unwrap();
        let r = a.reserve(PAGES * PAGE).unwrap();
        let base = r.as_ptr();
        let at = |p: usize| {
            // SAFETY: `p < PAGES`, inside the region, which outlives every use of the pointer.
            unsafe { base.add(p * PAGE + 8) }
        };
        // SAFETY: `at` points inside the live region; no other thread touches it.
        let read = |p: usize| unsafe { at(p).read_volatile() };
        // SAFETY: as for `read`.
        let write = |p: usize, v: u8| unsafe { at(p).write_volatile(v) };

        // Warm up: the page table's leaf for the region, the replacement queues, swap slots
        // released and reused, per-arena bookkeeping.
        for p in 0..PAGES / 4 {
            write(p, 1);
        }
        assert!(r.page_out(0, PAGES / 4 * PAGE).unwrap() > 0);
        for p in 0..PAGES / 4 {
            assert_eq!(read(p), 1);
            write(p, 2);
        }
        assert!(r.page_out(0, PAGES / 4 * PAGE).unwrap() > 0);
        for p in 0..PAGES / 4 {
            assert_eq!(read(p), 2);
        }

        let zero_reads = calls_in(|| {
            for p in PAGES / 4..PAGES / 2 {
                assert_eq!(read(p), 0);
            }
        });
        let first_writes = calls_in(|| {
            for p in PAGES / 4..PAGES / 2 {
                write(p, 3);
            }
        });
        let zero_writes = calls_in(|| {
            for p in PAGES / 2..PAGES {
                write(p, 4);
            }
        });
        assert!(r.page_out(0, PAGES * PAGE).unwrap() > 0);
        let swap_ins = calls_in(|| {
            for p in (0..PAGES).rev() {
                let want = if p < PAGES / 4 {
                    2
                } else if p < PAGES / 2 {
                    3
                } else {
                    4
                };
                assert_eq!(read(p), want, "page {p}");
            }
        });
        assert!(r.page_out(0, PAGES * PAGE).unwrap() > 0);
        let swap_in_writes = calls_in(|| {
            for p in 0..PAGES {
                write(p, 5);
            }
        });
        let st = rt.stats();
        assert!(st.totals.swap_ins >= 2 * PAGES as u64 / 4, "{st}");
        assert_eq!(
            (zero_reads, first_writes, zero_writes, swap_ins, swap_in_writes),
            (0, 0, 0, 0, 0),
            "{path:?}: allocator calls in the faulting thread (zero-fill reads, first writes, \
             zero-fill writes, swap-ins, swap-in writes)"
        );
        rt.debug_check_invariants().unwrap();
    }
}

/// Under memory pressure (a region 4× the budget, uniform random reads and writes, dirty pages
/// going to swap) the faulting thread allocates nothing either, including when it finds no free
/// frame and evicts pages itself.
#[test]
fn in_thread_faults_under_pressure_allocate_nothing() {
    const BUDGET: usize = 128;
    const PAGES: usize = 4 * BUDGET;
    let seed = seed(0x5eed_a110c);
    for path in PATHS {
        let Some(rt) = runtime_with(BUDGET, 2 * PAGES, path, |b| b.fault_mode(FaultMode::InThread).watermarks(8, 16))
        else {
            continue;
        };
        let a = rt.arena("a").create().unwrap();
        let r = a.reserve(PAGES * PAGE).unwrap();
        let base = r.as_ptr();
        // SAFETY: `p < PAGES`: inside the live region, which no other thread touches.
        let at = |p: usize| unsafe { base.add(p * PAGE + 8) };
        // Warm up: every page written (and most of them swapped out), then read back once.
        for p in 0..PAGES {
            // SAFETY: as for `at`.
            unsafe { at(p).write_volatile(p as u8) };
        }
        for p in 0..PAGES {
            // SAFETY: as for `at`.
            assert_eq!(unsafe { at(p).read_volatile() }, p as u8);
        }
        let mut rng = Rng(seed);
        let before = rt.stats().totals;
        let mut wrong = None;
        let made = calls_in(|| {
            for _ in 0..4 * PAGES {
                let p = rng.below(PAGES as u64) as usize;
                // SAFETY: as for `at`.
                unsafe {
                    if rng.below(2) == 0 {
                        if at(p).read_volatile() != p as u8 {
                            wrong.get_or_insert(p);
                        }
                    } else {
                        at(p).write_volatile(p as u8);
                    }
                }
            }
        });
        let after = rt.stats().totals;
        assert_eq!(wrong, None, "{path:?}, seed {seed}: a page read back wrong");
        let swap_ins = after.swap_ins - before.swap_ins;
        let direct = after.direct_reclaims - before.direct_reclaims;
        assert!(swap_ins > PAGES as u64, "{path:?}: only {swap_ins} swap-ins: no pressure");
        eprintln!("{path:?}: {swap_ins} swap-ins; the faulting thread reclaimed frames itself {direct} times");
        assert_eq!(
            made, 0,
            "{path:?}, seed {seed}: allocator calls in the faulting thread ({swap_ins} swap-ins, {direct} direct reclaims)"
        );
        rt.debug_check_invariants().unwrap();
    }
}

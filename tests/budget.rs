//! The budget holds: resident frames, counted by the kernel (mincore over every region and the
//! frame pool, sampled continuously while threads fault and evict), never exceed the budget.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[test]
fn resident_frames_never_exceed_the_budget() {
    for (path, mode) in [(PATHS[0], MODES[0]), (PATHS[1], MODES[0]), (PATHS[0], MODES[1])] {
        const BUDGET: usize = 64;
        let Some(rt) = runtime_with(BUDGET, 4096, path, |b| b.watermarks(4, 8).fault_mode(mode)) else {
            continue;
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for t in 0..4u64 {
            let arena = rt.arena(&format!("w{t}")).create().unwrap();
            let stop = stop.clone();
            workers.push(std::thread::spawn(move || {
                let pages = 4 * BUDGET;
                let r = arena.reserve(pages * PAGE).unwrap();
                let mut rng = Rng(seed(t + 1));
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && n < 6000 {
                    let p = rng.below(pages as u64) as usize;
                    if rng.below(3) == 0 {
                        r.write(p * PAGE, &[t as u8; 32]).unwrap();
                    } else if rng.below(8) == 0 {
                        // Sequential bursts exercise readahead windows.
                        let len = (16 * PAGE).min(r.len() - p * PAGE);
                        let mut b = vec![0u8; len];
                        r.read(p * PAGE, &mut b).unwrap();
                    } else {
                        let mut b = [0u8; 32];
                        r.read(p * PAGE, &mut b).unwrap();
                        assert!(b == [0; 32] || b == [t as u8; 32]);
                    }
                    n += 1;
                }
            }));
        }
        let mut max_measured = 0;
        let mut samples = 0;
        while !workers.iter().all(|w| w.is_finished()) {
            let m = rt.resident_frames_measured().unwrap();
            max_measured = max_measured.max(m);
            samples += 1;
            let st = rt.stats();
            assert!(st.frames_in_use <= st.budget_frames, "{path:?}: accounting says {} frames", st.frames_in_use);
            assert!(m <= BUDGET, "{path:?}: the kernel counts {m} resident frames, budget {BUDGET}");
            std::thread::sleep(std::time::Duration::from_micros(300));
        }
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        let st = rt.stats();
        let m = rt.resident_frames_measured().unwrap();
        eprintln!("{path:?} {mode:?}: {samples} samples, max {max_measured} frames measured, budget {BUDGET}\n{st}");
        assert!(samples > 20, "too few samples to mean anything");
        assert!(max_measured > BUDGET / 2, "the workload never filled the budget");
        assert!(st.totals.evictions > 0);
        // At rest, the kernel's count and the runtime's agree.
        assert!(
            m as u64 <= st.frames_in_use + st.frames_pooled,
            "measured {m}, accounted {} + {} pooled",
            st.frames_in_use,
            st.frames_pooled
        );
    }
}

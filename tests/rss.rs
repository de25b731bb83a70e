//! Process-wide check (alone in its test binary): the process's resident set grows by at most the
//! frame budget plus a small fixed overhead, however much memory the arenas touch.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Everything besides the budget the process may add: handler bounce buffers (max_readahead
/// pages per handler), page-table metadata, thread stacks, the allocator's arenas.
const OVERHEAD: u64 = 6 << 20;

#[test]
fn process_rss_stays_within_budget_plus_overhead() {
    const BUDGET: usize = 4096; // 16 MiB
    let Some(rt) = runtime_with(BUDGET, 24 * 1024, pagewarden::EvictionPath::Auto, |b| b) else {
        return;
    };
    let base = rss_bytes();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for t in 0..4u64 {
        let arena = rt.arena(&format!("w{t}")).create().unwrap();
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || {
            // 16 MiB per thread: the four together touch 4x the budget.
            let pages = BUDGET;
            let r = arena.reserve(pages * PAGE).unwrap();
            r.fill(0, r.len(), t as u8 + 1).unwrap();
            let mut rng = Rng(seed(t + 11));
            for _ in 0..4000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let p = rng.below(pages as u64) as usize;
                let mut b = [0u8; 8];
                r.read(p * PAGE, &mut b).unwrap();
                assert_eq!(b, [t as u8 + 1; 8]);
                r.write(p * PAGE, &b).unwrap();
            }
        }));
    }
    let mut max = 0;
    while !workers.iter().all(|w| w.is_finished()) {
        max = max.max(rss_bytes().saturating_sub(base));
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let budget = (BUDGET * PAGE) as u64;
    eprintln!(
        "RSS growth max {} KiB; budget {} KiB; allowed overhead {} KiB\n{}",
        max >> 10,
        budget >> 10,
        OVERHEAD >> 10,
        rt.stats()
    );
    assert!(max <= budget + OVERHEAD, "RSS grew by {max} bytes; budget {budget} + overhead {OVERHEAD}");
    assert!(max >= budget / 2, "the workload never filled the budget ({max} bytes)");
}

//! Shutdown (alone in its test binary, since it counts the process's threads): dropping the
//! runtime and its handles in any order never hangs and leaves no runtime thread behind.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn runtime_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.starts_with("pw-fault") || c.starts_with("pw-reclaim"))
        .count()
}

/// Threads name themselves once running: give them a moment.
fn wait_for_threads() {
    let t0 = Instant::now();
    while runtime_threads() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(5), "runtime threads did not start");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn wait_for_no_threads() {
    let t0 = Instant::now();
    while runtime_threads() > 0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "runtime threads still alive");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn drop_orders_never_hang_or_leak_threads() {
    for path in PATHS {
        // Runtime dropped last.
        let Some(rt) = runtime(16, 64, path) else {
            continue;
        };
        wait_for_threads();
        let a = rt.arena("a").create().unwrap();
        let r = a.reserve(64 * PAGE).unwrap();
        r.fill(0, 64 * PAGE, 1).unwrap();
        drop(r);
        drop(a);
        drop(rt);
        wait_for_no_threads();

        // Runtime dropped first: the threads keep serving the region until it goes.
        let rt = runtime(16, 64, path).unwrap();
        let a = rt.arena("b").create().unwrap();
        let r = a.reserve(64 * PAGE).unwrap();
        drop(rt);
        drop(a);
        r.fill(0, 64 * PAGE, 2).unwrap();
        let mut b = vec![0u8; 64 * PAGE];
        r.read(0, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == 2));
        // The threads outlive the runtime handle while regions live.
        wait_for_threads();
        drop(r);
        wait_for_no_threads();

        // Dropped while other threads are mid-fault in other regions of the same runtime.
        let rt = runtime(16, 1024, path).unwrap();
        let workers: Vec<_> = (0..3)
            .map(|i| {
                let a = rt.arena(&format!("w{i}")).create().unwrap();
                std::thread::spawn(move || {
                    let r = a.reserve(128 * PAGE).unwrap();
                    for round in 0..3u8 {
                        r.fill(0, 128 * PAGE, round).unwrap();
                    }
                })
            })
            .collect();
        drop(rt);
        for w in workers {
            w.join().unwrap();
        }
        wait_for_no_threads();
    }
}

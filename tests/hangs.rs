//! Never a hang: a panic in user code the runtime calls (a victim policy) or inside the runtime
//! fails it cleanly, and every thread waiting on it comes back — safe accessors with
//! `Error::RuntimeFailed`, raw access with SIGBUS. Every test runs under a watchdog, so a
//! regression fails instead of hanging.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use pagewarden::{Candidate, Error, EvictionPath, FaultMode, OomContext, SwapFaults, VictimPolicy};
use std::sync::Mutex;

/// A user policy with a bug.
#[derive(Debug)]
struct Exploding;

impl VictimPolicy for Exploding {
    fn name(&self) -> &str {
        "Exploding"
    }
    fn select(&self, _: &[Candidate], _: &OomContext) -> Vec<usize> {
        panic!("the policy exploded")
    }
}

/// Error lines logged by the runtime, kept for the assertions.
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Error
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            LOGGED.lock().unwrap_or_else(|p| p.into_inner()).push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn capture_log() {
    if log::set_logger(&Capture).is_ok() {
        log::set_max_level(log::LevelFilter::Error);
    }
}

fn logged(needle: &str) -> bool {
    LOGGED.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|l| l.contains(needle))
}

fn exploding(mode: FaultMode) -> Option<pagewarden::Runtime> {
    runtime_with(16, 16, EvictionPath::Auto, |b| b.victim_policy(Exploding).fault_mode(mode))
}

#[test]
fn a_panicking_policy_fails_safe_accessors_cleanly() {
    capture_log();
    for mode in MODES {
        let _w = watchdog(&format!("{mode:?}: safe writes meeting a panicking policy"), 30);
        let Some(rt) = exploding(mode) else { return };
        let a = rt.arena("grower").create().unwrap();
        let r = a.reserve(1 << 24).unwrap();
        let mut err = None;
        for p in 0..r.len() / PAGE {
            if let Err(e) = r.write(p * PAGE, &[0xA5; 16]) {
                err = Some((p, e));
                break;
            }
        }
        let (p, e) = err.expect("memory never ran out");
        assert!(p >= 16, "{mode:?}: failed after {p} pages: {e}");
        assert!(
            matches!(e, Error::RuntimeFailed { ref detail } if detail.contains("the policy exploded")),
            "{mode:?}: {e}"
        );
        assert!(logged("the policy exploded"), "{mode:?}: the panic was not logged");
        // Reads (of a page written, and of one never touched) and writes come back too.
        let mut b = [0u8; 16];
        assert!(matches!(r.read(0, &mut b), Err(Error::RuntimeFailed { .. })), "{mode:?}");
        assert!(matches!(r.read(r.len() - PAGE, &mut b), Err(Error::RuntimeFailed { .. })), "{mode:?}");
        assert!(matches!(r.write(r.len() - PAGE, &b), Err(Error::RuntimeFailed { .. })), "{mode:?}");
        drop(r);
        drop(a);
        drop(rt);
    }
}

#[test]
fn a_panicking_policy_met_by_a_safe_read_fails_it_cleanly() {
    for mode in MODES {
        let _w = watchdog(&format!("{mode:?}: a safe read meeting a panicking policy"), 30);
        let Some(rt) = exploding(mode) else { return };
        let a = rt.arena("reader").create().unwrap();
        let r = a.reserve(64 * PAGE).unwrap();
        // Fill memory and swap, then read a page never touched: it needs a frame there is not.
        let mut filled = 0;
        while filled < 64 && r.write(filled * PAGE, &[1; 8]).is_ok() {
            filled += 1;
        }
        let mut b = [0u8; 8];
        let e = r.read(63 * PAGE, &mut b).unwrap_err();
        assert!(matches!(e, Error::RuntimeFailed { ref detail } if detail.contains("exploded")), "{mode:?}: {e}");
    }
}

/// Writes raw pages until memory runs out; with a panicking policy the fault must end in SIGBUS.
fn raw_until_sigbus(mode: FaultMode) {
    let _w = watchdog(&format!("{mode:?}: raw access meeting a panicking policy"), 30);
    let rt = exploding(mode).unwrap();
    let a = rt.arena("raw").create().unwrap();
    let r = a.reserve(1 << 24).unwrap();
    for p in 0..r.len() / PAGE {
        // SAFETY: inside the region, which outlives the access; a failed runtime answers SIGBUS.
        unsafe { r.as_ptr().add(p * PAGE).write_volatile(0x5A) };
        println!("wrote page {p}");
    }
    println!("UNREACHABLE: every page was written");
    std::process::exit(3);
}

#[test]
fn raw_access_policy_panic_handler_threads_child() {
    if is_child("raw_access_policy_panic_handler_threads_child") {
        raw_until_sigbus(FaultMode::HandlerThreads);
    }
}

#[test]
fn raw_access_policy_panic_in_thread_child() {
    if is_child("raw_access_policy_panic_in_thread_child") {
        raw_until_sigbus(FaultMode::InThread);
    }
}

#[test]
fn a_panicking_policy_gives_raw_access_sigbus() {
    if std::env::var_os(CHILD).is_some() || runtime(16, 16, EvictionPath::Auto).is_none() {
        return;
    }
    for child in ["raw_access_policy_panic_handler_threads_child", "raw_access_policy_panic_in_thread_child"] {
        let (status, stdout) = run_child(child);
        assert!(!stdout.contains("UNREACHABLE") && !stdout.contains("WATCHDOG"), "{child}: {stdout}");
        assert!(stdout.contains("wrote page 15"), "{child}: memory ran out too early: {stdout}");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGBUS), "{child}: {status:?} {stdout}");
    }
}

/// Eight pages written and paged out: a swap-in of any of them panics (the injected bug).
fn failing_swap_in(mode: FaultMode) -> Option<(pagewarden::Runtime, pagewarden::Arena, pagewarden::Region)> {
    let faults = SwapFaults { panic_on_read: true, ..Default::default() };
    let rt = runtime_with(16, 64, EvictionPath::Auto, |b| b.swap_faults(faults).fault_mode(mode))?;
    let a = rt.arena("a").create().unwrap();
    let r = a.reserve(16 * PAGE).unwrap();
    for i in 0..8 {
        r.fill(i * PAGE, PAGE, 0x40 + i as u8).unwrap();
    }
    assert_eq!(r.page_out(0, 8 * PAGE).unwrap(), 8);
    Some((rt, a, r))
}

#[test]
fn a_panic_in_a_swap_in_met_by_a_safe_write_returns() {
    for mode in MODES {
        let _w = watchdog(&format!("{mode:?}: a safe write meeting a panicking swap-in"), 30);
        let Some((_rt, _a, r)) = failing_swap_in(mode) else { return };
        let e = r.write(PAGE + 7, &[9; 3]).unwrap_err();
        assert!(matches!(e, Error::RuntimeFailed { ref detail } if detail.contains("injected panic")), "{mode:?}: {e}");
        let e = r.fill(2 * PAGE, PAGE, 1).unwrap_err();
        assert!(matches!(e, Error::RuntimeFailed { .. }), "{mode:?}: {e}");
    }
}

#[test]
fn every_call_comes_back_after_a_failure_with_work_in_flight() {
    for mode in MODES {
        let _w = watchdog(&format!("{mode:?}: calls on a runtime failed during a swap-in"), 30);
        let Some((rt, a, r)) = failing_swap_in(mode) else { return };
        // The swap-in of page 3 panics half-way: its pages stay in flight for ever.
        let mut b = [0u8; 8];
        assert!(matches!(r.read(3 * PAGE, &mut b), Err(Error::RuntimeFailed { .. })), "{mode:?}");
        let failed = |what: &str, res: Result<(), Error>| {
            assert!(matches!(res, Err(Error::RuntimeFailed { .. })), "{mode:?}: {what}: {res:?}");
        };
        failed("write to a swapped page", r.write(4 * PAGE, &[1]));
        failed("write to a fresh page", r.write(12 * PAGE, &[1]));
        failed("fill", r.fill(5 * PAGE, 2 * PAGE, 1));
        failed("prefault", r.prefault(6 * PAGE, 2 * PAGE));
        failed("pin", r.pin(7 * PAGE, 2 * PAGE));
        failed("read", r.read(10 * PAGE, &mut b));
        failed("page_out", r.page_out(0, r.len()).map(|_| ()));
        failed("flush", r.flush());
        failed("fork", a.fork("child").map(|_| ()));
        failed("reserve", a.reserve(PAGE).map(|_| ()));
        let _ = rt.stats();
        let _ = rt.reclaim(4);
        let _ = rt.run_oom_killer(pagewarden::Deficit { frames: 1, slots: 0 });
        drop(r);
        let _ = a.kill();
        drop(a);
        drop(rt);
    }
}

#[test]
fn a_policy_panicking_in_a_requested_kill_fails_the_runtime_not_the_caller() {
    let _w = watchdog("run_oom_killer with a panicking policy", 30);
    let Some(rt) = exploding(FaultMode::HandlerThreads) else { return };
    let a = rt.arena("a").create().unwrap();
    let r = a.reserve(4 * PAGE).unwrap();
    r.write(0, &[1; 8]).unwrap();
    let report = rt.run_oom_killer(pagewarden::Deficit { frames: 1, slots: 0 });
    assert!(report.victims.is_empty(), "{report}");
    assert!(!a.is_killed());
    let e = r.write(0, &[2; 8]).unwrap_err();
    assert!(
        matches!(e, Error::RuntimeFailed { ref detail } if detail.contains("Exploding") && detail.contains("the policy exploded")),
        "{e}"
    );
}

#[test]
fn a_fork_waiting_for_a_swap_in_that_panics_returns() {
    for mode in MODES {
        let _w = watchdog(&format!("{mode:?}: a fork waiting for a swap-in that panics"), 30);
        // Each swap I/O takes a second, then a read panics: the fork starts while the swap-in
        // is in flight, and waits for it to settle, which it never will.
        let faults =
            SwapFaults { panic_on_read: true, delay: Some(std::time::Duration::from_secs(1)), ..Default::default() };
        let Some(rt) = runtime_with(16, 64, EvictionPath::Auto, |b| b.swap_faults(faults).fault_mode(mode)) else {
            return;
        };
        let a = rt.arena("a").create().unwrap();
        let r = a.reserve(8 * PAGE).unwrap();
        for i in 0..8 {
            r.fill(i * PAGE, PAGE, i as u8).unwrap();
        }
        assert_eq!(r.page_out(0, 8 * PAGE).unwrap(), 8);
        assert_eq!(rt.stats().frames_in_use, 0);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut b = [0u8; 8];
                r.read(0, &mut b)
            });
            // The swap-in has taken its frames: it is in flight.
            while rt.stats().frames_in_use == 0 {
                std::thread::yield_now();
            }
            let e = a.fork("child").map(|_| ()).unwrap_err();
            assert!(
                matches!(e, Error::RuntimeFailed { ref detail } if detail.contains("injected panic")),
                "{mode:?}: {e}"
            );
            let e = reader.join().unwrap().unwrap_err();
            assert!(matches!(e, Error::RuntimeFailed { .. }), "{mode:?}: {e}");
        });
    }
}

#[test]
fn a_fault_waiting_for_frames_held_by_a_swap_in_that_panics_returns() {
    for mode in MODES {
        let _w = watchdog(&format!("{mode:?}: a fault waiting for a frame a panicking swap-in holds"), 30);
        let faults =
            SwapFaults { panic_on_read: true, delay: Some(std::time::Duration::from_secs(1)), ..Default::default() };
        let Some(rt) = runtime_with(16, 8, EvictionPath::Auto, |b| {
            b.swap_faults(faults).fault_mode(mode).max_readahead(1).handler_threads(2)
        }) else {
            return;
        };
        let a = rt.arena("a").create().unwrap();
        let r = a.reserve(32 * PAGE).unwrap();
        // Two handler threads, so that the second fault is served while the first is in flight.
        // Swap full, then fifteen dirty pages: one frame left, nothing evictable.
        for i in 0..8 {
            r.fill(i * PAGE, PAGE, i as u8).unwrap();
        }
        assert_eq!(r.page_out(0, 8 * PAGE).unwrap(), 8);
        for i in 8..23 {
            r.fill(i * PAGE, PAGE, i as u8).unwrap();
        }
        assert_eq!(rt.stats().frames_in_use, 15);
        std::thread::scope(|s| {
            // This swap-in takes the last frame, and panics a second later.
            let reader = s.spawn(|| {
                let mut b = [0u8; 8];
                r.read(0, &mut b)
            });
            while rt.stats().frames_in_use < 16 {
                std::thread::yield_now();
            }
            // No frame, nothing evictable, a page-in in flight: this fault waits for it.
            let e = r.write(30 * PAGE, &[1; 8]).unwrap_err();
            assert!(
                matches!(e, Error::RuntimeFailed { ref detail } if detail.contains("injected panic")),
                "{mode:?}: {e}"
            );
            let e = reader.join().unwrap().unwrap_err();
            assert!(matches!(e, Error::RuntimeFailed { .. }), "{mode:?}: {e}");
        });
    }
}

#[test]
fn a_write_to_a_shared_page_with_no_memory_anywhere_returns() {
    for mode in MODES {
        let _w = watchdog(&format!("{mode:?}: a copy-on-write break with no memory and no victim"), 30);
        let Some(rt) = runtime_with(16, 8, EvictionPath::Auto, |b| b.fault_mode(mode)) else { return };
        // Nobody may be killed.
        let a = rt.arena("precious").oom_score_adj(-1000).create().unwrap();
        let r = a.reserve(64 * PAGE).unwrap();
        r.fill(0, PAGE, 7).unwrap();
        let fork = a.fork("snapshot").unwrap();
        // Page 0 stays resident: its frame is the share's only copy.
        r.pin(0, PAGE).unwrap();
        // Fill every frame and every slot with dirty pages.
        let mut p = 1;
        while p < 64 && r.fill(p * PAGE, PAGE, p as u8).is_ok() {
            p += 1;
        }
        assert!(p < 64, "{mode:?}: memory never ran out");
        // Breaking the share needs a frame for the snapshot's copy: there is none, and none can
        // be made. The write must fail, not wait for ever.
        let e = r.write(0, &[1; 8]).unwrap_err();
        assert!(matches!(e, Error::OutOfMemory { .. }), "{mode:?}: {e}");
        // Nothing was lost: both sides still read the page as it was.
        let mut b = [0u8; 8];
        r.read(0, &mut b).unwrap();
        assert_eq!(b, [7; 8], "{mode:?}");
        r.unpin(0, PAGE).unwrap();
        match fork.region(&r).unwrap().read(0, &mut b) {
            Ok(()) => assert_eq!(b, [7; 8], "{mode:?}"),
            Err(e) => assert!(matches!(e, Error::OutOfMemory { .. }), "{mode:?}: {e}"),
        }
    }
}

#[test]
fn a_thread_parked_on_a_readahead_page_of_a_swap_in_that_panics_returns() {
    for mode in MODES {
        let _w = watchdog(&format!("{mode:?}: a thread parked on a page of a panicking readahead"), 30);
        let faults =
            SwapFaults { panic_on_read: true, delay: Some(std::time::Duration::from_secs(1)), ..Default::default() };
        let Some(rt) =
            runtime_with(16, 64, EvictionPath::Auto, |b| b.swap_faults(faults).fault_mode(mode).handler_threads(2))
        else {
            return;
        };
        let a = rt.arena("a").create().unwrap();
        let r = a.reserve(16 * PAGE).unwrap();
        r.fill(2 * PAGE, PAGE, 2).unwrap();
        assert_eq!(r.page_out(2 * PAGE, PAGE).unwrap(), 1);
        let mut b = [0u8; 8];
        // A sequential stream: page 0, then pages 1 and 2 in one run (page 2 from swap: it panics).
        r.read(0, &mut b).unwrap();
        let before = rt.stats().frames_in_use;
        std::thread::scope(|s| {
            let streamer = s.spawn(|| {
                let mut b = [0u8; 8];
                r.read(PAGE, &mut b)
            });
            while rt.stats().frames_in_use < before + 2 {
                std::thread::yield_now();
            }
            // Page 2 is in flight as part of the run: this thread parks on it.
            let mut b = [0u8; 8];
            let e = r.read(2 * PAGE, &mut b).unwrap_err();
            assert!(matches!(e, Error::RuntimeFailed { .. }), "{mode:?}: {e}");
            let e = streamer.join().unwrap().unwrap_err();
            assert!(matches!(e, Error::RuntimeFailed { .. }), "{mode:?}: {e}");
        });
    }
}

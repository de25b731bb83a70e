//! An in-thread fault runs in the faulting thread's SIGBUS handler, where calling the logger is
//! not safe. A line the fault code logs there (here: a swap read that fails) must reach the
//! logger from another thread, whole, and never from the faulting thread. Its own test binary:
//! it installs the process's logger.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use pagewarden::{Error, FaultMode, SwapFaults};
use std::sync::Mutex;
use std::thread::ThreadId;

/// Every record logged: (the logging thread, its message).
static LINES: Mutex<Vec<(ThreadId, String)>> = Mutex::new(Vec::new());

struct Recorder;

impl log::Log for Recorder {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        LINES.lock().unwrap().push((std::thread::current().id(), r.args().to_string()));
    }
    fn flush(&self) {}
}

static RECORDER: Recorder = Recorder;

#[test]
fn an_in_thread_fault_logs_through_another_thread() {
    log::set_logger(&RECORDER).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
    let me = std::thread::current().id();
    for path in PATHS {
        let faults = SwapFaults { fail_read_slots: vec![3], ..Default::default() };
        let Some(rt) =
            runtime_with(16, 64, path, |b| b.swap_faults(faults).max_readahead(1).fault_mode(FaultMode::InThread))
        else {
            continue;
        };
        let a = rt.arena("a").create().unwrap();
        let r = a.reserve(8 * PAGE).unwrap();
        for i in 0..8 {
            r.fill(i * PAGE, PAGE, 0x40 + i as u8).unwrap();
        }
        assert_eq!(r.page_out(0, 8 * PAGE).unwrap(), 8);
        LINES.lock().unwrap().clear();
        // Faults in this thread, in its SIGBUS handler: slot 3 cannot be read.
        let mut b = vec![0u8; PAGE];
        match r.read(3 * PAGE, &mut b) {
            Err(Error::Corrupted { offset }) => assert_eq!(offset, 3 * PAGE),
            other => panic!("{path:?}: {other:?}"),
        }
        // The reclaimer writes queued lines every round (at most 250 ms apart).
        let want = "swap read of slot 3 failed";
        let t0 = std::time::Instant::now();
        let found = loop {
            let lines = LINES.lock().unwrap().clone();
            if let Some(l) = lines.iter().find(|(_, m)| m.contains(want)) {
                break l.clone();
            }
            assert!(t0.elapsed().as_secs() < 10, "{path:?}: the line never reached the logger: {lines:?}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_ne!(found.0, me, "{path:?}: the faulting thread called the logger: {found:?}");
        assert!(found.1.contains("page poisoned"), "{path:?}: the line was cut: {found:?}");
        let from_me: Vec<_> = LINES.lock().unwrap().iter().filter(|(t, _)| *t == me).cloned().collect();
        assert!(from_me.is_empty(), "{path:?}: logged from the faulting thread: {from_me:?}");
    }
}

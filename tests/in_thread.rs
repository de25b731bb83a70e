//! The in-thread fault path (`FaultMode::InThread`): faults resolved in the faulting thread's
//! SIGBUS handler. The model and torture tests also run in this mode; this file checks what is
//! specific to it.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use pagewarden::{Error, EvictionPath, FaultMode};

#[test]
fn in_thread_faults_page_in_and_out() {
    for path in PATHS {
        let Some(rt) = runtime_with(16, 256, path, |b| b.fault_mode(FaultMode::InThread)) else { continue };
        let a = rt.arena("a").create().unwrap();
        let r = a.reserve(64 * PAGE).unwrap();
        for i in 0..64usize {
            // SAFETY: inside the region, which outlives the access.
            unsafe { r.as_ptr().add(i * PAGE + 1).write_volatile(i as u8) };
        }
        for i in 0..64usize {
            let mut b = [0u8; 2];
            r.read(i * PAGE, &mut b).unwrap();
            assert_eq!(b, [0, i as u8], "{path:?} page {i}");
        }
        let st = rt.stats();
        assert!(st.totals.swap_ins > 0 && st.totals.writebacks > 0, "{st}");
        rt.debug_check_invariants().unwrap();
    }
}

#[test]
fn kernel_mode_access_needs_prefault() {
    let Some(rt) = runtime_with(64, 256, EvictionPath::Auto, |b| b.fault_mode(FaultMode::InThread)) else { return };
    let a = rt.arena("io").create().unwrap();
    let r = a.reserve(16 * PAGE).unwrap();
    let f = std::fs::File::open("/dev/zero").unwrap();
    use std::os::unix::fs::FileExt;
    // SAFETY: a slice over the region's first page, used only for this read; no other access.
    let buf = unsafe { std::slice::from_raw_parts_mut(r.as_ptr(), PAGE) };
    let e = f.read_at(buf, 0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EFAULT), "a syscall into a missing page fails");
    r.prefault(0, PAGE).unwrap();
    // SAFETY: as above.
    let buf = unsafe { std::slice::from_raw_parts_mut(r.as_ptr(), PAGE) };
    assert_eq!(f.read_at(buf, 0).unwrap(), PAGE);
}

#[test]
fn in_thread_kill_and_exhaustion_fail_cleanly() {
    let Some(rt) = runtime_with(24, 16, EvictionPath::Auto, |b| b.fault_mode(FaultMode::InThread)) else { return };
    let bystander = rt.arena("bystander").create().unwrap();
    let b = bystander.reserve(4 * PAGE).unwrap();
    b.fill(0, 4 * PAGE, 3).unwrap();
    let leaky = rt.arena("leaky").create().unwrap();
    let l = leaky.reserve(1 << 30).unwrap();
    let mut killed = false;
    for p in 0..200 {
        match l.write(p * PAGE, &[1; 8]) {
            Ok(()) => {}
            Err(Error::Killed { .. }) => {
                killed = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(killed);
    let mut x = vec![0u8; 4 * PAGE];
    b.read(0, &mut x).unwrap();
    assert!(x.iter().all(|&v| v == 3));
}

/// Runs in a child: raw access to a killed arena in in-thread mode reaches the default SIGBUS.
#[test]
fn in_thread_raw_access_after_kill_child() {
    if !is_child("in_thread_raw_access_after_kill_child") {
        return;
    }
    let rt = runtime_with(16, 16, EvictionPath::Auto, |b| b.fault_mode(FaultMode::InThread)).unwrap();
    let a = rt.arena("victim").create().unwrap();
    let r = a.reserve(16 * PAGE).unwrap();
    a.kill().unwrap();
    // SAFETY: inside the region. The arena is dead: SIGBUS, never a value.
    let v = unsafe { r.as_ptr().add(PAGE).read_volatile() };
    println!("UNREACHABLE {v}");
    std::process::exit(3);
}

#[test]
fn in_thread_raw_access_after_kill_raises_sigbus() {
    if is_child("in_thread_raw_access_after_kill_child") || runtime(16, 16, EvictionPath::Auto).is_none() {
        return;
    }
    let (status, stdout) = run_child("in_thread_raw_access_after_kill_child");
    assert!(!stdout.contains("UNREACHABLE"), "{stdout}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGBUS), "{status:?} {stdout}");
}

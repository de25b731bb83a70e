//! Bad input gets a typed error with a clear message, never a panic or a hang.

mod common;
use common::*;
use pagewarden::{Error, EvictionPath, Runtime};

#[test]
fn bad_configuration_is_refused() {
    let e = Runtime::builder().frame_budget(0).build().unwrap_err();
    assert!(matches!(e, Error::InvalidConfig { what: "frame_budget", .. }), "{e}");
    assert!(e.to_string().contains("minimum"), "{e}");
    let e = Runtime::builder().frame_budget(usize::MAX).build().unwrap_err();
    assert!(matches!(e, Error::InvalidConfig { what: "frame_budget", .. }), "{e}");
    let e = Runtime::builder().frame_budget(1 << 20).handler_threads(0).build().unwrap_err();
    assert!(matches!(e, Error::InvalidConfig { what: "handler_threads", .. }), "{e}");
    let e = Runtime::builder().frame_budget(1 << 20).watermarks(10, 5).build().unwrap_err();
    assert!(matches!(e, Error::InvalidConfig { what: "watermarks", .. }), "{e}");
    let e = Runtime::builder().frame_budget(1 << 20).max_readahead(0).build().unwrap_err();
    assert!(matches!(e, Error::InvalidConfig { what: "max_readahead", .. }), "{e}");
}

#[test]
fn swap_file_problems_are_reported_with_advice() {
    if runtime(16, 16, EvictionPath::Auto).is_none() {
        return;
    }
    let e = Runtime::builder()
        .frame_budget(1 << 20)
        .swap_dir("/nonexistent/pagewarden/dir")
        .swap_capacity(1 << 20)
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::SwapFile { .. }), "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
    // A capacity the disk cannot hold.
    let e = Runtime::builder().frame_budget(1 << 20).swap_capacity(1 << 60).build().unwrap_err();
    assert!(matches!(e, Error::SwapFile { .. } | Error::InvalidConfig { .. }), "{e}");
    // A named swap file never overwrites an existing file (which others might read) nor follows
    // a symlink planted at its path.
    let dir = std::env::temp_dir().join(format!("pw-named-swap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let existing = dir.join("existing");
    std::fs::write(&existing, b"someone's data").unwrap();
    let e = Runtime::builder().frame_budget(1 << 20).swap_file(&existing, 1 << 20).build().unwrap_err();
    assert!(matches!(e, Error::SwapFile { .. }) && e.to_string().contains("already there"), "{e}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"someone's data");
    let link = dir.join("link");
    let target = dir.join("target");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let e = Runtime::builder().frame_budget(1 << 20).swap_file(&link, 1 << 20).build().unwrap_err();
    assert!(matches!(e, Error::SwapFile { .. }), "{e}");
    assert!(!target.exists(), "the symlink must not be followed");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_are_refused() {
    let Some(rt) = runtime(16, 64, EvictionPath::Auto) else {
        return;
    };
    let a = rt.arena("a").create().unwrap();
    assert!(matches!(a.reserve(0), Err(Error::InvalidArgument { what: "len", .. })));
    assert!(matches!(a.reserve(usize::MAX), Err(Error::InvalidArgument { .. })));
    assert!(matches!(a.reserve(1 << 46), Err(Error::InvalidArgument { .. })), "regions are limited to 2^32 pages");
    let r = a.reserve(10).unwrap();
    assert_eq!(r.len(), PAGE);
    let mut b = [0u8; 8];
    assert!(matches!(r.read(PAGE - 4, &mut b), Err(Error::OutOfBounds { .. })));
    assert!(matches!(r.write(usize::MAX, &b), Err(Error::OutOfBounds { .. })));
    assert!(matches!(r.fill(1, PAGE, 0), Err(Error::OutOfBounds { .. })));
    assert!(matches!(r.page_out(1, 1), Err(Error::InvalidArgument { what: "offset", .. })));
    let e = r.read(PAGE, &mut b).unwrap_err();
    assert!(e.to_string().contains("outside the region"), "{e}");
    // Empty accesses at the end are fine.
    r.read(PAGE, &mut []).unwrap();
}

#[test]
fn unavailable_userfaultfd_message_says_what_to_do() {
    let e = Error::UserfaultfdUnavailable {
        device: std::io::Error::from_raw_os_error(libc::EACCES),
        syscall: std::io::Error::from_raw_os_error(libc::EPERM),
        user_mode_only: std::io::Error::from_raw_os_error(libc::ENOSYS),
    };
    let m = e.to_string();
    for needle in ["/dev/userfaultfd", "vm.unprivileged_userfaultfd=1", "CAP_SYS_PTRACE", "seccomp"] {
        assert!(m.contains(needle), "message lacks {needle}: {m}");
    }
}

#[test]
fn running_out_of_address_space_is_a_typed_error() {
    let Some(rt) = runtime(16, 64, EvictionPath::Auto) else { return };
    let a = rt.arena("huge").create().unwrap();
    // 16 TiB each (the largest region); a 47-bit address space holds fewer than eight.
    let mut held = Vec::new();
    let err = loop {
        match a.reserve(1 << 44) {
            Ok(r) => held.push(r),
            Err(e) => break e,
        }
        assert!(held.len() < 16, "128 TiB of address space reserved?");
    };
    assert!(matches!(err, Error::AddressSpace { .. }), "{err}");
    assert!(err.to_string().contains("address space"), "{err}");
    // Nothing broke: releasing them makes room again.
    drop(held);
    let r = a.reserve(1 << 44).unwrap();
    r.write(0, &[1]).unwrap();
}

#[test]
fn a_swap_directory_that_cannot_hold_files_is_refused() {
    if runtime(16, 16, EvictionPath::Auto).is_none() {
        return;
    }
    // procfs accepts no new files.
    let e = Runtime::builder().frame_budget(1 << 20).swap_dir("/proc").swap_capacity(1 << 20).build().unwrap_err();
    assert!(matches!(e, Error::SwapFile { .. }), "{e}");
    assert!(e.to_string().contains("/proc"), "{e}");
}

#[test]
fn a_killed_arena_says_killed_whatever_else_is_wrong() {
    let Some(rt) = runtime_with(32, 64, EvictionPath::Auto, |b| b.pin_limit(4 * PAGE)) else { return };
    // Another arena's pins fill the pin limit.
    let other = rt.arena("other").create().unwrap();
    let o = other.reserve(4 * PAGE).unwrap();
    o.pin(0, 4 * PAGE).unwrap();
    let a = rt.arena("dead").create().unwrap();
    let r = a.reserve(4 * PAGE).unwrap();
    r.write(0, &[1; 8]).unwrap();
    // Alive, the pin limit answers.
    assert!(matches!(r.pin(0, PAGE), Err(Error::PinLimit { .. })));
    a.kill().unwrap();
    let killed = |what: &str, res: Result<(), Error>| {
        assert!(matches!(res, Err(Error::Killed { ref arena }) if arena == "dead"), "{what}: {res:?}");
    };
    killed("pin with the limit full", r.pin(0, PAGE));
    killed("pin out of bounds", r.pin(0, 64 * PAGE));
    killed("pin unaligned", r.pin(1, PAGE));
    killed("unpin of a page never pinned", r.unpin(0, PAGE));
    let mut b = [0u8; 8];
    killed("read out of bounds", r.read(4 * PAGE, &mut b));
    killed("empty read", r.read(0, &mut []));
    killed("write out of bounds", r.write(usize::MAX, &b));
    killed("fill out of bounds", r.fill(1, 4 * PAGE, 0));
    killed("prefault out of bounds", r.prefault(0, 8 * PAGE));
    killed("page_out unaligned", r.page_out(1, PAGE).map(|_| ()));
    killed("flush", r.flush());
    killed("reserve of nothing", a.reserve(0).map(|_| ()));
    killed("reserve too large", a.reserve(usize::MAX).map(|_| ()));
    let f = std::fs::File::open("/dev/null").unwrap();
    killed("map_file unaligned", a.map_file(&f, 1, PAGE, pagewarden::MapMode::Private).map(|_| ()));
    killed("fork", a.fork("child").map(|_| ()));
    killed("bad oom_score_adj", a.set_oom_score_adj(5000));
    // The live arena is untouched.
    o.unpin(0, 4 * PAGE).unwrap();
}

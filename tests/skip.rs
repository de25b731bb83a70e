//! The helper that tests needing userfaultfd share: where userfaultfd is unavailable it fails the
//! test without claiming to skip, or, with `PAGEWARDEN_SKIP_UFFD_TESTS=1`, says once per test that
//! it skips. Checked in child processes fed a made-up "unavailable" error.

mod common;

use std::io;

fn unavailable() -> pagewarden::Result<pagewarden::Runtime> {
    let e = || io::Error::from_raw_os_error(libc::EPERM);
    Err(pagewarden::Error::UserfaultfdUnavailable { device: e(), syscall: e(), user_mode_only: e() })
}

const CHILD: &str = "skip_child";

/// The child: four runtimes wanted (two paths × two modes, say), none available.
#[test]
fn skip_child() {
    if !common::is_child(CHILD) {
        return;
    }
    for _ in 0..4 {
        assert!(common::skip_unavailable(unavailable()).is_none());
    }
}

fn child(skip: Option<&str>) -> (bool, String) {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", CHILD, "--nocapture", "--test-threads=1"]).env(common::CHILD, CHILD);
    cmd.env_remove("PAGEWARDEN_SKIP_UFFD_TESTS");
    if let Some(v) = skip {
        cmd.env("PAGEWARDEN_SKIP_UFFD_TESTS", v);
    }
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn unavailable_userfaultfd_fails_the_test_without_claiming_to_skip() {
    let (ok, stderr) = child(None);
    assert!(!ok, "{stderr}");
    assert!(!stderr.contains("SKIPPING"), "{stderr}");
    assert!(stderr.contains("this test needs userfaultfd"), "{stderr}");
    assert!(stderr.contains("PAGEWARDEN_SKIP_UFFD_TESTS=1"), "{stderr}");
}

#[test]
fn with_skipping_allowed_the_reason_is_told_once_per_test() {
    let (ok, stderr) = child(Some("1"));
    assert!(ok, "{stderr}");
    assert_eq!(stderr.matches("*** SKIPPING").count(), 1, "{stderr}");
}

//! Helpers shared by the integration tests.
#![allow(dead_code)]

use pagewarden::{Error, EvictionPath, Runtime};

pub(crate) const PAGE: usize = 4096;

/// Builds a runtime with a small budget. Where userfaultfd is unavailable the test fails saying
/// why, or, with `PAGEWARDEN_SKIP_UFFD_TESTS=1`, says so once and gets `None` (skip).
pub(crate) fn runtime(budget_frames: usize, swap_pages: usize, path: EvictionPath) -> Option<Runtime> {
    runtime_with(budget_frames, swap_pages, path, |b| b)
}

pub(crate) fn runtime_with(
    budget_frames: usize,
    swap_pages: usize,
    path: EvictionPath,
    f: impl FnOnce(pagewarden::RuntimeBuilder) -> pagewarden::RuntimeBuilder,
) -> Option<Runtime> {
    let b = Runtime::builder()
        .frame_budget(budget_frames * PAGE)
        .swap_capacity(swap_pages * PAGE)
        .watermarks(2, 4)
        .eviction(path);
    match f(b).build() {
        Err(e @ Error::MissingKernelFeature { .. }) if path == EvictionPath::Move => {
            say_skipping(&format!("the MOVE-path variant: {e}"));
            None
        }
        r => skip_unavailable(r),
    }
}

/// Builds `b`; where userfaultfd is unavailable, as [`runtime`].
pub(crate) fn build_or_skip(b: pagewarden::RuntimeBuilder) -> Option<Runtime> {
    skip_unavailable(b.build())
}

std::thread_local! {
    /// Whether this test (each runs on its own thread) has said why it skips.
    static SAID: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether `PAGEWARDEN_SKIP_UFFD_TESTS=1` asks tests needing userfaultfd to skip where it is
/// unavailable.
pub(crate) fn skip_allowed() -> bool {
    std::env::var_os("PAGEWARDEN_SKIP_UFFD_TESTS").is_some_and(|v| v == "1")
}

/// Says, once per test, that it skips and why.
fn say_skipping(why: &str) {
    if !SAID.replace(true) {
        eprintln!("*** SKIPPING: {why}");
    }
}

/// The runtime, or `None` after saying (once per test) that userfaultfd is unavailable and
/// `PAGEWARDEN_SKIP_UFFD_TESTS=1` allows skipping; without it, the test fails saying why. Any
/// other error fails the test.
pub(crate) fn skip_unavailable(r: pagewarden::Result<Runtime>) -> Option<Runtime> {
    match r {
        Ok(rt) => Some(rt),
        Err(e @ Error::UserfaultfdUnavailable { .. }) => {
            if !skip_allowed() {
                panic!(
                    "this test needs userfaultfd: {e}\n(set PAGEWARDEN_SKIP_UFFD_TESTS=1 to skip the tests that need it)"
                );
            }
            say_skipping(&format!("userfaultfd unavailable (PAGEWARDEN_SKIP_UFFD_TESTS=1): {e}"));
            None
        }
        Err(e) => panic!("runtime: {e}"),
    }
}

/// Both eviction paths.
pub(crate) const PATHS: [EvictionPath; 2] = [EvictionPath::Move, EvictionPath::WriteProtect];

/// Both fault modes.
pub(crate) const MODES: [pagewarden::FaultMode; 2] =
    [pagewarden::FaultMode::HandlerThreads, pagewarden::FaultMode::InThread];

/// A small seeded generator (SplitMix64): deterministic, printed on failure.
#[derive(Clone)]
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The seed for a test: `PAGEWARDEN_SEED` if set, else a fixed default (deterministic runs).
pub(crate) fn seed(default: u64) -> u64 {
    std::env::var("PAGEWARDEN_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// The process's resident set size in bytes (`/proc/self/smaps_rollup`).
pub(crate) fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
    let kb: u64 =
        s.lines().find_map(|l| l.strip_prefix("Rss:")).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap();
    kb * 1024
}

/// The environment variable that tells a test it runs as a child process.
pub(crate) const CHILD: &str = "PAGEWARDEN_TEST_CHILD";

/// Whether this test process is a child started by [`run_child`] for `name`.
pub(crate) fn is_child(name: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|v| v == name)
}

/// Runs the test `name` of this test binary in a child process and returns its status and
/// stdout. The child's body must check [`is_child`] first.
pub(crate) fn run_child(name: &str) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .unwrap();
    (out.status, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Aborts the process, with a message naming `what`, unless dropped within `secs` seconds: a
/// test that waits on the runtime then fails instead of hanging.
pub(crate) struct Watchdog(std::sync::Arc<std::sync::atomic::AtomicBool>);

pub(crate) fn watchdog(what: &str, secs: u64) -> Watchdog {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (d, what) = (done.clone(), what.to_string());
    std::thread::spawn(move || {
        let t0 = std::time::Instant::now();
        while !d.load(std::sync::atomic::Ordering::Acquire) {
            if t0.elapsed() > std::time::Duration::from_secs(secs) {
                eprintln!("\n*** WATCHDOG: {what} did not finish within {secs} s: a hang; aborting\n");
                println!("WATCHDOG: {what} hung");
                std::process::abort();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
    Watchdog(done)
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}

//! Helpers shared by the integration tests.
#![allow(dead_code)]

use pagewarden::{Error, EvictionPath, Runtime};

pub(crate) const PAGE: usize = 4096;

/// Builds a runtime with a small budget, or reports loudly why userfaultfd is unavailable.
/// Fails the test unless `PAGEWARDEN_SKIP_UFFD_TESTS=1` is set.
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
            eprintln!("\n*** SKIPPING the MOVE-path variant: {e}\n");
            None
        }
        r => skip_unavailable(r),
    }
}

/// Builds `b`, or reports loudly why userfaultfd is unavailable (failing the test unless
/// `PAGEWARDEN_SKIP_UFFD_TESTS=1` is set).
pub(crate) fn build_or_skip(b: pagewarden::RuntimeBuilder) -> Option<Runtime> {
    skip_unavailable(b.build())
}

/// The runtime, or `None` after saying loudly that userfaultfd is unavailable (a failure unless
/// `PAGEWARDEN_SKIP_UFFD_TESTS=1` is set); any other error fails the test.
fn skip_unavailable(r: pagewarden::Result<Runtime>) -> Option<Runtime> {
    match r {
        Ok(rt) => Some(rt),
        Err(e @ Error::UserfaultfdUnavailable { .. }) => {
            eprintln!("\n*** SKIPPING: {e}\n");
            if std::env::var_os("PAGEWARDEN_SKIP_UFFD_TESTS").is_none() {
                panic!("userfaultfd unavailable; set PAGEWARDEN_SKIP_UFFD_TESTS=1 to skip: {e}");
            }
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

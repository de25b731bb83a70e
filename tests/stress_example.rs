//! The stress example runs to completion with small sizes, kills its leaking arena and verifies
//! every surviving page (so it cannot rot). `cargo test` builds the examples next to the test
//! binaries.

mod common;

fn run_stress(args: &[&str]) -> String {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join("stress");
    assert!(path.exists(), "the stress example was not built at {}", path.display());
    let out = std::process::Command::new(&path).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "stress failed: {}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("INTEGRITY OK"), "{stdout}");
    assert!(stdout.contains("total"), "the stats table is missing: {stdout}");
    stdout
}

const SMALL: [&str; 10] = ["--budget", "8M", "--overcommit", "3", "--duration", "2", "--threads", "3", "--arenas", "3"];

#[test]
fn stress_example_kills_the_leak_and_verifies_the_rest() {
    if common::runtime(16, 16, pagewarden::EvictionPath::Auto).is_none() {
        return;
    }
    let out = run_stress(&SMALL);
    assert!(out.contains("killed by the OOM killer after leaking"), "the leak was not killed: {out}");
    assert!(out.contains("<- victim"), "the OOM report is missing: {out}");
}

#[test]
fn stress_example_dry_run_with_handler_threads_kills_nothing() {
    if common::runtime(16, 16, pagewarden::EvictionPath::Auto).is_none() {
        return;
    }
    let mut args = SMALL.to_vec();
    args.extend(["--dry-run", "--mode", "handler-threads", "--policy", "linux-badness", "--path", "wp", "--seed", "7"]);
    let out = run_stress(&args);
    assert!(out.contains("kills 0"), "{out}");
}

//! The stress example runs to completion with small sizes, kills its leaking arena and verifies
//! every surviving page (so it cannot rot); its verifier tells a killed arena from corruption and
//! still catches a flipped byte. `cargo test` builds the examples next to the test binaries.

mod common;

use std::process::Output;

/// Runs the stress example with `args` and the environment `env` (PAGEWARDEN_* variables of the
/// test's own environment removed, so that they cannot change the run).
fn stress(args: &[&str], env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join("stress");
    assert!(path.exists(), "the stress example was not built at {}", path.display());
    let mut cmd = std::process::Command::new(&path);
    cmd.args(args).env_remove("RUST_LOG");
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("PAGEWARDEN_")) {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A run that must succeed with INTEGRITY OK and the stats table, every table line within 100
/// columns.
fn run_ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = stress(args, env);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stress {args:?} failed: {}\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("INTEGRITY OK"), "{stdout}");
    assert!(!stdout.contains("WRONG"), "{stdout}");
    assert!(stdout.contains("total"), "the stats table is missing: {stdout}");
    check_widths(&stdout);
    stdout
}

/// The status lines, the stats table and the summary fit in 100 columns.
fn check_widths(stdout: &str) {
    let from = stdout.find("\nfaults served ").expect("the stats table");
    let to = stdout[from..].find("p50/p99:").expect("the stats table's footer") + from;
    let table = stdout[from..to].lines().chain(stdout[to..].lines().take(1));
    // Status and event lines start with the time ("[  4.1s"); the OOM report's rows are the
    // library's kernel-style format.
    let status = stdout.lines().filter(|l| l.starts_with('[') && l.split(']').next().is_some_and(|t| t.contains('.')));
    let summary = stdout[stdout.find("what happened:").expect("the summary")..].lines();
    for l in table.chain(status).chain(summary) {
        assert!(l.chars().count() <= 100, "a line of {} columns:\n{l}\n{stdout}", l.chars().count());
    }
}

const SMALL: [&str; 10] = ["--budget", "8M", "--overcommit", "3", "--duration", "2", "--threads", "3", "--arenas", "3"];

/// The small run with another random phase and more flags.
fn small(duration: &'static str, more: &[&'static str]) -> Vec<&'static str> {
    let mut v = SMALL.to_vec();
    v[5] = duration;
    v.extend(more);
    v
}

fn uffd() -> bool {
    common::runtime(16, 16, pagewarden::EvictionPath::Auto).is_some()
}

#[test]
fn stress_example_kills_the_leak_and_verifies_the_rest() {
    if !uffd() {
        return;
    }
    let out = run_ok(&SMALL, &[]);
    assert!(out.contains("killed by the OOM killer after leaking"), "the leak was not killed: {out}");
    assert!(out.contains("<- victim"), "the OOM report is missing: {out}");
    assert!(out.contains("SIGBUS handler"), "the latency footer does not name the in-thread mode: {out}");
    assert!(out.contains("would apply only under Overcommit::Strict"), "{out}");
}

#[test]
fn stress_example_dry_run_with_handler_threads_kills_nothing() {
    if !uffd() {
        return;
    }
    let mut args = SMALL.to_vec();
    args.extend(["--dry-run", "--mode", "handler-threads", "--policy", "linux-badness", "--path", "wp", "--seed", "7"]);
    let out = run_ok(&args, &[]);
    assert!(out.contains("kills 0"), "{out}");
    assert!(out.contains("in a handler thread"), "the latency footer does not name the handler mode: {out}");
}

/// Short and zero random phases, three times each: the leak may then survive the run and be
/// killed while it is read back, which must count as lost, never as wrong.
#[test]
fn stress_example_short_and_zero_durations_verify_repeatedly() {
    if !uffd() {
        return;
    }
    // The zero and the short runs in parallel: most of a run's time is spent waiting.
    let runs: Vec<_> = ["0", "1"]
        .into_iter()
        .map(|d| {
            std::thread::spawn(move || {
                for seed in ["1", "2", "3"] {
                    let mut args = small(d, &["--seed", seed]);
                    args[1] = "4M";
                    let out = run_ok(&args, &[]);
                    // The story is told from the final state: a kill is never followed by
                    // "nothing had to be killed", nor the table by "kills 0".
                    if out.lines().any(|l| l.starts_with("Killed arena")) {
                        assert!(!out.contains("nothing had to be killed"), "--duration {d} --seed {seed}: {out}");
                        let table = out.lines().rev().find(|l| l.starts_with("policy ")).unwrap();
                        assert!(!table.contains("kills 0"), "the table predates a kill: {table}\n{out}");
                    }
                }
            })
        })
        .collect();
    for r in runs {
        if let Err(e) = r.join() {
            std::panic::resume_unwind(e);
        }
    }
}

/// An arena killed while it is checked is lost, not wrong: the run passes and says so.
#[test]
fn stress_example_arena_killed_during_verification_is_lost_not_wrong() {
    if !uffd() {
        return;
    }
    let out = run_ok(&small("1", &["--inject-kill"]), &[]);
    assert!(out.contains("batch: killed during its check;"), "{out}");
    assert!(out.contains("during verification"), "the summary misses the kill during the check: {out}");
    assert!(out.contains("lost with killed arenas"), "{out}");
}

/// A byte flipped behind the verifier's back is caught: INTEGRITY FAILURE and exit 1.
#[test]
fn stress_example_catches_a_flipped_byte() {
    if !uffd() {
        return;
    }
    let out = stress(&small("1", &["--inject-corruption"]), &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("INTEGRITY FAILURE: 1 wrong page"), "{stdout}\n{stderr}");
    assert!(stderr.contains("WRONG"), "{stderr}");
}

/// With no swap the steady arenas cannot fit: they are killed, and the output says so instead of
/// claiming pages were moved to swap and verified.
#[test]
fn stress_example_without_swap_says_what_happened() {
    if !uffd() {
        return;
    }
    let out = stress(&small("1", &["--swap", "0"]), &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("There was no swap"), "{stdout}");
    assert!(!stdout.contains("moved the rest"), "{stdout}");
    assert!(stdout.contains("swap: none"), "{stdout}");
    assert!(stdout.contains("Steady arenas killed"), "{stdout}");
    if !stdout.contains("INTEGRITY OK") {
        assert!(stdout.contains("NOTHING VERIFIED"), "{stdout}");
    }
    check_widths(&stdout);
}

/// The budget and swap default from PAGEWARDEN_BUDGET and PAGEWARDEN_SWAP in the library's size
/// format; a flag wins over its variable; a misspelt PAGEWARDEN_* name is shown without RUST_LOG.
#[test]
fn stress_example_takes_its_sizes_from_the_environment() {
    if !uffd() {
        return;
    }
    let args = ["--overcommit", "1", "--duration", "0", "--threads", "2", "--arenas", "2", "--no-leak"];
    let env = [("PAGEWARDEN_BUDGET", "6M"), ("PAGEWARDEN_SWAP", "0.5G"), ("PAGEWARDEN_BUGDET", "8M")];
    let out = stress(&args, &env);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("pagewarden stress: budget 6 MiB, swap 512 MiB"), "{stdout}");
    assert!(stderr.contains("PAGEWARDEN_BUGDET"), "the misspelt variable is not shown: {stderr}");
    let mut flagged = args.to_vec();
    flagged.extend(["--budget", "4M"]);
    let out = stress(&flagged, &env);
    let (stdout, stderr) = text(&out);
    assert!(stdout.starts_with("pagewarden stress: budget 4 MiB, swap 512 MiB"), "{stdout}\n{stderr}");
    // A bare number is bytes, as in the library; one smaller than a page is refused with a hint.
    let out = stress(&args, &[("PAGEWARDEN_BUDGET", "64")]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("did you mean 64M"), "{stderr}");
}

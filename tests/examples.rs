//! Each story example runs to completion with its defaults and tells its story (so none can rot).
//! `cargo test` builds the examples next to the test binaries.

mod common;

fn run_example(name: &str) -> Option<String> {
    run_example_with(name, &[]).map(|(stdout, _)| stdout)
}

/// Runs the example `name` with extra environment variables; its stdout and stderr.
fn run_example_with(name: &str, env: &[(&str, &str)]) -> Option<(String, String)> {
    common::runtime(16, 16, pagewarden::EvictionPath::Auto)?;
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(path.exists(), "the {name} example was not built at {}", path.display());
    let out = std::process::Command::new(&path).env_remove("RUST_LOG").envs(env.iter().copied()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{name} failed: {}\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("why"), "{name} does not explain itself:\n{stdout}");
    Some((stdout, stderr))
}

/// A misspelt PAGEWARDEN_* name is shown on stderr without RUST_LOG; the runtime's other
/// warnings (the OOM reports the example prints itself) are not repeated there.
#[test]
fn a_misspelt_variable_is_shown_without_rust_log() {
    let Some((_, stderr)) = run_example_with("leak", &[("PAGEWARDEN_BUGDET", "64M")]) else { return };
    assert!(stderr.contains("PAGEWARDEN_BUGDET is not a runtime setting"), "{stderr}");
    assert!(!stderr.contains("invoked oom-killer"), "{stderr}");
}

#[test]
fn leak_kills_the_leaking_arena_and_the_rest_keep_running() {
    let Some(out) = run_example("leak") else { return };
    assert!(out.contains("Killed arena 'reporter'"), "{out}");
    assert!(out.contains("database: still running"), "{out}");
}

#[test]
fn pinned_pages_survive_reclaim() {
    let Some(out) = run_example("pinned") else { return };
    assert!(out.contains("128 pinned, 0 evicted"), "{out}");
    assert!(out.contains("reads back intact from swap"), "{out}");
}

#[test]
fn knapsack_shows_the_policies_disagree() {
    let Some(out) = run_example("knapsack") else { return };
    assert!(out.contains("LinuxBadness would kill 'ui'"), "{out}");
}

#[test]
fn two_deficits_shows_balanced_choosing_the_mixed_arena() {
    let Some(out) = run_example("two_deficits") else { return };
    assert!(out.contains("Balanced     would kill 'mixed'"), "{out}");
}

#[test]
fn fork_cow_succeeds_with_overcommit_and_is_refused_under_strict() {
    let Some(out) = run_example("fork_cow") else { return };
    assert!(out.contains("charged 0 frames"), "{out}");
    assert!(out.contains("fork refused"), "{out}");
}

#[test]
fn file_backed_drops_clean_file_pages_before_any_swap_write() {
    let Some(out) = run_example("file_backed") else { return };
    assert!(out.contains(" 0 pages written to swap"), "{out}");
    assert!(out.contains("written through a Shared map"), "{out}");
}

//! Configuration from `PAGEWARDEN_*` environment variables, read by `RuntimeBuilder::build` in a
//! real process (each case runs in a child process with its own environment).

mod common;

use pagewarden::{Error, Runtime};

/// Runs test `name` of this binary in a child process with `vars` set; returns its stdout.
fn child(name: &str, vars: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(common::CHILD, name)
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child {name} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn a_bad_value_is_a_typed_error_naming_the_variable() {
    if common::is_child("a_bad_value_is_a_typed_error_naming_the_variable") {
        match Runtime::builder().swap_capacity(0).build() {
            Err(Error::InvalidEnv { var, value, .. }) => {
                assert_eq!((var, value.as_str()), ("PAGEWARDEN_BUDGET", "lots"));
                println!("CHILD-OK");
            }
            other => panic!("expected Error::InvalidEnv, got {other:?}"),
        }
        return;
    }
    let out = child("a_bad_value_is_a_typed_error_naming_the_variable", &[("PAGEWARDEN_BUDGET", "lots")]);
    assert!(out.contains("CHILD-OK"), "{out}");
}

#[test]
fn the_environment_fills_settings_the_program_left_unset() {
    if common::is_child("the_environment_fills_settings_the_program_left_unset") {
        // The program sets the budget: PAGEWARDEN_BUDGET does not apply; the swap and the policy
        // come from the environment.
        let Some(rt) = common::build_or_skip(Runtime::builder().frame_budget(2 << 20)) else {
            println!("CHILD-OK");
            return;
        };
        let st = rt.stats();
        assert_eq!(st.budget_frames * st.page_size as u64, 2 << 20);
        assert_eq!(st.swap_slots * st.page_size as u64, 6 << 20);
        assert_eq!(st.policy, "Balanced");
        // Off: nothing from the environment.
        let rt = Runtime::builder().read_env(false).frame_budget(2 << 20).swap_capacity(0).build().unwrap();
        assert_eq!(rt.stats().policy, "Greedy");
        println!("CHILD-OK");
        return;
    }
    let out = child(
        "the_environment_fills_settings_the_program_left_unset",
        &[("PAGEWARDEN_BUDGET", "8M"), ("PAGEWARDEN_SWAP", "6M"), ("PAGEWARDEN_POLICY", "balanced")],
    );
    assert!(out.contains("CHILD-OK"), "{out}");
}

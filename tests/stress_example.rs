//! The stress example runs to completion with small sizes and verifies its data (so it cannot
//! rot). `cargo test` builds the examples next to the test binaries.

mod common;

#[test]
fn stress_example_verifies_its_data() {
    if common::runtime(16, 16, pagewarden::EvictionPath::Auto).is_none() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples").join("stress");
    assert!(dir.exists(), "the stress example was not built at {}", dir.display());
    let out = std::process::Command::new(&dir)
        .args(["--budget-mib", "8", "--overcommit", "3", "--duration", "2", "--threads", "3", "--arenas", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stress failed: {}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("INTEGRITY OK"), "{stdout}");
    assert!(stdout.contains("total"), "the stats table is missing: {stdout}");
}

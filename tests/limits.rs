//! The kernel's limit on mappings (`vm.max_map_count`): with it lowered to just above what the
//! process uses, reserving thousands of regions (and mapping files) either succeeds or fails with
//! a typed error (`Error::AddressSpace`) — never a crash — and the runtime keeps serving what it
//! has. (Ignored by default, see below. On Linux 6.18 regions with identical flags merge into few mappings, so all 4 000 succeed:
//! the count is not what bounds the number of regions.) Runs in a child process, in its own test
//! binary, as it changes a system-wide setting, which the parent restores.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use pagewarden::{Error, EvictionPath, MapMode};

const KNOB: &str = "/proc/sys/vm/max_map_count";

#[test]
fn a_low_map_count_child() {
    if !is_child("a_low_map_count_child") {
        return;
    }
    let rt = runtime(8192, 8192, EvictionPath::Auto).expect("uffd available in the child");
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap().lines().count();
    std::fs::write(KNOB, (maps + 32).to_string()).unwrap();
    let a = rt.arena("many").create().unwrap();
    let f = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(std::env::temp_dir().join(format!("pw-limits-{}", std::process::id())))
        .unwrap();
    f.set_len(PAGE as u64).unwrap();
    let (mut ok, mut refused) = (0, 0);
    let mut keep = Vec::new();
    for i in 0..4000 {
        let r = if i % 4 == 3 { a.map_file(&f, 0, PAGE, MapMode::Private) } else { a.reserve(PAGE * (1 + i % 3)) };
        match r {
            Ok(r) => {
                r.write(0, &[i as u8]).unwrap();
                // Release some, so the address space gets holes and mappings cannot all merge.
                if i % 3 != 0 {
                    keep.push((i, r));
                }
                ok += 1;
            }
            Err(Error::AddressSpace { .. }) => refused += 1,
            Err(e) => panic!("reservation {i}: not the typed error for the mapping limit: {e}"),
        }
    }
    // Everything kept is intact and still served.
    for (i, r) in &keep {
        let mut b = [0u8; 1];
        r.read(0, &mut b).unwrap();
        assert_eq!(b[0], *i as u8);
    }
    rt.debug_check_invariants().unwrap();
    println!("regions: {ok} reserved, {refused} refused with Error::AddressSpace");
}

/// Ignored by default: the limit is system-wide, so lowering it even briefly can make *other*
/// processes' mmap fail. Run alone: `cargo test --test limits -- --ignored`.
#[test]
#[ignore]
fn reservations_beyond_the_map_count_are_refused_not_fatal() {
    if is_child("a_low_map_count_child") || runtime(16, 16, EvictionPath::Auto).is_none() {
        return;
    }
    let Ok(orig) = std::fs::read_to_string(KNOB) else {
        eprintln!("\n*** {KNOB} is unreadable here: the map-count limit cannot be exercised\n");
        return;
    };
    if std::fs::write(KNOB, orig.trim()).is_err() {
        eprintln!("\n*** {KNOB} is not writable (not root): the map-count limit cannot be exercised\n");
        return;
    }
    let (status, stdout) = run_child("a_low_map_count_child");
    std::fs::write(KNOB, orig.trim()).unwrap();
    assert!(status.success() && stdout.contains("regions:"), "child {status:?}: {stdout}");
    let line = stdout.lines().find_map(|l| l.find("regions:").map(|i| &l[i..])).unwrap_or_default();
    eprintln!("{line}");
}

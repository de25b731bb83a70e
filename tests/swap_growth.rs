//! The swap file grows on demand: it starts empty, grows as slots are first written, and a disk
//! that fills up while it grows makes swap full — `SwapLow`, then the OOM killer — never a lost
//! or wrong page. The default capacity holds far more than the budget; `preallocate(true)` claims
//! it all at `build`.
//!
//! The disk-full tests mount a small tmpfs (root needed); where that is impossible they fail
//! loudly unless `PAGEWARDEN_SKIP_MOUNT_TESTS=1` is set.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use pagewarden::{Error, Event, EvictionPath, FaultMode, Region, Runtime};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A tmpfs of a given size mounted on a fresh directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `2m`), or says loudly why it cannot (a failure unless
    /// `PAGEWARDEN_SKIP_MOUNT_TESTS=1` is set).
    fn mount(size: &str, tag: &str) -> Option<Tmpfs> {
        let dir = std::env::temp_dir().join(format!("pw-tmpfs-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(&dir)
            .output();
        let why = match out {
            Ok(o) if o.status.success() => return Some(Tmpfs(dir)),
            Ok(o) => format!("{}: {}", o.status, String::from_utf8_lossy(&o.stderr).trim()),
            Err(e) => e.to_string(),
        };
        let _ = std::fs::remove_dir(&dir);
        eprintln!("\n*** SKIPPING: cannot mount a {size} tmpfs for the disk-full test ({why})\n");
        if std::env::var_os("PAGEWARDEN_SKIP_MOUNT_TESTS").is_none() {
            panic!("mounting a tmpfs failed (root needed); set PAGEWARDEN_SKIP_MOUNT_TESTS=1 to skip: {why}");
        }
        None
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Aborts the process (a hang is a failure) unless dropped within `limit`.
struct Watchdog(Option<std::sync::mpsc::Sender<()>>);

impl Watchdog {
    fn new(what: &'static str, limit: Duration) -> Watchdog {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if rx.recv_timeout(limit) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                eprintln!("\n*** HANG: {what} did not finish within {limit:?}\n");
                std::process::abort();
            }
        });
        Watchdog(Some(tx))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.0.take());
    }
}

/// The 8 bytes page `p` of a region written with `seed` starts and ends with.
fn tag(seed: u64, p: usize) -> [u8; 8] {
    Rng(seed ^ (p as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).next().to_le_bytes()
}

fn write_page(r: &Region, seed: u64, p: usize) -> pagewarden::Result<()> {
    let t = tag(seed, p);
    r.write(p * PAGE, &t)?;
    r.write(p * PAGE + PAGE - 8, &t)
}

fn check_page(r: &Region, seed: u64, p: usize) {
    let (mut a, mut b) = ([0u8; 8], [0u8; 8]);
    r.read(p * PAGE, &mut a).unwrap_or_else(|e| panic!("page {p} (seed {seed:#x}): {e}"));
    r.read(p * PAGE + PAGE - 8, &mut b).unwrap_or_else(|e| panic!("page {p} (seed {seed:#x}): {e}"));
    assert_eq!((a, b), (tag(seed, p), tag(seed, p)), "page {p} came back wrong (seed {seed:#x})");
}

#[test]
fn the_swap_file_grows_as_slots_are_first_used() {
    // 256 MiB of capacity: the file holds nothing until pages are written, then one chunk.
    let Some(rt) = runtime(64, 65_536, EvictionPath::Auto) else { return };
    let st = rt.stats();
    assert_eq!(st.swap_slots, 65_536);
    assert_eq!(st.swap_file_bytes, 0, "an unused swap file occupies no disk\n{st}");
    let seed = seed(0x5EED_0001);
    let a = rt.arena("a").create().unwrap();
    let pages = 4096;
    let r = a.reserve(pages * PAGE).unwrap();
    for p in 0..pages {
        write_page(&r, seed, p).unwrap();
    }
    let st = rt.stats();
    assert!(st.swap_used > 0, "{st}");
    assert!(st.swap_file_bytes >= st.swap_used * PAGE as u64, "the file holds every used slot\n{st}");
    assert!(st.swap_file_bytes <= 64 << 20, "the file grew by one chunk, not to its capacity\n{st}");
    assert!(!st.swap_cut_by_disk && st.swap_usable_slots == st.swap_slots, "{st}");
    for p in 0..pages {
        check_page(&r, seed, p);
    }
    drop((r, a, rt));
    // Preallocated, it occupies its capacity from the start.
    let Some(rt) = runtime_with(64, 4096, EvictionPath::Auto, |b| b.preallocate(true)) else { return };
    let st = rt.stats();
    assert!(st.swap_file_bytes >= 4096 * PAGE as u64, "{st}");
}

#[test]
fn a_bare_builder_claims_no_disk_up_front() {
    if runtime(16, 16, EvictionPath::Auto).is_none() {
        return;
    }
    let rt = Runtime::builder().read_env(false).build().unwrap();
    let st = rt.stats();
    assert_eq!(st.swap_file_bytes, 0, "{st}");
    // The default capacity is far more than the budget (or all the disk gives).
    assert!(st.swap_slots >= 8 * st.budget_frames || st.swap_cut_by_disk, "{st}");
}

#[test]
fn a_swap_directory_that_does_not_exist_fails_build() {
    if runtime(16, 16, EvictionPath::Auto).is_none() {
        return;
    }
    // With the default capacity ("as much as fits") as with an explicit one: never silently no swap.
    let missing = "/nonexistent/pagewarden/swap-dir";
    for cap in [None, Some(1 << 20)] {
        let mut b = Runtime::builder().read_env(false).frame_budget(1 << 20).swap_dir(missing);
        if let Some(c) = cap {
            b = b.swap_capacity(c);
        }
        match b.build() {
            Err(e @ Error::SwapFile { .. }) => assert!(e.to_string().contains(missing), "{e}"),
            Err(e) => panic!("expected Error::SwapFile, got {e}"),
            Ok(rt) => panic!("built with a missing swap directory: {} swap slots", rt.stats().swap_slots),
        }
    }
    // A file is not a directory either.
    let file = std::env::temp_dir().join(format!("pw-not-a-dir-{}", std::process::id()));
    std::fs::write(&file, b"x").unwrap();
    let e = Runtime::builder().read_env(false).frame_budget(1 << 20).swap_dir(&file).build().unwrap_err();
    assert!(matches!(e, Error::SwapFile { .. }) && e.to_string().contains(file.to_str().unwrap()), "{e}");
    std::fs::remove_file(&file).unwrap();
    // Swap disabled needs no directory.
    Runtime::builder().read_env(false).frame_budget(1 << 20).swap_dir(missing).swap_capacity(0).build().unwrap();
}

#[test]
fn a_small_disk_cuts_the_default_and_refuses_preallocation() {
    if runtime(16, 16, EvictionPath::Auto).is_none() {
        return;
    }
    let Some(fs) = Tmpfs::mount("2m", "small") else { return };
    let b = || Runtime::builder().read_env(false).frame_budget(1 << 20).swap_dir(fs.path());
    // "As much as fits": half the free space, and it says so.
    let rt = b().build().unwrap();
    let st = rt.stats();
    assert!(st.swap_cut_by_disk, "{st}");
    assert!(st.swap_slots > 0 && st.swap_slots * PAGE as u64 <= 1 << 20, "{st}");
    assert!(format!("{st}").contains("cut short by the disk"), "{st}");
    drop(rt);
    // Asked for explicitly and preallocated, a capacity the disk cannot hold fails build.
    let e = b().swap_capacity(64 << 20).preallocate(true).build().unwrap_err();
    assert!(matches!(e, Error::SwapFile { .. }), "{e}");
    assert!(e.to_string().contains(fs.path().to_str().unwrap()), "{e}");
    // One that fits is claimed at once.
    let rt = b().swap_capacity(1 << 20).preallocate(true).build().unwrap();
    assert!(rt.stats().swap_file_bytes >= 1 << 20, "{}", rt.stats());
    drop(rt);
    // Without preallocation the same too-large capacity builds: it grows until the disk is full.
    let rt = b().swap_capacity(64 << 20).build().unwrap();
    assert_eq!(rt.stats().swap_file_bytes, 0);
}

/// More data than the budget and the disk hold together: swap fills the disk, `SwapLow` is
/// published, the leaking arena is killed; no page that was written ever reads back wrong.
#[test]
fn a_full_disk_is_full_swap_never_a_lost_page() {
    for mode in MODES {
        let Some(fs) = Tmpfs::mount("2m", "full") else { return };
        let _dog = Watchdog::new("the disk-full workload", Duration::from_secs(300));
        // 64 frames and a 2 MiB disk (512 pages) under an explicit 64 MiB capacity.
        let Some(rt) = runtime_with(64, 16_384, EvictionPath::Auto, |b| b.swap_dir(fs.path()).fault_mode(mode)) else {
            return;
        };
        let seed = seed(0x5EED_0002);
        let keeper = rt.arena("keeper").oom_score_adj(-1000).create().unwrap();
        let kept = keeper.reserve(128 * PAGE).unwrap();
        for p in 0..128 {
            write_page(&kept, seed, p).unwrap();
        }
        let leak = rt.arena("leak").create().unwrap();
        let pages = 4096; // 16 MiB: far more than budget and disk together
        let r = leak.reserve(pages * PAGE).unwrap();
        let lseed = seed ^ 0xFF;
        let mut rng = Rng(seed);
        let mut end = None;
        for p in 0..pages {
            if let Err(e) = write_page(&r, lseed, p) {
                end = Some((e, p));
                break;
            }
            // Pages written so far read back right, through swap on the tmpfs.
            if p % 16 == 15 && !leak.is_killed() {
                let q = rng.below(p as u64 + 1) as usize;
                match r.read(q * PAGE, &mut [0u8; 8]) {
                    Ok(()) => check_page(&r, lseed, q),
                    Err(e) => {
                        end = Some((e, p));
                        break;
                    }
                }
            }
        }
        let (e, at) = end.unwrap_or_else(|| panic!("{mode:?}: 16 MiB fit in 64 frames and a 2 MiB disk"));
        assert!(
            matches!(&e, Error::Killed { arena } if arena == "leak") || matches!(e, Error::OutOfMemory { .. }),
            "{mode:?}: after {at} pages: {e}"
        );
        let st = rt.stats();
        assert!(st.swap_cut_by_disk && st.swap_usable_slots < st.swap_slots, "{mode:?}\n{st}");
        assert!(st.swap_usable_slots <= 512, "{mode:?}\n{st}");
        let evs: Vec<Event> = rt.events().try_iter().collect();
        assert!(evs.iter().any(|e| matches!(e, Event::SwapLow { .. })), "{mode:?}: no SwapLow in {evs:?}");
        assert!(!evs.iter().any(|e| matches!(e, Event::PageLost { .. })), "{mode:?}: {evs:?}");
        // The exempt arena's pages, swapped to the tmpfs and back, are all intact.
        for p in 0..128 {
            check_page(&kept, seed, p);
        }
        drop((r, leak, kept, keeper, rt));
    }
}

/// Stores `pages` pages under a budget of `budget` bytes with the default swap capacity, then
/// checks every `stride`-th page.
fn store_with_defaults(budget: usize, pages: usize, stride: usize) {
    if runtime(16, 16, EvictionPath::Auto).is_none() {
        return;
    }
    let rt = Runtime::builder().read_env(false).frame_budget(budget).build().unwrap();
    let seed = seed(0x5EED_0003);
    let a = rt.arena("big").create().unwrap();
    let r = a.reserve(pages * PAGE).unwrap();
    for p in 0..pages {
        write_page(&r, seed, p).unwrap_or_else(|e| panic!("page {p} of {pages}: {e}\n{}", rt.stats()));
    }
    let mut rng = Rng(seed);
    for p in (0..pages).step_by(stride) {
        check_page(&r, seed, (p + rng.below(stride as u64) as usize).min(pages - 1));
    }
    let st = rt.stats();
    assert!(st.swap_used * PAGE as u64 >= (pages * PAGE - budget) as u64, "{st}");
}

#[test]
fn defaults_store_256_mib_under_8_mib() {
    store_with_defaults(8 << 20, (256 << 20) / PAGE, 16);
}

#[test]
#[ignore = "writes 2 GiB; run with --ignored (release mode recommended)"]
fn defaults_store_2_gib_under_64_mib() {
    store_with_defaults(64 << 20, (2 << 30) / PAGE, 64);
}

#[test]
fn in_thread_mode_grows_the_file_too() {
    let Some(rt) = runtime_with(64, 65_536, EvictionPath::Auto, |b| b.fault_mode(FaultMode::InThread)) else {
        return;
    };
    let seed = seed(0x5EED_0004);
    let a = rt.arena("a").create().unwrap();
    let r = a.reserve(2048 * PAGE).unwrap();
    for p in 0..2048 {
        write_page(&r, seed, p).unwrap();
    }
    for p in 0..2048 {
        check_page(&r, seed, p);
    }
    let st = rt.stats();
    assert!(st.swap_file_bytes > 0 && st.swap_file_bytes <= 64 << 20, "{st}");
}

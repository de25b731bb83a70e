//! File-backed regions: filled from the file, written back (Shared) or never (Private), the end
//! of the file, and the reclaim escalation order (clean drops, then file write-back, then swap).

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;
use pagewarden::{Error, EvictionPath, MapMode};
use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::os::unix::fs::FileExt;

/// An unlinked temporary file holding `pages` pages of a recognisable pattern.
fn data_file(pages: usize, tag: u8) -> File {
    let p = std::env::temp_dir().join(format!("pw-filemap-{}-{}", std::process::id(), rand_suffix()));
    let mut f = OpenOptions::new().read(true).write(true).create_new(true).open(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    let data: Vec<u8> = (0..pages * PAGE).map(|i| pattern(tag, i)).collect();
    f.write_all(&data).unwrap();
    f.rewind().unwrap();
    f
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn pattern(tag: u8, i: usize) -> u8 {
    tag ^ (i / PAGE) as u8 ^ (i as u8).wrapping_mul(7)
}

fn file_bytes(f: &File) -> Vec<u8> {
    let len = f.metadata().unwrap().len() as usize;
    let mut b = vec![0u8; len];
    f.read_exact_at(&mut b, 0).unwrap();
    b
}

#[test]
fn shared_map_writes_reach_the_file_on_flush_release_and_kill() {
    for path in PATHS {
        let Some(rt) = runtime_with(16, 64, path, |b| b.max_readahead(4)) else { continue };
        let f = data_file(40, 1);
        let a = rt.arena("shared").create().unwrap();
        let r = a.map_file(&f, 0, 40 * PAGE, MapMode::Shared).unwrap();
        let mut model = file_bytes(&f);
        // Read everything (more than the budget: clean pages are dropped and read again).
        let mut b = vec![0u8; 40 * PAGE];
        r.read(0, &mut b).unwrap();
        assert_eq!(b, model, "{path:?}: the region shows the file");
        for i in (0..40).step_by(3) {
            r.write(i * PAGE + 11, &[0xAB, 0xCD]).unwrap();
            model[i * PAGE + 11..i * PAGE + 13].copy_from_slice(&[0xAB, 0xCD]);
        }
        r.flush().unwrap();
        assert_eq!(file_bytes(&f), model, "{path:?}: after flush");
        r.read(0, &mut b).unwrap();
        assert_eq!(b, model);
        // Evictions of dirty pages write them back too; release writes the rest.
        for i in (1..40).step_by(2) {
            r.write(i * PAGE, &[i as u8]).unwrap();
            model[i * PAGE] = i as u8;
        }
        assert!(rt.stats().totals.file_writebacks > 0);
        assert_eq!(rt.stats().totals.writebacks, 0, "{path:?}: a shared map never uses swap");
        drop(r);
        assert_eq!(file_bytes(&f), model, "{path:?}: after release");
        // A killed arena's unflushed writes are written back as it dies, as a dying process's
        // writes to a shared mapping reach the file.
        let k = rt.arena("doomed").create().unwrap();
        let r = k.map_file(&f, 0, 40 * PAGE, MapMode::Shared).unwrap();
        r.fill(5 * PAGE, 2 * PAGE, 0x77).unwrap();
        model[5 * PAGE..7 * PAGE].fill(0x77);
        k.kill().unwrap();
        assert_eq!(file_bytes(&f), model, "{path:?}: after kill");
        rt.debug_check_invariants().unwrap();
    }
}

/// Evictions that wait 150 ms before they take their pages out of the arena (a window for a kill,
/// release or flush to land), and whose take then fails with `errno`, if any.
fn slow_takes(errno: Option<i32>) -> pagewarden::SwapFaults {
    pagewarden::SwapFaults {
        take_delay: Some(std::time::Duration::from_millis(150)),
        take_errno: errno,
        ..Default::default()
    }
}

/// Where the file first differs from `model`, if anywhere.
fn first_diff(f: &File, model: &[u8]) -> Option<usize> {
    file_bytes(f).iter().zip(model).position(|(x, y)| x != y)
}

/// A kill that lands while an eviction is about to take a dirty page of a `Shared` map out of
/// its arena, and the take then fails (as the kernel's may, e.g. EBUSY): the kill left that page
/// to the eviction, so the eviction must write it to the file, not drop it.
#[test]
fn a_shared_page_an_eviction_could_not_take_from_a_dying_region_reaches_the_file() {
    for path in PATHS {
        let faults = slow_takes(Some(libc::EBUSY));
        let Some(rt) = runtime_with(16, 64, path, |b| b.swap_faults(faults)) else { continue };
        let f = data_file(4, 3);
        let a = rt.arena("dying").create().unwrap();
        let r = a.map_file(&f, 0, 4 * PAGE, MapMode::Shared).unwrap();
        let mut model = file_bytes(&f);
        r.fill(PAGE, 2 * PAGE, 0x5A).unwrap();
        model[PAGE..3 * PAGE].fill(0x5A);
        std::thread::scope(|s| {
            // The eviction waits, then cannot take its pages; meanwhile the arena is killed.
            let evict = s.spawn(|| r.page_out(0, 4 * PAGE));
            std::thread::sleep(std::time::Duration::from_millis(50));
            a.kill().expect("the first kill reports");
            let _ = evict.join().unwrap();
        });
        let diff = first_diff(&f, &model);
        assert!(diff.is_none(), "{path:?}: after the kill, the file lost a write (first at offset {diff:?})");
        drop(r);
        rt.debug_check_invariants().unwrap();
    }
}

/// A flush that finds a dirty page of its range on its way out (an eviction is about to write it
/// to the file) waits for that write; when the eviction then cannot take the page (the kernel may
/// refuse, e.g. EBUSY), the page is still dirty in memory, and the flush must write it itself
/// before it returns.
#[test]
fn a_flush_writes_a_page_an_eviction_in_flight_could_not_take() {
    for path in PATHS {
        let faults = slow_takes(Some(libc::EBUSY));
        let Some(rt) = runtime_with(16, 64, path, |b| b.swap_faults(faults)) else { continue };
        let f = data_file(4, 5);
        let a = rt.arena("flushed").create().unwrap();
        let r = a.map_file(&f, 0, 4 * PAGE, MapMode::Shared).unwrap();
        let mut model = file_bytes(&f);
        r.fill(0, 4 * PAGE, 0xC3).unwrap();
        model.fill(0xC3);
        std::thread::scope(|s| {
            let evict = s.spawn(|| r.page_out(0, 4 * PAGE));
            std::thread::sleep(std::time::Duration::from_millis(50));
            r.flush().unwrap();
            let diff = first_diff(&f, &model);
            assert!(diff.is_none(), "{path:?}: right after flush() the file lacks a write (first at offset {diff:?})");
            let _ = evict.join().unwrap();
        });
        drop(r);
        rt.debug_check_invariants().unwrap();
    }
}

/// A region released while the background reclaimer is about to take its dirty `Shared` pages
/// out (to write them to the file): the release waits for the eviction, which still has to
/// take the pages from a registered range; if the kernel then refuses the take (e.g. EBUSY),
/// the eviction writes the page itself. Either way the file holds every write once the region's
/// drop returns.
#[test]
fn a_release_during_an_eviction_of_a_shared_map_loses_no_write() {
    for path in PATHS {
        for errno in [None, Some(libc::EBUSY)] {
            let faults = slow_takes(errno);
            // Background reclaim keeps 6 of the 16 frames free: 12 dirty pages are too many.
            let Some(rt) = runtime_with(16, 64, path, |b| b.swap_faults(faults).watermarks(6, 6).pin_limit(4 * PAGE))
            else {
                continue;
            };
            let f = data_file(12, 9);
            let a = rt.arena("released").create().unwrap();
            let r = a.map_file(&f, 0, 12 * PAGE, MapMode::Shared).unwrap();
            let mut model = file_bytes(&f);
            r.fill(0, 12 * PAGE, 0x6B).unwrap();
            model.fill(0x6B);
            // The reclaimer has picked some of the pages and waits before taking them.
            std::thread::sleep(std::time::Duration::from_millis(60));
            drop(r);
            let diff = first_diff(&f, &model);
            assert!(
                diff.is_none(),
                "{path:?}, take errno {errno:?}: after the release the file lacks a write (first at offset {diff:?})"
            );
            rt.debug_check_invariants().unwrap();
        }
    }
}

#[test]
fn private_map_never_modifies_the_file() {
    for path in PATHS {
        let Some(rt) = runtime_with(12, 128, path, |b| b.max_readahead(4)) else { continue };
        let f = data_file(30, 2);
        let before = file_bytes(&f);
        let a = rt.arena("private").create().unwrap();
        let r = a.map_file(&f, 0, 30 * PAGE, MapMode::Private).unwrap();
        let mut model = before.clone();
        for i in 0..30 {
            r.write(i * PAGE + 100, &[0xEE; 50]).unwrap();
            model[i * PAGE + 100..i * PAGE + 150].fill(0xEE);
        }
        rt.reclaim(64);
        let mut b = vec![0u8; 30 * PAGE];
        r.read(0, &mut b).unwrap();
        assert_eq!(b, model, "{path:?}: the private copy keeps its writes through swap");
        assert!(rt.stats().totals.writebacks > 0, "{path:?}: private writes go to swap");
        r.flush().unwrap();
        drop(r);
        a.kill();
        assert_eq!(file_bytes(&f), before, "{path:?}: the file is untouched");
        rt.debug_check_invariants().unwrap();
    }
}

#[test]
fn the_end_of_the_file() {
    let Some(rt) = runtime(32, 64, EvictionPath::Auto) else { return };
    let f = data_file(0, 0);
    f.set_len((2 * PAGE + 100) as u64).unwrap();
    f.write_all_at(&[9u8; 100], (2 * PAGE) as u64).unwrap();
    let a = rt.arena("eof").create().unwrap();
    let r = a.map_file(&f, 0, 8 * PAGE, MapMode::Shared).unwrap();
    // The last, partial page: the file's bytes, then zeros.
    let mut b = vec![0u8; PAGE];
    r.read(2 * PAGE, &mut b).unwrap();
    assert!(b[..100].iter().all(|&x| x == 9) && b[100..].iter().all(|&x| x == 0));
    // Wholly past the end: a typed error, for reads and writes.
    match r.read(3 * PAGE, &mut b) {
        Err(Error::BeyondEndOfFile { offset, file_len }) => {
            assert_eq!((offset, file_len), (3 * PAGE, (2 * PAGE + 100) as u64));
        }
        other => panic!("reading past the end of the file: {other:?}"),
    }
    assert!(matches!(r.write(2 * PAGE + 4000, &[1; 200]), Err(Error::BeyondEndOfFile { .. })));
    // Writing the partial page never extends the file.
    r.write(2 * PAGE + 50, &[1; 200]).unwrap();
    r.flush().unwrap();
    assert_eq!(f.metadata().unwrap().len(), (2 * PAGE + 100) as u64);
    let mut tail = [0u8; 100];
    f.read_exact_at(&mut tail, (2 * PAGE) as u64).unwrap();
    assert!(tail[..50].iter().all(|&x| x == 9) && tail[50..].iter().all(|&x| x == 1));
    // Growing the file makes the pages usable.
    f.set_len((8 * PAGE) as u64).unwrap();
    r.read(5 * PAGE, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0));
}

/// Runs in a child process: raw access past the end of the file raises SIGBUS, as with mmap.
#[test]
fn raw_access_past_the_end_child() {
    if !is_child("raw_access_past_the_end_child") {
        return;
    }
    let rt = runtime(32, 64, EvictionPath::Auto).expect("uffd available in the child");
    let f = data_file(1, 3);
    let a = rt.arena("eof").create().unwrap();
    let r = a.map_file(&f, 0, 4 * PAGE, MapMode::Private).unwrap();
    // SAFETY: inside the region, which outlives the access; page 0 is inside the file.
    let first = unsafe { r.as_ptr().read_volatile() };
    println!("first byte {first}");
    // SAFETY: inside the region; the page is past the end of the file, so this raises SIGBUS.
    unsafe { r.as_ptr().add(2 * PAGE).read_volatile() };
    println!("UNREACHABLE: a raw read past the end of the file completed");
    std::process::exit(3);
}

#[test]
fn raw_access_past_the_end_raises_sigbus() {
    if is_child("raw_access_past_the_end_child") || runtime(16, 16, EvictionPath::Auto).is_none() {
        return;
    }
    let (status, stdout) = run_child("raw_access_past_the_end_child");
    assert!(stdout.contains(&format!("first byte {}", pattern(3, 0))), "{stdout}");
    assert!(!stdout.contains("UNREACHABLE"), "{stdout}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGBUS), "child status {status:?}; stdout {stdout}");
}

/// The escalation scene: 20 old dirty anonymous pages, then 36 newer pages of a file mapped with
/// `mode` (the runtime's budget is 64 frames). Keep it alive while testing: it owns the regions.
struct Scene {
    anon: pagewarden::Arena,
    _ra: pagewarden::Region,
    file: File,
    rf: pagewarden::Region,
}

fn scene(rt: &pagewarden::Runtime, mode: MapMode) -> Scene {
    let anon = rt.arena("anon").create().unwrap();
    let ra = anon.reserve(20 * PAGE).unwrap();
    ra.fill(0, 20 * PAGE, 5).unwrap();
    let file = data_file(36, 4);
    let rf = rt.arena("files").create().unwrap().map_file(&file, 0, 36 * PAGE, mode).unwrap();
    Scene { anon, _ra: ra, file, rf }
}

/// A burst of demand: 30 new pages in a new arena.
fn burst(rt: &pagewarden::Runtime) -> pagewarden::Region {
    let rb = rt.arena("burst").create().unwrap().reserve(30 * PAGE).unwrap();
    rb.fill(0, 30 * PAGE, 6).unwrap();
    rb
}

#[test]
fn clean_file_pages_go_before_any_swap_write() {
    for path in PATHS {
        let Some(rt) = runtime_with(64, 256, path, |b| b.max_readahead(1)) else { continue };
        let sc = scene(&rt, MapMode::Private);
        let (anon, rf) = (&sc.anon, &sc.rf);
        let mut b = vec![0u8; 36 * PAGE];
        rf.read(0, &mut b).unwrap();
        let st = rt.stats();
        assert_eq!((st.totals.writebacks, st.totals.clean_drops), (0, 0), "{path:?}: {st}");
        let _rb = burst(&rt);
        let st = rt.stats();
        assert!(st.totals.clean_drops >= 20, "{path:?}: clean file pages must be dropped: {st}");
        assert_eq!(st.totals.writebacks, 0, "{path:?}: no swap write while clean pages remain: {st}");
        assert_eq!(anon.stats().resident_pages, 20, "{path:?}: the older dirty pages stay: {st}");
        // The dropped file pages read back from the file.
        rf.read(0, &mut b).unwrap();
        assert!(b.iter().enumerate().all(|(i, &x)| x == pattern(4, i)));
        rt.debug_check_invariants().unwrap();
    }
}

#[test]
fn dirty_shared_file_pages_are_written_back_before_swap() {
    for path in PATHS {
        let Some(rt) = runtime_with(64, 256, path, |b| b.max_readahead(1)) else { continue };
        let sc = scene(&rt, MapMode::Shared);
        let (f, rf) = (&sc.file, &sc.rf);
        rf.fill(0, 36 * PAGE, 0x3C).unwrap();
        let st = rt.stats();
        assert_eq!((st.totals.writebacks, st.totals.file_writebacks), (0, 0), "{path:?}: {st}");
        let _rb = burst(&rt);
        let st = rt.stats();
        assert!(st.totals.file_writebacks >= 20, "{path:?}: dirty file pages must be written back: {st}");
        assert_eq!(st.totals.writebacks, 0, "{path:?}: before any swap write: {st}");
        // What went back is on disk.
        let disk = file_bytes(f);
        let evicted = (0..36).filter(|&i| disk[i * PAGE..(i + 1) * PAGE].iter().all(|&x| x == 0x3C)).count();
        assert!(evicted as u64 >= st.totals.file_writebacks.min(36), "{path:?}");
        rt.debug_check_invariants().unwrap();
    }
}

#[test]
fn bad_file_maps_are_refused() {
    let Some(rt) = runtime(16, 16, EvictionPath::Auto) else { return };
    let a = rt.arena("a").create().unwrap();
    let f = data_file(4, 1);
    assert!(matches!(a.map_file(&f, 100, PAGE, MapMode::Private), Err(Error::InvalidArgument { what: "offset", .. })));
    assert!(matches!(a.map_file(&f, 0, 0, MapMode::Private), Err(Error::InvalidArgument { .. })));
    assert!(matches!(a.map_file(&f, u64::MAX - 4095, PAGE, MapMode::Private), Err(Error::InvalidArgument { .. })));
    // A read-only file: fine Private, refused Shared.
    let p = std::env::temp_dir().join(format!("pw-ro-{}", std::process::id()));
    std::fs::write(&p, vec![1u8; PAGE]).unwrap();
    let ro = File::open(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    assert!(matches!(a.map_file(&ro, 0, PAGE, MapMode::Shared), Err(Error::InvalidArgument { what: "file", .. })));
    let r = a.map_file(&ro, 0, PAGE, MapMode::Private).unwrap();
    r.write(0, &[2]).unwrap();
    // Forking an arena with a Shared map is refused (the file, not a snapshot, holds its pages);
    // with Private maps it works.
    let fr = a.fork("private-ok").unwrap();
    let mut b = [0u8; 2];
    fr.region(&r).unwrap().read(0, &mut b).unwrap();
    assert_eq!(b, [2, 1]);
    let _s = a.map_file(&f, 0, PAGE, MapMode::Shared).unwrap();
    assert!(matches!(a.fork("shared-no"), Err(Error::InvalidArgument { what: "fork", .. })));
}

#[test]
fn only_regular_files_can_be_mapped() {
    let Some(rt) = runtime(16, 16, EvictionPath::Auto) else { return };
    let a = rt.arena("files").create().unwrap();
    let refused = |what: &str, fd: &dyn std::os::fd::AsFd, kind: &str| {
        let fd = fd.as_fd();
        let e = a.map_file(&fd, 0, PAGE, MapMode::Private).unwrap_err();
        assert!(matches!(e, Error::NotARegularFile { file_type } if file_type == kind), "{what}: {e}");
        assert!(e.to_string().contains(kind) && e.to_string().contains("regular file"), "{what}: {e}");
    };
    refused("a directory", &File::open(std::env::temp_dir()).unwrap(), "directory");
    let mut child = std::process::Command::new("true").stdout(std::process::Stdio::piped()).spawn().unwrap();
    refused("a pipe", child.stdout.as_ref().unwrap(), "FIFO (pipe)");
    child.wait().unwrap();
    let (s1, _s2) = std::os::unix::net::UnixStream::pair().unwrap();
    refused("a socket", &s1, "socket");
    refused("a character device", &File::open("/dev/null").unwrap(), "character device");
    // A regular file still maps.
    let f = data_file(1, 3);
    let r = a.map_file(&f, 0, PAGE, MapMode::Private).unwrap();
    let mut b = [0u8; 4];
    r.read(0, &mut b).unwrap();
}

//! File-backed memory is safer under pressure: clean file pages can simply be dropped, and read
//! again from the file, so reclaim takes them before it writes anything to swap.
//!
//! ```text
//! cargo run --example file_backed
//! ```
//!
//! An `index` arena maps a 24 MiB file and reads all of it (clean pages: the file has them). A
//! `worker` arena holds 4 MiB of its own dirty data. Then a burst of 8 MiB of new anonymous
//! data arrives under a 16 MiB budget. The escalation path, in order: drop clean pages (no I/O),
//! write back dirty pages of shared file maps, swap anonymous pages out, and only then the OOM
//! killer. The counters show the first step covering the whole burst: not one page goes to swap.
//! Then a `Shared` map's writes go back to the file on `flush`, and a `Private` map's never do.

use pagewarden::{MapMode, Runtime};
use std::io::Write;
use std::os::unix::fs::FileExt;

const MIB: usize = 1 << 20;

fn temp_file(len: usize, byte: u8) -> std::io::Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!("pagewarden-file-backed-{}-{byte}", std::process::id()));
    let mut f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    std::fs::remove_file(&path)?; // unlinked: gone when closed
    f.write_all(&vec![byte; len])?;
    Ok(f)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The library's warnings about its configuration (a misspelt PAGEWARDEN_* name) show
    // without RUST_LOG; RUST_LOG replaces this filter.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("pagewarden::config=warn,pagewarden::runtime=warn"),
    )
    .init();
    let rt = Runtime::builder().frame_budget(16 * MIB).swap_capacity(64 * MIB).build()?;
    let file = temp_file(24 * MIB, 0x42)?;
    let index = rt.arena("index").create()?;
    let map = index.map_file(&file, 0, 24 * MIB, MapMode::Private)?;
    let mut buf = vec![0u8; MIB];
    for off in (0..24 * MIB).step_by(MIB) {
        map.read(off, &mut buf)?;
    }
    let worker = rt.arena("worker").create()?;
    let own = worker.reserve(4 * MIB)?;
    own.fill(0, 4 * MIB, 7)?;
    let st = rt.stats();
    println!(
        "index read its 24 MiB file, worker wrote 4 MiB: {} pages read from the file, {} pages in swap",
        st.totals.file_reads, st.swap_used
    );

    let dropped_before = st.totals.clean_drops;
    let burst = rt.arena("burst").create()?;
    let b = burst.reserve(8 * MIB)?;
    b.fill(0, 8 * MIB, 9)?;
    let st = rt.stats();
    println!(
        "an 8 MiB burst arrived: {} clean file pages dropped for it (no I/O), {} pages written to swap, {} written \
         back to files",
        st.totals.clean_drops - dropped_before,
        st.totals.writebacks,
        st.totals.file_writebacks
    );
    println!("worker still has {} of its {} pages in memory", worker.stats().resident_pages, 4 * MIB / 4096);
    println!(
        "why: the file's pages were clean, so dropping them cost nothing (they are read again from the file \
         when touched); the worker's dirty pages would have needed a swap write, so they were left alone\n"
    );
    assert_eq!(st.totals.writebacks, 0);
    map.read(0, &mut buf)?;
    assert!(buf.iter().all(|&x| x == 0x42), "dropped file pages read back from the file");

    // Shared: writes reach the file on flush. Private: never.
    let shared_file = temp_file(MIB, 0)?;
    let shared = index.map_file(&shared_file, 0, MIB, MapMode::Shared)?;
    shared.write(100, b"written through a Shared map")?;
    map.write(100, b"written through a Private map")?;
    shared.flush()?;
    let mut disk = [0u8; 28];
    shared_file.read_exact_at(&mut disk, 100)?;
    println!("after flush the shared file holds: {:?}", String::from_utf8_lossy(&disk));
    let mut disk = [0u8; 8];
    file.read_exact_at(&mut disk, 100)?;
    println!("the privately mapped file still holds: {disk:02x?}");
    println!("why: a Shared map is the file (like MAP_SHARED); a Private map is a copy-on-write view of it");
    Ok(())
}

//! Process-wide check (alone in its test binary): metadata grows with touched pages, not with
//! reserved size.

#![allow(clippy::cast_possible_truncation)]

mod common;
use common::*;

#[test]
fn reservation_costs_no_memory_and_touched_pages_cost_little() {
    let Some(rt) = runtime_with(256, 1 << 17, pagewarden::EvictionPath::Auto, |b| b) else {
        return;
    };
    let arena = rt.arena("meta").create().unwrap();

    // A 1 TiB reservation, touched at both ends, adds under 1 MiB of RSS.
    let before = rss_bytes();
    let huge = arena.reserve(1 << 40).unwrap();
    huge.write(0, b"first").unwrap();
    huge.write((1 << 40) - 8, b"last").unwrap();
    let grown = rss_bytes().saturating_sub(before);
    eprintln!("1 TiB reservation: RSS +{} KiB", grown >> 10);
    assert!(grown < 1 << 20, "a 1 TiB reservation added {grown} bytes of RSS");
    let mut b = [0u8; 5];
    huge.read(0, &mut b).unwrap();
    assert_eq!(&b, b"first");
    drop(huge);

    // Dense touches: at most 16 bytes of bookkeeping per touched page.
    let r = arena.reserve(1 << 30).unwrap();
    let pages = 50_000usize;
    for p in 0..pages {
        r.write(p * PAGE, &[1]).unwrap();
    }
    let st = rt.stats();
    let per_page = st.metadata_bytes as f64 / st.tracked_pages as f64;
    eprintln!("sequential: {} bytes for {} pages = {per_page:.2} B/page", st.metadata_bytes, st.tracked_pages);
    assert!(st.tracked_pages >= pages as u64);
    assert!(per_page <= 16.0, "{per_page:.2} bytes of metadata per touched page");
    drop(r);

    // Sparse touches (one page in every 64 KiB): reported, and bounded by a leaf per page.
    let r = arena.reserve(1 << 36).unwrap();
    let mut rng = Rng(seed(5));
    for _ in 0..5_000 {
        let p = rng.below(1 << 20) as usize * 16;
        r.write(p * PAGE, &[1]).unwrap();
    }
    let st = rt.stats();
    eprintln!(
        "sparse: {} bytes for {} pages = {:.1} B/page",
        st.metadata_bytes,
        st.tracked_pages,
        st.metadata_bytes as f64 / st.tracked_pages as f64
    );
    assert!(st.metadata_bytes / st.tracked_pages <= 600);
}

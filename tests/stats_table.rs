//! The stats table: at most 100 columns, its latency footer naming the fault mode it was measured
//! in, the commit limit said to apply only under `Overcommit::Strict`, and no per-page figure
//! made up when no page holds data.

mod common;
use common::*;
use pagewarden::{EvictionPath, FaultMode, Overcommit};

fn table(mode: FaultMode, overcommit: Overcommit, swap_pages: usize, touch: bool) -> Option<String> {
    let rt = runtime_with(64, swap_pages, EvictionPath::Auto, |b| b.fault_mode(mode).overcommit(overcommit))?;
    let a = rt.arena("a-long-arena-name").create().unwrap();
    let r = a.reserve(32 * PAGE).unwrap();
    if touch {
        r.fill(0, 32 * PAGE, 7).unwrap();
    }
    let t = rt.stats().to_string();
    for l in t.lines() {
        assert!(l.chars().count() <= 100, "a line of {} columns:\n{l}\n{t}", l.chars().count());
        assert_eq!(l, l.trim_end(), "trailing blanks:\n{t}");
    }
    Some(t)
}

#[test]
fn the_table_fits_100_columns_and_says_what_its_figures_mean() {
    let Some(t) = table(FaultMode::InThread, Overcommit::Always, 64, true) else { return };
    assert!(t.contains("SIGBUS handler"), "{t}");
    assert!(!t.contains("handler thread"), "{t}");
    assert!(t.contains("would apply only under Overcommit::Strict"), "{t}");
    assert!(t.contains("B/page"), "{t}");

    let t = table(FaultMode::HandlerThreads, Overcommit::Strict { ratio: 1.0 }, 64, true).unwrap();
    assert!(t.contains("in a handler thread"), "{t}");
    assert!(t.contains("limit (Overcommit::Strict)"), "{t}");
    assert!(!t.contains("would apply"), "{t}");

    let t = table(FaultMode::HandlerThreads, Overcommit::Always, 0, false).unwrap();
    assert!(t.contains("swap: none"), "{t}");
    assert!(t.contains("no page holding data"), "{t}");
    assert!(!t.contains("B/page"), "{t}");
}

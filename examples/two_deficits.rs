//! When frames and swap are both short, the best victim frees some of each: the `Balanced`
//! policy.
//!
//! ```text
//! cargo run --example two_deficits
//! ```
//!
//! Three arenas, equally important, hold memory in different places: `in-ram` only frames,
//! `in-swap` only swap slots, `mixed` some of each (and less in total). The runtime is short of
//! 1 MiB of frames *and* 1 MiB of swap — what an exhausted fault asks for when swap is full. The
//! runtime is in dry-run mode so that the three policies see the same arenas.

use pagewarden::{Balanced, Deficit, Error, Greedy, LinuxBadness, OomReport, Runtime};
use std::time::Duration;

const PAGE: usize = 4096;
const MIB: usize = 1 << 20;

fn mib(pages: u64) -> f64 {
    pages as f64 * PAGE as f64 / MIB as f64
}

fn chosen(r: &OomReport) -> String {
    r.victims.iter().map(|v| format!("'{}'", v.name)).collect::<Vec<_>>().join(" + ")
}

/// What is still missing after the report's victims die.
fn left(r: &OomReport) -> String {
    let frames = r.deficit.frames.saturating_sub(r.victims.iter().map(|v| v.frames_freed).sum());
    let slots = r.deficit.slots.saturating_sub(r.victims.iter().map(|v| v.slots_freed).sum());
    match (frames, slots) {
        (0, 0) => "both deficits met".into(),
        (f, 0) => format!("still {:.1} MiB of frames short", mib(f)),
        (0, s) => format!("still {:.1} MiB of swap short: the next dirty page has nowhere to go", mib(s)),
        (f, s) => format!("still short of {:.1} MiB of frames and {:.1} MiB of swap", mib(f), mib(s)),
    }
}

fn main() -> Result<(), Error> {
    // The library's warnings about its configuration (a misspelt PAGEWARDEN_* name) show
    // without RUST_LOG; RUST_LOG replaces this filter.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("pagewarden::config=warn,pagewarden::runtime=warn"),
    )
    .init();
    let rt = Runtime::builder().frame_budget(8 * MIB).swap_capacity(8 * MIB).oom_dry_run(true).build()?;
    // Equal profiles (the same age, so the same impact cost): only where their memory is differs.
    let arena = |name: &str| rt.arena(name).age(Duration::from_secs(3600)).create();
    let (in_swap, mixed, in_ram) = (arena("in-swap")?, arena("mixed")?, arena("in-ram")?);

    let swapped = in_swap.reserve(4 * MIB)?;
    swapped.fill(0, 4 * MIB, 1)?;
    swapped.page_out(0, 4 * MIB)?; // written to swap: slots, no frames
    let half = mixed.reserve(2 * MIB)?;
    half.fill(0, 2 * MIB, 2)?;
    half.page_out(0, MIB)?; // 1 MiB in swap, 1 MiB in frames
    let resident = in_ram.reserve(5 * MIB)?;
    resident.fill(0, 5 * MIB, 3)?; // frames only

    for a in [&in_ram, &in_swap, &mixed] {
        let s = a.stats();
        println!("{:<8} {:.1} MiB in frames, {:.1} MiB in swap", a.name(), mib(s.resident_pages), mib(s.swapped_pages));
    }
    let deficit = Deficit { frames: (MIB / PAGE) as u64, slots: (MIB / PAGE) as u64 };
    println!("\nshort of {:.1} MiB of frames and {:.1} MiB of swap slots:\n", mib(deficit.frames), mib(deficit.slots));

    let mut reports = Vec::new();
    for (name, report) in [
        ("LinuxBadness", {
            rt.set_victim_policy(LinuxBadness);
            rt.run_oom_killer(deficit)
        }),
        ("Greedy", {
            rt.set_victim_policy(Greedy);
            rt.run_oom_killer(deficit)
        }),
        ("Balanced", {
            rt.set_victim_policy(Balanced);
            rt.run_oom_killer(deficit)
        }),
    ] {
        println!("  {name:<12} would kill {:<10} -> {}", chosen(&report), left(&report));
        reports.push(report);
    }
    println!(
        "\nwhy:\n  \
         LinuxBadness and Greedy measure memory in one dimension, frames and slots added up, so the\n  \
         biggest or best-value arena wins; here that is 'in-ram', which frees frames but not one swap\n  \
         slot. The fault gets its frame, but swap stays full: the next time a dirty page must be evicted\n  \
         it has nowhere to go, and the runtime is out of memory again at once.\n  \
         Balanced rates each arena by the progress it makes on the *less* relieved deficit (plus a\n  \
         quarter of its total progress), per unit of impact cost. 'mixed' is the smallest arena, but\n  \
         the only one that covers both deficits, so it is the one to kill."
    );
    assert_eq!(chosen(&reports[0]), "'in-ram'");
    assert_eq!(chosen(&reports[1]), "'in-ram'");
    assert_eq!(chosen(&reports[2]), "'mixed'");

    // Without 'mixed', no single arena relieves both: Balanced takes one of each kind.
    drop(half);
    let report = rt.run_oom_killer(deficit);
    println!(
        "\nwithout 'mixed' (its region released), Balanced would kill {} -> {}:\n  \
         one arena of each kind rather than two that free the same resource.",
        chosen(&report),
        left(&report)
    );
    let mut names: Vec<&str> = report.victims.iter().map(|v| v.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["in-ram", "in-swap"]);
    Ok(())
}

//! Choosing a victim is a knapsack problem: `LinuxBadness` and `Greedy` look at the same arenas
//! and choose differently.
//!
//! ```text
//! cargo run --example knapsack
//! ```
//!
//! Four arenas hold real memory: an interactive `ui` (6 MiB, the largest), two background batch
//! jobs (2.5 MiB each) and a small background `thumbs` (0.5 MiB). Memory is short by 4 MiB. The
//! kernel's formula kills the largest footprint; Greedy weighs what each kill frees (its weight,
//! counted up to the deficit) against what it costs the user (its value) and fills the knapsack
//! with the best ratio first. The runtime is in dry-run mode, so each policy reports whom it
//! would kill and nobody dies: both policies see exactly the same arenas.

use pagewarden::{Deficit, Error, Event, Greedy, Impact, LinuxBadness, OomReport, Runtime, impact_cost};

const PAGE: usize = 4096;
const MIB: usize = 1 << 20;

fn mib(pages: u64) -> f64 {
    pages as f64 * PAGE as f64 / MIB as f64
}

fn chosen(r: &OomReport) -> String {
    r.victims.iter().map(|v| format!("'{}'", v.name)).collect::<Vec<_>>().join(" + ")
}

fn main() -> Result<(), Error> {
    // The library's warnings about its configuration (a misspelt PAGEWARDEN_* name) show
    // without RUST_LOG; RUST_LOG replaces this filter.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("pagewarden::config=warn,pagewarden::runtime=warn"),
    )
    .init();
    let rt = Runtime::builder().frame_budget(16 * MIB).swap_capacity(16 * MIB).oom_dry_run(true).build()?;
    let mut keep = Vec::new();
    for (name, impact, size) in [
        ("ui", Impact::Interactive, 6 * MIB),
        ("batch-a", Impact::Background, 5 * MIB / 2),
        ("batch-b", Impact::Background, 5 * MIB / 2),
        ("thumbs", Impact::Background, MIB / 2),
    ] {
        let arena = rt.arena(name).impact(impact).create()?;
        let region = arena.reserve(size)?;
        region.fill(0, size, 1)?; // resident, private memory: all of it is freed by a kill
        keep.push(region);
    }
    let deficit = Deficit { frames: (4 * MIB / PAGE) as u64, slots: 0 };
    println!("memory is short by {:.1} MiB of frames; every arena is killable\n", mib(deficit.frames));

    rt.set_victim_policy(LinuxBadness);
    let linux = rt.run_oom_killer(deficit);
    rt.set_victim_policy(Greedy);
    let greedy = rt.run_oom_killer(deficit);
    // The same reports were published as events (WouldKill, in a dry run).
    assert_eq!(rt.events().try_iter().filter(|e| matches!(e, Event::WouldKill(_))).count(), 2);

    let total = linux.budget_frames + linux.swap_slots;
    println!("{:<8} {:>9} {:>9} {:>12} {:>24}", "arena", "frees", "badness", "impact cost", "MiB freed (to 4) / cost");
    for row in &linux.candidates {
        let c = &row.candidate;
        let useful = c.unique().min(deficit.frames);
        println!(
            "{:<8} {:>5.1} MiB {:>9} {:>12.2} {:>24.2}",
            c.name,
            mib(c.unique()),
            c.badness(total),
            impact_cost(c),
            mib(useful) / impact_cost(c)
        );
    }
    println!("\nLinuxBadness would kill {}", chosen(&linux));
    println!("Greedy       would kill {}\n", chosen(&greedy));
    println!(
        "why they differ:\n  \
         LinuxBadness is the kernel's oom_badness(): the largest footprint (resident + swap + page\n  \
         tables, shifted by oom_score_adj) dies, one victim per OOM. It knows nothing of importance, so\n  \
         the interactive ui goes, because it is biggest.\n  \
         Greedy treats the choice as a knapsack: each arena frees some memory (counted only up to what\n  \
         is missing: freeing 6 MiB against a 4 MiB deficit is worth 4) and costs something to lose\n  \
         (impact_cost: Interactive 16, Normal 4, Background 1, adjusted by oom_score_adj, niceness,\n  \
         CPU time, age and prefer/avoid marks). It takes the best memory per cost first until the\n  \
         deficit is covered, drops victims the others make redundant, and keeps the result only if no\n  \
         single arena covers the deficit more cheaply. Two background jobs (cost 2 together) beat the ui\n  \
         (cost 16); 'thumbs' is as cheap but too small to matter once the batch jobs are chosen."
    );

    // A deficit that only the ui can cover: then both agree.
    let big = Deficit { frames: (23 * MIB / 4 / PAGE) as u64, slots: 0 };
    let greedy_big = rt.run_oom_killer(big);
    println!(
        "\nshort by {:.1} MiB instead, more than all the background arenas hold together (5.5 MiB):\n  \
         Greedy would kill {}: when nothing cheaper is enough, the expensive victim is the only one.\n  \
         (The background arenas were chosen first and then dropped as redundant: the ui covers it alone.)",
        mib(big.frames),
        chosen(&greedy_big)
    );
    assert_eq!(chosen(&linux), "'ui'");
    let mut names: Vec<&str> = greedy.victims.iter().map(|v| v.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["batch-a", "batch-b"]);
    assert_eq!(chosen(&greedy_big), "'ui'");
    Ok(())
}

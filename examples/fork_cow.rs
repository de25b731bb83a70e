//! `fork()` optimism: a parent far larger than the budget is forked, and the fork costs nothing
//! until somebody writes — unless the commit policy insists on being pessimistic.
//!
//! ```text
//! cargo run --example fork_cow
//! ```
//!
//! A `parent` arena holds 48 MiB of data under a 16 MiB budget (the rest is in swap): a scaled-down
//! version of the 7 GiB process on an 8 GiB machine that calls `fork()`. Under the default
//! overcommit the fork succeeds at once and charges no frame: every page is shared, backed once
//! (by the parent's frame or one swap slot) until one side writes it. The child then writes a
//! little and reads everything; only its writes cost it memory of its own. Under
//! `Overcommit::Strict` the same fork is refused up front, because the child could in principle
//! write every page and the runtime would have promised memory it does not have.

use pagewarden::{Error, Overcommit, Runtime};
use std::time::Instant;

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;
const DATA: usize = 48 * MIB;

fn main() -> Result<(), Error> {
    // The library's warnings about its configuration (a misspelt PAGEWARDEN_* name) show
    // without RUST_LOG; RUST_LOG replaces this filter.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("pagewarden::config=warn,pagewarden::runtime=warn"),
    )
    .init();
    for strict in [false, true] {
        let overcommit = if strict { Overcommit::Strict { ratio: 0.5 } } else { Overcommit::Always };
        let rt = Runtime::builder().frame_budget(16 * MIB).swap_capacity(64 * MIB).overcommit(overcommit).build()?;
        println!("--- overcommit {overcommit:?}: budget 16 MiB, swap 64 MiB ---");
        let parent = rt.arena("parent").create()?;
        let data = parent.reserve(DATA)?;
        for p in 0..DATA / PAGE {
            data.write(p * PAGE, &(p as u64).to_le_bytes())?;
        }
        let st = rt.stats();
        println!(
            "parent wrote 48 MiB: {} MiB resident, {} MiB in swap",
            st.frames_in_use * PAGE as u64 / MIB as u64,
            st.swap_used * PAGE as u64 / MIB as u64
        );
        let before = rt.stats().frames_in_use;
        let t0 = Instant::now();
        let fork = match parent.fork("child") {
            Ok(f) => f,
            Err(e @ Error::CommitLimit { .. }) => {
                println!("fork refused: {e}");
                println!(
                    "why: Strict counts every byte either side might write ({} MiB committed already) against \
                     swap + ratio x budget; a second 48 MiB does not fit, so the fork fails now instead of an \
                     OOM kill later\n",
                    st.committed_bytes / MIB as u64
                );
                continue;
            }
            Err(e) => return Err(e),
        };
        let took = t0.elapsed();
        println!(
            "fork took {:.2} ms and charged {} frames; the child shares {} MiB with the parent",
            took.as_secs_f64() * 1e3,
            rt.stats().frames_in_use.saturating_sub(before),
            fork.arena().stats().shared_pages * PAGE as u64 / MIB as u64
        );
        let child = fork.region(&data).expect("the child's copy of the region");
        // The child writes 1 MiB, the parent 1 MiB elsewhere: each write copies one page.
        for p in 0..MIB / PAGE {
            child.write(p * PAGE, b"child!!!")?;
            data.write(DATA - MIB + p * PAGE, b"parent!!")?;
        }
        // Both sides still read the fork's moment everywhere else.
        let mut buf = [0u8; 8];
        let mut ok = 0;
        for p in 0..DATA / PAGE {
            child.read(p * PAGE, &mut buf)?;
            let want = if p < MIB / PAGE { *b"child!!!" } else { (p as u64).to_le_bytes() };
            ok += usize::from(buf == want);
        }
        let (c, a) = (fork.arena().stats(), parent.stats());
        println!(
            "after 1 MiB of writes on each side: child made {} copies, parent {}; the child still shares {} MiB",
            c.counters.cow_copies,
            a.counters.cow_copies,
            c.shared_pages * PAGE as u64 / MIB as u64
        );
        println!(
            "the child reads {ok} of {} pages exactly as expected (its writes, else the fork's data)",
            DATA / PAGE
        );
        println!(
            "why: a page is copied only when one side first writes it; until then it is backed once, so a \
             fork of a parent 3x the budget fits\n"
        );
        assert_eq!(ok, DATA / PAGE);
    }
    Ok(())
}

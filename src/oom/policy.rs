//! Choosing a victim: what a policy sees of each arena, the built-in policies, and the trait for
//! your own. The guide to the policies is on [`VictimPolicy`].

use std::fmt;
use std::time::Duration;

/// How much it costs the user when an arena dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Impact {
    /// Never killed, whatever the policy (like `oom_score_adj` −1000).
    Critical,
    /// Someone is waiting on it: expensive to kill.
    Interactive,
    /// The default.
    #[default]
    Normal,
    /// Batch work that can be redone: cheap to kill.
    Background,
}

/// Facts about an arena the runtime cannot measure itself; they weigh in [`impact_cost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OomHints {
    /// Runs with privileges (the kernel once quartered such tasks' badness).
    pub privileged: bool,
    /// Niceness, −20..=19 (positive: a background task, cheaper to kill).
    pub nice: i8,
    /// CPU time invested so far: work lost on a kill.
    pub cpu_time: Duration,
    /// How long it has been running; `None` uses the arena's own age.
    pub age: Option<Duration>,
}

/// What a policy sees of one killable arena.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Arena id.
    pub id: u64,
    /// Arena name.
    pub name: String,
    /// Pages in memory (frames), pinned ones included.
    pub resident: u64,
    /// Pages whose data is in swap and not in a frame of this arena: its own swapped pages, and
    /// pages it shares copy-on-write whose shared copy is in swap (each sharer counts those, as
    /// the kernel's `MM_SWAPENTS` counts swap entries; killing it frees their slot only if no
    /// relative still refers to it — see `unique_slots`).
    pub swapped: u64,
    /// Pinned pages (part of `resident`).
    pub pinned: u64,
    /// Pages shared with another arena (copy-on-write relatives): killing does not free them.
    pub shared: u64,
    /// Frames killing it would free.
    pub unique_frames: u64,
    /// Swap slots killing it would free.
    pub unique_slots: u64,
    /// Page-table metadata, in pages.
    pub metadata_pages: u64,
    /// `oom_score_adj`, −1000..=1000.
    pub oom_score_adj: i16,
    /// Impact class.
    pub impact: Impact,
    /// Hints.
    pub hints: OomHints,
    /// The arena's age (used when `hints.age` is `None`).
    pub age: Duration,
    /// Marked "kill me first".
    pub prefer: bool,
    /// Marked "kill me last".
    pub avoid: bool,
    /// Its fault triggered this OOM.
    pub faulting: bool,
}

impl Candidate {
    /// Frames plus slots killing it would free.
    pub fn unique(&self) -> u64 {
        self.unique_frames + self.unique_slots
    }

    /// Whether no policy may kill it.
    pub fn exempt(&self) -> bool {
        self.oom_score_adj <= -1000 || self.impact == Impact::Critical
    }

    /// The kernel's badness: resident + swapped + page-table pages, plus `adj × total / 1000`.
    pub fn badness(&self, total_pages: u64) -> i64 {
        let rss = i64::try_from(self.resident + self.swapped + self.metadata_pages).unwrap_or(i64::MAX);
        rss + i64::from(self.oom_score_adj) * i64::try_from(total_pages).unwrap_or(i64::MAX) / 1000
    }

    /// The kernel's `/proc/PID/oom_score`: `(1000 + badness × 1000 / total) × 2 / 3`, 0..=2000.
    pub fn oom_score(&self, total_pages: u64) -> u32 {
        if self.exempt() {
            return 0;
        }
        let total = i64::try_from(total_pages.max(1)).unwrap_or(i64::MAX);
        let points = (1000 + self.badness(total_pages).saturating_mul(1000) / total) * 2 / 3;
        u32::try_from(points.clamp(0, 2000)).unwrap_or(0)
    }
}

/// What is missing: the frames and swap slots the runtime needs to make progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deficit {
    /// Frames needed.
    pub frames: u64,
    /// Swap slots needed.
    pub slots: u64,
}

/// Context of one selection.
#[derive(Debug, Clone, Copy)]
pub struct OomContext {
    /// Budget frames plus swap slots: the kernel's `totalpages`.
    pub total_pages: u64,
    /// What must be freed.
    pub deficit: Deficit,
}

/// A victim selection policy. Return indices into `candidates`, in the order to kill them; the
/// runtime kills them all. An empty list means "kill nothing" (the fault that needed memory then
/// fails cleanly).
///
/// # The built-in policies
///
/// * [`LinuxBadness`] — the kernel's formula (`mm/oom_kill.c`): badness = resident + swapped +
///   page-table pages, plus `oom_score_adj × total / 1000`; the highest badness dies, one victim
///   per OOM as in the kernel (if memory is still short, the next fault selects again). Shared pages
///   count in full, as in the kernel: a copy-on-write page in swap is a swap entry of every arena
///   referring to it. Nothing else is considered: it is the reference to compare with.
/// * [`Greedy`] — a knapsack heuristic: kill as few and as unimportant arenas as possible. Each
///   candidate has a benefit (the frames and swap slots killing it would *really* free: pages shared
///   with a relative do not count) and an impact cost (from its impact class, privilege, niceness,
///   CPU time, age, `oom_score_adj` and prefer/avoid marks; see [`impact_cost`]). It repeatedly takes
///   the candidate with the best benefit per cost, counting benefit only up to the remaining
///   deficit, drops victims that turn out redundant, and finally compares with the cheapest single
///   candidate that covers the whole deficit on its own.
/// * [`Balanced`] — for when frames *and* swap slots are short. A victim that frees only frames
///   leaves swap full (the next dirty page cannot be evicted), one that frees only slots leaves no
///   frame; so Balanced rates each candidate by the progress it makes on the *less* relieved of the
///   two deficits (each as a fraction of what is missing), plus a quarter of its total progress, per
///   unit of impact cost, and repeats until both deficits are met; then, like Greedy, it drops
///   victims the others already cover on both deficits. With only one deficit it behaves like
///   Greedy on that resource.
/// * [`KillFaulting`] — the arena whose fault could not be served, like the kernel's
///   `oom_kill_allocating_task`.
///
/// Arenas with `oom_score_adj` −1000 or impact [`Impact::Critical`] are never offered to a policy,
/// built-in or yours.
///
/// A policy runs inside the fault path (in [`FaultMode::InThread`](crate::FaultMode::InThread),
/// inside a signal handler): it must not block, and must not touch managed memory. If it panics,
/// the runtime fails as after an internal panic: nobody is killed, the faulting thread is released
/// (a safe accessor returns [`Error::RuntimeFailed`](crate::Error::RuntimeFailed) carrying the
/// panic message, raw access gets SIGBUS), the message is logged, and every later call returns
/// `RuntimeFailed`.
///
/// # Writing your own
///
/// ```
/// use pagewarden::{Candidate, OomContext, VictimPolicy};
///
/// /// Kill the arena holding the most swap.
/// #[derive(Debug)]
/// struct MostSwap;
///
/// impl VictimPolicy for MostSwap {
///     fn name(&self) -> &str {
///         "MostSwap"
///     }
///     fn select(&self, candidates: &[Candidate], _ctx: &OomContext) -> Vec<usize> {
///         (0..candidates.len()).max_by_key(|&i| candidates[i].unique_slots).into_iter().collect()
///     }
/// }
/// ```
pub trait VictimPolicy: Send + Sync + fmt::Debug {
    /// A short name for reports.
    fn name(&self) -> &str;
    /// Picks the victims.
    fn select(&self, candidates: &[Candidate], ctx: &OomContext) -> Vec<usize>;
}

/// The cost of killing an arena, in arbitrary units (a `Normal` arena with no hints costs 4).
///
/// ```text
///   base      Background 1, Normal 4, Interactive 16
///   × 4       privileged
///   × 2^(−nice/10)             niced arenas are cheaper, negative nice dearer
///   × √(1 + CPU seconds)       invested work (the old kernel divided badness by √cpu_time)
///   × ⁴√(1 + age in seconds)   long-running work (and by ⁴√run_time)
///   × 2^(−adj/250)             oom_score_adj 1000 → /16, −500 → ×4
///   × 1/8 prefer, × 8 avoid
/// ```
pub fn impact_cost(c: &Candidate) -> f64 {
    let base = match c.impact {
        Impact::Background => 1.0,
        Impact::Normal => 4.0,
        Impact::Interactive => 16.0,
        Impact::Critical => return f64::INFINITY,
    };
    let mut cost = base;
    if c.hints.privileged {
        cost *= 4.0;
    }
    cost *= (-f64::from(c.hints.nice) / 10.0).exp2();
    cost *= (1.0 + c.hints.cpu_time.as_secs_f64()).sqrt();
    cost *= (1.0 + c.hints.age.unwrap_or(c.age).as_secs_f64()).powf(0.25);
    cost *= (-f64::from(c.oom_score_adj) / 250.0).exp2();
    if c.prefer {
        cost /= 8.0;
    }
    if c.avoid {
        cost *= 8.0;
    }
    cost
}

/// The kernel's choice: the one arena with the highest badness.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxBadness;

impl VictimPolicy for LinuxBadness {
    fn name(&self) -> &str {
        "LinuxBadness"
    }
    fn select(&self, candidates: &[Candidate], ctx: &OomContext) -> Vec<usize> {
        (0..candidates.len()).max_by_key(|&i| candidates[i].badness(ctx.total_pages)).into_iter().collect()
    }
}

/// Memory needed in one dimension: frames and slots both relieve an exhaustion (a free slot lets a
/// dirty page be evicted), so the one-dimensional policies cover the larger of the two deficits.
fn need(ctx: &OomContext) -> u64 {
    ctx.deficit.frames.max(ctx.deficit.slots).max(1)
}

/// Best memory freed per impact cost, repeated until the deficit is met (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Greedy;

impl VictimPolicy for Greedy {
    fn name(&self) -> &str {
        "Greedy"
    }
    fn select(&self, candidates: &[Candidate], ctx: &OomContext) -> Vec<usize> {
        let need = need(ctx);
        let cost: Vec<f64> = candidates.iter().map(impact_cost).collect();
        let useful: Vec<usize> = (0..candidates.len()).filter(|&i| candidates[i].unique() > 0).collect();
        // Ratio-greedy with benefit capped at what is still missing.
        let mut picked: Vec<usize> = Vec::new();
        let mut freed = 0u64;
        while freed < need {
            let left = need - freed;
            let best = useful.iter().copied().filter(|i| !picked.contains(i)).max_by(|&a, &b| {
                let ra = candidates[a].unique().min(left) as f64 / cost[a];
                let rb = candidates[b].unique().min(left) as f64 / cost[b];
                // On a tie: the cheaper, then the one freeing more (more headroom, and the grower
                // is usually the cause).
                ra.total_cmp(&rb)
                    .then(cost[b].total_cmp(&cost[a]))
                    .then(candidates[a].unique().cmp(&candidates[b].unique()))
            });
            let Some(b) = best else { break };
            picked.push(b);
            freed += candidates[b].unique();
        }
        // Drop victims the others already cover, most expensive first.
        let mut by_cost = picked.clone();
        by_cost.sort_by(|&a, &b| cost[b].total_cmp(&cost[a]));
        for v in by_cost {
            let without: u64 = picked.iter().filter(|&&i| i != v).map(|&i| candidates[i].unique()).sum();
            if without >= need {
                picked.retain(|&i| i != v);
            }
        }
        // One candidate covering everything alone, for less, wins.
        let total: f64 = picked.iter().map(|&i| cost[i]).sum();
        let single = useful
            .iter()
            .copied()
            .filter(|&i| candidates[i].unique() >= need)
            .min_by(|&a, &b| cost[a].total_cmp(&cost[b]));
        match single {
            Some(s) if cost[s] < total || freed < need => vec![s],
            _ => picked,
        }
    }
}

/// Balanced progress on frame and slot deficits together (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Balanced;

impl VictimPolicy for Balanced {
    fn name(&self) -> &str {
        "Balanced"
    }
    fn select(&self, candidates: &[Candidate], ctx: &OomContext) -> Vec<usize> {
        let (mut df, mut ds) = (ctx.deficit.frames, ctx.deficit.slots);
        if df == 0 && ds == 0 {
            df = 1;
        }
        let cost: Vec<f64> = candidates.iter().map(impact_cost).collect();
        let mut picked = Vec::new();
        while df > 0 || ds > 0 {
            let progress = |c: &Candidate| {
                let pf = if df == 0 { 1.0 } else { c.unique_frames.min(df) as f64 / df as f64 };
                let ps = if ds == 0 { 1.0 } else { c.unique_slots.min(ds) as f64 / ds as f64 };
                // With one deficit, the other counts as met and drops out of the minimum.
                let (lo, sum) = match (df, ds) {
                    (0, _) => (ps, ps),
                    (_, 0) => (pf, pf),
                    _ => (pf.min(ps), pf + ps),
                };
                lo + 0.25 * sum
            };
            let best = (0..candidates.len())
                .filter(|i| !picked.contains(i) && candidates[*i].unique() > 0)
                .map(|i| (i, progress(&candidates[i]) / cost[i]))
                .filter(|&(_, v)| v > 0.0)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let Some((b, _)) = best else { break };
            picked.push(b);
            df = df.saturating_sub(candidates[b].unique_frames);
            ds = ds.saturating_sub(candidates[b].unique_slots);
        }
        // Drop victims the others already cover on both deficits, most expensive first (as
        // Greedy does): an early pick that made balanced progress can be made redundant by the
        // later ones that finished the job.
        let (nf, ns) = match ctx.deficit {
            Deficit { frames: 0, slots: 0 } => (1, 0),
            d => (d.frames, d.slots),
        };
        let mut by_cost = picked.clone();
        by_cost.sort_by(|&a, &b| cost[b].total_cmp(&cost[a]));
        for v in by_cost {
            let (f, s) = picked
                .iter()
                .filter(|&&i| i != v)
                .fold((0u64, 0u64), |(f, s), &i| (f + candidates[i].unique_frames, s + candidates[i].unique_slots));
            if f >= nf && s >= ns {
                picked.retain(|&i| i != v);
            }
        }
        picked
    }
}

/// The arena whose fault could not be served.
#[derive(Debug, Clone, Copy, Default)]
pub struct KillFaulting;

impl VictimPolicy for KillFaulting {
    fn name(&self) -> &str {
        "KillFaulting"
    }
    fn select(&self, candidates: &[Candidate], _ctx: &OomContext) -> Vec<usize> {
        candidates.iter().position(|c| c.faulting).into_iter().collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn cand(name: &str, frames: u64, slots: u64, impact: Impact, adj: i16) -> Candidate {
        Candidate {
            id: 0,
            name: name.into(),
            resident: frames,
            swapped: slots,
            pinned: 0,
            shared: 0,
            unique_frames: frames,
            unique_slots: slots,
            metadata_pages: 0,
            oom_score_adj: adj,
            impact,
            hints: OomHints::default(),
            age: Duration::from_secs(60),
            prefer: false,
            avoid: false,
            faulting: false,
        }
    }

    fn ctx(frames: u64, slots: u64) -> OomContext {
        OomContext { total_pages: 10_000, deficit: Deficit { frames, slots } }
    }

    fn names(c: &[Candidate], picks: &[usize]) -> Vec<String> {
        picks.iter().map(|&i| c[i].name.clone()).collect()
    }

    #[test]
    fn oom_score_matches_the_kernel_scale() {
        let mut c = cand("a", 0, 0, Impact::Normal, 0);
        assert_eq!(c.oom_score(10_000), 666);
        c.resident = 10_000;
        assert_eq!(c.oom_score(10_000), 1333);
        c.oom_score_adj = 1000;
        assert_eq!(c.oom_score(10_000), 2000);
        c.oom_score_adj = -1000;
        assert_eq!(c.oom_score(10_000), 0);
    }

    #[test]
    fn linux_badness_picks_the_largest_adjusted() {
        let c = vec![
            cand("big", 5000, 0, Impact::Interactive, 0),
            cand("leak", 3000, 0, Impact::Background, 0),
            cand("small", 100, 0, Impact::Normal, 900),
        ];
        assert_eq!(names(&c, &LinuxBadness.select(&c, &ctx(10, 0))), ["small"]);
        let c = vec![cand("big", 5000, 0, Impact::Interactive, 0), cand("leak", 3000, 0, Impact::Background, 0)];
        assert_eq!(names(&c, &LinuxBadness.select(&c, &ctx(10, 0))), ["big"]);
    }

    #[test]
    fn greedy_kills_two_small_background_arenas_rather_than_one_interactive() {
        let c = vec![
            cand("ui", 1000, 0, Impact::Interactive, 0),
            cand("batch1", 300, 0, Impact::Background, 0),
            cand("batch2", 300, 0, Impact::Background, 0),
            cand("batch3", 50, 0, Impact::Background, 0),
        ];
        let mut got = names(&c, &Greedy.select(&c, &ctx(500, 0)));
        got.sort();
        assert_eq!(got, ["batch1", "batch2"]);
        // When one cheap arena covers the deficit alone, it is the only victim.
        let got = names(&c, &Greedy.select(&c, &ctx(200, 0)));
        assert!(got == ["batch1"] || got == ["batch2"], "{got:?}");
        // A deficit only the interactive arena can cover kills it alone.
        assert_eq!(names(&c, &Greedy.select(&c, &ctx(900, 0))), ["ui"]);
    }

    #[test]
    fn greedy_chooses_the_leak_over_the_big_important_arena() {
        let c = vec![cand("database", 6000, 0, Impact::Interactive, -500), cand("leaky", 2000, 0, Impact::Normal, 0)];
        assert_eq!(names(&c, &Greedy.select(&c, &ctx(100, 0))), ["leaky"]);
    }

    #[test]
    fn shared_pages_do_not_make_a_victim() {
        // "cow" is the largest by RSS, but almost all of it is shared with a relative.
        let mut cow = cand("cow", 5000, 0, Impact::Normal, 0);
        cow.shared = 4900;
        cow.unique_frames = 100;
        let c = vec![cow, cand("private", 1500, 0, Impact::Normal, 0)];
        assert_eq!(names(&c, &Greedy.select(&c, &ctx(1000, 0))), ["private"]);
        assert_eq!(names(&c, &Balanced.select(&c, &ctx(1000, 0))), ["private"]);
        // The kernel's formula counts shared pages in full and picks it.
        assert_eq!(names(&c, &LinuxBadness.select(&c, &ctx(1000, 0))), ["cow"]);
    }

    #[test]
    fn balanced_relieves_both_deficits() {
        let c = vec![
            cand("frames-only", 3000, 0, Impact::Normal, 0),
            cand("slots-only", 0, 3000, Impact::Normal, 0),
            cand("both", 800, 800, Impact::Normal, 0),
        ];
        assert_eq!(names(&c, &Balanced.select(&c, &ctx(500, 500))), ["both"]);
        // With no arena relieving both, it takes one of each kind rather than two of one.
        let c = vec![
            cand("frames-a", 3000, 0, Impact::Normal, 0),
            cand("frames-b", 3000, 0, Impact::Background, 0),
            cand("slots", 0, 3000, Impact::Normal, 0),
        ];
        let mut got = names(&c, &Balanced.select(&c, &ctx(500, 500)));
        got.sort();
        assert_eq!(got, ["frames-b", "slots"]);
        // Only one deficit: the cheapest arena that covers it.
        assert_eq!(names(&c, &Balanced.select(&c, &ctx(500, 0))), ["frames-b"]);
    }

    #[test]
    fn balanced_drops_victims_the_others_cover() {
        // Z makes the best balanced progress and is picked first, but X and Y, picked to finish
        // the job, meet both deficits alone: Z must live.
        let c = vec![
            cand("X", 200, 0, Impact::Normal, 0),
            cand("Y", 0, 200, Impact::Normal, 0),
            cand("Z", 90, 90, Impact::Normal, 0),
        ];
        let mut got = names(&c, &Balanced.select(&c, &ctx(100, 100)));
        got.sort();
        assert_eq!(got, ["X", "Y"]);
        // Every victim kept is needed: without any one of them a deficit is short.
        let c = vec![
            cand("a", 60, 10, Impact::Normal, 0),
            cand("b", 10, 60, Impact::Normal, 0),
            cand("c", 50, 50, Impact::Background, 0),
            cand("d", 300, 300, Impact::Interactive, 0),
        ];
        let picks = Balanced.select(&c, &ctx(100, 100));
        let sum = |p: &[usize]| p.iter().fold((0, 0), |(f, s), &i| (f + c[i].unique_frames, s + c[i].unique_slots));
        let (f, s) = sum(&picks);
        assert!(f >= 100 && s >= 100, "{:?}", names(&c, &picks));
        for k in 0..picks.len() {
            let rest: Vec<usize> = picks.iter().copied().filter(|&i| i != picks[k]).collect();
            let (f, s) = sum(&rest);
            assert!(f < 100 || s < 100, "{} is redundant in {:?}", c[picks[k]].name, names(&c, &picks));
        }
    }

    #[test]
    fn marks_and_hints_move_the_cost() {
        let a = cand("a", 100, 0, Impact::Normal, 0);
        let mut p = a.clone();
        p.prefer = true;
        let mut v = a.clone();
        v.avoid = true;
        let mut old = a.clone();
        old.hints.cpu_time = Duration::from_secs(3600);
        let mut niced = a.clone();
        niced.hints.nice = 10;
        assert!(impact_cost(&p) < impact_cost(&a) && impact_cost(&a) < impact_cost(&v));
        assert!(impact_cost(&old) > impact_cost(&a) && impact_cost(&niced) < impact_cost(&a));
        assert!(impact_cost(&cand("c", 1, 0, Impact::Critical, 0)).is_infinite());
    }

    #[test]
    fn kill_faulting_takes_the_faulting_arena_only() {
        let mut c = vec![cand("a", 100, 0, Impact::Normal, 0), cand("b", 100, 0, Impact::Normal, 0)];
        c[1].faulting = true;
        assert_eq!(names(&c, &KillFaulting.select(&c, &ctx(10, 0))), ["b"]);
        c[1].faulting = false;
        assert!(KillFaulting.select(&c, &ctx(10, 0)).is_empty());
    }
}

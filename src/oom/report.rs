//! The OOM report: what triggered it, what was missing, every candidate with its figures, whom
//! the policy chose, what the kill freed and how long it took.

use super::policy::{Candidate, Deficit, Impact};
use std::fmt;
use std::time::Duration;

/// Why the OOM killer ran.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum KillTrigger {
    /// A fault needed a frame, none was free, and reclaim made no progress (swap full, the rest
    /// pinned or in flight).
    Exhaustion {
        /// The arena whose fault could not be served.
        faulting_arena: String,
    },
    /// Faults kept threads stalled for more than the configured share of time.
    Pressure {
        /// Share of the window (0..=1) during which at least one thread was stalled.
        stalled_share: f64,
        /// The window.
        window: Duration,
    },
    /// [`Arena::kill`](crate::Arena::kill).
    Manual,
    /// [`Runtime::run_oom_killer`](crate::Runtime::run_oom_killer).
    Requested,
}

/// One row of the candidate table.
#[derive(Debug, Clone)]
pub struct CandidateRow {
    /// The candidate as the policy saw it.
    pub candidate: Candidate,
    /// Its kernel-scale score (0..=2000).
    pub oom_score: u32,
    /// Never killable (adj −1000 or `Critical`).
    pub exempt: bool,
    /// Chosen as a victim.
    pub chosen: bool,
}

/// A killed arena and what its death freed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Victim {
    /// Arena id.
    pub id: u64,
    /// Arena name.
    pub name: String,
    /// Frames freed at once (pages in flight are freed when their I/O ends).
    pub frames_freed: u64,
    /// Swap slots freed.
    pub slots_freed: u64,
}

/// What an OOM invocation saw and did. `Display` prints it the way the kernel logs an OOM kill.
#[derive(Debug, Clone)]
pub struct OomReport {
    /// What triggered it.
    pub trigger: KillTrigger,
    /// The policy's name.
    pub policy: String,
    /// Dry run: the victims were chosen but not killed.
    pub dry_run: bool,
    /// What was missing.
    pub deficit: Deficit,
    /// The frame budget.
    pub budget_frames: u64,
    /// Frames in use when it ran.
    pub frames_in_use: u64,
    /// Frames pinned when it ran.
    pub pinned_frames: u64,
    /// Swap capacity in slots.
    pub swap_slots: u64,
    /// Swap slots in use when it ran.
    pub swap_used: u64,
    /// Every live arena, exempt ones included.
    pub candidates: Vec<CandidateRow>,
    /// The victims (chosen, and killed unless `dry_run`).
    pub victims: Vec<Victim>,
    /// Time to build the table and run the policy.
    pub selection: Duration,
    /// Time to free the victims' frames and slots.
    pub reaping: Duration,
}

impl OomReport {
    /// Whether anyone was (or, in a dry run, would have been) killed.
    pub fn killed_any(&self) -> bool {
        !self.victims.is_empty()
    }

    /// Frames freed by all victims.
    pub fn frames_freed(&self) -> u64 {
        self.victims.iter().map(|v| v.frames_freed).sum()
    }

    /// Slots freed by all victims.
    pub fn slots_freed(&self) -> u64 {
        self.victims.iter().map(|v| v.slots_freed).sum()
    }
}

fn impact(i: Impact) -> &'static str {
    match i {
        Impact::Critical => "critical",
        Impact::Interactive => "interactive",
        Impact::Normal => "normal",
        Impact::Background => "background",
    }
}

impl fmt::Display for OomReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let trig = match &self.trigger {
            KillTrigger::Exhaustion { faulting_arena } => {
                format!("exhaustion (fault in '{faulting_arena}' found no frame, nothing reclaimable)")
            }
            KillTrigger::Pressure { stalled_share, window } => {
                format!("pressure (threads stalled {:.0}% of the last {window:?})", stalled_share * 100.0)
            }
            KillTrigger::Manual => "manual kill".to_string(),
            KillTrigger::Requested => "requested".to_string(),
        };
        writeln!(
            f,
            "pagewarden invoked oom-killer{}: trigger={trig}, policy={}",
            if self.dry_run { " (dry run)" } else { "" },
            self.policy
        )?;
        writeln!(
            f,
            "deficit: {} frames, {} swap slots; frames {}/{} in use ({} pinned); swap {}/{} slots",
            self.deficit.frames,
            self.deficit.slots,
            self.frames_in_use,
            self.budget_frames,
            self.pinned_frames,
            self.swap_used,
            self.swap_slots
        )?;
        if !self.candidates.is_empty() {
            writeln!(
                f,
                "[   id] {:<16} {:>9} {:>9} {:>7} {:>7} {:>9} {:>6} {:<12} {:>9}",
                "arena", "resident", "swapped", "pinned", "shared", "unique", "adj", "impact", "oom_score"
            )?;
            for r in &self.candidates {
                let c = &r.candidate;
                let mark = if r.chosen {
                    " <- victim"
                } else if r.exempt {
                    " (exempt)"
                } else {
                    ""
                };
                writeln!(
                    f,
                    "[{:>5}] {:<16} {:>9} {:>9} {:>7} {:>7} {:>9} {:>6} {:<12} {:>9}{mark}",
                    c.id,
                    c.name.chars().take(16).collect::<String>(),
                    c.resident,
                    c.swapped,
                    c.pinned,
                    c.shared,
                    c.unique(),
                    c.oom_score_adj,
                    impact(c.impact),
                    r.oom_score
                )?;
            }
        }
        if self.victims.is_empty() {
            write!(f, "nothing killable: every arena is exempt (oom_score_adj -1000 or Critical) or frees nothing")?;
        }
        for (i, v) in self.victims.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{} arena '{}' (id {}): {} {} frames and {} swap slots",
                if self.dry_run { "Would kill" } else { "Killed" },
                v.name,
                v.id,
                if self.dry_run { "would free" } else { "freed" },
                v.frames_freed,
                v.slots_freed
            )?;
        }
        write!(f, "; selection {:?}, reaping {:?}", self.selection, self.reaping)
    }
}

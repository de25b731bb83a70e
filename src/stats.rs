//! Counters, the fault-latency histogram, and the stats table.

use std::fmt;
use std::time::Duration;

/// A log-linear histogram of nanosecond durations: 8 buckets per power of two (≤ 12.5% error).
#[derive(Clone)]
pub(crate) struct Histogram {
    buckets: Box<[u64; 512]>,
    count: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { buckets: Box::new([0; 512]), count: 0, max: 0 }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < 8 {
            return crate::mm::idx(v);
        }
        let msb = 63 - v.leading_zeros() as usize;
        let sub = ((v >> (msb - 3)) & 7) as usize;
        ((msb - 2) * 8 + sub).min(511)
    }

    fn upper(i: usize) -> u64 {
        if i < 8 {
            return i as u64;
        }
        let msb = i / 8 + 2;
        let sub = (i % 8) as u64;
        ((8 + sub + 1) << (msb - 3)) - 1
    }

    pub(crate) fn record(&mut self, ns: u64) {
        self.buckets[Self::index(ns)] += 1;
        self.count += 1;
        self.max = self.max.max(ns);
    }

    pub(crate) fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets.iter()) {
            *a += b;
        }
        self.count += o.count;
        self.max = self.max.max(o.max);
    }

    /// The value at quantile `ppm` (parts per million), as the upper edge of its bucket.
    pub(crate) fn quantile(&self, ppm: u64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        // Nearest rank: the smallest value with at least ppm/10^6 of the samples at or below it.
        let rank = (u128::from(self.count) * u128::from(ppm)).div_ceil(1_000_000);
        let rank = u64::try_from(rank).unwrap_or(u64::MAX).max(1);
        let mut seen = 0;
        for (i, &b) in self.buckets.iter().enumerate() {
            seen += b;
            if seen >= rank {
                return Self::upper(i).min(self.max);
            }
        }
        self.max
    }

    pub(crate) fn summary(&self) -> Latency {
        Latency {
            count: self.count,
            p50: Duration::from_nanos(self.quantile(500_000)),
            p99: Duration::from_nanos(self.quantile(990_000)),
            p999: Duration::from_nanos(self.quantile(999_000)),
            max: Duration::from_nanos(self.max),
        }
    }
}

/// Fault service time: from the moment the runtime starts resolving a fault (a handler thread
/// reading its event, or, in [`FaultMode::InThread`](crate::FaultMode::InThread), the faulting
/// thread entering its SIGBUS handler) to the page installed. The wake-up of the faulting thread,
/// or the signal's delivery and return, comes on top.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    /// Faults measured.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Slowest.
    pub max: Duration,
}

/// Event counters of an arena (or, summed, of the runtime).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Missing-page faults resolved with a zero-filled page (first touch).
    pub zero_fills: u64,
    /// Missing-page faults resolved from swap.
    pub swap_ins: u64,
    /// Write-protect faults: the first write to a clean page.
    pub wp_faults: u64,
    /// Fault events that needed no work (another fault had already resolved the page).
    pub spurious: u64,
    /// Pages evicted from memory (written out or dropped clean).
    pub evictions: u64,
    /// Pages written to swap.
    pub writebacks: u64,
    /// Pages dropped with no I/O: clean pages whose swap copy was still valid, or untouched zeros.
    pub clean_drops: u64,
    /// Pages installed ahead of a sequential fault.
    pub readahead: u64,
    /// Readahead pages the stream then reached.
    pub readahead_hits: u64,
    /// Refaults judged "evicted too early" and activated.
    pub refault_activations: u64,
    /// Pages whose swap copy could not be read back (poisoned).
    pub lost_pages: u64,
    /// Faults that found no free frame and had to reclaim (or wait) before being served; the
    /// background reclaimer's job is to keep this near zero.
    pub direct_reclaims: u64,
    /// Writes that made a private copy of a copy-on-write page (the first write on each side
    /// after a fork).
    pub cow_copies: u64,
    /// Missing-page faults served by copying a copy-on-write relative's resident frame.
    pub shared_faults: u64,
    /// Pages read from mapped files.
    pub file_reads: u64,
    /// Pages written back to mapped files (`MapMode::Shared`: eviction, flush, release).
    pub file_writebacks: u64,
}

impl Counters {
    pub(crate) fn add(&mut self, o: &Counters) {
        self.zero_fills += o.zero_fills;
        self.swap_ins += o.swap_ins;
        self.wp_faults += o.wp_faults;
        self.spurious += o.spurious;
        self.evictions += o.evictions;
        self.writebacks += o.writebacks;
        self.clean_drops += o.clean_drops;
        self.readahead += o.readahead;
        self.readahead_hits += o.readahead_hits;
        self.refault_activations += o.refault_activations;
        self.lost_pages += o.lost_pages;
        self.direct_reclaims += o.direct_reclaims;
        self.cow_copies += o.cow_copies;
        self.shared_faults += o.shared_faults;
        self.file_reads += o.file_reads;
        self.file_writebacks += o.file_writebacks;
    }

    /// All missing and write-protect faults.
    pub fn faults(&self) -> u64 {
        self.zero_fills + self.swap_ins + self.wp_faults + self.shared_faults
    }
}

/// A snapshot of one arena.
#[derive(Debug, Clone)]
pub struct ArenaStats {
    /// Arena id (unique within the runtime).
    pub id: u64,
    /// Arena name.
    pub name: String,
    /// Whether it was killed.
    pub killed: bool,
    /// Live regions.
    pub regions: usize,
    /// Bytes reserved by its regions.
    pub reserved_bytes: u64,
    /// Pages in memory (frames held).
    pub resident_pages: u64,
    /// Pages whose data is in swap and not in a frame of this arena, copy-on-write shares in swap
    /// included (counted by each sharer, like the kernel's swap entries).
    pub swapped_pages: u64,
    /// Pinned pages (part of `resident_pages`).
    pub pinned_pages: u64,
    /// Pages whose data is shared copy-on-write with a fork relative (resident or not).
    pub shared_pages: u64,
    /// Frames plus swap slots that killing it would free.
    pub unique_pages: u64,
    /// Kernel-scale OOM score, 0..=2000 (like `/proc/PID/oom_score`).
    pub oom_score: u32,
    /// Its `oom_score_adj`.
    pub oom_score_adj: i16,
    /// Its impact class.
    pub impact: crate::Impact,
    /// Event counters.
    pub counters: Counters,
    /// Fault service time.
    pub latency: Latency,
    /// Stall pressure of its threads.
    pub pressure: crate::Pressure,
}

/// A snapshot of the runtime: budget, swap, and every live arena.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Page (frame) size in bytes.
    pub page_size: usize,
    /// The frame budget.
    pub budget_frames: u64,
    /// Frames held by arena pages, resident or in flight.
    pub frames_in_use: u64,
    /// Free frames the pool holds ready (MOVE path) — physical, but not yet given to a page.
    pub frames_pooled: u64,
    /// Frames pinned.
    pub pinned_frames: u64,
    /// The pin limit, in frames.
    pub pin_limit_frames: u64,
    /// Swap capacity in slots (pages): what the swap file may grow to.
    pub swap_slots: u64,
    /// Slots that can hold pages: `swap_slots`, or fewer once growing the swap file found the
    /// disk full (the slots the file held then).
    pub swap_usable_slots: u64,
    /// Swap slots in use.
    pub swap_used: u64,
    /// Bytes of disk the swap file occupies now. It grows as slots are first used (64 MiB at a
    /// time), unless it was preallocated.
    pub swap_file_bytes: u64,
    /// Swap is smaller than the default or the configured capacity because of the disk: the
    /// default capacity was cut to half the free space, or the disk filled up while the swap
    /// file grew (then `swap_usable_slots < swap_slots`). The log says which, at `warn`.
    pub swap_cut_by_disk: bool,
    /// Whether swap I/O bypasses the page cache.
    pub swap_direct: bool,
    /// Swap read calls (one per run of consecutive slots read together).
    pub swap_read_ios: u64,
    /// Swap write calls (one per run of consecutive slots written together).
    pub swap_write_ios: u64,
    /// Commit charge: bytes of live reservations (like `Committed_AS`).
    pub committed_bytes: u64,
    /// `swap + ratio × budget` in bytes, with the `Strict` ratio or the kernel's default 0.5
    /// (like `CommitLimit`; enforced only under `Overcommit::Strict`).
    pub commit_limit_bytes: u64,
    /// The overcommit mode (whether `commit_limit_bytes` is enforced).
    pub overcommit: crate::Overcommit,
    /// Who resolves faults (what [`Latency`] measures).
    pub fault_mode: crate::FaultMode,
    /// The eviction path in use.
    pub eviction: crate::EvictionPath,
    /// How the userfaultfd was created.
    pub uffd_source: crate::UffdSource,
    /// The victim policy's name.
    pub policy: String,
    /// Bytes of page-table metadata.
    pub metadata_bytes: u64,
    /// Pages holding data: resident (or being evicted) plus swapped.
    pub tracked_pages: u64,
    /// Arenas killed so far.
    pub kills: u64,
    /// Stall pressure of the runtime.
    pub pressure: crate::Pressure,
    /// Counters summed over all arenas, including dropped ones.
    pub totals: Counters,
    /// Fault service time over all arenas, including dropped ones.
    pub latency: Latency,
    /// Live arenas.
    pub arenas: Vec<ArenaStats>,
}

fn mib(pages: u64, ps: usize) -> String {
    let b = pages * ps as u64;
    if b >= 10 << 30 {
        format!("{:.1}G", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1}M", b as f64 / (1u64 << 20) as f64)
    }
}

fn us(d: Duration) -> String {
    let n = d.as_nanos();
    if n >= 10_000_000 { format!("{}ms", n / 1_000_000) } else { format!("{:.1}µs", n as f64 / 1000.0) }
}

impl fmt::Display for Stats {
    /// The runtime's figures and two per-arena tables (memory, then events), at most 100
    /// columns wide for names of up to 12 characters and counts of up to 8 digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ps = self.page_size;
        let mode = match self.fault_mode {
            crate::FaultMode::HandlerThreads => "by handler threads",
            crate::FaultMode::InThread => "in the faulting thread",
        };
        writeln!(
            f,
            "faults served {mode}; eviction path {:?}; userfaultfd from {:?}",
            self.eviction, self.uffd_source
        )?;
        writeln!(
            f,
            "frames {} / {} in use ({} / {}), {} pooled, {} pinned",
            mib(self.frames_in_use, ps),
            mib(self.budget_frames, ps),
            self.frames_in_use,
            self.budget_frames,
            mib(self.frames_pooled, ps),
            self.pinned_frames,
        )?;
        if self.swap_slots == 0 {
            writeln!(f, "swap: none (capacity 0: written pages cannot leave memory)")?;
        } else {
            let io = if self.swap_direct { "O_DIRECT" } else { "buffered" };
            writeln!(
                f,
                "swap {} / {} used ({} / {} slots), file {} on disk{}\nswap I/O {io}: {} reads, {} writes ({:.1} pages each)",
                mib(self.swap_used, ps),
                mib(self.swap_slots, ps),
                self.swap_used,
                self.swap_slots,
                mib(self.swap_file_bytes / ps as u64, ps),
                if self.swap_cut_by_disk {
                    format!("; cut short by the disk: {} slots usable", self.swap_usable_slots)
                } else {
                    String::new()
                },
                self.swap_read_ios,
                self.swap_write_ios,
                self.totals.writebacks as f64 / self.swap_write_ios.max(1) as f64,
            )?;
        }
        let committed = mib(self.committed_bytes / ps as u64, ps);
        let limit = mib(self.commit_limit_bytes / ps as u64, ps);
        match self.overcommit {
            crate::Overcommit::Strict { .. } => {
                writeln!(f, "committed {committed} of the {limit} limit (Overcommit::Strict)")?
            }
            _ => writeln!(f, "committed {committed} (a limit of {limit} would apply only under Overcommit::Strict)")?,
        }
        writeln!(
            f,
            "policy {}; kills {}; pressure some {:.1}% full {:.1}% (avg10); direct reclaims {}",
            self.policy, self.kills, self.pressure.some.avg10, self.pressure.full.avg10, self.totals.direct_reclaims
        )?;
        if self.tracked_pages == 0 {
            writeln!(f, "metadata {} bytes, no page holding data", self.metadata_bytes)?;
        } else {
            writeln!(
                f,
                "metadata {} bytes for {} pages holding data ({:.1} B/page)",
                self.metadata_bytes,
                self.tracked_pages,
                self.metadata_bytes as f64 / self.tracked_pages as f64,
            )?;
        }
        let name = |a: &ArenaStats| {
            let mut name: String = a.name.chars().take(12).collect();
            if a.killed {
                name.push_str(" †");
            }
            name
        };
        let sum = |g: fn(&ArenaStats) -> u64| self.arenas.iter().map(g).sum::<u64>();

        // Memory: what each arena holds, how fast its faults were served, its OOM profile.
        writeln!(
            f,
            "\n{:<14} {:>8} {:>8} {:>8} {:>6} {:>8} {:>8} {:>8} {:>5} {:>5}",
            "arena", "reserved", "resident", "swapped", "pinned", "shared", "p50", "p99", "adj", "score"
        )?;
        #[allow(clippy::too_many_arguments)]
        fn memory(
            f: &mut fmt::Formatter<'_>,
            ps: usize,
            name: &str,
            reserved: u64,
            pages: [u64; 4],
            l: &Latency,
            oom: Option<(i16, u32)>,
        ) -> fmt::Result {
            let (adj, score) = oom.map_or((String::new(), String::new()), |(a, s)| (a.to_string(), s.to_string()));
            let line = format!(
                "{:<14} {:>8} {:>8} {:>8} {:>6} {:>8} {:>8} {:>8} {:>5} {:>5}",
                name,
                mib(reserved / ps as u64, ps),
                mib(pages[0], ps),
                mib(pages[1], ps),
                pages[2],
                mib(pages[3], ps),
                us(l.p50),
                us(l.p99),
                adj,
                score,
            );
            writeln!(f, "{}", line.trim_end())
        }
        for a in &self.arenas {
            let pages = [a.resident_pages, a.swapped_pages, a.pinned_pages, a.shared_pages];
            memory(f, ps, &name(a), a.reserved_bytes, pages, &a.latency, Some((a.oom_score_adj, a.oom_score)))?;
        }
        let pages =
            [sum(|a| a.resident_pages), sum(|a| a.swapped_pages), sum(|a| a.pinned_pages), sum(|a| a.shared_pages)];
        memory(f, ps, "total", sum(|a| a.reserved_bytes), pages, &self.latency, None)?;

        // Events: faults by kind, evictions by outcome, readahead.
        writeln!(
            f,
            "\n{:<14} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>15}",
            "arena", "zero-fill", "swap-in", "wp", "cow", "evicted", "written", "clean", "ra-hits"
        )?;
        fn events(f: &mut fmt::Formatter<'_>, name: &str, c: &Counters) -> fmt::Result {
            writeln!(
                f,
                "{:<14} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>15}",
                name,
                c.zero_fills,
                c.swap_ins,
                c.wp_faults,
                c.cow_copies,
                c.evictions,
                c.writebacks,
                c.clean_drops,
                format!("{}/{}", c.readahead_hits, c.readahead),
            )
        }
        for a in &self.arenas {
            events(f, &name(a), &a.counters)?;
        }
        events(f, "total", &self.totals)?;
        let served = match self.fault_mode {
            crate::FaultMode::HandlerThreads => "in a handler thread, the faulting thread's wake-up not included",
            crate::FaultMode::InThread => "in the faulting thread's SIGBUS handler, signal delivery not included",
        };
        writeln!(
            f,
            "† killed; score: the kernel-scale oom_score; slowest faults: p99.9 {}, max {}",
            us(self.latency.p999),
            us(self.latency.max)
        )?;
        write!(f, "p50/p99: fault service time {served}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_within_a_bucket() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(500_000) as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.13, "p50 {p50}");
        let p99 = h.quantile(990_000) as f64;
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.13, "p99 {p99}");
        assert_eq!(h.quantile(1_000_000), 10_000_000);
        for v in 0..100u64 {
            let i = Histogram::index(v * 37 + 5);
            assert!(Histogram::upper(i) >= v * 37 + 5);
        }
    }
}

//! Log lines from the engine. Every engine module logs through [`note!`], never through `log::`
//! directly (`tests/layers.rs` checks it), because the engine also runs inside the SIGBUS
//! handler of an in-thread fault, where calling into the logger is not safe: a logger may lock,
//! allocate or write, and the interrupted code may be inside the logger itself.
//!
//! Outside a handler a line goes straight to the `log` crate. Inside one (see [`HandlerScope`])
//! it is formatted into a fixed ring of byte buffers made at compile time — no allocation, no
//! logger — and a runtime thread writes it later ([`flush`]: the reclaimer does, every round,
//! and a runtime does when it shuts down). A line longer than one buffer spills into the next
//! ones; when the ring is full, lines are counted as dropped and the count is logged.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Logs a line from the engine: `note!(Error, "pagewarden: …{}", x)` (levels as in
/// [`log::Level`]).
macro_rules! note {
    ($lvl:ident, $($arg:tt)+) => {
        $crate::engine::logq::line(log::Level::$lvl, format_args!($($arg)+))
    };
}
pub(crate) use note;

/// Bytes per buffer of the ring.
const LINE: usize = 240;
/// Buffers in the ring.
const SLOTS: usize = 64;

thread_local! {
    /// This thread is resolving a fault in its SIGBUS handler.
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as inside the SIGBUS handler for its lifetime: lines logged
/// meanwhile are queued, not written.
pub(crate) struct HandlerScope {
    was: bool,
}

impl HandlerScope {
    pub(crate) fn enter() -> HandlerScope {
        HandlerScope { was: IN_HANDLER.replace(true) }
    }
}

impl Drop for HandlerScope {
    fn drop(&mut self) {
        IN_HANDLER.set(self.was);
    }
}

#[derive(Clone, Copy)]
struct Buf {
    level: log::Level,
    /// Continues the line in the buffer before it.
    more: bool,
    len: usize,
    text: [u8; LINE],
}

const EMPTY: Buf = Buf { level: log::Level::Error, more: false, len: 0, text: [0; LINE] };

/// The queued lines: a ring of buffers, oldest at `head`.
struct Ring {
    bufs: [Buf; SLOTS],
    head: usize,
    len: usize,
    /// Lines that found the ring full.
    dropped: u64,
}

static RING: Mutex<Ring> = Mutex::new(Ring { bufs: [EMPTY; SLOTS], head: 0, len: 0, dropped: 0 });

/// Writes a line into the ring from buffer `first` on, spilling into further buffers.
struct Spill<'a> {
    ring: &'a mut Ring,
    level: log::Level,
    /// Buffers this line took so far (0: none yet).
    taken: usize,
    /// No room left: the rest of the line is cut.
    full: bool,
}

impl Spill<'_> {
    /// The buffer being filled, taking a new one when the current is full.
    fn buf(&mut self) -> Option<&mut Buf> {
        let cur_full = self.taken == 0 || {
            let i = (self.ring.head + self.ring.len - 1) % SLOTS;
            self.ring.bufs[i].len == LINE
        };
        if cur_full {
            if self.ring.len == SLOTS {
                self.full = true;
                return None;
            }
            let i = (self.ring.head + self.ring.len) % SLOTS;
            self.ring.bufs[i] = Buf { level: self.level, more: self.taken > 0, len: 0, text: [0; LINE] };
            self.ring.len += 1;
            self.taken += 1;
        }
        let i = (self.ring.head + self.ring.len - 1) % SLOTS;
        Some(&mut self.ring.bufs[i])
    }
}

impl std::fmt::Write for Spill<'_> {
    fn write_str(&mut self, mut s: &str) -> std::fmt::Result {
        while !s.is_empty() {
            let Some(b) = self.buf() else { return Ok(()) };
            let at = b.len;
            let mut n = s.len().min(LINE - at);
            // Keep characters whole (a buffer is read back as UTF-8).
            while !s.is_char_boundary(n) {
                n -= 1;
            }
            if n == 0 {
                // Not even one character fits: start the next buffer.
                b.len = LINE;
                continue;
            }
            b.text[at..at + n].copy_from_slice(&s.as_bytes()[..n]);
            b.len = at + n;
            s = &s[n..];
        }
        Ok(())
    }
}

/// Logs `args` at `level`: at once, or queued when this thread is in the SIGBUS handler.
pub(crate) fn line(level: log::Level, args: std::fmt::Arguments<'_>) {
    if level > log::max_level() {
        return;
    }
    if !IN_HANDLER.get() {
        log::log!(level, "{args}");
        return;
    }
    crate::util::lock(&RING).push(level, args);
}

/// Writes the queued lines (from a thread that is not in a signal handler).
pub(crate) fn flush() {
    if IN_HANDLER.get() {
        return;
    }
    // Taken out first: the logger is not called with the ring locked.
    let (lines, dropped) = crate::util::lock(&RING).drain();
    for (level, text) in lines {
        log::log!(level, "{text}");
    }
    if dropped > 0 {
        log::warn!("pagewarden: {dropped} log lines from in-thread faults were dropped (too many at once)");
    }
}

impl Ring {
    /// Queues a line (no allocation); counts it as dropped if it does not fit whole.
    fn push(&mut self, level: log::Level, args: std::fmt::Arguments<'_>) {
        if self.len == SLOTS {
            self.dropped += 1;
            return;
        }
        let mut w = Spill { ring: self, level, taken: 0, full: false };
        let _ = w.write_fmt(args);
        if w.full {
            self.dropped += 1;
        }
    }

    /// Takes the queued lines out, whole, and the count of dropped ones.
    fn drain(&mut self) -> (Vec<(log::Level, String)>, u64) {
        let mut out: Vec<(log::Level, String)> = Vec::new();
        for k in 0..self.len {
            let b = &self.bufs[(self.head + k) % SLOTS];
            let s = String::from_utf8_lossy(&b.text[..b.len]);
            match out.last_mut() {
                Some(last) if b.more => last.1.push_str(&s),
                _ => out.push((b.level, s.into_owned())),
            }
        }
        self.head = (self.head + self.len) % SLOTS;
        self.len = 0;
        (out, std::mem::take(&mut self.dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Box<Ring> {
        Box::new(Ring { bufs: [EMPTY; SLOTS], head: 0, len: 0, dropped: 0 })
    }

    #[test]
    fn queued_lines_come_back_whole_and_long_ones_spill() {
        let mut r = ring();
        let long = "é".repeat(300) + "end";
        r.push(log::Level::Error, format_args!("short {}", 1));
        r.push(log::Level::Warn, format_args!("{long}"));
        let (q, dropped) = r.drain();
        assert_eq!(dropped, 0);
        assert_eq!(q, vec![(log::Level::Error, "short 1".to_string()), (log::Level::Warn, long)]);
        // The ring wraps around.
        for i in 0..3 * SLOTS / 2 {
            r.push(log::Level::Info, format_args!("line {i}"));
            let (q, _) = r.drain();
            assert_eq!(q, vec![(log::Level::Info, format!("line {i}"))]);
        }
    }

    #[test]
    fn a_full_ring_counts_what_it_drops() {
        let mut r = ring();
        for i in 0..SLOTS + 5 {
            r.push(log::Level::Error, format_args!("line {i}"));
        }
        // A line longer than the whole ring keeps what fits and counts as dropped.
        let (q, dropped) = r.drain();
        assert_eq!(q.len(), SLOTS);
        assert_eq!(dropped, 5);
        let huge = "x".repeat(LINE * (SLOTS + 1));
        r.push(log::Level::Error, format_args!("{huge}"));
        let (q, dropped) = r.drain();
        assert_eq!((q.len(), q[0].1.len(), dropped), (1, LINE * SLOTS, 1));
    }
}

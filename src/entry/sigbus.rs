//! The in-thread fault entry: the SIGBUS resolver and the registry of runtimes it serves.
//!
//! In [`FaultMode::InThread`](crate::FaultMode::InThread) the kernel raises SIGBUS in the
//! faulting thread itself; the handler finds the runtime owning the address and resolves the
//! fault right there. What runs here runs in a signal handler, which sets the rules every step
//! below `fault_in_thread` keeps:
//! * nothing allocates on the ordinary paths (staging buffers come from a pool made up front;
//!   `tests/in_thread_alloc.rs` counts zero allocations);
//! * the last reference to a runtime is never dropped here (the registry keeps one until no
//!   handler uses it), so no teardown runs in a handler;
//! * the state lock is never taken twice by one thread (debug builds abort with a message);
//! * the registry's lock is held only to find a runtime and count a reader;
//! * no call into the logger: the engine logs through `engine::logq`, which queues a line
//!   written here into a fixed ring, and the reclaimer thread writes it (`tests/layers.rs`
//!   checks that the engine never calls `log::` directly; `tests/in_thread_log.rs` that a
//!   failing in-thread fault's line reaches the logger from another thread).
//!
//! Failure paths may still allocate (an OOM kill builds its report; formatting a system error
//! may); ordinary faults do not.

use crate::engine::dispatch::{Access, Need, need};
use crate::engine::fault::{Fault, Scratch, THIS_THREAD};
use crate::engine::{Core, Liveness};
use crate::util::lock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

thread_local! {
    /// This thread's identity in stall accounting (see [`stall_id`]); 0 until first needed.
    static STALL_ID: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// A per-thread id for stall accounting in in-thread mode, without a syscall per fault. Stall
/// accounting needs only distinct ids; these have the top bit set, kernel thread ids never do.
fn stall_id() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    STALL_ID.with(|c| {
        if c.get() == 0 {
            c.set(0x8000_0000 | (NEXT.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff));
        }
        c.get()
    })
}

/// One in-thread runtime known to the SIGBUS handler.
struct Registered {
    /// The registry's own reference; `None` once the runtime has gone (or is going).
    core: Option<std::sync::Arc<Core>>,
    /// Handlers holding a reference to the runtime right now: the registry's is dropped only
    /// once they are done, so that theirs is never the last.
    readers: usize,
}

/// Runtimes in [`FaultMode::InThread`](crate::FaultMode::InThread), for the SIGBUS handler.
/// An entry keeps its index while anybody may use it, so that the handler can walk the list an
/// index at a time without holding the lock while it resolves a fault. The handler never drops
/// the last reference to a runtime: that would tear the runtime down (and free its memory)
/// inside a signal handler.
static IN_THREAD: std::sync::Mutex<Vec<Registered>> = std::sync::Mutex::new(Vec::new());

/// Staging buffers made for an in-thread runtime up front, and room kept in its pool, so that
/// faults allocate nothing until more threads than this fault at once.
const IN_THREAD_SCRATCH: usize = 16;

pub(crate) fn register_in_thread(core: &std::sync::Arc<Core>) -> crate::Result<()> {
    crate::sys::signal::install_sigbus(resolve_sigbus)?;
    {
        let mut pool = lock(&core.bufs.scratch);
        pool.reserve(IN_THREAD_SCRATCH);
        let ready = std::thread::available_parallelism().map_or(2, |n| n.get()).min(IN_THREAD_SCRATCH);
        for _ in 0..ready {
            pool.push(Scratch::new(core)?);
        }
    }
    let mut v = lock(&IN_THREAD);
    let entry = Registered { core: Some(core.clone()), readers: 0 };
    match v.iter_mut().find(|e| e.core.is_none() && e.readers == 0) {
        Some(free) => *free = entry,
        None => v.push(entry),
    }
    Ok(())
}

/// Forgets an in-thread runtime, once no SIGBUS handler is using it.
pub(crate) fn unregister_in_thread(core: &Core) {
    let found = {
        let mut v = lock(&IN_THREAD);
        v.iter_mut().enumerate().find_map(|(i, e)| {
            e.core.as_ref().filter(|c| std::ptr::eq(&***c, core))?;
            Some((i, e.core.take()))
        })
    };
    let Some((i, gone)) = found else { return };
    // Handlers that found the runtime before it left the list are done with it quickly: it owns
    // no region any more (the last handle is going), so they find the address is not its own.
    while lock(&IN_THREAD)[i].readers > 0 {
        std::thread::yield_now();
    }
    drop(gone);
}

/// Resolves a fault at `addr` with the in-thread runtime registered at index `i`: `None` past the
/// end of the list, `Some(None)` when the entry is free or the runtime does not own `addr`.
fn resolve_at(i: usize, addr: usize, write: bool) -> Option<Option<bool>> {
    let c = {
        let mut v = lock(&IN_THREAD);
        let e = v.get_mut(i)?;
        let Some(c) = &e.core else { return Some(None) };
        e.readers += 1;
        c.clone()
    };
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.fault_in_thread(addr, write)))
        .unwrap_or_else(|p| {
            c.fail(format!("an in-thread fault panicked: {}", crate::util::panic_text(&p)));
            c.fault_in_thread(addr, write)
        });
    // Never the last reference: `unregister_in_thread` keeps the registry's until the count of
    // readers, decremented only after this drop, is zero.
    drop(c);
    lock(&IN_THREAD)[i].readers -= 1;
    Some(served)
}

/// The SIGBUS resolver: finds the runtime owning `addr` and resolves the fault in this thread.
fn resolve_sigbus(addr: usize, write: bool) -> bool {
    // Lines the fault code logs from here on are queued, not written (see `engine::logq`).
    let _scope = crate::engine::logq::HandlerScope::enter();
    let mut i = 0;
    while let Some(served) = resolve_at(i, addr, write) {
        if let Some(retry) = served {
            return retry;
        }
        i += 1;
    }
    false
}

impl Core {
    /// Resolves a fault in the faulting thread (in-thread mode). `None` if `addr` is not this
    /// runtime's; `Some(true)` to retry the access; `Some(false)` to deliver the SIGBUS.
    fn fault_in_thread(&self, addr: usize, write: bool) -> Option<bool> {
        let ps = self.page();
        let (tid, sid) = (THIS_THREAD, stall_id());
        let t0 = Instant::now();
        let mut st = self.lock();
        // Not this runtime's address: let the next runtime (or the previous handler) have it.
        st.locate(addr, ps)?;
        // The thread is stalled from here until its fault is resolved.
        let arena = self.stall_enter_one(&mut st, addr, sid, t0);
        // The staging buffers: taken from the pool (made up front, see `register_in_thread`).
        let pooled = lock(&self.bufs.scratch).pop();
        let mut scratch = match pooled {
            Some(s) => s,
            // More threads faulting at once than buffers made: one more (allocates).
            None => match Scratch::new(self) {
                Ok(s) => s,
                Err(e) => {
                    drop(st);
                    log::error!("pagewarden: no staging buffer for an in-thread fault: {e}");
                    self.stall_leave(arena, sid);
                    return Some(false);
                }
            },
        };
        // Whether the access must fail (SIGBUS), as the fault's steps decide.
        let mut sigbus = false;
        // The first pass goes on with the lock taken above.
        let mut held = Some((st, t0));
        loop {
            let (mut st, t0) = match held.take() {
                Some(h) => h,
                None => (self.lock(), Instant::now()),
            };
            let Some((rid, page)) = st.locate(addr, ps) else { break };
            let mut f = Fault::new(rid, page, write, tid, t0);
            if st.region(rid).live != Liveness::Live || self.is_failed() {
                self.resolve_dead(&mut st, &mut f);
                sigbus = f.sigbus;
                break;
            }
            let e = st.region(rid).pages.get(page);
            match need(e, Access { write, wp: None }) {
                // This thread is the faulting one: it waits here, then looks again.
                Need::InFlight | Need::Reserved => {
                    drop(self.wait_progress(st, Duration::from_millis(5)));
                }
                Need::MakeWritable => {
                    let mut st = self.write_fault(st, &mut f);
                    self.record(&mut st, &f);
                    sigbus = f.sigbus;
                    break;
                }
                Need::Dead => {
                    self.resolve_dead(&mut st, &mut f);
                    sigbus = f.sigbus;
                    break;
                }
                Need::PageIn => {
                    self.page_in(st, &mut f, &mut scratch);
                    sigbus = f.sigbus;
                    break;
                }
                // Resident already (another thread was faster), or a readable copy: retry.
                Need::Retry => {
                    st.counters(rid).spurious += 1;
                    break;
                }
            }
        }
        self.stall_leave(arena, sid);
        let mut pool = lock(&self.bufs.scratch);
        // Kept only while the pool has room (it never grows here); an extra one is unmapped.
        if pool.len() < pool.capacity() {
            pool.push(scratch);
        }
        Some(!sigbus)
    }
}

//! The handler threads: they read fault events from the userfaultfd and serve them one by one.

use crate::engine::Core;
use crate::engine::fault::Scratch;
use crate::sys::poll::poll2;
use crate::sys::uffd::UffdEvent;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub(crate) fn handler_loop(core: &Core) {
    let mut scratch = match Scratch::new(core) {
        Ok(s) => s,
        Err(e) => {
            log::error!("pagewarden: handler cannot allocate its buffer: {e}");
            return;
        }
    };
    let mut evs = [UffdEvent::Other(0); 64];
    while !core.health.shutdown.load(Ordering::Acquire) {
        match poll2(core.uffd.raw_fd(), core.waker.raw_fd(), 1000) {
            Ok((true, _)) => {}
            Ok(_) => continue,
            Err(e) => {
                log::error!("pagewarden: poll on userfaultfd failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        }
        loop {
            let n = match core.uffd.read_events(&mut evs) {
                Ok(n) => n,
                Err(e) => {
                    log::error!("pagewarden: reading userfaultfd events failed: {e}");
                    0
                }
            };
            if n == 0 {
                break;
            }
            // Every thread of the batch is stalled from now until its fault is resolved.
            let arenas = core.stall_enter(&evs[..n]);
            for (ev, arena) in evs[..n].iter().zip(arenas) {
                match *ev {
                    UffdEvent::PageFault { addr, write, wp, tid } => {
                        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            core.fault(addr, write, wp, tid, &mut scratch)
                        }));
                        if let Err(p) = served {
                            core.fail(format!("a fault handler panicked: {}", crate::util::panic_text(&p)));
                            // Threads parked on pages the panic left in flight (a readahead run).
                            core.release_parked();
                            // Release the thread whose fault was being served.
                            core.fault(addr, write, wp, tid, &mut scratch);
                        }
                        core.stall_leave(arena, tid);
                    }
                    UffdEvent::Other(kind) => {
                        log::warn!("pagewarden: unexpected userfaultfd event {kind}")
                    }
                }
            }
        }
    }
}

impl Core {
    /// Stall accounting: the faulting threads of a batch start waiting. Returns each event's arena.
    fn stall_enter(&self, evs: &[UffdEvent]) -> Vec<Option<u32>> {
        let now = Instant::now();
        let mut st = self.lock();
        evs.iter()
            .map(|ev| match *ev {
                UffdEvent::PageFault { addr, tid, .. } => self.stall_enter_one(&mut st, addr, tid, now),
                UffdEvent::Other(_) => None,
            })
            .collect()
    }
}

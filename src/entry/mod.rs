//! Where faults and background work enter the engine: the handler threads, the in-thread SIGBUS
//! resolver, and the reclaimer thread. Each reads its input (fault events, a SIGBUS, a timer),
//! asks the engine, and acts on the answer.

pub(crate) mod handler;
pub(crate) mod reclaimer;
pub(crate) mod sigbus;

use crate::engine::Core;
use crate::util::lock;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

impl std::fmt::Debug for RtHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RtHandle")
    }
}

/// Owns the threads; when the last handle (runtime, arena or region) goes, they stop.
pub(crate) struct RtHandle {
    pub(crate) core: Arc<Core>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for RtHandle {
    fn drop(&mut self) {
        self.core.health.shutdown.store(true, Ordering::Release);
        self.core.waker.wake();
        {
            let _g = self.core.lock();
            self.core.signals.reclaim.notify_all();
            self.core.signals.progress.notify_all();
        }
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            let _ = t.join();
        }
        if self.core.caps.in_thread {
            crate::entry::sigbus::unregister_in_thread(&self.core);
        }
        // Lines logged by in-thread faults since the reclaimer's last round.
        crate::engine::logq::flush();
    }
}

impl RtHandle {
    /// Takes the runtime's started threads.
    pub(crate) fn new(core: Arc<Core>, threads: Vec<JoinHandle<()>>) -> RtHandle {
        RtHandle { core, threads: Mutex::new(threads) }
    }

    /// Takes one more started thread: stopped and joined with the others.
    pub(crate) fn adopt(&self, t: JoinHandle<()>) {
        lock(&self.threads).push(t);
    }
}

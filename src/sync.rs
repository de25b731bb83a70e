//! The one way this crate takes a mutex.
//!
//! Poisoning is ignored everywhere: a panic in another thread while it held a lock leaves the data
//! as that thread left it, and the runtime keeps serving (a panic inside the engine marks the
//! runtime failed on its own path) rather than leave application threads parked for ever on a
//! poisoned lock.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning (see the module docs).
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

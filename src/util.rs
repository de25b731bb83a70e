//! Helpers every layer uses, the platform layer included: the one way this crate takes a mutex,
//! and the lossless conversions between page indices and sizes.
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

// Page indices are u64 and offsets usize: lossless only on 64-bit targets, which are the only
// ones userfaultfd-based paging is built for.
const _: () = assert!(usize::BITS == 64, "pagewarden supports 64-bit targets only");

/// A page index (or count) as `usize`; lossless on the 64-bit targets the crate builds for.
#[allow(clippy::cast_possible_truncation)]
pub(crate) const fn idx(x: u64) -> usize {
    x as usize
}

/// A count the caller has bounded (by the budget, the swap capacity or a batch size) as `u32`.
pub(crate) fn n32(x: usize) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

/// The message of a caught panic.
pub(crate) fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default()
}

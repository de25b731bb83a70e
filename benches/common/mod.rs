//! What the paging benchmarks share: their random generator, the memory cgroup the kernel
//! backend runs in, and its count of major faults.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// xorshift64: fast, and the same stream in the bench and its kernel child.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A memory cgroup limited to `budget_bytes` for the kernel backend (`tag` names it), or why
/// there can be none: it needs root, and active swap for the kernel to page to.
pub(crate) fn kernel_setup(budget_bytes: usize, tag: &str) -> Result<PathBuf, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root: a memory cgroup is needed to give the kernel the same budget".into());
    }
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    if swaps.lines().count() < 2 {
        return Err("no active swap in /proc/swaps (see the README: fallocate, mkswap, swapon)".into());
    }
    let name = format!("pagewarden-bench-{tag}-{}", std::process::id());
    let v1 = Path::new("/sys/fs/cgroup/memory");
    let (dir, limit_file) = if v1.join("memory.limit_in_bytes").exists() {
        (v1.join(&name), "memory.limit_in_bytes")
    } else {
        let root = Path::new("/sys/fs/cgroup");
        let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory");
        (root.join(&name), "memory.max")
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if let Err(e) = std::fs::write(dir.join(limit_file), budget_bytes.to_string()) {
        let _ = std::fs::remove_dir(&dir);
        return Err(format!("cannot set {}/{limit_file}: {e}", dir.display()));
    }
    Ok(dir)
}

/// This process's major faults so far.
pub(crate) fn majflt() -> u64 {
    // SAFETY: all-zero bytes are a valid rusage (integers and timevals only).
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage struct for getrusage to fill.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    u64::try_from(ru.ru_majflt).unwrap_or(0)
}

//! Giving memory back to the system after bursts of large allocations.
//!
//! Each argon2 check allocates its 19 MiB matrix. glibc raises its mmap
//! threshold after the first such block is freed, so later ones come from
//! the per-thread arenas and stay with the process for good: a few dozen
//! failed logins from different threads grew a 16 MB process past 500 MB.
//! A fixed threshold keeps large blocks in their own mappings (unmapped on
//! free), and a trim after a burst returns what the arenas kept.
#![allow(
    unsafe_code,
    reason = "mallopt/malloc_trim have no safe wrapper in std"
)]

/// Blocks from this size up get their own mapping.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// Fixes the allocator's mmap threshold (see the module doc). Call once,
/// early in `main`.
#[allow(unsafe_code, reason = "mallopt has no safe wrapper")]
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; any value is safe.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Returns the free memory the allocator holds to the system.
#[allow(unsafe_code, reason = "malloc_trim has no safe wrapper")]
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

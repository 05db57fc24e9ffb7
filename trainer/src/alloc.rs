//! The C heap's behaviour under libtorch's CPU allocator.
//!
//! libtorch frees and re-allocates every activation and gradient buffer each step. glibc
//! serves blocks above its mmap threshold (128 KiB, adapting up to 32 MiB) with fresh
//! `mmap`s and returns them on free, and trims the heap top above 128 KiB, so every step
//! faults its buffers in again, page by page, zeroed by the kernel. Raising both
//! thresholds lets freed buffers be reused from the heap instead: the small AlexNet's CPU
//! step at batch 128 got about 10% faster (docs/benchmarks.md). PyTorch users get the same
//! effect from jemalloc or tcmalloc.

/// Blocks up to this size come from the heap rather than `mmap`; glibc builds that
/// refuse it (older ones cap the value at 32 MiB) get [`MMAP_THRESHOLD_FALLBACK`].
pub const MMAP_THRESHOLD: usize = 256 << 20;
/// The largest mmap threshold every 64-bit glibc accepts.
pub const MMAP_THRESHOLD_FALLBACK: usize = 32 << 20;
/// The heap keeps up to this much free memory at its top instead of returning it.
pub const TRIM_THRESHOLD: usize = 512 << 20;

/// Sets glibc's mmap and trim thresholds (see the module docs); call it once at start-up,
/// before the first tensor. Returns the mmap threshold now in force, or None where this
/// does not apply (not glibc) or glibc refused every value.
pub fn keep_freed_buffers() -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it validates the values.
        let set = |param, value: usize| unsafe { libc::mallopt(param, value as libc::c_int) == 1 };
        if !set(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) {
            return None;
        }
        [MMAP_THRESHOLD, MMAP_THRESHOLD_FALLBACK]
            .into_iter()
            .find(|&v| set(libc::M_MMAP_THRESHOLD, v))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_a_threshold() {
        let v = super::keep_freed_buffers().expect("glibc refused the thresholds");
        assert!(v >= super::MMAP_THRESHOLD_FALLBACK);
    }
}

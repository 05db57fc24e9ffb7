//! The shim's C interface (`csrc/shim.cpp`).

use std::os::raw::c_char;

/// `uic_c10d_group`: a store and a ProcessGroupGloo (or ProcessGroupNCCL).
#[repr(C)]
pub(crate) struct Group {
    _private: [u8; 0],
}

/// `uic_c10d_overlap`: the hooks and buckets of the overlapped gradient sync.
#[repr(C)]
pub(crate) struct Overlap {
    _private: [u8; 0],
}

/// `at::Tensor`, what a `tch::Tensor` points at.
#[repr(C)]
pub(crate) struct AtTensor {
    _private: [u8; 0],
}

extern "C" {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn uic_c10d_new(
        host: *const c_char,
        port: u16,
        rank: i32,
        world: i32,
        agent_store: i32,
        prefix: *const c_char,
        device_host: *const c_char,
        nccl_device: i32,
        timeout_ms: i64,
        err: *mut *mut c_char,
    ) -> *mut Group;
    pub(crate) fn uic_c10d_has_nccl() -> i32;
    pub(crate) fn uic_c10d_free(g: *mut Group);
    pub(crate) fn uic_c10d_store_host(
        port: u16,
        world: i32,
        timeout_ms: i64,
        err: *mut *mut c_char,
    ) -> *mut std::ffi::c_void;
    pub(crate) fn uic_c10d_store_port(s: *mut std::ffi::c_void) -> u16;
    pub(crate) fn uic_c10d_store_free(s: *mut std::ffi::c_void);
    pub(crate) fn uic_c10d_free_string(s: *mut c_char);
    pub(crate) fn uic_c10d_allreduce_sum(
        g: *mut Group,
        ts: *const *mut AtTensor,
        n: usize,
        err: *mut *mut c_char,
    ) -> i32;
    pub(crate) fn uic_c10d_broadcast(
        g: *mut Group,
        ts: *const *mut AtTensor,
        n: usize,
        root: i32,
        err: *mut *mut c_char,
    ) -> i32;
    pub(crate) fn uic_c10d_allgather(
        g: *mut Group,
        output: *mut AtTensor,
        input: *mut AtTensor,
        err: *mut *mut c_char,
    ) -> i32;
    pub(crate) fn uic_c10d_barrier(g: *mut Group, err: *mut *mut c_char) -> i32;
    pub(crate) fn uic_rng_state(
        cuda: i32,
        index: i32,
        buf: *mut u8,
        cap: i64,
        err: *mut *mut c_char,
    ) -> i64;
    pub(crate) fn uic_rng_set_state(
        cuda: i32,
        index: i32,
        buf: *const u8,
        len: i64,
        err: *mut *mut c_char,
    ) -> i32;
    pub(crate) fn uic_c10d_overlap_new(
        g: *mut Group,
        ps: *const *mut AtTensor,
        n: usize,
        bucket_bytes: i64,
        err: *mut *mut c_char,
    ) -> *mut Overlap;
    pub(crate) fn uic_c10d_overlap_begin(
        o: *mut Overlap,
        share: f64,
        values: *mut AtTensor,
        err: *mut *mut c_char,
    ) -> i32;
    pub(crate) fn uic_c10d_overlap_finish(o: *mut Overlap, err: *mut *mut c_char) -> i32;
    pub(crate) fn uic_c10d_overlap_free(o: *mut Overlap);
}

//! The dtype of mixed precision (`amp = true`).
//!
//! tch's `autocast` switches libtorch's CUDA autocast on, whose default dtype is float16.
//! float16 without loss scaling lets small gradients underflow, so the trainer runs autocast
//! in bfloat16 (float32's exponent range), as `torch.autocast("cuda", dtype=torch.bfloat16)`
//! does. tch wraps no dtype setter; libtorch's `at::autocast::set_autocast_dtype` and
//! `get_autocast_dtype` are called through their C++ symbols in `libtorch_cpu`. Both take
//! and return one-byte enums (`c10::DeviceType`, `c10::ScalarType`, each `: int8_t`), which
//! the C ABI passes as `i8`.

const DEVICE_CUDA: i8 = 1; // c10::DeviceType::CUDA
const SCALAR_HALF: i8 = 5; // c10::ScalarType::Half
const SCALAR_BFLOAT16: i8 = 15; // c10::ScalarType::BFloat16

extern "C" {
    #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
    fn at_set_autocast_dtype(device_type: i8, dtype: i8);
    #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
    fn at_get_autocast_dtype(device_type: i8) -> i8;
}

/// The dtype CUDA autocast casts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmpDtype {
    /// bfloat16 (what the trainer uses).
    BFloat16,
    /// float16 (libtorch's default).
    Half,
    /// Something else, by its `c10::ScalarType` number.
    Other(i8),
}

/// Makes CUDA autocast use bfloat16 (process-wide; idempotent).
pub fn use_bfloat16() {
    // SAFETY: a plain setter of a global in libtorch, with valid enum values.
    unsafe { at_set_autocast_dtype(DEVICE_CUDA, SCALAR_BFLOAT16) }
}

/// The dtype CUDA autocast currently casts to.
pub fn cuda_dtype() -> AmpDtype {
    // SAFETY: a plain getter with a valid enum value.
    match unsafe { at_get_autocast_dtype(DEVICE_CUDA) } {
        SCALAR_BFLOAT16 => AmpDtype::BFloat16,
        SCALAR_HALF => AmpDtype::Half,
        o => AmpDtype::Other(o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autocast_dtype_goes_from_libtorchs_float16_to_bfloat16() {
        // The default (nothing else in this test binary touches the setting).
        assert_eq!(cuda_dtype(), AmpDtype::Half);
        use_bfloat16();
        assert_eq!(cuda_dtype(), AmpDtype::BFloat16);
    }
}

//! libtorch's default random generators, saved and restored: a checkpoint taken part-way
//! through an epoch keeps where dropout's draws stand, so that a resumed run draws exactly
//! what an uninterrupted one would. (tch has no call for it; the shim does it in C++.)

use tch::Device;

use crate::{check, ffi, take_message, Error};

fn device_args(device: Device) -> (i32, i32) {
    match device {
        Device::Cuda(i) => (1, i as i32),
        _ => (0, 0),
    }
}

/// The state of `device`'s default generator (the CPU's for every device but CUDA), as
/// bytes for [`set_state`].
///
/// # Errors
/// A device libtorch cannot reach.
pub fn state(device: Device) -> Result<Vec<u8>, Error> {
    let (cuda, index) = device_args(device);
    let mut buf = vec![0u8; 8192];
    loop {
        let mut err = std::ptr::null_mut();
        // SAFETY: `buf` is writable for `buf.len()` bytes; the shim writes at most that many.
        let n = unsafe {
            ffi::uic_rng_state(cuda, index, buf.as_mut_ptr(), buf.len() as i64, &mut err)
        };
        if n < 0 {
            return Err(Error {
                op: "reading the random generator's state",
                message: take_message(err),
            });
        }
        let n = n as usize;
        if n <= buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        buf.resize(n, 0);
    }
}

/// Restores a state [`state`] returned for the same kind of device.
///
/// # Errors
/// A state of the wrong size (from another device or libtorch).
pub fn set_state(device: Device, bytes: &[u8]) -> Result<(), Error> {
    let (cuda, index) = device_args(device);
    let mut err = std::ptr::null_mut();
    // SAFETY: `bytes` is readable for its length; the shim copies it.
    let rc = unsafe {
        ffi::uic_rng_set_state(cuda, index, bytes.as_ptr(), bytes.len() as i64, &mut err)
    };
    check("restoring the random generator's state", rc, err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn a_restored_state_draws_the_same_numbers_again() {
        tch::manual_seed(3);
        let _ = Tensor::rand([5], (Kind::Float, Device::Cpu));
        let s = state(Device::Cpu).unwrap();
        let a = Tensor::rand([64], (Kind::Float, Device::Cpu));
        let b = Tensor::rand([64], (Kind::Float, Device::Cpu));
        assert!(!a.equal(&b), "the generator moves on");
        set_state(Device::Cpu, &s).unwrap();
        let again = Tensor::rand([64], (Kind::Float, Device::Cpu));
        assert!(a.equal(&again), "the restored state draws the same numbers");
        assert!(
            set_state(Device::Cpu, &s[..s.len() - 1]).is_err(),
            "a short state is refused"
        );
    }
}

//! The UIC trainer on libtorch, through [`tch`].
//!
//! This crate links libtorch 2.11.0 (tch 0.24.0). The models, the pseudo-label table and the
//! training loop land with the trainer issue; today the crate proves that the libtorch set-up
//! works end to end (see `tests/libtorch.rs`) and re-exports `tch` so that dependants use the
//! exact same version.
//!
//! ```
//! use uic_trainer::tch::{Device, Kind, Tensor};
//! let t = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
//! assert_eq!(t.sum(Kind::Float).double_value(&[]), 6.0);
//! ```

pub use tch;

/// The PyTorch release this crate's tch (0.24.0) is built against.
pub const LIBTORCH_VERSION: &str = "2.11.0";

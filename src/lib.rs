//! The facade of the UIC workspace: re-exports every crate so that `tests/` and `benches/`
//! (and users who want one dependency) reach all of them.
//!
//! - [`loader`]: record files, JPEG decode, conversion.
//! - [`augment`]: augmentation kernels.
//! - [`trainer`]: the libtorch trainer.

pub use uic_augment as augment;
pub use uic_loader as loader;
pub use uic_trainer as trainer;

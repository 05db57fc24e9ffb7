//! Image augmentations as plain kernels on slices, each with a small config struct and a
//! per-sample RNG derived from (seed, epoch, index).
//!
//! Each operation lives in its own file as a plain kernel on slices plus a config struct:
//! [`flip`], [`jitter`] (brightness, contrast, saturation, hue), [`grayscale`], [`blur`],
//! [`sobel`], [`normalize`]. Their arithmetic follows torchvision's tensor functions on uint8
//! images, checked against golden outputs in `tests/golden.rs`. [`Augment`] chains them
//! into the paper's presets; [`sample_rng`] gives each sample its own random stream.
//!
//! ```
//! use rand::Rng;
//! let a: u64 = uic_augment::sample_rng(7, 2, 1000).gen();
//! let b: u64 = uic_augment::sample_rng(7, 2, 1000).gen();
//! assert_eq!(a, b);
//! ```

pub mod blur;
mod colour;
pub mod flip;
pub mod grayscale;
pub mod jitter;
pub mod normalize;
mod preset;
pub mod sobel;

pub use blur::{gaussian_blur, BlurConfig};
pub use flip::{hflip, FlipConfig};
pub use grayscale::{grayscale, GrayscaleConfig};
pub use jitter::JitterConfig;
pub use normalize::{normalize, NormalizeConfig};
pub use preset::{Augment, Preset};
pub use sobel::sobel;

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// The RNG of one sample in one epoch. It depends only on `(seed, epoch, index)`, never on
/// which thread draws it or when, so augmented batches are identical for any thread count.
pub fn sample_rng(seed: u64, epoch: u64, index: u64) -> Xoshiro256PlusPlus {
    // SplitMix64-style mixing of the three words into one well-spread seed.
    let mut z = seed
        ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ index.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    Xoshiro256PlusPlus::seed_from_u64(z ^ (z >> 31))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_differ_by_seed_epoch_and_index() {
        let draw = |s, e, i| sample_rng(s, e, i).gen::<u64>();
        let base = draw(1, 1, 1);
        assert_eq!(base, draw(1, 1, 1));
        assert_ne!(base, draw(2, 1, 1));
        assert_ne!(base, draw(1, 2, 1));
        assert_ne!(base, draw(1, 1, 2));
        assert_ne!(draw(0, 1, 0), draw(0, 0, 1));
    }
}

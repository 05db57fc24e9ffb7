//! Grayscale, as torchvision's `rgb_to_grayscale` on uint8 tensors.

use rand::Rng;

/// Random grayscale settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrayscaleConfig {
    /// Probability of converting (SimCLR: 0.2).
    pub p: f64,
}

impl Default for GrayscaleConfig {
    fn default() -> Self {
        GrayscaleConfig { p: 0.2 }
    }
}

impl GrayscaleConfig {
    /// Draws whether to convert (one number from `rng`), as [`GrayscaleConfig::apply`] does.
    pub fn draw(&self, rng: &mut impl Rng) -> bool {
        rng.gen_bool(crate::chance(self.p))
    }

    /// Converts `hwc` (packed RGB) to gray in all three channels with probability `p`.
    /// Draws exactly one number from `rng`.
    pub fn apply(&self, hwc: &mut [u8], rng: &mut impl Rng) -> bool {
        let gray = self.draw(rng);
        if gray {
            grayscale(hwc);
        }
        gray
    }
}

/// The luma of one pixel: `0.2989 r + 0.587 g + 0.114 b` in f32, truncated, as torchvision.
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((0.2989f32 * r as f32 + 0.587f32 * g as f32) + 0.114f32 * b as f32) as u8
}

/// Replaces each RGB pixel of packed `hwc` by its luma in all three channels.
pub fn grayscale(hwc: &mut [u8]) {
    crate::colour::run(hwc, &[crate::colour::Step::Gray], false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grayscale_matches_the_scalar_reference() {
        for len in (0..=100).chain([224 * 224 * 3, 3 * 17 + 2]) {
            let img: Vec<u8> = (0..len).map(|i| (i * 73 % 256) as u8).collect();
            let mut got = img.clone();
            grayscale(&mut got);
            let mut want = img.clone();
            crate::jitter::reference::grayscale(&mut want);
            assert_eq!(got, want, "len {len}");
        }
    }
}

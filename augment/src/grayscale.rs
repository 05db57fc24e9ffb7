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
    /// Converts `hwc` (packed RGB) to gray in all three channels with probability `p`.
    /// Draws exactly one number from `rng`.
    pub fn apply(&self, hwc: &mut [u8], rng: &mut impl Rng) -> bool {
        let gray = rng.gen_bool(self.p.clamp(0.0, 1.0));
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
    for px in hwc.chunks_exact_mut(3) {
        let l = luma(px[0], px[1], px[2]);
        px.fill(l);
    }
}

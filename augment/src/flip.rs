//! Horizontal flip.

use rand::Rng;

/// Random horizontal flip settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlipConfig {
    /// Probability of flipping (torchvision's default 0.5).
    pub p: f64,
}

impl Default for FlipConfig {
    fn default() -> Self {
        FlipConfig { p: 0.5 }
    }
}

impl FlipConfig {
    /// Draws whether to flip (one number from `rng`), without touching pixels: for callers
    /// that mirror while copying the image anyway.
    pub fn draw(&self, rng: &mut impl Rng) -> bool {
        rng.gen_bool(crate::chance(self.p))
    }

    /// Flips `hwc` (packed, `c` channels) with probability `p`; returns whether it flipped.
    /// Draws exactly one number from `rng` either way.
    pub fn apply(&self, hwc: &mut [u8], w: usize, h: usize, c: usize, rng: &mut impl Rng) -> bool {
        let flip = self.draw(rng);
        if flip {
            hflip(hwc, w, h, c);
        }
        flip
    }
}

/// Mirrors each row of a packed `w x h` image with `c` channels in place.
///
/// # Panics
/// If `hwc.len() != w * h * c`.
pub fn hflip(hwc: &mut [u8], w: usize, h: usize, c: usize) {
    assert_eq!(hwc.len(), w * h * c, "buffer is not {w}x{h}x{c}");
    for row in hwc.chunks_exact_mut(w * c) {
        // Reversing the bytes mirrors the pixels and reverses each pixel's channels;
        // reversing each pixel back restores the channel order. Both passes vectorise.
        row.reverse();
        if c > 1 {
            for px in row.chunks_exact_mut(c) {
                px.reverse();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_rows() {
        // 3x2 RGB: pixels numbered by position.
        let mut img: Vec<u8> = (0..18).collect();
        hflip(&mut img, 3, 2, 3);
        assert_eq!(
            img,
            vec![6, 7, 8, 3, 4, 5, 0, 1, 2, 15, 16, 17, 12, 13, 14, 9, 10, 11]
        );
        hflip(&mut img, 3, 2, 3);
        assert_eq!(img, (0..18).collect::<Vec<u8>>());
    }
}

//! The paper's augmentation presets, as a chain of the kernels.

use rand::Rng;

use crate::{hflip, BlurConfig, FlipConfig, GrayscaleConfig, JitterConfig};

/// Named pipelines (the crop is the loader's part: RandomResizedCrop, or centre for `eval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Preset {
    /// RandomResizedCrop + flip.
    Paper,
    /// RandomResizedCrop + flip + colour jitter (p 0.8) + grayscale (p 0.2) + blur (p 0.5).
    Strong,
    /// Centre crop, nothing random.
    Eval,
}

/// The per-sample augmentations after the crop, in torchvision's order: flip, jitter,
/// grayscale, blur. `None` skips a step (and its random draws).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Augment {
    /// Horizontal flip.
    pub flip: Option<FlipConfig>,
    /// Colour jitter.
    pub jitter: Option<JitterConfig>,
    /// Random grayscale.
    pub grayscale: Option<GrayscaleConfig>,
    /// Gaussian blur.
    pub blur: Option<BlurConfig>,
}

impl Augment {
    /// Nothing at all.
    pub fn none() -> Self {
        Augment::default()
    }

    /// The steps of a preset, with SimCLR's strengths for `strong`.
    pub fn preset(p: Preset) -> Self {
        match p {
            Preset::Eval => Augment::none(),
            Preset::Paper => Augment {
                flip: Some(FlipConfig::default()),
                ..Augment::none()
            },
            Preset::Strong => Augment {
                flip: Some(FlipConfig::default()),
                jitter: Some(JitterConfig::default()),
                grayscale: Some(GrayscaleConfig::default()),
                blur: Some(BlurConfig::default()),
            },
        }
    }

    /// Applies the steps to packed RGB `hwc` (`w x h`). `scratch` is the blur's buffer.
    pub fn apply(
        &self,
        hwc: &mut [u8],
        w: usize,
        h: usize,
        rng: &mut impl Rng,
        scratch: &mut Vec<f32>,
    ) {
        if self.flip.is_some_and(|f| f.draw(rng)) {
            hflip(hwc, w, h, 3);
        }
        self.colour(hwc, rng);
        if let Some(b) = self.blur {
            b.apply(hwc, w, h, rng, scratch);
        }
    }

    /// Jitter, then grayscale: the per-pixel colour steps. When both happen, the grayscale
    /// runs in the jitter's last pass ([`JitterConfig::apply_then_gray`]): the same draws
    /// and bytes as one after the other, with one pass fewer.
    fn colour(&self, hwc: &mut [u8], rng: &mut impl Rng) {
        match (self.jitter, self.grayscale) {
            (Some(j), gray) => {
                j.apply_then_gray(hwc, rng, gray);
            }
            (None, Some(g)) => {
                g.apply(hwc, rng);
            }
            (None, None) => {}
        }
    }

    /// Like [`Augment::apply`], but leaves the flip to the caller: returns whether the image
    /// must be mirrored. Every later step commutes exactly with the flip: jitter and
    /// grayscale are per pixel or use the global mean, and the blur sums each symmetric pair
    /// of taps before weighting it (see [`crate::blur`]), so mirroring while copying gives
    /// the same bytes as `apply` with one pass fewer.
    pub fn apply_deferring_flip(
        &self,
        hwc: &mut [u8],
        w: usize,
        h: usize,
        rng: &mut impl Rng,
        scratch: &mut Vec<f32>,
    ) -> bool {
        let mirror = self.flip.is_some_and(|f| f.draw(rng));
        self.colour(hwc, rng);
        if let Some(b) = self.blur {
            b.apply(hwc, w, h, rng, scratch);
        }
        mirror
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample_rng;

    #[test]
    fn deferring_the_flip_gives_the_same_bytes() {
        let (w, h) = (9, 7);
        let img: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 256) as u8).collect();
        let no_blur = Augment {
            blur: None,
            ..Augment::preset(Preset::Strong)
        };
        for aug in [
            Augment::preset(Preset::Paper),
            no_blur,
            Augment::preset(Preset::Strong),
        ] {
            for i in 0..200 {
                let mut a = img.clone();
                aug.apply(&mut a, w, h, &mut sample_rng(1, 2, i), &mut Vec::new());
                let mut b = img.clone();
                if aug.apply_deferring_flip(&mut b, w, h, &mut sample_rng(1, 2, i), &mut Vec::new())
                {
                    hflip(&mut b, w, h, 3);
                }
                assert_eq!(a, b, "{aug:?} draw {i}");
            }
        }
    }
}

//! The paper's augmentation presets, as a chain of the kernels.

use rand::Rng;

use crate::jitter::JitterDraw;
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
        if self.apply_deferring_flip(hwc, w, h, rng, scratch) {
            hflip(hwc, w, h, 3);
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
        let d = self.draw(rng);
        self.apply_drawn(&d, hwc, w, h, scratch);
        d.mirror
    }

    /// Every random choice of one sample's steps, without touching pixels: the numbers
    /// [`Augment::apply`] draws, in its order, so a consumer (the trainer's device ops) can
    /// apply them later and elsewhere and get the same image.
    pub fn draw(&self, rng: &mut impl Rng) -> Drawn {
        Drawn {
            mirror: self.flip.is_some_and(|f| f.draw(rng)),
            jitter: self.jitter.and_then(|j| j.draw(rng)),
            gray: self.grayscale.is_some_and(|g| g.draw(rng)),
            blur: self.blur.and_then(|b| b.draw(rng)),
        }
    }

    /// The steps after the flip, as `d` drew them: jitter, grayscale (fused into the
    /// jitter's last pass when both happen), blur.
    pub fn apply_drawn(
        &self,
        d: &Drawn,
        hwc: &mut [u8],
        w: usize,
        h: usize,
        scratch: &mut Vec<f32>,
    ) {
        crate::jitter::jitter_then_gray(d.jitter.as_ref(), d.gray, hwc);
        if let (Some(b), Some(sigma)) = (self.blur, d.blur) {
            b.blur(hwc, w, h, sigma, scratch);
        }
    }
}

/// One sample's random choices after the crop ([`Augment::draw`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Drawn {
    /// Mirror the image left to right.
    pub mirror: bool,
    /// The colour jitter's adjustments, if it jitters.
    pub jitter: Option<JitterDraw>,
    /// Convert to grayscale, after the jitter.
    pub gray: bool,
    /// Blur with this sigma, last.
    pub blur: Option<f32>,
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
                // Mirrored first, as torchvision's RandomHorizontalFlip comes first.
                let mut a = img.clone();
                let d = aug.draw(&mut sample_rng(1, 2, i));
                if d.mirror {
                    hflip(&mut a, w, h, 3);
                }
                aug.apply_drawn(&d, &mut a, w, h, &mut Vec::new());
                let mut b = img.clone();
                aug.apply(&mut b, w, h, &mut sample_rng(1, 2, i), &mut Vec::new());
                assert_eq!(a, b, "{aug:?} draw {i}");
            }
        }
    }
}

//! The paper's augmentation presets, as a chain of the kernels.

use rand::Rng;

use crate::{BlurConfig, FlipConfig, GrayscaleConfig, JitterConfig};

/// Named pipelines (the crop is the loader's part: RandomResizedCrop, or centre for `eval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// RandomResizedCrop + flip.
    Paper,
    /// RandomResizedCrop + flip + colour jitter (p 0.8) + grayscale (p 0.2) + blur (p 0.5).
    Strong,
    /// Centre crop, nothing random.
    Eval,
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "paper" => Ok(Preset::Paper),
            "strong" => Ok(Preset::Strong),
            "eval" => Ok(Preset::Eval),
            o => Err(format!(
                "unknown preset {o:?} (expected paper, strong or eval)"
            )),
        }
    }
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
        if let Some(f) = self.flip {
            f.apply(hwc, w, h, 3, rng);
        }
        if let Some(j) = self.jitter {
            j.apply(hwc, rng);
        }
        if let Some(g) = self.grayscale {
            g.apply(hwc, rng);
        }
        if let Some(b) = self.blur {
            b.apply(hwc, w, h, rng, scratch);
        }
    }
}

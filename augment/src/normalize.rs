//! Normalisation to float: `(x / 255 - mean) / std`, per channel.

/// Mean and standard deviation per RGB channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormalizeConfig {
    /// Channel means, on the 0..1 scale.
    pub mean: [f32; 3],
    /// Channel standard deviations, on the 0..1 scale.
    pub std: [f32; 3],
}

impl Default for NormalizeConfig {
    /// ImageNet's statistics.
    fn default() -> Self {
        NormalizeConfig {
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}

/// Normalises packed RGB `hwc` into CHW floats `dst` (`3 x h x w`).
///
/// # Panics
/// If `dst.len() != hwc.len()` or the length is not a multiple of 3.
pub fn normalize(hwc: &[u8], dst: &mut [f32], cfg: &NormalizeConfig) {
    assert_eq!(hwc.len(), dst.len(), "source and destination sizes differ");
    assert_eq!(hwc.len() % 3, 0, "not packed RGB");
    let plane = hwc.len() / 3;
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        for c in 0..3 {
            dst[c * plane + i] = (px[c] as f32 / 255.0 - cfg.mean[c]) / cfg.std[c];
        }
    }
}

//! Colour jitter: brightness, contrast, saturation and hue, as torchvision's tensor functions
//! on uint8 images (f32 arithmetic, results truncated; the hue within one level of it, see
//! [`adjust_hue`]), applied in a random order.

use rand::seq::SliceRandom;
use rand::Rng;

use crate::colour::{self, Step};
use crate::GrayscaleConfig;

/// `ColorJitter` settings: each factor is drawn from `[max(0, 1 - x), 1 + x]` (hue from
/// `[-hue, hue]`), the four adjustments run in a random order, and the whole jitter runs
/// with probability `p` (SimCLR: 0.4, 0.4, 0.4, 0.1 with p = 0.8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterConfig {
    /// Brightness strength.
    pub brightness: f64,
    /// Contrast strength.
    pub contrast: f64,
    /// Saturation strength.
    pub saturation: f64,
    /// Hue strength, at most 0.5.
    pub hue: f64,
    /// Probability of jittering at all.
    pub p: f64,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
            p: 0.8,
        }
    }
}

impl JitterConfig {
    /// Jitters packed RGB `hwc` with probability `p`. The draws from `rng` (apply?, order,
    /// four factors) do not depend on the pixels.
    ///
    /// The bytes are those of calling the `adjust_*` functions one after another in the
    /// drawn order; the steps run fused, in one pass over the image, or two when a contrast
    /// needs the mean luma of what the steps before it made.
    pub fn apply(&self, hwc: &mut [u8], rng: &mut impl Rng) -> bool {
        self.apply_then_gray(hwc, rng, None).0
    }

    /// [`JitterConfig::apply`], then `gray`'s [`GrayscaleConfig::apply`] if given, with the
    /// same draws in the same order and the same bytes, but the grayscale runs in the
    /// jitter's last pass when both happen. Returns whether each happened.
    pub fn apply_then_gray(
        &self,
        hwc: &mut [u8],
        rng: &mut impl Rng,
        gray: Option<GrayscaleConfig>,
    ) -> (bool, bool) {
        let jitter = self.draw(rng);
        // Drawn after every jitter draw, as when the grayscale runs on its own; the draws
        // do not depend on the pixels, so the last pass can wait for it.
        let grayed = gray.is_some_and(|g| g.draw(rng));
        jitter_then_gray(jitter.as_ref(), grayed, hwc);
        (jitter.is_some(), grayed)
    }

    /// The random choices of [`JitterConfig::apply`] without the pixels: whether it jitters
    /// (`None`: not), then the order and the four factors. Draws what `apply` draws.
    pub fn draw(&self, rng: &mut impl Rng) -> Option<JitterDraw> {
        if !rng.gen_bool(crate::chance(self.p)) {
            return None;
        }
        let mut order = [0usize, 1, 2, 3];
        order.shuffle(rng);
        let factor = |rng: &mut _, x: f64| uniform(rng, (1.0 - x).max(0.0), 1.0 + x);
        let b = factor(rng, self.brightness);
        let c = factor(rng, self.contrast);
        let s = factor(rng, self.saturation);
        let h = uniform(rng, -self.hue, self.hue);
        let mut d = JitterDraw::default();
        for op in order {
            let step = match op {
                0 if self.brightness > 0.0 => ColourStep::Brightness(b),
                1 if self.contrast > 0.0 => ColourStep::Contrast(c),
                2 if self.saturation > 0.0 => ColourStep::Saturation(s),
                3 if self.hue > 0.0 => ColourStep::Hue(h),
                _ => continue,
            };
            d.steps[d.len] = Some(step);
            d.len += 1;
        }
        Some(d)
    }
}

/// `jitter`'s adjustments if it drew any, then the grayscale if `gray`; when both happen,
/// the grayscale runs in the jitter's last pass: the same bytes as one after the other,
/// with one pass fewer.
pub(crate) fn jitter_then_gray(jitter: Option<&JitterDraw>, gray: bool, hwc: &mut [u8]) {
    match jitter {
        Some(j) => j.apply(hwc, gray),
        None if gray => crate::grayscale(hwc),
        None => {}
    }
}

/// One adjustment of a colour jitter, with its drawn factor (as the `adjust_*` functions
/// take it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColourStep {
    /// [`adjust_brightness`].
    Brightness(f64),
    /// [`adjust_contrast`].
    Contrast(f64),
    /// [`adjust_saturation`].
    Saturation(f64),
    /// [`adjust_hue`].
    Hue(f64),
}

/// What one colour jitter drew: its adjustments in the order they run (those of strength
/// 0 left out). [`JitterDraw::apply`] makes the bytes [`JitterConfig::apply`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct JitterDraw {
    steps: [Option<ColourStep>; 4],
    len: usize,
}

impl JitterDraw {
    /// The adjustments, in order.
    pub fn steps(&self) -> impl Iterator<Item = ColourStep> + '_ {
        self.steps[..self.len].iter().flatten().copied()
    }

    /// Runs the adjustments over packed RGB `hwc`, then the grayscale if `gray`: fused, in
    /// one pass over the image, or two when a contrast needs the mean luma of what the
    /// steps before it made.
    pub fn apply(&self, hwc: &mut [u8], gray: bool) {
        let mut steps = Steps::default();
        for step in self.steps() {
            match step {
                ColourStep::Brightness(b) => steps.push(brightness_step(b)),
                ColourStep::Contrast(c) => steps.contrast(hwc, c),
                ColourStep::Saturation(s) => steps.push(saturation_step(s)),
                ColourStep::Hue(h) => steps.push(hue_step(h)),
            }
        }
        if gray {
            steps.push(Step::Gray);
        }
        steps.flush(hwc, false);
    }
}

/// A draw from `[lo, hi)`; a range that is empty, reversed or not finite gives `lo` (where
/// `gen_range` would panic).
fn uniform(rng: &mut impl Rng, lo: f64, hi: f64) -> f64 {
    if hi > lo && (hi - lo).is_finite() {
        rng.gen_range(lo..hi)
    } else {
        lo
    }
}

/// Steps waiting to run in one fused pass (at most the four jitter steps and a grayscale).
#[derive(Debug, Default)]
struct Steps {
    list: [Option<Step>; 5],
    len: usize,
}

impl Steps {
    fn push(&mut self, step: Step) {
        self.list[self.len] = Some(step);
        self.len += 1;
    }

    /// Runs the waiting steps (if any) over `hwc` and returns the sum of the resulting lumas
    /// if `sum_luma`.
    fn flush(&mut self, hwc: &mut [u8], sum_luma: bool) -> u64 {
        let mut steps = [Step::Gray; 5];
        for (dst, src) in steps.iter_mut().zip(&self.list[..self.len]) {
            *dst = src.expect("pushed");
        }
        let sum = if self.len > 0 || sum_luma {
            colour::run(hwc, &steps[..self.len], sum_luma)
        } else {
            0
        };
        self.len = 0;
        sum
    }

    /// Adds a contrast step: runs the waiting steps while summing the luma of their result
    /// (a read-only pass if none wait), then blends with that mean.
    fn contrast(&mut self, hwc: &mut [u8], factor: f64) {
        let n = hwc.len() / 3;
        if n == 0 {
            // As the reference: no pixels, no change (not even to 1 or 2 stray bytes).
            return;
        }
        let sum = self.flush(hwc, true);
        // The f64 sum of integer lumas is exact, so its order does not matter.
        let mean = (sum as f64 / n as f64) as f32;
        let (ratio, one_minus) = weights(factor);
        self.push(Step::Blend {
            ratio,
            offset: one_minus * mean,
        });
    }
}

/// The f32 weights `(ratio, 1 - ratio)` of a blend with the f64 factor `f`. Like Python,
/// `1 - ratio` is computed in f64 before the cast to f32. torchvision's `_blend` is then
/// `ratio * a + (1 - ratio) * b` in f32, clamped to [0, 255], truncated.
fn weights(f: f64) -> (f32, f32) {
    (f as f32, (1.0 - f) as f32)
}

fn brightness_step(factor: f64) -> Step {
    let (ratio, one_minus) = weights(factor);
    Step::Blend {
        ratio,
        offset: one_minus * 0.0,
    }
}

fn saturation_step(factor: f64) -> Step {
    let (ratio, one_minus) = weights(factor);
    Step::Saturate { ratio, one_minus }
}

fn hue_step(factor: f64) -> Step {
    Step::Hue {
        shift: hue_shift(factor as f32),
    }
}

/// The hue step's turn in sixths of a circle: `6 factor` modulo 6, in [0, 6) (NaN for a
/// non-finite factor), in f32 as every implementation of the step takes it (the CPU kernels
/// and the trainer's device ops). What rounds up to 6 becomes 0.
pub fn hue_shift(factor: f32) -> f32 {
    let x = 6.0 * factor;
    let x = x - 6.0 * (x / 6.0).floor();
    if x >= 6.0 {
        0.0
    } else {
        x
    }
}

/// Multiplies every value by `factor`.
pub fn adjust_brightness(hwc: &mut [u8], factor: f64) {
    colour::run(hwc, &[brightness_step(factor)], false);
}

/// Blends every value with the image's mean luma.
pub fn adjust_contrast(hwc: &mut [u8], factor: f64) {
    let mut steps = Steps::default();
    steps.contrast(hwc, factor);
    steps.flush(hwc, false);
}

/// Blends every pixel with its own luma.
pub fn adjust_saturation(hwc: &mut [u8], factor: f64) {
    colour::run(hwc, &[saturation_step(factor)], false);
}

/// Rotates every pixel's hue by `factor` (in turns, -0.5..=0.5) as torchvision's HSV round
/// trip and its float-to-uint8 conversion (`x * 255.999`, truncated) do, computed in the
/// real arithmetic they approximate with one f32 division where torchvision rounds at eight
/// steps: within one level of torchvision, on about 1e-4 of the values or fewer.
pub fn adjust_hue(hwc: &mut [u8], factor: f64) {
    colour::run(hwc, &[hue_step(factor)], false);
}

/// The scalar kernels these replaced, for the tests.
#[cfg(test)]
pub(crate) mod reference;

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    type Op = fn(&mut [u8], f64);

    const OPS: [(&str, Op, Op); 4] = [
        (
            "brightness",
            adjust_brightness,
            reference::adjust_brightness,
        ),
        ("contrast", adjust_contrast, reference::adjust_contrast),
        (
            "saturation",
            adjust_saturation,
            reference::adjust_saturation,
        ),
        ("hue", adjust_hue, reference::adjust_hue_sixths),
    ];

    /// Random bytes of every length up to 3 * 40 (tiny images, partial chunks, stray bytes
    /// after the last pixel) and some whole images, with grey and saturated pixels mixed in.
    fn images(rng: &mut Xoshiro256PlusPlus) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = (0..=120).map(|len| random_image(rng, len)).collect();
        for len in [224 * 3 * 7, 3 * 1000 + 3 * 16, 3 * 16 * 5] {
            out.push(random_image(rng, len));
        }
        out
    }

    fn random_image(rng: &mut Xoshiro256PlusPlus, len: usize) -> Vec<u8> {
        let mut v: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        for px in v.chunks_exact_mut(3) {
            match rng.gen_range(0..6) {
                0 => px.fill(px[0]),
                1 => px[rng.gen_range(0..3)] = 255,
                2 => px[rng.gen_range(0..3)] = 0,
                3 => px[1] = px[0],
                _ => {}
            }
        }
        v
    }

    fn factors(rng: &mut Xoshiro256PlusPlus) -> Vec<f64> {
        let mut f = vec![
            0.0,
            1.0,
            0.6,
            1.4,
            2.0,
            -0.5,
            0.5,
            -0.1,
            0.1,
            1e-9,
            -3.7,
            1e9,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        f.extend((0..20).map(|_| rng.gen_range(-0.5..1.5)));
        f
    }

    #[test]
    fn kernels_match_the_scalar_reference() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(18);
        let images = images(&mut rng);
        for factor in factors(&mut rng) {
            for (name, fast, slow) in OPS {
                for img in &images {
                    let (mut a, mut b) = (img.clone(), img.clone());
                    fast(&mut a, factor);
                    slow(&mut b, factor);
                    assert_eq!(a, b, "{name} factor {factor} len {}", img.len());
                }
            }
        }
    }

    /// The original `apply`: the same draws, then one reference step at a time.
    fn apply_reference(cfg: &JitterConfig, hwc: &mut [u8], rng: &mut impl Rng) -> bool {
        if !rng.gen_bool(cfg.p.clamp(0.0, 1.0)) {
            return false;
        }
        let mut order = [0usize, 1, 2, 3];
        order.shuffle(rng);
        let factor = |rng: &mut _, x: f64| uniform(rng, (1.0 - x).max(0.0), 1.0 + x);
        let b = factor(rng, cfg.brightness);
        let c = factor(rng, cfg.contrast);
        let s = factor(rng, cfg.saturation);
        let h = uniform(rng, -cfg.hue, cfg.hue);
        for op in order {
            match op {
                0 if cfg.brightness > 0.0 => reference::adjust_brightness(hwc, b),
                1 if cfg.contrast > 0.0 => reference::adjust_contrast(hwc, c),
                2 if cfg.saturation > 0.0 => reference::adjust_saturation(hwc, s),
                3 if cfg.hue > 0.0 => reference::adjust_hue_sixths(hwc, h),
                _ => {}
            }
        }
        true
    }

    #[test]
    fn fused_apply_matches_one_step_at_a_time() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let images = images(&mut rng);
        let configs = [
            JitterConfig {
                p: 1.0,
                ..Default::default()
            },
            JitterConfig {
                brightness: 0.9,
                contrast: 0.9,
                saturation: 0.9,
                hue: 0.5,
                p: 1.0,
            },
            JitterConfig {
                brightness: 0.0,
                hue: 0.0,
                p: 1.0,
                ..Default::default()
            },
            JitterConfig {
                saturation: 0.0,
                p: 1.0,
                ..Default::default()
            },
            JitterConfig::default(),
        ];
        let mut orders = std::collections::HashSet::new();
        for (k, cfg) in configs.iter().enumerate() {
            for (i, img) in images.iter().enumerate() {
                for seed in 0..8u64 {
                    let seed = seed + 100 * (i as u64 + 1000 * k as u64);
                    let (mut a, mut b) = (img.clone(), img.clone());
                    let mut ra = Xoshiro256PlusPlus::seed_from_u64(seed);
                    let mut rb = ra.clone();
                    let applied = cfg.apply(&mut a, &mut ra);
                    assert_eq!(applied, apply_reference(cfg, &mut b, &mut rb));
                    assert_eq!(a, b, "config {k} image {i} seed {seed}");
                    // Same number of draws: the streams stay in step.
                    assert_eq!(ra.gen::<u64>(), rb.gen::<u64>());
                    if applied {
                        let mut r = Xoshiro256PlusPlus::seed_from_u64(seed);
                        r.gen_bool(cfg.p);
                        let mut order = [0usize, 1, 2, 3];
                        order.shuffle(&mut r);
                        orders.insert(order);
                    }
                }
            }
        }
        // All 24 orders ran, so contrast came first, in the middle and last.
        assert_eq!(orders.len(), 24);
    }

    #[test]
    fn gray_in_the_last_pass_matches_jitter_then_grayscale() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let images = images(&mut rng);
        let jitters = [
            JitterConfig::default(),
            JitterConfig {
                p: 1.0,
                ..Default::default()
            },
            JitterConfig {
                brightness: 0.0,
                contrast: 0.0,
                saturation: 0.0,
                hue: 0.0,
                p: 1.0,
            },
        ];
        let grays =
            [None, Some(0.0), Some(0.5), Some(1.0)].map(|p| p.map(|p| GrayscaleConfig { p }));
        let mut both = 0;
        for (k, jitter) in jitters.iter().enumerate() {
            for gray in grays {
                for (i, img) in images.iter().enumerate() {
                    for seed in 0..6u64 {
                        let seed = seed + 100 * (i as u64 + 1000 * k as u64);
                        let (mut a, mut b) = (img.clone(), img.clone());
                        let mut ra = Xoshiro256PlusPlus::seed_from_u64(seed);
                        let mut rb = ra.clone();
                        let got = jitter.apply_then_gray(&mut a, &mut ra, gray);
                        let want = (
                            apply_reference(jitter, &mut b, &mut rb),
                            gray.is_some_and(|g| g.apply(&mut b, &mut rb)),
                        );
                        assert_eq!(got, want);
                        assert_eq!(a, b, "jitter {k} gray {gray:?} image {i} seed {seed}");
                        assert_eq!(ra.gen::<u64>(), rb.gen::<u64>());
                        both += (got == (true, true)) as usize;
                    }
                }
            }
        }
        assert!(both > 100, "{both}");
    }
}

//! The pixel-wise colour steps (brightness, contrast, saturation, hue, grayscale) as one
//! fused, chunked kernel: [`run`] loads 64 pixels, splits them into f32 lanes per channel,
//! applies a list of [`Step`]s to those lanes and writes the bytes back, so a whole colour
//! jitter costs one or two passes over the image instead of one per step.
//!
//! Brightness, contrast, saturation and grayscale repeat torchvision's f32 arithmetic
//! operation for operation (no fused multiply-add, which would round differently); the hue
//! computes the same values in fewer operations, within one level of torchvision ([`hue`]).
//! Every step truncates to an integer, as the uint8 tensors do, so the bytes equal the
//! one-step-at-a-time scalar code (`jitter/reference.rs`). Branches
//! become selects, which lets the compiler vectorise the lane loops. The same body is
//! compiled three times, for AVX-512, for AVX2 and for the baseline target, and picked at
//! run time; all give identical bytes (IEEE arithmetic is the same in every lane width). Only
//! the byte shuffles in and out of the lanes and the rounding instructions differ between
//! them ([`Isa`]), and those are exact. A pass of brightness and contrast steps only maps
//! each byte on its own, and where the CPU has AVX-512 VBMI it looks the bytes up in a
//! 256-entry table the same f32 operations made ([`byte_map`]).

/// Pixels per chunk: enough independent vectors per loop for the out-of-order core to
/// overlap the long dependency chain of the hue step.
const LANES: usize = 64;

/// Bytes per chunk.
const CHUNK: usize = 3 * LANES;

type Lanes = [f32; LANES];

/// One pixel-wise step on integer-valued f32 channels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Step {
    /// `trunc(clamp(ratio * v + offset, 0, 255))` on every channel value: brightness
    /// (`offset = (1 - ratio) * 0`) and contrast (`offset = (1 - ratio) * mean luma`).
    Blend { ratio: f32, offset: f32 },
    /// Blends every channel with the pixel's own luma.
    Saturate { ratio: f32, one_minus: f32 },
    /// Rotates the hue by `shift` sixths of a turn, in [0, 6) ([`crate::jitter::hue_shift`]).
    Hue { shift: f32 },
    /// Replaces every channel by the pixel's luma.
    Gray,
}

/// Applies `steps` in order to every pixel of packed RGB `hwc`, and returns the sum of the
/// lumas of the result when `sum_luma` (else 0). The 1 or 2 bytes after the last whole pixel
/// see only the [`Step::Blend`] steps (brightness and contrast map every byte; the other
/// steps work on whole pixels). With no steps, `hwc` is only read.
pub(crate) fn run(hwc: &mut [u8], steps: &[Step], sum_luma: bool) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if !sum_luma && vbmi() {
        if let Some(lut) = byte_map(steps) {
            // SAFETY: the CPU supports AVX-512F, BW and VBMI.
            unsafe { vbmi::map_bytes(hwc, &lut) };
            return 0;
        }
    }
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU supports AVX2 and the AVX-512 subsets `run_avx512` enables.
        return unsafe { run_avx512(hwc, steps, sum_luma) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (std caches the detection in an atomic).
        return unsafe { run_avx2(hwc, steps, sum_luma) };
    }
    run_portable(hwc, steps, sum_luma)
}

/// [`run`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn run_avx2(hwc: &mut [u8], steps: &[Step], sum_luma: bool) -> u64 {
    // SAFETY: the caller guarantees AVX2.
    unsafe { run_body::<avx2::Avx2>(hwc, steps, sum_luma) }
}

/// Whether the CPU runs [`run_avx512`] (std caches each detection in an atomic).
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    use std::arch::is_x86_feature_detected as has;
    has!("avx2") && has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq")
}

/// [`run`] compiled for AVX-512: the same lane loops and AVX2 shuffles, but the compiler's
/// vectors are 16 lanes wide and its compares and selects use mask registers, which takes
/// 10-15% off a jitter on the 2-core machine's Zen 4 (whose 512-bit units are 256 bits
/// wide run twice).
///
/// # Safety
/// The CPU must support AVX2, AVX-512F, BW, VL and DQ.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512dq")]
pub(crate) unsafe fn run_avx512(hwc: &mut [u8], steps: &[Step], sum_luma: bool) -> u64 {
    // SAFETY: the caller guarantees the CPU; AVX-512 includes what `Avx2` needs.
    unsafe { run_body::<avx2::Avx2>(hwc, steps, sum_luma) }
}

/// Whether the CPU runs [`vbmi::map_bytes`].
#[cfg(target_arch = "x86_64")]
fn vbmi() -> bool {
    use std::arch::is_x86_feature_detected as has;
    has!("avx512f") && has!("avx512bw") && has!("avx512vbmi")
}

/// When every step is a [`Step::Blend`] (brightness and contrast: a pass of a jitter with
/// nothing else in it, a quarter of them or more), the steps map each byte on its own: their
/// table, computed value by value with the kernel's own f32 operations, so looking bytes up
/// in it gives the kernel's bytes. `None` for an empty list or any other step.
fn byte_map(steps: &[Step]) -> Option<[u8; 256]> {
    if steps.is_empty() || !steps.iter().all(|s| matches!(s, Step::Blend { .. })) {
        return None;
    }
    Some(std::array::from_fn(|v| {
        let mut x = v as f32;
        for step in steps {
            if let Step::Blend { ratio, offset } = *step {
                x = blend::<Portable>(x, ratio, offset);
            }
        }
        to_u8(x)
    }))
}

/// [`run`] compiled for the baseline target.
pub(crate) fn run_portable(hwc: &mut [u8], steps: &[Step], sum_luma: bool) -> u64 {
    // SAFETY: `Portable` needs nothing beyond the baseline target.
    unsafe { run_body::<Portable>(hwc, steps, sum_luma) }
}

/// What differs between the instantiations of the kernel: moving bytes in and out of the
/// lanes, and rounding to an integer. Every implementation gives exactly the same values.
trait Isa {
    /// Splits the 64 pixels of `px` into integer-valued channel lanes.
    ///
    /// # Safety
    /// The CPU must support the instruction set.
    unsafe fn load(px: &[u8; CHUNK], r: &mut Lanes, g: &mut Lanes, b: &mut Lanes);

    /// Packs channel lanes holding integers in [0, 255] into the 64 pixels of `px`.
    ///
    /// # Safety
    /// The CPU must support the instruction set.
    unsafe fn store(px: &mut [u8; CHUNK], r: &Lanes, g: &Lanes, b: &Lanes);

    /// `x.floor()`.
    fn floor(x: f32) -> f32;

    /// `x.trunc()` for `x` in [0, 255].
    fn trunc(x: f32) -> f32;
}

/// Plain Rust, for any target.
#[derive(Debug)]
struct Portable;

impl Isa for Portable {
    #[inline(always)]
    unsafe fn load(px: &[u8; CHUNK], r: &mut Lanes, g: &mut Lanes, b: &mut Lanes) {
        for i in 0..LANES {
            r[i] = px[3 * i] as f32;
            g[i] = px[3 * i + 1] as f32;
            b[i] = px[3 * i + 2] as f32;
        }
    }

    #[inline(always)]
    unsafe fn store(px: &mut [u8; CHUNK], r: &Lanes, g: &Lanes, b: &Lanes) {
        for i in 0..LANES {
            px[3 * i] = to_u8(r[i]);
            px[3 * i + 1] = to_u8(g[i]);
            px[3 * i + 2] = to_u8(b[i]);
        }
    }

    #[inline(always)]
    fn floor(x: f32) -> f32 {
        // From 2^23 on every f32 is an integer; below it truncation is exact. (`f32::floor`
        // would be a libm call per value without SSE4.1.)
        let small = x.abs() < 8_388_608.0;
        let xs = if small { x } else { 0.0 };
        // SAFETY: |xs| < 2^23, so truncating it to i32 is exact and in range.
        let t = unsafe { xs.to_int_unchecked::<i32>() as f32 };
        // floor(x) has the sign of x, -0.0 included.
        let t = if t > xs { t - 1.0 } else { t }.copysign(x);
        if small {
            t
        } else {
            x
        }
    }

    #[inline(always)]
    fn trunc(x: f32) -> f32 {
        to_u8(x) as f32
    }
}

/// # Safety
/// The CPU must support `I`.
#[inline(always)]
unsafe fn run_body<I: Isa>(hwc: &mut [u8], steps: &[Step], sum_luma: bool) -> u64 {
    let write = !steps.is_empty();
    let whole = hwc.len() / 3 * 3;
    let (pixels, rest) = hwc.split_at_mut(whole);
    let mut total = 0u64;
    // Per-lane sums, flushed to `total` before they could overflow (255 per chunk).
    let mut acc = [0u32; LANES];
    let mut chunks = 0u32;
    let mut iter = pixels.chunks_exact_mut(CHUNK);
    for px in &mut iter {
        let px: &mut [u8; CHUNK] = px.try_into().expect("chunks_exact");
        // SAFETY: the caller guarantees `I`.
        let luma = unsafe { chunk::<I>(px, steps, write, sum_luma) };
        if sum_luma {
            for (a, l) in acc.iter_mut().zip(luma) {
                *a += l;
            }
            chunks += 1;
            if chunks == 1 << 20 {
                total += acc.iter().map(|&a| a as u64).sum::<u64>();
                acc = [0; LANES];
                chunks = 0;
            }
        }
    }
    total += acc.iter().map(|&a| a as u64).sum::<u64>();
    let tail = iter.into_remainder();
    if !tail.is_empty() {
        let mut buf = [0u8; CHUNK];
        buf[..tail.len()].copy_from_slice(tail);
        // SAFETY: the caller guarantees `I`.
        let luma = unsafe { chunk::<I>(&mut buf, steps, write, sum_luma) };
        tail.copy_from_slice(&buf[..tail.len()]);
        if sum_luma {
            total += luma[..tail.len() / 3]
                .iter()
                .map(|&l| l as u64)
                .sum::<u64>();
        }
    }
    for v in rest {
        let mut x = *v as f32;
        for step in steps {
            if let Step::Blend { ratio, offset } = *step {
                x = blend::<Portable>(x, ratio, offset);
            }
        }
        *v = x as u8;
    }
    total
}

/// One chunk of 64 pixels: load, apply `steps`, store if `write`, and return the lumas of
/// the result if `sum_luma` (else zeros).
///
/// # Safety
/// The CPU must support `I`.
#[inline(always)]
unsafe fn chunk<I: Isa>(
    px: &mut [u8; CHUNK],
    steps: &[Step],
    write: bool,
    sum_luma: bool,
) -> [u32; LANES] {
    let (mut r, mut g, mut b) = ([0f32; LANES], [0f32; LANES], [0f32; LANES]);
    // SAFETY: the caller guarantees `I`.
    unsafe { I::load(px, &mut r, &mut g, &mut b) };
    for step in steps {
        match *step {
            Step::Blend { ratio, offset } => {
                for c in [&mut r, &mut g, &mut b] {
                    for v in c.iter_mut() {
                        *v = blend::<I>(*v, ratio, offset);
                    }
                }
            }
            Step::Saturate { ratio, one_minus } => {
                saturate::<I>(&mut r, &mut g, &mut b, ratio, one_minus)
            }
            Step::Hue { shift } => hue::<I>(&mut r, &mut g, &mut b, shift),
            Step::Gray => {
                for i in 0..LANES {
                    let l = luma::<I>(r[i], g[i], b[i]);
                    (r[i], g[i], b[i]) = (l, l, l);
                }
            }
        }
    }
    if write {
        // SAFETY: the caller guarantees `I`; every step leaves integers in [0, 255].
        unsafe { I::store(px, &r, &g, &b) };
    }
    let mut out = [0u32; LANES];
    if sum_luma {
        for i in 0..LANES {
            out[i] = to_u8(luma::<I>(r[i], g[i], b[i])) as u32;
        }
    }
    out
}

/// `x as u8` (NaN and negatives give 0, values above 255 give 255), in a form the compiler
/// vectorises (it leaves the saturating `as` casts scalar).
#[inline(always)]
fn to_u8(x: f32) -> u8 {
    let x = if x > 0.0 { x } else { 0.0 };
    let x = if x < 255.0 { x } else { 255.0 };
    // SAFETY: x is in [0, 255].
    unsafe { x.to_int_unchecked::<i32>() as u8 }
}

/// torchvision's `_blend` of an integer value with a precomputed `(1 - ratio) * other`.
#[inline(always)]
fn blend<I: Isa>(v: f32, ratio: f32, offset: f32) -> f32 {
    I::trunc(clamp(ratio * v + offset, 255.0))
}

/// `x.clamp(0.0, hi)`, except that NaN gives 0 (`max` and `min` instructions): the same
/// bytes once truncated, since `NaN as u8` is 0 too.
#[inline(always)]
fn clamp(x: f32, hi: f32) -> f32 {
    let x = if x > 0.0 { x } else { 0.0 };
    if x < hi {
        x
    } else {
        hi
    }
}

/// The truncated luma, as [`crate::grayscale::luma`].
#[inline(always)]
fn luma<I: Isa>(r: f32, g: f32, b: f32) -> f32 {
    // At most 0.9999 * 255 for channels in [0, 255].
    I::trunc((0.2989f32 * r + 0.587f32 * g) + 0.114f32 * b)
}

#[inline(always)]
fn saturate<I: Isa>(r: &mut Lanes, g: &mut Lanes, b: &mut Lanes, ratio: f32, one_minus: f32) {
    for i in 0..LANES {
        let l = one_minus * luma::<I>(r[i], g[i], b[i]);
        r[i] = blend::<I>(r[i], ratio, l);
        g[i] = blend::<I>(g[i], ratio, l);
        b[i] = blend::<I>(b[i], ratio, l);
    }
}

#[inline(always)]
fn max(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

#[inline(always)]
fn min(a: f32, b: f32) -> f32 {
    if a < b {
        a
    } else {
        b
    }
}

/// torchvision's `adjust_hue` on integer-valued channels, in the real arithmetic its f32 HSV
/// round trip approximates, with one division where it has eight.
///
/// torchvision: `h = (h / 6 + 1) % 1` from the RGB channels divided by 255, `h = (h +
/// factor) % 1`, then sector `i = floor(6h)`, `f = 6h - i` and the channels `v`, `p = v (1 -
/// s)`, `q = v (1 - s f)`, `t = v (1 - s (1 - f))`, each `trunc(x * 255.999)`. With `M`,
/// `m` the largest and smallest channel and `c = M - m`: `v = M / 255`, `p = m / 255`, `q =
/// (M - c f) / 255`, `t = (m + c f) / 255`. So the largest and smallest bytes stay as they
/// are (`trunc(M * 255.999 / 255) = M`), and only the middle one is computed: `trunc((m + c
/// f) * 255.999 / 255)` in even sectors, `trunc((M - c f) * 255.999 / 255)` in odd ones.
/// The hue in sixths is `k + d / c` (`k` 0, 2 or 4 for a red, green or blue maximum, with
/// torchvision's preference on ties; `d` the difference of the other two channels), turned by
/// `shift = 6 factor` modulo 6.
///
/// torchvision rounds at every step, this once or twice, so the two differ where the middle
/// value lands within about 1e-4 of an integer: by one level, on about 1e-4 of the values or
/// fewer (the tests measure it over all 2^24 colours). Every build computes the same IEEE
/// operations, so all give the same bytes.
#[inline(always)]
fn hue<I: Isa>(r: &mut Lanes, g: &mut Lanes, b: &mut Lanes, shift: f32) {
    for i in 0..LANES {
        let (rv, gv, bv) = (r[i], g[i], b[i]);
        let hi = max(max(rv, gv), bv);
        let lo = min(min(rv, gv), bv);
        let c = hi - lo;
        let (k, d) = if hi == rv {
            (0.0, gv - bv)
        } else if hi == gv {
            (2.0, bv - rv)
        } else {
            (4.0, rv - gv)
        };
        // In [-1, 5], then [-1, 11), then [0, 6): `h - 6` is exact for `h` in [6, 12], and
        // `h + 6` of a tiny negative `h` may round to 6, which the second select maps to 0.
        let h = (k + d / if c == 0.0 { 1.0 } else { c }) + shift;
        let h = if h < 0.0 { h + 6.0 } else { h };
        let h = if h >= 6.0 { h - 6.0 } else { h };
        let sector = I::floor(h);
        let cf = c * (h - sector);
        let odd = (sector == 1.0) | (sector == 3.0) | (sector == 5.0);
        // At most 255 * 255.999 / 255; NaN (a NaN shift) becomes 0.
        let mid = I::trunc(clamp(
            if odd { hi - cf } else { lo + cf } * (255.999 / 255.0),
            255.0,
        ));
        // Sectors 0..=5: (v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q).
        r[i] = if (sector == 0.0) | (sector == 5.0) {
            hi
        } else if (sector == 1.0) | (sector == 4.0) {
            mid
        } else {
            lo
        };
        g[i] = if (sector == 0.0) | (sector == 3.0) {
            mid
        } else if (sector == 1.0) | (sector == 2.0) {
            hi
        } else {
            lo
        };
        b[i] = if (sector == 0.0) | (sector == 1.0) {
            lo
        } else if (sector == 2.0) | (sector == 5.0) {
            mid
        } else {
            hi
        };
    }
}

#[cfg(target_arch = "x86_64")]
mod vbmi {
    use std::arch::x86_64::*;

    /// Replaces every byte `b` of `bytes` by `lut[b]`: 64 bytes at a time, two two-table
    /// byte permutes (the table's low and high halves) and a select on the index's top bit.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, BW and VBMI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(super) unsafe fn map_bytes(bytes: &mut [u8], lut: &[u8; 256]) {
        // SAFETY: the caller guarantees the CPU; every load and store is of 64 bytes inside
        // `lut` or inside a 64-byte chunk of `bytes`, unaligned.
        unsafe {
            let t = lut.as_ptr();
            let (t0, t1) = (
                _mm512_loadu_si512(t.cast()),
                _mm512_loadu_si512(t.add(64).cast()),
            );
            let (t2, t3) = (
                _mm512_loadu_si512(t.add(128).cast()),
                _mm512_loadu_si512(t.add(192).cast()),
            );
            let mut chunks = bytes.chunks_exact_mut(64);
            for c in &mut chunks {
                let idx = _mm512_loadu_si512(c.as_ptr().cast());
                let lo = _mm512_permutex2var_epi8(t0, idx, t1);
                let hi = _mm512_permutex2var_epi8(t2, idx, t3);
                let out = _mm512_mask_blend_epi8(_mm512_movepi8_mask(idx), lo, hi);
                _mm512_storeu_si512(c.as_mut_ptr().cast(), out);
            }
            for b in chunks.into_remainder() {
                *b = lut[*b as usize];
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Isa, Lanes, CHUNK, LANES};
    use std::arch::x86_64::*;

    /// AVX2: 8 pixels per step, three byte shuffles in and one out.
    #[derive(Debug)]
    pub(super) struct Avx2;

    /// Per 128-bit half, the byte of each i32 lane (0x80: zero) for channel `c`: the low half
    /// holds bytes 0..16 of 8 pixels (pixels 0-3 at 3j + c), the high half bytes 8..24
    /// (pixels 4-7 at 3j + c - 8 = 4 + 3(j - 4) + c).
    const fn spread(c: usize) -> [u8; 32] {
        let mut m = [0x80u8; 32];
        let mut j = 0;
        while j < 4 {
            m[4 * j] = (3 * j + c) as u8;
            m[16 + 4 * j] = (4 + 3 * j + c) as u8;
            j += 1;
        }
        m
    }

    const SPREAD: [[u8; 32]; 3] = [spread(0), spread(1), spread(2)];

    /// Per 128-bit half: bytes 0-2 of each of the four i32 lanes, packed into 12 bytes.
    const PACK: [u8; 32] = {
        let mut m = [0x80u8; 32];
        let mut j = 0;
        while j < 12 {
            m[j] = (j / 3 * 4 + j % 3) as u8;
            m[16 + j] = (j / 3 * 4 + j % 3) as u8;
            j += 1;
        }
        m
    };

    impl Isa for Avx2 {
        #[inline(always)]
        unsafe fn load(px: &[u8; CHUNK], r: &mut Lanes, g: &mut Lanes, b: &mut Lanes) {
            for k in 0..LANES / 8 {
                // SAFETY: the caller guarantees AVX2; bytes 24k..24k+24 are in `px` and
                // lanes 8k..8k+8 in each channel.
                unsafe {
                    load8(
                        px.as_ptr().add(24 * k),
                        r.as_mut_ptr().add(8 * k),
                        g.as_mut_ptr().add(8 * k),
                        b.as_mut_ptr().add(8 * k),
                    )
                }
            }
        }

        #[inline(always)]
        unsafe fn store(px: &mut [u8; CHUNK], r: &Lanes, g: &Lanes, b: &Lanes) {
            for k in 0..LANES / 8 {
                // SAFETY: as in `load`.
                unsafe {
                    store8(
                        px.as_mut_ptr().add(24 * k),
                        r.as_ptr().add(8 * k),
                        g.as_ptr().add(8 * k),
                        b.as_ptr().add(8 * k),
                    )
                }
            }
        }

        #[inline(always)]
        fn floor(x: f32) -> f32 {
            // `roundps` with AVX.
            x.floor()
        }

        #[inline(always)]
        fn trunc(x: f32) -> f32 {
            x.trunc()
        }
    }

    /// The 8 pixels at `p` (24 bytes) into 8 lanes of each channel.
    ///
    /// # Safety
    /// AVX2; `p` readable for 24 bytes, `r`, `g`, `b` writable for 8 f32 each.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn load8(p: *const u8, r: *mut f32, g: *mut f32, b: *mut f32) {
        // SAFETY: the caller guarantees the CPU and the bounds; loads and stores unaligned.
        unsafe {
            let lo = _mm_loadu_si128(p.cast());
            let hi = _mm_loadu_si128(p.add(8).cast());
            let v = _mm256_set_m128i(hi, lo);
            for (mask, dst) in SPREAD.iter().zip([r, g, b]) {
                let m = _mm256_loadu_si256(mask.as_ptr().cast());
                let c = _mm256_cvtepi32_ps(_mm256_shuffle_epi8(v, m));
                _mm256_storeu_ps(dst, c);
            }
        }
    }

    /// 8 lanes of each channel (integers in [0, 255]) into the 8 pixels at `p`.
    ///
    /// # Safety
    /// AVX2; `p` writable for 24 bytes, `r`, `g`, `b` readable for 8 f32 each.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn store8(p: *mut u8, r: *const f32, g: *const f32, b: *const f32) {
        // SAFETY: the caller guarantees the CPU and the bounds; loads and stores unaligned.
        unsafe {
            let ri = _mm256_cvttps_epi32(_mm256_loadu_ps(r));
            let gi = _mm256_cvttps_epi32(_mm256_loadu_ps(g));
            let bi = _mm256_cvttps_epi32(_mm256_loadu_ps(b));
            let v = _mm256_or_si256(
                _mm256_or_si256(ri, _mm256_slli_epi32::<8>(gi)),
                _mm256_slli_epi32::<16>(bi),
            );
            let v = _mm256_shuffle_epi8(v, _mm256_loadu_si256(PACK.as_ptr().cast()));
            // Bytes 0..12 of each half next to each other: dwords 0, 1, 2, 4, 5, 6.
            let v = _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 3, 7));
            _mm_storeu_si128(p.cast(), _mm256_castsi256_si128(v));
            _mm_storel_epi64(p.add(16).cast(), _mm256_extracti128_si256::<1>(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grayscale::luma as luma_u8;
    use crate::jitter::reference;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn portable_floor_is_floor() {
        let specials = [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.0,
            -1.0,
            5.999_999_5,
            6.0,
            8_388_607.5,
        ];
        let big = [8_388_608.0, -8_388_609.0, 3e9, -3e9, 1e38, f32::INFINITY];
        for x in specials.into_iter().chain(big).chain([f32::NEG_INFINITY]) {
            for x in [x, -x] {
                assert_eq!(Portable::floor(x).to_bits(), x.floor().to_bits(), "{x}");
            }
        }
        assert!(Portable::floor(f32::NAN).is_nan());
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        for _ in 0..100_000 {
            let x = f32::from_bits(rng.gen());
            if !x.is_nan() {
                assert_eq!(Portable::floor(x), x.floor(), "{x}");
            }
        }
    }

    fn random_steps(rng: &mut Xoshiro256PlusPlus) -> Vec<Step> {
        let odd = [f32::NAN, f32::INFINITY, -1e30, 1e30, 0.0, -0.0];
        let pick = |rng: &mut Xoshiro256PlusPlus, lo: f32, hi: f32| {
            if rng.gen_ratio(1, 10) {
                odd[rng.gen_range(0..odd.len())]
            } else {
                rng.gen_range(lo..hi)
            }
        };
        (0..rng.gen_range(0..=5))
            .map(|_| match rng.gen_range(0..4) {
                0 => Step::Blend {
                    ratio: pick(rng, 0.0, 2.0),
                    offset: pick(rng, -255.0, 255.0),
                },
                1 => Step::Saturate {
                    ratio: pick(rng, 0.0, 2.0),
                    one_minus: pick(rng, -1.0, 1.0),
                },
                2 => Step::Hue {
                    shift: pick(rng, 0.0, 6.0),
                },
                _ => Step::Gray,
            })
            .collect()
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_and_portable_give_the_same_bytes() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            eprintln!("no AVX2 here: only the portable path runs");
            return;
        }
        let wide = avx512();
        if !wide {
            eprintln!("no AVX-512 here: its build is not checked");
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let lens = (0..=3 * 130).chain([3 * 64 * 50, 3 * 64 * 50 + 3 * 63 + 2]);
        for len in lens {
            for _ in 0..4 {
                let img: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                let steps = random_steps(&mut rng);
                let sum_luma = rng.gen();
                let (mut a, mut b) = (img.clone(), img.clone());
                // SAFETY: AVX2 was detected above.
                let sa = unsafe { run_avx2(&mut a, &steps, sum_luma) };
                let sb = run_portable(&mut b, &steps, sum_luma);
                assert_eq!((sa, &a), (sb, &b), "len {len} steps {steps:?}");
                if wide {
                    let mut c = img.clone();
                    // SAFETY: AVX-512 was detected above.
                    let sc = unsafe { run_avx512(&mut c, &steps, sum_luma) };
                    assert_eq!((sc, &c), (sb, &b), "AVX-512: len {len} steps {steps:?}");
                }
            }
        }
    }

    /// Passes of brightness and contrast steps only go through a byte table where the CPU
    /// has AVX-512 VBMI: the same bytes as the lane kernel, tail bytes included.
    #[test]
    fn byte_table_passes_give_the_kernels_bytes() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
        let odd = [f32::NAN, f32::INFINITY, -1e30, 1e30, 0.0, -0.0];
        for len in (0..=3 * 70).chain([64 * 50, 3 * 64 * 50 + 3 * 63 + 2]) {
            for k in 0..6 {
                let img: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                let steps: Vec<Step> = (0..1 + k % 3)
                    .map(|_| Step::Blend {
                        ratio: if k == 5 {
                            odd[len % 6]
                        } else {
                            rng.gen_range(0.0..2.0)
                        },
                        offset: rng.gen_range(-255.0..255.0),
                    })
                    .collect();
                let lut = byte_map(&steps).expect("blends only");
                let mut want = img.clone();
                run_portable(&mut want, &steps, false);
                let looked_up: Vec<u8> = img.iter().map(|&b| lut[b as usize]).collect();
                assert_eq!(looked_up, want, "len {len} steps {steps:?}");
                let mut got = img.clone();
                assert_eq!(run(&mut got, &steps, false), 0);
                assert_eq!(got, want, "len {len} steps {steps:?}");
                #[cfg(target_arch = "x86_64")]
                if vbmi() {
                    let mut got = img.clone();
                    // SAFETY: VBMI was detected just above.
                    unsafe { vbmi::map_bytes(&mut got, &lut) };
                    assert_eq!(got, want, "VBMI: len {len} steps {steps:?}");
                }
            }
        }
        assert!(byte_map(&[]).is_none());
        assert!(byte_map(&[Step::Gray]).is_none());
        #[cfg(target_arch = "x86_64")]
        if !vbmi() {
            eprintln!("no AVX-512 VBMI here: the table's vector lookup is not checked");
        }
    }

    #[test]
    fn sums_the_luma_of_every_whole_pixel() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        for len in (0..=3 * 70).chain([3 * 64 * 9 + 5]) {
            let img: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let want: u64 = img
                .chunks_exact(3)
                .map(|p| luma_u8(p[0], p[1], p[2]) as u64)
                .sum();
            let mut copy = img.clone();
            assert_eq!(run(&mut copy, &[], true), want, "len {len}");
            assert_eq!(run_portable(&mut copy, &[], true), want, "len {len}");
            assert_eq!(copy, img, "a pass without steps only reads");
        }
    }

    /// Every one of the 2^24 colours, for a few hue factors, on both paths: the same bytes
    /// as the scalar reference of the same formula, and within one level of torchvision's
    /// f32 round trip on all but a few in ten thousand values.
    #[test]
    fn hue_matches_the_reference_on_every_colour() {
        let all: Vec<u8> = (0..1u32 << 24)
            .flat_map(|c| [(c >> 16) as u8, (c >> 8) as u8, c as u8])
            .collect();
        let mut worst = 0f64;
        for factor in [0.5f32, -0.137, 0.1, -0.1, 0.03, 0.0] {
            let step = [Step::Hue {
                shift: crate::jitter::hue_shift(factor),
            }];
            let mut want = all.clone();
            reference::adjust_hue_sixths(&mut want, factor as f64);
            let mut got = all.clone();
            run(&mut got, &step, false);
            assert!(got == want, "factor {factor}");
            let mut portable = all.clone();
            run_portable(&mut portable, &step, false);
            assert!(portable == want, "factor {factor} (portable)");
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                let mut narrow = all.clone();
                // SAFETY: AVX2 was detected just above.
                unsafe { run_avx2(&mut narrow, &step, false) };
                assert!(narrow == want, "factor {factor} (AVX2)");
            }
            let mut torchvision = all.clone();
            reference::adjust_hue(&mut torchvision, factor as f64);
            let mut differ = 0usize;
            for (a, b) in got.iter().zip(&torchvision) {
                assert!(a.abs_diff(*b) <= 1, "factor {factor}: {a} against {b}");
                differ += (a != b) as usize;
            }
            let share = differ as f64 / all.len() as f64;
            eprintln!("factor {factor}: {share:.1e} of the values one level off torchvision");
            worst = worst.max(share);
        }
        assert!(worst < 2e-4, "{worst}");
    }
}

//! The blur's two passes in 16-bit fixed point, written once as an `#[inline(always)]` body
//! over 16 lanes of `u16` ([`Lanes`]) and compiled twice: with AVX2 intrinsics (chosen at
//! run time; one register) and for the baseline target (a plain array). Every operation is
//! exact integer arithmetic (add, shift, the high half of a 16 x 16-bit product, a
//! rounded-up average), so the two builds give the same bytes.
//!
//! The weights (`wt`, see [`blur`]) sum to one in units of 2^-16: `wt[0] + wt[1] + ... +
//! wt[r] = 65536`, where `wt[0]` weighs the centre and `wt[t]` both neighbours at distance
//! `t` together. Values are held in units of 1/256 of a level (`x << 8` for a byte `x`):
//! - horizontal, from bytes: `off + hi16((x << 8) * wt[0]) + sum_t hi16(((a + b) << 7) *
//!   wt[t])`, `a` and `b` the bytes `3t` apart on either side (a sum of two bytes, shifted,
//!   still fits 16 bits; the padded row holds `x << 7`, so the pair is one add);
//! - vertical, from those: `off + hi16(v * wt[0]) + sum_t hi16(avg(a, b) * wt[t])`, `avg`
//!   rounding up (the pair itself would not fit 16 bits);
//! - the result rounds half to even from 1/256 of a level to a byte.
//!
//! `hi16` truncates, losing half a unit on average per term; `off` (half the number of terms)
//! puts that back. Each pass is within about `sqrt(r + 1) / 900` levels of exact (standard
//! deviation; the truncations are independent), which moves the rounded byte by one level on
//! a few tenths of a percent of values of noise, and fewer on smooth images (the tests
//! measure it against the f32 reference).

/// Which build of the passes to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Isa {
    /// The baseline target (SSE2 on x86-64).
    Portable,
    /// AVX2, 16 lanes per register.
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Isa {
    /// The best build this CPU runs.
    pub(super) fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Isa::Avx2;
        }
        Isa::Portable
    }
}

/// Lanes of one vector.
const LANES: usize = 16;

/// Vectors in one block of horizontal outputs computed together, held in registers while
/// the taps go by (64 values).
const H_BLOCK: usize = 4;

/// Vectors in one block of vertical outputs (96 values: a 224-pixel row is 7 blocks).
const V_BLOCK: usize = 6;

/// One vector of 16-bit lanes.
type V = [u16; LANES];

/// The most the rounding offset of one pass may be, so that a value plus both offsets and
/// the final rounding stays within 16 bits (`65280 + 2 * 60 + 128 < 65536`). Only kernels
/// that keep 239 taps or more (sigma of about 30 and up) reach it; past it a pass keeps
/// `((r + 1) / 2 - 60) / 256` levels of the truncations' loss.
const MAX_OFFSET: u16 = 60;

/// Blurs packed RGB `hwc` (`w x h`) with the fixed-point half kernel `wt` (`wt[t]` weighs
/// both neighbours at distance `t`, `wt[0]` the centre, in units of 2^-16, summing to
/// 65536; radius `r = wt.len() - 1 >= 1`). `tmp` holds `(h + 2r) * w * 3` values, `padded`
/// `(w + 2r) * 3`.
///
/// # Panics
/// If a buffer has the wrong size or the weights do not sum to 65536.
pub(super) fn blur(
    isa: Isa,
    hwc: &mut [u8],
    w: usize,
    h: usize,
    wt: &[u16],
    tmp: &mut [u16],
    padded: &mut [u16],
) {
    let r = wt.len().saturating_sub(1);
    assert!(
        r >= 1 && hwc.len() == w * h * 3,
        "blur kernel: bad image or taps"
    );
    assert_eq!(
        wt.iter().map(|&t| u32::from(t)).sum::<u32>(),
        1 << 16,
        "blur kernel: weights do not sum to one"
    );
    assert!(
        tmp.len() == (h + 2 * r) * w * 3 && padded.len() == (w + 2 * r) * 3,
        "blur kernel: bad scratch"
    );
    match isa {
        // SAFETY: the sizes were checked just above.
        Isa::Portable => unsafe { body::<Portable>(hwc, w, h, wt, tmp, padded) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is only chosen (by `detect`, or by tests after `detect`) on a
        // CPU with AVX2; the sizes were checked just above.
        Isa::Avx2 => unsafe { body_avx2(hwc, w, h, wt, tmp, padded) },
    }
}

/// [`body`] compiled with AVX2.
///
/// # Safety
/// The CPU must support AVX2; the buffers must have the sizes [`blur`] checks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn body_avx2(
    hwc: &mut [u8],
    w: usize,
    h: usize,
    wt: &[u16],
    tmp: &mut [u16],
    padded: &mut [u16],
) {
    // SAFETY: as this function's own contract.
    unsafe { body::<avx2::Avx2>(hwc, w, h, wt, tmp, padded) }
}

/// Reflects an index into `0..n` without repeating the edge (`-1 -> 1`), as torch's
/// "reflect" padding; an index more than one side away clamps to the edge.
#[inline(always)]
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let mut i = i.abs();
    if i >= n {
        i = 2 * (n - 1) - i;
    }
    i.clamp(0, n - 1) as usize
}

/// The offset that puts back the truncations' average loss in a pass of radius `r`: half a
/// unit for each of its `r + 1` terms, rounded.
fn offset(r: usize) -> u16 {
    r.div_ceil(2).min(usize::from(MAX_OFFSET)) as u16
}

/// Both passes. Horizontal first, row by row: reflect-pad the source row as 16-bit values,
/// convolve with taps 3 values apart into row `y + r` of `tmp`. Then the reflected rows above
/// and below, copied. Then vertical, one 32-value column strip at a time so the `2r + 1` rows
/// it reads stay in L1: taps `w * 3` values apart, rounded half to even into `hwc`.
///
/// # Safety
/// The buffers must have the sizes [`blur`] checks.
#[inline(always)]
unsafe fn body<L: Lanes>(
    hwc: &mut [u8],
    w: usize,
    h: usize,
    wt: &[u16],
    tmp: &mut [u16],
    padded: &mut [u16],
) {
    let r = wt.len() - 1;
    let row_len = w * 3;
    let off = offset(r);
    for y in 0..h {
        let src = &hwc[y * row_len..(y + 1) * row_len];
        let out = &mut tmp[(y + r) * row_len..(y + r + 1) * row_len];
        horizontal_row::<L>(src, w, wt, off, out, padded);
    }
    for i in (0..r).chain(r + h..h + 2 * r) {
        let from = r + reflect(i as isize - r as isize, h);
        tmp.copy_within(from * row_len..(from + 1) * row_len, i * row_len);
    }
    // SAFETY: output (y, x..x + n) reads tmp[(y + r ± t) * row_len + x..][..n] for t <= r:
    // from 0 up to (h - 1 + 2r) * row_len + row_len = tmp.len(); it writes inside hwc.
    unsafe {
        let c = tmp.as_ptr().add(r * row_len);
        let out = hwc.as_mut_ptr();
        let mut x = 0;
        while x + LANES * V_BLOCK <= row_len {
            for y in 0..h {
                let at = y * row_len + x;
                let acc = vertical::<L, V_BLOCK>(c.add(at), row_len, wt, off);
                for (i, v) in acc.iter().enumerate() {
                    v.store_bytes(out.add(at + LANES * i));
                }
            }
            x += LANES * V_BLOCK;
        }
        while x + LANES <= row_len {
            for y in 0..h {
                let at = y * row_len + x;
                vertical::<L, 1>(c.add(at), row_len, wt, off)[0].store_bytes(out.add(at));
            }
            x += LANES;
        }
        while x < row_len {
            for y in 0..h {
                let at = y * row_len + x;
                *out.add(at) = round_to_u8(vertical_one(c.add(at), row_len, wt, off));
            }
            x += 1;
        }
    }
}

/// The horizontal pass over one source row `src` into `out`, through `padded` (the row
/// reflect-padded, written here first).
#[inline(always)]
fn horizontal_row<L: Lanes>(
    src: &[u8],
    w: usize,
    wt: &[u16],
    off: u16,
    out: &mut [u16],
    padded: &mut [u16],
) {
    let r = wt.len() - 1;
    let row_len = w * 3;
    assert!(out.len() == row_len && padded.len() == row_len + 6 * r);
    let row = &mut padded[3 * r..3 * r + row_len];
    let mut x = 0;
    while x + LANES <= row_len {
        // SAFETY: x + 16 <= row_len, the length of both `src` and `row`.
        unsafe {
            let v = L::load_bytes(src.as_ptr().add(x)).shl::<7>();
            v.store(row.as_mut_ptr().add(x));
        }
        x += LANES;
    }
    for (d, &s) in row[x..].iter_mut().zip(&src[x..]) {
        *d = u16::from(s) << 7;
    }
    for p in (0..r).chain(r + w..w + 2 * r) {
        let x = reflect(p as isize - r as isize, w);
        for c in 0..3 {
            padded[3 * p + c] = u16::from(src[3 * x + c]) << 7;
        }
    }
    let mut j = 0;
    // SAFETY: output j..j + n (n = 16B, 16 or 1) reads padded[3r + j - 3t..][..n] and
    // padded[3r + j + 3t..][..n] for t <= r: from 0 up to 6r + row_len = padded.len().
    unsafe {
        let c = padded.as_ptr().add(3 * r);
        while j + LANES * H_BLOCK <= row_len {
            let acc = horizontal::<L, H_BLOCK>(c.add(j), wt, off);
            for (b, v) in acc.iter().enumerate() {
                v.store(out.as_mut_ptr().add(j + LANES * b));
            }
            j += LANES * H_BLOCK;
        }
        while j + LANES <= row_len {
            horizontal::<L, 1>(c.add(j), wt, off)[0].store(out.as_mut_ptr().add(j));
            j += LANES;
        }
        while j < row_len {
            out[j] = horizontal_one(c.add(j), wt, off);
            j += 1;
        }
    }
}

/// Sixteen 16-bit lanes and the few operations the passes need. Each is exact integer
/// arithmetic on every lane, so all implementations give the same bits.
trait Lanes: Copy {
    /// Loads `p[0..16]`.
    ///
    /// # Safety
    /// `p..p + 16` must be readable.
    unsafe fn load(p: *const u16) -> Self;
    /// Loads the bytes `p[0..16]` as 16-bit values.
    ///
    /// # Safety
    /// `p..p + 16` must be readable.
    unsafe fn load_bytes(p: *const u8) -> Self;
    /// Every lane `v`.
    fn splat(v: u16) -> Self;
    /// Lane-wise `self + o`, wrapping.
    fn add(self, o: Self) -> Self;
    /// Lane-wise `self << N`.
    fn shl<const N: i32>(self) -> Self;
    /// Lane-wise high half of `self * w` (`pmulhuw`).
    fn mulhi(self, w: Self) -> Self;
    /// Lane-wise average rounded up (`pavgw`).
    fn avg(self, o: Self) -> Self;
    /// Stores into `p[0..16]`.
    ///
    /// # Safety
    /// `p..p + 16` must be writable.
    unsafe fn store(self, p: *mut u16);
    /// Stores [`round_to_u8`] of each lane into `p[0..16]`.
    ///
    /// # Safety
    /// `p..p + 16` must be writable.
    unsafe fn store_bytes(self, p: *mut u8);
}

/// The baseline build's lanes: a plain array (the compiler vectorises what it can).
#[derive(Clone, Copy)]
struct Portable(V);

impl Lanes for Portable {
    #[inline(always)]
    unsafe fn load(p: *const u16) -> Self {
        // SAFETY: the caller guarantees the range.
        Portable(unsafe { p.cast::<V>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn load_bytes(p: *const u8) -> Self {
        // SAFETY: the caller guarantees the range.
        Portable(unsafe { p.cast::<[u8; LANES]>().read_unaligned() }.map(u16::from))
    }
    #[inline(always)]
    fn splat(v: u16) -> Self {
        Portable([v; LANES])
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Portable(std::array::from_fn(|i| self.0[i].wrapping_add(o.0[i])))
    }
    #[inline(always)]
    fn shl<const N: i32>(self) -> Self {
        Portable(self.0.map(|v| v << N))
    }
    #[inline(always)]
    fn mulhi(self, w: Self) -> Self {
        Portable(std::array::from_fn(|i| mulhi(self.0[i], w.0[i])))
    }
    #[inline(always)]
    fn avg(self, o: Self) -> Self {
        Portable(std::array::from_fn(|i| avg(self.0[i], o.0[i])))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut u16) {
        // SAFETY: the caller guarantees the range.
        unsafe { p.cast::<V>().write_unaligned(self.0) }
    }
    #[inline(always)]
    unsafe fn store_bytes(self, p: *mut u8) {
        // SAFETY: the caller guarantees the range.
        unsafe {
            p.cast::<[u8; LANES]>()
                .write_unaligned(self.0.map(round_to_u8))
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Lanes;
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi16, _mm256_and_si256, _mm256_avg_epu16, _mm256_castsi256_si128,
        _mm256_cvtepu8_epi16, _mm256_extracti128_si256, _mm256_loadu_si256, _mm256_mulhi_epu16,
        _mm256_set1_epi16, _mm256_slli_epi16, _mm256_srli_epi16, _mm256_storeu_si256,
        _mm_loadu_si128, _mm_packus_epi16, _mm_storeu_si128,
    };

    /// Sixteen lanes in one AVX2 register. Values of this type exist only inside
    /// [`super::body_avx2`], which runs only on CPUs with AVX2: that is what makes its
    /// intrinsics sound.
    #[derive(Clone, Copy)]
    pub(super) struct Avx2(__m256i);

    // SAFETY (every block below): `Avx2` values exist only on CPUs with AVX2 (see above);
    // pointer ranges are the callers' to guarantee, as the trait says.
    impl Lanes for Avx2 {
        #[inline(always)]
        unsafe fn load(p: *const u16) -> Self {
            Avx2(unsafe { _mm256_loadu_si256(p.cast()) })
        }
        #[inline(always)]
        unsafe fn load_bytes(p: *const u8) -> Self {
            Avx2(unsafe { _mm256_cvtepu8_epi16(_mm_loadu_si128(p.cast())) })
        }
        #[inline(always)]
        fn splat(v: u16) -> Self {
            Avx2(unsafe { _mm256_set1_epi16(v as i16) })
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            Avx2(unsafe { _mm256_add_epi16(self.0, o.0) })
        }
        #[inline(always)]
        fn shl<const N: i32>(self) -> Self {
            Avx2(unsafe { _mm256_slli_epi16::<N>(self.0) })
        }
        #[inline(always)]
        fn mulhi(self, w: Self) -> Self {
            Avx2(unsafe { _mm256_mulhi_epu16(self.0, w.0) })
        }
        #[inline(always)]
        fn avg(self, o: Self) -> Self {
            Avx2(unsafe { _mm256_avg_epu16(self.0, o.0) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut u16) {
            unsafe { _mm256_storeu_si256(p.cast(), self.0) }
        }
        #[inline(always)]
        unsafe fn store_bytes(self, p: *mut u8) {
            // As `round_to_u8`: add 127 and the integer part's lowest bit, shift by 8 (at
            // most 256, which the signed-to-unsigned saturating pack makes 255).
            unsafe {
                let odd = _mm256_and_si256(_mm256_srli_epi16::<8>(self.0), _mm256_set1_epi16(1));
                let v = _mm256_add_epi16(_mm256_add_epi16(self.0, _mm256_set1_epi16(127)), odd);
                let v = _mm256_srli_epi16::<8>(v);
                let bytes =
                    _mm_packus_epi16(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
                _mm_storeu_si128(p.cast(), bytes);
            }
        }
    }
}

/// The high half of the 32-bit product.
#[inline(always)]
fn mulhi(v: u16, w: u16) -> u16 {
    ((u32::from(v) * u32::from(w)) >> 16) as u16
}

/// The average rounded up.
#[inline(always)]
fn avg(a: u16, b: u16) -> u16 {
    ((u32::from(a) + u32::from(b) + 1) >> 1) as u16
}

/// `16 * B` horizontal outputs at `c[0..16B]`, from bytes held as `x << 7`, in units of
/// 1/256 of a level.
///
/// # Safety
/// `c - 3r .. c + 3r + 16B` must be readable (`r = wt.len() - 1`).
#[inline(always)]
unsafe fn horizontal<L: Lanes, const B: usize>(c: *const u16, wt: &[u16], off: u16) -> [L; B] {
    let w0 = L::splat(wt[0]);
    let mut acc = [L::splat(off); B];
    for (b, a) in acc.iter_mut().enumerate() {
        // SAFETY: inside the range the caller guarantees.
        let v = unsafe { L::load(c.add(LANES * b)) };
        *a = a.add(v.shl::<1>().mulhi(w0));
    }
    for (t, &w) in wt.iter().enumerate().skip(1) {
        let w = L::splat(w);
        // SAFETY: inside the range the caller guarantees.
        let (lo, hi) = unsafe { (c.sub(3 * t), c.add(3 * t)) };
        for (b, a) in acc.iter_mut().enumerate() {
            // SAFETY: inside the range the caller guarantees.
            let pair = unsafe { L::load(lo.add(LANES * b)).add(L::load(hi.add(LANES * b))) };
            *a = a.add(pair.mulhi(w));
        }
    }
    acc
}

/// One output of [`horizontal`], in scalar code with the same operations.
///
/// # Safety
/// `c - 3r ..= c + 3r` must be readable (`r = wt.len() - 1`).
#[inline(always)]
unsafe fn horizontal_one(c: *const u16, wt: &[u16], off: u16) -> u16 {
    // SAFETY (all reads): inside the range the caller guarantees.
    let mut acc = off.wrapping_add(mulhi(unsafe { *c } << 1, wt[0]));
    for (t, &w) in wt.iter().enumerate().skip(1) {
        let pair = unsafe { *c.sub(3 * t) + *c.add(3 * t) };
        acc = acc.wrapping_add(mulhi(pair, w));
    }
    acc
}

/// `16 * B` vertical outputs at `c[0..16B]`, in units of 1/256 of a level, the neighbours
/// `t * stride` values away.
///
/// # Safety
/// `c - r * stride .. c + r * stride + 16B` must be readable (`r = wt.len() - 1`).
#[inline(always)]
unsafe fn vertical<L: Lanes, const B: usize>(
    c: *const u16,
    stride: usize,
    wt: &[u16],
    off: u16,
) -> [L; B] {
    let w0 = L::splat(wt[0]);
    let mut acc = [L::splat(off); B];
    for (b, a) in acc.iter_mut().enumerate() {
        // SAFETY: inside the range the caller guarantees.
        *a = a.add(unsafe { L::load(c.add(LANES * b)) }.mulhi(w0));
    }
    for (t, &w) in wt.iter().enumerate().skip(1) {
        let w = L::splat(w);
        // SAFETY: inside the range the caller guarantees.
        let (lo, hi) = unsafe { (c.sub(t * stride), c.add(t * stride)) };
        for (b, a) in acc.iter_mut().enumerate() {
            // SAFETY: inside the range the caller guarantees.
            let mid = unsafe { L::load(lo.add(LANES * b)).avg(L::load(hi.add(LANES * b))) };
            *a = a.add(mid.mulhi(w));
        }
    }
    acc
}

/// One output of [`vertical`], in scalar code with the same operations.
///
/// # Safety
/// `c - r * stride ..= c + r * stride` must be readable (`r = wt.len() - 1`).
#[inline(always)]
unsafe fn vertical_one(c: *const u16, stride: usize, wt: &[u16], off: u16) -> u16 {
    // SAFETY (all reads): inside the range the caller guarantees.
    let mut acc = off.wrapping_add(mulhi(unsafe { *c }, wt[0]));
    for (t, &w) in wt.iter().enumerate().skip(1) {
        let mid = unsafe { avg(*c.sub(t * stride), *c.add(t * stride)) };
        acc = acc.wrapping_add(mulhi(mid, w));
    }
    acc
}

/// Rounds a value in units of 1/256 of a level to a byte, half to even, saturating.
#[inline(always)]
fn round_to_u8(v: u16) -> u8 {
    let odd = (v >> 8) & 1;
    ((v + 127 + odd) >> 8).min(255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_to_even_and_saturates() {
        for v in 0..=(65280 + 2 * MAX_OFFSET) {
            let want = (f64::from(v) / 256.0).round_ties_even().min(255.0) as u8;
            assert_eq!(round_to_u8(v), want, "{v}");
        }
    }

    #[test]
    fn reflect_matches_torch_padding() {
        let got: Vec<usize> = (-3..8).map(|i| reflect(i, 5)).collect();
        assert_eq!(got, [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]);
        assert_eq!(reflect(-4, 2), 0);
        assert_eq!(reflect(3, 1), 0);
    }
}

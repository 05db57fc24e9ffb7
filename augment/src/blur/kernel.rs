//! The blur's two passes over f32, written once as an `#[inline(always)]` body and compiled
//! twice: with AVX2 (chosen at run time) and for the baseline target. Each output is
//! `w_0 * a[i] + w_1 * (a[i - s] + a[i + s]) + w_2 * (...) + ...`, summed in that order with
//! separate multiplies and adds (no fused multiply-add), so the two builds agree to the bit.

/// Which build of the passes to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Isa {
    /// The baseline target (SSE2 on x86-64).
    Portable,
    /// AVX2, 8 lanes per register.
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

/// Registers of 8 lanes in one block of outputs computed together, held in registers while
/// the taps go by (32 floats).
const BLOCK: usize = 4;

/// Blurs packed RGB `hwc` (`w x h`) with the half kernel `taps` (`taps[t]` weighs distance
/// `t`; radius `r = taps.len() - 1 >= 1`). `tmp` holds `(h + 2r) * w * 3` floats, `padded`
/// `(w + 2r) * 3`.
///
/// # Panics
/// If a buffer has the wrong size.
pub(super) fn blur(
    isa: Isa,
    hwc: &mut [u8],
    w: usize,
    h: usize,
    taps: &[f32],
    tmp: &mut [f32],
    padded: &mut [f32],
) {
    let r = taps.len() - 1;
    assert!(
        r >= 1 && hwc.len() == w * h * 3,
        "blur kernel: bad image or taps"
    );
    assert!(
        tmp.len() == (h + 2 * r) * w * 3 && padded.len() == (w + 2 * r) * 3,
        "blur kernel: bad scratch"
    );
    match isa {
        // SAFETY: the sizes were checked just above.
        Isa::Portable => unsafe { body::<Portable>(hwc, w, h, taps, tmp, padded) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is only chosen (by `detect`, or by tests after `detect`) on a
        // CPU with AVX2; the sizes were checked just above.
        Isa::Avx2 => unsafe { avx2::body(hwc, w, h, taps, tmp, padded) },
    }
}

/// Eight f32 lanes and the few operations the passes need. Each operation is the IEEE one
/// on every lane, so all implementations give the same bits.
trait Lanes: Copy {
    /// Loads `p[0..8]`.
    ///
    /// # Safety
    /// `p..p + 8` must be readable.
    unsafe fn load(p: *const f32) -> Self;
    /// Loads the bytes `p[0..8]` as floats.
    ///
    /// # Safety
    /// `p..p + 8` must be readable.
    unsafe fn load_bytes(p: *const u8) -> Self;
    /// Every lane `v`.
    fn splat(v: f32) -> Self;
    /// Lane-wise `self + o`.
    fn add(self, o: Self) -> Self;
    /// Lane-wise `self * o`.
    fn mul(self, o: Self) -> Self;
    /// Stores into `p[0..8]`.
    ///
    /// # Safety
    /// `p..p + 8` must be writable.
    unsafe fn store(self, p: *mut f32);
    /// Stores [`round_to_u8`] of each lane into `p[0..8]`.
    ///
    /// # Safety
    /// `p..p + 8` must be writable.
    unsafe fn store_bytes(self, p: *mut u8);
    /// Stores [`round_to_u8`] of each lane of `v[0]`, then `v[1]`, ... into `p[0..32]`.
    ///
    /// # Safety
    /// `p..p + 32` must be writable.
    #[inline(always)]
    unsafe fn store_bytes_block(v: &[Self; BLOCK], p: *mut u8) {
        for (b, v) in v.iter().enumerate() {
            // SAFETY: inside the range the caller guarantees.
            unsafe { v.store_bytes(p.add(8 * b)) };
        }
    }
}

/// The baseline build's lanes: a plain array (the compiler vectorises what it can).
#[derive(Clone, Copy)]
struct Portable([f32; 8]);

impl Lanes for Portable {
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees p..p + 8 is readable.
        Portable(unsafe { p.cast::<[f32; 8]>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn load_bytes(p: *const u8) -> Self {
        // SAFETY: the caller guarantees p..p + 8 is readable.
        let b = unsafe { p.cast::<[u8; 8]>().read_unaligned() };
        let mut v = [0f32; 8];
        for (d, s) in v.iter_mut().zip(b) {
            *d = f32::from(s);
        }
        Portable(v)
    }
    #[inline(always)]
    fn splat(v: f32) -> Self {
        Portable([v; 8])
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        let mut v = self.0;
        for (a, b) in v.iter_mut().zip(o.0) {
            *a += b;
        }
        Portable(v)
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        let mut v = self.0;
        for (a, b) in v.iter_mut().zip(o.0) {
            *a *= b;
        }
        Portable(v)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees p..p + 8 is writable.
        unsafe { p.cast::<[f32; 8]>().write_unaligned(self.0) }
    }
    #[inline(always)]
    unsafe fn store_bytes(self, p: *mut u8) {
        let mut b = [0u8; 8];
        for (d, v) in b.iter_mut().zip(self.0) {
            *d = round_to_u8(v);
        }
        // SAFETY: the caller guarantees p..p + 8 is writable.
        unsafe { p.cast::<[u8; 8]>().write_unaligned(b) }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Lanes, BLOCK};
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_castps_si256, _mm256_castsi256_si128, _mm256_cvtepi32_ps,
        _mm256_cvtepu8_epi32, _mm256_cvtps_epi32, _mm256_extracti128_si256, _mm256_loadu_ps,
        _mm256_max_ps, _mm256_min_ps, _mm256_mul_ps, _mm256_packus_epi16, _mm256_packus_epi32,
        _mm256_permutevar8x32_epi32, _mm256_set1_ps, _mm256_setr_epi32, _mm256_setzero_ps,
        _mm256_storeu_ps, _mm256_storeu_si256, _mm_and_si128, _mm_loadl_epi64, _mm_packus_epi16,
        _mm_packus_epi32, _mm_set1_epi32, _mm_storel_epi64,
    };

    // `store_bytes_block` packs exactly four registers.
    const _: () = assert!(BLOCK == 4);

    /// Eight lanes in one AVX2 register. Values of this type exist only inside [`body`]
    /// below, which runs only on CPUs with AVX2: that is what makes its intrinsics sound.
    #[derive(Clone, Copy)]
    pub(super) struct Avx2(__m256);

    /// [`super::body`] compiled with AVX2.
    ///
    /// # Safety
    /// The CPU must support AVX2; the buffers must have the sizes [`super::blur`] checks.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn body(
        hwc: &mut [u8],
        w: usize,
        h: usize,
        taps: &[f32],
        tmp: &mut [f32],
        padded: &mut [f32],
    ) {
        // SAFETY: as this function's own contract.
        unsafe { super::body::<Avx2>(hwc, w, h, taps, tmp, padded) }
    }

    // SAFETY (every block below): `Avx2` values exist only on CPUs with AVX2 (see above);
    // pointer ranges are the callers' to guarantee, as the trait says.
    impl Lanes for Avx2 {
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Avx2(unsafe { _mm256_loadu_ps(p) })
        }
        #[inline(always)]
        unsafe fn load_bytes(p: *const u8) -> Self {
            unsafe {
                Avx2(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                    p.cast(),
                ))))
            }
        }
        #[inline(always)]
        fn splat(v: f32) -> Self {
            Avx2(unsafe { _mm256_set1_ps(v) })
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            Avx2(unsafe { _mm256_add_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn mul(self, o: Self) -> Self {
            Avx2(unsafe { _mm256_mul_ps(self.0, o.0) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm256_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        unsafe fn store_bytes(self, p: *mut u8) {
            // As `round_to_u8`: clamp to [0, 255] (no NaN reaches here), add 2^23, and the
            // low byte of each lane's bits is the rounded value.
            unsafe {
                let v = _mm256_min_ps(
                    _mm256_max_ps(self.0, _mm256_setzero_ps()),
                    _mm256_set1_ps(255.0),
                );
                let bits = _mm256_castps_si256(_mm256_add_ps(v, _mm256_set1_ps(8_388_608.0)));
                let low = _mm_set1_epi32(0xff);
                let lo = _mm_and_si128(_mm256_castsi256_si128(bits), low);
                let hi = _mm_and_si128(_mm256_extracti128_si256::<1>(bits), low);
                let words = _mm_packus_epi32(lo, hi);
                _mm_storel_epi64(p.cast(), _mm_packus_epi16(words, words));
            }
        }
        #[inline(always)]
        unsafe fn store_bytes_block(v: &[Self; BLOCK], p: *mut u8) {
            // Clamped to [0, 255], converted to i32 rounding half to even (the default mode,
            // as the 2^23 addition in `round_to_u8`), then packed to bytes: the packs work
            // within 128-bit halves, so the 4-byte groups come out as a0 b0 c0 d0 a1 b1 c1
            // d1 (x0 = lanes 0..4 of x, x1 = lanes 4..8) and one permute puts them in order.
            unsafe {
                let (zero, top) = (_mm256_setzero_ps(), _mm256_set1_ps(255.0));
                let a = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v[0].0, zero), top));
                let b = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v[1].0, zero), top));
                let c = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v[2].0, zero), top));
                let d = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v[3].0, zero), top));
                let bytes =
                    _mm256_packus_epi16(_mm256_packus_epi32(a, b), _mm256_packus_epi32(c, d));
                let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
                _mm256_storeu_si256(p.cast(), _mm256_permutevar8x32_epi32(bytes, order));
            }
        }
    }
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

/// Both passes. Horizontal first, row by row: reflect-pad the source row as f32, convolve
/// with taps 3 floats apart into row `y + r` of `tmp`. Then the reflected rows above and
/// below, copied. Then vertical, one 32-float column strip at a time so the `2r + 1` rows it
/// reads stay in L1: taps `w * 3` floats apart, rounded half to even into `hwc`.
///
/// # Safety
/// The buffers must have the sizes [`blur`] checks, and `L` must be usable on this CPU.
#[inline(always)]
unsafe fn body<L: Lanes>(
    hwc: &mut [u8],
    w: usize,
    h: usize,
    taps: &[f32],
    tmp: &mut [f32],
    padded: &mut [f32],
) {
    let r = taps.len() - 1;
    let row_len = w * 3;
    for y in 0..h {
        let src = &hwc[y * row_len..(y + 1) * row_len];
        let row = &mut padded[3 * r..3 * r + row_len];
        let mut x = 0;
        while x + 8 <= row_len {
            // SAFETY: x + 8 <= row_len, the length of both `src` and `row`.
            unsafe { L::load_bytes(src.as_ptr().add(x)).store(row.as_mut_ptr().add(x)) };
            x += 8;
        }
        for (d, &s) in row[x..].iter_mut().zip(&src[x..]) {
            *d = f32::from(s);
        }
        for p in (0..r).chain(r + w..w + 2 * r) {
            let x = reflect(p as isize - r as isize, w);
            for c in 0..3 {
                padded[3 * p + c] = src[3 * x + c] as f32;
            }
        }
        let out = &mut tmp[(y + r) * row_len..(y + r + 1) * row_len];
        let mut j = 0;
        // SAFETY: output j..j + n (n = 32, 8 or 1) reads padded[3r + j - 3t..][..n] and
        // padded[3r + j + 3t..][..n] for t <= r: from 0 up to 6r + row_len = padded.len().
        unsafe {
            let c = padded.as_ptr().add(3 * r);
            while j + 8 * BLOCK <= row_len {
                let acc = convolve::<L, BLOCK>(c.add(j), 3, taps);
                for (b, v) in acc.iter().enumerate() {
                    v.store(out.as_mut_ptr().add(j + 8 * b));
                }
                j += 8 * BLOCK;
            }
            while j + 8 <= row_len {
                convolve::<L, 1>(c.add(j), 3, taps)[0].store(out.as_mut_ptr().add(j));
                j += 8;
            }
            while j < row_len {
                out[j] = convolve_one(c.add(j), 3, taps);
                j += 1;
            }
        }
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
        while x + 8 * BLOCK <= row_len {
            for y in 0..h {
                let at = y * row_len + x;
                let acc = convolve::<L, BLOCK>(c.add(at), row_len, taps);
                L::store_bytes_block(&acc, out.add(at));
            }
            x += 8 * BLOCK;
        }
        while x + 8 <= row_len {
            for y in 0..h {
                let at = y * row_len + x;
                convolve::<L, 1>(c.add(at), row_len, taps)[0].store_bytes(out.add(at));
            }
            x += 8;
        }
        while x < row_len {
            for y in 0..h {
                let at = y * row_len + x;
                *out.add(at) = round_to_u8(convolve_one(c.add(at), row_len, taps));
            }
            x += 1;
        }
    }
}

/// `8 * B` outputs at `c[0..8B]`: `taps[0] * centre + sum_t taps[t] * (left + right)`, the
/// neighbours `t * stride` floats away, summed in tap order.
///
/// # Safety
/// `c - r * stride .. c + r * stride + 8B` must be readable (`r = taps.len() - 1`).
#[inline(always)]
unsafe fn convolve<L: Lanes, const B: usize>(c: *const f32, stride: usize, taps: &[f32]) -> [L; B] {
    let w0 = L::splat(taps[0]);
    let mut acc = [w0; B];
    for (b, a) in acc.iter_mut().enumerate() {
        // SAFETY: inside the range the caller guarantees.
        *a = w0.mul(unsafe { L::load(c.add(8 * b)) });
    }
    for (t, &wt) in taps.iter().enumerate().skip(1) {
        let wt = L::splat(wt);
        // SAFETY: inside the range the caller guarantees.
        let (lo, hi) = unsafe { (c.sub(t * stride), c.add(t * stride)) };
        for (b, a) in acc.iter_mut().enumerate() {
            // SAFETY: inside the range the caller guarantees.
            let pair = unsafe { L::load(lo.add(8 * b)).add(L::load(hi.add(8 * b))) };
            *a = a.add(wt.mul(pair));
        }
    }
    acc
}

/// One output of [`convolve`], in scalar code with the same operations in the same order.
///
/// # Safety
/// `c - r * stride ..= c + r * stride` must be readable (`r = taps.len() - 1`).
#[inline(always)]
unsafe fn convolve_one(c: *const f32, stride: usize, taps: &[f32]) -> f32 {
    // SAFETY (all reads): inside the range the caller guarantees.
    let mut acc = taps[0] * unsafe { *c };
    for (t, &wt) in taps.iter().enumerate().skip(1) {
        acc += wt * unsafe { *c.sub(t * stride) + *c.add(t * stride) };
    }
    acc
}

/// Rounds half to even and saturates to a byte, as `torch.round` then the uint8 cast after
/// clamping. Adding 2^23 to a float in `[0, 256)` rounds it to an integer half to even (the
/// default rounding mode) and leaves that integer in the low mantissa bits: no `roundps`
/// (which the baseline x86-64 lacks) and no float-to-int conversion (which does not
/// vectorise to bytes).
#[inline(always)]
fn round_to_u8(v: f32) -> u8 {
    const MAGIC: f32 = 8_388_608.0;
    (v.clamp(0.0, 255.0) + MAGIC).to_bits() as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_to_even_and_saturates() {
        for i in -2000..=600_000 {
            let v = i as f32 * 0.0005 - 0.5;
            assert_eq!(
                round_to_u8(v),
                v.round_ties_even().clamp(0.0, 255.0) as u8,
                "{v}"
            );
        }
        for v in [0.5f32, 1.5, 2.5, 254.5, 255.5, -0.5, 1e9, -1e9, 0.49999997] {
            assert_eq!(
                round_to_u8(v),
                v.round_ties_even().clamp(0.0, 255.0) as u8,
                "{v}"
            );
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

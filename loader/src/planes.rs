//! Packed RGB (what the JPEG decoder and the resizer write) to three planes (what a batch
//! holds), optionally mirroring each row: the flip the pipeline defers to this copy.
//!
//! This is the one pass over every output pixel that the loader adds to the fused decode,
//! so it has an SSSE3 path (16 pixels per step, 9 byte shuffles) chosen at run time. The
//! scalar path is the reference; a test checks the two agree on every width and offset.

/// Splits packed RGB (`w x h`) into three planes of `chw`, mirroring each row if `mirror`.
///
/// # Panics
/// If `hwc` or `chw` is shorter than `w * h * 3`.
pub fn hwc_to_chw(hwc: &[u8], chw: &mut [u8], w: usize, h: usize, mirror: bool) {
    let plane = w * h;
    assert!(
        hwc.len() >= plane * 3 && chw.len() >= plane * 3,
        "hwc_to_chw: buffers too small for {w}x{h}"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("ssse3") {
        // SAFETY: the CPU has SSSE3 (checked just above); the lengths were checked.
        unsafe { ssse3::hwc_to_chw(hwc, chw, w, h, mirror) };
        return;
    }
    hwc_to_chw_scalar(hwc, chw, w, h, mirror);
}

/// The portable version of [`hwc_to_chw`].
pub fn hwc_to_chw_scalar(hwc: &[u8], chw: &mut [u8], w: usize, h: usize, mirror: bool) {
    let plane = w * h;
    let (r, rest) = chw[..plane * 3].split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for y in 0..h {
        let src = &hwc[y * w * 3..(y + 1) * w * 3];
        let row = y * w;
        copy_pixels(src, r, g, b, row, w, 0, w, mirror);
    }
}

/// Pixels `from..to` of one row (`src` is the whole packed row) into the planes; `row` is
/// the row's first index in each plane.
#[allow(clippy::too_many_arguments)]
#[inline]
fn copy_pixels(
    src: &[u8],
    r: &mut [u8],
    g: &mut [u8],
    b: &mut [u8],
    row: usize,
    w: usize,
    from: usize,
    to: usize,
    mirror: bool,
) {
    for x in from..to {
        let d = row + if mirror { w - 1 - x } else { x };
        r[d] = src[3 * x];
        g[d] = src[3 * x + 1];
        b[d] = src[3 * x + 2];
    }
}

#[cfg(target_arch = "x86_64")]
mod ssse3 {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_or_si128, _mm_shuffle_epi8, _mm_storeu_si128,
    };

    /// `MASKS[mirror][channel][input vector]`: which byte of that 16-byte input vector lands
    /// at each of the 16 output bytes (0x80: none). Output byte j is pixel j's channel, or
    /// pixel 15 - j's when mirrored; pixel j's channel c is input byte 3j + c.
    const MASKS: [[[[u8; 16]; 3]; 3]; 2] = masks();

    const fn masks() -> [[[[u8; 16]; 3]; 3]; 2] {
        let mut m = [[[[0x80u8; 16]; 3]; 3]; 2];
        let mut mirror = 0;
        while mirror < 2 {
            let mut c = 0;
            while c < 3 {
                let mut j = 0;
                while j < 16 {
                    let pixel = if mirror == 1 { 15 - j } else { j };
                    let byte = 3 * pixel + c;
                    m[mirror][c][byte / 16][j] = (byte % 16) as u8;
                    j += 1;
                }
                c += 1;
            }
            mirror += 1;
        }
        m
    }

    /// # Safety
    /// The CPU must support SSSE3; `hwc` and `chw` must hold at least `w * h * 3` bytes.
    #[target_feature(enable = "ssse3")]
    pub(super) unsafe fn hwc_to_chw(hwc: &[u8], chw: &mut [u8], w: usize, h: usize, mirror: bool) {
        let plane = w * h;
        let masks = &MASKS[mirror as usize];
        // SAFETY: every mask is 16 bytes; unaligned loads.
        let m: [[__m128i; 3]; 3] = std::array::from_fn(|c| {
            std::array::from_fn(|v| unsafe { _mm_loadu_si128(masks[c][v].as_ptr().cast()) })
        });
        let (r, rest) = chw[..plane * 3].split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        let full = w / 16 * 16;
        for y in 0..h {
            let src = &hwc[y * w * 3..(y + 1) * w * 3];
            let row = y * w;
            let mut x = 0;
            while x < full {
                // The 16 pixels x..x+16 go to plane positions x.. (or w-16-x.. mirrored).
                let d = row + if mirror { w - 16 - x } else { x };
                // SAFETY: src[3x..3x+48] is inside the row (x + 16 <= w), and the planes
                // hold d..d+16 (d + 16 <= row + w <= plane).
                unsafe {
                    let p = src.as_ptr().add(3 * x);
                    let v = [
                        _mm_loadu_si128(p.cast()),
                        _mm_loadu_si128(p.add(16).cast()),
                        _mm_loadu_si128(p.add(32).cast()),
                    ];
                    for (c, out) in [&mut *r, &mut *g, &mut *b].into_iter().enumerate() {
                        let lo = _mm_or_si128(
                            _mm_shuffle_epi8(v[0], m[c][0]),
                            _mm_shuffle_epi8(v[1], m[c][1]),
                        );
                        let px = _mm_or_si128(lo, _mm_shuffle_epi8(v[2], m[c][2]));
                        _mm_storeu_si128(out.as_mut_ptr().add(d).cast(), px);
                    }
                }
                x += 16;
            }
            super::copy_pixels(src, r, g, b, row, w, full, w, mirror);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: flip the packed image pixel by pixel, then read each channel out.
    fn reference(hwc: &[u8], w: usize, h: usize, mirror: bool) -> Vec<u8> {
        let mut out = vec![0; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let sx = if mirror { w - 1 - x } else { x };
                for c in 0..3 {
                    out[c * w * h + y * w + x] = hwc[(y * w + sx) * 3 + c];
                }
            }
        }
        out
    }

    #[test]
    fn every_path_matches_the_reference_on_awkward_widths() {
        for (w, h) in [
            (1, 1),
            (5, 3),
            (15, 2),
            (16, 1),
            (17, 3),
            (31, 2),
            (33, 4),
            (224, 3),
        ] {
            let img: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 256) as u8).collect();
            for mirror in [false, true] {
                let want = reference(&img, w, h, mirror);
                let (mut fast, mut slow) = (vec![1; w * h * 3], vec![2; w * h * 3]);
                hwc_to_chw(&img, &mut fast, w, h, mirror);
                hwc_to_chw_scalar(&img, &mut slow, w, h, mirror);
                assert_eq!(fast, want, "{w}x{h} mirror {mirror}");
                assert_eq!(slow, want, "{w}x{h} mirror {mirror} (scalar)");
            }
        }
    }

    #[test]
    fn mirrored_planes_equal_flip_then_split() {
        let (w, h) = (5, 3);
        let img: Vec<u8> = (0..w * h * 3).map(|i| i as u8).collect();
        let mut flipped = img.clone();
        uic_augment::hflip(&mut flipped, w, h, 3);
        let (mut a, mut b) = (vec![0; img.len()], vec![0; img.len()]);
        hwc_to_chw(&img, &mut a, w, h, true);
        hwc_to_chw(&flipped, &mut b, w, h, false);
        assert_eq!(a, b);
        assert_eq!(&b[..5], &[12, 9, 6, 3, 0]);
    }

    #[test]
    #[should_panic(expected = "too small")]
    fn short_buffers_are_refused() {
        hwc_to_chw(&[0; 11], &mut [0; 12], 2, 2, false);
    }
}

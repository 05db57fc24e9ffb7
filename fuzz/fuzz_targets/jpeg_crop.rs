//! Arbitrary bytes as a JPEG, with an arbitrary crop, output size, scale and mirror, through
//! the fused decode-and-crop path (`CropDecoder::decode`), the region decode, the full
//! decode and the planar copy that mirrors. Either a clean error or an output of exactly the
//! requested size; bytes past it are never written.
//!
//! Input layout: 16 bytes of parameters, then the JPEG (the seeds are built that way).
#![no_main]

use libfuzzer_sys::fuzz_target;
use uic_loader::crop::{CropDecoder, Rect};
use uic_loader::jpeg::{Decoder, Scale};
use uic_loader::planes::{hwc_to_chw, hwc_to_chw_scalar};
use uic_loader::StorageMode;

const PARAMS: usize = 16;
/// Beyond this the full decode is skipped: a caller checks the header before it sizes a
/// buffer, and the fuzzer should not spend its time filling hundreds of megabytes.
const FULL_DECODE_MAX_PIXELS: u64 = 1 << 22;
const GUARD: usize = 16;

fn frac(b: &[u8]) -> f64 {
    u16::from_le_bytes([b[0], b[1]]) as f64 / u16::MAX as f64
}

fn scale_of(b: u8) -> Scale {
    [Scale::Full, Scale::Half, Scale::Quarter, Scale::Eighth][(b % 4) as usize]
}

fuzz_target!(|data: &[u8]| {
    if data.len() < PARAMS {
        return;
    }
    let (p, jpeg) = data.split_at(PARAMS);
    let (out_w, out_h) = (1 + (p[0] % 64) as u32, 1 + (p[1] % 64) as u32);
    let scale = scale_of(p[2]);
    let flags = p[3];
    let mirror = flags & 1 != 0;

    let mut crop_dec = CropDecoder::new().expect("a TurboJPEG handle");
    let Ok(header) = crop_dec.header(jpeg) else {
        return;
    };
    // The size the record's entry claims: the header's, or (bit 1) an arbitrary one, as a
    // tampered record file could hold.
    let (w, h) = if flags & 2 == 0 {
        (header.width, header.height)
    } else {
        (
            1 + u16::from_le_bytes([p[12], p[13]]) as u32,
            1 + u16::from_le_bytes([p[14], p[15]]) as u32,
        )
    };
    let crop = if flags & 4 == 0 {
        // A crop inside the image, at least one pixel.
        let x = (frac(&p[4..6]) * (w - 1) as f64).floor();
        let y = (frac(&p[6..8]) * (h - 1) as f64).floor();
        let cw = (frac(&p[8..10]) * (w as f64 - x))
            .max(1.0)
            .min(w as f64 - x);
        let ch = (frac(&p[10..12]) * (h as f64 - y))
            .max(1.0)
            .min(h as f64 - y);
        Rect { x, y, w: cw, h: ch }
    } else {
        // Anything at all, to be refused cleanly when it is outside.
        Rect {
            x: i16::from_le_bytes([p[4], p[5]]) as f64 / 4.0,
            y: i16::from_le_bytes([p[6], p[7]]) as f64 / 4.0,
            w: i16::from_le_bytes([p[8], p[9]]) as f64 / 4.0,
            h: i16::from_le_bytes([p[10], p[11]]) as f64 / 4.0,
        }
    };

    let need = out_w as usize * out_h as usize * 3;
    let mut out = vec![0xa5u8; need + GUARD];
    if crop_dec
        .decode(
            StorageMode::Jpeg,
            jpeg,
            w,
            h,
            crop,
            (out_w, out_h),
            &mut out,
        )
        .is_ok()
    {
        assert!(
            out[need..].iter().all(|&b| b == 0xa5),
            "wrote past {need} bytes"
        );
        let mut chw = vec![0u8; need];
        let mut chw_ref = vec![0u8; need];
        hwc_to_chw(
            &out[..need],
            &mut chw,
            out_w as usize,
            out_h as usize,
            mirror,
        );
        hwc_to_chw_scalar(
            &out[..need],
            &mut chw_ref,
            out_w as usize,
            out_h as usize,
            mirror,
        );
        assert_eq!(chw, chw_ref);
    }

    // The full decode and a region decode, with the decoder's own settings varied.
    let mut dec = Decoder::new().expect("a TurboJPEG handle");
    let _ = dec.set_stop_on_warning(flags & 8 == 0);
    let _ = dec.set_fast_dct(flags & 16 != 0);
    if header.width as u64 * header.height as u64 > FULL_DECODE_MAX_PIXELS {
        return;
    }
    let len = Decoder::rgb_len(&header, scale);
    let mut full = vec![0xa5u8; len + GUARD];
    if let Ok((fw, fh)) = dec.decode_rgb(jpeg, scale, &mut full) {
        assert_eq!(fw as usize * fh as usize * 3, len);
        assert!(
            full[len..].iter().all(|&b| b == 0xa5),
            "wrote past {len} bytes"
        );
    }
    let (sw, sh) = (scale.apply(header.width), scale.apply(header.height));
    let align = Decoder::region_x_align(&header, scale).max(1);
    let rx = (frac(&p[4..6]) * sw as f64) as u32 / align * align;
    let ry = (frac(&p[6..8]) * sh as f64) as u32;
    let rw = ((frac(&p[8..10]) * sw as f64) as u32).clamp(1, sw);
    let rh = ((frac(&p[10..12]) * sh as f64) as u32).clamp(1, sh);
    let rneed = rw as usize * rh as usize * 3;
    let mut region = vec![0xa5u8; rneed + GUARD];
    let _ = dec.decode_region_rgb(jpeg, &header, scale, (rx, ry, rw, rh), &mut region);
    assert!(
        region[rneed..].iter().all(|&b| b == 0xa5),
        "wrote past {rneed} bytes"
    );
});

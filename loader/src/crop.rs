//! Crops that decode only what they keep: fused RandomResizedCrop, centre crop, ten-crop.
//!
//! [`random_resized_crop`] draws a crop with torchvision's semantics from the header's size.
//! [`CropDecoder::decode`] then decodes just that region (`tj3SetCroppingRegion`) at the
//! strongest SIMD DCT scale (1/2, 1/4, 1/8) that leaves the scaled crop at least as large
//! as the output, and resizes it with an antialiased bilinear filter (Pillow's, as
//! torchvision's PIL path uses) into the caller's buffer. Rows below the crop are never
//! entropy-decoded; columns are cut at the iMCU boundary left of the crop.

use fast_image_resize as fr;
use rand::Rng;

use crate::error::{Error, Result};
use crate::jpeg::{Decoder, JpegHeader, Scale};
use crate::StorageMode;

/// A crop in source pixels. Fractional edges are allowed (centre crops of a resized image).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width, > 0.
    pub w: f64,
    /// Height, > 0.
    pub h: f64,
}

impl Rect {
    /// The whole `width x height` image.
    pub fn full(width: u32, height: u32) -> Rect {
        Rect {
            x: 0.0,
            y: 0.0,
            w: width as f64,
            h: height as f64,
        }
    }
}

/// RandomResizedCrop settings (torchvision's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RrcConfig {
    /// Range of the crop's area as a fraction of the image's.
    pub scale: (f64, f64),
    /// Range of the crop's aspect ratio (width / height).
    pub ratio: (f64, f64),
}

impl Default for RrcConfig {
    fn default() -> Self {
        RrcConfig {
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
        }
    }
}

/// torchvision's `RandomResizedCrop.get_params`: up to 10 tries at a random area and
/// log-uniform aspect ratio, then a centre crop clamped to the ratio range.
pub fn random_resized_crop(width: u32, height: u32, cfg: &RrcConfig, rng: &mut impl Rng) -> Rect {
    let (w, h) = (width as f64, height as f64);
    let area = w * h;
    let (log_lo, log_hi) = (cfg.ratio.0.ln(), cfg.ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.gen_range(cfg.scale.0..=cfg.scale.1);
        let aspect = rng.gen_range(log_lo..=log_hi).exp();
        let cw = (target * aspect).sqrt().round_ties_even();
        let ch = (target / aspect).sqrt().round_ties_even();
        if cw > 0.0 && ch > 0.0 && cw <= w && ch <= h {
            let top = rng.gen_range(0..=(height - ch as u32)) as f64;
            let left = rng.gen_range(0..=(width - cw as u32)) as f64;
            return Rect {
                x: left,
                y: top,
                w: cw,
                h: ch,
            };
        }
    }
    let in_ratio = w / h;
    let (cw, ch) = if in_ratio < cfg.ratio.0 {
        (w, (w / cfg.ratio.0).round_ties_even())
    } else if in_ratio > cfg.ratio.1 {
        ((h * cfg.ratio.1).round_ties_even(), h)
    } else {
        (w, h)
    };
    Rect {
        x: ((w - cw) / 2.0).floor(),
        y: ((h - ch) / 2.0).floor(),
        w: cw,
        h: ch,
    }
}

/// The source region that `Resize(resize)` then `CenterCrop(crop)` keeps (the eval
/// transform: 256 then 224), as one fused crop.
pub fn center_crop(width: u32, height: u32, resize: u32, crop: u32) -> Rect {
    ten_crop(width, height, resize, crop)[4]
}

/// The five crops of torchvision's `TenCrop` after `Resize(resize)`: top-left, top-right,
/// bottom-left, bottom-right, centre, in source pixels. The other five are their mirrors
/// (flip the output).
pub fn ten_crop(width: u32, height: u32, resize: u32, crop: u32) -> [Rect; 5] {
    let (w, h) = (width as f64, height as f64);
    // torchvision's Resize(int): the shorter side becomes `resize`, the longer is truncated.
    let (rw, rh) = if w <= h {
        (resize as f64, (resize as f64 * h / w).floor())
    } else {
        ((resize as f64 * w / h).floor(), resize as f64)
    };
    let (sx, sy) = (w / rw, h / rh);
    let c = crop as f64;
    let at = |left: f64, top: f64| Rect {
        x: left * sx,
        y: top * sy,
        w: c.min(rw) * sx,
        h: c.min(rh) * sy,
    };
    let (right, bottom) = ((rw - c).max(0.0), (rh - c).max(0.0));
    [
        at(0.0, 0.0),
        at(right, 0.0),
        at(0.0, bottom),
        at(right, bottom),
        at(
            ((rw - c) / 2.0).round_ties_even().max(0.0),
            ((rh - c) / 2.0).round_ties_even().max(0.0),
        ),
    ]
}

/// Decodes and resizes crops into caller buffers; one per thread.
pub struct CropDecoder {
    jpeg: Decoder,
    resizer: fr::Resizer,
    region: Vec<u8>,
}

impl std::fmt::Debug for CropDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CropDecoder").finish_non_exhaustive()
    }
}

impl CropDecoder {
    /// A decoder with its own TurboJPEG handle. Warnings (corrupt data) are errors.
    ///
    /// # Errors
    /// When TurboJPEG cannot allocate a handle.
    pub fn new() -> Result<Self> {
        Ok(CropDecoder {
            jpeg: Decoder::new()?,
            resizer: fr::Resizer::new(),
            region: Vec::new(),
        })
    }

    /// The JPEG header (for drawing a crop from the size).
    ///
    /// # Errors
    /// When the bytes are not a JPEG.
    pub fn header(&mut self, data: &[u8]) -> Result<JpegHeader> {
        self.jpeg.read_header(data)
    }

    /// Decodes `crop` of a stored sample, resized to `out_w x out_h`, into `out` (packed RGB,
    /// `out_w * out_h * 3` bytes). JPEG samples take the fused region path; raw samples are
    /// cropped and resized from their pixels.
    ///
    /// # Errors
    /// Corrupt data, a crop outside the image, or a short `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn decode(
        &mut self,
        mode: StorageMode,
        data: &[u8],
        width: u32,
        height: u32,
        crop: Rect,
        (out_w, out_h): (u32, u32),
        out: &mut [u8],
    ) -> Result<()> {
        let need = out_w as usize * out_h as usize * 3;
        if out.len() < need || out_w == 0 || out_h == 0 {
            return Err(Error::InvalidArgument(format!(
                "output buffer of {} bytes for {out_w}x{out_h}",
                out.len()
            )));
        }
        if crop.w <= 0.0
            || crop.h <= 0.0
            || crop.x < 0.0
            || crop.y < 0.0
            || crop.x + crop.w > width as f64 + 1e-6
            || crop.y + crop.h > height as f64 + 1e-6
        {
            return Err(Error::InvalidArgument(format!(
                "crop {crop:?} outside a {width}x{height} image"
            )));
        }
        match mode {
            StorageMode::Raw => {
                if data.len() != width as usize * height as usize * 3 {
                    return Err(Error::InvalidArgument(format!(
                        "{} raw bytes for {width}x{height}",
                        data.len()
                    )));
                }
                resize_into(
                    &mut self.resizer,
                    data,
                    (width, height),
                    crop,
                    (out_w, out_h),
                    &mut out[..need],
                )
            }
            StorageMode::Jpeg => self.decode_jpeg(data, crop, (out_w, out_h), &mut out[..need]),
        }
    }

    fn decode_jpeg(
        &mut self,
        data: &[u8],
        crop: Rect,
        (out_w, out_h): (u32, u32),
        out: &mut [u8],
    ) -> Result<()> {
        let header = self.jpeg.read_header(data)?;
        // Refuse a decompression bomb before the region buffer is sized from its header.
        self.jpeg.check_decodable(&header)?;
        // The crop was checked against the size the record claims; the region arithmetic
        // below needs it inside the size the JPEG itself declares.
        if crop.x + crop.w > header.width as f64 + 1e-6
            || crop.y + crop.h > header.height as f64 + 1e-6
        {
            return Err(Error::InvalidArgument(format!(
                "crop {crop:?} outside the {}x{} JPEG (its record says otherwise)",
                header.width, header.height
            )));
        }
        let scale =
            Scale::strongest_keeping(crop.w.floor() as u32, crop.h.floor() as u32, out_w, out_h);
        let d = scale.denom() as f64;
        let (sw, sh) = (scale.apply(header.width), scale.apply(header.height));
        // The crop in scaled pixels, then the decodable region around it.
        let (fx0, fy0) = (crop.x / d, crop.y / d);
        let (fx1, fy1) = (
            ((crop.x + crop.w) / d).min(sw as f64),
            ((crop.y + crop.h) / d).min(sh as f64),
        );
        let align = Decoder::region_x_align(&header, scale);
        #[allow(clippy::manual_checked_ops)] // align == 0 means "no region decode" below too
        let (rx, ry, rw, rh) = if align == 0 {
            (0, 0, sw, sh)
        } else {
            let rx = (fx0.floor() as u32) / align * align;
            let ry = fy0.floor() as u32;
            let rx1 = (fx1.ceil() as u32).min(sw);
            let ry1 = (fy1.ceil() as u32).min(sh);
            (rx, ry, rx1 - rx, ry1 - ry)
        };
        let mut region = std::mem::take(&mut self.region);
        region.resize(rw as usize * rh as usize * 3, 0);
        let decoded = if align == 0 {
            self.jpeg.decode_rgb(data, scale, &mut region).map(|_| ())
        } else {
            self.jpeg
                .decode_region_rgb(data, &header, scale, (rx, ry, rw, rh), &mut region)
        };
        let result = decoded.and_then(|()| {
            let local = Rect {
                x: fx0 - rx as f64,
                y: fy0 - ry as f64,
                w: fx1 - fx0,
                h: fy1 - fy0,
            };
            resize_into(
                &mut self.resizer,
                &region,
                (rw, rh),
                local,
                (out_w, out_h),
                out,
            )
        });
        self.region = region;
        result
    }
}

/// Resizes the `crop` of packed RGB `src` to `out_w x out_h` with Pillow's antialiased
/// bilinear filter.
fn resize_into(
    resizer: &mut fr::Resizer,
    src: &[u8],
    (w, h): (u32, u32),
    crop: Rect,
    (out_w, out_h): (u32, u32),
    out: &mut [u8],
) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::InvalidArgument(format!("resize: {e}"));
    let src = fr::images::ImageRef::new(w, h, src, fr::PixelType::U8x3).map_err(|e| err(&e))?;
    let mut dst = fr::images::Image::from_slice_u8(out_w, out_h, out, fr::PixelType::U8x3)
        .map_err(|e| err(&e))?;
    let opts = fr::ResizeOptions::new()
        .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear))
        .crop(
            crop.x,
            crop.y,
            crop.w.min(w as f64 - crop.x),
            crop.h.min(h as f64 - crop.y),
        );
    resizer.resize(&src, &mut dst, &opts).map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn random_crops_stay_inside_and_respect_the_ranges() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
        let cfg = RrcConfig::default();
        for (w, h) in [(500, 375), (1, 1), (10000, 10), (37, 800), (224, 224)] {
            for _ in 0..500 {
                let r = random_resized_crop(w, h, &cfg, &mut rng);
                assert!(r.x >= 0.0 && r.y >= 0.0 && r.w >= 1.0 && r.h >= 1.0);
                assert!(
                    r.x + r.w <= w as f64 && r.y + r.h <= h as f64,
                    "{r:?} in {w}x{h}"
                );
                assert_eq!(
                    (r.x.fract(), r.y.fract(), r.w.fract(), r.h.fract()),
                    (0.0, 0.0, 0.0, 0.0)
                );
            }
        }
        // On a normal image, crops cover the whole allowed area range.
        let areas: Vec<f64> = (0..2000)
            .map(|_| {
                let r = random_resized_crop(500, 375, &cfg, &mut rng);
                r.w * r.h / (500.0 * 375.0)
            })
            .collect();
        let (lo, hi) = areas
            .iter()
            .fold((1.0f64, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
        assert!(lo < 0.1 && hi > 0.9, "areas span {lo}..{hi}");
    }

    #[test]
    fn fallback_is_a_centre_crop_clamped_to_the_ratio() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(2);
        // 10000x10: no try can fit (aspect > 4/3 needs h > 10 for large areas, tiny areas round to 0 rows or fit).
        let cfg = RrcConfig {
            scale: (0.9, 1.0),
            ratio: (0.75, 4.0 / 3.0),
        };
        let r = random_resized_crop(10000, 10, &cfg, &mut rng);
        assert_eq!((r.w, r.h), (13.0, 10.0));
        assert_eq!(r.x, ((10000.0 - 13.0) / 2.0f64).floor());
    }

    #[test]
    fn center_crop_matches_resize_256_crop_224() {
        // 500x375: Resize(256) gives 341x256; CenterCrop(224) keeps left round(58.5)=58, top 16.
        let r = center_crop(500, 375, 256, 224);
        let s = 375.0 / 256.0;
        assert!((r.x - 58.0 * 500.0 / 341.0).abs() < 1e-9 && (r.y - 16.0 * s).abs() < 1e-9);
        assert!((r.w - 224.0 * 500.0 / 341.0).abs() < 1e-9 && (r.h - 224.0 * s).abs() < 1e-9);
    }
}

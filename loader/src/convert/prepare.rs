//! Turning one source file's bytes into a record, or into a reason to skip it.

use std::io::Cursor;

use fast_image_resize as fr;

use super::skip::SkipReason;
use crate::error::{Error, Result};
use crate::jpeg::{Decoder, EncodeOptions, Encoder, JpegHeader, PixelFormat, Scale, Subsampling};
use crate::StorageMode;

/// What [`prepare`] makes of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The bytes to store.
    pub data: Vec<u8>,
    /// Width of the stored image.
    pub width: u32,
    /// Height of the stored image.
    pub height: u32,
    /// Whether `data` differs from the input bytes.
    pub converted: bool,
    /// An alteration the mode did not ask for (a PNG stored as JPEG, CMYK made RGB).
    pub note: Option<String>,
}

/// The conversion settings [`prepare`] needs.
#[derive(Debug, Clone, Copy)]
pub struct PrepareOptions {
    /// Output storage.
    pub mode: StorageMode,
    /// Re-encode every JPEG (quality/size given) instead of passing it through.
    pub reencode: bool,
    /// Longest side of the stored image; larger images are downscaled.
    pub max_side: Option<u32>,
    /// JPEG quality of re-encoded images.
    pub quality: u8,
    /// Refuse images declaring more pixels than this.
    pub max_pixels: u64,
}

/// Per-thread codec state: a TurboJPEG decoder and encoder plus a resizer.
pub struct Codec {
    decoder: Decoder,
    encoder: Encoder,
    resizer: fr::Resizer,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").finish_non_exhaustive()
    }
}

impl Codec {
    /// A codec with its own TurboJPEG handles.
    ///
    /// # Errors
    /// When TurboJPEG cannot allocate a handle.
    pub fn new() -> Result<Self> {
        Ok(Codec {
            decoder: Decoder::new()?,
            encoder: Encoder::new()?,
            resizer: fr::Resizer::new(),
        })
    }
}

/// The size that fits `width x height` within `max_side` (never upscales).
pub fn fit_within(width: u32, height: u32, max_side: Option<u32>) -> (u32, u32) {
    match max_side {
        Some(m) if width.max(height) > m => {
            let s = m as f64 / width.max(height) as f64;
            let f = |v: u32| ((v as f64 * s).round() as u32).clamp(1, m);
            (f(width), f(height))
        }
        _ => (width, height),
    }
}

fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xff, 0xd8, 0xff])
}

/// Turns a file's bytes into what the record file stores. `Err` carries the reason to skip.
///
/// - A valid 8-bit JPEG (baseline or progressive, colour or gray) is stored as is in
///   passthrough mode, after a full entropy decode proves it decodable.
/// - CMYK/YCCK JPEGs, other formats (PNG, BMP, GIF, TIFF, WebP) and every image in re-encode
///   or raw mode are decoded to RGB, downscaled to `max_side` if needed, and stored as a
///   4:2:0 JPEG of the given quality, or as raw pixels.
pub fn prepare(
    bytes: &[u8],
    opts: &PrepareOptions,
    codec: &mut Codec,
) -> std::result::Result<Prepared, SkipReason> {
    if bytes.is_empty() {
        return Err(SkipReason::Empty);
    }
    if is_jpeg(bytes) {
        prepare_jpeg(bytes, opts, codec)
    } else {
        prepare_other(bytes, opts, codec)
    }
}

fn prepare_jpeg(
    bytes: &[u8],
    opts: &PrepareOptions,
    codec: &mut Codec,
) -> std::result::Result<Prepared, SkipReason> {
    codec.decoder.set_max_pixels(opts.max_pixels);
    let header = codec
        .decoder
        .read_header(bytes)
        .map_err(|e| undecodable("JPEG", &e))?;
    let (tw, th) = fit_within(header.width, header.height, opts.max_side);
    let passthrough = opts.mode == StorageMode::Jpeg && !opts.reencode && !header.is_cmyk();
    if passthrough {
        // Validate by decoding at 1/8: every coefficient is still entropy-decoded, so
        // corrupt or truncated data fails (warnings are errors), at a fraction of the cost.
        let mut scratch = vec![0u8; Decoder::rgb_len(&header, Scale::Eighth)];
        codec
            .decoder
            .decode_rgb(bytes, Scale::Eighth, &mut scratch)
            .map_err(|e| decode_reason(&e))?;
        return Ok(Prepared {
            data: bytes.to_vec(),
            width: header.width,
            height: header.height,
            converted: false,
            note: None,
        });
    }
    let scale = Scale::strongest_keeping(header.width, header.height, tw, th);
    let mut rgb = vec![0u8; Decoder::rgb_len(&header, scale)];
    let (sw, sh) = codec
        .decoder
        .decode_rgb(bytes, scale, &mut rgb)
        .map_err(|e| decode_reason(&e))?;
    let note =
        (header.is_cmyk() && opts.mode == StorageMode::Jpeg).then(|| cmyk_note(&header, opts));
    finish(rgb, sw, sh, tw, th, opts, codec, note)
}

fn cmyk_note(header: &JpegHeader, opts: &PrepareOptions) -> String {
    format!(
        "{:?} JPEG converted to RGB and re-encoded (quality {})",
        header.color_space, opts.quality
    )
    .replace("Ycck", "YCCK")
    .replace("Cmyk", "CMYK")
}

fn decode_reason(e: &Error) -> SkipReason {
    match e {
        Error::TooManyPixels { .. } => SkipReason::TooManyPixels(e.to_string()),
        _ => undecodable("JPEG", e),
    }
}

fn undecodable(format: &str, e: &dyn std::fmt::Display) -> SkipReason {
    SkipReason::Undecodable {
        format: format.to_string(),
        detail: e.to_string(),
    }
}

fn failed(step: &'static str) -> impl Fn(&dyn std::fmt::Display) -> SkipReason {
    move |e| SkipReason::Failed {
        step,
        detail: e.to_string(),
    }
}

fn prepare_other(
    bytes: &[u8],
    opts: &PrepareOptions,
    codec: &mut Codec,
) -> std::result::Result<Prepared, SkipReason> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| SkipReason::Unreadable(e.to_string()))?;
    let Some(format) = reader.format() else {
        return Err(SkipReason::UnrecognisedFormat);
    };
    let name = format!("{format:?}").to_uppercase();
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| undecodable(&name, &e))?;
    if w as u64 * h as u64 > opts.max_pixels {
        let e = Error::TooManyPixels {
            width: w,
            height: h,
            limit: opts.max_pixels,
        };
        return Err(SkipReason::TooManyPixels(e.to_string()));
    }
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(opts.max_pixels.saturating_mul(16));
    reader.limits(limits);
    let img = reader.decode().map_err(|e| undecodable(&name, &e))?;
    let rgb = img.to_rgb8();
    let (sw, sh) = rgb.dimensions();
    let (tw, th) = fit_within(sw, sh, opts.max_side);
    let note = (opts.mode == StorageMode::Jpeg)
        .then(|| format!("{name} stored as JPEG (quality {})", opts.quality));
    finish(rgb.into_raw(), sw, sh, tw, th, opts, codec, note)
}

#[allow(clippy::too_many_arguments)]
fn finish(
    rgb: Vec<u8>,
    sw: u32,
    sh: u32,
    tw: u32,
    th: u32,
    opts: &PrepareOptions,
    codec: &mut Codec,
    note: Option<String>,
) -> std::result::Result<Prepared, SkipReason> {
    let rgb = if (sw, sh) == (tw, th) {
        rgb
    } else {
        resize_rgb(&mut codec.resizer, rgb, sw, sh, tw, th)?
    };
    let data = match opts.mode {
        StorageMode::Raw => rgb,
        StorageMode::Jpeg => {
            let eo = EncodeOptions {
                quality: opts.quality,
                subsampling: Subsampling::S420,
                progressive: false,
            };
            codec
                .encoder
                .encode(&rgb, tw, th, PixelFormat::Rgb, &eo)
                .map_err(|e| failed("re-encode")(&e))?
        }
    };
    Ok(Prepared {
        data,
        width: tw,
        height: th,
        converted: true,
        note,
    })
}

/// Antialiased Lanczos-3 resize of packed RGB (Pillow's filter for downscaling).
fn resize_rgb(
    resizer: &mut fr::Resizer,
    rgb: Vec<u8>,
    sw: u32,
    sh: u32,
    tw: u32,
    th: u32,
) -> std::result::Result<Vec<u8>, SkipReason> {
    let src = fr::images::Image::from_vec_u8(sw, sh, rgb, fr::PixelType::U8x3)
        .map_err(|e| failed("resize")(&e))?;
    let mut dst = fr::images::Image::new(tw, th, fr::PixelType::U8x3);
    let opts =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3));
    resizer
        .resize(&src, &mut dst, &opts)
        .map_err(|e| failed("resize")(&e))?;
    Ok(dst.into_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_within_keeps_aspect_and_never_upscales() {
        assert_eq!(fit_within(500, 375, Some(512)), (500, 375));
        assert_eq!(fit_within(2400, 1632, Some(512)), (512, 348));
        assert_eq!(fit_within(10000, 10, Some(512)), (512, 1));
        assert_eq!(fit_within(640, 480, None), (640, 480));
    }

    #[test]
    fn unknown_bytes_are_a_reason_not_a_panic() {
        let mut codec = Codec::new().unwrap();
        let opts = PrepareOptions {
            mode: StorageMode::Jpeg,
            reencode: false,
            max_side: None,
            quality: 90,
            max_pixels: 1 << 26,
        };
        let e = prepare(b"", &opts, &mut codec).unwrap_err();
        assert_eq!(e, SkipReason::Empty);
        assert_eq!(e.to_string(), "empty file (0 bytes)");
        assert_eq!(
            prepare(b"\x00\x01garbage", &opts, &mut codec).unwrap_err(),
            SkipReason::UnrecognisedFormat
        );
        let e = prepare(b"\xff\xd8\xff\xe0broken", &opts, &mut codec).unwrap_err();
        assert!(
            matches!(&e, SkipReason::Undecodable { format, .. } if format == "JPEG"),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("not a decodable JPEG: "), "{e}");
    }
}

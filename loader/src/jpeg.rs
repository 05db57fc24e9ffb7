//! A thin safe wrapper over libjpeg-turbo's TurboJPEG 3 API (`turbojpeg-sys`).
//!
//! [`Decoder`] reads headers and decodes into caller-owned buffers, optionally with DCT
//! scaling; [`Encoder`] compresses RGB, grayscale or CMYK pixels. Each owns one TurboJPEG
//! handle and is `Send` but not `Sync`: keep one per thread.

use std::ffi::CStr;
use std::os::raw::c_int;
use std::ptr::NonNull;

use turbojpeg_sys as tj;

use crate::error::{Error, Result};

/// Chroma subsampling of a JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Subsampling {
    /// 4:4:4, no subsampling.
    S444,
    /// 4:2:2.
    S422,
    /// 4:2:0 (FFCV's and most cameras' choice).
    S420,
    /// Grayscale: one component.
    Gray,
    /// 4:4:0.
    S440,
    /// 4:1:1.
    S411,
    /// 4:4:1.
    S441,
    /// A layout TurboJPEG cannot name (it can still decode it to RGB).
    Unknown,
}

impl Subsampling {
    fn from_tj(v: c_int) -> Self {
        match v {
            tj::TJSAMP_TJSAMP_444 => Subsampling::S444,
            tj::TJSAMP_TJSAMP_422 => Subsampling::S422,
            tj::TJSAMP_TJSAMP_420 => Subsampling::S420,
            tj::TJSAMP_TJSAMP_GRAY => Subsampling::Gray,
            tj::TJSAMP_TJSAMP_440 => Subsampling::S440,
            tj::TJSAMP_TJSAMP_411 => Subsampling::S411,
            tj::TJSAMP_TJSAMP_441 => Subsampling::S441,
            _ => Subsampling::Unknown,
        }
    }

    fn to_tj(self) -> c_int {
        match self {
            Subsampling::S444 => tj::TJSAMP_TJSAMP_444,
            Subsampling::S422 => tj::TJSAMP_TJSAMP_422,
            Subsampling::S420 => tj::TJSAMP_TJSAMP_420,
            Subsampling::Gray => tj::TJSAMP_TJSAMP_GRAY,
            Subsampling::S440 => tj::TJSAMP_TJSAMP_440,
            Subsampling::S411 => tj::TJSAMP_TJSAMP_411,
            Subsampling::S441 => tj::TJSAMP_TJSAMP_441,
            Subsampling::Unknown => tj::TJSAMP_TJSAMP_420,
        }
    }
}

/// Colour space of a JPEG's components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorSpace {
    /// RGB stored without colour transform.
    Rgb,
    /// The usual YCbCr.
    YCbCr,
    /// Grayscale.
    Gray,
    /// CMYK (TurboJPEG cannot convert it to RGB; [`Decoder::decode_rgb`] does).
    Cmyk,
    /// YCCK, the transformed form of CMYK.
    Ycck,
}

/// What a JPEG header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegHeader {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Chroma subsampling.
    pub subsampling: Subsampling,
    /// Colour space.
    pub color_space: ColorSpace,
    /// Bits per sample (8 for nearly every JPEG; 12 and 16 exist).
    pub precision: u8,
    /// Progressive (multi-scan) coding.
    pub progressive: bool,
    /// Lossless (SOF3) coding.
    pub lossless: bool,
}

impl JpegHeader {
    /// Whether the image uses four components (CMYK or YCCK).
    pub fn is_cmyk(&self) -> bool {
        matches!(self.color_space, ColorSpace::Cmyk | ColorSpace::Ycck)
    }
}

/// A DCT scaling factor. libjpeg-turbo has SIMD IDCTs for 1/1, 1/2, 1/4 and 1/8 only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Full size.
    Full,
    /// 1/2.
    Half,
    /// 1/4.
    Quarter,
    /// 1/8.
    Eighth,
}

impl Scale {
    /// The denominator (1, 2, 4 or 8).
    pub fn denom(self) -> u32 {
        match self {
            Scale::Full => 1,
            Scale::Half => 2,
            Scale::Quarter => 4,
            Scale::Eighth => 8,
        }
    }

    /// A side length after scaling (TurboJPEG's `TJSCALED`: rounded up).
    pub fn apply(self, side: u32) -> u32 {
        side.div_ceil(self.denom())
    }

    /// The strongest scale whose result keeps both sides at least `min_w` x `min_h`.
    pub fn strongest_keeping(width: u32, height: u32, min_w: u32, min_h: u32) -> Scale {
        [Scale::Eighth, Scale::Quarter, Scale::Half]
            .into_iter()
            .find(|s| s.apply(width) >= min_w && s.apply(height) >= min_h)
            .unwrap_or(Scale::Full)
    }
}

/// Pixel layouts the encoder takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// 3 bytes per pixel.
    Rgb,
    /// 1 byte per pixel.
    Gray,
    /// 4 bytes per pixel, stored as given (encoded as a YCCK/CMYK JPEG).
    Cmyk,
}

impl PixelFormat {
    /// Bytes per pixel.
    pub fn bytes(self) -> usize {
        match self {
            PixelFormat::Rgb => 3,
            PixelFormat::Gray => 1,
            PixelFormat::Cmyk => 4,
        }
    }
}

/// Encoder settings.
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions {
    /// Quality 1..=100 (default 90, as FFCV).
    pub quality: u8,
    /// Chroma subsampling for colour input (default 4:2:0, as FFCV); ignored for gray.
    pub subsampling: Subsampling,
    /// Write a progressive JPEG.
    pub progressive: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            quality: 90,
            subsampling: Subsampling::S420,
            progressive: false,
        }
    }
}

struct Handle(NonNull<std::ffi::c_void>);

// SAFETY: a TurboJPEG handle has no thread affinity; it only must not be used from two
// threads at once, which `&mut self` on every method guarantees.
unsafe impl Send for Handle {}

impl Handle {
    fn new(kind: tj::TJINIT) -> Result<Handle> {
        // SAFETY: tj3Init has no preconditions; it returns null on failure.
        let raw = unsafe { tj::tj3Init(kind as c_int) };
        NonNull::new(raw)
            .map(Handle)
            .ok_or_else(|| Error::Jpeg("cannot create a TurboJPEG handle".into()))
    }

    fn ptr(&self) -> tj::tjhandle {
        self.0.as_ptr()
    }

    fn set(&mut self, param: tj::TJPARAM, value: c_int) -> Result<()> {
        // SAFETY: the handle is valid for our lifetime.
        if unsafe { tj::tj3Set(self.ptr(), param as c_int, value) } != 0 {
            return Err(self.error());
        }
        Ok(())
    }

    fn get(&self, param: tj::TJPARAM) -> c_int {
        // SAFETY: the handle is valid for our lifetime.
        unsafe { tj::tj3Get(self.ptr(), param as c_int) }
    }

    fn error(&self) -> Error {
        // SAFETY: tj3GetErrorStr returns a NUL-terminated string owned by the handle.
        let msg = unsafe { CStr::from_ptr(tj::tj3GetErrorStr(self.ptr())) };
        Error::Jpeg(msg.to_string_lossy().into_owned())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.ptr()) }
    }
}

/// Decodes JPEGs into caller-owned buffers.
///
/// ```
/// use uic_loader::jpeg::{Decoder, Encoder, EncodeOptions, PixelFormat, Scale};
/// let rgb = vec![128u8; 16 * 8 * 3];
/// let jpeg = Encoder::new().unwrap().encode(&rgb, 16, 8, PixelFormat::Rgb, &EncodeOptions::default()).unwrap();
/// let mut dec = Decoder::new().unwrap();
/// let h = dec.read_header(&jpeg).unwrap();
/// let mut out = vec![0u8; Decoder::rgb_len(&h, Scale::Half)];
/// let (w, hgt) = dec.decode_rgb(&jpeg, Scale::Half, &mut out).unwrap();
/// assert_eq!((w, hgt), (8, 4));
/// assert!(out.iter().all(|&v| v.abs_diff(128) <= 2));
/// ```
pub struct Decoder {
    handle: Handle,
    max_pixels: u64,
    stop_on_warning: bool,
    fast_dct: bool,
    cmyk: Vec<u8>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("max_pixels", &self.max_pixels)
            .finish_non_exhaustive()
    }
}

/// Default limit on decoded pixels: Pillow's `MAX_IMAGE_PIXELS` (89.5 MP).
pub const DEFAULT_MAX_PIXELS: u64 = 89_478_485;

impl Decoder {
    /// A decoder that treats libjpeg warnings (corrupt data, a truncated file) as errors and
    /// refuses images over [`DEFAULT_MAX_PIXELS`].
    ///
    /// # Errors
    /// When TurboJPEG cannot allocate a handle.
    pub fn new() -> Result<Self> {
        Ok(Decoder {
            handle: Self::fresh_handle(true, false)?,
            max_pixels: DEFAULT_MAX_PIXELS,
            stop_on_warning: true,
            fast_dct: false,
            cmyk: Vec::new(),
        })
    }

    fn fresh_handle(stop_on_warning: bool, fast_dct: bool) -> Result<Handle> {
        let mut handle = Handle::new(tj::TJINIT_TJINIT_DECOMPRESS)?;
        handle.set(tj::TJPARAM_TJPARAM_STOPONWARNING, stop_on_warning as c_int)?;
        handle.set(tj::TJPARAM_TJPARAM_FASTDCT, fast_dct as c_int)?;
        Ok(handle)
    }

    /// Uses libjpeg's fast integer IDCT (`JDCT_IFAST`, as FFCV does) instead of the accurate
    /// one: faster, and within a few levels of the accurate result.
    ///
    /// # Errors
    /// Never in practice; TurboJPEG reports a failure to set the parameter.
    pub fn set_fast_dct(&mut self, fast: bool) -> Result<()> {
        self.fast_dct = fast;
        self.handle.set(tj::TJPARAM_TJPARAM_FASTDCT, fast as c_int)
    }

    /// Takes the error of the last call and replaces the handle: after some errors
    /// (a bad marker in the header, say) libjpeg keeps failing on the same handle with the
    /// same message, so a handle is never reused after an error.
    fn fail(&mut self) -> Error {
        let err = self.handle.error();
        if let Ok(h) = Self::fresh_handle(self.stop_on_warning, self.fast_dct) {
            self.handle = h;
        }
        err
    }

    /// Sets the pixel-count limit checked against the header before any decode.
    pub fn set_max_pixels(&mut self, max_pixels: u64) {
        self.max_pixels = max_pixels;
    }

    /// Treats libjpeg warnings as errors (`true`, the default) or lets the decode go on.
    ///
    /// # Errors
    /// Never in practice; TurboJPEG reports a failure to set the parameter.
    pub fn set_stop_on_warning(&mut self, stop: bool) -> Result<()> {
        self.stop_on_warning = stop;
        self.handle
            .set(tj::TJPARAM_TJPARAM_STOPONWARNING, stop as c_int)
    }

    /// Reads the header.
    ///
    /// # Errors
    /// [`Error::Jpeg`] when the bytes are not a JPEG TurboJPEG understands.
    pub fn read_header(&mut self, data: &[u8]) -> Result<JpegHeader> {
        // SAFETY: data is a valid slice for the duration of the call.
        let rc = unsafe {
            tj::tj3DecompressHeader(self.handle.ptr(), data.as_ptr(), data.len() as tj::size_t)
        };
        if rc != 0 {
            return Err(self.fail());
        }
        let h = &self.handle;
        let color_space = match h.get(tj::TJPARAM_TJPARAM_COLORSPACE) as tj::TJCS {
            tj::TJCS_TJCS_RGB => ColorSpace::Rgb,
            tj::TJCS_TJCS_GRAY => ColorSpace::Gray,
            tj::TJCS_TJCS_CMYK => ColorSpace::Cmyk,
            tj::TJCS_TJCS_YCCK => ColorSpace::Ycck,
            _ => ColorSpace::YCbCr,
        };
        let (width, height) = (
            h.get(tj::TJPARAM_TJPARAM_JPEGWIDTH),
            h.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT),
        );
        if width <= 0 || height <= 0 {
            return Err(Error::Jpeg(format!("invalid dimensions {width}x{height}")));
        }
        Ok(JpegHeader {
            width: width as u32,
            height: height as u32,
            subsampling: Subsampling::from_tj(h.get(tj::TJPARAM_TJPARAM_SUBSAMP)),
            color_space,
            precision: h.get(tj::TJPARAM_TJPARAM_PRECISION) as u8,
            progressive: h.get(tj::TJPARAM_TJPARAM_PROGRESSIVE) != 0,
            lossless: h.get(tj::TJPARAM_TJPARAM_LOSSLESS) != 0,
        })
    }

    /// Bytes needed to decode `header` at `scale` as RGB.
    pub fn rgb_len(header: &JpegHeader, scale: Scale) -> usize {
        scale.apply(header.width) as usize * scale.apply(header.height) as usize * 3
    }

    /// Decodes the whole image at `scale` into `out` as packed RGB and returns its size.
    /// Grayscale becomes RGB; CMYK and YCCK are converted (Adobe's inverted convention:
    /// `R = C * K / 255`, as OpenCV and most viewers do).
    ///
    /// # Errors
    /// [`Error::TooManyPixels`] over the limit, [`Error::InvalidArgument`] when `out` is
    /// too small, [`Error::Jpeg`] for corrupt or unsupported data (12-bit, lossless).
    pub fn decode_rgb(&mut self, data: &[u8], scale: Scale, out: &mut [u8]) -> Result<(u32, u32)> {
        let header = self.read_header(data)?;
        self.check_decodable(&header)?;
        let (w, h) = (scale.apply(header.width), scale.apply(header.height));
        let need = w as usize * h as usize * 3;
        if out.len() < need {
            return Err(Error::InvalidArgument(format!(
                "output buffer of {} bytes, need {need}",
                out.len()
            )));
        }
        self.set_scale(scale)?;
        self.decompress_rgb(data, header.is_cmyk(), (w, h), &mut out[..need])?;
        Ok((w, h))
    }

    /// The multiple that a region's left edge must be of, in scaled pixels: the scaled
    /// width of one iMCU (e.g. 16/8 = 2 for 4:2:0 at 1/8). 0 when the layout cannot be
    /// region-decoded (unknown subsampling); decode the whole image then.
    pub fn region_x_align(header: &JpegHeader, scale: Scale) -> u32 {
        let mcu = match header.subsampling {
            Subsampling::S444 | Subsampling::Gray | Subsampling::S440 => 8,
            Subsampling::S422 | Subsampling::S420 => 16,
            Subsampling::S411 | Subsampling::S441 => 32,
            Subsampling::Unknown => return 0,
        };
        (mcu / scale.denom()).max(1)
    }

    /// Decodes only the region `x, y, w, h` (in scaled pixels) of the image at `scale` into
    /// `out` as packed RGB, `w * h * 3` bytes. Rows below the region are never
    /// entropy-decoded, and rows above it are skipped without the IDCT. `x` must be a
    /// multiple of [`Decoder::region_x_align`]; `header` must be this image's.
    ///
    /// # Errors
    /// As [`Decoder::decode_rgb`], plus [`Error::InvalidArgument`] for a misaligned or
    /// out-of-bounds region.
    #[allow(clippy::too_many_arguments)]
    pub fn decode_region_rgb(
        &mut self,
        data: &[u8],
        header: &JpegHeader,
        scale: Scale,
        (x, y, w, h): (u32, u32, u32, u32),
        out: &mut [u8],
    ) -> Result<()> {
        self.check_decodable(header)?;
        let (sw, sh) = (scale.apply(header.width), scale.apply(header.height));
        let align = Self::region_x_align(header, scale);
        if align == 0 || x % align != 0 || w == 0 || h == 0 || x + w > sw || y + h > sh {
            return Err(Error::InvalidArgument(format!(
                "region {x},{y} {w}x{h} of a {sw}x{sh} image (x must be a multiple of {align})"
            )));
        }
        let need = w as usize * h as usize * 3;
        if out.len() < need {
            return Err(Error::InvalidArgument(format!(
                "output buffer of {} bytes, need {need}",
                out.len()
            )));
        }
        // SAFETY: the handle is valid; the header must be read before a region is set.
        if unsafe {
            tj::tj3DecompressHeader(self.handle.ptr(), data.as_ptr(), data.len() as tj::size_t)
        } != 0
        {
            return Err(self.fail());
        }
        self.set_scale(scale)?;
        let region = tj::tjregion {
            x: x as c_int,
            y: y as c_int,
            w: w as c_int,
            h: h as c_int,
        };
        // SAFETY: the region was checked against the scaled size and the iMCU alignment.
        if unsafe { tj::tj3SetCroppingRegion(self.handle.ptr(), region) } != 0 {
            return Err(self.fail());
        }
        let result = self.decompress_rgb(data, header.is_cmyk(), (w, h), &mut out[..need]);
        self.clear_region();
        result
    }

    fn clear_region(&mut self) {
        let whole = tj::tjregion {
            x: 0,
            y: 0,
            w: 0,
            h: 0,
        };
        // SAFETY: the handle is valid; an all-zero region means "uncropped" (TJUNCROPPED).
        unsafe { tj::tj3SetCroppingRegion(self.handle.ptr(), whole) };
    }

    /// Refuses what this decoder would not decode: too many pixels, 12/16-bit, lossless.
    pub(crate) fn check_decodable(&self, header: &JpegHeader) -> Result<()> {
        if header.width as u64 * header.height as u64 > self.max_pixels {
            return Err(Error::TooManyPixels {
                width: header.width,
                height: header.height,
                limit: self.max_pixels,
            });
        }
        if header.precision != 8 || header.lossless {
            return Err(Error::Jpeg(format!(
                "{}-bit{} JPEG is not supported",
                header.precision,
                if header.lossless { " lossless" } else { "" }
            )));
        }
        Ok(())
    }

    fn set_scale(&mut self, scale: Scale) -> Result<()> {
        let factor = tj::tjscalingfactor {
            num: 1,
            denom: scale.denom() as c_int,
        };
        // SAFETY: the handle is valid; the factor is one TurboJPEG supports.
        if unsafe { tj::tj3SetScalingFactor(self.handle.ptr(), factor) } != 0 {
            return Err(self.fail());
        }
        Ok(())
    }

    /// Decompresses `w x h` packed RGB into `out`; a CMYK source goes through the scratch
    /// buffer and [`cmyk_to_rgb`], since libjpeg cannot convert CMYK itself.
    fn decompress_rgb(
        &mut self,
        data: &[u8],
        cmyk_source: bool,
        (w, h): (u32, u32),
        out: &mut [u8],
    ) -> Result<()> {
        if !cmyk_source {
            return self.decompress(data, out, w as usize * 3, tj::TJPF_TJPF_RGB);
        }
        let mut cmyk = std::mem::take(&mut self.cmyk);
        cmyk.resize(w as usize * h as usize * 4, 0);
        let rc = self.decompress(data, &mut cmyk, w as usize * 4, tj::TJPF_TJPF_CMYK);
        if rc.is_ok() {
            cmyk_to_rgb(&cmyk, out);
        }
        self.cmyk = cmyk;
        rc
    }

    fn decompress(
        &mut self,
        data: &[u8],
        out: &mut [u8],
        pitch: usize,
        pf: tj::TJPF,
    ) -> Result<()> {
        // SAFETY: the caller sized `out` for the scaled image at `pitch` bytes per row; the
        // header was read from the same `data` just before, so the sizes agree.
        let rc = unsafe {
            tj::tj3Decompress8(
                self.handle.ptr(),
                data.as_ptr(),
                data.len() as tj::size_t,
                out.as_mut_ptr(),
                pitch as c_int,
                pf,
            )
        };
        if rc != 0 {
            return Err(self.fail());
        }
        Ok(())
    }
}

/// Converts Adobe-convention (inverted) CMYK to RGB: `R = C * K / 255`, and so on.
pub fn cmyk_to_rgb(cmyk: &[u8], rgb: &mut [u8]) {
    for (src, dst) in cmyk.chunks_exact(4).zip(rgb.chunks_exact_mut(3)) {
        let k = src[3] as u32;
        for c in 0..3 {
            dst[c] = ((src[c] as u32 * k + 127) / 255) as u8;
        }
    }
}

/// Compresses pixels into JPEG files.
pub struct Encoder {
    handle: Handle,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").finish_non_exhaustive()
    }
}

impl Encoder {
    /// A new encoder.
    ///
    /// # Errors
    /// When TurboJPEG cannot allocate a handle.
    pub fn new() -> Result<Self> {
        Ok(Encoder {
            handle: Handle::new(tj::TJINIT_TJINIT_COMPRESS)?,
        })
    }

    /// Encodes `width x height` pixels of `format`, rows packed.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a wrong buffer size or quality, [`Error::Jpeg`] when
    /// TurboJPEG fails.
    pub fn encode(
        &mut self,
        pixels: &[u8],
        width: u32,
        height: u32,
        format: PixelFormat,
        opts: &EncodeOptions,
    ) -> Result<Vec<u8>> {
        let need = width as usize * height as usize * format.bytes();
        if pixels.len() != need || width == 0 || height == 0 {
            return Err(Error::InvalidArgument(format!(
                "{} bytes for a {width}x{height} image of {} bytes per pixel",
                pixels.len(),
                format.bytes()
            )));
        }
        if !(1..=100).contains(&opts.quality) {
            return Err(Error::InvalidArgument(format!(
                "JPEG quality {} is not in 1..=100",
                opts.quality
            )));
        }
        let (pf, subsamp) = match format {
            PixelFormat::Rgb => (tj::TJPF_TJPF_RGB, opts.subsampling.to_tj()),
            PixelFormat::Gray => (tj::TJPF_TJPF_GRAY, tj::TJSAMP_TJSAMP_GRAY),
            PixelFormat::Cmyk => (tj::TJPF_TJPF_CMYK, opts.subsampling.to_tj()),
        };
        let h = &mut self.handle;
        h.set(tj::TJPARAM_TJPARAM_QUALITY, opts.quality as c_int)?;
        h.set(tj::TJPARAM_TJPARAM_SUBSAMP, subsamp)?;
        h.set(tj::TJPARAM_TJPARAM_PROGRESSIVE, opts.progressive as c_int)?;
        let colorspace = match format {
            PixelFormat::Cmyk => tj::TJCS_TJCS_YCCK,
            PixelFormat::Gray => tj::TJCS_TJCS_GRAY,
            PixelFormat::Rgb => tj::TJCS_TJCS_YCbCr,
        };
        h.set(tj::TJPARAM_TJPARAM_COLORSPACE, colorspace as c_int)?;
        let mut buf: *mut u8 = std::ptr::null_mut();
        let mut size: tj::size_t = 0;
        // SAFETY: pixels holds width*height*bpp bytes (checked above); TurboJPEG allocates
        // `buf`, which we copy and free exactly once.
        let rc = unsafe {
            tj::tj3Compress8(
                h.ptr(),
                pixels.as_ptr(),
                width as c_int,
                0,
                height as c_int,
                pf,
                &mut buf,
                &mut size,
            )
        };
        let result = if rc != 0 {
            Err(h.error())
        } else {
            // SAFETY: on success buf points to `size` initialised bytes.
            Ok(unsafe { std::slice::from_raw_parts(buf, size as usize) }.to_vec())
        };
        if !buf.is_null() {
            // SAFETY: buf was allocated by TurboJPEG.
            unsafe { tj::tj3Free(buf.cast()) };
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                v.extend_from_slice(&[(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, 100]);
            }
        }
        v
    }

    #[test]
    fn round_trip_is_close() {
        let (w, h) = (64, 48);
        let rgb = gradient(w, h);
        let opts = EncodeOptions {
            quality: 95,
            subsampling: Subsampling::S444,
            progressive: false,
        };
        let jpeg = Encoder::new()
            .unwrap()
            .encode(&rgb, w, h, PixelFormat::Rgb, &opts)
            .unwrap();
        let mut dec = Decoder::new().unwrap();
        let hdr = dec.read_header(&jpeg).unwrap();
        assert_eq!(
            (hdr.width, hdr.height, hdr.subsampling),
            (w, h, Subsampling::S444)
        );
        let mut out = vec![0; Decoder::rgb_len(&hdr, Scale::Full)];
        dec.decode_rgb(&jpeg, Scale::Full, &mut out).unwrap();
        let max_err = rgb
            .iter()
            .zip(&out)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(max_err <= 8, "max error {max_err}");
    }

    #[test]
    fn scaled_sizes_round_up() {
        assert_eq!(Scale::Eighth.apply(500), 63);
        assert_eq!(Scale::Half.apply(375), 188);
        assert_eq!(Scale::strongest_keeping(500, 375, 224, 224), Scale::Full);
        assert_eq!(
            Scale::strongest_keeping(2000, 1000, 224, 224),
            Scale::Quarter
        );
        assert_eq!(Scale::strongest_keeping(2000, 1000, 10, 10), Scale::Eighth);
    }

    #[test]
    fn cmyk_is_converted_with_inverted_convention() {
        let cmyk = [255u8, 0, 128, 255];
        let jpeg = Encoder::new()
            .unwrap()
            .encode(
                &cmyk.repeat(64),
                8,
                8,
                PixelFormat::Cmyk,
                &EncodeOptions {
                    quality: 100,
                    subsampling: Subsampling::S444,
                    progressive: false,
                },
            )
            .unwrap();
        let mut dec = Decoder::new().unwrap();
        assert!(dec.read_header(&jpeg).unwrap().is_cmyk());
        let mut out = vec![0; 8 * 8 * 3];
        dec.decode_rgb(&jpeg, Scale::Full, &mut out).unwrap();
        for px in out.chunks(3) {
            assert!(
                px[0] >= 250 && px[1] <= 5 && px[2].abs_diff(128) <= 4,
                "{px:?}"
            );
        }
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        let mut dec = Decoder::new().unwrap();
        assert!(dec.read_header(b"not a jpeg at all").is_err());
        let rgb = gradient(64, 64);
        let jpeg = Encoder::new()
            .unwrap()
            .encode(&rgb, 64, 64, PixelFormat::Rgb, &EncodeOptions::default())
            .unwrap();
        let cut = &jpeg[..jpeg.len() / 2];
        let mut out = vec![0; 64 * 64 * 3];
        assert!(dec.decode_rgb(cut, Scale::Full, &mut out).is_err());
        // The decoder still works after errors (libjpeg can stay stuck on a reused handle).
        assert!(dec.read_header(b"\xff\xd8\xffnot really").is_err());
        assert_eq!(
            dec.decode_rgb(&jpeg, Scale::Full, &mut out).unwrap(),
            (64, 64)
        );
    }

    #[test]
    fn pixel_limit_is_checked_before_decoding() {
        let rgb = gradient(40, 30);
        let jpeg = Encoder::new()
            .unwrap()
            .encode(&rgb, 40, 30, PixelFormat::Rgb, &EncodeOptions::default())
            .unwrap();
        let mut dec = Decoder::new().unwrap();
        dec.set_max_pixels(1000);
        let mut out = vec![0; 40 * 30 * 3];
        assert!(matches!(
            dec.decode_rgb(&jpeg, Scale::Full, &mut out),
            Err(Error::TooManyPixels { .. })
        ));
    }
}

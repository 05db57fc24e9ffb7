//! GPU decode with nvJPEG (cargo feature `nvjpeg`): batches of RandomResizedCrop (or centre
//! crop) + flip samples decoded on the device, cropped and resized there, with the same crop
//! and flip as the CPU pipeline draws from the same seed.
//!
//! How a batch is made ([`NvJpegLoader::batch`]):
//! 1. Each sample's crop and flip are drawn from the `Stream::Augment` stream of `(seed,
//!    epoch, position)`, exactly as the CPU pipeline draws them.
//! 2. Baseline 3-channel JPEGs go to the GPU. With the hardware backend (A100, H100 and
//!    later have JPEG engines), those that `nvjpegDecodeBatchedSupported` accepts are decoded
//!    in one `nvjpegDecodeBatched` call; the rest, and every image when the batched call
//!    fails, are decoded one by one with `nvjpegDecode` (GPU-assisted, handles progressive).
//! 3. Grayscale, CMYK and other images nvJPEG would reject, raw records, and any image whose
//!    GPU decode fails, take the CPU path (TurboJPEG region decode) and are uploaded: the
//!    batch never fails because of one image. A corrupt record becomes grey, as on the CPU.
//! 4. Each decoded image (planar RGB in device memory that libtorch allocated) is cropped to
//!    the drawn rectangle, rounded to whole pixels, and resized with antialiased bilinear
//!    interpolation (`upsample_bilinear2d_aa`, as torchvision's `antialias=True`).
//!
//! The output is the loader's batch contract: `N x 3 x H x W` `u8` pixels, already on the
//! device, with indices and labels. The steps after the flip (the strong preset's jitter,
//! grayscale and blur) are drawn here, as the CPU pipeline draws them, but not applied: each
//! batch carries its rows' draws ([`GpuBatch::drawn`]) for the trainer's device ops.
//!
//! Everything runs on libtorch's current CUDA stream (the default stream), so the decode,
//! the resize and the caller's training step are ordered without explicit synchronisation.

use std::ptr::null_mut;
use std::sync::Arc;

use nvjpeg_sys as nv;
use tch::{Device, Kind, Tensor};
use uic_augment::Drawn;

use crate::crop::{center_crop, random_resized_crop, CropDecoder, Rect};
use crate::error::{Error, Result};
use crate::pipeline::{CropMode, LoaderConfig};
use crate::planes::hwc_to_chw;
use crate::reader::RecordFile;
use crate::StorageMode;

/// A batch whose pixels are on the GPU.
#[derive(Debug)]
pub struct GpuBatch {
    /// `N x 3 x H x W` `u8`, RGB, on the loader's device.
    pub pixels: Tensor,
    /// Sample indices in the record file.
    pub indices: Vec<u32>,
    /// Stored labels, if the file has them.
    pub labels: Option<Vec<u32>>,
    /// Samples decoded on the CPU and uploaded (nvJPEG could not take them).
    pub cpu_fallback: usize,
    /// Samples replaced by grey because no decoder could read them.
    pub substituted: usize,
    /// Each row's augmentation draws: the flip is done, the steps after it (jitter,
    /// grayscale, blur) are left to the caller.
    pub drawn: Vec<Drawn>,
}

/// The nvJPEG decoder and its CPU fallback. One per thread (nvJPEG states are not shared).
#[derive(Debug)]
pub struct NvJpegLoader {
    file: Arc<RecordFile>,
    cfg: LoaderConfig,
    device: Device,
    /// The batched decoder's handle (hardware backend when in use).
    handle: nv::nvjpegHandle_t,
    /// State of the batched decoder.
    state: nv::nvjpegJpegState_t,
    /// The one-image decoder's handle: the default backend, because the hardware backend
    /// only decodes in batches. Equal to `handle` when that is the default backend.
    single_handle: nv::nvjpegHandle_t,
    /// State of the one-image decoder (kept apart from the batched one's).
    single: nv::nvjpegJpegState_t,
    stream: nv::nvjpegJpegStream_t,
    hardware: bool,
    cpu: CropDecoder,
    labels: Option<Vec<u32>>,
    hwc: Vec<u8>,
    chw: Vec<u8>,
}

fn check(status: nv::nvjpegStatus_t, what: &str) -> Result<()> {
    if status == nv::nvjpegStatus_t_NVJPEG_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(Error::Jpeg(format!(
            "nvJPEG {what} failed with status {status}"
        )))
    }
}

/// Which nvJPEG backend decodes the batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The JPEG engine when the GPU has one (A100, H100 and later), else `Default`.
    Auto,
    /// The JPEG engine; an error on GPUs without one.
    Hardware,
    /// nvJPEG's default backend: Huffman decoding on the CPU, the rest on the GPU.
    Default,
}

fn create_handle(backend: nv::nvjpegBackend_t) -> Result<nv::nvjpegHandle_t> {
    let mut handle: nv::nvjpegHandle_t = null_mut();
    // SAFETY: `handle` is a valid out-pointer; null allocators select nvJPEG's own.
    let st = unsafe {
        nv::nvjpegCreateEx(
            backend,
            null_mut(),
            null_mut(),
            nv::NVJPEG_FLAGS_DEFAULT,
            &mut handle,
        )
    };
    check(st, "handle creation").map(|()| handle)
}

impl NvJpegLoader {
    /// A loader over `file` for `device` (a CUDA device), with [`Backend::Auto`].
    ///
    /// # Errors
    /// A CPU device, more than one view, or nvJPEG failing to start (no driver).
    pub fn new(file: Arc<RecordFile>, cfg: LoaderConfig, device: Device) -> Result<Self> {
        Self::with_backend(file, cfg, device, Backend::Auto)
    }

    /// A loader with the given backend.
    ///
    /// # Errors
    /// As [`NvJpegLoader::new`], and `Hardware` on a GPU without a JPEG engine.
    pub fn with_backend(
        file: Arc<RecordFile>,
        cfg: LoaderConfig,
        device: Device,
        backend: Backend,
    ) -> Result<Self> {
        if !matches!(device, Device::Cuda(_)) {
            return Err(Error::InvalidArgument("nvJPEG needs a CUDA device".into()));
        }
        if cfg.views != 1 {
            return Err(Error::InvalidArgument(
                "the nvJPEG path makes one view per sample".into(),
            ));
        }
        let default = nv::nvjpegBackend_t_NVJPEG_BACKEND_DEFAULT;
        let hw = nv::nvjpegBackend_t_NVJPEG_BACKEND_HARDWARE;
        let (handle, hardware) = match backend {
            Backend::Default => (create_handle(default)?, false),
            Backend::Hardware => (create_handle(hw)?, true),
            Backend::Auto => match create_handle(hw) {
                Ok(h) => (h, true),
                Err(_) => (create_handle(default)?, false),
            },
        };
        let single_handle = if hardware {
            match create_handle(default) {
                Ok(h) => h,
                Err(e) => {
                    // SAFETY: created above, destroyed once.
                    unsafe { nv::nvjpegDestroy(handle) };
                    return Err(e);
                }
            }
        } else {
            handle
        };
        let mut state: nv::nvjpegJpegState_t = null_mut();
        let mut single: nv::nvjpegJpegState_t = null_mut();
        let mut stream: nv::nvjpegJpegStream_t = null_mut();
        // SAFETY: `handle` is live; the out-pointers are valid.
        let created = unsafe {
            check(
                nv::nvjpegJpegStateCreate(handle, &mut state),
                "state creation",
            )
            .and_then(|()| {
                check(
                    nv::nvjpegJpegStateCreate(single_handle, &mut single),
                    "state creation",
                )
            })
            .and_then(|()| {
                check(
                    nv::nvjpegJpegStreamCreate(handle, &mut stream),
                    "stream creation",
                )
            })
        };
        let (w, h) = (cfg.size.1 as usize, cfg.size.0 as usize);
        let me = NvJpegLoader {
            labels: file.labels(),
            file,
            cfg,
            device,
            handle,
            state,
            single_handle,
            single,
            stream,
            hardware,
            cpu: CropDecoder::new()?,
            hwc: vec![0; w * h * 3],
            chw: vec![0; w * h * 3],
        };
        created.map(|()| me)
    }

    /// `"hardware"` or `"default"`: the nvJPEG backend in use.
    pub fn backend(&self) -> &'static str {
        if self.hardware {
            "hardware"
        } else {
            "default"
        }
    }

    /// The crop and the augmentation draws (the flip first) of the sample at epoch position
    /// `pos`, as the CPU pipeline draws them.
    pub fn draw(&self, epoch: u64, pos: usize, width: u32, height: u32) -> (Rect, Drawn) {
        let cfg = &self.cfg;
        let mut rng = crate::seeds::Stream::Augment {
            epoch,
            draw: (pos * cfg.views) as u64,
        }
        .rng(cfg.seed);
        let crop = match cfg.crop {
            CropMode::RandomResized(rrc) => random_resized_crop(width, height, &rrc, &mut rng),
            CropMode::Center { resize } => {
                center_crop(width, height, resize, cfg.size.1.min(cfg.size.0))
            }
            CropMode::Full => Rect::full(width, height),
        };
        (crop, cfg.augment.draw(&mut rng))
    }

    /// Whether nvJPEG can take `data`: a 3-channel JPEG with known subsampling.
    fn gpu_candidate(&self, data: &[u8]) -> Option<(i64, i64)> {
        let mut comps: std::os::raw::c_int = 0;
        let mut css: nv::nvjpegChromaSubsampling_t = 0;
        let mut ws = [0 as std::os::raw::c_int; nv::NVJPEG_MAX_COMPONENT as usize];
        let mut hs = [0 as std::os::raw::c_int; nv::NVJPEG_MAX_COMPONENT as usize];
        // SAFETY: `data` is a live slice; the out-arrays hold NVJPEG_MAX_COMPONENT entries.
        let st = unsafe {
            nv::nvjpegGetImageInfo(
                self.handle,
                data.as_ptr(),
                data.len(),
                &mut comps,
                &mut css,
                ws.as_mut_ptr(),
                hs.as_mut_ptr(),
            )
        };
        let ok = st == nv::nvjpegStatus_t_NVJPEG_STATUS_SUCCESS
            && comps == 3
            && css != nv::nvjpegChromaSubsampling_t_NVJPEG_CSS_UNKNOWN
            && ws[0] > 0
            && hs[0] > 0;
        ok.then(|| (i64::from(ws[0]), i64::from(hs[0])))
    }

    /// Whether the hardware engine takes `data` in a batched call.
    fn batch_supported(&self, data: &[u8]) -> bool {
        if !self.hardware {
            return false;
        }
        let mut unsupported: std::os::raw::c_int = 1;
        // SAFETY: handle and stream are live; `data` is a live slice.
        unsafe {
            nv::nvjpegJpegStreamParseHeader(self.handle, data.as_ptr(), data.len(), self.stream)
                == nv::nvjpegStatus_t_NVJPEG_STATUS_SUCCESS
                && nv::nvjpegDecodeBatchedSupported(self.handle, self.stream, &mut unsupported)
                    == nv::nvjpegStatus_t_NVJPEG_STATUS_SUCCESS
                && unsupported == 0
        }
    }

    /// Batch `b` of an epoch over `indices` (positions `b * batch_size ..`).
    ///
    /// # Errors
    /// An index past the end of the file, or a libtorch failure.
    pub fn batch(&mut self, epoch: u64, indices: &[usize], b: usize) -> Result<GpuBatch> {
        let bs = self.cfg.batch_size;
        let start = b * bs;
        let end = (start + bs).min(indices.len());
        if start >= end {
            return Err(Error::InvalidArgument(format!(
                "batch {b} is past the epoch"
            )));
        }
        if let Some(&bad) = indices[start..end].iter().find(|&&i| i >= self.file.len()) {
            return Err(Error::InvalidArgument(format!(
                "sample index {bad} past the end"
            )));
        }
        // A file opened from a URL: the batch's records into the cache, as one error if
        // they cannot be had (`sample` below would panic on a record not cached).
        self.file.fetch(&indices[start..end])?;
        let n = end - start;
        let (oh, ow) = (i64::from(self.cfg.size.0), i64::from(self.cfg.size.1));
        // Resized crops land in a float batch; rounding to u8 and the flips are done once
        // for the whole batch (a few kernels per batch instead of several per image: the
        // per-image kernel launches are what bounds this loader).
        let mut outf = Tensor::empty([n as i64, 3, oh, ow], (Kind::Float, self.device));
        let file = self.file.clone();

        // Plan: which samples go to the GPU, batched or one by one.
        let mut gpu: Vec<(usize, Tensor, Rect, bool)> = Vec::new(); // (j, planes, crop, flip)
        let mut batched: Vec<usize> = Vec::new(); // positions in `gpu`
        let mut cpu: Vec<usize> = Vec::new();
        let mut drawn = Vec::with_capacity(n);
        for j in 0..n {
            let s = file.sample(indices[start + j]);
            let (crop, d) = self.draw(epoch, start + j, s.width, s.height);
            let flip = d.mirror;
            drawn.push(d);
            let dims = (s.mode == StorageMode::Jpeg)
                .then(|| self.gpu_candidate(s.data))
                .flatten();
            match dims {
                Some((w, h)) => {
                    let planes = Tensor::empty([3, h, w], (Kind::Uint8, self.device));
                    if self.batch_supported(s.data) {
                        batched.push(gpu.len());
                    }
                    gpu.push((j, planes, crop, flip));
                }
                None => cpu.push(j),
            }
        }

        let image = |planes: &Tensor| -> nv::nvjpegImage_t {
            let (h, w) = (planes.size()[1] as usize, planes.size()[2] as usize);
            let base = planes.data_ptr() as *mut u8;
            let mut img = nv::nvjpegImage_t::default();
            for c in 0..3 {
                // SAFETY: the planes tensor holds 3 * h * w contiguous bytes.
                img.channel[c] = unsafe { base.add(c * h * w) };
                img.pitch[c] = w;
            }
            img
        };

        // 1. One batched call for the hardware-supported images.
        let mut decoded = vec![false; gpu.len()];
        if !batched.is_empty() {
            let datas: Vec<&[u8]> = batched
                .iter()
                .map(|&g| file.sample(indices[start + gpu[g].0]).data)
                .collect();
            let ptrs: Vec<*const u8> = datas.iter().map(|d| d.as_ptr()).collect();
            let lens: Vec<usize> = datas.iter().map(|d| d.len()).collect();
            let mut imgs: Vec<nv::nvjpegImage_t> =
                batched.iter().map(|&g| image(&gpu[g].1)).collect();
            // SAFETY: handle/state are live; the arrays hold `batched.len()` entries; the
            // input bytes live in the memory map for the loader's lifetime; the outputs are
            // device buffers of the sizes nvjpegGetImageInfo reported.
            let ok = unsafe {
                nv::nvjpegDecodeBatchedInitialize(
                    self.handle,
                    self.state,
                    batched.len() as std::os::raw::c_int,
                    1,
                    nv::nvjpegOutputFormat_t_NVJPEG_OUTPUT_RGB,
                ) == nv::nvjpegStatus_t_NVJPEG_STATUS_SUCCESS
                    && nv::nvjpegDecodeBatched(
                        self.handle,
                        self.state,
                        ptrs.as_ptr(),
                        lens.as_ptr(),
                        imgs.as_mut_ptr(),
                        null_mut(),
                    ) == nv::nvjpegStatus_t_NVJPEG_STATUS_SUCCESS
            };
            if ok {
                for &g in &batched {
                    decoded[g] = true;
                }
            } else {
                tracing::debug!("nvJPEG batched decode failed; decoding one by one");
            }
        }
        // 2. One by one for the rest.
        for (g, item) in gpu.iter().enumerate() {
            if decoded[g] {
                continue;
            }
            let data = file.sample(indices[start + item.0]).data;
            let mut img = image(&item.1);
            // SAFETY: as for the batched call, for one image.
            let st = unsafe {
                nv::nvjpegDecode(
                    self.single_handle,
                    self.single,
                    data.as_ptr(),
                    data.len(),
                    nv::nvjpegOutputFormat_t_NVJPEG_OUTPUT_RGB,
                    &mut img,
                    null_mut(),
                )
            };
            decoded[g] = st == nv::nvjpegStatus_t_NVJPEG_STATUS_SUCCESS;
        }
        // 3. Crop and resize on the device.
        let mut flips: Vec<i64> = Vec::new();
        for (g, (j, planes, crop, flip)) in gpu.iter().enumerate() {
            if !decoded[g] {
                cpu.push(*j);
                continue;
            }
            crop_resize_into(planes, crop, &outf.narrow(0, *j as i64, 1));
            if *flip {
                flips.push(*j as i64);
            }
        }
        if !flips.is_empty() {
            let idx = Tensor::from_slice(&flips).to_device(self.device);
            let mirrored = outf.index_select(0, &idx).flip([3]);
            let _ = outf.index_copy_(0, &idx, &mirrored);
        }
        // 4. The CPU path for the rest.
        let mut substituted = 0;
        let cpu_fallback = cpu.len();
        let (w, h) = (ow as usize, oh as usize);
        for &j in &cpu {
            let idx = indices[start + j];
            let s = file.sample(idx);
            let (crop, d) = self.draw(epoch, start + j, s.width, s.height);
            let flip = d.mirror;
            if let Err(e) = self.cpu.decode(
                s.mode,
                s.data,
                s.width,
                s.height,
                crop,
                (ow as u32, oh as u32),
                &mut self.hwc,
            ) {
                tracing::warn!(
                    "record {idx} ({}) failed to decode, substituted with grey: {e}",
                    file.source_path_lossy(idx)
                );
                self.hwc.fill(128);
                substituted += 1;
            }
            hwc_to_chw(&self.hwc, &mut self.chw, w, h, flip);
            let t = Tensor::from_slice(&self.chw)
                .view([3, oh, ow])
                .to_device(self.device);
            outf.get(j as i64).copy_(&t);
        }
        let out = outf.round_().clamp_(0.0, 255.0).to_kind(Kind::Uint8);
        let idx: Vec<u32> = indices[start..end].iter().map(|&i| i as u32).collect();
        // The file's label table is read once, in `new`.
        let labels = self
            .labels
            .as_ref()
            .map(|all| idx.iter().map(|&i| all[i as usize]).collect());
        Ok(GpuBatch {
            pixels: out,
            indices: idx,
            labels,
            cpu_fallback,
            substituted,
            drawn,
        })
    }

    /// Number of batches of an epoch of `n` samples.
    pub fn num_batches(&self, n: usize) -> usize {
        if self.cfg.drop_last {
            n / self.cfg.batch_size
        } else {
            n.div_ceil(self.cfg.batch_size)
        }
    }
}

/// Crops `planes` (`3 x H x W` u8) to `crop` (rounded outward to whole pixels, clamped to
/// the image) and resizes it into `out` (`1 x 3 x oh x ow` float) with antialiased bilinear
/// interpolation, as torchvision's `antialias=True`. Values stay unrounded.
pub fn crop_resize_into(planes: &Tensor, crop: &Rect, out: &Tensor) {
    let (h, w) = (planes.size()[1], planes.size()[2]);
    let (oh, ow) = (out.size()[2], out.size()[3]);
    let x0 = (crop.x.floor() as i64).clamp(0, w - 1);
    let y0 = (crop.y.floor() as i64).clamp(0, h - 1);
    let x1 = ((crop.x + crop.w).round() as i64).clamp(x0 + 1, w);
    let y1 = ((crop.y + crop.h).round() as i64).clamp(y0 + 1, h);
    let region = planes.narrow(1, y0, y1 - y0).narrow(2, x0, x1 - x0);
    let f = region.unsqueeze(0).to_kind(Kind::Float);
    let _ = f.internal_upsample_bilinear2d_aa_out(out, [oh, ow], false, None, None);
}

impl Drop for NvJpegLoader {
    fn drop(&mut self) {
        // SAFETY: each object was created by this loader and is destroyed once.
        unsafe {
            if !self.stream.is_null() {
                nv::nvjpegJpegStreamDestroy(self.stream);
            }
            for st in [self.state, self.single] {
                if !st.is_null() {
                    nv::nvjpegJpegStateDestroy(st);
                }
            }
            if !self.single_handle.is_null() && self.single_handle != self.handle {
                nv::nvjpegDestroy(self.single_handle);
            }
            if !self.handle.is_null() {
                nv::nvjpegDestroy(self.handle);
            }
        }
    }
}

// SAFETY: the nvJPEG handle may be used from any thread; the state and stream are only used
// through `&mut self`, so by one thread at a time.
unsafe impl Send for NvJpegLoader {}

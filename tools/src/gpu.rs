//! `uic gpu-check` (builds with `--features cuda`, and `nvjpeg` for the decode checks): the
//! correctness checks and GPU timings that `scripts/gpu-check` runs on a lent machine.
//! Prints one JSON object; each check carries its tolerance and a `pass` flag.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::{json, Map, Value};
use uic_trainer::tch::{self, Device, Kind, Tensor};
use uic_trainer::{Arch, Model, ModelConfig};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Record file for the decode checks and timings.
    #[arg(long)]
    pub data: PathBuf,
    /// Output side of the crops.
    #[arg(long, default_value_t = 224)]
    pub size: u32,
    /// Batch size of the decode timing.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Epochs of the nvJPEG decode timing.
    #[arg(long, default_value_t = 3)]
    pub epochs: u64,
    /// Only the CUDA-against-CPU forward/backward check (run it again with
    /// `NVIDIA_TF32_OVERRIDE=0` for the strict, TF32-free comparison).
    #[arg(long)]
    pub forward_backward_only: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    if !tch::Cuda::is_available() {
        bail!("libtorch sees no CUDA device (tch::Cuda::is_available() is false)");
    }
    let mut out = Map::new();
    out.insert("cuda_devices".into(), json!(tch::Cuda::device_count()));
    out.insert("forward_backward".into(), forward_backward()?);
    if !a.forward_backward_only {
        out.insert("device_augment".into(), device_augment(&a)?);
    }
    #[cfg(feature = "nvjpeg")]
    if !a.forward_backward_only {
        let (check, timing) = nvjpeg(&a)?;
        out.insert("nvjpeg_vs_turbojpeg".into(), check);
        out.insert("nvjpeg_loader".into(), timing);
    }
    #[cfg(not(feature = "nvjpeg"))]
    {
        let _ = (
            &a.data,
            a.size,
            a.batch_size,
            a.epochs,
            a.forward_backward_only,
        );
        out.insert(
            "nvjpeg_vs_turbojpeg".into(),
            json!("not built (feature nvjpeg off)"),
        );
    }
    let pass = out
        .values()
        .all(|v| v.get("pass").is_none_or(|p| p.as_bool() == Some(true)));
    out.insert("pass".into(), json!(pass));
    outln!("{}", Value::Object(out));
    Ok(if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Relative L2 error of `a` against `b`.
fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_device(Device::Cpu).to_kind(Kind::Double);
    let b = b.to_device(Device::Cpu).to_kind(Kind::Double);
    let num = (&a - &b).norm().double_value(&[]);
    let den = b.norm().double_value(&[]).max(1e-30);
    num / den
}

/// AlexNet-BN (Sobel, 224 px, K = 1000) with the same weights and batch three times: in
/// float64 on the CPU (the reference), and in float32 on the CPU and on CUDA. Each float32
/// result's relative L2 error against the reference is measured, for the logits and every
/// gradient.
///
/// Two float32 implementations round differently, so neither is exact; the check is that
/// CUDA is about as accurate as the CPU: for every tensor, CUDA's error is at most 10 times
/// the CPU's, or 1e-5. That holds only with TF32 off (`NVIDIA_TF32_OVERRIDE=0`): by default
/// cuDNN convolutions use TF32 on Ampere and later (as in PyTorch, whose
/// `torch.backends.cudnn.allow_tf32` is on by default), which rounds their inputs to 10-bit
/// mantissas, so with TF32 on the errors are reported without a verdict.
fn forward_backward() -> Result<Value> {
    let cfg = ModelConfig {
        arch: Arch::Alexnet,
        k: 1000,
        ..Default::default()
    };
    tch::manual_seed(0);
    let cpu = Model::new(&cfg, Device::Cpu)?;
    let mut reference = Model::new(&cfg, Device::Cpu)?;
    reference.var_store_mut().copy(cpu.var_store())?;
    reference.set_kind(Kind::Double);
    let mut gpu = Model::new(&cfg, Device::Cpu)?;
    gpu.var_store_mut().copy(cpu.var_store())?;
    gpu.to_device(Device::Cuda(0));
    let x = Tensor::randint(256, [16, 3, 224, 224], (Kind::Uint8, Device::Cpu));
    let y = Tensor::randint(1000, [16], (Kind::Int64, Device::Cpu));
    let mut grads = Vec::new();
    let mut logits = Vec::new();
    for m in [&reference, &cpu, &gpu] {
        // BN on running statistics and no dropout, so all compute the same function.
        let l = m.forward(&x, false);
        let loss = l.cross_entropy_for_logits(&y.to_device(m.device()));
        loss.backward();
        logits.push(l.detach());
        grads.push(m.named_parameters());
    }
    // Mixed precision: the dtype autocast gives the logits (the trainer asks for bfloat16).
    uic_trainer::amp::use_bfloat16();
    let amp_kind = tch::autocast(true, || gpu.forward(&x.narrow(0, 0, 2), false).kind());
    let strict = std::env::var("NVIDIA_TF32_OVERRIDE").as_deref() == Ok("0");
    let ok = |cuda: f64, cpu: f64| cuda <= (10.0 * cpu).max(1e-5);
    let (lc, lg) = (
        rel_err(&logits[1], &logits[0]),
        rel_err(&logits[2], &logits[0]),
    );
    let mut pass = ok(lg, lc);
    let mut worst = (String::from("logits"), lg / lc.max(1e-12));
    let mut each = Map::new();
    each.insert("logits".into(), json!({"cpu": lc, "cuda": lg}));
    for ((n, gr), ((_, gc), (_, gg))) in grads[0].iter().zip(grads[1].iter().zip(&grads[2])) {
        let (ec, eg) = (
            rel_err(&gc.grad(), &gr.grad()),
            rel_err(&gg.grad(), &gr.grad()),
        );
        pass &= ok(eg, ec);
        if eg / ec.max(1e-12) > worst.1 {
            worst = (n.clone(), eg / ec.max(1e-12));
        }
        each.insert(n.clone(), json!({"cpu": ec, "cuda": eg}));
    }
    let mut v = json!({
        "tf32": !strict, "errors_against_float64": each,
        "amp_logits_kind": format!("{amp_kind:?}"), "amp_is_bfloat16": amp_kind == Kind::BFloat16,
        "worst": worst.0, "worst_cuda_over_cpu": worst.1,
        "tolerance": "cuda error <= max(10 x cpu error, 1e-5) for every tensor (TF32 off only)",
    });
    if strict {
        v["pass"] = json!(pass);
    }
    Ok(v)
}

/// The strong preset's steps after the flip as CUDA ops (`--augment-on device`) against the
/// CPU kernels on the same batch and draws, then their speed. Tolerance: rows without a
/// blur identical; blurred rows within the blur's golden tolerance (one level, on at most
/// 2% of a row's values).
fn device_augment(a: &Args) -> Result<Value> {
    use std::sync::Arc;
    use std::time::Instant;
    use uic_loader::order::{Order, Random};
    use uic_loader::{Loader, LoaderConfig, RecordFile};
    use uic_trainer::{DeviceAugment, Preset};
    let file = Arc::new(RecordFile::open(&a.data)?);
    let cfg = |defer_augment| LoaderConfig {
        defer_augment,
        batch_size: a.batch_size,
        threads: 0,
        ..LoaderConfig::for_preset(Preset::Strong, (a.size, a.size))
    };
    let idx = Random {
        len: file.len(),
        seed: 1,
    }
    .indices(0);
    let first = |defer| -> Result<uic_loader::Batch> {
        let loader = Loader::new(file.clone(), cfg(defer))?;
        let batch = loader.epoch(0, idx.clone(), 0)?.next();
        Ok(batch.ok_or_else(|| anyhow::anyhow!("no batch"))??)
    };
    let (done, left) = (first(false)?, first(true)?);
    let s = i64::from(a.size);
    let shape = [left.len() as i64, 3, s, s];
    let ops = DeviceAugment::new(uic_augment::Augment::preset(Preset::Strong))
        .ok_or_else(|| anyhow::anyhow!("the strong preset has steps"))?;
    let x = Tensor::from_slice(left.pixels(0))
        .view(shape)
        .to_device(Device::Cuda(0));
    let drawn = left.drawn(0);
    let got = ops.apply(&x, drawn)?.to_device(Device::Cpu);
    let want = Tensor::from_slice(done.pixels(0)).view(shape);
    let diff = (got.to_kind(Kind::Int16) - want.to_kind(Kind::Int16)).abs();
    let row_max = diff.flatten(1, -1).amax([1i64].as_slice(), false);
    let row_share = diff
        .flatten(1, -1)
        .ne(0)
        .to_kind(Kind::Float)
        .mean_dim(1, false, Kind::Float);
    let (mut pass, mut worst_share) = (true, 0f64);
    let mut max = 0;
    for (i, d) in drawn.iter().enumerate() {
        let (m, sh) = (
            row_max.int64_value(&[i as i64]),
            row_share.double_value(&[i as i64]),
        );
        max = max.max(m);
        worst_share = worst_share.max(sh);
        pass &= match d.blur {
            None => m == 0,
            Some(_) => m <= 1 && sh <= 0.02,
        };
    }
    // Timing: the batch's steps again and again, from device-resident pixels.
    let reps = 20;
    let _ = ops.apply(&x, drawn)?;
    tch::Cuda::synchronize(0);
    let t = Instant::now();
    for _ in 0..reps {
        let _ = ops.apply(&x, drawn)?;
    }
    tch::Cuda::synchronize(0);
    let secs = t.elapsed().as_secs_f64();
    Ok(json!({
        "images": drawn.len(), "size": a.size,
        "blurred": drawn.iter().filter(|d| d.blur.is_some()).count(),
        "max_diff": max, "worst_row_share_differing": worst_share,
        "tolerance": "rows without blur identical; blurred rows: 1 level on <= 2% of values",
        "pass": pass,
        "images_per_s": (reps * drawn.len()) as f64 / secs,
    }))
}

/// nvJPEG against the CPU pipeline on the same crops and flips, then the nvJPEG loader's
/// speed. Tolerance: mean absolute difference of at most 4 levels (different IDCTs,
/// whole-pixel crops on the GPU against sub-pixel crops on the CPU, different resizers).
#[cfg(feature = "nvjpeg")]
fn nvjpeg(a: &Args) -> Result<(Value, Value)> {
    use std::sync::Arc;
    use uic_loader::nvjpeg::{Backend, NvJpegLoader};
    use uic_loader::order::{Order, Random};
    use uic_loader::RecordFile;
    use uic_loader::{Loader, LoaderConfig};
    let file = Arc::new(RecordFile::open(&a.data)?);
    let cfg = LoaderConfig {
        batch_size: a.batch_size,
        size: (a.size, a.size),
        threads: 0,
        ..Default::default()
    };
    let n = file.len();
    let order = Random { len: n, seed: 1 };
    let idx = order.indices(0);
    let cpu = Loader::new(file.clone(), cfg.clone())?;
    let first = cpu.epoch(0, idx.clone(), 0)?.next();
    let Some(cpu_batch) = first.transpose()? else {
        bail!("no batch")
    };
    let c = Tensor::from_slice(cpu_batch.pixels(0))
        .view([
            cpu_batch.len() as i64,
            3,
            i64::from(a.size),
            i64::from(a.size),
        ])
        .to_kind(Kind::Float);
    drop(cpu_batch);
    // Per backend: batch 0 against the CPU loader's, then whole epochs timed (one warm-up).
    let (mut checks, mut timing) = (Vec::new(), Vec::new());
    for backend in [Backend::Auto, Backend::Default] {
        let asked = format!("{backend:?}").to_lowercase();
        let mut nvj =
            match NvJpegLoader::with_backend(file.clone(), cfg.clone(), Device::Cuda(0), backend) {
                Ok(l) => l,
                Err(e) => {
                    let v = json!({"asked": asked, "error": e.to_string(), "pass": false});
                    checks.push(v.clone());
                    timing.push(v);
                    continue;
                }
            };
        let check = match nvj.batch(0, &idx, 0) {
            Ok(g) => {
                let d = (g.pixels.to_device(Device::Cpu).to_kind(Kind::Float) - &c).abs();
                let mean = d.mean(Kind::Float).double_value(&[]);
                let per_image = d.flatten(1, -1).mean_dim(1, false, Kind::Float);
                let worst_image = per_image.max().double_value(&[]);
                json!({
                    "asked": asked, "backend": nvj.backend(), "images": g.indices.len(),
                    "cpu_fallback": g.cpu_fallback, "mean_abs_diff": mean,
                    "worst_image_mean_abs_diff": worst_image,
                    "tolerance_mean_abs_diff": 4.0, "pass": mean <= 4.0,
                })
            }
            Err(e) => json!({"asked": asked, "error": e.to_string(), "pass": false}),
        };
        checks.push(check);
        timing.push(match time_epochs(&mut nvj, &order, n, a.epochs) {
            Ok(mut v) => {
                v["asked"] = json!(asked);
                v["batch_size"] = json!(a.batch_size);
                v["size"] = json!(a.size);
                v
            }
            Err(e) => json!({"asked": asked, "error": e.to_string()}),
        });
    }
    // The check passes when every backend that started agrees with the CPU.
    let pass = checks.iter().all(|c| c["pass"] == json!(true));
    let check = json!({"backends": checks, "pass": pass});
    let timing = Value::Array(timing);
    Ok((check, timing))
}

/// Images per second of `epochs` whole epochs of `l` over `order` (after one warm-up epoch).
#[cfg(feature = "nvjpeg")]
fn time_epochs(
    l: &mut uic_loader::nvjpeg::NvJpegLoader,
    order: &uic_loader::order::Random,
    n: usize,
    epochs: u64,
) -> uic_loader::Result<Value> {
    use std::time::Instant;
    use uic_loader::order::Order;
    let nb = l.num_batches(n);
    let (mut images, mut fallback) = (0usize, 0usize);
    let mut t0 = Instant::now();
    for e in 0..=epochs {
        if e == 1 {
            tch::Cuda::synchronize(0);
            t0 = Instant::now();
            images = 0;
            fallback = 0;
        }
        let ix = order.indices(e);
        for b in 0..nb {
            let bt = l.batch(e, &ix, b)?;
            images += bt.indices.len();
            fallback += bt.cpu_fallback;
        }
    }
    tch::Cuda::synchronize(0);
    let secs = t0.elapsed().as_secs_f64();
    Ok(json!({
        "images_per_s": images as f64 / secs, "images": images, "cpu_fallback": fallback,
        "backend": l.backend(),
    }))
}

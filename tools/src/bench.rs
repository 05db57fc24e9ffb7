//! `uic bench loader`: how fast the loader turns a record file into batches.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use uic_augment::{Augment, Preset};
use uic_loader::crop::{random_resized_crop, CropDecoder, RrcConfig};
use uic_loader::jpeg::{Decoder, Scale};
use uic_loader::order::{Order, Random};
use uic_loader::seeds::Stream;
use uic_loader::{CropMode, Loader, LoaderConfig, RecordFile, StorageMode};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Decode-only, decode+crop (one thread each) and full-loader throughput on a record file.
    Loader(LoaderArgs),
    /// Time one UIC training step (forward, loss, backward, SGD, argmax) on an in-memory
    /// batch: the trainer's ceiling without data loading. Compare with
    /// benches/peers/uic_step.py.
    Step(Box<StepArgs>),
    /// Time the data-parallel gradient sync between ranks: a model's gradients, averaged in
    /// buckets as `uic train` averages them, or a flat buffer of --mb megabytes. Run it as
    /// several ranks: `--nproc-per-node 2`, torchrun or srun.
    Sync(Box<SyncArgs>),
}

impl Command {
    /// Whether the benchmark runs libtorch's kernels (the loader's alone does not).
    pub fn runs_libtorch(&self) -> bool {
        !matches!(self, Command::Loader(_))
    }
}

/// A count flag that must be positive: refused by the parser, with its name, before any work.
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// Model settings, as for `uic train` (the gradients are the model's parameters').
    #[command(flatten)]
    pub set: uic_trainer::TrainOverrides,
    /// Allreduce one flat float32 buffer of this many megabytes (2^20 bytes) instead.
    #[arg(long)]
    pub mb: Option<f64>,
    /// Timed syncs (at least 1).
    #[arg(long, default_value_t = 20, value_parser = at_least_one())]
    pub iters: usize,
    /// Untimed syncs first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Print one JSON object instead of text (rank 0).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dist: crate::train::DistArgs,
}

#[derive(Debug, clap::Args)]
pub struct StepArgs {
    /// Model and batch settings, as for `uic train`.
    #[command(flatten)]
    pub set: uic_trainer::TrainOverrides,
    /// Timed steps (at least 1).
    #[arg(long, default_value_t = 60, value_parser = at_least_one())]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Keep the batch on the model's device (the compute ceiling); by default it comes from
    /// host memory every step, as in training.
    #[arg(long)]
    pub data_on_device: bool,
}

#[derive(Debug, clap::Args)]
pub struct LoaderArgs {
    /// Record file.
    pub file: PathBuf,
    /// Loader threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Batch size.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Epochs of the full loader to time (after one warm-up epoch), each paired with a
    /// one-thread pass over the same crops that measures the limit.
    #[arg(long, default_value_t = 5)]
    pub epochs: u64,
    /// Output side in pixels.
    #[arg(long, default_value_t = 224)]
    pub size: u32,
    /// Augmentation preset: paper (RandomResizedCrop + flip) or strong (+ colour jitter,
    /// grayscale, blur).
    #[arg(long, default_value = "paper")]
    pub preset: Preset,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Loader(a) => loader(a),
        Command::Step(a) => step(*a),
        Command::Sync(a) => sync(*a),
    }
}

fn sync(a: SyncArgs) -> Result<ExitCode> {
    use uic_trainer::tch::{Kind, Tensor};
    if let Some(code) = crate::train::launch_if_asked(&a.dist, true)? {
        return Ok(code);
    }
    let mut cfg = uic_trainer::TrainConfig::default();
    a.set.apply(&mut cfg);
    cfg.validate()?;
    let Some(dist) = crate::train::join_group(&a.dist, cfg.device)? else {
        bail!("bench sync needs several ranks: add --nproc-per-node 2, or run it under torchrun or srun");
    };
    uic_trainer::set_threads(&cfg);
    let device = cfg.device.resolve()?;
    // What is reduced: the model's gradients (all ones), or one flat buffer.
    let (what, params) = match a.mb {
        Some(mb) => {
            let n = (mb * f64::from(1u32 << 20) / 4.0).round().max(1.0) as i64;
            (
                format!("a {mb} MB buffer"),
                vec![Tensor::ones([n], (Kind::Float, device))],
            )
        }
        None => {
            let model = uic_trainer::Model::init(&cfg.model(), cfg.seed, device)?;
            let params: Vec<Tensor> = model
                .named_parameters()
                .into_iter()
                .map(|(_, t)| t)
                .collect();
            let total = params
                .iter()
                .fold(Tensor::zeros([], (Kind::Float, device)), |acc, p| {
                    acc + p.sum(Kind::Float)
                });
            total.backward();
            (format!("{} gradients", cfg.arch), params)
        }
    };
    let bytes: i64 = params.iter().map(|p| p.numel() as i64 * 4).sum();
    let loss = Tensor::from(1.0f64);
    let mut times = Vec::with_capacity(a.iters);
    for i in 0..a.warmup + a.iters {
        let t = Instant::now();
        match a.mb {
            Some(_) => {
                let mut ts = [params[0].shallow_clone()];
                dist.group()
                    .allreduce_sum(&mut ts)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            None => {
                let share = 1.0 / dist.world() as f64;
                let values = (&loss * share).reshape([1]);
                uic_trainer::Collective::sum_step(&dist, &params, &values, share, i as u64)?;
            }
        }
        if i >= a.warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    if dist.rank() != 0 {
        return Ok(ExitCode::SUCCESS);
    }
    let gbps = bytes as f64 / median / 1e9;
    if a.json {
        outln!(
            "{}",
            serde_json::json!({
                "what": what,
                "ranks": dist.world(),
                "bytes": bytes,
                "seconds_median": median,
                "seconds_min": times[0],
                "gb_per_s": gbps,
            })
        );
    } else {
        outln!(
            "sync of {what} ({:.1} MB) across {} ranks: {:.1} ms per sync (median of {}; \
             fastest {:.1} ms), {gbps:.2} GB/s",
            bytes as f64 / 1e6,
            dist.world(),
            median * 1e3,
            times.len(),
            times[0] * 1e3
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn step(a: StepArgs) -> Result<ExitCode> {
    use rand::{Rng, SeedableRng};
    use uic_trainer::tch::{self, Tensor};
    let mut cfg = uic_trainer::TrainConfig::default();
    a.set.apply(&mut cfg);
    cfg.validate()?;
    uic_trainer::set_threads(&cfg);
    let model = uic_trainer::Model::init(&cfg.model(), cfg.seed, cfg.device.resolve()?)?;
    let mut opt =
        uic_trainer::sgd::Sgd::new(model.named_parameters(), cfg.momentum, cfg.weight_decay);
    let (b, s) = (cfg.batch_size, cfg.input_size as usize);
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
    let px: Vec<u8> = (0..b * 3 * s * s).map(|_| rng.gen()).collect();
    let tg: Vec<i64> = (0..b).map(|_| rng.gen_range(0..cfg.k as i64)).collect();
    let y = Tensor::from_slice(&tg);
    // As in the trainer, the batch is a host u8 buffer that train_step uploads every step
    // (the trainer lends the loader's buffer to libtorch without a copy); or, with
    // --data-on-device, a tensor already on the device.
    let mut x = Tensor::from_slice(&px).view([b as i64, 3, s as i64, s as i64]);
    if a.data_on_device {
        x = x.to_device(model.device());
    }
    let mut times = Vec::with_capacity(a.steps);
    for i in 0..a.warmup + a.steps {
        let t = Instant::now();
        let (loss, pred) = uic_trainer::train_step(&model, &mut opt, &x, &y, 0.1)?;
        let dt = t.elapsed().as_secs_f64();
        anyhow::ensure!(loss.is_finite() && pred.len() == b, "bad step output");
        if i >= a.warmup {
            times.push(dt);
        }
    }
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let threads = tch::get_num_threads();
    if a.json {
        outln!(
            "{}",
            serde_json::json!({
                "peer": "uic-tch", "device": format!("{:?}", model.device()), "amp": cfg.amp,
                "channels_last": cfg.channels_last, "data_on_device": a.data_on_device, "arch": cfg.arch.to_string(), "width": cfg.width,
                "input_size": cfg.input_size, "batch_size": b, "k": cfg.k, "sobel": cfg.sobel_on(),
                "threads": threads, "steps": a.steps, "step_ms_median": med * 1e3,
                "step_ms_mean": mean * 1e3, "images_per_s": b as f64 / med,
            })
        );
    } else {
        outln!(
            "{} width {} at {s} px, batch {b}, k {}, sobel {}, {threads} libtorch threads: \
             median step {:.2} ms (mean {:.2}), {:.0} images/s",
            cfg.arch,
            cfg.width,
            cfg.k,
            cfg.sobel_on(),
            med * 1e3,
            mean * 1e3,
            b as f64 / med
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

fn loader(a: LoaderArgs) -> Result<ExitCode> {
    if a.preset == Preset::Eval {
        bail!("preset eval has no random crop; bench loader measures training presets (paper, strong)");
    }
    let file = Arc::new(RecordFile::open(&a.file)?);
    if file.is_empty() {
        bail!("{} holds no samples", a.file.display());
    }
    let n = file.len();
    if a.epochs == 0 {
        bail!("--epochs 0 times nothing; give at least 1");
    }
    if a.size == 0 {
        bail!("--size 0: the crops need at least one pixel");
    }
    if a.batch_size == 0 || a.batch_size > n {
        bail!(
            "--batch-size {} for {n} images: give 1 to {n}, as `uic train` requires",
            a.batch_size
        );
    }
    let rrc = RrcConfig::default();
    let out = (a.size, a.size);

    // A remote file: what the cache held at the start, and the first epoch timed before
    // anything else reads the images (from a cold cache, the download's pace).
    let cached_at_start = file.cached_bytes();
    let remote = cached_at_start.is_some();

    // 1. Decode only: a plain full-size decode of every JPEG, one thread (not for a remote
    // file: it would fill the cache before the first epoch).
    let decode_only = if file.mode() == StorageMode::Jpeg && !remote {
        let mut dec = Decoder::new()?;
        let mut buf = Vec::new();
        let t = Instant::now();
        for i in 0..n {
            let s = file.sample(i);
            buf.resize(s.width as usize * s.height as usize * 3, 0);
            dec.decode_rgb(s.data, Scale::Full, &mut buf)?;
        }
        Some(n as f64 / t.elapsed().as_secs_f64())
    } else {
        None
    };

    // 2. The full loader (threads, random order, flip, NCHW batches), and beside each of
    // its timed epochs the loader's limit: one thread decoding exactly that epoch's crops
    // (same samples, order and random draws) with the fused region decode + resize into
    // one reused buffer. This VM's speed drifts by ±20% within minutes, so each epoch is
    // compared with a limit pass taken right next to it (before it on odd epochs, after
    // it on even ones), and the reported fraction is the median of those ratios.
    let cfg = LoaderConfig {
        batch_size: a.batch_size,
        threads: crate::threads::cap("--threads", a.threads),
        size: out,
        crop: CropMode::RandomResized(rrc),
        augment: Augment::preset(a.preset),
        ..Default::default()
    };
    let seed = cfg.seed;
    let loader = Loader::new(file.clone(), cfg)?;
    let threads = loader.threads();
    let order = Random { len: n, seed: 0 };
    let mut crop_dec = CropDecoder::new()?;
    let mut px = vec![0u8; (a.size * a.size * 3) as usize];
    let mut limit_pass = |epoch: u64| -> Result<f64> {
        let t = Instant::now();
        for (pos, &i) in order.indices(epoch).iter().enumerate() {
            file.fetch(&[i])?; // a remote file's cache may have let it go
            let s = file.sample(i);
            let mut rng = Stream::Augment {
                epoch,
                draw: pos as u64,
            }
            .rng(seed);
            let crop = random_resized_crop(s.width, s.height, &rrc, &mut rng);
            crop_dec.decode(s.mode, s.data, s.width, s.height, crop, out, &mut px)?;
        }
        Ok(n as f64 / t.elapsed().as_secs_f64())
    };
    let warm_up = |loader: &Loader| -> Result<f64> {
        let t = Instant::now();
        let mut count = 0;
        for b in loader.epoch(0, order.indices(0), 0)? {
            let b = b?;
            count += b.len();
            std::hint::black_box(b.pixels(0)[0]);
        }
        Ok(count as f64 / t.elapsed().as_secs_f64())
    };
    let first_epoch = if remote {
        Some(warm_up(&loader)?)
    } else {
        limit_pass(0)?;
        warm_up(&loader)?;
        None
    };
    let (mut images, mut waited, mut secs) = (0usize, 0.0, 0.0);
    let (mut singles, mut fractions) = (Vec::new(), Vec::new());
    for e in 1..=a.epochs {
        let before = if e % 2 == 1 {
            Some(limit_pass(e)?)
        } else {
            None
        };
        let t = Instant::now();
        let mut epoch = loader.epoch(e, order.indices(e), 0)?;
        let mut count = 0;
        for b in epoch.by_ref() {
            let b = b?;
            count += b.len();
            std::hint::black_box(b.pixels(0)[0]);
        }
        let took = t.elapsed().as_secs_f64();
        waited += epoch.waited().as_secs_f64();
        let single = match before {
            Some(r) => r,
            None => limit_pass(e)?,
        };
        images += count;
        secs += took;
        singles.push(single);
        fractions.push(count as f64 / took / (single * threads as f64));
    }
    let rate = images as f64 / secs;
    let fused = median(&singles);
    let fraction = median(&fractions);
    let limit = fused * threads as f64;
    let substituted = loader
        .stats()
        .substituted
        .load(std::sync::atomic::Ordering::Relaxed);
    if a.json {
        let j = serde_json::json!({
            "images_per_s": rate,
            "threads": threads,
            "limit_images_per_s": limit,
            "fraction_of_limit": fraction,
            "fraction_of_limit_per_epoch": fractions,
            "decode_only_images_per_s_1thread": decode_only,
            "decode_crop_images_per_s_1thread": fused,
            "data_wait": waited / secs,
            "batch_size": a.batch_size,
            "size": a.size,
            "epochs": a.epochs,
            "samples": n,
            "substituted": substituted,
            "preset": format!("{:?}", a.preset).to_lowercase(),
        });
        let mut j = j;
        if let (Some(first), Some(cached)) = (first_epoch, cached_at_start) {
            j["first_epoch_images_per_s"] = first.into();
            j["cached_bytes_at_start"] = cached.into();
            j["file_bytes"] = file.header().file_len.into();
        }
        outln!("{j}");
    } else {
        outln!(
            "file               {} ({n} samples, {})",
            a.file.display(),
            file.mode()
        );
        if let (Some(first), Some(cached)) = (first_epoch, cached_at_start) {
            outln!(
                "first epoch        {first:>8.0} images/s (remote; the cache held {:.0}% of the file at the start)",
                100.0 * cached as f64 / file.header().file_len.max(1) as f64
            );
        }
        if let Some(d) = decode_only {
            outln!("decode only        {d:>8.0} images/s (1 thread, full-size decode)");
        }
        outln!("decode+crop        {fused:>8.0} images/s (1 thread, fused region decode + resize to {0}x{0}, median of {1} passes)", a.size, a.epochs);
        outln!(
            "full loader        {rate:>8.0} images/s ({threads} threads, batch {}, {} epochs)",
            a.batch_size,
            a.epochs
        );
        outln!(
            "limit              {limit:>8.0} images/s (decode+crop x threads); loader at {:.0}% (median of the epochs' ratios to the pass beside each)",
            100.0 * fraction
        );
        outln!(
            "consumer waited    {:>8.1}% of the time (it does nothing with a batch here, so near 100% means only that the loader sets the pace)",
            100.0 * waited / secs
        );
        if substituted > 0 {
            outln!("substituted        {substituted} samples failed to decode (see warnings)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

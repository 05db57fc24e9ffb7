//! `uic demo`: the README's main command, on built-in synthetic data. Generates JPEGs of
//! latent classes (shape x colour x texture), converts them, trains UIC on the CPU, and
//! shows the NMI of the pseudo-labels against the latent classes rising above chance.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use uic_loader::convert::{self, ConvertOptions};
use uic_loader::synth::{self, SynthOptions};
use uic_loader::RecordFile;
use uic_trainer::{Arch, Preset, TrainConfig, Trainer};

use crate::train::Bars;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Working folder for the generated images, record file and training run.
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    /// Latent classes (shape x colour x texture), at most 32.
    #[arg(long, default_value_t = 16)]
    pub classes: usize,
    /// Images per class.
    #[arg(long, default_value_t = 64)]
    pub per_class: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 64)]
    pub size: u32,
    /// Training epochs.
    #[arg(long, default_value_t = 60)]
    pub epochs: u64,
    /// Pseudo-classes (default: twice the latent classes, overclustering as in the paper).
    #[arg(long)]
    pub k: Option<usize>,
    /// Seed of the generated data and of training.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let images = a.out.join("images");
    if images.exists() {
        std::fs::remove_dir_all(&images)
            .with_context(|| format!("cannot clear {}", images.display()))?;
    }
    let opts = SynthOptions {
        classes: a.classes,
        per_class: a.per_class,
        size: a.size,
        seed: a.seed,
    };
    let files = synth::write_image_folder(&images, &opts)?;
    let classes = opts.classes.min(synth::MAX_CLASSES);
    outln!(
        "1. generated {} synthetic JPEGs of {classes} latent classes in {}",
        files.len(),
        images.display()
    );

    let record = a.out.join("synthetic.uicr");
    let report = convert::convert(&images, &record, &ConvertOptions::default(), &|_| {})?;
    outln!("2. converted: {}", report.summary());

    let f = RecordFile::open(&record)?;
    let bad = f.verify();
    anyhow::ensure!(bad.is_empty(), "{} records failed verification", bad.len());
    outln!(
        "3. verified {}: {} samples, {} classes, {} bytes",
        record.display(),
        f.len(),
        f.num_classes(),
        f.header().file_len
    );
    drop(f);

    let run = a.out.join("run");
    if run.exists() {
        std::fs::remove_dir_all(&run).with_context(|| format!("cannot clear {}", run.display()))?;
    }
    let cfg = TrainConfig {
        arch: Arch::AlexnetSmall,
        width: 0.5,
        input_size: 32,
        min_scale: 0.2,
        k: a.k.unwrap_or(2 * classes),
        epochs: a.epochs,
        batch_size: 64,
        preset: Preset::Paper,
        sobel: Some(false),
        seed: a.seed,
        ..TrainConfig::default()
    };
    outln!(
        "4. training UIC: {} width {} at {} px, k = {}, {} epochs, batch {} (labels start random; \
         chance NMI is about 0)",
        cfg.arch,
        cfg.width,
        cfg.input_size,
        cfg.k,
        cfg.epochs,
        cfg.batch_size
    );
    let mut t = Trainer::new(cfg, &record, &run, false)?;
    let mut bars = Bars::new(a.quiet);
    let result = t.run(&mut bars);
    bars.finish();
    // The demo asks for no stop: a signal ends it at once (exit status 130).
    let _finished: uic_trainer::Ended = result?;

    let m = uic_trainer::metrics::read_metrics(&run.join("metrics.jsonl"))?;
    let nmis: Vec<f64> = m.iter().filter_map(|e| e.nmi_true).collect();
    let first = nmis.first().copied().unwrap_or(0.0);
    let last = nmis.last().copied().unwrap_or(0.0);
    let best = nmis.iter().copied().fold(0.0, f64::max);
    outln!("5. NMI of the pseudo-labels against the latent classes, per epoch:");
    outln!("   {}", sparkline(&nmis));
    outln!("   epoch 1: {first:.3}   last: {last:.3}   best: {best:.3}");
    // A labeling that ignores the images scores ~0; report what random labels would get.
    let chance = chance_nmi(&t, classes);
    outln!("   random labels of the same sizes would score about {chance:.3}");
    let plots = crate::plots::write(&run)?;
    for p in &plots {
        outln!("   plot: {}", p.display());
    }
    outln!("next: uic train --data {} --out my-run --arch alexnet-small --input-size 32 --k 32 --epochs 100", record.display());
    Ok(ExitCode::SUCCESS)
}

/// NMI of a random permutation of the final labels against the truth: chance level.
fn chance_nmi(t: &Trainer, _classes: usize) -> f64 {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let f = RecordFile::open(t.out().parent().unwrap_or(t.out()).join("synthetic.uicr"));
    let truth = match f.ok().and_then(|f| f.labels()) {
        Some(l) => l,
        None => return 0.0,
    };
    let mut l = t.labels().to_vec();
    l.shuffle(&mut rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(9));
    uic_trainer::nmi::nmi(&l, &truth, uic_trainer::nmi::Normalization::Arithmetic)
}

/// One character per value, from ▁ to █ over 0..max.
fn sparkline(v: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = v.iter().copied().fold(1e-9, f64::max);
    v.iter()
        .map(|&x| BARS[((x / max) * 7.0).round().clamp(0.0, 7.0) as usize])
        .collect()
}

//! `uic demo`: the README's main command, on built-in synthetic data.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use uic_loader::convert::{self, ConvertOptions};
use uic_loader::synth::{self, SynthOptions};
use uic_loader::RecordFile;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Working folder for the generated images, record file and report.
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
    /// Seed of the generated data.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
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
    println!(
        "1. generated {} synthetic JPEGs of {} latent classes in {}",
        files.len(),
        opts.classes.min(synth::MAX_CLASSES),
        images.display()
    );

    let record = a.out.join("synthetic.uicr");
    let report = convert::convert(&images, &record, &ConvertOptions::default(), &|_| {})?;
    println!("2. converted: {}", report.summary());

    let f = RecordFile::open(&record)?;
    println!(
        "3. inspected {}: {} samples, {} classes, {} storage, {} bytes",
        record.display(),
        f.len(),
        f.num_classes(),
        f.mode(),
        f.header().file_len
    );
    let bad = f.verify();
    anyhow::ensure!(bad.is_empty(), "{} records failed verification", bad.len());
    println!("4. verified every checksum");
    println!("next: uic inspect {}", record.display());
    Ok(ExitCode::SUCCESS)
}

//! `uic synth` (hidden): a synthetic data set of any size for the scale bench
//! (`benches/scale.sh`): tiny JPEGs with labels cycling through many classes, written
//! straight into a record file, or as an ImageFolder tree for timing `convert`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use uic_loader::synth::{self, ScaleOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Record file to write (or the folder, with --folder).
    pub output: PathBuf,
    /// Number of images.
    #[arg(long)]
    pub images: usize,
    /// Number of classes; image i has class i mod classes.
    #[arg(long, default_value_t = 1000)]
    pub classes: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 32)]
    pub size: u32,
    /// Distinct images per class (each encoded once and reused).
    #[arg(long, default_value_t = 4)]
    pub variants: usize,
    /// Seed of the images.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write an ImageFolder tree OUTPUT/<class>/<index>.jpg instead of a record file.
    #[arg(long)]
    pub folder: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let opts = ScaleOptions {
        images: a.images,
        classes: a.classes,
        size: a.size,
        variants: a.variants,
        seed: a.seed,
    };
    let t = Instant::now();
    if a.folder {
        let n = synth::write_scale_folder(&a.output, &opts)?;
        outln!(
            "wrote {n} JPEGs of {} classes under {} in {:.1} s",
            a.classes,
            a.output.display(),
            t.elapsed().as_secs_f64()
        );
    } else {
        let w = synth::write_scale_records(&a.output, &opts)?;
        outln!(
            "wrote {} records of {} classes to {} ({} bytes) in {:.1} s",
            w.num_samples,
            a.classes,
            w.path.display(),
            w.file_len,
            t.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

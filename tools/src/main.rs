//! `uic`: convert image folders into record files (`convert`), `inspect` and `verify` them,
//! `train` UIC on them (one process, or data-parallel ranks under torchrun, srun or
//! `--nproc-per-node`), `eval`uate and `plot` a run, `bench` the loader, the training step
//! and the ranks' gradient sync, check a CUDA build on its GPU (`gpu-check`, with the `cuda`
//! feature), and run the `demo`.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[macro_use]
mod out;

mod bench;
mod convert;
mod demo;
mod eval;
#[cfg(feature = "cuda")]
mod gpu;
mod inspect;
mod interrupt;
mod launch;
mod omp;
mod plot;
mod plots;
mod synth;
mod threads;
mod train;
mod verify;

/// Unsupervised Image Classification: data tools and training.
#[derive(Debug, Parser)]
#[command(name = "uic", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Where record files read from URLs (s3://, gs://, az://, https://) are cached
    /// [env: UIC_CACHE_DIR; default: $XDG_CACHE_HOME/uic or ~/.cache/uic].
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<std::path::PathBuf>,
    /// The most the cache may hold, in GB; entries not in use are removed, oldest use first
    /// [env: UIC_CACHE_LIMIT_GB; default: no limit but the disk's].
    #[arg(long, global = true, value_name = "GB")]
    cache_limit_gb: Option<f64>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert images into a record file: a folder (ImageFolder tree, flat folder + labels, file
    /// list) or tar archives read in place (ImageNet train tar, tar + labels, WebDataset shards).
    Convert(convert::Args),
    /// Show what a record file holds: counts, classes, sizes, storage mode.
    Inspect(inspect::Args),
    /// Check every record's checksum; name each bad record.
    Verify(verify::Args),
    /// Train UIC on a record file: per-epoch metrics.jsonl, checkpoints, plots.
    Train(Box<train::Args>),
    /// Evaluate a checkpoint's features: kNN, linear probes, NMI; with the gain over an untrained backbone.
    Eval(Box<eval::Args>),
    /// GPU correctness checks and nvJPEG timing (a build with `--features cuda[,nvjpeg]`).
    #[cfg(feature = "cuda")]
    GpuCheck(gpu::Args),
    /// Draw a run folder's plots (NMI, loss, lr, class sizes) as PNG.
    Plot(PlotArgs),
    /// Benchmarks: `loader FILE` (the loader alone), `step` (one training step) and `sync` (the ranks' gradient sync).
    #[command(subcommand)]
    Bench(bench::Command),
    /// The demo: synthetic JPEGs of latent classes, converted, trained with UIC on the CPU; NMI rises (no download needed).
    Demo(demo::Args),
    /// Synthetic tiny JPEGs of many classes, straight into a record file (the scale bench).
    #[command(hide = true)]
    Synth(synth::Args),
}

impl Command {
    /// Whether the command runs libtorch's kernels, whose OpenMP threads should not spin
    /// long ([`omp`]).
    fn runs_libtorch(&self) -> bool {
        match self {
            Command::Train(_) | Command::Eval(_) | Command::Demo(_) | Command::Plot(_) => true,
            #[cfg(feature = "cuda")]
            Command::GpuCheck(_) => true,
            Command::Bench(b) => b.runs_libtorch(),
            Command::Convert(_) | Command::Inspect(_) | Command::Verify(_) | Command::Synth(_) => {
                false
            }
        }
    }
}

#[derive(Debug, clap::Args)]
struct PlotArgs {
    /// Run folder of `uic train`.
    dir: std::path::PathBuf,
    /// Record file for the image grid of the most confident classes (default: the file the
    /// run trained on).
    #[arg(long)]
    data: Option<std::path::PathBuf>,
    /// Skip the image grid (it needs an inference pass over the data).
    #[arg(long)]
    no_grid: bool,
}

fn plot(a: &PlotArgs) -> anyhow::Result<ExitCode> {
    let mut ps = plots::write(&a.dir)?;
    if !a.no_grid {
        ps.push(plots::write_grid(&a.dir, a.data.as_deref(), 8, 12)?);
    }
    for p in ps {
        outln!("{}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error, please report it: {info}");
    }));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // The flags of the settings, with their defaults, are the library's `TrainOverrides`.
    let cmd = Cli::command().mut_subcommand("train", train::with_resume_rule);
    let cli = Cli::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit());
    // Before any thread starts, and before the re-execution below, which keeps them: the
    // loader (and the ranks a launcher starts) read the cache settings from the environment.
    if let Some(d) = &cli.cache_dir {
        std::env::set_var(uic_loader::remote::CACHE_DIR_VAR, d);
    }
    if let Some(gb) = cli.cache_limit_gb {
        std::env::set_var(uic_loader::remote::CACHE_LIMIT_VAR, gb.to_string());
    }
    if cli.command.runs_libtorch() {
        omp::bounded_spin();
    }
    uic_trainer::alloc::keep_freed_buffers();
    interrupt::install();
    let result = match cli.command {
        Command::Convert(a) => convert::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Train(a) => train::run(*a),
        Command::Eval(a) => eval::run(*a),
        #[cfg(feature = "cuda")]
        Command::GpuCheck(a) => gpu::run(a),
        Command::Plot(a) => plot(&a),
        Command::Bench(c) => bench::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! `uic`: convert image folders into record files, inspect and verify them, run the demo.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod convert;
mod demo;
mod inspect;
mod verify;

/// Unsupervised Image Classification: data tools and training.
#[derive(Debug, Parser)]
#[command(name = "uic", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert an image folder (ImageFolder tree, flat folder + labels CSV, or file list) into a record file.
    Convert(convert::Args),
    /// Show what a record file holds: counts, classes, sizes, storage mode.
    Inspect(inspect::Args),
    /// Check every record's checksum; name each bad record.
    Verify(verify::Args),
    /// Benchmarks: `uic bench loader FILE`.
    #[command(subcommand)]
    Bench(bench::Command),
    /// Generate a synthetic dataset, convert, inspect and verify it (no download needed).
    Demo(demo::Args),
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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Convert(a) => convert::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Demo(a) => demo::run(a),
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

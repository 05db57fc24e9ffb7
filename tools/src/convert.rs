//! `uic convert`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use uic_loader::convert::{self, ConvertOptions, Progress, SourceOptions};
use uic_loader::StorageMode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Input: a folder (ImageFolder when it has class subfolders; flat otherwise, labels from
    /// --labels), or tar archives read in place: the ImageNet train tar (a tar of per-class
    /// tars), a tar of images with --labels, or WebDataset shards (several files, or a brace
    /// pattern such as 'shard-{000000..000099}.tar', quoted).
    #[arg(required = true, num_args = 1.., value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Output record file; the report goes to OUTPUT.report.json.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Labels file, format told by content: a CSV with a header row (a `file` column, the path
    /// relative to INPUT, and a label column), Kaggle's LOC_val_solution.csv (matched by file
    /// stem), or `file label` lines (ImageNet's val.txt).
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Name of the label column in --labels.
    #[arg(long, value_name = "NAME", default_value = "label")]
    pub label_column: String,
    /// Text file of image paths relative to INPUT, one per line, converted in list order.
    #[arg(long, value_name = "TXT")]
    pub file_list: Option<PathBuf>,
    /// Storage: jpeg (passthrough, or re-encoded with --max-side/--quality) or raw RGB pixels.
    #[arg(long, default_value = "jpeg")]
    pub mode: StorageMode,
    /// Downscale images whose longest side exceeds N pixels (re-encodes every JPEG).
    #[arg(long, value_name = "N")]
    pub max_side: Option<u32>,
    /// JPEG quality of re-encoded images, 1-100 (giving it re-encodes every JPEG; default 90).
    #[arg(long, value_name = "Q")]
    pub quality: Option<u8>,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// Skip images declaring more pixels than this (decompression bombs).
    #[arg(long, value_name = "N", default_value_t = uic_loader::jpeg::DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
    /// Record alignment in the data region, in bytes (a power of two). Default: 4096 when
    /// records average 32 KiB or more, else 64.
    #[arg(long, value_name = "BYTES")]
    pub align: Option<u32>,
    /// Fail, and write no record file, if any input file is skipped.
    #[arg(long)]
    pub strict: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    // A URL: the file is written here first (in the cache folder), then uploaded whole.
    let url = uic_loader::remote::is_url(&a.output).then(|| a.output.display().to_string());
    let (remote_opts, output) = match &url {
        Some(u) => {
            let o = uic_loader::remote::Options::from_env()?;
            uic_loader::remote::check_writable(u, &o)?;
            let dir = o.cache_dir.join("uploads");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let name = u.rsplit('/').next().unwrap_or("out.uicr");
            let local = dir.join(format!("{}-{name}", std::process::id()));
            (Some(o), local)
        }
        None => (None, a.output.clone()),
    };
    let result = convert_to(a, &output);
    let (Some(url), Some(o)) = (url, remote_opts) else {
        return result;
    };
    let report = convert::report_path(&output);
    let uploaded = result.and_then(|code| {
        let bytes = uic_loader::remote::upload(&output, &url, &o)?;
        uic_loader::remote::upload(&report, &format!("{url}.report.json"), &o)?;
        eprintln!("uploaded {bytes} bytes to {url} (report: {url}.report.json)");
        Ok(code)
    });
    let _ = std::fs::remove_file(&output);
    let _ = std::fs::remove_file(&report);
    uploaded
}

fn convert_to(a: Args, output: &Path) -> Result<ExitCode> {
    let opts = ConvertOptions {
        mode: a.mode,
        max_side: a.max_side,
        quality: a.quality,
        threads: crate::threads::cap("--threads", a.threads),
        max_pixels: a.max_pixels,
        align: a.align,
        strict: a.strict,
        sources: SourceOptions {
            labels_csv: a.labels,
            label_column: Some(a.label_column),
            file_list: a.file_list,
        },
        ..Default::default()
    };
    for (p, pid) in uic_loader::temp::remove_stale(output) {
        eprintln!(
            "removed {}, left by an interrupted conversion (process {pid})",
            p.display()
        );
    }
    crate::interrupt::on_interrupt(|| {
        for p in uic_loader::temp::remove_live() {
            eprintln!("interrupted: removed the partial {}", p.display());
        }
    });
    // An existing output is replaced, as `cp` and `tar -f` do; the summary says so.
    let replaces = output.is_file();
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} images, {rate}, eta {eta}")
            .expect("static template")
            // indicatif's own {per_sec} prints `622.1763/s`.
            .with_key(
                "rate",
                |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} images/s", s.per_sec());
                },
            ),
    );
    let report = convert::convert_inputs(&a.inputs, output, &opts, &|p: Progress| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
    });
    bar.finish_and_clear();
    let report = report?;
    let replaced = if replaces {
        " (replaced the existing file)"
    } else {
        ""
    };
    if uic_loader::remote::is_url(&a.output) {
        eprintln!("{}: {}", a.output.display(), report.summary());
    } else {
        eprintln!("{}{replaced}: {}", a.output.display(), report.summary());
        eprintln!("report: {}", convert::report_path(output).display());
    }
    Ok(ExitCode::SUCCESS)
}

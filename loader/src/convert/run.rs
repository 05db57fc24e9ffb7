//! The conversion driver: discover, prepare in parallel, write in order, report.

use std::cell::RefCell;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use crate::convert::prepare::{prepare, Codec, PrepareOptions, Prepared};
use crate::convert::report::Report;
use crate::convert::source::{discover_inputs, SourceItem, SourceOptions, Sources};
use crate::convert::{ReportEntry, SkipReason, Skipped};
use crate::error::{Error, Result};
use crate::format::DEFAULT_ALIGN;
use crate::StorageMode;

/// Records prepared before the alignment is chosen (fixed, so the choice is thread-independent).
const ALIGN_PROBE: usize = 64;
/// Median record size from which records are page-aligned.
const PAGE_ALIGN_FROM: usize = 32 << 10;
/// Alignment of small records: a cache line.
const SMALL_ALIGN: u32 = 64;
use crate::jpeg::DEFAULT_MAX_PIXELS;
use crate::writer::{write_atomic, NewSample, RecordWriter, WriterOptions};

/// Settings of [`convert`]. Build with `..Default::default()`.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Storage mode (default JPEG).
    pub mode: StorageMode,
    /// Downscale images whose longest side exceeds this (implies re-encoding).
    pub max_side: Option<u32>,
    /// JPEG quality of re-encoded images; giving it re-encodes every JPEG (default 90 for
    /// the images that must be re-encoded anyway).
    pub quality: Option<u8>,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// Refuse images declaring more pixels than this (default 89.5 MP, Pillow's limit).
    pub max_pixels: u64,
    /// Skip files larger than this many bytes (default 256 MiB).
    pub max_file_bytes: u64,
    /// Record alignment in bytes, a power of two. `None` (the default) picks 4096, one
    /// page, when the first 64 prepared records have a median size of at least 32 KiB
    /// (padding then costs under ~6%), and 64 bytes otherwise (small images: padding to
    /// pages would double the file and the bytes every epoch reads).
    pub align: Option<u32>,
    /// Fail, writing no record file, if any input is skipped.
    pub strict: bool,
    /// Labels, file list and CSV column.
    pub sources: SourceOptions,
    /// Set from another thread to stop the conversion: it stops before its next chunk of
    /// images (about `16 x threads`), removes its partial output, writes no report, and
    /// returns an [`Error::Input`] saying so. An existing output is kept.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            mode: StorageMode::Jpeg,
            max_side: None,
            quality: None,
            threads: 0,
            max_pixels: DEFAULT_MAX_PIXELS,
            max_file_bytes: 256 << 20,
            align: None,
            strict: false,
            sources: SourceOptions::default(),
            cancel: None,
        }
    }
}

/// Progress of a running conversion, passed to the callback after each chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Files processed so far.
    pub done: usize,
    /// Files to process.
    pub total: usize,
}

/// Where the report of a conversion to `output` goes: `OUTPUT.report.json`.
pub fn report_path(output: &Path) -> PathBuf {
    let mut name: OsString = output.file_name().unwrap_or_default().to_os_string();
    name.push(".report.json");
    output.with_file_name(name)
}

thread_local! {
    static CODEC: RefCell<Option<Codec>> = const { RefCell::new(None) };
}

fn with_codec<T>(
    f: impl FnOnce(&mut Codec) -> std::result::Result<T, SkipReason>,
) -> std::result::Result<T, SkipReason> {
    CODEC.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let codec = Codec::new().map_err(|e| SkipReason::Failed {
                step: "start the JPEG codec",
                detail: e.to_string(),
            })?;
            *slot = Some(codec);
        }
        f(slot.as_mut().expect("codec initialised above"))
    })
}

/// Converts the images under `input` into the record file `output` and writes
/// `OUTPUT.report.json`. The output is byte-identical for the same input whatever the
/// thread count: files are prepared in parallel but written in discovery order.
///
/// # Errors
/// - [`Error::Input`] when nothing usable was found, or under `strict` when anything was
///   skipped; the report is still written and no record file is.
/// - I/O errors on the output, and the errors of [`super::source::discover`].
pub fn convert(
    input: &Path,
    output: &Path,
    opts: &ConvertOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Report> {
    convert_inputs(
        std::slice::from_ref(&input.to_path_buf()),
        output,
        opts,
        progress,
    )
}

/// [`convert`] of several inputs: tar archives (WebDataset shards, say) read one after the
/// other, as [`discover_inputs`] reads them.
///
/// # Errors
/// Those of [`convert`].
pub fn convert_inputs(
    inputs: &[PathBuf],
    output: &Path,
    opts: &ConvertOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Report> {
    let start = Instant::now();
    let input = inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(q) = opts.quality {
        if !(1..=100).contains(&q) {
            return Err(Error::InvalidArgument(format!(
                "--quality {q} is not in 1..=100"
            )));
        }
    }
    if opts.max_side == Some(0) {
        return Err(Error::InvalidArgument(
            "--max-side must be at least 1".into(),
        ));
    }
    let mut sources = discover_inputs(inputs, &opts.sources)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .map_err(|e| {
            Error::InvalidArgument(format!("cannot start {} threads: {e}", opts.threads))
        })?;
    let prep = PrepareOptions {
        mode: opts.mode,
        reencode: opts.max_side.is_some() || opts.quality.is_some(),
        max_side: opts.max_side,
        quality: opts.quality.unwrap_or(90),
        max_pixels: opts.max_pixels,
    };
    let mut report = Report {
        output: output.display().to_string(),
        layout: sources.layout,
        labels_format: sources.labels_format.map(|f| f.name().to_string()),
        mode: opts.mode.name().into(),
        reencode: prep.reencode,
        num_classes: sources.classes.len(),
        threads: pool.current_num_threads(),
        skipped: std::mem::take(&mut sources.skipped),
        input,
        ..Default::default()
    };
    let mut writer: Option<RecordWriter> = None;
    let mut classes = Some(std::mem::take(&mut sources.classes));
    // Chunks bound memory (raw mode holds decoded pixels) while keeping every core busy.
    // The first chunk is a fixed probe so that the alignment choice never depends on threads.
    let chunk = 16 * report.threads.max(1);
    let total = sources.items.len();
    let mut done = 0;
    while done < total {
        if opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
        {
            drop(writer); // removes the temporary file, if any
            return Err(Error::Input(format!(
                "interrupted after {done} of {total} files; nothing written to {}",
                output.display()
            )));
        }
        let size = if done == 0 {
            ALIGN_PROBE.min(total)
        } else {
            chunk.min(total - done)
        };
        let items = &sources.items[done..done + size];
        let results: Vec<(u64, std::result::Result<Prepared, SkipReason>)> = pool.install(|| {
            items
                .par_iter()
                .map(|item| load(&sources, item, &prep, opts.max_file_bytes))
                .collect()
        });
        if writer.is_none() {
            let align = opts.align.unwrap_or_else(|| auto_align(&results));
            let wo = WriterOptions {
                mode: opts.mode,
                align,
                classes: classes.take().unwrap_or_default(),
                group: None,
            };
            let mut w = RecordWriter::create(output, wo)?;
            // The count is known: the tables never grow by copying (half their size at the
            // worst moment of a doubling).
            let path_bytes = sources.items.iter().map(|i| i.rel.as_os_str().len()).sum();
            w.reserve(total, path_bytes);
            writer = Some(w);
        }
        let w = writer.as_mut().expect("created above");
        for (item, (in_bytes, result)) in items.iter().zip(results) {
            match result {
                Ok(p) => {
                    w.append(&NewSample {
                        data: &p.data,
                        width: p.width,
                        height: p.height,
                        label: item.label,
                        source: item.rel.as_os_str().as_bytes(),
                        converted: p.converted,
                    })?;
                    report.kept += 1;
                    report.input_bytes += in_bytes;
                    if let Some(note) = p.note {
                        report.converted.push(named(&sources, item, note));
                    }
                }
                Err(reason) => report.skipped.push(Skipped {
                    path: sources.name(item),
                    reason,
                }),
            }
        }
        done += size;
        progress(Progress { done, total });
    }
    report.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    let elapsed = start.elapsed().as_secs_f64();
    report.seconds = elapsed;
    report.images_per_s = total as f64 / elapsed.max(1e-9);

    let failure = if report.kept == 0 {
        Some(format!(
            "no usable image in {} ({} files skipped)",
            report.input,
            report.skipped.len()
        ))
    } else if opts.strict && !report.skipped.is_empty() {
        let first = &report.skipped[0];
        Some(format!(
            "strict: {} files skipped, first {}: {}",
            report.skipped.len(),
            first.path,
            first.reason
        ))
    } else {
        None
    };
    match writer {
        Some(w) if failure.is_none() => {
            let written = w.finish()?;
            report.output_bytes = written.file_len;
            report.align = written.align;
            report.ok = true;
        }
        _ => drop(writer), // removes the temporary file, if any
    }
    write_report(output, &report)?;
    match failure {
        Some(msg) => Err(Error::Input(format!(
            "{msg}; see {}",
            report_path(output).display()
        ))),
        None => Ok(report),
    }
}

/// 4096 when the probe's median record is large, else 64 (see [`ConvertOptions::align`]).
fn auto_align(probe: &[(u64, std::result::Result<Prepared, SkipReason>)]) -> u32 {
    let mut sizes: Vec<usize> = probe
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(|p| p.data.len())
        .collect();
    sizes.sort_unstable();
    match sizes.get(sizes.len() / 2) {
        Some(&median) if median >= PAGE_ALIGN_FROM => DEFAULT_ALIGN,
        _ => SMALL_ALIGN,
    }
}

fn named(sources: &Sources, item: &SourceItem, reason: String) -> ReportEntry {
    ReportEntry {
        path: sources.name(item),
        reason,
    }
}

fn load(
    sources: &Sources,
    item: &SourceItem,
    prep: &PrepareOptions,
    max_file_bytes: u64,
) -> (u64, std::result::Result<Prepared, SkipReason>) {
    match sources.read(item, max_file_bytes) {
        Ok(bytes) => (bytes.len() as u64, with_codec(|c| prepare(&bytes, prep, c))),
        Err(e) => (0, Err(e)),
    }
}

fn write_report(output: &Path, report: &Report) -> Result<()> {
    let mut json =
        serde_json::to_vec_pretty(report).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    json.push(b'\n');
    write_atomic(&report_path(output), &json)
}

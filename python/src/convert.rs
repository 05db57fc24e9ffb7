//! `uic.convert`: `uic convert` as a function.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyAny;
use uic_loader::convert::{convert_inputs, ConvertOptions, SourceOptions};
use uic_loader::StorageMode;

use crate::error::{invalid, to_py};

/// How long an interrupted conversion is given to stop before Ctrl-C returns anyway.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// One input path, or a list of them (WebDataset shards, or a brace pattern).
fn inputs(input: &Bound<'_, PyAny>) -> PyResult<Vec<PathBuf>> {
    if let Ok(one) = input.extract::<PathBuf>() {
        return Ok(vec![one]);
    }
    let many: Vec<PathBuf> = input.extract().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(
            "input: expected a path (str or os.PathLike) or a list of paths",
        )
    })?;
    if many.is_empty() {
        return Err(invalid("input: an empty list of paths"));
    }
    Ok(many)
}

/// Converts images into a record file, as `uic convert` does, and returns the report (the
/// dict also written to OUTPUT.report.json, plus its one-line `summary`).
#[pyfunction]
#[pyo3(signature = (input, output, labels=None, label_column=None, max_side=None, quality=None, mode="jpeg", threads=0, strict=false, file_list=None, max_pixels=None))]
#[allow(clippy::too_many_arguments)]
pub fn convert<'py>(
    py: Python<'py>,
    input: &Bound<'py, PyAny>,
    output: PathBuf,
    labels: Option<PathBuf>,
    label_column: Option<String>,
    max_side: Option<i64>,
    quality: Option<i64>,
    mode: &str,
    threads: i64,
    strict: bool,
    file_list: Option<PathBuf>,
    max_pixels: Option<i64>,
) -> PyResult<Bound<'py, PyAny>> {
    let inputs = inputs(input)?;
    let mode = match mode {
        "jpeg" => StorageMode::Jpeg,
        "raw" => StorageMode::Raw,
        m => return Err(invalid(format!("mode {m:?}: expected \"jpeg\" or \"raw\""))),
    };
    let max_side = match max_side {
        None => None,
        Some(s) if (1..=i64::from(u32::MAX)).contains(&s) => Some(s as u32),
        Some(s) => return Err(invalid(format!("max_side {s} must be at least 1"))),
    };
    let quality = match quality {
        None => None,
        Some(q) if (1..=100).contains(&q) => Some(q as u8),
        Some(q) => return Err(invalid(format!("quality {q} is not in 1..=100"))),
    };
    if threads < 0 {
        return Err(invalid(format!("threads {threads}: 0 means one per core")));
    }
    let max_pixels = match max_pixels {
        None => uic_loader::jpeg::DEFAULT_MAX_PIXELS,
        Some(p) if p >= 1 => p as u64,
        Some(p) => return Err(invalid(format!("max_pixels {p} must be at least 1"))),
    };
    let opts = ConvertOptions {
        mode,
        max_side,
        quality,
        threads: threads as usize,
        strict,
        max_pixels,
        sources: SourceOptions {
            labels_csv: labels,
            label_column,
            file_list,
        },
        ..Default::default()
    };
    for (p, pid) in uic_loader::temp::remove_stale(&output) {
        let msg = format!(
            "removed {}, left by an interrupted conversion (process {pid})",
            p.display()
        );
        crate::error::warn::<pyo3::exceptions::PyUserWarning>(py, &msg)?;
    }

    // The conversion runs on its own thread while this one waits without the GIL, in
    // slices, checking for Ctrl-C between them. On an interrupt it is cancelled (it stops
    // before its next chunk of images and removes its partial output; an existing output is
    // kept) and, once it has stopped, KeyboardInterrupt propagates.
    let cancel = Arc::new(AtomicBool::new(false));
    let opts = ConvertOptions {
        cancel: Some(cancel.clone()),
        ..opts
    };
    let (tx, mut results) = mpsc::channel();
    std::thread::Builder::new()
        .name("uic-convert".into())
        .spawn(move || {
            let r = convert_inputs(&inputs, &output, &opts, &|_| {});
            let _ = tx.send(r);
        })
        .map_err(|e| invalid(format!("cannot start the conversion thread: {e}")))?;
    let report = loop {
        // `&mut` is Send where the receiver is (it is not Sync).
        let rx = &mut results;
        match py.detach(move || rx.recv_timeout(Duration::from_millis(100))) {
            Ok(r) => break r.map_err(to_py)?,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(interrupt) = py.check_signals() {
                    cancel.store(true, Ordering::SeqCst);
                    // A chunk takes well under a second; listing a huge tar may not look
                    // at the flag for longer, so the partial output is removed regardless.
                    let rx = &mut results;
                    let stopped = py.detach(move || rx.recv_timeout(STOP_WAIT).is_ok());
                    if !stopped {
                        uic_loader::temp::remove_live();
                    }
                    return Err(interrupt);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                uic_loader::temp::remove_live();
                return Err(pyo3::exceptions::PyRuntimeError::new_err(
                    "the conversion thread stopped without a result (a bug: please report it)",
                ));
            }
        }
    };
    let json = serde_json::to_string(&report)
        .map_err(|e| invalid(format!("cannot serialise the report: {e}")))?;
    let dict = py.import("json")?.call_method1("loads", (json,))?;
    dict.set_item("summary", report.summary())?;
    Ok(dict)
}

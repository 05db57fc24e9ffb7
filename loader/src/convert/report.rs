//! The JSON report written next to every converted file: nothing is skipped silently.

use serde::Serialize;

/// One file that was skipped or altered, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportEntry {
    /// Path relative to the input root (lossy UTF-8 for non-UTF-8 names).
    pub path: String,
    /// Why it was skipped or what was changed.
    pub reason: String,
}

/// What a conversion did. Written as `OUTPUT.report.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The input folder.
    pub input: String,
    /// The record file (written only when `ok` is true).
    pub output: String,
    /// Whether the record file was written.
    pub ok: bool,
    /// How the input was read: `image-folder`, `flat-labels`, `flat` or `file-list`.
    pub layout: String,
    /// Storage mode of the output.
    pub mode: String,
    /// Whether every JPEG was re-encoded (`--max-side` or `--quality` given).
    pub reencode: bool,
    /// Samples written.
    pub kept: usize,
    /// Files kept but altered beyond what the mode asks for (a PNG stored as JPEG, CMYK
    /// converted to RGB), with what was done.
    pub converted: Vec<ReportEntry>,
    /// Files not written, with the reason.
    pub skipped: Vec<ReportEntry>,
    /// Number of classes (0 when unlabeled).
    pub num_classes: usize,
    /// Bytes of the source files that were kept.
    pub input_bytes: u64,
    /// Size of the record file.
    pub output_bytes: u64,
    /// Record alignment chosen (0 when nothing was written).
    pub align: u32,
    /// Threads used.
    pub threads: usize,
    /// Wall time of the conversion, in seconds.
    pub seconds: f64,
    /// Input files processed per second.
    pub images_per_s: f64,
}

impl Report {
    /// The one-line summary printed after a conversion.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "kept {} images ({} converted, {} skipped) in {:.1} s, {:.0} images/s; {} -> {} ({:.0}%)",
            self.kept,
            self.converted.len(),
            self.skipped.len(),
            self.seconds,
            self.images_per_s,
            human_bytes(self.input_bytes),
            human_bytes(self.output_bytes),
            100.0 * self.output_bytes as f64 / self.input_bytes.max(1) as f64
        );
        if let Some(first) = self.skipped.first() {
            s.push_str(&format!(
                "; first skipped: {}: {}",
                first.path, first.reason
            ));
        }
        s
    }
}

/// `1234567` -> `"1.2 MB"`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

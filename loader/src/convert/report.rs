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
    /// The input: a folder, an archive, or several archives separated by spaces.
    pub input: String,
    /// The record file (written only when `ok` is true).
    pub output: String,
    /// Whether the record file was written.
    pub ok: bool,
    /// How the input was read: `image-folder`, `flat-labels`, `flat`, `file-list`,
    /// `imagenet-train-tar`, `tar-labels`, `tar` or `webdataset`.
    pub layout: String,
    /// The labels file's format when one was read: `csv`, `kaggle-loc-csv` or
    /// `file-label-text`.
    pub labels_format: Option<String>,
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
    /// The one-line summary printed after a conversion. "converted" counts files changed
    /// in kind to be stored (a PNG as JPEG, CMYK as RGB); a re-encode of every JPEG
    /// (`--max-side`, `--quality`) is said as "all re-encoded". When files were skipped for
    /// more than one reason, the count of each follows.
    pub fn summary(&self) -> String {
        let reencoded = if self.reencode && self.kept > 0 {
            "all re-encoded, "
        } else {
            ""
        };
        let mut s = format!(
            "kept {} images ({reencoded}{} converted, {} skipped) in {:.1} s, {:.0} images/s; {} -> {} ({:.0}%)",
            self.kept,
            self.converted.len(),
            self.skipped.len(),
            self.seconds,
            self.images_per_s,
            human_bytes(self.input_bytes),
            human_bytes(self.output_bytes),
            100.0 * self.output_bytes as f64 / self.input_bytes.max(1) as f64
        );
        if matches!(
            self.layout.as_str(),
            "imagenet-train-tar" | "tar-labels" | "tar" | "webdataset"
        ) {
            s.push_str(&format!("; read as {}", self.layout));
        }
        if let Some(f) = &self.labels_format {
            s.push_str(&format!("; labels: {f}"));
        }
        let kinds = skip_kinds(&self.skipped);
        if kinds.len() > 1 {
            let each: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
            s.push_str(&format!("; skipped: {}", each.join(", ")));
        }
        if let Some(first) = self.skipped.first() {
            s.push_str(&format!(
                "; first skipped: {}: {}",
                first.path, first.reason
            ));
        }
        s
    }
}

/// The kind of a skip reason: its text before any `:` (the detail), with each run of digits
/// written `N`, so that "file is 9 bytes, over the 8-byte limit" and "... 12 bytes ..." are
/// one kind.
fn skip_kind(reason: &str) -> String {
    let head = reason.split(':').next().unwrap_or(reason).trim();
    let mut out = String::with_capacity(head.len());
    let mut in_digits = false;
    for c in head.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// Skips counted by kind, the commonest first (ties by name).
fn skip_kinds(skipped: &[ReportEntry]) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for e in skipped {
        *counts.entry(skip_kind(&e.reason)).or_insert(0usize) += 1;
    }
    let mut v: Vec<(String, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
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

#[cfg(test)]
mod tests {
    use super::*;

    fn skipped(path: &str, reason: &str) -> ReportEntry {
        ReportEntry {
            path: path.into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn the_summary_counts_each_kind_of_skip() {
        let mut r = Report {
            kept: 5,
            skipped: vec![
                skipped("a.txt", "not an image file extension"),
                skipped("b.jpg", "not a decodable JPEG: bad Huffman table"),
                skipped("c.md", "not an image file extension"),
                skipped("d.jpg", "not a decodable JPEG: premature end"),
                skipped("e.jpg", "file is 900 bytes, over the 800-byte limit"),
            ],
            ..Report::default()
        };
        let s = r.summary();
        assert!(
            s.starts_with("kept 5 images (0 converted, 5 skipped)"),
            "{s}"
        );
        assert!(
            s.contains(
                "; skipped: 2 not a decodable JPEG, 2 not an image file extension, 1 file is N \
                 bytes, over the N-byte limit; first skipped: a.txt: not an image file extension"
            ),
            "{s}"
        );
        // One kind: no breakdown, just the first.
        r.skipped.truncate(1);
        r.reencode = true;
        let s = r.summary();
        assert!(
            s.starts_with("kept 5 images (all re-encoded, 0 converted, 1 skipped)"),
            "{s}"
        );
        assert!(!s.contains("; skipped:"), "{s}");
    }
}

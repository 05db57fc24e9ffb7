//! The JSON report written next to every converted file: nothing is skipped silently.

use std::borrow::Cow;

use serde::Serialize;

use super::skip::SkipReason;
use super::source::Layout;

/// One file that was skipped or altered, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportEntry {
    /// Path relative to the input root (lossy UTF-8 for non-UTF-8 names).
    pub path: String,
    /// Why it was skipped or what was changed.
    pub reason: String,
}

/// One input that was not written, and why. Serialised as `{"path", "reason"}`, the
/// reason as its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Path relative to the input root, or an archive member's name (lossy UTF-8).
    pub path: String,
    /// Why it was left out.
    #[serde(serialize_with = "as_text")]
    pub reason: SkipReason,
}

fn as_text<S: serde::Serializer>(r: &SkipReason, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(r)
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
    /// How the input was read; in the JSON, its name: `image-folder`, `flat-labels`,
    /// `flat`, `file-list`, `imagenet-train-tar`, `tar-labels`, `tar` or `webdataset`.
    pub layout: Layout,
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
    pub skipped: Vec<Skipped>,
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
        // Files the labels file leaves out are not damaged or unusable: said apart.
        let unlabelled = self
            .skipped
            .iter()
            .filter(|e| e.reason.is_unlabelled())
            .count();
        let not_listed = match unlabelled {
            0 => String::new(),
            n => format!(", {n} not in the labels file"),
        };
        let mut s = format!(
            "kept {} images ({reencoded}{} converted, {} skipped{not_listed}) in {:.1} s, {:.0} images/s; {} -> {} ({:.0}%)",
            self.kept,
            self.converted.len(),
            self.skipped.len() - unlabelled,
            self.seconds,
            self.images_per_s,
            human_bytes(self.input_bytes),
            human_bytes(self.output_bytes),
            100.0 * self.output_bytes as f64 / self.input_bytes.max(1) as f64
        );
        if self.layout.is_archive() {
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
        // The first file that is damaged or unusable, else the first the labels leave out.
        let first = self
            .skipped
            .iter()
            .find(|e| !e.reason.is_unlabelled())
            .or(self.skipped.first());
        if let Some(first) = first {
            s.push_str(&format!(
                "; first skipped: {}: {}",
                first.path, first.reason
            ));
        }
        s
    }
}

/// Skips counted by kind, the commonest first (ties by name); files the labels file leaves
/// out are counted apart.
fn skip_kinds(skipped: &[Skipped]) -> Vec<(Cow<'static, str>, usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for e in skipped.iter().filter(|e| !e.reason.is_unlabelled()) {
        *counts.entry(e.reason.kind()).or_insert(0usize) += 1;
    }
    let mut v: Vec<(Cow<'static, str>, usize)> = counts.into_iter().collect();
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
    use super::super::skip::TarDamage;
    use super::*;

    fn skipped(path: &str, reason: SkipReason) -> Skipped {
        Skipped {
            path: path.into(),
            reason,
        }
    }

    fn undecodable(detail: &str) -> SkipReason {
        SkipReason::Undecodable {
            format: "JPEG".into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn the_summary_counts_each_kind_of_skip() {
        let mut r = Report {
            kept: 5,
            skipped: vec![
                skipped("a.txt", SkipReason::NotImageExtension),
                skipped("b.jpg", undecodable("bad Huffman table")),
                skipped("c.md", SkipReason::NotImageExtension),
                skipped("d.jpg", undecodable("premature end")),
                skipped(
                    "e.jpg",
                    SkipReason::TooLarge {
                        bytes: 900,
                        limit: 800,
                    },
                ),
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
                "; skipped: 2 not a decodable JPEG, 2 not an image file extension, 1 over \
                 the size limit; first skipped: a.txt: not an image file extension"
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

    /// Reasons whose details hold colons and parentheses are counted whole, and files the
    /// labels file leaves out are said apart from damaged ones.
    #[test]
    fn mixed_reasons_are_counted_by_kind_not_by_their_text() {
        let r = Report {
            kept: 3,
            skipped: vec![
                skipped("x.csv", SkipReason::NotInLabels { noun: "labels CSV" }),
                skipped(
                    "train.tar",
                    SkipReason::TarDamage(TarDamage::BadHeader {
                        at: 1024,
                        detail: "numeric field was not a number: 'x' when getting size".into(),
                        next: Some(2048),
                        rest: 4096,
                    }),
                ),
                skipped("y.jpg", SkipReason::NotInLabels { noun: "labels CSV" }),
                skipped("z.jpg", undecodable("premature end (at byte 3)")),
            ],
            ..Report::default()
        };
        let s = r.summary();
        assert!(
            s.starts_with("kept 3 images (0 converted, 2 skipped, 2 not in the labels file)"),
            "{s}"
        );
        assert!(
            s.contains(
                "; skipped: 1 damaged tar archive, 1 not a decodable JPEG; first skipped: \
                 train.tar: damaged tar header at byte 1024"
            ),
            "{s}"
        );
        // The JSON keeps its keys and the reason's text.
        let v = serde_json::to_value(&r.skipped[0]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"path": "x.csv", "reason": "no label for this file in the labels CSV"})
        );
    }
}

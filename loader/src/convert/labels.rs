//! Labels files: which class each image of a flat folder or tar belongs to.
//!
//! Three formats, told apart by their content (the first non-blank line):
//! - **CSV** with a header row naming a file column (`file`, `path`, `filename` or `image`)
//!   and a label column (`label`, or the one `--label-column` names); files match by their
//!   path relative to the input.
//! - **Kaggle's `LOC_val_solution.csv`**: the header `ImageId,PredictionString`; the label
//!   is the first token of `PredictionString` (`n01751748 73 2 300 249 …` → `n01751748`),
//!   and `ImageId` has no extension, so files match by their path without its extension.
//! - **`file label` text**, the `val.txt` of many ImageNet pipelines: no header, one image
//!   per line, the label after the last run of whitespace (so names may hold spaces).
//!
//! A line holding a comma makes the file a CSV; anything else is `file label` text.
//! Labels that are all integers are ordered as numbers, others as bytes; the class index
//! is the label's rank in that order.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use crate::error::{Error, Result};

/// How a labels file was written, detected by `read_labels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelsFormat {
    /// A CSV with a header row and a file and a label column.
    Csv,
    /// Kaggle's `LOC_val_solution.csv` (`ImageId,PredictionString`).
    KaggleLoc,
    /// Whitespace-separated `file label` lines (`val.txt`).
    FileLabel,
}

impl LabelsFormat {
    /// The name used in reports and summaries.
    pub fn name(self) -> &'static str {
        match self {
            LabelsFormat::Csv => "csv",
            LabelsFormat::KaggleLoc => "kaggle-loc-csv",
            LabelsFormat::FileLabel => "file-label-text",
        }
    }

    /// How messages name the file.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            LabelsFormat::Csv | LabelsFormat::KaggleLoc => "labels CSV",
            LabelsFormat::FileLabel => "labels file",
        }
    }
}

/// A parsed labels file.
#[derive(Debug)]
pub(crate) struct Labels {
    pub(crate) format: LabelsFormat,
    /// Class names, in label order.
    pub(crate) classes: Vec<Vec<u8>>,
    /// Class of each key (a relative path, or a path without its extension).
    by_key: HashMap<Vec<u8>, u32>,
    /// The keys in file order, once each.
    pub(crate) rows: Vec<Vec<u8>>,
}

impl Labels {
    /// The key under which the file at relative path `rel` is listed.
    pub(crate) fn key(&self, rel: &[u8]) -> Vec<u8> {
        match self.format {
            LabelsFormat::KaggleLoc => without_extension(rel).to_vec(),
            LabelsFormat::Csv | LabelsFormat::FileLabel => rel.to_vec(),
        }
    }

    /// The class of a key from [`Labels::key`].
    pub(crate) fn class_of(&self, key: &[u8]) -> Option<u32> {
        self.by_key.get(key).copied()
    }
}

/// `a/b.JPEG` → `a/b`; a dot that starts the name or sits in a folder is kept.
fn without_extension(rel: &[u8]) -> &[u8] {
    let name_start = rel.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    match rel[name_start..].iter().rposition(|&b| b == b'.') {
        Some(dot) if dot > 0 => &rel[..name_start + dot],
        _ => rel,
    }
}

/// Reads a labels file in any of the three formats; `column` picks a CSV's label column
/// (default `label`) and is ignored by the others.
pub(crate) fn read_labels(path: &Path, column: Option<&str>) -> Result<Labels> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Input(format!("cannot read labels file {}: {e}", path.display())))?;
    let first = bytes
        .split(|&b| b == b'\n')
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))
        .unwrap_or_default();
    let format = if !first.contains(&b',') {
        LabelsFormat::FileLabel
    } else {
        let names = header_names(first);
        let has = |n: &str| names.iter().any(|h| h.eq_ignore_ascii_case(n));
        if has("ImageId") && has("PredictionString") {
            LabelsFormat::KaggleLoc
        } else {
            LabelsFormat::Csv
        }
    };
    let bad = |msg: String| {
        Error::Input(format!(
            "{} {} ({}): {msg}",
            format.noun(),
            path.display(),
            format.name()
        ))
    };
    let raw_rows = match format {
        LabelsFormat::Csv => csv_rows(&bytes, column.unwrap_or("label"), &bad)?,
        LabelsFormat::KaggleLoc => kaggle_rows(&bytes, &bad)?,
        LabelsFormat::FileLabel => text_rows(&bytes, &bad)?,
    };
    if raw_rows.is_empty() {
        return Err(bad("no labelled file in it".into()));
    }
    let (classes, by_key, rows) = index(raw_rows, &bad)?;
    Ok(Labels {
        format,
        classes,
        by_key,
        rows,
    })
}

fn header_names(line: &[u8]) -> Vec<String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line)
        .split(',')
        .map(|h| {
            h.trim()
                .trim_matches('"')
                .trim_start_matches('\u{feff}')
                .to_string()
        })
        .collect()
}

type Rows = Vec<(Vec<u8>, Vec<u8>)>;

fn csv_rows(bytes: &[u8], label_name: &str, bad: &dyn Fn(String) -> Error) -> Result<Rows> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    let headers = rdr.byte_headers().map_err(|e| bad(e.to_string()))?.clone();
    let names: Vec<String> = headers
        .iter()
        .map(|h| {
            String::from_utf8_lossy(h)
                .trim()
                .trim_start_matches('\u{feff}')
                .to_string()
        })
        .collect();
    let find = |wanted: &[&str]| {
        names
            .iter()
            .position(|n| wanted.iter().any(|w| n.eq_ignore_ascii_case(w)))
    };
    let file_col = find(&["file", "path", "filename", "image"]).ok_or_else(|| {
        bad(format!(
            "no file column (expected one named file, path or filename; columns: {})",
            names.join(", ")
        ))
    })?;
    let label_col = find(&[label_name]).ok_or_else(|| {
        bad(format!(
            "no column named {label_name:?} (columns: {}); pick the label column with --label-column",
            names.join(", ")
        ))
    })?;
    let mut rows = Vec::new();
    for (i, rec) in rdr.byte_records().enumerate() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let line = i + 2;
        let file = rec
            .get(file_col)
            .filter(|f| !f.is_empty())
            .ok_or_else(|| bad(format!("line {line}: empty file name")))?;
        let label = rec
            .get(label_col)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad(format!("line {line}: empty label")))?;
        rows.push((file.to_vec(), label.to_vec()));
    }
    Ok(rows)
}

fn kaggle_rows(bytes: &[u8], bad: &dyn Fn(String) -> Error) -> Result<Rows> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    let headers = rdr.byte_headers().map_err(|e| bad(e.to_string()))?.clone();
    let col = |want: &str| {
        headers.iter().position(|h| {
            String::from_utf8_lossy(h)
                .trim()
                .trim_start_matches('\u{feff}')
                .eq_ignore_ascii_case(want)
        })
    };
    // Detection splits the first line naively; the CSV reader may still see other names
    // (a stray quote: `PredictionString"`), so a missing column is an error, not a panic.
    let (Some(id_col), Some(pred_col)) = (col("ImageId"), col("PredictionString")) else {
        return Err(bad(
            "the header names ImageId and PredictionString, but not as CSV columns (stray quotes?)"
                .into(),
        ));
    };
    let mut rows = Vec::new();
    for (i, rec) in rdr.byte_records().enumerate() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let line = i + 2;
        let id = rec
            .get(id_col)
            .map(<[u8]>::trim_ascii)
            .filter(|f| !f.is_empty())
            .ok_or_else(|| bad(format!("line {line}: empty ImageId")))?;
        let label = rec
            .get(pred_col)
            .and_then(|p| p.split(u8::is_ascii_whitespace).find(|t| !t.is_empty()))
            .ok_or_else(|| bad(format!("line {line}: empty PredictionString")))?;
        rows.push((id.to_vec(), label.to_vec()));
    }
    Ok(rows)
}

fn text_rows(bytes: &[u8], bad: &dyn Fn(String) -> Error) -> Result<Rows> {
    let mut rows = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let split = line
            .iter()
            .rposition(u8::is_ascii_whitespace)
            .ok_or_else(|| {
                bad(format!(
                    "line {}: expected `file label`, found one field: {}",
                    i + 1,
                    String::from_utf8_lossy(line)
                ))
            })?;
        let file = line[..split].trim_ascii_end();
        rows.push((file.to_vec(), line[split + 1..].to_vec()));
    }
    Ok(rows)
}

type Indexed = (Vec<Vec<u8>>, HashMap<Vec<u8>, u32>, Vec<Vec<u8>>);

/// Classes in label order, the class of each key, and the keys once each in file order.
fn index(raw_rows: Rows, bad: &dyn Fn(String) -> Error) -> Result<Indexed> {
    let classes = class_order(raw_rows.iter().map(|(_, l)| l.as_slice()));
    let rank: HashMap<&[u8], u32> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_slice(), i as u32))
        .collect();
    let mut by_key = HashMap::with_capacity(raw_rows.len());
    let mut rows = Vec::with_capacity(raw_rows.len());
    for (file, label) in &raw_rows {
        let c = rank[label.as_slice()];
        if let Some(prev) = by_key.insert(file.clone(), c) {
            if prev != c {
                return Err(bad(format!(
                    "{} has two different labels",
                    String::from_utf8_lossy(file)
                )));
            }
            continue;
        }
        rows.push(file.clone());
    }
    Ok((classes, by_key, rows))
}

/// The distinct labels in class order: as numbers when all are integers, else as bytes.
pub(crate) fn class_order<'a>(labels: impl Iterator<Item = &'a [u8]>) -> Vec<Vec<u8>> {
    let unique: BTreeSet<&[u8]> = labels.collect();
    let mut classes: Vec<Vec<u8>> = unique.into_iter().map(<[u8]>::to_vec).collect();
    let numeric = |l: &[u8]| {
        std::str::from_utf8(l)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    if classes.iter().all(|c| numeric(c).is_some()) {
        classes.sort_by_key(|c| numeric(c));
    }
    classes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Labels> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("labels");
        std::fs::write(&p, text).unwrap();
        read_labels(&p, None)
    }

    fn class_of(l: &Labels, rel: &str) -> Option<String> {
        let c = l.class_of(&l.key(rel.as_bytes()))?;
        Some(String::from_utf8(l.classes[c as usize].clone()).unwrap())
    }

    #[test]
    fn detects_each_format_and_reads_its_labels() {
        let csv = read("file,label\nb.jpg,dog\na.jpg,cat\n").unwrap();
        assert_eq!(csv.format, LabelsFormat::Csv);
        assert_eq!(class_of(&csv, "a.jpg").as_deref(), Some("cat"));
        assert_eq!(class_of(&csv, "a").as_deref(), None);

        let loc = read(
            "ImageId,PredictionString\r\nILSVRC2012_val_00000002,n01751748 73 2 300 249 n01751748 1 2 3 4\r\n\
             ILSVRC2012_val_00000001,n01440764 1 2 3 4\r\n",
        )
        .unwrap();
        assert_eq!(loc.format, LabelsFormat::KaggleLoc);
        assert_eq!(loc.classes, [b"n01440764".to_vec(), b"n01751748".to_vec()]);
        assert_eq!(
            class_of(&loc, "ILSVRC2012_val_00000002.JPEG").as_deref(),
            Some("n01751748")
        );
        assert_eq!(
            class_of(&loc, "ILSVRC2012_val_00000002").as_deref(),
            Some("n01751748")
        );
        assert_eq!(class_of(&loc, "ILSVRC2012_val_00000003.JPEG"), None);

        let txt = read("x y.JPEG 10\n\nb.JPEG\t2\na.JPEG 9\n").unwrap();
        assert_eq!(txt.format, LabelsFormat::FileLabel);
        // Integers order as numbers: 2 < 9 < 10.
        assert_eq!(txt.classes, [b"2".to_vec(), b"9".to_vec(), b"10".to_vec()]);
        assert_eq!(class_of(&txt, "x y.JPEG").as_deref(), Some("10"));
        assert_eq!(txt.rows.len(), 3);
    }

    #[test]
    fn malformed_files_are_refused_with_the_line() {
        let one_field = read("a.JPEG 1\nb.JPEG\n").unwrap_err().to_string();
        assert!(
            one_field.contains("line 2") && one_field.contains("file-label-text"),
            "{one_field}"
        );
        let empty_pred = read("ImageId,PredictionString\na,\n")
            .unwrap_err()
            .to_string();
        assert!(
            empty_pred.contains("line 2: empty PredictionString"),
            "{empty_pred}"
        );
        let twice = read("a.jpg 1\na.jpg 2\n").unwrap_err().to_string();
        assert!(twice.contains("a.jpg has two different labels"), "{twice}");
        let empty = read("\n\n").unwrap_err().to_string();
        assert!(empty.contains("no labelled file"), "{empty}");
        let no_col = read("file,class\na,b\n").unwrap_err().to_string();
        assert!(no_col.contains("--label-column"), "{no_col}");
    }

    #[test]
    fn extension_is_cut_from_the_name_only() {
        assert_eq!(without_extension(b"a/b.c/d.JPEG"), b"a/b.c/d");
        assert_eq!(without_extension(b"a.b/c"), b"a.b/c");
        assert_eq!(without_extension(b".hidden"), b".hidden");
    }
}

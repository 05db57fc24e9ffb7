//! `uic inspect`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;
use uic_loader::RecordFile;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Record file.
    pub file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Order statistics of a list of numbers.
#[derive(Debug, Serialize)]
pub struct Dist {
    min: u64,
    p10: u64,
    p50: u64,
    p90: u64,
    max: u64,
    mean: f64,
}

impl Dist {
    fn of(mut v: Vec<u64>) -> Option<Dist> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        Some(Dist {
            min: v[0],
            p10: q(0.1),
            p50: q(0.5),
            p90: q(0.9),
            max: v[v.len() - 1],
            mean,
        })
    }
}

impl std::fmt::Display for Dist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "min {}  p10 {}  median {}  p90 {}  max {}  (mean {:.0})",
            self.min, self.p10, self.p50, self.p90, self.max, self.mean
        )
    }
}

#[derive(Debug, Serialize)]
struct ClassCount {
    name: String,
    count: u64,
}

#[derive(Debug, Serialize)]
struct Inspection {
    path: String,
    version: u32,
    mode: String,
    align: u32,
    num_samples: usize,
    num_classes: usize,
    converted: usize,
    file_bytes: u64,
    payload_bytes: u64,
    width: Option<Dist>,
    height: Option<Dist>,
    bytes: Option<Dist>,
    classes: Vec<ClassCount>,
    class_sizes: Option<Dist>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let f = RecordFile::open(&a.file)?;
    let n = f.len();
    // The sample table only: nothing of a remote file's images is fetched.
    let entries: Vec<_> = (0..n).map(|i| f.record_entry(i)).collect();
    let mut counts = vec![0u64; f.num_classes()];
    for e in &entries {
        if e.label != uic_loader::format::NO_LABEL {
            counts[e.label as usize] += 1;
        }
    }
    let h = f.header();
    let info = Inspection {
        path: a.file.display().to_string(),
        version: h.version,
        mode: f.mode().to_string(),
        align: h.align,
        num_samples: n,
        num_classes: f.num_classes(),
        converted: entries
            .iter()
            .filter(|e| e.flags & uic_loader::format::ENTRY_CONVERTED != 0)
            .count(),
        file_bytes: h.file_len,
        payload_bytes: entries.iter().map(|e| e.len as u64).sum(),
        width: Dist::of(entries.iter().map(|e| e.width as u64).collect()),
        height: Dist::of(entries.iter().map(|e| e.height as u64).collect()),
        bytes: Dist::of(entries.iter().map(|e| e.len as u64).collect()),
        class_sizes: Dist::of(counts.clone()),
        classes: counts
            .iter()
            .enumerate()
            .map(|(c, &count)| ClassCount {
                name: f.class_name(c).into_owned(),
                count,
            })
            .collect(),
    };
    if a.json {
        outln!("{}", serde_json::to_string(&info)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!("file      {} ({} bytes)", info.path, info.file_bytes);
    outln!(
        "format    version {}, {} storage, records aligned to {} bytes",
        info.version,
        info.mode,
        info.align
    );
    outln!(
        "samples   {} ({} re-encoded or converted: stored bytes are not the source file's)",
        n,
        info.converted
    );
    let payload_pct = 100.0 * info.payload_bytes as f64 / info.file_bytes.max(1) as f64;
    outln!(
        "payload   {} bytes ({payload_pct:.1}% of the file)",
        info.payload_bytes
    );
    if let (Some(w), Some(hh), Some(b)) = (&info.width, &info.height, &info.bytes) {
        outln!("width     {w}");
        outln!("height    {hh}");
        outln!("bytes     {b}");
    }
    if info.num_classes == 0 {
        outln!("classes   none (unlabeled)");
    } else {
        outln!(
            "classes   {}; images per class: {}",
            info.num_classes,
            info.class_sizes.as_ref().expect("classes")
        );
        let shown = info.classes.len().min(10);
        for c in &info.classes[..shown] {
            outln!("          {:>8}  {}", c.count, c.name);
        }
        if info.classes.len() > shown {
            outln!(
                "          ... {} more (--json lists all)",
                info.classes.len() - shown
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

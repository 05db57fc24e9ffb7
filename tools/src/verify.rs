//! `uic verify`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use uic_loader::RecordFile;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Record file.
    pub file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let f = RecordFile::open(&a.file)?;
    f.fetch_all()?;
    let bad = f.verify();
    if a.json {
        let out = serde_json::json!({
            "ok": bad.is_empty(),
            "num_samples": f.len(),
            "bad": bad,
        });
        outln!("{out}");
    } else {
        for b in &bad {
            outln!(
                "bad record {} ({}): checksum {:#010x}, expected {:#010x}",
                b.index,
                b.path,
                b.actual,
                b.expected
            );
        }
        if bad.is_empty() {
            outln!(
                "ok: all {} records match their checksums ({})",
                f.len(),
                a.file.display()
            );
        }
    }
    if bad.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {} of {} records are corrupt ({})",
            bad.len(),
            f.len(),
            a.file.display()
        );
        Ok(ExitCode::FAILURE)
    }
}

//! `uic eval knn|linear|nmi|all`: how good a checkpoint's features are, against an untrained
//! backbone of the same architecture. Flags -> [`uic_trainer::eval::evaluate`] -> print.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use uic_trainer::eval::{evaluate_with, EvalReport, ProbeChoice, Protocol, Scores, Stage};
use uic_trainer::infer::Layer;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A run folder of `uic train`, or its checkpoint/ folder.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Labelled record file. Without --test-data, a seeded split of it (--train-frac).
    #[arg(long)]
    pub data: PathBuf,
    /// Labelled record file to test on; --data is then used whole for training the probes.
    /// Its classes are matched to --data's by name: a class --data lacks is refused, a
    /// subset of --data's classes is scored with a warning.
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// The evaluation's settings: the library's `Protocol`, each field a flag.
    #[command(flatten)]
    pub protocol: Protocol,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let mut progress = Progress::new();
    let report = evaluate_with(
        &a.checkpoint,
        &a.data,
        a.test_data.as_deref(),
        &a.protocol,
        &mut |s| progress.stage(s),
    );
    progress.finish();
    let report = report?;
    if a.json {
        // Through a `Value`, whose object keys are sorted, as they always were.
        outln!("{}", serde_json::to_value(&report)?);
    } else {
        print_text(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the evaluation is, on stderr: on a terminal a bar over the stages with the time
/// spent and to go; otherwise one line as each stage starts, with the time so far.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    start: std::time::Instant,
}

impl Progress {
    fn new() -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template(
                    "eval {bar:20} {pos}/{len} stages, {elapsed} so far, ETA {eta}: {msg}",
                )
                .expect("static template"),
            )
        });
        Progress {
            bar,
            start: std::time::Instant::now(),
        }
    }

    fn stage(&mut self, s: Stage) {
        match &self.bar {
            Some(b) => {
                b.set_length(s.total as u64);
                b.set_position(s.index as u64);
                b.set_message(s.what);
            }
            None => eprintln!(
                "eval {}/{}: {} ({:.0} s so far)",
                s.index + 1,
                s.total,
                s.what,
                self.start.elapsed().as_secs_f64()
            ),
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// A number as JSON writes it (`1.0`, `0.0001`).
fn num(x: f64) -> String {
    serde_json::Value::from(x).to_string()
}

fn print_text(r: &EvalReport) {
    outln!(
        "{} after epoch {} ({}), {} training / {} test images",
        r.checkpoint.display(),
        r.epoch,
        r.arch,
        r.train_images,
        r.test_images
    );
    let (top, random): (&Scores, Option<&Scores>) = match &r.trained {
        Some(t) => (t, Some(&r.random_init)),
        None => (&r.random_init, None),
    };
    let row = |name: &str, v: Option<f64>, base: Option<f64>| {
        if let Some(v) = v {
            match base {
                Some(b) => outln!(
                    "  {name:<22} {v:>7.4}   random init {b:>7.4}   gain {:>+7.4}",
                    v - b
                ),
                None => outln!("  {name:<22} {v:>7.4}"),
            }
        }
    };
    row("kNN top-1", top.knn_top1, random.and_then(|s| s.knn_top1));
    for (l, &v) in top.linear_top1.iter().flatten() {
        let base = random
            .and_then(|s| s.linear_top1.as_ref())
            .and_then(|m| m.get(l).copied());
        row(&format!("linear top-1 {l}"), Some(v), base);
    }
    let choice = |s: Option<&Scores>, l: &Layer| {
        s.and_then(|s| s.linear_probe_choice.get(l))
            .map(|c: &ProbeChoice| {
                let t = c.chosen;
                format!(
                    "lr {} wd {}{} (held out {:.4})",
                    num(t.lr),
                    num(t.weight_decay),
                    if t.standardize { " std" } else { "" },
                    t.val_top1
                )
            })
    };
    for l in top.linear_probe_choice.keys() {
        let mut line = format!(
            "  probe {:<16} {}",
            l.to_string(),
            choice(Some(top), l).unwrap_or_default()
        );
        if let Some(c) = choice(random, l) {
            line += &format!("   random init {c}");
        }
        outln!("{line}");
    }
    let nmi = |s: Option<&Scores>, f: fn(&uic_trainer::eval::NmiReport) -> f64| {
        s.and_then(|s| s.nmi.as_ref()).map(f)
    };
    row(
        "NMI (arithmetic)",
        nmi(Some(top), |n| n.nmi_true),
        nmi(random, |n| n.nmi_true),
    );
    row(
        "NMI (geometric)",
        nmi(Some(top), |n| n.nmi_true_geometric),
        nmi(random, |n| n.nmi_true_geometric),
    );
}

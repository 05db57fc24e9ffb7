//! `uic eval knn|linear|nmi|all`: how good a checkpoint's features are, against an untrained
//! backbone of the same architecture. Flags -> [`uic_trainer::eval::evaluate`] -> print.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use uic_trainer::eval::{
    evaluate_with, EvalReport, ProbeChoice, ProbeTest, ProbeTrain, ProbeTune, Protocol, Scores,
    Stage, What,
};
use uic_trainer::infer::Layer;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to measure.
    pub what: What,
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
    /// Evaluate only an untrained backbone of the checkpoint's architecture (the run's own
    /// initialisation). Without it, both are evaluated and the gain is reported.
    #[arg(long)]
    pub random_init: bool,
    /// Share of --data used for training the probes when there is no --test-data.
    #[arg(long, default_value_t = Protocol::default().train_frac)]
    pub train_frac: f64,
    /// Seed of the split and of the probes.
    #[arg(long, default_value_t = Protocol::default().seed)]
    pub seed: u64,
    /// Neighbours of the kNN classifier (1 to the number of training images).
    #[arg(long, default_value_t = Protocol::default().knn_k)]
    pub knn_k: i64,
    /// Features of the kNN classifier: `final`, a conv layer, or `pixels` (the raw-pixel
    /// baseline, the same for the trained and the untrained backbone).
    #[arg(long, default_value_t = Protocol::default().knn_layer)]
    pub knn_layer: Layer,
    /// Epochs of the linear probes (lr 0.1, divided by 10 at 10, 20, 30 as in the paper;
    /// milestones scale with fewer epochs).
    #[arg(long, default_value_t = Protocol::default().probe_epochs)]
    pub probe_epochs: usize,
    /// What the linear probes train on: `augmented` draws fresh views every epoch
    /// (RandomResizedCrop with the run's min-scale, and flip), as the paper's protocol does;
    /// `center` trains on one centre crop per image, computed once (faster).
    #[arg(long, value_enum, default_value_t = Protocol::default().probe_train)]
    pub probe_train: ProbeTrain,
    /// Standardise features (training-set mean and deviation) before the linear probes.
    /// Not the paper's protocol; it raises weak baselines most.
    #[arg(long)]
    pub standardize: bool,
    /// Choose each probe's learning rate (0.01 to 10) and weight decay (0 to 0.1), and with
    /// `all` also whether to standardise the features, by accuracy on a fifth of the
    /// training images held out, tested as --probe-test says; then train the chosen probe on
    /// all of them. Each backbone and layer gets its own choice. Centre-crop training only.
    #[arg(
        long,
        value_enum,
        num_args = 0..=1,
        default_missing_value = "rate",
        conflicts_with = "probe_train"
    )]
    pub probe_tune: Option<ProbeTune>,
    /// How the linear probes are tested: `ten-crop` averages the softmax over the four
    /// corners, the centre and their mirror images (the paper); `center` uses the centre
    /// crop alone.
    #[arg(long, value_enum, default_value_t = Protocol::default().probe_test)]
    pub probe_test: ProbeTest,
    /// Layers to probe, comma-separated (conv1..conv5, final, pixels) [default: the conv
    /// layers and final; `pixels` adds the raw-pixel baseline].
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<Layer>,
    /// Most memory, in MiB, for the centre-crop training features of the linear probes
    /// (float32, every probed layer): within it they are computed once and held; beyond it
    /// they are pushed through the backbone again every probe epoch (slower, but memory no
    /// longer grows with the images; the probes are the same up to float rounding).
    #[arg(long, value_name = "MIB", default_value_t = Protocol::default().feature_memory >> 20)]
    pub probe_memory_mib: usize,
    /// Loader and libtorch threads [default: one per core].
    #[arg(long, default_value_t = Protocol::default().threads)]
    pub threads: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    fn protocol(&self) -> Protocol {
        Protocol {
            what: self.what,
            random_init_only: self.random_init,
            train_frac: self.train_frac,
            seed: self.seed,
            knn_k: self.knn_k,
            knn_layer: self.knn_layer,
            probe_epochs: self.probe_epochs,
            probe_train: self.probe_train,
            standardize: self.standardize,
            probe_tune: self.probe_tune,
            probe_test: self.probe_test,
            layers: self.layers.clone(),
            feature_memory: self.probe_memory_mib.saturating_mul(1 << 20),
            threads: self.threads,
        }
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    let mut progress = Progress::new();
    let report = evaluate_with(
        &a.checkpoint,
        &a.data,
        a.test_data.as_deref(),
        &a.protocol(),
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

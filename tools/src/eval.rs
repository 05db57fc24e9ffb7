//! `uic eval knn|linear|nmi|all`: how good a checkpoint's features are, against an untrained
//! backbone of the same architecture.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::{json, Map, Value};
use uic_loader::RecordFile;
use uic_trainer::eval::{self, Layer, ProbeChoice, ProbeConfig, ProbeSearch};
use uic_trainer::tch::{Device, Tensor};
use uic_trainer::{Model, TrainConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    /// kNN top-1 (k = --knn-k, cosine) on the final backbone features.
    Knn,
    /// Linear probes on conv1-conv5 and the final features, ten-crop testing.
    Linear,
    /// NMI of the centre-crop assignment against the true labels.
    Nmi,
    /// All three.
    All,
}

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
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// Evaluate only an untrained backbone of the checkpoint's architecture (the run's own
    /// initialisation). Without it, both are evaluated and the gain is reported.
    #[arg(long)]
    pub random_init: bool,
    /// Share of --data used for training the probes when there is no --test-data.
    #[arg(long, default_value_t = 0.7)]
    pub train_frac: f64,
    /// Seed of the split and of the probes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Neighbours of the kNN classifier.
    #[arg(long, default_value_t = 20)]
    pub knn_k: i64,
    /// Features of the kNN classifier: `final`, a conv layer, or `pixels` (the raw-pixel
    /// baseline, the same for the trained and the untrained backbone).
    #[arg(long, default_value = "final")]
    pub knn_layer: Layer,
    /// Epochs of the linear probes (lr 0.1, divided by 10 at 10, 20, 30 as in the paper;
    /// milestones scale with fewer epochs).
    #[arg(long, default_value_t = 32)]
    pub probe_epochs: usize,
    /// What the linear probes train on: `augmented` draws fresh views every epoch
    /// (RandomResizedCrop with the run's min-scale, and flip), as the paper's protocol does;
    /// `center` trains on one centre crop per image, computed once (faster).
    #[arg(long, value_enum, default_value_t = ProbeTrain::Center)]
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
    #[arg(long, value_enum, default_value_t = ProbeTest::TenCrop)]
    pub probe_test: ProbeTest,
    /// Layers to probe, comma-separated (conv1..conv5, final, pixels) [default: the conv
    /// layers and final; `pixels` adds the raw-pixel baseline].
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<Layer>,
    /// Loader and libtorch threads [default: one per core].
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What `--probe-tune` chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeTune {
    /// Learning rate and weight decay; standardisation as `--standardize` says.
    Rate,
    /// Learning rate, weight decay, and whether to standardise.
    All,
}

/// The test views of the linear probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeTest {
    /// Softmax averaged over ten crops (the paper).
    TenCrop,
    /// The centre crop.
    Center,
}

/// The training views of the linear probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeTrain {
    /// Fresh RandomResizedCrop + flip views every epoch (the paper).
    Augmented,
    /// One centre crop per image.
    Center,
}

struct Data {
    train_file: Arc<RecordFile>,
    test_file: Arc<RecordFile>,
    train_idx: Vec<usize>,
    test_idx: Vec<usize>,
    train_labels: Vec<u32>,
    test_labels: Vec<u32>,
    classes: usize,
}

fn data(a: &Args) -> Result<Data> {
    let file = Arc::new(RecordFile::open(&a.data)?);
    let all = eval::true_labels(&file)?;
    let (train_file, test_file, train_idx, test_idx) = match &a.test_data {
        Some(t) => {
            let tf = Arc::new(RecordFile::open(t)?);
            let n = tf.len();
            (
                file.clone(),
                tf,
                (0..file.len()).collect(),
                (0..n).collect(),
            )
        }
        None => {
            if !(a.train_frac > 0.0 && a.train_frac < 1.0) {
                bail!("--train-frac {} is not in (0, 1)", a.train_frac);
            }
            let (tr, te) = eval::split(file.len(), a.train_frac, a.seed);
            (file.clone(), file.clone(), tr, te)
        }
    };
    let test_all = eval::true_labels(&test_file)?;
    let train_labels: Vec<u32> = train_idx.iter().map(|&i| all[i]).collect();
    let test_labels: Vec<u32> = test_idx.iter().map(|&i| test_all[i]).collect();
    if train_labels.is_empty() || test_labels.is_empty() {
        bail!("the split leaves no training or no test images");
    }
    let classes = train_labels
        .iter()
        .chain(&test_labels)
        .copied()
        .max()
        .unwrap_or(0) as usize
        + 1;
    Ok(Data {
        train_file,
        test_file,
        train_idx,
        test_idx,
        train_labels,
        test_labels,
        classes,
    })
}

/// kNN top-1 of `model` on the features of `layer`.
fn knn(model: &Model, cfg: &TrainConfig, d: &Data, k: i64, layer: Layer) -> Result<f64> {
    let tr = eval::extract(model, cfg, &d.train_file, &d.train_idx, &[layer], false)?;
    let te = eval::extract(model, cfg, &d.test_file, &d.test_idx, &[layer], false)?;
    Ok(eval::knn_top1(
        &tr[0],
        &d.train_labels,
        &te[0],
        &d.test_labels,
        k,
    ))
}

/// Linear-probe top-1 of `model` per layer, with the setting each probe chose under
/// `search` (centre-crop training only; the CLI refuses `--probe-tune` with augmented
/// views): probes train on augmented views or on centre crops, and test on ten crops or the
/// centre crop, streamed batch by batch (so the ten-crop features of big layers are never
/// all in memory).
fn linear(
    model: &Model,
    cfg: &TrainConfig,
    d: &Data,
    layers: &[Layer],
    pc: &ProbeConfig,
    views: ProbeTrain,
    search: Option<&ProbeSearch>,
    test: ProbeTest,
) -> Result<Vec<(Layer, f64, Option<ProbeChoice>)>> {
    let mut choices: Vec<Option<ProbeChoice>> = layers.iter().map(|_| None).collect();
    let probes = match views {
        ProbeTrain::Augmented => eval::train_probes_augmented(
            model,
            cfg,
            &d.train_file,
            &d.train_idx,
            &d.train_labels,
            d.classes,
            layers,
            pc,
        )?,
        ProbeTrain::Center => {
            let train = eval::extract(model, cfg, &d.train_file, &d.train_idx, layers, false)?;
            match search {
                None => train
                    .iter()
                    .map(|f| eval::train_probe(f, &d.train_labels, d.classes, pc))
                    .collect(),
                Some(s) => {
                    let mut grids: Vec<eval::ProbeGrid> = train
                        .iter()
                        .map(|f| eval::ProbeGrid::fit(f, &d.train_labels, d.classes, pc, s))
                        .collect();
                    score_held_out(model, cfg, d, layers, &train, &mut grids, test)?;
                    let mut probes = Vec::with_capacity(layers.len());
                    for ((g, f), choice) in grids.into_iter().zip(&train).zip(&mut choices) {
                        let (p, c) = g.choose(f, &d.train_labels, d.classes, pc);
                        *choice = Some(c);
                        probes.push(p);
                    }
                    probes
                }
            }
        }
    };
    let mut correct = vec![0usize; layers.len()];
    eval::extract_each(
        model,
        cfg,
        &d.test_file,
        &d.test_idx,
        layers,
        test == ProbeTest::TenCrop,
        |range, feats| {
            let labels = &d.test_labels[range];
            for ((c, p), f) in correct.iter_mut().zip(&probes).zip(feats) {
                *c += p.correct(&f.to_device(Device::Cpu), labels);
            }
        },
    )?;
    Ok(layers
        .iter()
        .zip(correct)
        .zip(choices)
        .map(|((&l, c), choice)| (l, c as f64 / d.test_labels.len() as f64, choice))
        .collect())
}

/// Scores each layer's grid on its held-out training images, tested as the probes will be:
/// centre crops are rows of `train`; ten crops are extracted again and streamed batch by
/// batch.
fn score_held_out(
    model: &Model,
    cfg: &TrainConfig,
    d: &Data,
    layers: &[Layer],
    train: &[Tensor],
    grids: &mut [eval::ProbeGrid],
    test: ProbeTest,
) -> Result<()> {
    match test {
        ProbeTest::Center => {
            for (g, f) in grids.iter_mut().zip(train) {
                g.score_rows(f);
            }
        }
        ProbeTest::TenCrop => {
            let images: Vec<usize> = grids[0]
                .held_out()
                .iter()
                .map(|&i| d.train_idx[i])
                .collect();
            eval::extract_each(
                model,
                cfg,
                &d.train_file,
                &images,
                layers,
                true,
                |r, feats| {
                    for (g, f) in grids.iter_mut().zip(feats) {
                        g.score(r.clone(), &f.to_device(Device::Cpu));
                    }
                },
            )?;
        }
    }
    Ok(())
}

fn evaluate(
    model: &Model,
    cfg: &TrainConfig,
    a: &Args,
    d: &Data,
    layers: &[Layer],
    pc: &ProbeConfig,
) -> Result<Map<String, Value>> {
    let mut o = Map::new();
    if matches!(a.what, What::Knn | What::All) {
        o.insert(
            "knn_top1".into(),
            json!(knn(model, cfg, d, a.knn_k, a.knn_layer)?),
        );
    }
    if matches!(a.what, What::Linear | What::All) {
        let search = a.probe_tune.map(|t| {
            ProbeSearch::decades(match t {
                ProbeTune::Rate => vec![a.standardize],
                ProbeTune::All => vec![false, true],
            })
        });
        let results = linear(
            model,
            cfg,
            d,
            layers,
            pc,
            a.probe_train,
            search.as_ref(),
            a.probe_test,
        )?;
        let mut per = Map::new();
        let mut chosen = Map::new();
        for (l, acc, choice) in results {
            per.insert(l.to_string(), json!(acc));
            if let Some(c) = choice {
                chosen.insert(l.to_string(), serde_json::to_value(c)?);
            }
        }
        o.insert("linear_top1".into(), Value::Object(per));
        if !chosen.is_empty() {
            o.insert("linear_probe_choice".into(), Value::Object(chosen));
        }
    }
    if matches!(a.what, What::Nmi | What::All) {
        let r = eval::nmi_report(model, cfg, &d.test_file)?;
        if let Value::Object(m) = serde_json::to_value(r)? {
            o.extend(m);
        }
    }
    Ok(o)
}

/// Score differences, trained minus random; at the top level only the scores (class-size
/// statistics have no "gain").
fn gain(
    trained: &Map<String, Value>,
    random: &Map<String, Value>,
    top: bool,
) -> Map<String, Value> {
    let mut g = Map::new();
    const SCORES: [&str; 4] = ["knn_top1", "linear_top1", "nmi_true", "nmi_true_geometric"];
    for (k, v) in trained
        .iter()
        .filter(|(k, _)| !top || SCORES.contains(&k.as_str()))
    {
        match (v, random.get(k)) {
            (Value::Number(a), Some(Value::Number(b))) => {
                g.insert(
                    k.clone(),
                    json!(a.as_f64().unwrap_or(0.0) - b.as_f64().unwrap_or(0.0)),
                );
            }
            (Value::Object(a), Some(Value::Object(b))) => {
                g.insert(k.clone(), Value::Object(gain(a, b, false)));
            }
            _ => {}
        }
    }
    g
}

pub fn run(a: Args) -> Result<ExitCode> {
    let t0 = Instant::now();
    let (trained, ck) = eval::load_model(&a.checkpoint)?;
    let mut cfg = ck.state.config.clone();
    cfg.threads = a.threads;
    cfg.torch_threads = a.threads;
    uic_trainer::set_threads(&cfg);
    let d = data(&a)?;
    let layers = if a.layers.is_empty() {
        eval::probe_layers(cfg.arch)
    } else {
        a.layers.clone()
    };
    if a.probe_tune == Some(ProbeTune::All) && a.standardize {
        bail!("--probe-tune all chooses whether to standardise; drop --standardize");
    }
    let scale = a.probe_epochs as f64 / 32.0;
    let pc = ProbeConfig {
        epochs: a.probe_epochs,
        milestones: [10.0, 20.0, 30.0]
            .iter()
            .map(|m| (m * scale).round() as usize)
            .collect(),
        seed: a.seed,
        standardize: a.standardize,
        ..Default::default()
    };
    let random = eval::random_init_model(&cfg)?;
    let rand_report = evaluate(&random, &cfg, &a, &d, &layers, &pc)?;
    let mut out = Map::new();
    out.insert("checkpoint".into(), json!(ck.dir.display().to_string()));
    out.insert("epoch".into(), json!(ck.state.epoch));
    out.insert("arch".into(), json!(cfg.arch.to_string()));
    out.insert("train_images".into(), json!(d.train_idx.len()));
    out.insert("test_images".into(), json!(d.test_idx.len()));
    if matches!(a.what, What::Knn | What::All) {
        out.insert("knn_layer".into(), json!(a.knn_layer.to_string()));
    }
    if a.random_init {
        out.insert("random_init".into(), json!(true));
        out.extend(rand_report);
    } else {
        let report = evaluate(&trained, &cfg, &a, &d, &layers, &pc)?;
        let g = gain(&report, &rand_report, true);
        out.extend(report);
        out.insert("random_init".into(), Value::Object(rand_report));
        out.insert("gain_over_random_init".into(), Value::Object(g));
    }
    out.insert("seconds".into(), json!(t0.elapsed().as_secs_f64()));
    if a.json {
        println!("{}", Value::Object(out));
    } else {
        print_text(&out);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(o: &Map<String, Value>) {
    println!(
        "{} after epoch {} ({}), {} training / {} test images",
        o["checkpoint"].as_str().unwrap_or("?"),
        o["epoch"],
        o["arch"].as_str().unwrap_or("?"),
        o["train_images"],
        o["test_images"]
    );
    let random = o.get("random_init").and_then(Value::as_object);
    let row = |name: &str, v: Option<&Value>, r: Option<&Value>| {
        if let Some(v) = v.and_then(Value::as_f64) {
            match r.and_then(Value::as_f64) {
                Some(r) => println!(
                    "  {name:<22} {v:>7.4}   random init {r:>7.4}   gain {:>+7.4}",
                    v - r
                ),
                None => println!("  {name:<22} {v:>7.4}"),
            }
        }
    };
    row(
        "kNN top-1",
        o.get("knn_top1"),
        random.and_then(|r| r.get("knn_top1")),
    );
    if let Some(l) = o.get("linear_top1").and_then(Value::as_object) {
        for (k, v) in l {
            let r = random
                .and_then(|r| r.get("linear_top1"))
                .and_then(|x| x.get(k));
            row(&format!("linear top-1 {k}"), Some(v), r);
        }
    }
    let choice = |o: Option<&Map<String, Value>>, layer: &str| {
        o.and_then(|o| o.get("linear_probe_choice"))
            .and_then(|c| c.get(layer))
            .map(|c| {
                format!(
                    "lr {} wd {}{} (held out {:.4})",
                    c["lr"],
                    c["weight_decay"],
                    if c["standardize"] == true { " std" } else { "" },
                    c["val_top1"].as_f64().unwrap_or(f64::NAN)
                )
            })
    };
    if let Some(l) = o.get("linear_probe_choice").and_then(Value::as_object) {
        for k in l.keys() {
            let mut line = format!("  probe {k:<16} {}", choice(Some(o), k).unwrap_or_default());
            if let Some(r) = choice(random, k) {
                line += &format!("   random init {r}");
            }
            println!("{line}");
        }
    }
    row(
        "NMI (arithmetic)",
        o.get("nmi_true"),
        random.and_then(|r| r.get("nmi_true")),
    );
    row(
        "NMI (geometric)",
        o.get("nmi_true_geometric"),
        random.and_then(|r| r.get("nmi_true_geometric")),
    );
}

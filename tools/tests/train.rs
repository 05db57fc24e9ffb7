//! `uic train`: kill a run part-way and resume it; the result must equal an uninterrupted
//! run. Plus the refusals a user relies on. Runs the real binary on a small synthetic set.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use uic_loader::convert::{self, ConvertOptions};
use uic_loader::synth::{self, SynthOptions};

pub(crate) fn uic() -> Command {
    Command::new(env!("CARGO_BIN_EXE_uic"))
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A 256-image synthetic record file with 8 latent classes.
pub(crate) fn dataset(dir: &Path) -> PathBuf {
    let images = dir.join("images");
    let opts = SynthOptions {
        classes: 8,
        per_class: 32,
        size: 40,
        seed: 5,
    };
    synth::write_image_folder(&images, &opts).unwrap();
    let rec = dir.join("synth.uicr");
    convert::convert(&images, &rec, &ConvertOptions::default(), &|_| {}).unwrap();
    rec
}

const EPOCHS: &str = "12";

pub(crate) fn train_args(data: &Path, out: &Path) -> Vec<String> {
    [
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--arch",
        "alexnet-small",
        "--width",
        "0.25",
        "--input-size",
        "32",
        "--k",
        "8",
        "--batch-size",
        "32",
        "--epochs",
        EPOCHS,
        "--preset",
        "strong",
        "--threads",
        "1",
        "--torch-threads",
        "1",
        "--seed",
        "3",
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A temporary folder with the synthetic data file, and a run folder path inside it.
pub(crate) fn fresh() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let run = tmp.path().join("run");
    (tmp, data, run)
}

/// `train_args` with `--epochs n`.
pub(crate) fn train_args_epochs(data: &Path, out: &Path, n: u64) -> Vec<String> {
    let mut args = train_args(data, out);
    let e = args.iter().position(|a| a == "--epochs").unwrap();
    args[e + 1] = n.to_string();
    args
}

pub(crate) fn run_ok(args: &[String]) -> Output {
    let out = uic().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "uic {args:?} failed: {}",
        text(&out.stderr)
    );
    out
}

fn metrics_lines(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl")).map_or(0, |t| t.lines().count())
}

/// The metrics without the timing fields, which legitimately differ between runs.
fn metrics_sans_timing(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            for k in ["images_per_s", "data_wait", "seconds", "sync_wait"] {
                assert!(o.remove(k).is_some(), "metrics line lacks {k}");
            }
            v
        })
        .collect()
}

#[test]
fn killed_and_resumed_run_equals_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());

    let whole = tmp.path().join("whole");
    run_ok(&train_args(&data, &whole));
    assert_eq!(metrics_lines(&whole), EPOCHS.parse::<usize>().unwrap());

    // Start the same run and SIGKILL it once a few epochs are checkpointed, wherever it is.
    let broken = tmp.path().join("broken");
    let mut child = uic()
        .args(train_args(&data, &broken))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while metrics_lines(&broken) < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the run never reached epoch 3"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the run finished before the kill; make it longer"
    );
    let done_at_kill = metrics_lines(&broken);
    assert!(done_at_kill < EPOCHS.parse::<usize>().unwrap());

    // Without --resume the folder is refused; with it the run completes.
    let refused = uic().args(train_args(&data, &broken)).output().unwrap();
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("--resume"),
        "{}",
        text(&refused.stderr)
    );

    let mut resume = train_args(&data, &broken);
    resume.push("--resume".into());
    let out = run_ok(&resume);
    assert!(
        text(&out.stderr).contains("resuming after epoch"),
        "{}",
        text(&out.stderr)
    );

    // Same weights, optimiser state and labels, bit for bit; same metrics except timing.
    for f in [
        "model.safetensors",
        "optimizer.safetensors",
        "labels.safetensors",
    ] {
        let a = std::fs::read(whole.join("checkpoint").join(f)).unwrap();
        let b = std::fs::read(broken.join("checkpoint").join(f)).unwrap();
        assert!(
            a == b,
            "{f} differs between the uninterrupted and the resumed run"
        );
    }
    assert_eq!(metrics_sans_timing(&whole), metrics_sans_timing(&broken));
}

#[test]
fn resume_refuses_other_settings_and_other_data() {
    let (tmp, data, run) = fresh();
    let args = train_args_epochs(&data, &run, 1);
    run_ok(&args);

    let mut other_k = args.clone();
    let k = other_k.iter().position(|a| a == "--k").unwrap();
    other_k[k + 1] = "6".into();
    other_k.push("--resume".into());
    let out = uic().args(&other_k).output().unwrap();
    assert!(!out.status.success());
    // The one setting that changed, with both values, in a few lines (no config dumps).
    let err = text(&out.stderr);
    assert!(
        err.contains("settings differ") && err.contains("k: checkpoint 8, now 6"),
        "{err}"
    );
    assert!(err.lines().count() <= 5, "{err}");
    assert!(!err.contains("TrainConfig"), "{err}");

    // Resuming with only --data/--out/--resume/--epochs takes the checkpoint's settings.
    let out = run_ok(&[
        "train".into(),
        "--data".into(),
        data.to_str().unwrap().into(),
        "--out".into(),
        run.to_str().unwrap().into(),
        "--resume".into(),
        "--epochs".into(),
        "2".into(),
        "--quiet".into(),
    ]);
    assert!(
        text(&out.stderr).contains("resuming after epoch 1"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(metrics_lines(&run), 2);

    // Another data file is refused.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let images = other.join("images");
    synth::write_image_folder(
        &images,
        &SynthOptions {
            classes: 8,
            per_class: 33,
            size: 40,
            seed: 5,
        },
    )
    .unwrap();
    let rec = other.join("o.uicr");
    convert::convert(&images, &rec, &ConvertOptions::default(), &|_| {}).unwrap();
    let mut on_other = train_args(&rec, &run);
    on_other.push("--resume".into());
    let out = uic().args(&on_other).output().unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not on this file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_diverging_loss_stops_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let run = tmp.path().join("run");
    let mut args = train_args(&data, &run);
    args.extend(["--lr".into(), "1e30".into()]);
    let out = uic().args(&args).output().unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("training stopped") && err.contains("lower lr"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(metrics_lines(&run), 0);
}

#[test]
fn run_folder_has_the_documented_files_and_keys() {
    let (tmp, data, run) = fresh();
    let args = train_args_epochs(&data, &run, 2);
    run_ok(&args);
    for f in [
        "config.toml",
        "metrics.jsonl",
        "nmi.png",
        "loss.png",
        "lr.png",
        "class_sizes.png",
        "checkpoint/model.safetensors",
        "checkpoint/optimizer.safetensors",
        "checkpoint/labels.safetensors",
        "checkpoint/state.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    for k in [
        "epoch",
        "loss",
        "lr",
        "images_per_s",
        "data_wait",
        "empty_fixed",
        "class_min",
        "class_max",
        "nmi_prev",
        "nmi_true",
        "nmi_true_geometric",
    ] {
        assert!(line.get(k).is_some(), "metrics lack {k}: {line}");
    }
    // The weights are named like a PyTorch state_dict.
    let st = std::fs::read(run.join("checkpoint/model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&st[8..8 + header_len]).unwrap();
    assert!(
        header.contains("\"features.conv1.weight\"") && header.contains("\"top_layer.bias\""),
        "{header}"
    );
    // The config file written for the run reloads as a config.
    let run2 = tmp.path().join("run2");
    let cfg_path = run.join("config.toml");
    let out = run_ok(&[
        "train".into(),
        "--data".into(),
        data.to_str().unwrap().into(),
        "--out".into(),
        run2.to_str().unwrap().into(),
        "--config".into(),
        cfg_path.to_str().unwrap().into(),
        "--epochs".into(),
        "1".into(),
        "--quiet".into(),
    ]);
    let _ = out;
    let cfg2 = std::fs::read_to_string(run2.join("config.toml")).unwrap();
    assert!(
        cfg2.contains("arch = \"alexnet-small\"") && cfg2.contains("k = 8"),
        "{cfg2}"
    );
}

/// `--resume` on a run that already has the epochs asked for says there is nothing to do
/// and changes nothing; a resume that trains longer records its epoch count in config.toml.
#[test]
fn resume_with_nothing_left_says_so_and_a_longer_one_records_what_ran() {
    let (_tmp, data, run) = fresh();
    run_ok(&train_args_epochs(&data, &run, 2));
    let resumed = |n: u64| {
        let mut args = train_args_epochs(&data, &run, n);
        args.push("--resume".into());
        text(&run_ok(&args).stderr)
    };
    let config = || std::fs::read_to_string(run.join("config.toml")).unwrap();
    let err = resumed(1);
    assert!(
        err.contains("nothing to do") && err.contains("holds epoch 2") && err.contains("--epochs"),
        "{err}"
    );
    assert!(!err.contains("done:"), "{err}");
    assert_eq!(metrics_lines(&run), 2);
    assert!(config().contains("epochs = 2\n"), "{}", config());
    // Resources may change on resume: thread counts and the loader's queue.
    let mut args = train_args_epochs(&data, &run, 3);
    let t = args.iter().position(|a| a == "--threads").unwrap();
    args[t + 1] = "2".into();
    args.extend(["--resume", "--batches-ahead", "5"].map(String::from));
    run_ok(&args);
    assert_eq!(metrics_lines(&run), 3);
    assert!(config().contains("epochs = 3\n"), "{}", config());
    assert!(config().contains("batches_ahead = 5\n"), "{}", config());
}

/// A switch's `--no-` form undoes the config file's `true`; config.toml says what ran.
#[test]
fn no_flags_undo_a_config_files_switches() {
    let (tmp, data, run) = fresh();
    let toml = tmp.path().join("s.toml");
    std::fs::write(&toml, "amp = true\nmlp_head = true\nbatches_ahead = 5\n").unwrap();
    let mut args = train_args_epochs(&data, &run, 1);
    args.extend(
        [
            "--config",
            toml.to_str().unwrap(),
            "--no-amp",
            "--no-mlp-head",
        ]
        .map(String::from),
    );
    run_ok(&args);
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    for want in ["amp = false", "mlp_head = false", "batches_ahead = 5"] {
        assert!(config.lines().any(|l| l == want), "no {want} in {config}");
    }
}

#[test]
fn kmeans_labeler_runs_the_extra_pass() {
    let (_tmp, data, run) = fresh();
    let mut args = train_args_epochs(&data, &run, 2);
    args.extend(["--labeler".into(), "kmeans".into()]);
    run_ok(&args);
    for l in std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["labeling_seconds"].as_f64().unwrap() > 0.0, "{v}");
        assert!(
            v["class_min"].as_u64().unwrap() > 0,
            "k-means left an empty class: {v}"
        );
    }
}

#[test]
fn fine_tuning_fixes_the_labels_after_the_uic_epochs() {
    let (_tmp, data, run) = fresh();
    let mut args = train_args_epochs(&data, &run, 2);
    args.extend([
        "--fft-epochs".into(),
        "2".into(),
        "--fft-lr".into(),
        "0.02".into(),
    ]);
    let out = run_ok(&args);
    assert!(
        text(&out.stderr).contains("further fine-tuning"),
        "{}",
        text(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let phases: Vec<&str> = lines.iter().map(|l| l["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["uic", "uic", "fft", "fft"]);
    // The schedule restarts at fft_lr; the labels stay fixed within fine-tuning.
    assert_eq!(lines[2]["lr"].as_f64().unwrap(), 0.02);
    // NMI of a labeling with itself is 1 up to the last bits of its sums (it came out as
    // 0.9999999999999996 once the strong preset's kernels changed this run's labels); any
    // labeling that differs in even one of these 256 images scores far below this bound.
    let nmi_prev = lines[3]["nmi_prev"].as_f64().unwrap();
    assert!((nmi_prev - 1.0).abs() < 1e-12, "nmi_prev {nmi_prev}");
    assert_eq!(lines[2]["nmi_true"], lines[3]["nmi_true"]);
}

#[test]
fn epoch_repeats_visit_the_data_that_many_times_per_epoch() {
    let (_tmp, data, run) = fresh();
    let mut args = train_args_epochs(&data, &run, 1);
    args.extend(["--epoch-repeats".into(), "3".into()]);
    run_ok(&args);
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("checkpoint").join("state.json")).unwrap(),
    )
    .unwrap();
    // 256 images, batch 32: 8 steps a pass, 3 passes.
    assert_eq!(state["step"].as_u64(), Some(24), "{state}");
    assert_eq!(
        state["config"]["epoch_repeats"].as_u64(),
        Some(3),
        "{state}"
    );
}

#[test]
fn the_strong_presets_steps_run_on_the_device_when_asked_and_may_move_on_resume() {
    // train_args ask for the strong preset on the CPU device: `auto` runs its steps on the
    // loader's kernels, `device` as libtorch ops on the loader's crops.
    let (tmp, data, run) = fresh();
    let on_device = |out: &Path, epochs| {
        let mut args = train_args_epochs(&data, out, epochs);
        args.extend(["--augment-on".into(), "device".into()]);
        args
    };
    run_ok(&on_device(&run, 2));
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("augment_on = \"device\""), "{config}");
    // Deterministic: a second run gives the same metrics.
    let again = tmp.path().join("again");
    run_ok(&on_device(&again, 2));
    assert_eq!(metrics_sans_timing(&run), metrics_sans_timing(&again));
    // The CPU kernels' run sees the same images but for the blur's rounding (one level on a
    // few values). With a learning rate too small to move the weights, the first epoch's
    // loss depends on the images alone, so the two agree to far better than any other image
    // would give (measured: 2.08292 against 2.08290).
    let still = |out: &Path, on: &str| {
        let mut args = train_args_epochs(&data, out, 1);
        args.extend(["--lr", "1e-12", "--augment-on", on].map(String::from));
        run_ok(&args);
        metrics_sans_timing(out)[0]["loss"].as_f64().unwrap()
    };
    let (la, lb) = (
        still(&tmp.path().join("still-device"), "device"),
        still(&tmp.path().join("still-cpu"), "cpu"),
    );
    assert!(
        (la - lb).abs() <= 2e-4 * lb,
        "loss {la} on the device, {lb} on the CPU"
    );
    // Where the steps run is not a setting of the run: it may change on resume.
    let mut resume = train_args_epochs(&data, &run, 3);
    resume.extend(["--augment-on".into(), "cpu".into(), "--resume".into()]);
    run_ok(&resume);
    assert_eq!(metrics_lines(&run), 3);
}

#[test]
fn decoder_nvjpeg_is_refused_with_a_reason() {
    let (_tmp, data, run) = fresh();
    let mut args = train_args_epochs(&data, &run, 1);
    args.extend(["--decoder".into(), "nvjpeg".into()]);
    let out = uic().args(&args).output().unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    // A CPU build names the missing feature; a GPU build, the device nvJPEG needs (these
    // args train on the CPU).
    let reason = if cfg!(feature = "nvjpeg") {
        "--device cuda"
    } else {
        "built without nvJPEG"
    };
    assert!(err.contains(reason), "{err}");
    assert!(!run.join("checkpoint").exists(), "nothing may be written");
    assert!(!run.exists(), "no run folder for a refused run");

    // Settings refused only when the model is built (here: a device this build or machine
    // lacks) leave no folder either.
    if !cfg!(feature = "cuda") {
        let mut args = train_args_epochs(&data, &run, 1);
        args.extend(["--device".into(), "cuda".into()]);
        let out = uic().args(&args).output().unwrap();
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("without CUDA"),
            "{}",
            text(&out.stderr)
        );
        assert!(!run.exists(), "no run folder for a refused run");
    }
}

#[test]
fn a_redirected_log_has_one_plain_line_per_epoch_and_an_interrupt_says_how_to_resume() {
    let (_tmp, data, run) = fresh();
    // stderr is a pipe here, as under `> log 2>&1`, nohup or `| tee`: no --quiet.
    let mut args = train_args_epochs(&data, &run, 2);
    args.retain(|a| a != "--quiet");
    let out = run_ok(&args);
    let err = text(&out.stderr);
    let epochs: Vec<&str> = err.lines().filter(|l| l.starts_with("epoch ")).collect();
    assert_eq!(epochs.len(), 2, "{err}");
    // Each says where it is in the run, and the last says how long is left.
    assert!(
        epochs[0].starts_with("epoch 1/2 ") && epochs[1].starts_with("epoch 2/2 "),
        "{err}"
    );
    assert!(epochs.iter().all(|l| l.contains("run ETA ")), "{err}");
    assert!(!err.contains('\x1b'), "escape codes in a log: {err:?}");
    // nmi_true beside its chance level (the file has labels).
    assert!(epochs.iter().all(|l| l.contains(", chance 0.")), "{err}");
    assert!(!err.contains("upscaled"), "{err}");

    // An --input-size well above the images' side (40 px) is said once, before training.
    let mut big = train_args_epochs(&data, &run.with_file_name("big"), 1);
    let s = big.iter().position(|a| a == "--input-size").unwrap();
    big[s + 1] = "64".into();
    let err = text(&run_ok(&big).stderr);
    assert!(
        err.contains("--input-size 64 is 1.6x the images' median shorter side (40 px)"),
        "{err}"
    );

    // Ctrl-C mid-run: a checkpoint at the next step, exit 75, and a line naming what the
    // checkpoint holds and --resume.
    let run2 = run.with_file_name("run2");
    let mut child = uic()
        .args(train_args_epochs(&data, &run2, 200))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while metrics_lines_or_0(&run2) < 1 {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        assert!(t0.elapsed() < Duration::from_secs(120), "no epoch finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let o = child.wait_with_output().unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(75), "{err}");
    assert!(
        err.contains("stopped: the checkpoint in") && err.contains("--resume"),
        "{err}"
    );
}

/// Lines of `run`'s metrics file, 0 before it exists.
fn metrics_lines_or_0(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl")).map_or(0, |t| t.lines().count())
}

//! `uic eval`: the probes, kNN and NMI against the untrained backbone, and the rules that
//! keep an evaluation honest (classes matched by name, neighbour counts that mean
//! something). Trains a small run first with [`crate::train`]'s helpers.

use std::path::Path;
use std::process::Output;

use crate::train::{fresh, run_ok, text, train_args_epochs, uic};

/// `uic eval WHAT --checkpoint RUN --data DATA EXTRA...`, run to the end.
fn eval_cmd(what: &str, run: &Path, data: &Path, extra: &[&str]) -> Output {
    uic()
        .args(["eval", what, "--checkpoint"])
        .arg(run)
        .arg("--data")
        .arg(data)
        .args(extra)
        .output()
        .unwrap()
}

/// [`eval_cmd`] with `--json`, which must succeed; its one JSON object.
fn eval_json(what: &str, run: &Path, data: &Path, extra: &[&str]) -> serde_json::Value {
    let out = eval_cmd(what, run, data, &[extra, &["--json"]].concat());
    assert!(
        out.status.success(),
        "eval {what} {extra:?} failed: {}",
        text(&out.stderr)
    );
    serde_json::from_str(text(&out.stdout).trim()).unwrap()
}

#[test]
fn eval_reports_probes_and_the_random_init_baseline() {
    let (_tmp, data, run) = fresh();
    let args = train_args_epochs(&data, &run, 2);
    run_ok(&args);
    let v = eval_json("all", &run, &data, &["--probe-epochs", "3"]);
    let acc = |x: &serde_json::Value| x.as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc(&v["knn_top1"])));
    for l in ["conv1", "conv2", "conv3", "conv4", "conv5", "final"] {
        assert!((0.0..=1.0).contains(&acc(&v["linear_top1"][l])), "{l}: {v}");
        let g = acc(&v["gain_over_random_init"]["linear_top1"][l]);
        let want = acc(&v["linear_top1"][l]) - acc(&v["random_init"]["linear_top1"][l]);
        assert!((g - want).abs() < 1e-12);
    }
    assert!((0.0..=1.0).contains(&acc(&v["nmi_true"])));
    assert_eq!(
        v["train_images"].as_u64().unwrap() + v["test_images"].as_u64().unwrap(),
        256
    );

    // Probes trained on fresh augmented views (the paper's training views) for two layers.
    let a = eval_json(
        "linear",
        &run,
        &data,
        &[
            "--probe-epochs",
            "2",
            "--probe-train",
            "augmented",
            "--standardize",
            "--layers",
            "conv2,final",
        ],
    );
    let probed: Vec<&String> = a["linear_top1"].as_object().unwrap().keys().collect();
    assert_eq!(probed, ["conv2", "final"]);
    for l in ["conv2", "final"] {
        assert!((0.0..=1.0).contains(&acc(&a["linear_top1"][l])), "{l}: {a}");
        assert!(
            (0.0..=1.0).contains(&acc(&a["random_init"]["linear_top1"][l])),
            "{l}: {a}"
        );
    }

    // Tuned probes, tested on the centre crop: each backbone reports its own choice, one
    // of the grid's, with every setting's held-out score.
    let t = eval_json(
        "linear",
        &run,
        &data,
        &[
            "--probe-epochs",
            "2",
            "--probe-tune",
            "--probe-test",
            "center",
            "--layers",
            "final",
        ],
    );
    for c in [
        &t["linear_probe_choice"]["final"],
        &t["random_init"]["linear_probe_choice"]["final"],
    ] {
        assert!([0.01, 0.1, 1.0, 10.0].contains(&acc(&c["lr"])), "{t}");
        assert!(
            [0.0, 1e-4, 1e-3, 1e-2, 1e-1].contains(&acc(&c["weight_decay"])),
            "{t}"
        );
        let tried = c["tried"].as_array().unwrap();
        assert_eq!(tried.len(), 20, "{t}");
        assert!(tried.iter().all(|x| x["standardize"] == false), "{t}");
        assert!(
            tried
                .iter()
                .all(|x| acc(&x["val_top1"]) <= acc(&c["val_top1"])),
            "{t}"
        );
    }
    assert!(
        (0.0..=1.0).contains(&acc(&t["linear_top1"]["final"])),
        "{t}"
    );
    assert!(t["gain_over_random_init"]["linear_probe_choice"].is_null());
    // `--probe-tune all` also chooses standardisation: twice the grid.
    let all = eval_json(
        "linear",
        &run,
        &data,
        &[
            "--probe-epochs",
            "2",
            "--probe-tune",
            "all",
            "--layers",
            "final",
        ],
    );
    let tried = all["linear_probe_choice"]["final"]["tried"]
        .as_array()
        .unwrap();
    assert_eq!(tried.len(), 40, "{all}");
    assert_eq!(
        tried.iter().filter(|x| x["standardize"] == true).count(),
        20,
        "{all}"
    );
    let out = eval_cmd(
        "linear",
        &run,
        &data,
        &["--probe-tune", "all", "--standardize"],
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("drop standardize"));
    // Tuning trains on centre crops; asking for augmented views as well is refused.
    let out = eval_cmd(
        "linear",
        &run,
        &data,
        &["--probe-tune", "--probe-train", "augmented"],
    );
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--probe-train"), "{err}");

    // The raw-pixel baseline, for the probe and for kNN: the same input for both
    // backbones, so the same scores.
    let px = eval_json(
        "all",
        &run,
        &data,
        &[
            "--probe-epochs",
            "2",
            "--layers",
            "pixels,final",
            "--knn-layer",
            "pixels",
        ],
    );
    assert_eq!(px["knn_layer"], "pixels", "{px}");
    assert_eq!(v["knn_layer"], "final", "{v}");
    for (x, r) in [
        (
            &px["linear_top1"]["pixels"],
            &px["random_init"]["linear_top1"]["pixels"],
        ),
        (&px["knn_top1"], &px["random_init"]["knn_top1"]),
    ] {
        assert!((0.0..=1.0).contains(&acc(x)), "{px}");
        assert_eq!(x, r, "{px}");
    }

    // --random-init alone reports the untrained backbone, and matches the baseline above.
    let r = eval_json("knn", &run, &data, &["--random-init"]);
    assert_eq!(r["knn_top1"], v["random_init"]["knn_top1"]);

    // A checkpoint of another format version fails with a version message, not a panic.
    let state = run.join("checkpoint/state.json");
    let t = std::fs::read_to_string(&state)
        .unwrap()
        .replace("\"format_version\": 1", "\"format_version\": 0");
    std::fs::write(&state, t).unwrap();
    let out = eval_cmd("nmi", &run, &data, &[]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("format version 0") && !err.contains("panicked"),
        "{err}"
    );
}

/// A copy of `src` holding the classes `keep` names (in that order, as class 0, 1, ...),
/// each sample relabelled to its class's new index; samples of other classes are left out.
fn relabelled_copy(src: &Path, dst: &Path, keep: &[String]) {
    let f = uic_loader::RecordFile::open(src).unwrap();
    let names: Vec<String> = f
        .class_names()
        .into_iter()
        .map(|n| n.into_owned())
        .collect();
    let mut w = uic_loader::RecordWriter::create(
        dst,
        uic_loader::WriterOptions {
            mode: f.mode(),
            classes: keep.iter().map(|k| k.as_bytes().to_vec()).collect(),
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..f.len() {
        let s = f.sample(i);
        let name = &names[s.label.unwrap() as usize];
        if let Some(new) = keep.iter().position(|k| k == name) {
            w.append(&uic_loader::NewSample {
                data: s.data,
                width: s.width,
                height: s.height,
                label: Some(new as u32),
                source: f.source_path(i),
                converted: s.converted,
            })
            .unwrap();
        }
    }
    w.finish().unwrap();
}

/// Another file numbers its classes its own way: `--test-data` matches them by name. The
/// same images with the classes in reverse order score exactly as the original; a test
/// file without one class is scored on the others (near the full file's score, with a
/// warning naming it); a test class the training file lacks is refused by name.
#[test]
fn eval_matches_test_classes_by_name() {
    let (tmp, data, run) = fresh();
    run_ok(&train_args_epochs(&data, &run, 1));
    let names: Vec<String> = uic_loader::RecordFile::open(&data)
        .unwrap()
        .class_names()
        .into_iter()
        .map(|n| n.into_owned())
        .collect();
    let knn = |test: &Path| {
        let v = eval_json("knn", &run, &data, &["--test-data", test.to_str().unwrap()]);
        v["knn_top1"].as_f64().unwrap()
    };
    let full = knn(&data);

    let reversed = tmp.path().join("reversed.uicr");
    let mut rev = names.clone();
    rev.reverse();
    relabelled_copy(&data, &reversed, &rev);
    assert_eq!(
        knn(&reversed),
        full,
        "the same images, classes in another order"
    );

    // Without class 1, every later class shifts down one index in the test file.
    let lacking = tmp.path().join("lacking.uicr");
    let fewer: Vec<String> = names.iter().filter(|n| *n != &names[1]).cloned().collect();
    relabelled_copy(&data, &lacking, &fewer);
    let out = eval_cmd(
        "knn",
        &run,
        &data,
        &["--test-data", lacking.to_str().unwrap(), "--json"],
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.to_lowercase().contains("warn") && err.contains(&names[1]),
        "{err}"
    );
    // Redirected, the progress is one line per stage: kNN of each backbone.
    assert!(
        err.contains("eval 1/2: untrained backbone: kNN (")
            && err.contains("eval 2/2: trained backbone: kNN ("),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    let partial = v["knn_top1"].as_f64().unwrap();
    assert!((partial - full).abs() <= 0.1, "{partial} against {full}");

    // The other way round: the test file has a class the training file lacks.
    let out = eval_cmd(
        "knn",
        &run,
        &lacking,
        &["--test-data", data.to_str().unwrap()],
    );
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("class that the training file") && err.contains(&names[1]),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// Neighbour counts that cannot mean anything are refused before any work.
#[test]
fn eval_refuses_nonsense_neighbour_counts() {
    let (_tmp, data, run) = fresh();
    run_ok(&train_args_epochs(&data, &run, 1));
    for (k, says) in [("0", "at least one neighbour"), ("100000", "more than the")] {
        let out = eval_cmd("knn", &run, &data, &["--knn-k", k]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "--knn-k {k} accepted");
        assert!(err.contains(says) && err.contains("knn"), "{err}");
    }
}

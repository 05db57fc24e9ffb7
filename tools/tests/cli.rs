//! The CLI contract: exit codes, report and JSON keys, error lines. Runs the real binary.

use std::path::Path;
use std::process::{Command, Output};

use uic_loader::jpeg::{EncodeOptions, Encoder, PixelFormat};

fn uic(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_uic"))
        .args(args)
        .output()
        .expect("run uic")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write_jpeg(path: &Path, w: u32, h: u32) {
    let px: Vec<u8> = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
    let jpeg = Encoder::new()
        .unwrap()
        .encode(&px, w, h, PixelFormat::Rgb, &EncodeOptions::default())
        .unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, jpeg).unwrap();
}

/// `uic convert INPUT -o OUTPUT`, which must succeed.
fn convert_ok(input: &Path, output: &Path) -> Output {
    let o = uic(&[
        "convert",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    o
}

fn assert_clean_error(out: &Output) {
    let err = text(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {err}");
    assert!(
        err.lines().any(|l| l.starts_with("error: ")),
        "no `error:` line: {err}"
    );
    assert!(!err.contains("panicked"), "a panic reached the user: {err}");
}

#[test]
fn convert_inspect_verify_contract() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write_jpeg(&input.join("cats/1.jpg"), 30, 20);
    write_jpeg(&input.join("cats/2.jpg"), 20, 30);
    write_jpeg(&input.join("dogs/3.jpg"), 25, 25);
    std::fs::write(input.join("dogs/bad.jpg"), b"\xff\xd8\xffgarbage").unwrap();
    let out = dir.path().join("out.uicr");
    let o = uic(&[
        "convert",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--threads",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("1 skipped"),
        "summary line: {}",
        text(&o.stderr)
    );
    assert!(!text(&o.stderr).contains("replaced"));
    // Converting onto an existing file replaces it, and says so.
    let again = uic(&[
        "convert",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(again.status.success());
    assert!(
        text(&again.stderr).contains("out.uicr (replaced the existing file): kept 3"),
        "{}",
        text(&again.stderr)
    );

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out.uicr.report.json")).unwrap())
            .unwrap();
    assert_eq!(report["kept"], 3);
    assert_eq!(report["skipped"][0]["path"], "dogs/bad.jpg");
    assert!(report["converted"].as_array().unwrap().is_empty());

    let o = uic(&["inspect", out.to_str().unwrap(), "--json"]);
    assert!(o.status.success());
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (info["num_samples"].as_u64(), info["num_classes"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(
        (info["mode"].as_str(), info["version"].as_u64()),
        (Some("jpeg"), Some(1))
    );
    let o = uic(&["inspect", out.to_str().unwrap()]);
    assert!(text(&o.stdout).contains("cats") && text(&o.stdout).contains("dogs"));

    let o = uic(&["verify", out.to_str().unwrap(), "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);

    // Flip one byte in record 1: verify fails and names index and source path.
    let f = uic_loader::RecordFile::open(&out).unwrap();
    let (offset, _) = f.extents()[1];
    drop(f);
    let mut bytes = std::fs::read(&out).unwrap();
    bytes[offset as usize + 5] ^= 0xff;
    std::fs::write(&out, bytes).unwrap();
    let o = uic(&["verify", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o.stdout).contains("bad record 1 (cats/2.jpg)"),
        "{}",
        text(&o.stdout)
    );
    assert_clean_error(&o);

    // --strict turns the skip into a failure.
    let strict = dir.path().join("strict.uicr");
    let o = uic(&[
        "convert",
        input.to_str().unwrap(),
        "-o",
        strict.to_str().unwrap(),
        "--strict",
    ]);
    assert_clean_error(&o);
    assert!(!strict.exists());
}

#[test]
fn errors_are_one_clean_line_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.uicr");
    let o = uic(&["inspect", missing.to_str().unwrap()]);
    assert_clean_error(&o);
    assert!(text(&o.stderr).contains("nope.uicr"));

    let junk = dir.path().join("junk.uicr");
    std::fs::write(&junk, vec![7u8; 500]).unwrap();
    let o = uic(&["verify", junk.to_str().unwrap()]);
    assert_clean_error(&o);
    assert!(text(&o.stderr).contains("junk.uicr") && text(&o.stderr).contains("magic"));

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = uic(&[
        "convert",
        empty.to_str().unwrap(),
        "-o",
        dir.path().join("e.uicr").to_str().unwrap(),
    ]);
    assert_clean_error(&o);
    assert!(text(&o.stderr).contains("no usable image"));

    let o = uic(&[
        "convert",
        empty.to_str().unwrap(),
        "-o",
        "x.uicr",
        "--mode",
        "png",
    ]);
    assert!(!o.status.success());
    // clap's one-line refusal, naming the accepted modes.
    let err = text(&o.stderr);
    assert!(
        err.contains("invalid value 'png'") && err.contains("[possible values: jpeg, raw]"),
        "{err}"
    );
}

#[test]
fn bench_loader_json_pairs_each_epoch_with_a_limit_pass() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    for i in 0..12 {
        write_jpeg(&input.join(format!("c{}/{i}.jpg", i % 2)), 40 + i, 36);
    }
    let file = dir.path().join("b.uicr");
    convert_ok(&input, &file);
    let o = uic(&[
        "bench",
        "loader",
        file.to_str().unwrap(),
        "--threads",
        "2",
        "--batch-size",
        "5",
        "--epochs",
        "3",
        "--size",
        "24",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(j["threads"], 2);
    assert_eq!(j["substituted"], 0);
    let rate = j["images_per_s"].as_f64().unwrap();
    let limit = j["limit_images_per_s"].as_f64().unwrap();
    assert!(rate > 0.0 && limit > 0.0, "{j}");
    let per_epoch: Vec<f64> = j["fraction_of_limit_per_epoch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(per_epoch.len(), 3);
    let mut sorted = per_epoch.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(
        j["fraction_of_limit"].as_f64().unwrap(),
        sorted[1],
        "the median"
    );
    // An absurd thread count is capped, with a note.
    let o = uic(&[
        "bench",
        "loader",
        file.to_str().unwrap(),
        "--threads",
        "100000",
        "--batch-size",
        "5",
        "--epochs",
        "1",
        "--size",
        "24",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(j["threads"], 4 * cores);
    assert!(text(&o.stderr).contains("note: --threads 100000 capped at"));
    // Settings that would time nothing, or that `uic train` refuses, are one clean line.
    for (flag, value, says) in [
        ("--epochs", "0", "--epochs 0"),
        ("--size", "0", "--size 0"),
        ("--batch-size", "13", "--batch-size 13 for 12 images"),
    ] {
        let o = uic(&["bench", "loader", file.to_str().unwrap(), flag, value]);
        assert_clean_error(&o);
        let err = text(&o.stderr);
        assert!(err.contains(says) && !err.contains("NaN"), "{err}");
        assert!(!err.contains("LoaderConfig"), "{err}");
    }
}

#[test]
fn train_help_shows_the_code_defaults_and_each_enum_parses_one_way() {
    let out = uic(&["train", "--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    // The defaults come from TrainConfig::default(), not from text that can drift.
    let d = uic_trainer::TrainConfig::default();
    for want in [
        format!("[default: {}]", d.k),
        format!("[default: {}]", d.epochs),
        format!("[default: {}]", d.input_size),
        format!("[default: {}]", serde_json::json!(d.weight_decay)),
        format!("[default: {}]", d.arch),
        "[default: linear]".to_string(),
        "[default: paper]".to_string(),
    ] {
        assert!(help.contains(&want), "no {want} in:\n{help}");
    }
    assert!(help.contains("alexnet-small"), "{help}");
    // Every setting has a flag (read from the config's own keys, not listed here), and
    // every switch its `--no-` form.
    let toml::Value::Table(keys) = toml::Value::try_from(&d).unwrap() else {
        panic!("the config is not a table")
    };
    let has_flag = |flag: &str| {
        help.lines().any(|l| {
            l.trim_start().strip_prefix(flag).is_some_and(|rest| {
                !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
            })
        })
    };
    for (k, v) in &keys {
        let flag = format!("--{}", k.replace('_', "-"));
        assert!(has_flag(&flag), "no {flag} in:\n{help}");
        if v.is_bool() {
            let no = format!("--no-{}", k.replace('_', "-"));
            assert!(has_flag(&no), "no {no} in:\n{help}");
        }
    }
    // The rule of what --resume may change is the library's list.
    for k in uic_trainer::RESUME_MAY_CHANGE {
        let flag = format!("--{}", k.replace('_', "-"));
        let rule = help
            .split("Only ")
            .nth(1)
            .unwrap_or_default()
            .split("may differ")
            .next()
            .unwrap_or_default()
            .replace(char::is_whitespace, "");
        assert!(
            rule.contains(&flag),
            "{flag} not in the --resume rule:\n{help}"
        );
    }
    // A wrong value is clap's one-line error naming the accepted ones.
    let out = uic(&["train", "--data", "x", "--out", "y", "--arch", "vgg"]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("invalid value 'vgg'") && err.contains("alexnet-small"),
        "{err}"
    );
    // The preset of evaluation is not a training preset.
    let tmp = tempfile::tempdir().unwrap();
    let out = train_refused(tmp.path(), &["--preset", "eval"]);
    assert!(
        text(&out.stderr).contains("preset eval"),
        "{}",
        text(&out.stderr)
    );
}

/// `uic train` on a data file that does not exist, in `dir`, with `extra` flags: settings
/// refused before the data is opened; asserts a clean error.
fn train_refused(dir: &Path, extra: &[&str]) -> Output {
    let (data, run) = (dir.join("none.uicr"), dir.join("run"));
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = uic(&args);
    assert_clean_error(&out);
    out
}

#[test]
fn inputs_below_the_least_size_of_an_architecture_are_one_clean_line() {
    let tmp = tempfile::tempdir().unwrap();
    for size in ["8", "14"] {
        let out = train_refused(
            tmp.path(),
            &["--arch", "alexnet-small", "--input-size", size],
        );
        let err = text(&out.stderr);
        assert!(err.contains("below 15 px"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        // Refused before anything is created.
        assert!(!tmp.path().join("run").exists());
    }
}

/// Every `*.tmp*` file in `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect()
}

#[test]
fn an_interrupted_convert_leaves_no_temporary_file() {
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    let opts = uic_loader::synth::SynthOptions {
        classes: 10,
        per_class: 150,
        size: 96,
        seed: 1,
    };
    uic_loader::synth::write_image_folder(&images, &opts).unwrap();
    let out = tmp.path().join("data.uicr");
    // What a killed conversion left: removed and named by the next run.
    let stale = tmp.path().join("data.uicr.tmp4194305");
    std::fs::write(&stale, b"partial").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_uic"))
        .args([
            "convert",
            images.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .args(["--max-side", "64", "--threads", "1"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt as soon as the record file is being written.
    let t0 = Instant::now();
    let pid = child.id().to_string();
    while !temp_files(tmp.path())
        .iter()
        .any(|n| n.ends_with(&format!(".tmp{pid}")))
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the interrupt"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no temporary file appeared"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let kill = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(
        err.contains("data.uicr.tmp4194305, left by an interrupted"),
        "{err}"
    );
    assert!(err.contains("interrupted: removed the partial"), "{err}");
    assert!(
        temp_files(tmp.path()).is_empty(),
        "{:?}",
        temp_files(tmp.path())
    );
    assert!(!out.exists());
}

#[test]
fn the_summary_counts_skips_by_reason_and_says_re_encoded_apart_from_converted() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write_jpeg(&input.join("a.jpg"), 24, 20);
    write_jpeg(&input.join("b.jpg"), 24, 20);
    std::fs::write(input.join("c.jpg"), b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    std::fs::write(input.join("notes.txt"), b"hello").unwrap();
    std::fs::write(input.join("more.md"), b"hello").unwrap();
    let out_file = dir.path().join("o.uicr");
    let out = uic(&[
        "convert",
        input.to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("kept 2 images (0 converted, 3 skipped)"),
        "{err}"
    );
    assert!(
        err.contains(
            "; skipped: 2 not an image file extension, 1 not a decodable JPEG; first skipped: "
        ),
        "{err}"
    );
    // A re-encode is said as such, not as "0 converted"; inspect uses the same two words.
    let out = uic(&[
        "convert",
        input.to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
        "--max-side",
        "16",
    ]);
    assert!(text(&out.stderr).contains("kept 2 images (all re-encoded, 0 converted, 3 skipped)"));
    let inspect = text(&uic(&["inspect", out_file.to_str().unwrap()]).stdout);
    assert!(
        inspect.contains("2 re-encoded or converted: stored bytes are not the source file's"),
        "{inspect}"
    );
}

/// Several tar shards as several INPUTs, and a labelled flat tar: the summary says how each
/// was read, the report's `labels_format` says which labels file it was, and a file that is
/// not a tar is one clean line.
#[test]
fn convert_reads_tar_shards_and_says_how() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = |seed: u32| {
        let p = dir.path().join(format!("tmp{seed}.jpg"));
        write_jpeg(&p, 12 + seed, 10);
        std::fs::read(&p).unwrap()
    };
    let shard = |name: &str, members: &[(&str, Vec<u8>)]| {
        let mut b = tar::Builder::new(Vec::new());
        for (n, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, n, data.as_slice()).unwrap();
        }
        let p = dir.path().join(name);
        std::fs::write(&p, b.into_inner().unwrap()).unwrap();
        p
    };
    let a = shard("a.tar", &[("x.jpg", jpeg(0)), ("x.cls", b"1".to_vec())]);
    let b = shard(
        "b.tar",
        &[
            ("y.jpg", jpeg(1)),
            ("y.cls", b"0".to_vec()),
            ("z.jpg", jpeg(2)),
            ("z.cls", b"1".to_vec()),
        ],
    );
    let out = dir.path().join("wds.uicr");
    let o = uic(&[
        "convert",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("kept 3 images") && err.contains("read as webdataset"),
        "{err}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("wds.uicr.report.json")).unwrap())
            .unwrap();
    assert_eq!(report["layout"], "webdataset");
    assert_eq!(report["labels_format"], serde_json::Value::Null);
    assert_eq!(report["num_classes"], 2);

    let flat = shard("val.tar", &[("v1.JPEG", jpeg(3)), ("v2.JPEG", jpeg(4))]);
    let labels = dir.path().join("val.txt");
    std::fs::write(&labels, "v1.JPEG 5\nv2.JPEG 3\n").unwrap();
    let o = uic(&[
        "convert",
        flat.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("read as tar-labels; labels: file-label-text"),
        "{err}"
    );

    let o = uic(&[
        "convert",
        dir.path().join("tmp0.jpg").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_clean_error(&o);
    assert!(text(&o.stderr).contains("neither a folder nor a readable tar archive"));
}

/// A reader that has already gone: every command that prints exits quietly (0, or 141 if
/// it died of SIGPIPE), never with a panic. The read end is closed before the command
/// starts, so the first write fails whatever the timing.
#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    for i in 0..3 {
        write_jpeg(&input.join(format!("c{i}/{i}.jpg")), 24, 24);
    }
    let file = dir.path().join("f.uicr");
    convert_ok(&input, &file);
    let f = file.to_str().unwrap();
    for args in [
        &["inspect", f][..],
        &["inspect", f, "--json"],
        &["verify", f],
        &["--help"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_uic"))
            .args(args)
            .stdout(writer)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        let code = out.status.code();
        use std::os::unix::process::ExitStatusExt;
        let sigpipe = out.status.signal() == Some(libc::SIGPIPE);
        assert!(
            code == Some(0) || code == Some(141) || sigpipe,
            "uic {args:?} into a closed pipe: {:?}, {err}",
            out.status
        );
        assert!(!err.contains("panicked"), "uic {args:?}: {err}");
        assert!(err.is_empty(), "uic {args:?} said: {err}");
    }
}

/// Hidden folders and macOS's `__MACOSX` beside the class folders are not classes: they
/// are named in the report and the summary counts them, and the class indices of the real
/// classes are those of a tree without them.
#[test]
fn hidden_and_macosx_folders_are_not_classes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write_jpeg(&input.join("airplane/0.jpg"), 24, 24);
    write_jpeg(&input.join("cat/1.jpg"), 24, 24);
    write_jpeg(&input.join(".hidden_class/2.jpg"), 24, 24);
    write_jpeg(&input.join("__MACOSX/cat/._1.jpg"), 24, 24);
    let out = dir.path().join("out.uicr");
    let o = uic(&[
        "convert",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("2 skipped"), "{err}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out.uicr.report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["num_classes"], 2, "{report}");
    assert_eq!(report["kept"], 2, "{report}");
    let skipped: Vec<(&str, &str)> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["path"].as_str().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(skipped.len(), 2, "{report}");
    assert!(skipped.contains(&(".hidden_class", "hidden folder, not a class; not read")));
    assert!(skipped
        .iter()
        .any(|(p, r)| *p == "__MACOSX" && r.contains("macOS")));
    let f = uic_loader::RecordFile::open(&out).unwrap();
    assert_eq!(f.class_names(), ["airplane", "cat"]);
}

/// libtorch's OpenMP threads spin briefly (libgomp's spin count 10,000, not 300,000) in a
/// command that runs libtorch, unless the user chose: the re-executed process is the one
/// that runs. `OMP_DISPLAY_ENV=VERBOSE` makes libgomp print its settings as it starts, once
/// per start.
#[test]
fn libtorch_commands_spin_briefly_unless_the_user_chose() {
    let spin_counts = |set: Option<(&str, &str)>| -> Vec<String> {
        let mut c = Command::new(env!("CARGO_BIN_EXE_uic"));
        c.args([
            "train",
            "--data",
            "/nonexistent.uicr",
            "--out",
            "/nonexistent-run",
        ])
        .env("OMP_DISPLAY_ENV", "VERBOSE")
        .env_remove("OMP_WAIT_POLICY")
        .env_remove("GOMP_SPINCOUNT");
        if let Some((k, v)) = set {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(!out.status.success());
        text(&out.stderr)
            .lines()
            .filter(|l| l.trim_start().starts_with("GOMP_SPINCOUNT"))
            .map(|l| l.split('\'').nth(1).unwrap_or_default().to_string())
            .collect()
    };
    // Started with libgomp's default, then re-executed with the bounded spin.
    let unset = spin_counts(None);
    assert_eq!(unset, ["300000", "10000"], "{unset:?}");
    // A choice of the user's is kept: one start, their setting.
    assert_eq!(spin_counts(Some(("OMP_WAIT_POLICY", "PASSIVE"))), ["0"]);
    assert_eq!(spin_counts(Some(("GOMP_SPINCOUNT", "500"))), ["500"]);
    // A command that does not run libtorch is not re-executed.
    let out = Command::new(env!("CARGO_BIN_EXE_uic"))
        .args(["inspect", "/nonexistent.uicr"])
        .env("OMP_DISPLAY_ENV", "VERBOSE")
        .env_remove("OMP_WAIT_POLICY")
        .env_remove("GOMP_SPINCOUNT")
        .output()
        .unwrap();
    let starts = text(&out.stderr).matches("GOMP_SPINCOUNT").count();
    assert_eq!(starts, 1, "{}", text(&out.stderr));
}

/// A loader whose producer stops mid-epoch (made to by the `UIC_LOADER_FAIL_AT` hook) is an
/// error the command reports with its cause, not a shorter epoch that looks complete.
#[test]
fn a_loader_that_stops_mid_epoch_is_an_error_not_a_short_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    for i in 0..8 {
        write_jpeg(&input.join(format!("c{}/{i}.jpg", i % 2)), 32, 32);
    }
    let file = dir.path().join("f.uicr");
    convert_ok(&input, &file);
    let out = Command::new(env!("CARGO_BIN_EXE_uic"))
        .args([
            "bench",
            "loader",
            file.to_str().unwrap(),
            "--batch-size",
            "2",
        ])
        .args(["--epochs", "1", "--size", "16", "--threads", "1"])
        .env("UIC_LOADER_FAIL_AT", "1")
        .output()
        .unwrap();
    assert_clean_error(&out);
    let err = text(&out.stderr);
    assert!(
        err.contains("the loader stopped before batch 1 of 4: stopped by UIC_LOADER_FAIL_AT=1"),
        "{err}"
    );
    // Training stops on it too, with nothing recorded for the unfinished epoch.
    let run = dir.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_uic"))
        .args([
            "train",
            "--data",
            file.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ])
        .args([
            "--arch",
            "alexnet-small",
            "--width",
            "0.25",
            "--input-size",
            "16",
        ])
        .args(["--k", "2", "--batch-size", "2", "--epochs", "1", "--quiet"])
        .env("UIC_LOADER_FAIL_AT", "2")
        .output()
        .unwrap();
    assert_clean_error(&out);
    let err = text(&out.stderr);
    assert!(err.contains("stopped by UIC_LOADER_FAIL_AT=2"), "{err}");
    assert!(
        !run.join("metrics.jsonl").exists()
            || std::fs::read_to_string(run.join("metrics.jsonl"))
                .unwrap()
                .is_empty()
    );
}

//! `uic synth` (hidden): the scale bench's data, accepted by `uic verify` and `convert`.

use std::process::{Command, Output};

fn uic(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_uic"))
        .args(args)
        .output()
        .expect("run uic")
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("one JSON object")
}

#[test]
fn synth_writes_a_record_file_that_verify_and_inspect_accept() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("scale.uicr");
    let out = out.to_str().unwrap();
    let o = uic(&["synth", out, "--images", "2500", "--classes", "1000"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json(&uic(&["verify", out, "--json"]));
    assert_eq!(v["ok"], true);
    assert_eq!(v["num_samples"], 2500);
    let i = json(&uic(&["inspect", out, "--json"]));
    assert_eq!(i["num_classes"], 1000, "{i}");
    // Hidden from the help, not from the parser.
    let help = String::from_utf8_lossy(&uic(&["--help"]).stdout).into_owned();
    assert!(help.contains("convert"), "{help}");
    assert!(
        !help.lines().any(|l| l.trim_start().starts_with("synth")),
        "{help}"
    );
}

#[test]
fn synth_folder_converts_to_the_same_counts() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("images");
    let rec = dir.path().join("conv.uicr");
    let o = uic(&[
        "synth",
        folder.to_str().unwrap(),
        "--images",
        "300",
        "--classes",
        "50",
        "--folder",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c = uic(&[
        "convert",
        folder.to_str().unwrap(),
        "-o",
        rec.to_str().unwrap(),
    ]);
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let i = json(&uic(&["inspect", rec.to_str().unwrap(), "--json"]));
    assert_eq!(i["num_samples"], 300, "{i}");
    assert_eq!(i["num_classes"], 50, "{i}");
}

#[test]
fn synth_refuses_zero_classes_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.uicr");
    let o = uic(&[
        "synth",
        out.to_str().unwrap(),
        "--images",
        "10",
        "--classes",
        "0",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("error: "), "{err}");
    assert!(!out.exists());
}

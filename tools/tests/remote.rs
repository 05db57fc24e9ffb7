//! `uic` with record files in object storage, against a real S3-compatible server on
//! loopback (moto's; skipped, saying so, without it): convert uploads, inspect and verify
//! agree with the local file, two processes share one cache, training from the URL equals
//! training from the local file.

use std::path::Path;
use std::process::{Command, Output};

#[path = "../../loader/tests/common/s3.rs"]
#[allow(dead_code)]
mod s3;

use s3::S3;

use crate::train::{dataset, text, train_args_epochs};

fn uic(s3: &S3, cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_uic"));
    c.envs(s3.env()).env("UIC_CACHE_DIR", cache);
    c
}

fn ok(out: Output, what: &str) -> Output {
    assert!(out.status.success(), "{what} failed: {}", text(&out.stderr));
    out
}

#[test]
fn convert_uploads_and_inspect_verify_and_train_read_the_url_as_the_local_file() {
    let Some(s3) = S3::start("convert_uploads_and_inspect_verify_and_train_read_the_url") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let local = dataset(tmp.path());
    let cache = tmp.path().join("cache");
    s3.bucket("data");
    let url = "s3://data/sets/synth.uicr";

    // Convert straight to the bucket: the object is the local conversion's bytes.
    let out = ok(
        uic(&s3, &cache)
            .args([
                "convert",
                tmp.path().join("images").to_str().unwrap(),
                "-o",
                url,
            ])
            .output()
            .unwrap(),
        "convert -o s3://",
    );
    assert!(
        text(&out.stderr).contains(&format!(
            "uploaded {} bytes to {url}",
            std::fs::metadata(&local).unwrap().len()
        )),
        "{}",
        text(&out.stderr)
    );

    // inspect: the same JSON but the path; verify: all records.
    let inspect = |file: &str| {
        let out = ok(
            uic(&s3, &cache)
                .args(["inspect", "--json", file])
                .output()
                .unwrap(),
            "inspect",
        );
        let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_object_mut().unwrap().remove("path");
        v
    };
    assert_eq!(inspect(url), inspect(local.to_str().unwrap()));
    let out = ok(
        uic(&s3, &cache).args(["verify", url]).output().unwrap(),
        "verify",
    );
    assert!(
        text(&out.stdout).starts_with("ok: all 256 records"),
        "{}",
        text(&out.stdout)
    );
    // The cached copy is the local file, byte for byte.
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        std::fs::read(entries[0].join("data")).unwrap(),
        std::fs::read(&local).unwrap()
    );

    // Training from the URL (a cold cache) gives the local run's weights and metrics.
    let run = |data: &str, run: &str, cache: &Path| {
        let dir = tmp.path().join(run);
        let args = train_args_epochs(Path::new(data), &dir, 2);
        ok(uic(&s3, cache).args(&args).output().unwrap(), "train");
        dir
    };
    let a = run(local.to_str().unwrap(), "run-local", &cache);
    let b = run(url, "run-remote", &tmp.path().join("cold-cache"));
    for f in [
        "checkpoint/model.safetensors",
        "checkpoint/labels.safetensors",
    ] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs"
        );
    }

    // `uic eval` reads the URL as the local file: the same scores, training file and test
    // file both from the URL.
    let eval = |data: &str| {
        let out = uic(&s3, &cache)
            .args(["eval", "knn", "--json", "--checkpoint"])
            .arg(&a)
            .args(["--data", data, "--test-data", data])
            .output()
            .unwrap();
        let mut v: serde_json::Value =
            serde_json::from_str(text(&ok(out, "eval").stdout).trim()).unwrap();
        v.as_object_mut().unwrap().remove("seconds");
        v
    };
    let (from_file, from_url) = (eval(local.to_str().unwrap()), eval(url));
    assert!(from_file["knn_top1"].is_number(), "{from_file}");
    assert_eq!(from_file, from_url);
}

#[test]
fn two_processes_share_one_cache_entry_and_bad_urls_fail_in_one_line() {
    let Some(s3) = S3::start("two_processes_share_one_cache_entry") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let local = dataset(tmp.path());
    let bytes = std::fs::read(&local).unwrap();
    s3.bucket("data");
    s3.put("data", "synth.uicr", &bytes);
    let cache = tmp.path().join("cache");
    let url = "s3://data/synth.uicr";
    let children: Vec<_> = (0..2)
        .map(|_| {
            uic(&s3, &cache)
                .args(["verify", url])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        ok(c.wait_with_output().unwrap(), "verify");
    }
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    assert_eq!(entries.len(), 1, "one entry for one object");
    assert_eq!(std::fs::read(entries[0].join("data")).unwrap(), bytes);

    // A missing object, a missing bucket to write to, a server that is not there: one line
    // each, naming the URL, and no upload left behind.
    for (args, env) in [
        (vec!["inspect", "s3://data/missing.uicr"], None),
        (
            vec![
                "convert",
                tmp.path().join("images").to_str().unwrap(),
                "-o",
                "s3://nobucket/x.uicr",
            ],
            None,
        ),
        (vec!["inspect", url], Some("http://127.0.0.1:9")),
    ] {
        let mut c = uic(&s3, &cache);
        c.args(&args).env("UIC_REMOTE_RETRY_SECS", "2");
        if let Some(e) = env {
            c.env("AWS_ENDPOINT_URL", e);
        }
        let out = c.output().unwrap();
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        let url = args.iter().find(|a| a.starts_with("s3://")).unwrap();
        assert!(err.starts_with(&format!("error: {url}: ")), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}

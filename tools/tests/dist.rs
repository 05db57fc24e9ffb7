//! `uic train` as two ranks on 127.0.0.1 (Gloo): started by torchrun's variables and by
//! the built-in launcher, resumed as one rank, a rank killed, Ctrl-C on the launcher.
//! Every wait is bounded; every port is picked free.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use uic_loader::convert::{self, ConvertOptions};
use uic_loader::synth::{self, SynthOptions};

/// The variables that make `uic train` a rank of a larger world (torchrun's and srun's),
/// which a test's own environment must not pass on.
pub(crate) const RANK_VARS: [&str; 5] = [
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "SLURM_PROCID",
    "SLURM_NTASKS",
];

fn uic() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_uic"));
    for k in RANK_VARS {
        c.env_remove(k);
    }
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// 96 synthetic images in 4 latent classes.
fn dataset(dir: &Path) -> PathBuf {
    let images = dir.join("images");
    let opts = SynthOptions {
        classes: 4,
        per_class: 24,
        size: 36,
        seed: 9,
    };
    synth::write_image_folder(&images, &opts).unwrap();
    let rec = dir.join("synth.uicr");
    convert::convert(&images, &rec, &ConvertOptions::default(), &|_| {}).unwrap();
    rec
}

fn train_args(data: &Path, out: &Path, epochs: u64) -> Vec<String> {
    let mut v: Vec<String> = [
        "train",
        "--arch",
        "alexnet-small",
        "--width",
        "0.25",
        "--input-size",
        "32",
        "--k",
        "6",
        "--batch-size",
        "16",
        "--threads",
        "1",
        "--torch-threads",
        "1",
        "--seed",
        "4",
        "--quiet",
        "--dist-timeout",
        "60",
        "--data",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(data.display().to_string());
    v.extend(["--out".to_string(), out.display().to_string()]);
    v.extend(["--epochs".to_string(), epochs.to_string()]);
    v
}

/// Rank `rank` of `world`, started as torchrun would start it.
fn rank(args: &[String], rank: usize, world: usize, port: u16) -> Child {
    uic()
        .args(args)
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits at most `limit` for `c`; kills it past that and fails.
fn wait(c: Child, limit: Duration, what: &str) -> Output {
    let start = Instant::now();
    let mut c = c;
    loop {
        if c.try_wait().unwrap().is_some() {
            return c.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = c.kill();
            let out = c.wait_with_output().unwrap();
            panic!(
                "{what} still running after {limit:?}: {}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `uic ARGS`, started with its output captured (to wait on with [`wait`]).
fn spawn<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Child {
    uic()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn two_ranks(args: &[String]) -> (Output, Output) {
    let port = free_port();
    let r0 = rank(args, 0, 2, port);
    let r1 = rank(args, 1, 2, port);
    let limit = Duration::from_secs(300);
    (wait(r0, limit, "rank 0"), wait(r1, limit, "rank 1"))
}

fn ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what} failed: {}", text(&o.stderr));
}

/// metrics.jsonl without the timing fields.
fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            for k in ["images_per_s", "data_wait", "seconds", "sync_wait"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v
        })
        .collect()
}

fn checkpoint_bytes(run: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = run.join("checkpoint");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "state.json")
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn two_ranks_train_as_one_run_the_launcher_agrees_and_one_rank_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let env_run = tmp.path().join("env");
    let (r0, r1) = two_ranks(&train_args(&data, &env_run, 3));
    ok(&r0, "rank 0");
    ok(&r1, "rank 1");
    // Rank 0 reports and writes; rank 1 says nothing.
    assert!(
        text(&r0.stderr).contains("done: 3 epochs"),
        "{}",
        text(&r0.stderr)
    );
    assert_eq!(text(&r1.stderr), "");
    let m = metrics(&env_run);
    assert_eq!(m.len(), 3);
    assert!(env_run.join("checkpoint").is_dir());
    assert!(!env_run.join(".checkpoint.old").exists());
    // Every epoch sees the whole data: 96 images in global batches of 16.
    for line in &m {
        assert!(line["loss"].as_f64().unwrap().is_finite());
    }

    // The built-in launcher: the same run, the same bytes.
    let launched = tmp.path().join("launched");
    let mut args = train_args(&data, &launched, 3);
    args.extend(["--nproc-per-node".into(), "2".into()]);
    let out = wait(spawn(&args), Duration::from_secs(300), "the launcher");
    ok(&out, "the launcher");
    let err = text(&out.stderr);
    assert!(err.contains("[rank 0] done: 3 epochs"), "{err}");
    assert!(!err.contains("[rank 1]"), "{err}");
    assert_eq!(metrics(&launched), m);
    assert!(
        checkpoint_bytes(&launched) == checkpoint_bytes(&env_run),
        "weights differ"
    );

    // The sync after backward instead of during it: the same sums, the same bytes.
    let after = tmp.path().join("after");
    let mut args = train_args(&data, &after, 3);
    args.push("--no-overlap-sync".into());
    let (r0, r1) = two_ranks(&args);
    ok(&r0, "rank 0 without overlap");
    ok(&r1, "rank 1 without overlap");
    assert_eq!(metrics(&after), m);
    assert!(
        checkpoint_bytes(&after) == checkpoint_bytes(&env_run),
        "the overlapped sync changed the weights"
    );
    let line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(env_run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let w = line["sync_wait"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&w), "{line}");

    // One rank resumes the two ranks' checkpoint and continues the run.
    let resumed = uic()
        .args(train_args(&data, &env_run, 5))
        .arg("--resume")
        .output()
        .unwrap();
    ok(&resumed, "the 1-rank resume");
    assert!(text(&resumed.stderr).contains("resuming after epoch 3 of 5"));
    let after = metrics(&env_run);
    assert_eq!(after.len(), 5);
    assert_eq!(after[..3], m[..]);

    // And two ranks resume a one-rank checkpoint.
    let (r0, r1) = two_ranks(&{
        let mut a = train_args(&data, &env_run, 6);
        a.push("--resume".into());
        a
    });
    ok(&r0, "rank 0 resuming");
    ok(&r1, "rank 1 resuming");
    assert_eq!(metrics(&env_run).len(), 6);
}

/// `--dist-backend nccl` where it cannot run is refused in one line before any rendezvous:
/// in a build without NCCL, and for CPU tensors (`--device cpu`). Without the flag, CPU
/// ranks default to Gloo.
#[test]
fn nccl_where_it_cannot_run_is_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("none.uicr");
    let run = tmp.path().join("run");
    let mut args = train_args(&data, &run, 1);
    args.extend(["--dist-backend".into(), "nccl".into()]);
    // No other rank ever comes: a refusal must not wait for one.
    let o = wait(
        rank(&args, 0, 2, free_port()),
        Duration::from_secs(30),
        "rank 0",
    );
    assert!(!o.status.success());
    let e = text(&o.stderr);
    let want = if uic_c10d::has_nccl() {
        "--dist-backend nccl reduces CUDA tensors: add --device cuda"
    } else {
        "--dist-backend nccl: this uic is built without NCCL; use --dist-backend gloo"
    };
    assert!(e.contains(want), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(!run.exists(), "a refused run made its folder");
}

#[test]
fn ranks_started_differently_or_with_a_batch_they_cannot_share_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let run = tmp.path().join("run");
    let port = free_port();
    let mut other = train_args(&data, &run, 2);
    let k = other.iter().position(|a| a == "--k").unwrap();
    other[k + 1] = "7".into();
    let r0 = rank(&train_args(&data, &run, 2), 0, 2, port);
    // Rank 1 comes late: rank 0 says whom it waits for, where, and until when.
    std::thread::sleep(Duration::from_secs(5));
    let r1 = rank(&other, 1, 2, port);
    for (o, r) in [
        (wait(r0, Duration::from_secs(120), "rank 0"), 0),
        (wait(r1, Duration::from_secs(120), "rank 1"), 1),
    ] {
        assert!(!o.status.success());
        let e = text(&o.stderr);
        assert!(
            e.contains("rank 1's settings differ from rank 0's"),
            "rank {r}: {e}"
        );
        // The rank that differs names the setting and both values.
        let mut lines: Vec<&str> = e.lines().collect();
        if r == 1 {
            assert!(e.contains("(k: rank 0 6, rank 1 7)"), "rank {r}: {e}");
        } else {
            let waiting = format!("rank 0: waiting for 1 more rank at 127.0.0.1:{port}, until ");
            assert!(lines[0].starts_with(&waiting), "{e}");
            assert!(lines[0].ends_with(" UTC (--dist-timeout 60 s)"), "{e}");
            lines.remove(0);
        }
        assert_eq!(lines.len(), 1, "{e}");
    }
    assert!(!run.exists(), "a refused run made its folder");

    // Another file of the same size whose first samples are the same (the last two classes'
    // folders swapped): the index fingerprint tells them apart.
    let images = tmp.path().join("images");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    let (a, b) = (dirs[dirs.len() - 2].clone(), dirs[dirs.len() - 1].clone());
    let swap = tmp.path().join("swap");
    std::fs::rename(&a, &swap).unwrap();
    std::fs::rename(&b, &a).unwrap();
    std::fs::rename(&swap, &b).unwrap();
    let other_data = tmp.path().join("other.uicr");
    convert::convert(&images, &other_data, &ConvertOptions::default(), &|_| {}).unwrap();
    assert_eq!(
        std::fs::metadata(&other_data).unwrap().len(),
        std::fs::metadata(&data).unwrap().len()
    );
    let port = free_port();
    let r0 = rank(&train_args(&data, &run, 2), 0, 2, port);
    let r1 = rank(&train_args(&other_data, &run, 2), 1, 2, port);
    for (o, r) in [
        (wait(r0, Duration::from_secs(120), "rank 0"), 0),
        (wait(r1, Duration::from_secs(120), "rank 1"), 1),
    ] {
        assert!(!o.status.success(), "rank {r}");
        let e = text(&o.stderr);
        assert!(e.contains("rank 1's data file differ"), "rank {r}: {e}");
    }

    // The launcher forwards the ranks' refusal and status.
    let mut args = train_args(&data, &run, 2);
    let b = args.iter().position(|a| a == "--batch-size").unwrap();
    args[b + 1] = "15".into();
    args.extend(["--nproc-per-node".into(), "2".into()]);
    let out = wait(spawn(&args), Duration::from_secs(120), "the launcher");
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(
        e.contains("[rank 0] error: invalid setting: batch size 15 cannot be shared by 2 ranks"),
        "{e}"
    );
}

fn ranks_alive(marker: &Path) -> usize {
    let m = marker.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| {
            let c = text(c);
            c.contains(&m) && !c.contains("--nproc-per-node")
        })
        .count()
}

fn wait_for_epoch(run: &Path, limit: Duration) {
    let start = Instant::now();
    while std::fs::read_to_string(run.join("metrics.jsonl")).map_or(0, |t| t.lines().count()) < 1 {
        assert!(start.elapsed() < limit, "no epoch finished in {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn interrupt(c: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(c.id() as libc::pid_t, sig) };
}

#[test]
fn a_killed_rank_stops_the_other_within_the_timeout_and_the_checkpoint_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let run = tmp.path().join("run");
    let mut args = train_args(&data, &run, 200);
    let t = args.iter().position(|a| a == "--dist-timeout").unwrap();
    args[t + 1] = "20".into();
    let port = free_port();
    let r0 = rank(&args, 0, 2, port);
    let mut r1 = rank(&args, 1, 2, port);
    wait_for_epoch(&run, Duration::from_secs(120));
    r1.kill().unwrap();
    let _ = r1.wait();
    let killed = Instant::now();
    let out = wait(
        r0,
        Duration::from_secs(90),
        "rank 0 after rank 1 was killed",
    );
    assert!(
        killed.elapsed() < Duration::from_secs(60),
        "took {:?}",
        killed.elapsed()
    );
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(e.contains("error: rank 0 of 2: "), "{e}");
    assert!(e.contains("failed: "), "{e}");
    assert!(!e.contains(".cc:"), "a C++ source location leaked: {e}");
    // The last checkpoint is whole and one rank continues it.
    let done = metrics(&run).len() as u64;
    assert!(done >= 1);
    let resumed = uic()
        .args(train_args(&data, &run, done + 1))
        .arg("--resume")
        .output()
        .unwrap();
    ok(&resumed, "the resume");
    assert_eq!(metrics(&run).len() as u64, done + 1);
}

#[test]
fn ctrl_c_on_the_launcher_stops_every_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let run = tmp.path().join("run");
    let mut args = train_args(&data, &run, 200);
    args.extend(["--nproc-per-node".into(), "2".into()]);
    let launcher = spawn(&args);
    wait_for_epoch(&run, Duration::from_secs(120));
    assert_eq!(ranks_alive(&run), 2);
    interrupt(&launcher, libc::SIGINT);
    let out = wait(
        launcher,
        Duration::from_secs(60),
        "the interrupted launcher",
    );
    // Every rank stops at the same step with a checkpoint: the documented status 75.
    let status: ExitStatus = out.status;
    assert_eq!(status.code(), Some(75), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("[rank 0] stopped: the checkpoint in"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(ranks_alive(&run), 0, "a rank outlived the launcher");
}

#[test]
fn bench_sync_reports_the_bytes_reduced_between_two_ranks() {
    let out = wait(
        spawn(&[
            "bench",
            "sync",
            "--nproc-per-node",
            "2",
            "--mb",
            "1",
            "--iters",
            "2",
            "--json",
        ]),
        Duration::from_secs(120),
        "bench sync",
    );
    ok(&out, "bench sync");
    let stdout = text(&out.stdout);
    let line = stdout.strip_prefix("[rank 0] ").expect("rank 0's line");
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["bytes"], 1 << 20);
    assert_eq!(v["ranks"], 2);
    assert!(v["seconds_median"].as_f64().unwrap() > 0.0);
    // One process alone has nothing to sync with.
    let alone = uic().args(["bench", "sync", "--mb", "1"]).output().unwrap();
    assert!(!alone.status.success());
    assert!(text(&alone.stderr).contains("bench sync needs several ranks"));
}

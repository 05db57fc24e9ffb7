//! Runs that survive a cluster: a signal stops a run at the next step with a checkpoint
//! part-way through the epoch, and `--resume` continues it bit-exactly (one process, two
//! ranks), or at another world size; a run folder in use is refused to a second run.
//! Signals are real (`UIC_SIGNAL_SELF_AT` makes a process send itself SIGTERM after a known
//! step); every wait is bounded and every port picked free.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::train::{dataset, text, uic};

/// The documented status of a run stopped by a signal after its checkpoint.
const EXIT_STOPPED: i32 = 75;

/// 256 images in batches of 32: 8 steps an epoch.
fn args(data: &Path, out: &Path, epochs: u64) -> Vec<String> {
    let mut a = crate::train::train_args_epochs(data, out, epochs);
    a.extend(["--dist-timeout".into(), "60".into()]);
    a
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `uic ARGS` with `envs`, as rank `rank` of `world` when `port` is given.
fn start(args: &[String], envs: &[(&str, &str)], ranks: Option<(usize, usize, u16)>) -> Child {
    let mut c = uic();
    c.args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for k in crate::dist::RANK_VARS {
        c.env_remove(k);
    }
    if let Some((rank, world, port)) = ranks {
        c.env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", world.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string());
    }
    c.spawn().unwrap()
}

/// Waits at most `limit` for `c`; kills it past that and fails.
fn wait(mut c: Child, limit: Duration, what: &str) -> Output {
    let t0 = Instant::now();
    while c.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = c.kill();
            let o = c.wait_with_output().unwrap();
            panic!("{what} still running after {limit:?}: {}", text(&o.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    c.wait_with_output().unwrap()
}

fn run(args: &[String], envs: &[(&str, &str)]) -> Output {
    wait(
        start(args, envs, None),
        Duration::from_secs(300),
        "uic train",
    )
}

fn ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what} failed: {}", text(&o.stderr));
}

fn stopped(o: &Output, what: &str) {
    assert_eq!(
        o.status.code(),
        Some(EXIT_STOPPED),
        "{what}: {}",
        text(&o.stderr)
    );
}

fn two_ranks(args: &[String], env1: &[(&str, &str)]) -> (Output, Output) {
    let port = free_port();
    let r0 = start(args, &[], Some((0, 2, port)));
    let r1 = start(args, env1, Some((1, 2, port)));
    let limit = Duration::from_secs(300);
    (wait(r0, limit, "rank 0"), wait(r1, limit, "rank 1"))
}

fn with_resume(mut a: Vec<String>) -> Vec<String> {
    a.push("--resume".into());
    a
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

fn state(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("checkpoint/state.json")).unwrap())
        .unwrap()
}

fn same_checkpoint(a: &Path, b: &Path) {
    for f in [
        "model.safetensors",
        "optimizer.safetensors",
        "labels.safetensors",
    ] {
        let x = std::fs::read(a.join("checkpoint").join(f)).unwrap();
        let y = std::fs::read(b.join("checkpoint").join(f)).unwrap();
        assert!(
            x == y,
            "{f} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

fn fresh() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    (tmp, data)
}

#[test]
fn sigterm_mid_epoch_checkpoints_and_the_resumed_run_equals_an_uninterrupted_one() {
    let (tmp, data) = fresh();
    let whole = tmp.path().join("whole");
    ok(&run(&args(&data, &whole, 4), &[]), "the whole run");

    // SIGTERM after step 11: epoch 2 is part-way (8 steps an epoch).
    let cut = tmp.path().join("cut");
    let o = run(&args(&data, &cut, 4), &[("UIC_SIGNAL_SELF_AT", "11")]);
    stopped(&o, "the signalled run");
    let err = text(&o.stderr);
    assert!(
        err.contains("stopping: writing a checkpoint at the next step"),
        "{err}"
    );
    assert!(
        err.contains("stopped: the checkpoint in")
            && err.contains("batch ")
            && err.contains("--resume"),
        "{err}"
    );
    let s = state(&cut);
    assert_eq!(s["epoch"], 1, "{s}");
    let batches = s["partial"]["batches"].as_u64().unwrap();
    assert!(
        (1..8).contains(&batches),
        "not part-way through epoch 2: {s}"
    );
    assert_eq!(s["format_version"], 2);
    assert_eq!(metrics(&cut).len(), 1);

    let o = run(&with_resume(args(&data, &cut, 4)), &[]);
    ok(&o, "the resume");
    let err = text(&o.stderr);
    assert!(
        err.contains("resuming part-way through epoch 2 of 4"),
        "{err}"
    );
    same_checkpoint(&whole, &cut);
    assert_eq!(metrics(&whole), metrics(&cut));
    assert!(state(&cut).get("partial").is_none());
}

#[test]
fn checkpoint_every_writes_mid_epoch_checkpoints_that_survive_a_kill_9() {
    let (tmp, data) = fresh();
    let whole = tmp.path().join("whole");
    ok(&run(&args(&data, &whole, 3), &[]), "the whole run");
    // A checkpoint at every step (0.00001 minutes); SIGKILL once one part-way through an
    // epoch is on disk, wherever the run then is (a later one may be half-written).
    let often = tmp.path().join("often");
    let mut a = args(&data, &often, 3);
    a.extend(["--checkpoint-every".into(), "0.00001".into()]);
    let mut child = start(&a, &[], None);
    let t0 = Instant::now();
    let seen = loop {
        let s = std::fs::read_to_string(often.join("checkpoint/state.json")).unwrap_or_default();
        if s.contains("\"partial\"") {
            break s;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before a partial checkpoint"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no partial checkpoint"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the run finished before the kill; {seen}"
    );
    let o = run(&with_resume(args(&data, &often, 3)), &[]);
    ok(&o, "the resume after kill -9");
    same_checkpoint(&whole, &often);
    assert_eq!(metrics(&whole), metrics(&often));
    // A nonsense interval is refused by name.
    let mut bad = args(&data, &tmp.path().join("bad"), 2);
    bad.push("--checkpoint-every=-1".into());
    let o = run(&bad, &[]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("checkpoint_every"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn a_signal_on_one_rank_stops_both_at_one_step_and_the_run_resumes_at_any_world_size() {
    let (tmp, data) = fresh();
    let whole = tmp.path().join("whole");
    let (r0, r1) = two_ranks(&args(&data, &whole, 3), &[]);
    ok(&r0, "rank 0");
    ok(&r1, "rank 1");

    // SIGTERM reaches rank 1 only, part-way through epoch 2.
    let cut = tmp.path().join("cut");
    let (r0, r1) = two_ranks(&args(&data, &cut, 3), &[("UIC_SIGNAL_SELF_AT", "12")]);
    stopped(&r0, "rank 0");
    stopped(&r1, "rank 1");
    let s = state(&cut);
    let batches = s["partial"]["batches"].as_u64().unwrap();
    assert!(s["epoch"] == 1 && (1..8).contains(&batches), "{s}");
    let cut_one = tmp.path().join("cut-one");
    copy_dir(&cut, &cut_one);

    // Two ranks again: bit-exact with the uninterrupted two-rank run. Rank 1 is given
    // neither the run folder nor the settings (as on a node without shared storage): rank 0
    // sends them.
    let elsewhere = tmp.path().join("elsewhere");
    let bare: Vec<String> = [
        "train",
        "--resume",
        "--quiet",
        "--threads",
        "1",
        "--torch-threads",
        "1",
        "--dist-timeout",
        "60",
        "--data",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        data.display().to_string(),
        "--out".into(),
        elsewhere.display().to_string(),
    ])
    .collect();
    let port = free_port();
    let r0 = start(&with_resume(args(&data, &cut, 3)), &[], Some((0, 2, port)));
    let r1 = start(&bare, &[], Some((1, 2, port)));
    let limit = Duration::from_secs(300);
    let (r0, r1) = (wait(r0, limit, "rank 0"), wait(r1, limit, "rank 1"));
    assert!(!elsewhere.exists(), "rank 1 wrote into its --out");
    ok(&r0, "rank 0 resuming");
    ok(&r1, "rank 1 resuming");
    same_checkpoint(&whole, &cut);
    assert_eq!(metrics(&whole), metrics(&cut));

    // One process: the same samples and views, other dropout draws; it finishes.
    let o = run(&with_resume(args(&data, &cut_one, 3)), &[]);
    ok(&o, "the 1-process resume");
    let m = metrics(&cut_one);
    assert_eq!(m.len(), 3);
    assert_eq!(
        m[0],
        metrics(&whole)[0],
        "the epoch before the stop is the same"
    );
    let nmi = |m: &[serde_json::Value]| m[2]["nmi_true"].as_f64().unwrap();
    assert!(
        (nmi(&m) - nmi(&metrics(&whole))).abs() < 0.15,
        "{} vs {}",
        nmi(&m),
        nmi(&metrics(&whole))
    );
}

#[test]
fn a_second_run_into_a_folder_in_use_is_refused_naming_the_holder() {
    let (tmp, data) = fresh();
    let runf = tmp.path().join("run");
    let first = start(&args(&data, &runf, 400), &[], None);
    let t0 = Instant::now();
    while std::fs::read_to_string(runf.join("metrics.jsonl")).map_or(0, |t| t.lines().count()) < 1 {
        assert!(t0.elapsed() < Duration::from_secs(120), "no epoch finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = std::fs::read_to_string(runf.join("metrics.jsonl")).unwrap();
    for extra in [&[][..], &["--resume".to_string()][..]] {
        let mut a = args(&data, &runf, 400);
        a.extend(extra.iter().cloned());
        let t = Instant::now();
        let o = wait(
            start(&a, &[], None),
            Duration::from_secs(60),
            "the second run",
        );
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t.elapsed()
        );
        assert!(!o.status.success());
        let err = text(&o.stderr);
        assert!(err.contains(&format!("PID {}", first.id())), "{err}");
        assert!(err.contains("in use"), "{err}");
    }
    // A reader still reads the folder in use.
    let plot = Command::new(env!("CARGO_BIN_EXE_uic"))
        .args(["plot", runf.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(plot.status.success(), "{}", text(&plot.stderr));
    // The first run goes on, its metrics unharmed.
    let mut first = first;
    let _ = first.kill();
    let _ = first.wait();
    let after = std::fs::read_to_string(runf.join("metrics.jsonl")).unwrap();
    assert!(
        after.starts_with(&before),
        "the first run's metrics changed"
    );
    for (i, l) in after.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["epoch"], i as u64 + 1, "{after}");
    }
    // Once the holder is gone (killed: the kernel dropped its lock), the folder resumes.
    let o = run(&with_resume(args(&data, &runf, 1)), &[]);
    ok(&o, "the resume after the holder died");
}

/// The pids of processes whose command line names `marker` and is not the launcher's.
fn rank_pids(marker: &Path) -> Vec<i32> {
    let m = marker.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let c = text(&std::fs::read(e.path().join("cmdline")).ok()?);
            (c.contains(&m) && !c.contains("--nproc-per-node") && !c.contains("torchrun"))
                .then_some(pid)
        })
        .collect()
}

fn metric_epochs(run: &Path) -> Vec<u64> {
    metrics(run)
        .iter()
        .map(|m| m["epoch"].as_u64().unwrap())
        .collect()
}

/// Waits until `run` has `n` metrics lines, failing if `c` ends first or after `limit`.
fn wait_for_epochs(c: &mut Child, run: &Path, n: usize, limit: Duration) {
    let t0 = Instant::now();
    while metric_lines(run) < n {
        assert!(
            c.try_wait().unwrap().is_none(),
            "the run ended before epoch {n}"
        );
        assert!(t0.elapsed() < limit, "no epoch {n} after {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_launcher_restarts_every_rank_after_a_kill_9_and_the_run_finishes() {
    let (tmp, data) = fresh();
    let runf = tmp.path().join("run");
    let epochs = 30;
    let mut a = with_resume(args(&data, &runf, epochs));
    a.extend(["--nproc-per-node", "2", "--max-restarts", "1"].map(String::from));
    let mut launcher = start(&a, &[], None);
    wait_for_epochs(&mut launcher, &runf, 2, Duration::from_secs(120));
    let pids = rank_pids(&runf);
    assert_eq!(pids.len(), 2, "{pids:?}");
    // SAFETY: kill(2) on a rank this test started.
    unsafe { libc::kill(pids[1], libc::SIGKILL) };
    let o = wait(launcher, Duration::from_secs(300), "the launcher");
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("starting every rank again (restart 1 of 1)"),
        "{err}"
    );
    assert!(err.contains("[rank 0] resuming"), "{err}");
    // One line per epoch, in order: the epochs after the checkpoint ran once more, and
    // the metrics file kept exactly the checkpoint's.
    assert_eq!(
        metric_epochs(&runf),
        (1..=epochs).collect::<Vec<_>>(),
        "{err}"
    );

    // Without --resume, --max-restarts is refused: the restarted ranks could not continue.
    let mut b = args(&data, &tmp.path().join("b"), 2);
    b.extend(["--nproc-per-node", "2", "--max-restarts", "1"].map(String::from));
    let o = run(&b, &[]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("add --resume"),
        "{}",
        text(&o.stderr)
    );
}

/// torchrun from PyPI's torch: the test venv's (`target/pyvenv`), or one on PATH.
fn torchrun() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyvenv/bin/torchrun");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("torchrun"))
            .find(|t| t.is_file())
    })
}

/// torchrun, or None after saying the test is skipped.
fn torchrun_or_skip() -> Option<PathBuf> {
    let t = torchrun();
    if t.is_none() {
        eprintln!(
            "skipped: no torchrun (it comes with PyPI's torch, which scripts/test-venv.sh \
             installs into target/pyvenv)"
        );
    }
    t
}

/// A torchrun agent with `agent_args`, running `uic train --resume` on `data` into `runf`,
/// its output piped, in an environment without the rank variables of an enclosing job.
fn torchrun_agent(
    torchrun: &Path,
    agent_args: &[&str],
    data: &Path,
    runf: &Path,
    epochs: u64,
) -> Child {
    let mut cmd = Command::new(torchrun);
    cmd.args(agent_args)
        .args(["--no-python", env!("CARGO_BIN_EXE_uic")])
        .args(with_resume(args(data, runf, epochs)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for k in crate::dist::RANK_VARS {
        cmd.env_remove(k);
    }
    cmd.spawn().unwrap()
}

#[test]
fn under_torchrun_a_killed_worker_is_restarted_and_the_run_finishes() {
    let Some(torchrun) = torchrun_or_skip() else {
        return;
    };
    let (tmp, data) = fresh();
    let runf = tmp.path().join("run");
    let epochs = 30;
    let endpoint = format!("127.0.0.1:{}", free_port());
    let agent_args = [
        "--nproc-per-node",
        "2",
        "--max-restarts",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        &endpoint,
    ];
    let mut agent = torchrun_agent(&torchrun, &agent_args, &data, &runf, epochs);
    wait_for_epochs(&mut agent, &runf, 2, Duration::from_secs(180));
    let pids = rank_pids(&runf);
    assert_eq!(pids.len(), 2, "{pids:?}");
    // SAFETY: kill(2) on a worker this test's torchrun started.
    unsafe { libc::kill(pids[1], libc::SIGKILL) };
    let o = wait(agent, Duration::from_secs(300), "torchrun");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(metric_epochs(&runf), (1..=epochs).collect::<Vec<_>>());
}

fn metric_lines(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl")).map_or(0, |t| t.lines().count())
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let child: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = text(&std::fs::read(e.path().join("stat")).ok()?);
            // pid (comm) state ppid ...: the fields after the last ')'.
            let ppid: u32 = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

#[test]
fn under_torchrun_with_nnodes_1_to_2_the_survivor_of_a_lost_node_finishes_alone() {
    let Some(torchrun) = torchrun_or_skip() else {
        return;
    };
    let (tmp, data) = fresh();
    let runf = tmp.path().join("run");
    let epochs = 30;
    let endpoint = format!("127.0.0.1:{}", free_port());
    // Two agents on this machine, as two nodes of an elastic job (1 to 2 nodes).
    let agent_args = [
        "--nnodes",
        "1:2",
        "--nproc-per-node",
        "1",
        "--max-restarts",
        "3",
        "--monitor-interval",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        &endpoint,
        "--rdzv-id",
        "elastic",
        "--rdzv-conf",
        "last_call_timeout=5,join_timeout=120",
    ];
    let agent = || torchrun_agent(&torchrun, &agent_args, &data, &runf, epochs);
    let mut first = agent();
    // The first agent hosts the rendezvous store; the second joins it.
    std::thread::sleep(Duration::from_secs(3));
    let second = agent();
    let t0 = Instant::now();
    while metric_lines(&runf) < 2 {
        if first.try_wait().unwrap().is_some() || t0.elapsed() > Duration::from_secs(180) {
            let _ = first.kill();
            let o = first.wait_with_output().unwrap();
            panic!("no epoch 2 from the first agent: {}", text(&o.stderr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(rank_pids(&runf).len(), 2, "two ranks ran");
    // The second node is lost: its agent and its worker killed at once.
    for pid in children_of(second.id()) {
        // SAFETY: kill(2) on a worker of the agent this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // SAFETY: kill(2) on the agent this test started.
    unsafe { libc::kill(second.id() as i32, libc::SIGKILL) };
    let _ = second.wait_with_output();
    let o = wait(first, Duration::from_secs(300), "torchrun");
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("resuming after epoch"), "{err}");
    assert_eq!(metric_epochs(&runf), (1..=epochs).collect::<Vec<_>>());
}

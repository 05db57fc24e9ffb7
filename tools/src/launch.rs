//! `uic train --nproc-per-node N`: a single-node launcher for users without torchrun. It
//! starts N copies of this command as ranks 0..N (with torchrun's variables: `RANK`,
//! `LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR=127.0.0.1`, a free `MASTER_PORT`), prefixes
//! each line they print with `[rank R]`, and:
//! - when one rank fails, stops the others (SIGTERM, then SIGKILL after a grace period) and
//!   exits with the first failure's status, or, with `--max-restarts N`, starts every rank
//!   again, up to N times, as torchrun does (with `--resume`, they continue from the last
//!   checkpoint);
//! - on Ctrl-C or SIGTERM, forwards it to every rank once and exits once they have stopped
//!   (at one step, with a checkpoint: status 75; never restarted).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How long stopped ranks get to exit before SIGKILL.
const GRACE: Duration = Duration::from_secs(20);

/// The launcher's own flags, removed from the workers' arguments.
const FLAGS: [&str; 2] = ["--nproc-per-node", "--max-restarts"];

/// The workers' arguments: this process's, without the launcher's flags and their values.
fn worker_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        let s = a.to_string_lossy();
        if FLAGS.contains(&s.as_ref()) {
            skip = true;
        } else if !FLAGS.iter().any(|f| s.starts_with(&format!("{f}="))) {
            out.push(a);
        }
    }
    out
}

/// A port on 127.0.0.1 that was free a moment ago (rank 0's store binds it next).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

/// Copies `from` to our `to`, line by line, each prefixed with the rank.
fn relay(from: impl Read + Send + 'static, rank: usize, err: bool) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let mut text = format!("[rank {rank}] ").into_bytes();
                    text.extend_from_slice(&line);
                    if !text.ends_with(b"\n") {
                        text.push(b'\n');
                    }
                    // One write per line, so lines of different ranks never interleave.
                    let _ = if err {
                        std::io::stderr().lock().write_all(&text)
                    } else {
                        std::io::stdout().lock().write_all(&text)
                    };
                }
            }
        }
    })
}

/// The shell's status for a child: its exit code, or 128 + the signal that ended it.
fn code(s: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(sig)) => (128 + sig) as u8,
        _ => 1,
    }
}

fn signal(pids: &[u32], sig: i32) {
    for &p in pids {
        // SAFETY: kill(2) on our own children's pids.
        unsafe { libc::kill(p as libc::pid_t, sig) };
    }
}

/// Runs `n` ranks of this command and returns the first failure's status (or success),
/// starting them all again after a failure up to `max_restarts` times.
///
/// # Errors
/// A rank that cannot be started (the others are then stopped).
pub fn run(n: usize, max_restarts: usize) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let args = worker_args(std::env::args_os().skip(1));
    let interrupted = Arc::new(AtomicBool::new(false));
    let live_pids: Arc<std::sync::Mutex<Vec<u32>>> = Arc::default();
    {
        let (pids, interrupted) = (live_pids.clone(), interrupted.clone());
        crate::interrupt::on_interrupt_wait(move || {
            interrupted.store(true, Ordering::SeqCst);
            signal(
                &pids.lock().unwrap_or_else(|e| e.into_inner()),
                libc::SIGINT,
            );
        });
    }
    let mut restarts = 0;
    loop {
        let status = run_once(n, &exe, &args, &interrupted, &live_pids)?;
        let Some((rank, s)) = status else {
            return Ok(ExitCode::SUCCESS);
        };
        let c = code(s);
        let stopped = interrupted.load(Ordering::SeqCst) || c == crate::train::EXIT_STOPPED;
        if stopped || restarts == max_restarts {
            return Ok(ExitCode::from(c));
        }
        restarts += 1;
        eprintln!(
            "uic: rank {rank} failed (status {c}); starting every rank again (restart {restarts} \
             of {max_restarts})"
        );
    }
}

/// One start of the `n` ranks: `None` when all succeeded, else the first failure.
fn run_once(
    n: usize,
    exe: &std::path::Path,
    args: &[OsString],
    interrupted: &AtomicBool,
    live_pids: &std::sync::Mutex<Vec<u32>>,
) -> Result<Option<(usize, ExitStatus)>> {
    let port = free_port()?;
    let mut children: Vec<Child> = Vec::with_capacity(n);
    let mut relays = Vec::new();
    for rank in 0..n {
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", n.to_string())
            .env("LOCAL_WORLD_SIZE", n.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env_remove("TORCHELASTIC_USE_AGENT_STORE")
            .env_remove("TORCHELASTIC_RUN_ID")
            // A process group of its own: a Ctrl-C at the terminal reaches the launcher
            // alone, which passes it on once (a rank's second signal would quit at once).
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match cmd.spawn() {
            Ok(mut c) => {
                relays.push(relay(c.stdout.take().expect("piped"), rank, false));
                relays.push(relay(c.stderr.take().expect("piped"), rank, true));
                children.push(c);
            }
            Err(e) => {
                signal(
                    &children.iter().map(Child::id).collect::<Vec<_>>(),
                    libc::SIGTERM,
                );
                return Err(e).with_context(|| format!("cannot start rank {rank}"));
            }
        }
    }
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    *live_pids.lock().unwrap_or_else(|e| e.into_inner()) = pids.clone();
    if interrupted.load(Ordering::SeqCst) {
        signal(&pids, libc::SIGINT); // an interrupt while they were starting
    }
    let mut status: Vec<Option<ExitStatus>> = vec![None; n];
    let mut first_failure: Option<(usize, ExitStatus)> = None;
    let mut stopping: Option<Instant> = None;
    while status.iter().any(Option::is_none) {
        for (rank, c) in children.iter_mut().enumerate() {
            if status[rank].is_some() {
                continue;
            }
            if let Ok(Some(s)) = c.try_wait() {
                status[rank] = Some(s);
                if !s.success() && first_failure.is_none() {
                    first_failure = Some((rank, s));
                    if code(s) == crate::train::EXIT_STOPPED {
                        // A stop the ranks agreed on: the others stop at the same step,
                        // and a signal now would cut their checkpoint short.
                        stopping = Some(Instant::now());
                        continue;
                    }
                    let stopped = interrupted.load(Ordering::SeqCst);
                    if !stopped {
                        eprintln!(
                            "uic: rank {rank} failed (status {}); stopping the other ranks",
                            code(s)
                        );
                    }
                    let live: Vec<u32> = (0..n)
                        .filter(|&r| status[r].is_none())
                        .map(|r| pids[r])
                        .collect();
                    signal(&live, libc::SIGTERM);
                    stopping = Some(Instant::now());
                }
            }
        }
        if stopping.is_some_and(|t| t.elapsed() > GRACE) {
            let live: Vec<u32> = (0..n)
                .filter(|&r| status[r].is_none())
                .map(|r| pids[r])
                .collect();
            signal(&live, libc::SIGKILL);
            stopping = None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for r in relays {
        let _ = r.join();
    }
    live_pids.lock().unwrap_or_else(|e| e.into_inner()).clear();
    Ok(first_failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launcher_flag_is_not_passed_on() {
        let a = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            worker_args(a(&["train", "--nproc-per-node", "2", "--k", "3"])),
            a(&["train", "--k", "3"])
        );
        assert_eq!(
            worker_args(a(&["train", "--nproc-per-node=4", "--out", "o"])),
            a(&["train", "--out", "o"])
        );
        assert_eq!(
            worker_args(a(&[
                "train",
                "--max-restarts",
                "2",
                "--nproc-per-node=2",
                "--resume"
            ])),
            a(&["train", "--resume"])
        );
    }
}

//! `uic train`: UIC on a record file, with per-epoch metrics, checkpoints and `--resume`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use uic_c10d::Launch;
use uic_trainer::checkpoint;
use uic_trainer::{
    metrics::EpochMetrics, DeviceChoice, Observer, Progress, TrainConfig, TrainOverrides, Trainer,
};
use uic_trainer::{Dist, Ended};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Record file to train on (from `uic convert`).
    #[arg(long)]
    pub data: PathBuf,
    /// Run folder: metrics.jsonl, config.toml, checkpoint/, plots.
    #[arg(long)]
    pub out: PathBuf,
    /// TOML file of settings (any subset of the flags below, with underscores:
    /// `input_size = 32`); flags given on the command line win.
    #[arg(long, value_name = "TOML")]
    pub config: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint, at an epoch's end or part-way
    /// through one (starts afresh if it has none).
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub set: TrainOverrides,
    /// No progress bar (one line per epoch only).
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub dist: DistArgs,
}

/// Data-parallel training. Under torchrun (`torchrun --no-python --nproc-per-node 8 uic
/// train ...`) or SLURM's `srun`, the ranks come from their environment; without either,
/// `--nproc-per-node` starts the ranks itself.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Several processes (data parallel)")]
pub struct DistArgs {
    /// Start this many ranks on this machine (a built-in launcher, for users without
    /// torchrun). Under torchrun or srun, leave it out.
    #[arg(long, value_name = "N")]
    pub nproc_per_node: Option<usize>,
    /// With --nproc-per-node: start every rank again after one fails, up to this many
    /// times (as torchrun's --max-restarts). Needs --resume, so that they continue from the
    /// last checkpoint.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_restarts: usize,
    /// Collective backend: gloo (CPU and CUDA tensors) or nccl (CUDA; a build with the
    /// `nccl` feature) [default: nccl with --device cuda in a build with NCCL, else gloo].
    #[arg(long, value_enum)]
    pub dist_backend: Option<Backend>,
    /// Seconds a rank waits for the others (rendezvous and every collective) before it
    /// stops with an error naming the operation.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub dist_timeout: u64,
}

/// A c10d backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// Gloo: CPU tensors, and CUDA tensors through host memory.
    Gloo,
    /// NCCL: CUDA tensors over NVLink and InfiniBand.
    Nccl,
}

/// Adds the rule of what `--resume` may change, the library's list, to its help.
pub fn with_resume_rule(cmd: clap::Command) -> clap::Command {
    if !cmd.get_arguments().any(|a| a.get_id() == "resume") {
        return cmd;
    }
    let may: Vec<String> = uic_trainer::RESUME_MAY_CHANGE
        .iter()
        .map(|s| format!("--{}", s.replace('_', "-")))
        .collect();
    cmd.mut_arg("resume", |a| {
        let help = a.get_help().map(ToString::to_string).unwrap_or_default();
        a.help(format!(
            "{help}. Only {} may differ from the checkpoint's settings",
            may.join(", ")
        ))
    })
}

/// The settings of this invocation: the checkpoint's when resuming without --config, else
/// the config file's or the defaults; then the flags.
fn settings(a: &Args) -> Result<TrainConfig> {
    let mut cfg = match (
        &a.config,
        a.resume
            .then(|| checkpoint::find(&a.out))
            .transpose()?
            .flatten(),
    ) {
        (None, Some(ck)) => ck.state.config,
        (Some(p), _) => TrainConfig::from_toml_file(p)?,
        (None, None) => TrainConfig::default(),
    };
    a.set.apply(&mut cfg);
    cfg.threads = crate::threads::cap("--threads", cfg.threads);
    cfg.torch_threads = crate::threads::cap("--torch-threads", cfg.torch_threads);
    cfg.validate()?;
    Ok(cfg)
}

/// The backend of a run on `device`: `--dist-backend`, or by default NCCL for CUDA in a
/// build that has it, else Gloo.
///
/// # Errors
/// NCCL in a build without it, or with `--device cpu`.
fn backend(d: &DistArgs, device: DeviceChoice) -> Result<Backend> {
    let nccl = uic_c10d::has_nccl();
    match d.dist_backend {
        Some(Backend::Nccl) if !nccl => anyhow::bail!(
            "--dist-backend nccl: this uic is built without NCCL; use --dist-backend gloo \
             (it reduces CUDA tensors through host memory), or rebuild with `--features nccl`"
        ),
        Some(Backend::Nccl) if device != DeviceChoice::Cuda => {
            anyhow::bail!("--dist-backend nccl reduces CUDA tensors: add --device cuda")
        }
        Some(b) => Ok(b),
        None if nccl && device == DeviceChoice::Cuda => Ok(Backend::Nccl),
        None => Ok(Backend::Gloo),
    }
}

/// This process's group, when a launcher started it as one rank of several, for a run on
/// `device`.
pub fn join_group(d: &DistArgs, device: DeviceChoice) -> Result<Option<Dist>> {
    let Some(launch) = Launch::from_env().map_err(|e| anyhow::anyhow!("{e}"))? else {
        return Ok(None);
    };
    let backend = backend(d, device)?;
    if d.dist_timeout == 0 {
        anyhow::bail!("--dist-timeout must be at least 1 second");
    }
    let r = uic_c10d::Rendezvous {
        // NCCL on the GPU the trainer puts this rank's model on.
        nccl_device: (backend == Backend::Nccl).then(|| uic_trainer::rank_gpu(launch.local_rank)),
        ..launch.rendezvous(std::time::Duration::from_secs(d.dist_timeout))
    };
    let joined = waiting_notice(&launch, d.dist_timeout);
    let group = uic_c10d::Group::connect(&r).with_context(|| {
        format!(
            "rank {} of {} cannot join the others at {}:{}",
            launch.rank, launch.world, launch.master_addr, launch.master_port
        )
    });
    drop(joined);
    Ok(Some(Dist::new(group?, launch.local_rank)))
}

/// How long the ranks may take to meet before rank 0 says it is waiting.
const QUIET_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// On rank 0, a line after [`QUIET_WAIT`] if the ranks have not all joined by then: how many
/// it waits for, where, and until when. Dropping the returned sender (the group is formed,
/// or failed) cancels the line.
fn waiting_notice(launch: &Launch, timeout_s: u64) -> Option<std::sync::mpsc::Sender<()>> {
    if launch.rank != 0 || launch.world < 2 {
        return None;
    }
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let until = std::time::SystemTime::now() + std::time::Duration::from_secs(timeout_s);
    let (others, addr, port) = (
        launch.world - 1,
        launch.master_addr.clone(),
        launch.master_port,
    );
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(QUIET_WAIT) {
            eprintln!(
                "rank 0: waiting for {others} more rank{} at {addr}:{port}, until {} UTC \
                 (--dist-timeout {timeout_s} s)",
                if others == 1 { "" } else { "s" },
                utc_clock(until)
            );
        }
    });
    Some(tx)
}

/// `14:03:12`: the UTC time of day of `t`.
fn utc_clock(t: std::time::SystemTime) -> String {
    let s = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{:02}:{:02}:{:02}", s / 3600 % 24, s / 60 % 60, s % 60)
}

/// With `--nproc-per-node N` (N > 1, no launcher around): runs N ranks of this command and
/// returns their status; otherwise `None`, and this process goes on as it is.
pub fn launch_if_asked(d: &DistArgs, resume: bool) -> Result<Option<ExitCode>> {
    let under_launcher = Launch::from_env()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .is_some();
    if d.max_restarts > 0 {
        if d.nproc_per_node.is_none_or(|n| n < 2) {
            anyhow::bail!(
                "--max-restarts is the built-in launcher's: give it with --nproc-per-node N \
                 (N > 1); under torchrun, use torchrun's own --max-restarts"
            );
        }
        if !resume {
            anyhow::bail!(
                "--max-restarts starts the ranks again from the last checkpoint: add --resume"
            );
        }
    }
    match d.nproc_per_node {
        Some(0) => anyhow::bail!("--nproc-per-node must be at least 1"),
        Some(n) if n > 1 && under_launcher => anyhow::bail!(
            "--nproc-per-node {n}, but a launcher (torchrun, srun or RANK/WORLD_SIZE) already \
             started this process as one rank: leave --nproc-per-node out"
        ),
        Some(n) if n > 1 => crate::launch::run(n, d.max_restarts).map(Some),
        _ => Ok(None),
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    if let Some(code) = launch_if_asked(&a.dist, a.resume)? {
        return Ok(code);
    }
    let cfg = settings(&a)?;
    let dist = join_group(&a.dist, cfg.device)?;
    let rank = dist.as_ref().map_or(0, Dist::rank);
    let mut t = match Trainer::new_in(cfg, &a.data, &a.out, a.resume, dist) {
        Err(uic_trainer::Error::RunExists { path }) => anyhow::bail!(
            "{} already holds a run; pass --resume to continue it, or choose another --out",
            path.display()
        ),
        t => t?,
    };
    let total = t.config().epochs + t.config().fft_epochs;
    if a.resume && t.epochs_done() >= total {
        if rank == 0 {
            eprintln!(
                "nothing to do: the checkpoint in {} holds epoch {} and this run asks for {total}; \
                 to train longer, run the same command with --resume and a larger --epochs \
                 (the learning-rate schedule then spans the new total)",
                a.out.display(),
                t.epochs_done()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    stop_on_signals(&t, &a.out, rank);
    if rank != 0 {
        // Rank 0 reports, plots and writes; the others train and stay quiet.
        return Ok(match t.run(&mut SignalSelfAt::new(uic_trainer::Quiet))? {
            Ended::Finished => ExitCode::SUCCESS,
            Ended::Stopped { .. } => ExitCode::from(EXIT_STOPPED),
        });
    }
    if a.resume && t.epochs_done() == 0 && !t.resumes_part_way() {
        eprintln!(
            "no checkpoint in {}: starting from epoch 1",
            a.out.display()
        );
    }
    let file = uic_loader::RecordFile::open(&a.data)?;
    if let Some(w) = upscale_warning(&file, t.config().input_size) {
        eprintln!("{w}");
    }
    if let Some(w) = k_warning(file.len(), t.config().k) {
        eprintln!("{w}");
    }
    let mut obs =
        SignalSelfAt::new(Bars::new(a.quiet).with_chance(chance_nmi(&file, t.config().k)));
    let result = t.run(&mut obs);
    obs.inner.finish();
    if let Ended::Stopped { epochs, batches } = result? {
        let at = match batches {
            0 => format!("epoch {epochs}"),
            b => format!("epoch {epochs} and batch {b} of epoch {}", epochs + 1),
        };
        eprintln!(
            "stopped: the checkpoint in {} holds {at}; run the same command with --resume to \
             continue (exit status {EXIT_STOPPED})",
            a.out.display()
        );
        return Ok(ExitCode::from(EXIT_STOPPED));
    }
    let written = crate::plots::write(&a.out).context("cannot draw the plots")?;
    for p in &written {
        eprintln!("plot: {}", p.display());
    }
    eprintln!(
        "done: {} epochs; checkpoint in {}",
        t.epochs_done(),
        a.out.join("checkpoint").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A test hook of the stop path: with `UIC_SIGNAL_SELF_AT=k` in its environment, the
/// process sends itself SIGTERM after its `k`th training step, so that a test delivers a
/// real signal at a known point of the run (on one rank only, if it likes).
pub const SIGNAL_SELF_AT_VAR: &str = "UIC_SIGNAL_SELF_AT";

struct SignalSelfAt<O> {
    inner: O,
    at: Option<u64>,
    steps: u64,
}

impl<O> SignalSelfAt<O> {
    fn new(inner: O) -> Self {
        let at = std::env::var(SIGNAL_SELF_AT_VAR)
            .ok()
            .and_then(|v| v.trim().parse().ok());
        SignalSelfAt {
            inner,
            at,
            steps: 0,
        }
    }
}

impl<O: Observer> Observer for SignalSelfAt<O> {
    fn batch(&mut self, p: &Progress) {
        self.steps += 1;
        if self.at == Some(self.steps) {
            // SAFETY: raise(3) delivers a signal to this process; its handler is a thread.
            unsafe { libc::raise(libc::SIGTERM) };
        }
        self.inner.batch(p);
    }

    fn epoch(&mut self, m: &EpochMetrics) {
        self.inner.epoch(m);
    }

    fn note(&mut self, msg: &str) {
        self.inner.note(msg);
    }
}

/// The exit status of a run stopped by a signal after writing its checkpoint (sysexits'
/// `EX_TEMPFAIL`: "try again later"). `--resume` continues it.
pub const EXIT_STOPPED: u8 = 75;

/// Ctrl-C, SIGTERM and SIGUSR1: the first stops the run at the next step, after a
/// checkpoint (on several ranks, all stop at the same step, whichever rank got the
/// signal); a second exits at once, keeping the last complete checkpoint.
fn stop_on_signals(t: &Trainer, out: &std::path::Path, rank: usize) {
    let stop = t.stop_handle();
    let out = out.to_path_buf();
    crate::interrupt::on_signal(move |n| {
        if n == 1 {
            stop.request();
            if rank == 0 {
                eprintln!(
                    "stopping: writing a checkpoint at the next step (a second Ctrl-C quits at \
                     once, keeping the last one)"
                );
            }
            return false;
        }
        if rank == 0 {
            match checkpoint::find(&out) {
                Ok(Some(ck)) => eprintln!(
                    "interrupted: the checkpoint in {} holds epoch {}; run the same command with \
                     --resume to continue",
                    out.display(),
                    ck.state.epoch
                ),
                _ => eprintln!(
                    "interrupted before the first checkpoint: nothing was saved; run the same \
                     command to start again"
                ),
            }
        }
        true
    });
}

/// A warning when `input_size` is well above the stored images' median shorter side: every
/// crop would be upscaled, which costs time and adds nothing.
fn upscale_warning(file: &uic_loader::RecordFile, input_size: u32) -> Option<String> {
    let mut sides: Vec<u32> = (0..file.len())
        .map(|i| {
            let e = file.record_entry(i);
            e.width.min(e.height)
        })
        .collect();
    if sides.is_empty() {
        return None;
    }
    let mid = sides.len() / 2;
    let median = *sides.select_nth_unstable(mid).1;
    (f64::from(input_size) > 1.5 * f64::from(median)).then(|| {
        format!(
            "warning: --input-size {input_size} is {:.1}x the images' median shorter side \
             ({median} px): every crop is upscaled. Choose an --input-size at most about \
             {median} (README, \"Your own images\")",
            f64::from(input_size) / f64::from(median.max(1))
        )
    })
}

/// A warning when `k` is above a tenth of the `n` images: classes of fewer than ten images
/// each, and an NMI inflated by the number of classes alone (the README's advice, "Your own
/// images").
fn k_warning(n: usize, k: usize) -> Option<String> {
    (k > 0 && k.saturating_mul(10) > n).then(|| {
        format!(
            "warning: --k {k} is {} of the {n} images (about {:.0} images a class); with K near \
             N the NMI is inflated. Choose --k at most about {} (N/10; README, \"Your own images\")",
            if k >= n {
                "as many as or more than".to_string()
            } else {
                format!("N/{}", (n as f64 / k as f64).round().max(1.0))
            },
            n as f64 / k as f64,
            (n / 10).max(2)
        )
    })
}

/// The NMI that uniformly random labels in `k` classes would score against the file's
/// true labels (none without them): the floor against which `nmi_true` means something,
/// high when `k` is close to the number of images.
fn chance_nmi(file: &uic_loader::RecordFile, k: usize) -> Option<f64> {
    use rand::{Rng, SeedableRng};
    let truth = file.labels()?;
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(0);
    let random: Vec<u32> = truth.iter().map(|_| rng.gen_range(0..k as u32)).collect();
    Some(uic_trainer::nmi::nmi(
        &random,
        &truth,
        uic_trainer::nmi::Normalization::Arithmetic,
    ))
}

/// One line per epoch, and on a terminal a bar within the epoch with the epoch's and the
/// run's time to go. When stderr is not a terminal (a log file, `nohup`, `| tee`), only the
/// plain lines: no bar, no escape codes.
pub struct Bars {
    bar: Option<ProgressBar>,
    /// Chance-level NMI, shown beside `nmi_true`.
    chance: Option<f64>,
    /// When this process started training, and the epochs it has finished since.
    start: Option<std::time::Instant>,
    done_here: u64,
    /// The run's epochs, as the last batch said.
    epochs: Option<u64>,
}

impl Bars {
    pub fn new(quiet: bool) -> Self {
        use std::io::IsTerminal;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            ProgressBar::new(0).with_style(
                ProgressStyle::with_template("epoch {prefix} {bar:25} {pos}/{len} batches, {msg}")
                    .expect("static template"),
            )
        });
        Bars {
            bar,
            chance: None,
            start: None,
            done_here: 0,
            epochs: None,
        }
    }

    /// Shows `chance` (the NMI of random labels) next to each epoch's `nmi_true`.
    pub fn with_chance(mut self, chance: Option<f64>) -> Self {
        self.chance = chance;
        self
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    /// Seconds left in the run at batch `p`, `epoch_elapsed` into the epoch with
    /// `epoch_left` to go: the remaining epochs at the mean pace of those this process
    /// finished (before the first one ends, at this epoch's pace).
    fn run_eta(&self, p: &Progress, epoch_elapsed: f64, epoch_left: f64) -> f64 {
        let per_epoch = match (self.start, self.done_here) {
            (Some(t), n) if n > 0 => (t.elapsed().as_secs_f64() - epoch_elapsed) / n as f64,
            _ => epoch_elapsed + epoch_left,
        };
        epoch_left + per_epoch * p.epochs.saturating_sub(p.epoch) as f64
    }
}

/// `1h02m`, `3m05s`, `42s`.
fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

impl Observer for Bars {
    fn batch(&mut self, p: &Progress) {
        self.start.get_or_insert_with(std::time::Instant::now);
        self.epochs = Some(p.epochs);
        let Some(b) = &self.bar else { return };
        // Length first: the first frame is never a full bar of `0/0`.
        b.set_length(p.batches as u64);
        b.set_position(p.batch as u64);
        b.set_prefix(format!("{}/{}", p.epoch, p.epochs));
        let elapsed = b.elapsed().as_secs_f64();
        let epoch_left = elapsed / (p.batch as f64).max(1.0) * (p.batches - p.batch) as f64;
        let run_left = self.run_eta(p, elapsed, epoch_left);
        b.set_message(format!(
            "loss {:.3}, {:.0} img/s, data wait {:.0}%, epoch ETA {}, run ETA {}",
            p.loss,
            p.images_per_s,
            100.0 * p.data_wait,
            duration(epoch_left),
            duration(run_left)
        ));
    }

    fn epoch(&mut self, m: &EpochMetrics) {
        self.done_here += 1;
        // The rest of the run at the mean pace of the epochs this process finished.
        let eta = match (self.start, self.epochs) {
            (Some(t), Some(n)) => {
                let per_epoch = t.elapsed().as_secs_f64() / self.done_here as f64;
                Some(per_epoch * n.saturating_sub(m.epoch) as f64)
            }
            _ => None,
        };
        let line = epoch_line(m, self.chance, self.epochs, eta);
        match &self.bar {
            Some(b) => {
                b.println(line);
                b.reset_elapsed();
            }
            None => eprintln!("{line}"),
        }
    }

    fn note(&mut self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(msg),
            None => eprintln!("{msg}"),
        }
    }
}

/// One epoch's line: `epoch 3/6 loss ...`, ending with the epoch's seconds and, given
/// `eta`, the run's time to go.
pub fn epoch_line(
    m: &EpochMetrics,
    chance: Option<f64>,
    epochs: Option<u64>,
    eta: Option<f64>,
) -> String {
    let truth = match (m.nmi_true, m.nmi_true_geometric, chance) {
        (Some(a), Some(g), Some(c)) => {
            format!(" nmi_true {a:.3} (geometric {g:.3}, chance {c:.3})")
        }
        (Some(a), Some(g), None) => format!(" nmi_true {a:.3} (geometric {g:.3})"),
        _ => String::new(),
    };
    let of = epochs.map_or(String::new(), |n| format!("/{n}"));
    let eta = eta.map_or(String::new(), |s| format!(", run ETA {}", duration(s)));
    format!(
        "epoch {}{of} loss {:.3} lr {:.4} nmi_prev {:.3}{truth} empty_fixed {} classes {}..{} \
         {:.0} img/s wait {:.0}% {:.1}s{eta}",
        m.epoch,
        m.loss,
        m.lr,
        m.nmi_prev,
        m.empty_fixed,
        m.class_min,
        m.class_max,
        m.images_per_s,
        100.0 * m.data_wait,
        m.seconds
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_utc_time_of_day() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(86_400 * 3 + 3723);
        assert_eq!(utc_clock(t), "01:02:03");
    }

    #[test]
    fn k_above_a_tenth_of_the_images_is_warned_with_its_ratio() {
        assert_eq!(k_warning(10_000, 1_000), None);
        let w = k_warning(10_000, 3_000).unwrap();
        assert!(w.contains("--k 3000 is N/3 of the 10000 images"), "{w}");
        assert!(w.contains("at most about 1000"), "{w}");
        let w = k_warning(100, 100).unwrap();
        assert!(w.contains("as many as or more than"), "{w}");
    }
}

//! Every setting of a training run, with the paper's defaults. Loaded from TOML; the `uic`
//! command overrides single fields from its flags. [`set_threads`] applies the libtorch thread
//! count.

use std::path::Path;

use serde::{Deserialize, Serialize};
use uic_augment::Preset;

use crate::error::{Error, Result};
use crate::model::{Arch, ModelConfig};
use crate::schedule::Schedule;
use crate::settings::{self, settings, Scope};

/// Where the labels of the first epoch come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum InitLabels {
    /// Uniformly random (the official code).
    #[default]
    Random,
    /// The argmax of the untrained network on one centre-crop inference pass.
    Inference,
}

/// How the pseudo-labels of each epoch are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Labeler {
    /// UIC: the argmax of the previous epoch's training forward pass (4 bytes per image).
    #[default]
    Uic,
    /// DeepCluster-style, for comparison: an extra centre-crop inference pass, PCA-256 with
    /// whitening and L2 normalisation, k-means; the classifier layer is re-initialised.
    Kmeans,
}

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The CPU.
    #[default]
    Cpu,
    /// The first CUDA device (needs a build with the `cuda` feature).
    Cuda,
}

impl DeviceChoice {
    /// The libtorch device.
    ///
    /// # Errors
    /// CUDA asked for in a build without the `cuda` feature, or with no CUDA device present.
    pub fn resolve(self) -> Result<tch::Device> {
        match self {
            DeviceChoice::Cpu => Ok(tch::Device::Cpu),
            DeviceChoice::Cuda if !cfg!(feature = "cuda") => Err(Error::Config(
                "this uic was built without CUDA: rebuild with `--features cuda` against a CUDA \
                 libtorch (scripts/setup.sh --cuda)"
                    .into(),
            )),
            DeviceChoice::Cuda if !tch::Cuda::is_available() => Err(Error::Config(
                "device cuda, but libtorch sees no CUDA device (check the driver and \
                 LD_LIBRARY_PATH)"
                    .into(),
            )),
            DeviceChoice::Cuda => Ok(tch::Device::Cuda(0)),
        }
    }
}

/// Which decoder feeds training batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Decoder {
    /// TurboJPEG on the loader's CPU threads.
    #[default]
    Cpu,
    /// nvJPEG on the CUDA device, crop and resize there (a build with the `nvjpeg` feature
    /// and `--device cuda`; the strong preset's colour steps and blur then run on the device
    /// too).
    Nvjpeg,
}

/// Where the strong preset's colour jitter, grayscale and blur run. The crop and the flip
/// stay with the decoder; every random choice is drawn on the host from (seed, epoch,
/// index) either way, so both give the same images up to the blur's rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum AugmentOn {
    /// The device with `decoder = nvjpeg` (its batches are born there), else the CPU
    /// kernels: where the loader's cores keep up, they cost the device nothing, while the
    /// device ops are about 60 memory passes over each image (an estimate of 25-35 µs an
    /// image on an H200, against its 60 µs training step; not measured on a GPU yet, see
    /// `scripts/gpu-check`).
    #[default]
    Auto,
    /// The loader's CPU kernels, on its threads.
    Cpu,
    /// Batched libtorch ops on the training device, after the upload.
    Device,
}

settings! {
    /// A training run's settings, each declared once below: its doc (the flag's help), type,
    /// default (the paper's ImageNet setting), [`Scope`] and flag. Unknown TOML keys are
    /// errors, so a typo never goes unnoticed.
    pub struct TrainConfig;
    /// Settings given on the command line (`uic train --k 10`) or by a caller, each one
    /// optional: [`TrainOverrides::apply`] sets those given on a [`TrainConfig`]. With the
    /// `clap` feature these are the command's flags.
    pub struct TrainOverrides;
    {
        /// Backbone.
        arch: Arch = Arch::Alexnet => Fixed value,
        /// Channel multiplier of the AlexNets.
        width: f64 = 1.0 => Fixed value,
        /// Crop side in pixels.
        input_size: u32 = 224 => Fixed value,
        /// Least crop area of RandomResizedCrop (0.08 in torchvision).
        min_scale: f64 = 0.08 => Fixed value,
        /// Pseudo-classes.
        k: usize = 3000 => Fixed value,
        /// Training epochs, with the pseudo-labels updated every epoch.
        epochs: u64 = 500 => Shared value,
        /// Batch size, over all ranks.
        batch_size: usize = 256 => Fixed value,
        /// Passes over the data per epoch (timm's `epoch_repeats`): for small sets, so that an
        /// epoch is long enough to keep a fast device busy between pseudo-label updates.
        epoch_repeats: u64 = 1 => Fixed value,
        /// Base learning rate.
        lr: f64 = 0.1 => Fixed value,
        /// Learning-rate schedule over all steps of the run: linear (the paper), cosine (the
        /// official code) or constant.
        schedule: Schedule = Schedule::Linear => Fixed value,
        /// SGD momentum.
        momentum: f64 = 0.9 => Fixed value,
        /// L2 weight decay.
        weight_decay: f64 = 1e-4 => Fixed value,
        /// Dropout in AlexNet's FC layers.
        dropout: f64 = 0.5 => Fixed value,
        /// Augmentation: paper (crop + flip) or strong (+ jitter, grayscale, blur).
        preset: Preset = Preset::Paper => Fixed value,
        /// The fixed Sobel input layer (unset: it follows the architecture).
        #[flag(default_words = "on for alexnet, off otherwise", negation = "No Sobel layer")]
        sobel: Option<bool> = None => Fixed tristate,
        /// An MLP before the classifier layer, as in the official code.
        #[flag(negation = "No MLP before the classifier layer (undoes `mlp_head = true` of a --config file)")]
        mlp_head: bool = false => Fixed switch,
        /// Initial labels: random (the official code) or inference (one centre-crop pass).
        init_labels: InitLabels = InitLabels::Random => Fixed value,
        /// Labeler: uic, or kmeans (DeepCluster-style: an extra pass, PCA, k-means) to
        /// compare.
        labeler: Labeler = Labeler::Uic => Fixed value,
        /// PCA dimensions of the k-means labeler.
        pca_dims: u32 = 256 => Fixed value,
        /// Lloyd iterations of the k-means labeler.
        kmeans_iters: usize = 20 => Fixed value,
        /// Further fine-tuning epochs, with labels fixed by a centre-crop pass (0: none).
        fft_epochs: u64 = 0 => Shared value,
        /// Base learning rate of the fine-tuning epochs (the same schedule, restarted).
        fft_lr: f64 = 0.01 => Fixed value,
        /// Where the model runs: cpu, or cuda (a build with the `cuda` feature).
        device: DeviceChoice = DeviceChoice::Cpu => Shared value,
        /// Decoder of the training batches: cpu (TurboJPEG) or nvjpeg (on the CUDA device; a
        /// build with the `nvjpeg` feature, and device cuda).
        decoder: Decoder = Decoder::Cpu => Shared value,
        /// Where the strong preset's jitter, grayscale and blur run: cpu (the loader's
        /// kernels), device (libtorch ops on the training device, after the upload) or auto
        /// (device after the nvjpeg decoder, else cpu).
        augment_on: AugmentOn = AugmentOn::Auto => Shared value,
        /// bfloat16 autocast in the forward pass (meant for CUDA).
        #[flag(negation = "No autocast: float32 throughout (undoes `amp = true` of a --config file)")]
        amp: bool = false => Fixed switch,
        /// Convolutions on channels-last (NHWC) activations: oneDNN's fast layout on the CPU
        /// (and cuDNN's under autocast). Results differ from NCHW only by float rounding.
        #[flag(negation = "Keep activations NCHW-contiguous instead of channels-last (NHWC)")]
        channels_last: bool = true => Fixed switch,
        /// Loader threads (0: one per core, shared among the node's ranks).
        #[flag(default_words = "one per core")]
        threads: usize = 0 => PerRank value,
        /// libtorch intra-op threads (0: one per core, shared among the node's ranks).
        #[flag(default_words = "one per core")]
        torch_threads: usize = 0 => PerRank value,
        /// Batches the loader may prepare ahead of training.
        batches_ahead: usize = 3 => PerRank value,
        /// Minutes between checkpoints written part-way through an epoch (0: only at each
        /// epoch's end). Ctrl-C, SIGTERM and SIGUSR1 always write one at the next step.
        #[flag(value_name = "MINUTES")]
        checkpoint_every: f64 = 0.0 => PerRank value,
        /// Several ranks: sum each bucket of gradients as soon as backward has produced it,
        /// while backward goes on (as DDP does), instead of all of them after it. The same
        /// sums either way.
        #[flag(negation = "Sum all the gradients after backward instead (the same sums, the sync not hidden)")]
        overlap_sync: bool = true => Shared switch,
        /// Seed of every random choice (initialisation, labels, sampling, augmentation).
        seed: u64 = 0 => Fixed value,
    }
}

impl TrainConfig {
    /// Reads a TOML file (any subset of the fields; the rest keep their defaults).
    ///
    /// # Errors
    /// Unreadable file, bad TOML, unknown keys or invalid values.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        let cfg: TrainConfig =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Whether the Sobel layer is on (the explicit setting, else on for AlexNet only).
    pub fn sobel_on(&self) -> bool {
        self.sobel.unwrap_or(self.arch == Arch::Alexnet)
    }

    /// The model these settings describe.
    pub fn model(&self) -> ModelConfig {
        ModelConfig {
            arch: self.arch,
            width: self.width,
            k: self.k,
            sobel: self.sobel_on(),
            input_size: self.input_size,
            dropout: self.dropout,
            mlp_head: self.mlp_head,
            amp: self.amp,
            channels_last: self.channels_last,
        }
    }

    /// Checks ranges that do not depend on the data.
    ///
    /// # Errors
    /// The first setting out of range, named.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Config(what));
        if self.k < 2 {
            return bad(format!("k = {} (need at least 2 classes)", self.k));
        }
        if self.batch_size < 2 {
            return bad(format!(
                "batch size {} (BatchNorm needs at least 2)",
                self.batch_size
            ));
        }
        let lr_ok = self.lr.is_finite() && self.lr > 0.0;
        let fft_lr_ok = self.fft_lr.is_finite() && self.fft_lr >= 0.0;
        if !(lr_ok && fft_lr_ok) {
            return bad(format!(
                "learning rates lr = {}, fft_lr = {}",
                self.lr, self.fft_lr
            ));
        }
        let wd_ok = self.weight_decay.is_finite() && self.weight_decay >= 0.0;
        if !(0.0..1.0).contains(&self.momentum) || !wd_ok {
            return bad(format!(
                "momentum {} / weight decay {}",
                self.momentum, self.weight_decay
            ));
        }
        if !(self.width.is_finite() && self.width > 0.0) {
            return bad(format!(
                "width {} (the channel multiplier must be above 0)",
                self.width
            ));
        }
        if !(self.checkpoint_every.is_finite() && self.checkpoint_every >= 0.0) {
            return bad(format!(
                "checkpoint_every {} (minutes between checkpoints; 0 for epoch ends only)",
                self.checkpoint_every
            ));
        }
        if self.batches_ahead == 0 {
            return bad("batches_ahead = 0 (the loader needs room for one batch)".into());
        }
        if self.labeler == Labeler::Kmeans && (self.pca_dims == 0 || self.kmeans_iters == 0) {
            return bad(format!(
                "pca_dims = {}, kmeans_iters = {}: the k-means labeler needs both above 0",
                self.pca_dims, self.kmeans_iters
            ));
        }
        if !(self.min_scale > 0.0 && self.min_scale <= 1.0) {
            return bad(format!("min_scale {} not in (0, 1]", self.min_scale));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} not in [0, 1)", self.dropout));
        }
        let least = self.arch.min_input_size();
        if self.input_size < least {
            return bad(format!(
                "input_size {} is below {least} px, the least {} can take",
                self.input_size, self.arch
            ));
        }
        if self.preset == Preset::Eval {
            return bad(
                "preset eval is the centre crop of evaluation; training takes paper or strong"
                    .into(),
            );
        }
        if self.epochs + self.fft_epochs == 0 {
            return bad("epochs = 0: nothing to train".into());
        }
        if self.epoch_repeats == 0 {
            return bad("epoch_repeats = 0 (1 is one pass over the data per epoch)".into());
        }
        if self.decoder == Decoder::Nvjpeg {
            if !cfg!(feature = "nvjpeg") {
                return bad(
                    "decoder nvjpeg: this uic was built without nvJPEG; rebuild with \
                     `--features nvjpeg` (scripts/setup.sh --cuda --nvjpeg)"
                        .into(),
                );
            }
            if self.device != DeviceChoice::Cuda {
                return bad("decoder nvjpeg needs device cuda".into());
            }
            if self.augment_on == AugmentOn::Cpu {
                return bad(
                    "decoder nvjpeg leaves its batches on the device, so the augmentations \
                     run there too: set augment_on to device (or auto)"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

impl TrainConfig {
    /// Loader threads: `threads`, or 0 resolved to this process's [`core_share`].
    pub fn loader_threads(&self) -> usize {
        match self.threads {
            0 => core_share(),
            t => t,
        }
    }

    /// libtorch intra-op threads: `torch_threads`, or 0 resolved to [`core_share`].
    pub fn torch_threads_resolved(&self) -> usize {
        match self.torch_threads {
            0 => core_share(),
            t => t,
        }
    }

    /// Whether the colour steps and the blur run on the training device
    /// ([`AugmentOn::Auto`] resolved).
    pub fn augments_on_device(&self) -> bool {
        match self.augment_on {
            AugmentOn::Cpu => false,
            AugmentOn::Device => true,
            AugmentOn::Auto => self.decoder == Decoder::Nvjpeg,
        }
    }

    /// `self` with `from`'s values of the settings `names` (names as in TOML, such as
    /// [`RESUME_MAY_CHANGE`]).
    pub fn with_settings_of(&self, from: &TrainConfig, names: &[&str]) -> TrainConfig {
        let (mut a, b) = (toml_table(self), toml_table(from));
        for &n in names {
            match b.get(n) {
                Some(v) => a.insert(n.to_string(), v.clone()),
                None => a.remove(n),
            };
        }
        toml::Value::Table(a)
            .try_into()
            .unwrap_or_else(|_| self.clone())
    }

    /// The settings that differ from `other`'s, by name: `(name, self's value, other's
    /// value)`, values as TOML writes them (`none` for an unset option).
    pub fn differences(&self, other: &TrainConfig) -> Vec<(String, String, String)> {
        let (a, b) = (toml_table(self), toml_table(other));
        let show = |v: Option<&toml::Value>| match v {
            Some(toml::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => "none".into(),
        };
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| (k.clone(), show(a.get(k)), show(b.get(k))))
            .collect()
    }
}

fn toml_table(c: &TrainConfig) -> toml::map::Map<String, toml::Value> {
    match toml::Value::try_from(c) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::map::Map::new(),
    }
}

/// The settings each rank of a run may size to its own machine ([`Scope::PerRank`]): they
/// change how fast it goes and how often it saves, never what it computes.
pub const PER_RANK: &[&str] = &settings::names::<
    { settings::count(TrainConfig::SETTINGS, PER_RANK_SCOPES) },
>(TrainConfig::SETTINGS, PER_RANK_SCOPES);
const PER_RANK_SCOPES: &[Scope] = &[Scope::PerRank];

/// The settings `--resume` may change ([`Scope::Shared`] and [`Scope::PerRank`]); every
/// other one must equal the checkpoint's. Besides [`PER_RANK`]: where the run computes (the
/// device, the decoder, `augment_on`, `overlap_sync`), and how long it goes on (the schedule
/// then spans the new total).
pub const RESUME_MAY_CHANGE: &[&str] = &settings::names::<
    { settings::count(TrainConfig::SETTINGS, RESUME_SCOPES) },
>(TrainConfig::SETTINGS, RESUME_SCOPES);
const RESUME_SCOPES: &[Scope] = &[Scope::Shared, Scope::PerRank];

/// Sets libtorch's intra-op threads from the config (0: one per core).
pub fn set_threads(cfg: &TrainConfig) {
    tch::set_num_threads(cfg.torch_threads_resolved() as i32);
}

/// The CUDA device of the rank `local_rank` of a node: its own GPU (`LOCAL_RANK`), and when
/// there are more ranks than GPUs, the GPUs shared in turn. The model and an NCCL group both
/// take this one.
pub fn rank_gpu(local_rank: usize) -> usize {
    local_rank % (tch::Cuda::device_count().max(1) as usize)
}

/// The cores a process of this node may take by default: those it may run on (its affinity
/// mask and cgroup quota, as [`std::thread::available_parallelism`] sees them) shared among
/// the node's ranks (`LOCAL_WORLD_SIZE`, which torchrun and `--nproc-per-node` set), at least
/// one. Eight ranks of a 16-core node then take two cores each, not sixteen each.
///
/// Under `srun`, which sets no `LOCAL_WORLD_SIZE`, the share is the task's own CPU binding.
pub fn core_share() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let local = std::env::var("LOCAL_WORLD_SIZE")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1);
    (cores / local).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_only_what_it_names() {
        let c: TrainConfig =
            toml::from_str("arch = \"alexnet-small\"\nk = 30\nschedule = \"cosine\"").unwrap();
        assert_eq!(c.arch, Arch::AlexnetSmall);
        assert_eq!(c.k, 30);
        assert_eq!(c.schedule, Schedule::Cosine);
        assert_eq!(c.batch_size, 256);
        assert!(!c.sobel_on());
        assert!(TrainConfig::default().sobel_on());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(toml::from_str::<TrainConfig>("epoch = 3").is_err());
        let c: TrainConfig = toml::from_str("lr = -1.0").unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn counts_and_sizes_that_mean_nothing_are_refused_by_name() {
        for (toml, name) in [
            ("width = 0.0", "width"),
            ("width = nan", "width"),
            ("batches_ahead = 0", "batches_ahead"),
            ("labeler = \"kmeans\"\npca_dims = 0", "pca_dims"),
            ("labeler = \"kmeans\"\nkmeans_iters = 0", "kmeans_iters"),
        ] {
            let c: TrainConfig = toml::from_str(toml).unwrap();
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(name), "{toml}: {err}");
        }
        // The k-means settings only matter to the k-means labeler.
        let c: TrainConfig = toml::from_str("pca_dims = 0").unwrap();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn epoch_repeats_default_to_one_pass_and_zero_is_refused() {
        // Configs written before the field existed read as one pass per epoch.
        let c: TrainConfig = toml::from_str("k = 30").unwrap();
        assert_eq!(c.epoch_repeats, 1);
        let c: TrainConfig = toml::from_str("epoch_repeats = 0").unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("epoch_repeats"), "{err}");
    }

    #[test]
    fn nvjpeg_decoder_needs_cuda_and_device_augmentations() {
        let c: TrainConfig = toml::from_str("decoder = \"nvjpeg\"").unwrap();
        let err = c.validate().unwrap_err().to_string();
        let want = if cfg!(feature = "nvjpeg") {
            "needs device cuda"
        } else {
            "without nvJPEG"
        };
        assert!(err.contains(want), "{err}");
        if cfg!(feature = "nvjpeg") {
            let c: TrainConfig = toml::from_str(
                "decoder = \"nvjpeg\"\ndevice = \"cuda\"\npreset = \"strong\"\naugment_on = \"cpu\"",
            )
            .unwrap();
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains("augment_on to device"), "{err}");
        }
    }

    #[test]
    fn augmentations_run_on_the_device_after_nvjpeg_or_when_told() {
        let on = |toml: &str| {
            toml::from_str::<TrainConfig>(toml)
                .unwrap()
                .augments_on_device()
        };
        // Configs written before the setting existed read as auto.
        assert!(!on(""));
        assert!(!on("device = \"cuda\""));
        assert!(on("decoder = \"nvjpeg\""));
        assert!(on("device = \"cuda\"\naugment_on = \"device\""));
        assert!(on("augment_on = \"device\""));
        assert!(!on("augment_on = \"cpu\""));
    }

    #[test]
    fn each_setting_is_declared_once_and_its_scope_gives_the_rules() {
        // The TOML keys are the declared names, each with a doc for its help.
        let all = TrainConfig {
            sobel: Some(true),
            ..TrainConfig::default()
        };
        let toml::Value::Table(keys) = toml::Value::try_from(&all).unwrap() else {
            panic!("the config is not a table")
        };
        let mut names: Vec<&str> = TrainConfig::SETTINGS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        assert_eq!(keys.keys().map(String::as_str).collect::<Vec<_>>(), names);
        for s in TrainConfig::SETTINGS {
            assert!(s.help().len() > 5 && !s.help().ends_with('.'), "{}", s.name);
        }
        // The rules of ranks and of resume are computed from the scopes.
        assert_eq!(
            PER_RANK,
            [
                "threads",
                "torch_threads",
                "batches_ahead",
                "checkpoint_every"
            ]
        );
        let mut may = RESUME_MAY_CHANGE.to_vec();
        may.sort_unstable();
        assert_eq!(
            may,
            [
                "augment_on",
                "batches_ahead",
                "checkpoint_every",
                "decoder",
                "device",
                "epochs",
                "fft_epochs",
                "overlap_sync",
                "threads",
                "torch_threads"
            ]
        );
    }

    #[test]
    fn overrides_set_only_what_they_name() {
        let mut c = TrainConfig {
            amp: true,
            k: 7,
            ..TrainConfig::default()
        };
        TrainOverrides {
            amp: Some(false),
            sobel: Some(Some(false)),
            ..TrainOverrides::default()
        }
        .apply(&mut c);
        assert!(!c.amp && c.sobel == Some(false) && c.k == 7);
    }

    #[cfg(feature = "clap")]
    #[test]
    fn flags_parse_into_overrides_and_the_last_switch_wins() {
        use clap::{Args, FromArgMatches};
        let cmd = TrainOverrides::augment_args(clap::Command::new("t"));
        let parse = |a: &[&str]| {
            let m = cmd
                .clone()
                .try_get_matches_from(std::iter::once("t").chain(a.iter().copied()))
                .unwrap();
            TrainOverrides::from_arg_matches(&m).unwrap()
        };
        let o = parse(&[
            "--k",
            "10",
            "--amp",
            "--no-amp",
            "--no-sobel",
            "--arch",
            "resnet50",
        ]);
        assert_eq!(o.k, Some(10));
        assert_eq!(o.amp, Some(false));
        assert_eq!(o.sobel, Some(Some(false)));
        assert_eq!(o.arch, Some(Arch::Resnet50));
        assert_eq!((o.lr, o.channels_last, o.mlp_head), (None, None, None));
        assert_eq!(parse(&["--no-amp", "--amp"]).amp, Some(true));
        assert_eq!(
            parse(&["--checkpoint-every", "2.5"]).checkpoint_every,
            Some(2.5)
        );
        assert_eq!(parse(&[]), TrainOverrides::default());
        for bad in [&["--k", "x"][..], &["--arch", "vgg"], &["--no-k"]] {
            let mut args = vec!["t"];
            args.extend_from_slice(bad);
            assert!(cmd.clone().try_get_matches_from(args).is_err(), "{bad:?}");
        }
        // Each flag's help is its setting's doc, with the default from the code.
        let help = cmd.clone().render_help().to_string();
        assert!(help.contains("Pseudo-classes [default: 3000]"), "{help}");
        assert!(help.contains("--no-channels-last"), "{help}");
        assert!(help.contains("--checkpoint-every <MINUTES>"), "{help}");
    }

    #[test]
    fn differences_name_each_changed_setting_with_both_values() {
        let a = TrainConfig::default();
        let b = TrainConfig {
            k: 10,
            preset: Preset::Strong,
            sobel: Some(false),
            ..TrainConfig::default()
        };
        assert_eq!(
            a.differences(&b),
            [
                ("k".to_string(), "3000".to_string(), "10".to_string()),
                ("preset".into(), "paper".into(), "strong".into()),
                ("sobel".into(), "none".into(), "false".into()),
            ]
        );
        assert!(a.differences(&a.clone()).is_empty());
    }
}

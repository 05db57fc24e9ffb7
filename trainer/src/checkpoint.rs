//! Checkpoints: everything needed to continue a run exactly, written atomically every epoch.
//!
//! `DIR/checkpoint/` holds:
//! - `model.safetensors`: weights and BatchNorm statistics, named like a PyTorch
//!   `state_dict` (`features.conv1.weight`, `top_layer.bias`, ...), loadable with
//!   `safetensors.torch.load_file`;
//! - `optimizer.safetensors`: SGD momentum buffers, under the parameters' names;
//! - `labels.safetensors`: the pseudo-label table (`labels`, int32, one per image);
//! - `state.json`: format version, epochs and steps done, the full config, the identity of
//!   the data file, and the last epoch's metrics. Written last: a folder with it is complete.
//!
//! At an epoch's end there is no RNG state to save: every random choice (libtorch's
//! included, reseeded each epoch) is a pure function of the seed and the epoch, and the
//! sampler of the label table, seed and epoch. A checkpoint taken part-way through an epoch
//! (a stop on a signal, or `checkpoint_every`) also holds [`Partial`] in `state.json` and
//! `epoch.safetensors`: the epoch's argmaxes so far by position in its order (`records`,
//! int32, -1 where none yet), the labels the epoch started from (`before`), and each rank's
//! libtorch generator state (`rng.0`, `rng.1`, ...: dropout's draws so far). Such a
//! checkpoint has format version [`FORMAT_VERSION_PARTIAL`], so that a release that cannot
//! continue it refuses it.
//!
//! Atomicity: a new checkpoint is written to `DIR/.checkpoint.tmp/` and synced; then the old
//! one is renamed to `DIR/.checkpoint.old/`, the new one to `DIR/checkpoint/`, and the old one
//! removed. A crash at any point leaves one complete checkpoint, which [`find`] picks.
//!
//! [`load_model`] rebuilds a checkpoint's model for evaluation and plotting.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::metrics::EpochMetrics;
use crate::model::Model;
use crate::sgd::Sgd;

/// Version of the checkpoint layout; [`find`] refuses others with a clear message.
pub const FORMAT_VERSION: u32 = 1;

/// The version of a checkpoint taken part-way through an epoch (with [`Partial`]).
pub const FORMAT_VERSION_PARTIAL: u32 = 2;

/// Where a checkpoint taken part-way through epoch `epoch + 1` stands: what the rest of the
/// epoch needs besides the weights, momentum, labels and `epoch.safetensors`. The counts
/// are of all ranks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    /// Global batches of the epoch done.
    pub batches: u64,
    /// Samples trained on so far.
    pub seen: u64,
    /// Sum of the per-sample losses so far.
    pub loss_sum: f64,
    /// Samples whose argmax equalled their target so far.
    pub agree: u64,
    /// The learning rate of the epoch's first step.
    pub first_lr: f64,
    /// Seconds the epoch had run.
    pub seconds: f64,
    /// Seconds of those spent waiting for data.
    pub waited: f64,
    /// Seconds the labeler took at the epoch's start (k-means).
    pub labeling_seconds: f64,
    /// Empty clusters k-means re-seeded at the epoch's start.
    pub reseeded: u64,
    /// Seconds of those spent waiting for the ranks' gradient sum after backward.
    #[serde(default)]
    pub sync_waited: f64,
}

/// `epoch.safetensors` of a checkpoint with [`Partial`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochFiles {
    /// Each position of the epoch's order: the argmax recorded there, or -1.
    pub records: Vec<i32>,
    /// The labels the epoch compares its new ones with (`nmi_prev`).
    pub before: Vec<u32>,
    /// Each rank's libtorch generator state, in rank order.
    pub rng: Vec<Vec<u8>>,
}

/// Which data file a run trains on, to refuse resuming on another one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataId {
    /// Path as given when the run started (informational).
    pub path: String,
    /// Samples in the file.
    pub samples: u64,
    /// Length of the file in bytes.
    pub file_len: u64,
}

/// `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Version of the `uic` crates that wrote it.
    pub uic_version: String,
    /// Epochs completed.
    pub epoch: u64,
    /// Optimisation steps completed in the current phase.
    pub step: u64,
    /// Settings of the run.
    pub config: TrainConfig,
    /// The data file.
    pub data: DataId,
    /// The metrics of the last completed epoch (restored into `metrics.jsonl` on resume).
    pub last_metrics: Option<EpochMetrics>,
    /// Set when the checkpoint was taken part-way through epoch `epoch + 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<Partial>,
}

/// A complete checkpoint on disk.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Its folder.
    pub dir: PathBuf,
    /// Its `state.json`.
    pub state: State,
}

const CURRENT: &str = "checkpoint";
const TMP: &str = ".checkpoint.tmp";
const OLD: &str = ".checkpoint.old";

/// The latest complete checkpoint of run folder `run`, if any.
///
/// # Errors
/// An unreadable `state.json`, or one from another format version.
pub fn find(run: &Path) -> Result<Option<Checkpoint>> {
    for name in [CURRENT, OLD] {
        let dir = run.join(name);
        if dir.join("state.json").is_file() {
            return read(&dir).map(Some);
        }
    }
    Ok(None)
}

/// Reads the checkpoint in `dir` (a `checkpoint/` folder).
///
/// # Errors
/// A missing or unreadable `state.json`, or another format version.
pub fn read(dir: &Path) -> Result<Checkpoint> {
    let p = dir.join("state.json");
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io("read", &p, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::checkpoint(dir, format!("state.json is not JSON: {e}")))?;
    let version = v.get("format_version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(FORMAT_VERSION))
        && version != Some(u64::from(FORMAT_VERSION_PARTIAL))
    {
        return Err(Error::checkpoint(
            dir,
            format!(
                "format version {} but this uic reads version {FORMAT_VERSION}; use the uic \
                 release that wrote it",
                version.map_or("missing".into(), |v| v.to_string())
            ),
        ));
    }
    let state: State = serde_json::from_value(v)
        .map_err(|e| Error::checkpoint(dir, format!("state.json: {e}")))?;
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        state,
    })
}

fn sync_file(p: &Path) -> Result<()> {
    File::open(p)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("sync", p, e))
}

fn sync_dir(p: &Path) {
    // Best effort: not every file system lets a folder be opened for syncing.
    if let Ok(f) = File::open(p) {
        let _ = f.sync_all();
    }
}

/// Writes a checkpoint of the run into `run/checkpoint/`, atomically; `epoch` with a
/// [`Partial`] state.
///
/// # Errors
/// Any failed write; the previous checkpoint is then left in place.
pub fn save(
    run: &Path,
    state: &State,
    model: &Model,
    opt: &Sgd,
    labels: &[u32],
    epoch: Option<&EpochFiles>,
) -> Result<()> {
    let tmp = run.join(TMP);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io("remove", &tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io("create", &tmp, e))?;

    // safetensors stores dense row-major data and refuses other strides (channels-last
    // tensors, for instance), so every tensor is written from a contiguous copy (a no-op
    // for those already contiguous).
    let dense = |named: Vec<(String, Tensor)>| -> Vec<(String, Tensor)> {
        named
            .into_iter()
            .map(|(n, t)| (n, t.contiguous()))
            .collect()
    };
    let weights = tmp.join("model.safetensors");
    let mut vars: Vec<(String, Tensor)> = model.var_store().variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::write_safetensors(&dense(vars), &weights)?;
    let optim = tmp.join("optimizer.safetensors");
    Tensor::write_safetensors(&dense(opt.state()), &optim)?;
    let lab = tmp.join("labels.safetensors");
    let as_i32: Vec<i32> = labels.iter().map(|&l| l as i32).collect();
    Tensor::write_safetensors(&[("labels", Tensor::from_slice(&as_i32))], &lab)?;
    let mut written = vec![weights, optim, lab];
    if let Some(f) = epoch {
        let p = tmp.join(EPOCH_FILE);
        let before: Vec<i32> = f.before.iter().map(|&l| l as i32).collect();
        let mut named = vec![
            ("records".to_string(), Tensor::from_slice(&f.records)),
            ("before".to_string(), Tensor::from_slice(&before)),
        ];
        for (r, bytes) in f.rng.iter().enumerate() {
            named.push((format!("rng.{r}"), Tensor::from_slice(bytes)));
        }
        Tensor::write_safetensors(&named, &p)?;
        written.push(p);
    }
    let st = tmp.join("state.json");
    let text = serde_json::to_string_pretty(state).expect("state serialises");
    std::fs::write(&st, text).map_err(|e| Error::io("write", &st, e))?;
    written.push(st);
    for p in &written {
        sync_file(p)?;
    }
    sync_dir(&tmp);

    let cur = run.join(CURRENT);
    let old = run.join(OLD);
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io("remove", &old, e))?;
    }
    if cur.exists() {
        std::fs::rename(&cur, &old).map_err(|e| Error::io("rename", &cur, e))?;
    }
    std::fs::rename(&tmp, &cur).map_err(|e| Error::io("rename", &tmp, e))?;
    sync_dir(run);
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io("remove", &old, e))?;
    }
    Ok(())
}

/// Loads the weights of checkpoint `dir` into `model` (which must have the same
/// architecture).
///
/// # Errors
/// A missing file, or names and shapes that do not match the model.
pub fn load_weights(dir: &Path, model: &mut Model) -> Result<()> {
    let p = dir.join("model.safetensors");
    model
        .var_store_mut()
        .load(&p)
        .map_err(|e| Error::checkpoint(dir, format!("model.safetensors: {e}")))
}

/// Loads the optimiser state of checkpoint `dir`.
///
/// # Errors
/// A missing file, or buffers that do not match the parameters.
pub fn load_optimizer(dir: &Path, opt: &mut Sgd, device: Device) -> Result<()> {
    let p = dir.join("optimizer.safetensors");
    let t = Tensor::read_safetensors(&p)
        .map_err(|e| Error::checkpoint(dir, format!("optimizer.safetensors: {e}")))?;
    let t = t
        .into_iter()
        .map(|(n, t)| (n, t.to_device(device)))
        .collect();
    opt.load_state(t)
        .map_err(|e| Error::checkpoint(dir, format!("optimizer.safetensors: {e}")))
}

/// Reads the label table of checkpoint `dir`.
///
/// # Errors
/// A missing file or one without a 1-d `labels` tensor.
pub fn load_labels(dir: &Path) -> Result<Vec<u32>> {
    let p = dir.join("labels.safetensors");
    let t = Tensor::read_safetensors(&p)
        .map_err(|e| Error::checkpoint(dir, format!("labels.safetensors: {e}")))?;
    let (_, t) = t
        .into_iter()
        .find(|(n, _)| n == "labels")
        .ok_or_else(|| Error::checkpoint(dir, "labels.safetensors has no `labels` tensor"))?;
    if t.dim() != 1 || t.kind() != Kind::Int {
        return Err(Error::checkpoint(dir, "`labels` is not a 1-d int32 tensor"));
    }
    let v: Vec<i32> = Vec::try_from(&t)?;
    if v.iter().any(|&l| l < 0) {
        return Err(Error::checkpoint(dir, "negative label in `labels`"));
    }
    Ok(v.into_iter().map(|l| l as u32).collect())
}

const EPOCH_FILE: &str = "epoch.safetensors";

/// Reads `epoch.safetensors` of a checkpoint taken part-way through an epoch.
///
/// # Errors
/// A missing file, or tensors missing or of the wrong type.
pub fn load_epoch(dir: &Path) -> Result<EpochFiles> {
    let p = dir.join(EPOCH_FILE);
    let bad = |m: String| Error::checkpoint(dir, format!("{EPOCH_FILE}: {m}"));
    let named = Tensor::read_safetensors(&p).map_err(|e| bad(e.to_string()))?;
    let mut records = None;
    let mut before = None;
    let mut rng = Vec::new();
    for (name, t) in named {
        match name.as_str() {
            "records" | "before" if t.dim() != 1 || t.kind() != Kind::Int => {
                return Err(bad(format!("`{name}` is not a 1-d int32 tensor")))
            }
            "records" => records = Some(Vec::<i32>::try_from(&t)?),
            "before" => {
                let v = Vec::<i32>::try_from(&t)?;
                if v.iter().any(|&l| l < 0) {
                    return Err(bad("negative label in `before`".into()));
                }
                before = Some(v.into_iter().map(|l| l as u32).collect::<Vec<u32>>());
            }
            other => {
                if let Some(r) = other
                    .strip_prefix("rng.")
                    .and_then(|r| r.parse::<usize>().ok())
                {
                    if t.kind() != Kind::Uint8 {
                        return Err(bad(format!("`{name}` is not a uint8 tensor")));
                    }
                    rng.push((r, Vec::<u8>::try_from(&t)?));
                }
            }
        }
    }
    rng.sort_by_key(|(r, _)| *r);
    if rng.iter().enumerate().any(|(i, (r, _))| i != *r) {
        return Err(bad(
            "the ranks' generator states are not rng.0, rng.1, ...".into()
        ));
    }
    Ok(EpochFiles {
        records: records.ok_or_else(|| bad("no `records` tensor".into()))?,
        before: before.ok_or_else(|| bad("no `before` tensor".into()))?,
        rng: rng.into_iter().map(|(_, b)| b).collect(),
    })
}

/// Loads the model of a checkpoint: `dir` is a run folder or its `checkpoint/` folder.
///
/// # Errors
/// No checkpoint, another format version, or weights that do not fit the architecture.
pub fn load_model(dir: &Path) -> Result<(Model, Checkpoint)> {
    let ck = if dir.join("state.json").is_file() {
        read(dir)?
    } else {
        find(dir)?.ok_or_else(|| {
            Error::checkpoint(
                dir,
                "no checkpoint here (expected state.json or checkpoint/state.json)",
            )
        })?
    };
    let mut model = Model::new(&ck.state.config.model(), Device::Cpu)?;
    load_weights(&ck.dir, &mut model)?;
    Ok((model, ck))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Arch, ModelConfig};

    #[test]
    fn tensors_of_any_layout_are_saved_and_load_back_equal() {
        let cfg = ModelConfig {
            arch: Arch::AlexnetSmall,
            width: 0.25,
            k: 5,
            input_size: 32,
            ..Default::default()
        };
        let model = Model::new(&cfg, Device::Cpu).unwrap();
        // One conv weight in channels-last strides, as `channels_last` layouts give.
        let (name, mut w) = model
            .named_parameters()
            .into_iter()
            .find(|(_, t)| t.dim() == 4)
            .unwrap();
        tch::no_grad(|| {
            let nhwc = w.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
            w.set_data(&nhwc);
        });
        assert!(!w.is_contiguous());
        let mut opt = Sgd::new(model.named_parameters(), 0.9, 1e-4);
        let x = Tensor::randint(256, [4, 3, 32, 32], (Kind::Uint8, Device::Cpu));
        model.forward(&x, true).sum(Kind::Float).backward();
        opt.step(0.1);

        let run = tempfile::tempdir().unwrap();
        let state = State {
            format_version: FORMAT_VERSION,
            uic_version: "test".into(),
            epoch: 1,
            step: 1,
            config: TrainConfig::default(),
            data: DataId {
                path: "x".into(),
                samples: 3,
                file_len: 1,
            },
            last_metrics: None,
            partial: None,
        };
        save(run.path(), &state, &model, &opt, &[0, 1, 2], None).unwrap();

        let dir = find(run.path()).unwrap().unwrap().dir;
        let mut back = Model::new(&cfg, Device::Cpu).unwrap();
        load_weights(&dir, &mut back).unwrap();
        let got = back
            .named_parameters()
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1;
        assert!(got.equal(&w), "{name} changed in the round trip");
        let mut opt2 = Sgd::new(back.named_parameters(), 0.9, 1e-4);
        load_optimizer(&dir, &mut opt2, Device::Cpu).unwrap();
        let (a, b) = (opt.state(), opt2.state());
        assert_eq!(a.len(), b.len());
        for ((n, x), (_, y)) in a.iter().zip(&b) {
            assert!(x.equal(y), "momentum of {n} changed in the round trip");
        }
        assert_eq!(load_labels(&dir).unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn a_partial_epoch_round_trips_and_a_damaged_one_is_refused() {
        let cfg = ModelConfig {
            arch: Arch::AlexnetSmall,
            width: 0.25,
            k: 3,
            input_size: 32,
            ..Default::default()
        };
        let model = Model::new(&cfg, Device::Cpu).unwrap();
        let opt = Sgd::new(model.named_parameters(), 0.9, 1e-4);
        let run = tempfile::tempdir().unwrap();
        let partial = Partial {
            batches: 2,
            seen: 16,
            loss_sum: 17.25,
            agree: 3,
            first_lr: 0.05,
            seconds: 1.5,
            waited: 0.25,
            labeling_seconds: 0.0,
            reseeded: 0,
            sync_waited: 0.0,
        };
        let state = State {
            format_version: FORMAT_VERSION_PARTIAL,
            uic_version: "test".into(),
            epoch: 1,
            step: 5,
            config: TrainConfig::default(),
            data: DataId {
                path: "x".into(),
                samples: 3,
                file_len: 1,
            },
            last_metrics: None,
            partial: Some(partial.clone()),
        };
        let files = EpochFiles {
            records: vec![2, -1, 0, -1],
            before: vec![0, 1, 2],
            rng: vec![vec![1, 2, 3], vec![4, 5, 6]],
        };
        save(run.path(), &state, &model, &opt, &[0, 1, 2], Some(&files)).unwrap();
        let ck = find(run.path()).unwrap().unwrap();
        assert_eq!(ck.state.partial, Some(partial));
        assert_eq!(load_epoch(&ck.dir).unwrap(), files);
        // An end-of-epoch checkpoint replaces it whole: no epoch file is left behind.
        let state = State {
            format_version: FORMAT_VERSION,
            partial: None,
            ..state
        };
        save(run.path(), &state, &model, &opt, &[0, 1, 2], None).unwrap();
        let ck = find(run.path()).unwrap().unwrap();
        assert_eq!(ck.state.partial, None);
        assert!(load_epoch(&ck.dir).is_err());
        let text = std::fs::read_to_string(ck.dir.join("state.json")).unwrap();
        assert!(!text.contains("partial"), "{text}");
        // A damaged epoch file is an error naming it, not a panic.
        std::fs::write(ck.dir.join(EPOCH_FILE), b"not safetensors").unwrap();
        let e = load_epoch(&ck.dir).unwrap_err().to_string();
        assert!(e.contains(EPOCH_FILE), "{e}");
    }
}

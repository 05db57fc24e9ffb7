//! Where centre-crop probes read their training features: rows held in memory, or the
//! centre crops of a record file pushed through the frozen backbone again each time they
//! are read ([`Features`]). The probe trainers of [`super::grid`] and [`super::tune`] read
//! rows through it in the order they choose, so both give the same probes.

use std::ops::Range;
use std::sync::Arc;

use tch::{Device, Kind, Tensor};
use uic_loader::RecordFile;

use super::stats::RunningStats;
use crate::config::TrainConfig;
use crate::error::Result;
use crate::infer::{extract, extract_batches, feature_dims, Layer};
use crate::model::Model;

/// Below this many bytes of centre-crop training features (all probed layers together),
/// `uic eval` holds them in memory and reads each probe epoch from there; above it, it
/// streams them from the loader every epoch, so its memory does not grow with the
/// features (an ImageNet-sized training set of conv features is tens of gigabytes).
/// 2 GiB holds imagenette's 2,748 training images of `alexnet-small` at 32 px (about
/// 180 KB each over conv1-conv5 and final) four times over, so small sets keep the speed of
/// one extraction.
pub const DEFAULT_FEATURE_MEMORY: usize = 2 << 30;

/// The training features of one or more probed layers, rows `0..len()`.
#[derive(Debug)]
pub enum Features<'a> {
    /// Held in memory: one `[n, d]` tensor per layer, row `r` of each is row `r`.
    Held(Vec<Tensor>),
    /// Row `r` is the centre crop of `indices[r]` of `file` through `model` at `layers`,
    /// computed each time it is read (eval mode, so a row does not depend on its batch up
    /// to float rounding).
    Streamed {
        /// The frozen backbone.
        model: &'a Model,
        /// Its run's settings (input size, loader threads).
        cfg: &'a TrainConfig,
        /// The images.
        file: &'a Arc<RecordFile>,
        /// Row `r` is image `indices[r]` of `file`.
        indices: &'a [usize],
        /// The layers, in the order of the tensors handed out.
        layers: &'a [Layer],
    },
}

impl<'a> Features<'a> {
    /// The centre-crop features of `indices` of `file` at `layers`: held in memory when
    /// they take at most `budget` bytes (float32), streamed otherwise.
    ///
    /// # Errors
    /// A loader failure, or conv layers of a ResNet.
    pub fn with_budget(
        model: &'a Model,
        cfg: &'a TrainConfig,
        file: &'a Arc<RecordFile>,
        indices: &'a [usize],
        layers: &'a [Layer],
        budget: usize,
    ) -> Result<Self> {
        let per_row: i64 = feature_dims(model, cfg, layers)?.iter().sum();
        let bytes = indices.len() as u128 * per_row as u128 * 4;
        Ok(if bytes <= budget as u128 {
            tracing::debug!(bytes, "probe features held in memory");
            Features::Held(extract(model, cfg, file, indices, layers, false)?)
        } else {
            tracing::info!(
                bytes,
                budget,
                "probe features over the memory budget: streamed from the loader every epoch"
            );
            Features::Streamed {
                model,
                cfg,
                file,
                indices,
                layers,
            }
        })
    }

    /// Rows.
    pub fn len(&self) -> usize {
        match self {
            Features::Held(t) => t.first().map_or(0, |t| t.size()[0] as usize),
            Features::Streamed { indices, .. } => indices.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Layers (tensors per batch).
    pub fn layers(&self) -> usize {
        match self {
            Features::Held(t) => t.len(),
            Features::Streamed { layers, .. } => layers.len(),
        }
    }

    /// The width of each layer's rows.
    ///
    /// # Errors
    /// Conv layers of a ResNet (streamed features).
    pub fn dims(&self) -> Result<Vec<i64>> {
        match self {
            Features::Held(t) => Ok(t.iter().map(|t| t.size()[1]).collect()),
            Features::Streamed {
                model, cfg, layers, ..
            } => feature_dims(model, cfg, layers),
        }
    }

    /// Hands `f` the features (`[b, d]` float32 per layer, on the CPU) of `rows` in order,
    /// `batch` rows at a time, with each batch's range of positions in `rows`.
    ///
    /// # Errors
    /// A loader failure (streamed rows only).
    ///
    /// # Panics
    /// If a row is out of range.
    pub fn each(
        &self,
        rows: &[usize],
        batch: usize,
        mut f: impl FnMut(Range<usize>, &[Tensor]),
    ) -> Result<()> {
        match self {
            Features::Held(all) => {
                let n = self.len();
                for (i, chunk) in rows.chunks(batch.max(1)).enumerate() {
                    assert!(chunk.iter().all(|&r| r < n), "a row past {n}");
                    let idx =
                        Tensor::from_slice(&chunk.iter().map(|&r| r as i64).collect::<Vec<_>>());
                    let feats: Vec<Tensor> = all
                        .iter()
                        .map(|t| t.index_select(0, &idx).to_kind(Kind::Float))
                        .collect();
                    let start = i * batch.max(1);
                    f(start..start + chunk.len(), &feats);
                }
                Ok(())
            }
            Features::Streamed {
                model,
                cfg,
                file,
                indices,
                layers,
            } => {
                let images: Vec<usize> = rows.iter().map(|&r| indices[r]).collect();
                extract_batches(
                    model,
                    cfg,
                    file,
                    &images,
                    layers,
                    false,
                    batch,
                    |r, feats| {
                        let feats: Vec<Tensor> = feats
                            .iter()
                            .map(|t| t.to_device(Device::Cpu).to_kind(Kind::Float))
                            .collect();
                        f(r, &feats)
                    },
                )
            }
        }
    }

    /// Mean and deviation (`[1, d]` each) of each layer's columns over `rows`, for the
    /// layers where `wanted` is true (None elsewhere), in one pass, accumulated in float64.
    ///
    /// # Errors
    /// As [`Features::each`].
    pub(crate) fn column_stats(
        &self,
        rows: &[usize],
        wanted: &[bool],
        batch: usize,
    ) -> Result<Vec<Option<(Tensor, Tensor)>>> {
        let mut stats: Vec<Option<RunningStats>> =
            wanted.iter().map(|&w| w.then(RunningStats::new)).collect();
        if stats.iter().any(Option::is_some) {
            self.each(rows, batch, |_, feats| {
                for (s, f) in stats.iter_mut().zip(feats) {
                    if let Some(s) = s {
                        s.push(f);
                    }
                }
            })?;
        }
        Ok(stats
            .into_iter()
            .map(|s| s.map(RunningStats::finish))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use uic_loader::{NewSample, RecordWriter, StorageMode, WriterOptions};

    use super::super::grid::train_probes;
    use super::super::probe::{Probe, ProbeConfig};
    use super::super::tune::{ProbeGrid, ProbeSearch};
    use super::*;
    use crate::model::{Arch, ModelConfig};

    /// `n` raw 40 x 40 images of three classes in turn: a class colour plus per-image noise.
    fn records(dir: &std::path::Path, n: usize) -> (Arc<RecordFile>, Vec<u32>) {
        let path = dir.join("probe.uicr");
        let mut w = RecordWriter::create(
            &path,
            WriterOptions {
                mode: StorageMode::Raw,
                classes: vec![b"r".to_vec(), b"g".to_vec(), b"b".to_vec()],
                ..Default::default()
            },
        )
        .unwrap();
        let mut labels = Vec::new();
        for i in 0..n {
            let c = (i % 3) as u32;
            let px: Vec<u8> = (0..40 * 40 * 3)
                .map(|j| {
                    let base = if j % 3 == c as usize { 160 } else { 60 };
                    let noise = (i * 7919 + j * 104_729) % 97;
                    (base + noise) as u8
                })
                .collect();
            w.append(&NewSample {
                data: &px,
                width: 40,
                height: 40,
                label: Some(c),
                source: format!("{i}.raw").as_bytes(),
                converted: true,
            })
            .unwrap();
            labels.push(c);
        }
        w.finish().unwrap();
        (Arc::new(RecordFile::open(&path).unwrap()), labels)
    }

    fn small_model() -> (Model, TrainConfig) {
        let cfg = TrainConfig {
            arch: Arch::AlexnetSmall,
            width: 0.25,
            k: 5,
            input_size: 32,
            batch_size: 20,
            threads: 2,
            ..Default::default()
        };
        let mc = ModelConfig {
            arch: cfg.arch,
            width: cfg.width,
            k: cfg.k,
            input_size: cfg.input_size,
            ..Default::default()
        };
        (Model::init(&mc, 3, Device::Cpu).unwrap(), cfg)
    }

    /// The largest difference between the weights and biases of two lists of probes.
    fn max_diff(a: &[Probe], b: &[Probe]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(p, q)| {
                let w = (&p.lin.ws - &q.lin.ws).abs().max().double_value(&[]);
                let bias = (p.lin.bs.as_ref().unwrap() - q.lin.bs.as_ref().unwrap())
                    .abs()
                    .max()
                    .double_value(&[]);
                w.max(bias)
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn streamed_features_train_the_probes_held_features_train() {
        let tmp = tempfile::tempdir().unwrap();
        let (file, labels) = records(tmp.path(), 90);
        let (model, cfg) = small_model();
        // Every third image, out of order: rows are not file positions.
        let indices: Vec<usize> = (0..90).rev().step_by(2).collect();
        let labels: Vec<u32> = indices.iter().map(|&i| labels[i]).collect();
        let layers = [Layer::Conv(2), Layer::Final];
        let streamed = Features::with_budget(&model, &cfg, &file, &indices, &layers, 0).unwrap();
        let held =
            Features::with_budget(&model, &cfg, &file, &indices, &layers, usize::MAX).unwrap();
        assert!(matches!(streamed, Features::Streamed { .. }));
        assert!(matches!(held, Features::Held(_)));
        assert_eq!((streamed.len(), held.len()), (45, 45));
        assert_eq!(streamed.dims().unwrap(), held.dims().unwrap());
        // Minibatches of 8 (a last one of 5), the loader's batches another size.
        for standardize in [false, true] {
            let pc = ProbeConfig {
                epochs: 3,
                milestones: vec![2],
                batch_size: 8,
                standardize,
                ..Default::default()
            };
            let a = train_probes(&streamed, &labels, 3, &pc).unwrap();
            let b = train_probes(&held, &labels, 3, &pc).unwrap();
            let diff = max_diff(&a, &b);
            assert!(diff < 1e-4, "standardize {standardize}: {diff}");
            // Another batch order moves the weights far more: the agreement above is the
            // same minibatches in the same order, not training that forgets its path.
            let other = train_probes(&held, &labels, 3, &ProbeConfig { seed: 1, ..pc }).unwrap();
            assert!(max_diff(&other, &b) > 1e-2, "{}", max_diff(&other, &b));
        }
        // Tuning: the same choices and probes, scored on streamed or held centre crops.
        let pc = ProbeConfig {
            epochs: 2,
            milestones: vec![1],
            batch_size: 8,
            ..Default::default()
        };
        let search = ProbeSearch {
            lrs: vec![0.01, 1.0],
            weight_decays: vec![0.0, 0.1],
            standardize: vec![false, true],
            val_frac: 0.3,
        };
        let tune = |f: &Features| {
            let mut grids = ProbeGrid::fit_layers(f, &labels, 3, &pc, &search).unwrap();
            ProbeGrid::score_features(&mut grids, f, 7).unwrap();
            let chosen = ProbeGrid::choose_layers(grids, f, &labels, 3, &pc).unwrap();
            let (probes, choices): (Vec<Probe>, Vec<_>) = chosen.into_iter().unzip();
            (probes, choices)
        };
        let (ps, cs) = tune(&streamed);
        let (ph, ch) = tune(&held);
        assert_eq!(cs.len(), 2);
        assert_eq!(cs, ch);
        assert!(max_diff(&ps, &ph) < 1e-4, "{}", max_diff(&ps, &ph));
        // The held path is the in-memory API's: ProbeGrid on one layer's tensor.
        let Features::Held(t) = &held else {
            unreachable!()
        };
        let mut one = ProbeGrid::fit(&t[1], &labels, 3, &pc, &search);
        one.score_rows(&t[1]);
        let (p, c) = one.choose(&t[1], &labels, 3, &pc);
        assert_eq!(c, ch[1]);
        assert!(max_diff(&[p], &ph[1..]) < 1e-6);
    }
}

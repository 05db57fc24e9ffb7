//! Cosine k-nearest-neighbour accuracy on frozen features: the training side as a
//! [`KnnBank`], which test features are scored against batch by batch.

use std::sync::Arc;

use tch::{Device, Kind, Tensor};
use uic_loader::RecordFile;

use crate::config::TrainConfig;
use crate::error::Result;
use crate::infer::{extract_each, feature_dims, Layer};
use crate::labels::class_count;
use crate::model::Model;

/// Training rows compared with a test batch at once: bounds the similarity matrix (and a
/// float16 bank's float32 copy) to `batch * BANK_BLOCK` values.
const BANK_BLOCK: i64 = 16384;

/// Top-1 accuracy of cosine kNN: each test feature's `k` most similar training features
/// vote for their labels, weighted by similarity; the class with the largest sum wins.
///
/// # Panics
/// If the label counts do not match the feature rows.
pub fn knn_top1(
    train: &Tensor,
    train_labels: &[u32],
    test: &Tensor,
    test_labels: &[u32],
    k: i64,
) -> f64 {
    assert_eq!(test.size()[0] as usize, test_labels.len());
    let classes = class_count(train_labels.iter().chain(test_labels));
    let bank = KnnBank::new(train, train_labels, classes, Kind::Float);
    let mut correct = 0usize;
    // Chunks of test rows bound the similarity matrix's memory.
    for start in (0..test_labels.len()).step_by(1024) {
        let m = (test_labels.len() - start).min(1024);
        correct += bank.correct(
            &test.narrow(0, start as i64, m as i64),
            &test_labels[start..start + m],
            k,
        );
    }
    correct as f64 / test_labels.len().max(1) as f64
}

/// The training side of cosine kNN: L2-normalised features and their labels.
///
/// It takes `n * (d * b + 8)` bytes for `n` images of `d`-dim features stored in `b`-byte
/// floats (and the 8-byte labels): [`KnnBank::extract`] stores the final layer in float32
/// (`b = 4`) and the conv and pixel layers (about 9,000 values) in float16 (`b = 2`,
/// similarities good to about 1e-3). Only one layer is ever held.
#[derive(Debug)]
pub struct KnnBank {
    /// `[n, d]`, each row of unit norm.
    feats: Tensor,
    /// `[n]` int64.
    labels: Tensor,
    /// Width of the vote: classes of the training and test labels.
    classes: i64,
}

impl KnnBank {
    /// A bank of `train` (`[n, d]`) labelled `labels`, stored as `kind`, voting among
    /// `classes` classes (those of the training and the test labels).
    ///
    /// # Panics
    /// If the label count does not match the rows.
    pub fn new(train: &Tensor, labels: &[u32], classes: usize, kind: Kind) -> Self {
        assert_eq!(train.size()[0] as usize, labels.len());
        KnnBank {
            feats: unit_rows(train).to_kind(kind),
            labels: int64(labels),
            classes: classes.max(1) as i64,
        }
    }

    /// The bank of the centre crops of `indices` of `file` at `layer` (labelled `labels`),
    /// filled batch by batch into one allocation: float32 for the final layer, float16
    /// otherwise.
    ///
    /// # Errors
    /// A loader failure, or conv layers of a ResNet.
    ///
    /// # Panics
    /// If the label count does not match `indices`.
    pub fn extract(
        model: &Model,
        cfg: &TrainConfig,
        file: &Arc<RecordFile>,
        indices: &[usize],
        labels: &[u32],
        classes: usize,
        layer: Layer,
    ) -> Result<Self> {
        assert_eq!(indices.len(), labels.len());
        let kind = match layer {
            Layer::Final => Kind::Float,
            Layer::Conv(_) | Layer::Pixels => Kind::Half,
        };
        let d = feature_dims(model, cfg, &[layer])?[0];
        let feats = Tensor::empty([indices.len() as i64, d], (kind, Device::Cpu));
        extract_each(model, cfg, file, indices, &[layer], false, |r, f| {
            feats
                .narrow(0, r.start as i64, r.len() as i64)
                .copy_(&unit_rows(&f[0].to_device(Device::Cpu)));
        })?;
        Ok(KnnBank {
            feats,
            labels: int64(labels),
            classes: classes.max(1) as i64,
        })
    }

    /// Bytes of the bank (features and labels).
    pub fn bytes(&self) -> usize {
        self.feats.numel() * self.feats.kind().elt_size_in_bytes() + self.labels.numel() * 8
    }

    /// How many of the test rows `test` (`[m, d]`, any scale) the bank's `k` nearest
    /// neighbours classify as `labels`.
    ///
    /// # Panics
    /// If the label count does not match the rows.
    pub fn correct(&self, test: &Tensor, labels: &[u32], k: i64) -> usize {
        assert_eq!(test.size()[0] as usize, labels.len());
        let n = self.feats.size()[0];
        let k = k.min(n);
        if labels.is_empty() || k == 0 {
            return 0;
        }
        let te = unit_rows(test);
        // The k best of each block of the bank, then the k best of those.
        let (mut vals, mut idx) = (Vec::new(), Vec::new());
        for start in (0..n).step_by(BANK_BLOCK as usize) {
            let block = self.feats.narrow(0, start, (n - start).min(BANK_BLOCK));
            let sim = te.matmul(&block.to_kind(Kind::Float).tr());
            let (v, i) = sim.topk(k.min(block.size()[0]), 1, true, true);
            vals.push(v);
            idx.push(i + start);
        }
        let (vals, idx) = if vals.len() == 1 {
            (vals.pop().expect("a block"), idx.pop().expect("a block"))
        } else {
            let (v, at) = Tensor::cat(&vals, 1).topk(k, 1, true, true);
            (v, Tensor::cat(&idx, 1).gather(1, &at, false))
        };
        let lab = self
            .labels
            .index_select(0, &idx.flatten(0, -1))
            .view_as(&idx);
        let votes = Tensor::zeros(
            [labels.len() as i64, self.classes],
            (Kind::Float, Device::Cpu),
        )
        .scatter_add(1, &lab, &vals);
        let pred: Vec<i64> = Vec::try_from(votes.argmax(1, false)).expect("int64 predictions");
        pred.iter()
            .zip(labels)
            .filter(|(&p, &l)| p == i64::from(l))
            .count()
    }
}

/// The rows of `x` (`[n, d]`) scaled to unit norm, as float32.
fn unit_rows(x: &Tensor) -> Tensor {
    let x = x.to_kind(Kind::Float);
    let n = x.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
    x / n
}

fn int64(labels: &[u32]) -> Tensor {
    Tensor::from_slice(&labels.iter().map(|&l| i64::from(l)).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knn_finds_the_nearest_class() {
        // Two well-separated clusters on the unit circle.
        let train = Tensor::from_slice(&[1.0f32, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9]).view([4, 2]);
        let test = Tensor::from_slice(&[0.8f32, 0.2, 0.2, 0.8]).view([2, 2]);
        assert_eq!(knn_top1(&train, &[0, 0, 1, 1], &test, &[0, 1], 2), 1.0);
        assert_eq!(knn_top1(&train, &[0, 0, 1, 1], &test, &[1, 0], 2), 0.0);
    }

    /// The predictions of cosine kNN from one similarity matrix of all the training rows.
    fn reference_predictions(train: &Tensor, labels: &[u32], test: &Tensor, k: i64) -> Vec<i64> {
        let sim = unit_rows(test).matmul(&unit_rows(train).tr());
        let (vals, idx) = sim.topk(k, 1, true, true);
        let lab = int64(labels)
            .index_select(0, &idx.flatten(0, -1))
            .view_as(&idx);
        let votes = Tensor::zeros([test.size()[0], 5], (Kind::Float, Device::Cpu))
            .scatter_add(1, &lab, &vals);
        Vec::try_from(votes.argmax(1, false)).unwrap()
    }

    #[test]
    fn a_bank_of_many_blocks_votes_as_one_similarity_matrix() {
        tch::manual_seed(11);
        // Three blocks of the bank, the last one short; five noisy classes.
        let n = 2 * BANK_BLOCK + 1000;
        let labels: Vec<u32> = (0..n).map(|i| (i * 7 % 5) as u32).collect();
        let centres = Tensor::randn([5, 12], (Kind::Float, Device::Cpu));
        let train = centres.index_select(0, &int64(&labels))
            + Tensor::randn([n, 12], (Kind::Float, Device::Cpu)) * 2.0;
        let test_labels: Vec<u32> = (0..300).map(|i| (i % 5) as u32).collect();
        let test = centres.index_select(0, &int64(&test_labels))
            + Tensor::randn([300, 12], (Kind::Float, Device::Cpu)) * 2.0;
        let want = reference_predictions(&train, &labels, &test, 20);
        // The reference's own predictions as labels: the bank must get every one right.
        let want_u32: Vec<u32> = want.iter().map(|&p| p as u32).collect();
        let bank = KnnBank::new(&train, &labels, 5, Kind::Float);
        assert_eq!(bank.correct(&test, &want_u32, 20), 300);
        assert_eq!(bank.bytes(), n as usize * (12 * 4 + 8));
        // Noisy classes: the true labels are not all right, so the check above can fail.
        let right = bank.correct(&test, &test_labels, 20);
        assert!((100..300).contains(&right), "{right}");
        // Float16 storage: half the bytes, and nearly every prediction the same.
        let half = KnnBank::new(&train, &labels, 5, Kind::Half);
        assert_eq!(half.bytes(), n as usize * (12 * 2 + 8));
        assert!(half.correct(&test, &want_u32, 20) >= 294);
        // k past the bank's rows: every row votes.
        let small = KnnBank::new(&train.narrow(0, 0, 10), &labels[..10], 5, Kind::Float);
        let all = reference_predictions(&train.narrow(0, 0, 10), &labels[..10], &test, 10);
        let all: Vec<u32> = all.iter().map(|&p| p as u32).collect();
        assert_eq!(small.correct(&test, &all, 50), 300);
    }
}

//! Cosine k-nearest-neighbour accuracy on frozen features.

use tch::{Device, Kind, Tensor};

use crate::labels::class_count;

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
    assert_eq!(train.size()[0] as usize, train_labels.len());
    assert_eq!(test.size()[0] as usize, test_labels.len());
    let classes = class_count(train_labels.iter().chain(test_labels)).max(1) as i64;
    let norm = |t: &Tensor| {
        let t = t.to_kind(Kind::Float);
        let n = t.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
        t / n
    };
    let (tr, te) = (norm(train), norm(test));
    let ytr = Tensor::from_slice(
        &train_labels
            .iter()
            .map(|&l| i64::from(l))
            .collect::<Vec<_>>(),
    );
    let k = k.min(tr.size()[0]);
    let mut correct = 0usize;
    // Chunks of test rows bound the similarity matrix's memory.
    for (start, chunk) in (0..te.size()[0])
        .step_by(1024)
        .map(|s| (s, te.narrow(0, s, (te.size()[0] - s).min(1024))))
    {
        let sim = chunk.matmul(&tr.tr());
        let (vals, idx) = sim.topk(k, 1, true, true);
        let votes = Tensor::zeros([chunk.size()[0], classes], (Kind::Float, Device::Cpu));
        let lab = ytr.index_select(0, &idx.flatten(0, -1)).view_as(&idx);
        let votes = votes.scatter_add(1, &lab, &vals);
        let pred: Vec<i64> = Vec::try_from(votes.argmax(1, false)).expect("int64 predictions");
        correct += pred
            .iter()
            .enumerate()
            .filter(|&(i, &p)| p == i64::from(test_labels[start as usize + i]))
            .count();
    }
    correct as f64 / test_labels.len().max(1) as f64
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
}

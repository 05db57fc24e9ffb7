//! The DeepCluster-style labeler, for comparison with UIC: an extra centre-crop inference
//! pass for features, PCA to 256 dimensions with whitening and L2 normalisation, then
//! k-means with K centroids (Lloyd's iterations, 20 by default as DeepCluster runs faiss).
//! UIC keeps 4 bytes per image between epochs; this keeps every image's features.

use rand::seq::index;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use tch::{Device, Kind, Tensor};

/// PCA of the rows of `x` (`[n, d]`) to `dims` components, each scaled to unit variance
/// (whitening, faiss's `eigen_power = -0.5`), then every row L2-normalised.
pub fn pca_whiten_l2(x: &Tensor, dims: i64) -> Tensor {
    let x = x.to_kind(Kind::Double);
    let n = x.size()[0].max(2);
    let centred = &x - x.mean_dim(0, true, Kind::Double);
    let cov = centred.tr().matmul(&centred) / (n - 1) as f64;
    // Eigenvalues come in ascending order: the last `dims` columns are the top components.
    let (vals, vecs) = cov.linalg_eigh("L");
    let d = vals.size()[0];
    let k = dims.min(d);
    let top_vals = vals.narrow(0, d - k, k).flip([0]);
    let top_vecs = vecs.narrow(1, d - k, k).flip([1]);
    let proj = centred.matmul(&top_vecs) / (top_vals.clamp_min(0.0) + 1e-5).sqrt();
    let norm = proj.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
    (proj / norm).to_kind(Kind::Float)
}

/// What [`kmeans`] found.
#[derive(Debug)]
pub struct Clustering {
    /// The centroid of each row of the input.
    pub assignment: Vec<u32>,
    /// Times an empty cluster was re-seeded by splitting the largest one.
    pub reseeded: usize,
}

/// Lloyd's k-means on the rows of `x` (`[n, d]`), `iters` iterations from `k` distinct
/// random rows (seeded). A cluster left empty is re-seeded as faiss does for DeepCluster:
/// it takes the centroid of the largest cluster, and the two are pushed apart by a small
/// symmetric perturbation, so the next assignment splits that cluster.
///
/// # Panics
/// If `k` is 0 or larger than the number of rows.
pub fn kmeans(x: &Tensor, k: usize, iters: usize, seed: u64) -> Clustering {
    let x = x.to_kind(Kind::Float).to_device(Device::Cpu);
    let n = x.size()[0] as usize;
    assert!(k > 0 && k <= n, "k = {k} for {n} points");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let init: Vec<i64> = index::sample(&mut rng, n, k)
        .into_iter()
        .map(|i| i as i64)
        .collect();
    let mut c = x.index_select(0, &Tensor::from_slice(&init));
    let x_sq = (&x * &x).sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
    let mut reseeded = 0;
    let mut assign = Tensor::zeros([n as i64], (Kind::Int64, Device::Cpu));
    for it in 0..=iters {
        // Squared distances without forming n x k x d: |x|^2 - 2 x.c + |c|^2.
        let c_sq = (&c * &c).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        let d = &x_sq - x.matmul(&c.tr()) * 2.0 + c_sq.unsqueeze(0);
        assign = d.argmin(1, false);
        if it == iters {
            break;
        }
        let counts = Tensor::zeros([k as i64], (Kind::Float, Device::Cpu)).index_add(
            0,
            &assign,
            &Tensor::ones([n as i64], (Kind::Float, Device::Cpu)),
        );
        let sums = Tensor::zeros([k as i64, x.size()[1]], (Kind::Float, Device::Cpu))
            .index_add(0, &assign, &x);
        let mut cnt: Vec<f32> = Vec::try_from(&counts).expect("float counts");
        let mut new_c = sums / counts.clamp_min(1.0).unsqueeze(1);
        for e in 0..k {
            if cnt[e] > 0.0 {
                continue;
            }
            let (big, &size) = cnt
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
                .expect("k > 0");
            if size < 2.0 {
                break;
            }
            let cb = new_c.get(big as i64);
            let eps = 1.0 / 1024.0;
            let (up, down) = (&cb * (1.0 + eps), &cb * (1.0 - eps));
            new_c = new_c.index_put(&[Some(Tensor::from(e as i64))], &up, false);
            new_c = new_c.index_put(&[Some(Tensor::from(big as i64))], &down, false);
            cnt[e] = size / 2.0;
            cnt[big] = size / 2.0;
            reseeded += 1;
        }
        c = new_c;
    }
    let a: Vec<i64> = Vec::try_from(&assign).expect("int64 assignment");
    Clustering {
        assignment: a.into_iter().map(|v| v as u32).collect(),
        reseeded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nmi::{nmi, Normalization};

    #[test]
    fn finds_well_separated_blobs() {
        tch::manual_seed(0);
        let centres = Tensor::from_slice(&[0.0f32, 0.0, 10.0, 0.0, 0.0, 10.0]).view([3, 2]);
        let truth: Vec<u32> = (0..300).map(|i| (i % 3) as u32).collect();
        let idx = Tensor::from_slice(&truth.iter().map(|&t| i64::from(t)).collect::<Vec<_>>());
        let x = centres.index_select(0, &idx)
            + Tensor::randn([300, 2], (Kind::Float, Device::Cpu)) * 0.5;
        let c = kmeans(&x, 3, 20, 1);
        assert!(nmi(&c.assignment, &truth, Normalization::Arithmetic) > 0.99);
    }

    #[test]
    fn empty_clusters_are_reseeded() {
        // 4 identical points then 4 others: with k = 3, one initial centroid duplicates
        // another and its cluster empties; it must be re-seeded.
        let mut v = vec![0.0f32; 8];
        v.extend([5.0f32; 8]);
        let x = Tensor::from_slice(&v).view([8, 2]);
        let c = kmeans(&x, 3, 5, 0);
        let used: std::collections::BTreeSet<u32> = c.assignment.iter().copied().collect();
        assert!(used.len() >= 2);
        assert_eq!(c.assignment.len(), 8);
    }

    #[test]
    fn pca_whitening_gives_unit_rows_of_the_asked_width() {
        tch::manual_seed(0);
        let x = Tensor::randn([50, 8], (Kind::Float, Device::Cpu));
        let p = pca_whiten_l2(&x, 4);
        assert_eq!(p.size(), vec![50, 4]);
        let norms: Vec<f32> = Vec::try_from(p.norm_scalaropt_dim(2, [1], false)).unwrap();
        assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-4));
        // Asking for more components than dimensions gives all of them.
        assert_eq!(pca_whiten_l2(&x, 256).size(), vec![50, 8]);
    }
}

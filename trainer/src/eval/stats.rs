//! Column statistics of features that arrive batch by batch ([`RunningStats`]): the mean
//! and deviation a probe standardises with, without holding the features.

use tch::{Kind, Tensor};

/// Running mean and sum of squared deviations of each column of `[b, d]` batches, in
/// float64, merged batch by batch (Chan et al.'s pairwise update of Welford's algorithm):
/// [`RunningStats::finish`] equals the column mean and population deviation of the batches
/// concatenated (as a probe of features held in memory computes them), up to float32
/// rounding, in any batching.
#[derive(Debug)]
pub(crate) struct RunningStats {
    n: i64,
    mean: Option<Tensor>,
    m2: Option<Tensor>,
}

impl RunningStats {
    pub(crate) fn new() -> Self {
        RunningStats {
            n: 0,
            mean: None,
            m2: None,
        }
    }

    /// Adds the rows of `x` (`[b, d]`).
    pub(crate) fn push(&mut self, x: &Tensor) {
        let b = x.size()[0];
        if b == 0 {
            return;
        }
        let x = x.to_kind(Kind::Double);
        let mb = x.mean_dim(0, true, Kind::Double);
        let m2b = (&x - &mb).square().sum_dim_intlist(0, true, Kind::Double);
        let (na, n) = (self.n as f64, (self.n + b) as f64);
        match (&mut self.mean, &mut self.m2) {
            (Some(mean), Some(m2)) => {
                let delta = &mb - &*mean;
                *m2 += m2b + delta.square() * (na * b as f64 / n);
                *mean += delta * (b as f64 / n);
            }
            _ => {
                self.mean = Some(mb);
                self.m2 = Some(m2b);
            }
        }
        self.n += b;
    }

    /// Mean and population deviation (`[1, d]` float32 each, the deviation at least 1e-6),
    /// as a probe of features held in memory computes them.
    ///
    /// # Panics
    /// If no row was pushed.
    pub(crate) fn finish(self) -> (Tensor, Tensor) {
        let (mean, m2) = self.mean.zip(self.m2).expect("statistics of no rows");
        let std = (m2 / self.n as f64).sqrt();
        (
            mean.to_kind(Kind::Float),
            std.to_kind(Kind::Float).clamp_min(1e-6),
        )
    }
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::super::probe::column_stats;
    use super::*;

    #[test]
    fn streamed_stats_equal_the_stats_of_the_concatenation() {
        tch::manual_seed(5);
        // Columns of very different offsets and scales, one constant (deviation clamped).
        let scale = Tensor::from_slice(&[1.0f32, 100.0, 1e-3, 0.0, 7.0]);
        let offset = Tensor::from_slice(&[0.0f32, 1e3, -5.0, 3.0, 1e4]);
        let x = Tensor::randn([301, 5], (Kind::Float, Device::Cpu)) * scale + offset;
        let (want_mean, want_std) = column_stats(&x);
        for sizes in [
            vec![301],
            vec![1, 300],
            vec![64, 64, 64, 64, 45],
            vec![100, 1, 200],
        ] {
            let mut s = RunningStats::new();
            let mut at = 0;
            for b in sizes {
                s.push(&x.narrow(0, at, b));
                at += b;
            }
            let (mean, std) = s.finish();
            assert_eq!(mean.size(), [1, 5]);
            let rel = |a: &Tensor, b: &Tensor| {
                ((a - b).abs() / b.abs().clamp_min(1e-6))
                    .max()
                    .double_value(&[])
            };
            assert!(rel(&mean, &want_mean) < 1e-5, "{mean} vs {want_mean}");
            assert!(rel(&std, &want_std) < 1e-5, "{std} vs {want_std}");
        }
        // The constant column's deviation is clamped, as column_stats does.
        let mut s = RunningStats::new();
        s.push(&x);
        assert_eq!(s.finish().1.double_value(&[0, 3]), 1e-6f32 as f64);
    }
}

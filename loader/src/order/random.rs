//! A fresh uniform permutation each epoch.

use rand::seq::SliceRandom;

use super::{epoch_rng, Order};

/// A permutation of `0..len` drawn from (seed, epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Random {
    /// Number of samples.
    pub len: usize,
    /// Seed.
    pub seed: u64,
}

impl Order for Random {
    fn indices(&self, epoch: u64) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.len).collect();
        v.shuffle(&mut epoch_rng(self.seed, epoch));
        v
    }
}

//! A fixed subset of indices, optionally shuffled each epoch.

use rand::seq::SliceRandom;

use super::{epoch_rng, Order};

/// The given indices, in their order or shuffled per epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subset {
    /// The indices to draw from.
    pub indices: Vec<usize>,
    /// Shuffle each epoch.
    pub shuffle: bool,
    /// Seed of the shuffle.
    pub seed: u64,
}

impl Order for Subset {
    fn indices(&self, epoch: u64) -> Vec<usize> {
        let mut v = self.indices.clone();
        if self.shuffle {
            v.shuffle(&mut epoch_rng(self.seed, epoch));
        }
        v
    }
}

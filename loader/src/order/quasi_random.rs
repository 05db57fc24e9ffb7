//! FFCV's quasi-random order, for files larger than RAM: shuffle blocks of consecutive
//! records, then shuffle samples within a window of blocks, so that reads stay within a few
//! blocks at a time while batches still mix the dataset.
//!
//! Blocks are byte ranges of the file computed from the sample table (a record belongs to
//! the block holding its first byte); no page layout is needed in the file. Unlike FFCV's,
//! the order is a pure function of (seed, epoch), so it shards like any other order.

use rand::seq::SliceRandom;

use super::{epoch_rng, Order};

/// Block-local shuffling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuasiRandom {
    /// Sample indices grouped by block, in file order.
    blocks: Vec<Vec<usize>>,
    /// Blocks whose samples are shuffled together.
    window: usize,
    /// Seed.
    seed: u64,
}

impl QuasiRandom {
    /// Groups records by `block_bytes` blocks of their start offset (`extents` as from
    /// `RecordFile::extents`), shuffling within windows of `window` blocks.
    pub fn new(extents: &[(u64, u32)], block_bytes: u64, window: usize, seed: u64) -> Self {
        let mut blocks: Vec<Vec<usize>> = Vec::new();
        let mut current = u64::MAX;
        for (i, &(offset, _)) in extents.iter().enumerate() {
            let b = offset / block_bytes.max(1);
            if b != current || blocks.is_empty() {
                blocks.push(Vec::new());
                current = b;
            }
            blocks.last_mut().expect("pushed above").push(i);
        }
        QuasiRandom {
            blocks,
            window: window.max(1),
            seed,
        }
    }

    /// Number of blocks.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }
}

impl Order for QuasiRandom {
    fn indices(&self, epoch: u64) -> Vec<usize> {
        let mut rng = epoch_rng(self.seed, epoch);
        let mut order: Vec<&Vec<usize>> = self.blocks.iter().collect();
        order.shuffle(&mut rng);
        let mut out = Vec::with_capacity(self.blocks.iter().map(Vec::len).sum());
        for window in order.chunks(self.window) {
            let start = out.len();
            for b in window {
                out.extend_from_slice(b);
            }
            out[start..].shuffle(&mut rng);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permutation_that_stays_within_windows() {
        let extents: Vec<(u64, u32)> = (0..100).map(|i| (i * 1000, 1000)).collect();
        let q = QuasiRandom::new(&extents, 10_000, 2, 3);
        assert_eq!(q.num_blocks(), 10);
        let order = q.indices(0);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        // Every run of 20 positions (one window) touches exactly 2 blocks.
        for w in order.chunks(20) {
            let blocks: std::collections::BTreeSet<usize> = w.iter().map(|i| i / 10).collect();
            assert_eq!(blocks.len(), 2, "{w:?}");
        }
        assert_ne!(order, q.indices(1));
        assert_eq!(order, q.indices(0));
    }
}

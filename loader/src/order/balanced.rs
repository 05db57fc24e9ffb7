//! DeepCluster's class-balanced sampler, over a label table the trainer updates.

use rand::seq::{index, SliceRandom};
use rand::Rng;

use super::{epoch_rng, Order};

/// Each epoch: `N` draws, `N / K' + 1` from each of the `K'` non-empty classes (without
/// replacement, or with it for a class smaller than that quota), shuffled and cut to `N`.
/// This is DeepCluster's `UnifLabelSampler`, which UIC uses unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassBalanced {
    members: Vec<Vec<usize>>,
    len: usize,
    seed: u64,
}

impl ClassBalanced {
    /// A sampler over `labels` (one per sample, each `< num_classes`).
    ///
    /// # Panics
    /// If a label is `>= num_classes`.
    pub fn new(labels: &[u32], num_classes: usize, seed: u64) -> Self {
        let mut s = ClassBalanced {
            members: Vec::new(),
            len: 0,
            seed,
        };
        s.set_labels(labels, num_classes);
        s
    }

    /// Replaces the label table (the trainer calls this between epochs).
    ///
    /// # Panics
    /// If a label is `>= num_classes`.
    pub fn set_labels(&mut self, labels: &[u32], num_classes: usize) {
        let mut members = vec![Vec::new(); num_classes];
        for (i, &l) in labels.iter().enumerate() {
            assert!(
                (l as usize) < num_classes,
                "label {l} of sample {i} >= {num_classes} classes"
            );
            members[l as usize].push(i);
        }
        self.members = members;
        self.len = labels.len();
    }

    /// The per-class quota of an epoch: `N / non-empty classes + 1`.
    pub fn quota(&self) -> usize {
        let non_empty = self.members.iter().filter(|m| !m.is_empty()).count();
        self.len.checked_div(non_empty).map_or(0, |q| q + 1)
    }
}

impl Order for ClassBalanced {
    fn indices(&self, epoch: u64) -> Vec<usize> {
        let mut rng = epoch_rng(self.seed, epoch);
        let quota = self.quota();
        let mut out = Vec::with_capacity(quota * self.members.len());
        for m in self.members.iter().filter(|m| !m.is_empty()) {
            if m.len() < quota {
                out.extend((0..quota).map(|_| m[rng.gen_range(0..m.len())]));
            } else {
                out.extend(
                    index::sample(&mut rng, m.len(), quota)
                        .into_iter()
                        .map(|k| m[k]),
                );
            }
        }
        out.shuffle(&mut rng);
        out.truncate(self.len);
        out
    }
}

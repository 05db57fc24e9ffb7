//! DeepCluster's class-balanced sampler, over a label table the trainer updates.

use rand::seq::{index, SliceRandom};
use rand::Rng;

use super::{epoch_rng, Order};

/// Each epoch: `N` draws, `N / K' + 1` from each of the `K'` non-empty classes (without
/// replacement, or with it for a class smaller than that quota), shuffled and cut to `N`.
/// This is DeepCluster's `UnifLabelSampler`, which UIC uses unchanged.
///
/// The members are kept by class in one array of `u32` (4 bytes per sample, no allocation
/// per class), class `c`'s ascending in `members[ends[c - 1]..ends[c]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassBalanced {
    members: Vec<u32>,
    ends: Vec<usize>,
    seed: u64,
}

impl ClassBalanced {
    /// A sampler over `labels` (one per sample, each `< num_classes`).
    ///
    /// # Panics
    /// If a label is `>= num_classes`, or there are more than `u32::MAX` samples.
    pub fn new(labels: &[u32], num_classes: usize, seed: u64) -> Self {
        let mut s = ClassBalanced {
            members: Vec::new(),
            ends: Vec::new(),
            seed,
        };
        s.set_labels(labels, num_classes);
        s
    }

    /// Replaces the label table (the trainer calls this between epochs).
    ///
    /// # Panics
    /// If a label is `>= num_classes`, or there are more than `u32::MAX` samples.
    pub fn set_labels(&mut self, labels: &[u32], num_classes: usize) {
        assert!(
            u32::try_from(labels.len()).is_ok(),
            "{} samples do not fit u32 indices",
            labels.len()
        );
        // A counting sort: sizes, then each class's first free place.
        let mut next = vec![0usize; num_classes];
        for (i, &l) in labels.iter().enumerate() {
            assert!(
                (l as usize) < num_classes,
                "label {l} of sample {i} >= {num_classes} classes"
            );
            next[l as usize] += 1;
        }
        let mut total = 0;
        for n in &mut next {
            (*n, total) = (total, total + *n);
        }
        let mut members = std::mem::take(&mut self.members);
        members.clear();
        members.resize(labels.len(), 0);
        for (i, &l) in labels.iter().enumerate() {
            members[next[l as usize]] = i as u32;
            next[l as usize] += 1;
        }
        // Each class's first free place is now its end.
        self.members = members;
        self.ends = next;
    }

    /// The members of each class, in class order.
    fn classes(&self) -> impl Iterator<Item = &[u32]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(a, &b)| &self.members[a..b])
    }

    /// The per-class quota of an epoch: `N / non-empty classes + 1`.
    pub fn quota(&self) -> usize {
        let non_empty = self.classes().filter(|m| !m.is_empty()).count();
        self.members
            .len()
            .checked_div(non_empty)
            .map_or(0, |q| q + 1)
    }
}

impl Order for ClassBalanced {
    fn indices(&self, epoch: u64) -> Vec<usize> {
        let mut rng = epoch_rng(self.seed, epoch);
        let quota = self.quota();
        let non_empty = self.classes().filter(|m| !m.is_empty()).count();
        let mut out = Vec::with_capacity(quota * non_empty);
        for m in self.classes().filter(|m| !m.is_empty()) {
            if m.len() < quota {
                out.extend((0..quota).map(|_| m[rng.gen_range(0..m.len())] as usize));
            } else {
                out.extend(
                    index::sample(&mut rng, m.len(), quota)
                        .into_iter()
                        .map(|k| m[k] as usize),
                );
            }
        }
        out.shuffle(&mut rng);
        out.truncate(self.members.len());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The per-class vectors this sampler kept before: the reference order.
    fn reference(labels: &[u32], k: usize, seed: u64, epoch: u64) -> Vec<usize> {
        let mut members = vec![Vec::new(); k];
        for (i, &l) in labels.iter().enumerate() {
            members[l as usize].push(i);
        }
        let non_empty = members.iter().filter(|m| !m.is_empty()).count();
        let quota = labels.len() / non_empty + 1;
        let mut rng = epoch_rng(seed, epoch);
        let mut out = Vec::new();
        for m in members.iter().filter(|m| !m.is_empty()) {
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
        out.truncate(labels.len());
        out
    }

    #[test]
    fn the_order_is_the_per_class_vectors_order() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
        for (n, k, used) in [(10, 4, 3), (1000, 50, 50), (3000, 1000, 700), (500, 7, 1)] {
            let labels: Vec<u32> = (0..n).map(|_| rng.gen_range(0..used)).collect();
            let mut s = ClassBalanced::new(&[0], 1, 0);
            s = ClassBalanced { seed: 11, ..s };
            s.set_labels(&labels, k);
            for e in 0..3 {
                assert_eq!(s.indices(e), reference(&labels, k, 11, e), "n {n} k {k}");
            }
        }
    }
}

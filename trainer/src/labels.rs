//! The pseudo-label table: one `u32` class per image, double-buffered across epochs.
//!
//! UIC's targets for epoch `e` are the argmaxes the classifier produced for each image in the
//! training forward pass of epoch `e - 1`. [`LabelTable`] keeps the frozen targets of the
//! running epoch and a second buffer that collects this epoch's argmaxes; [`end_epoch`]
//! repairs empty classes in it and swaps the two. An image not drawn in an epoch keeps its
//! label. That is 4 bytes per image and no extra inference pass.
//!
//! [`end_epoch`]: LabelTable::end_epoch

use rand::seq::SliceRandom;
use rand::Rng;

use crate::error::{Error, Result};

/// Targets of the running epoch and the argmaxes being collected for the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelTable {
    k: usize,
    targets: Vec<u32>,
    next: Vec<u32>,
}

/// What [`LabelTable::end_epoch`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochLabels {
    /// Empty classes refilled by splitting the largest class.
    pub empty_fixed: usize,
}

impl LabelTable {
    /// `n` labels drawn uniformly from `0..k` (the official code's initialisation).
    ///
    /// # Errors
    /// If `k` is 0 or above `u32::MAX`.
    pub fn random(n: usize, k: usize, rng: &mut impl Rng) -> Result<Self> {
        check_k(k)?;
        let labels = (0..n).map(|_| rng.gen_range(0..k as u32)).collect();
        Self::from_labels(labels, k)
    }

    /// A table whose targets are `labels`.
    ///
    /// # Errors
    /// If `k` is 0 or a label is `>= k`.
    pub fn from_labels(labels: Vec<u32>, k: usize) -> Result<Self> {
        check_k(k)?;
        if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| l as usize >= k) {
            return Err(Error::Config(format!(
                "label {l} of image {i} is not below the {k} classes"
            )));
        }
        Ok(LabelTable {
            k,
            next: labels.clone(),
            targets: labels,
        })
    }

    /// Number of classes.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The frozen targets of the running epoch.
    pub fn targets(&self) -> &[u32] {
        &self.targets
    }

    /// Starts collecting a new epoch's argmaxes: images not drawn keep their label.
    pub fn begin_epoch(&mut self) {
        self.next.copy_from_slice(&self.targets);
    }

    /// Records the argmax `pred[j]` for image `indices[j]` (an image drawn twice keeps the
    /// later prediction).
    ///
    /// # Panics
    /// If the slices differ in length, an index is out of range or a prediction is `>= k`.
    pub fn record(&mut self, indices: &[u32], preds: &[i64]) {
        assert_eq!(indices.len(), preds.len(), "one prediction per index");
        for (&i, &p) in indices.iter().zip(preds) {
            assert!(
                p >= 0 && (p as usize) < self.k,
                "prediction {p} outside 0..{}",
                self.k
            );
            self.next[i as usize] = p as u32;
        }
    }

    /// Ends the epoch: refills empty classes of the collected labels (see
    /// [`fix_empty_classes`]) and makes them the next epoch's targets.
    pub fn end_epoch(&mut self, rng: &mut impl Rng) -> EpochLabels {
        let empty_fixed = fix_empty_classes(&mut self.next, self.k, rng);
        std::mem::swap(&mut self.targets, &mut self.next);
        self.next.copy_from_slice(&self.targets);
        EpochLabels { empty_fixed }
    }

    /// Replaces the targets (fixed labels for fine-tuning, or a restored checkpoint).
    ///
    /// # Errors
    /// If the length differs or a label is `>= k`.
    pub fn set_targets(&mut self, labels: Vec<u32>) -> Result<()> {
        if labels.len() != self.len() {
            return Err(Error::Config(format!(
                "{} labels for a table of {}",
                labels.len(),
                self.len()
            )));
        }
        *self = Self::from_labels(labels, self.k)?;
        Ok(())
    }

    /// Members per class of the targets.
    pub fn class_sizes(&self) -> Vec<usize> {
        class_sizes(&self.targets, self.k)
    }
}

fn check_k(k: usize) -> Result<()> {
    if k == 0 || k > u32::MAX as usize {
        return Err(Error::Config(format!("k = {k} classes is out of range")));
    }
    Ok(())
}

/// Members per class.
///
/// # Panics
/// If a label is `>= k`.
pub fn class_sizes(labels: &[u32], k: usize) -> Vec<usize> {
    let mut sizes = vec![0usize; k];
    for &l in labels {
        sizes[l as usize] += 1;
    }
    sizes
}

/// The number of classes of true labels `0..C`: the largest label plus one (0 for none).
pub fn class_count<'a>(labels: impl IntoIterator<Item = &'a u32>) -> usize {
    labels.into_iter().max().map_or(0, |&m| m as usize + 1)
}

/// Refills every empty class the way DeepCluster and UIC do: take the class with the most
/// members (the lowest index on ties), split its members into two halves at random, and
/// move one half (`size / 2` members) to the empty class. Returns how many classes were
/// refilled. Stops early if no class has two members left to split.
///
/// Members are listed by class in one array (4 bytes per image), each class a contiguous
/// range of it: a split shuffles the donor's range in place and hands its tail to the empty
/// class, so both stay contiguous. A heap finds the largest class, so `k` empty classes
/// cost `O(k log k)` beyond the shuffles.
///
/// # Panics
/// If a label is `>= k`.
pub fn fix_empty_classes(labels: &mut [u32], k: usize, rng: &mut impl Rng) -> usize {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    // Counting sort: class c's members, ascending, are `members[start[c]..start[c] + len[c]]`.
    let mut len = vec![0usize; k];
    for &l in labels.iter() {
        len[l as usize] += 1;
    }
    let mut start = Vec::with_capacity(k);
    let mut next = 0usize;
    for &l in &len {
        start.push(next);
        next += l;
    }
    let mut members = vec![0u32; labels.len()];
    let mut fill = start.clone();
    for (i, &l) in labels.iter().enumerate() {
        members[fill[l as usize]] = i as u32;
        fill[l as usize] += 1;
    }
    drop(fill);
    // The largest class first, the lowest index on ties.
    let mut by_size: BinaryHeap<(usize, Reverse<usize>)> = len
        .iter()
        .enumerate()
        .filter(|&(_, &l)| l > 0)
        .map(|(c, &l)| (l, Reverse(c)))
        .collect();
    let mut fixed = 0;
    for empty in 0..k {
        if len[empty] > 0 {
            continue;
        }
        let Some(&(size, Reverse(largest))) = by_size.peek() else {
            break;
        };
        if size < 2 {
            break;
        }
        by_size.pop();
        let donor = &mut members[start[largest]..start[largest] + size];
        donor.shuffle(rng);
        let keep = size - size / 2;
        for &i in &donor[keep..] {
            labels[i as usize] = empty as u32;
        }
        (start[empty], len[empty]) = (start[largest] + keep, size / 2);
        len[largest] = keep;
        by_size.push((keep, Reverse(largest)));
        by_size.push((size / 2, Reverse(empty)));
        fixed += 1;
    }
    fixed
}

/// Size statistics of a labeling: `(min, max, normalised entropy)`, where the entropy of the
/// class-size distribution is divided by `ln k` (1 means perfectly balanced).
pub fn size_stats(sizes: &[usize]) -> (usize, usize, f64) {
    let n: usize = sizes.iter().sum();
    let min = sizes.iter().copied().min().unwrap_or(0);
    let max = sizes.iter().copied().max().unwrap_or(0);
    if n == 0 || sizes.len() < 2 {
        return (min, max, 0.0);
    }
    let h: f64 = sizes
        .iter()
        .filter(|&&s| s > 0)
        .map(|&s| {
            let p = s as f64 / n as f64;
            -p * p.ln()
        })
        .sum();
    (min, max, h / (sizes.len() as f64).ln())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn rng() -> Xoshiro256PlusPlus {
        Xoshiro256PlusPlus::seed_from_u64(3)
    }

    #[test]
    fn empty_classes_take_half_of_the_largest() {
        // class 0: 6 members, class 1: 2, classes 2 and 3 empty.
        let mut l = vec![0, 0, 0, 0, 0, 0, 1, 1];
        let fixed = fix_empty_classes(&mut l, 4, &mut rng());
        assert_eq!(fixed, 2);
        // First 2 takes 3 of class 0's 6; then the largest is class 0 or 2 (3 each): the
        // lowest index, 0, gives 1 of its 3 to class 3.
        assert_eq!(class_sizes(&l, 4), vec![2, 2, 3, 1]);
        // Only class-0 members moved.
        assert_eq!(&l[6..], &[1, 1]);
    }

    #[test]
    fn splitting_is_seeded() {
        let base = vec![0u32; 100];
        let (mut a, mut b, mut c) = (base.clone(), base.clone(), base);
        fix_empty_classes(&mut a, 3, &mut Xoshiro256PlusPlus::seed_from_u64(1));
        fix_empty_classes(&mut b, 3, &mut Xoshiro256PlusPlus::seed_from_u64(1));
        fix_empty_classes(&mut c, 3, &mut Xoshiro256PlusPlus::seed_from_u64(2));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    /// The per-class vectors and linear scans this module used before: the reference.
    fn fix_by_vectors(labels: &mut [u32], k: usize, rng: &mut impl Rng) -> usize {
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); k];
        for (i, &l) in labels.iter().enumerate() {
            members[l as usize].push(i as u32);
        }
        let mut fixed = 0;
        for empty in 0..k {
            if !members[empty].is_empty() {
                continue;
            }
            let (largest, size) = members
                .iter()
                .enumerate()
                .rev()
                .map(|(c, m)| (c, m.len()))
                .max_by_key(|&(_, s)| s)
                .expect("k > 0");
            if size < 2 {
                break;
            }
            let mut donor = std::mem::take(&mut members[largest]);
            donor.shuffle(rng);
            let moved = donor.split_off(donor.len() - size / 2);
            for &i in &moved {
                labels[i as usize] = empty as u32;
            }
            members[largest] = donor;
            members[empty] = moved;
            fixed += 1;
        }
        fixed
    }

    #[test]
    fn the_split_matches_the_vector_reference_exactly() {
        let mut r = rng();
        // Skewed labelings: many empty classes, ties between the largest.
        for (n, k, used) in [
            (8, 4, 2),
            (100, 30, 3),
            (1000, 200, 150),
            (5000, 1000, 10),
            (3, 5, 1),
        ] {
            let base: Vec<u32> = (0..n)
                .map(|i| if i % 3 == 0 { 0 } else { r.gen_range(0..used) })
                .collect();
            let (mut a, mut b) = (base.clone(), base);
            let fa = fix_empty_classes(&mut a, k, &mut Xoshiro256PlusPlus::seed_from_u64(n as u64));
            let fb = fix_by_vectors(&mut b, k, &mut Xoshiro256PlusPlus::seed_from_u64(n as u64));
            assert_eq!((fa, &a), (fb, &b), "n {n} k {k}");
        }
    }

    #[test]
    fn stops_when_nothing_can_be_split() {
        let mut l = vec![0, 1];
        assert_eq!(fix_empty_classes(&mut l, 4, &mut rng()), 0);
        assert_eq!(l, vec![0, 1]);
    }

    #[test]
    fn targets_stay_frozen_until_the_epoch_ends() {
        let mut t = LabelTable::from_labels(vec![0, 1, 1, 0], 2).unwrap();
        t.begin_epoch();
        t.record(&[0, 3], &[1, 1]);
        assert_eq!(t.targets(), &[0, 1, 1, 0]);
        let done = t.end_epoch(&mut rng());
        // image 0 -> 1, image 3 -> 1; class 0 became empty and took half of class 1.
        assert_eq!(done.empty_fixed, 1);
        assert_eq!(t.class_sizes(), vec![2, 2]);
        // Images 1 and 2 were not drawn but may have moved in the split; all are labelled.
        assert!(t.targets().iter().all(|&l| l < 2));
    }

    #[test]
    fn undrawn_images_keep_their_label() {
        let mut t = LabelTable::from_labels(vec![0, 1, 2, 0, 1, 2], 3).unwrap();
        t.begin_epoch();
        t.record(&[0], &[2]);
        t.end_epoch(&mut rng());
        assert_eq!(t.targets(), &[2, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn bad_labels_are_errors() {
        assert!(LabelTable::from_labels(vec![0, 3], 3).is_err());
        assert!(LabelTable::random(3, 0, &mut rng()).is_err());
    }

    #[test]
    fn size_stats_of_balanced_and_skewed() {
        let (min, max, h) = size_stats(&[5, 5, 5, 5]);
        assert_eq!((min, max), (5, 5));
        assert!((h - 1.0).abs() < 1e-12);
        let (_, _, h) = size_stats(&[20, 0, 0, 0]);
        assert_eq!(h, 0.0);
    }
}

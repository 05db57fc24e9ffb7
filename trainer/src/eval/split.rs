//! The seeded split of one labelled file into the images that train a probe and the
//! images that test it.

use rand::seq::SliceRandom;
use uic_loader::seeds::Stream;

/// A seeded `train`/`test` split of `0..n`: `train_frac` of a random permutation, then the
/// rest, each sorted.
pub fn split(n: usize, train_frac: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut Stream::EvalSplit.rng(seed));
    let cut = ((n as f64) * train_frac).round() as usize;
    let (mut a, mut b) = (idx[..cut].to_vec(), idx[cut..].to_vec());
    a.sort_unstable();
    b.sort_unstable();
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_and_disjoint() {
        let (a, b) = split(10, 0.7, 1);
        assert_eq!((a.len(), b.len()), (7, 3));
        assert!(a.iter().all(|i| !b.contains(i)));
        assert_eq!(split(10, 0.7, 1), (a, b));
        assert_ne!(split(10, 0.7, 2).0, split(10, 0.7, 1).0);
    }
}

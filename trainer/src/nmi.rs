//! Normalised mutual information between two labelings (clusterings) of the same samples.
//!
//! `NMI = I(U; V) / norm(H(U), H(V))` with the arithmetic mean (scikit-learn's default) or
//! the geometric mean (the normalisation of DeepCluster-era papers). Natural logarithms;
//! the ratio does not depend on the base.

/// How the mutual information is normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalization {
    /// `(H(U) + H(V)) / 2`.
    Arithmetic,
    /// `sqrt(H(U) H(V))`.
    Geometric,
}

/// NMI of two labelings, with scikit-learn's conventions: 1 when both put every sample in one
/// class (or are empty), 0 when only one does.
///
/// # Panics
/// If the slices differ in length.
pub fn nmi(a: &[u32], b: &[u32], norm: Normalization) -> f64 {
    let (mi, ha, hb) = information(a, b);
    nmi_from(mi, ha, hb, norm)
}

/// Both normalisations at once: `(arithmetic, geometric)`.
///
/// # Panics
/// If the slices differ in length.
pub fn nmi_both(a: &[u32], b: &[u32]) -> (f64, f64) {
    let (mi, ha, hb) = information(a, b);
    (
        nmi_from(mi, ha, hb, Normalization::Arithmetic),
        nmi_from(mi, ha, hb, Normalization::Geometric),
    )
}

fn nmi_from(mi: f64, ha: f64, hb: f64, norm: Normalization) -> f64 {
    // scikit-learn: both labelings trivial (a single class each) means identical.
    if ha == 0.0 && hb == 0.0 {
        return 1.0;
    }
    let denom = match norm {
        Normalization::Arithmetic => 0.5 * (ha + hb),
        Normalization::Geometric => (ha * hb).sqrt(),
    };
    if denom <= 0.0 {
        return 0.0;
    }
    (mi / denom).clamp(0.0, 1.0)
}

/// `(I(A; B), H(A), H(B))` in nats.
///
/// The counts come from sorting: the `(a, b)` pairs packed into one `u64` each, and a
/// sorted copy of `b`; 12 bytes per sample for the duration of the call, and
/// `O(n log n)` time whatever the number of classes (ordered maps took a node per distinct
/// pair and were several times slower at a million samples). Every sum runs in ascending
/// label order, (a, b) pairs included, so the last bits of the result are the same in every
/// process.
fn information(a: &[u32], b: &[u32]) -> (f64, f64, f64) {
    assert_eq!(a.len(), b.len(), "labelings of different lengths");
    let n = a.len();
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let nf = n as f64;
    let plogp = |k: u64| {
        let p = k as f64 / nf;
        -p * p.ln()
    };
    // H(B) and the class sizes of B, ascending.
    let mut sorted_b = b.to_vec();
    sorted_b.sort_unstable();
    let cb: Vec<(u32, u64)> = runs(&sorted_b).collect();
    drop(sorted_b);
    let hb: f64 = cb.iter().map(|&(_, k)| plogp(k)).sum();
    let mut pairs: Vec<u64> = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (u64::from(x) << 32) | u64::from(y))
        .collect();
    pairs.sort_unstable();
    // -0.0, where `Sum` for f64 starts, so a sum of one -0.0 term keeps its sign.
    let (mut ha, mut mi) = (-0.0f64, -0.0f64);
    let mut rest = &pairs[..];
    while let Some(&first) = rest.first() {
        // All pairs of this `a` class: a contiguous run, ascending in `b`.
        let x = first >> 32;
        let len = rest.partition_point(|&p| p >> 32 == x);
        let (group, tail) = rest.split_at(len);
        ha += plogp(len as u64);
        let px = len as f64 / nf;
        for (xy, k) in runs(group) {
            let y = xy as u32;
            let i = cb
                .binary_search_by_key(&y, |&(v, _)| v)
                .expect("every b label was counted");
            let py = cb[i].1 as f64 / nf;
            let pxy = k as f64 / nf;
            mi += pxy * (pxy / (px * py)).ln();
        }
        rest = tail;
    }
    (mi.max(0.0), ha, hb)
}

/// `(value, count)` of each run of equal values in a sorted slice, in order.
fn runs<T: Copy + PartialEq>(sorted: &[T]) -> impl Iterator<Item = (T, u64)> + '_ {
    let mut rest = sorted;
    std::iter::from_fn(move || {
        let &v = rest.first()?;
        let len = rest.partition_point(|&x| x == v);
        rest = &rest[len..];
        Some((v, len as u64))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_and_relabelled_labelings_score_one() {
        let a = [0, 0, 1, 1, 2, 2];
        let b = [5, 5, 3, 3, 9, 9];
        assert!((nmi(&a, &a, Normalization::Arithmetic) - 1.0).abs() < 1e-12);
        assert!((nmi(&a, &b, Normalization::Geometric) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn independent_labelings_score_zero() {
        let a = [0, 0, 1, 1];
        let b = [0, 1, 0, 1];
        assert!(nmi(&a, &b, Normalization::Arithmetic).abs() < 1e-12);
    }

    /// The ordered-map counting this module used before sorting: the reference.
    fn information_by_maps(a: &[u32], b: &[u32]) -> (f64, f64, f64) {
        use std::collections::BTreeMap;
        let nf = a.len() as f64;
        let mut ca: BTreeMap<u32, u64> = BTreeMap::new();
        let mut cb: BTreeMap<u32, u64> = BTreeMap::new();
        let mut joint: BTreeMap<(u32, u32), u64> = BTreeMap::new();
        for (&x, &y) in a.iter().zip(b) {
            *ca.entry(x).or_default() += 1;
            *cb.entry(y).or_default() += 1;
            *joint.entry((x, y)).or_default() += 1;
        }
        let entropy = |c: &BTreeMap<u32, u64>| -> f64 {
            c.values()
                .map(|&k| {
                    let p = k as f64 / nf;
                    -p * p.ln()
                })
                .sum()
        };
        let mi: f64 = joint
            .iter()
            .map(|(&(x, y), &k)| {
                let pxy = k as f64 / nf;
                pxy * (pxy / (ca[&x] as f64 / nf * (cb[&y] as f64 / nf))).ln()
            })
            .sum();
        (mi.max(0.0), entropy(&ca), entropy(&cb))
    }

    #[test]
    fn sorting_counts_give_the_bits_of_the_ordered_maps() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
        for (n, ka, kb) in [(1, 1, 1), (50, 3, 7), (5000, 100, 10), (20_000, 3000, 1000)] {
            let a: Vec<u32> = (0..n).map(|_| rng.gen_range(0..ka)).collect();
            // b correlated with a, with large label values mixed in.
            let b: Vec<u32> = a
                .iter()
                .map(|&x| match rng.gen_range(0..4) {
                    0 => u32::MAX - rng.gen_range(0..kb),
                    1 => rng.gen_range(0..kb),
                    _ => x % kb,
                })
                .collect();
            let (m1, a1, b1) = information(&a, &b);
            let (m2, a2, b2) = information_by_maps(&a, &b);
            assert_eq!(
                (m1.to_bits(), a1.to_bits(), b1.to_bits()),
                (m2.to_bits(), a2.to_bits(), b2.to_bits()),
                "n {n}"
            );
        }
    }

    #[test]
    fn trivial_labelings_follow_scikit_learn() {
        assert_eq!(nmi(&[1, 1, 1], &[0, 0, 0], Normalization::Arithmetic), 1.0);
        assert_eq!(nmi(&[1, 1, 1], &[0, 1, 2], Normalization::Arithmetic), 0.0);
    }
}

//! Normalised mutual information between two labelings (clusterings) of the same samples.
//!
//! `NMI = I(U; V) / norm(H(U), H(V))` with the arithmetic mean (scikit-learn's default) or
//! the geometric mean (the normalisation of DeepCluster-era papers). Natural logarithms;
//! the ratio does not depend on the base.

use std::collections::BTreeMap;

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

/// `(I(A; B), H(A), H(B))` in nats. Ordered maps make the summation order, and so the
/// last bits of the result, the same in every process.
fn information(a: &[u32], b: &[u32]) -> (f64, f64, f64) {
    assert_eq!(a.len(), b.len(), "labelings of different lengths");
    let n = a.len();
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let mut ca: BTreeMap<u32, u64> = BTreeMap::new();
    let mut cb: BTreeMap<u32, u64> = BTreeMap::new();
    let mut joint: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *ca.entry(x).or_default() += 1;
        *cb.entry(y).or_default() += 1;
        *joint.entry((x, y)).or_default() += 1;
    }
    let nf = n as f64;
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
            let px = ca[&x] as f64 / nf;
            let py = cb[&y] as f64 / nf;
            pxy * (pxy / (px * py)).ln()
        })
        .sum();
    (mi.max(0.0), entropy(&ca), entropy(&cb))
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

    #[test]
    fn trivial_labelings_follow_scikit_learn() {
        assert_eq!(nmi(&[1, 1, 1], &[0, 0, 0], Normalization::Arithmetic), 1.0);
        assert_eq!(nmi(&[1, 1, 1], &[0, 1, 2], Normalization::Arithmetic), 0.0);
    }
}

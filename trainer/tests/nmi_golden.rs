//! NMI against scikit-learn's `normalized_mutual_info_score` (fixtures from
//! `fixtures/make_nmi.py`). Tolerance 1e-9: both compute in f64.

use uic_trainer::nmi::{nmi, nmi_both, Normalization};

#[test]
fn matches_scikit_learn() {
    let text = include_str!("fixtures/nmi.json");
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for (i, c) in cases.iter().enumerate() {
        let get = |k: &str| -> Vec<u32> {
            c[k].as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        };
        let (a, b) = (get("a"), get("b"));
        let (ar, ge) = nmi_both(&a, &b);
        let want_a = c["arithmetic"].as_f64().unwrap();
        let want_g = c["geometric"].as_f64().unwrap();
        assert!(
            (ar - want_a).abs() < 1e-9,
            "case {i}: arithmetic {ar} vs {want_a}"
        );
        assert!(
            (ge - want_g).abs() < 1e-9,
            "case {i}: geometric {ge} vs {want_g}"
        );
        assert_eq!(nmi(&a, &b, Normalization::Arithmetic), ar);
    }
}

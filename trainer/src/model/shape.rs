//! Feature-map sides through the layers, with libtorch's own rules, so that an input too
//! small for an architecture is refused with a message before any layer runs (libtorch would
//! stop inside the forward pass with "Output size is too small").

use super::{alexnet, resnet, Arch};

/// The output side of a convolution or max-pool window of side `k` with `stride` and
/// `pad` on an input of side `s` (pooling in ceil mode if `ceil`), or `None` where libtorch
/// refuses: a kernel larger than the padded input, or an output under one pixel. The
/// formula is ATen's `pooling_output_shape` (which convolutions share without ceil mode).
pub(crate) fn window_out(s: i64, k: i64, stride: i64, pad: i64, ceil: bool) -> Option<i64> {
    if s + 2 * pad < k && !ceil {
        return None;
    }
    let mut out =
        (s + 2 * pad - (k - 1) - 1 + if ceil { stride - 1 } else { 0 }).div_euclid(stride) + 1;
    // In ceil mode, a last window that would start in the padding is dropped.
    if ceil && (out - 1) * stride >= s + pad {
        out -= 1;
    }
    (out >= 1).then_some(out)
}

impl Arch {
    /// The least input side the architecture's layers accept, computed from their
    /// geometry.
    pub fn min_input_size(self) -> u32 {
        let fits = |s: i64| match self {
            Arch::Alexnet => alexnet::trunk_side(false, s).is_some(),
            Arch::AlexnetSmall => alexnet::trunk_side(true, s).is_some(),
            Arch::Resnet50 => resnet::trunk_side(s).is_some(),
        };
        (1..=4096).find(|&s| fits(s)).unwrap_or(4096) as u32
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::*;
    use crate::model::{Model, ModelConfig};

    #[test]
    fn each_architecture_runs_at_its_least_size_and_is_refused_below() {
        for arch in [Arch::AlexnetSmall, Arch::Alexnet, Arch::Resnet50] {
            let least = arch.min_input_size();
            let cfg = |input_size| ModelConfig {
                arch,
                width: 0.125,
                k: 3,
                input_size,
                ..Default::default()
            };
            // The least size trains: a forward pass in training mode goes through.
            let m = Model::new(&cfg(least), Device::Cpu).unwrap();
            let s = i64::from(least);
            let x = Tensor::zeros([2, 3, s, s], (Kind::Uint8, Device::Cpu));
            assert_eq!(m.forward(&x, true).size(), vec![2, 3], "{arch} at {least}");
            // One less is refused before any layer is built.
            if least > 1 {
                let e = Model::new(&cfg(least - 1), Device::Cpu).unwrap_err();
                assert!(e.to_string().contains(&format!("below {least} px")), "{e}");
            }
        }
        assert_eq!(Arch::AlexnetSmall.min_input_size(), 15);
        assert_eq!(Arch::Alexnet.min_input_size(), 63);
    }

    #[test]
    fn windows_follow_aten() {
        // Convolutions (floor mode).
        assert_eq!(window_out(224, 11, 4, 2, false), Some(55));
        assert_eq!(window_out(4, 5, 1, 0, false), None);
        // Max-pools: ceil mode rounds up but drops a window starting in the padding.
        assert_eq!(window_out(13, 3, 2, 0, false), Some(6));
        assert_eq!(window_out(16, 3, 2, 0, true), Some(8));
        assert_eq!(window_out(2, 3, 2, 0, true), Some(1));
        assert_eq!(window_out(1, 3, 2, 0, true), None);
        assert_eq!(window_out(2, 3, 2, 0, false), None);
    }
}

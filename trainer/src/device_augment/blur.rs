//! Gaussian blur of `m x 3 x H x W` f32 tensors holding integers, one kernel per sample.

use tch::{Kind, Tensor};

use crate::error::Result;

/// Blurs each sample of `x` with its own normalised 1-D kernel (`taps`, `m x k`, odd `k`):
/// reflect padding, the horizontal then the vertical pass as depthwise f32 convolutions
/// (TF32 off: it keeps only 10 mantissa bits), rounded half to even as torchvision's
/// `gaussian_blur` rounds its `uint8` result. torchvision convolves once with the outer
/// product of the kernels; the two passes differ from it only by float rounding.
pub(super) fn gaussian_blur(x: &Tensor, taps: &Tensor) -> Result<Tensor> {
    let (m, k) = (taps.size()[0], taps.size()[1]);
    let (h, w) = (x.size()[2], x.size()[3]);
    let half = k / 2;
    let planes = m * 3;
    let padded = x
        .f_reflection_pad2d([half, half, half, half].as_slice())?
        .f_view([1, planes, h + 2 * half, w + 2 * half])?;
    // Each sample's kernel for each of its three channels.
    let per_plane = taps
        .f_to_kind(Kind::Float)?
        .f_unsqueeze(1)?
        .f_expand([m, 3, k], false)?
        .f_reshape([planes, 1, 1, k])?;
    let conv = |input: &Tensor, weight: &Tensor| -> Result<Tensor> {
        Ok(input.f_internal_convolution(
            weight,
            None::<Tensor>,
            [1i64, 1].as_slice(),
            [0i64, 0].as_slice(),
            [1i64, 1].as_slice(),
            false,
            [0i64, 0].as_slice(),
            planes,
            false,
            false,
            true,
            false,
        )?)
    };
    let rows = conv(&padded, &per_plane)?;
    let cols = conv(&rows, &per_plane.f_view([planes, 1, k, 1])?)?;
    Ok(cols.f_view([m, 3, h, w])?.f_round()?.f_clamp(0.0, 255.0)?)
}

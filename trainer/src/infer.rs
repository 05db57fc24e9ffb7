//! Inference with a model on a record file: probe features at a chosen [`Layer`] (centre
//! crop or ten crops) and the model's own assignment ([`predict`]). Training (k-means
//! labels, fine-tuning labels) and evaluation both read images through here.
//!
//! Every pass runs in eval mode (BatchNorm running statistics) on the centre crop: resize
//! to `size * 256 / 224`, crop `size`. Ten crops are the four corners and the centre of
//! that resized square, and their mirror images.

use std::sync::Arc;

use tch::{Device, Kind, Tensor};
use uic_loader::{Loader, RecordFile};

use crate::config::TrainConfig;
use crate::data::eval_loader_config;
use crate::error::{Error, Result};
use crate::model::Model;

/// A layer whose output a probe reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    /// After conv layer 1..=5 (BN, ReLU), max-pooled to about 9,000 values.
    Conv(usize),
    /// The backbone's output (the classifier's input).
    Final,
    /// The model's input: normalised pixels (Sobel's two channels where the model has
    /// Sobel), average-pooled to about 9,000 values where larger. The same for a trained and
    /// an untrained backbone: the baseline both should beat.
    Pixels,
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Layer::Conv(l) => write!(f, "conv{l}"),
            Layer::Final => f.write_str("final"),
            Layer::Pixels => f.write_str("pixels"),
        }
    }
}

/// As its name (`conv3`, `final`, `pixels`), so that it can key a JSON object.
impl serde::Serialize for Layer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::str::FromStr for Layer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let unknown = || format!("unknown layer {s:?} (expected conv1..conv5, final or pixels)");
        match s {
            "final" => Ok(Layer::Final),
            "pixels" => Ok(Layer::Pixels),
            c if c.starts_with("conv") => match c[4..].parse::<usize>() {
                Ok(l) if (1..=5).contains(&l) => Ok(Layer::Conv(l)),
                _ => Err(unknown()),
            },
            _ => Err(unknown()),
        }
    }
}

/// Target size of the paper's pooled conv features (DeepCluster: 9,600 / 9,216 values).
const POOLED_VALUES: f64 = 9216.0;

/// Features of `indices` of `file` at each of `layers`: one `[n, d]` tensor per layer, or
/// `[n, 10, d]` with `ten_crop`, on the CPU. They are all in memory at once, `n * d * 4`
/// bytes per layer (times ten with `ten_crop`): [`extract_each`] streams them instead.
///
/// # Errors
/// A loader failure, or conv layers of a ResNet.
pub fn extract(
    model: &Model,
    cfg: &TrainConfig,
    file: &Arc<RecordFile>,
    indices: &[usize],
    layers: &[Layer],
    ten_crop: bool,
) -> Result<Vec<Tensor>> {
    // Allocated once the first batch gives the shapes, and filled batch by batch (no
    // second copy from concatenating the batches).
    let mut out: Vec<Tensor> = Vec::new();
    let n = indices.len() as i64;
    extract_each(
        model,
        cfg,
        file,
        indices,
        layers,
        ten_crop,
        |range, feats| {
            if out.is_empty() {
                out = feats
                    .iter()
                    .map(|f| {
                        let mut shape = f.size();
                        shape[0] = n;
                        Tensor::empty(shape, (f.kind(), Device::Cpu))
                    })
                    .collect();
            }
            for (o, f) in out.iter_mut().zip(feats) {
                o.narrow(0, range.start as i64, range.len() as i64)
                    .copy_(&f.to_device(Device::Cpu));
            }
        },
    )?;
    if out.is_empty() {
        // No images: empty features of the right width.
        let dims = feature_dims(model, cfg, layers)?;
        out = dims
            .iter()
            .map(|&d| {
                let shape = if ten_crop { vec![0, 10, d] } else { vec![0, d] };
                Tensor::empty(shape, (tch::Kind::Float, Device::Cpu))
            })
            .collect();
    }
    Ok(out)
}

/// The width of the features of each of `layers` (one image's row of [`extract`]).
///
/// # Errors
/// Conv layers of a ResNet.
pub fn feature_dims(model: &Model, cfg: &TrainConfig, layers: &[Layer]) -> Result<Vec<i64>> {
    let s = i64::from(cfg.input_size);
    let x = Tensor::zeros([1, 3, s, s], (Kind::Uint8, Device::Cpu));
    let feats = tch::no_grad(|| layers_features(model, &x, layers))?;
    Ok(feats.iter().map(|f| f.size()[1]).collect())
}

/// Like [`extract`], but hands each batch's features to `f` with the batch's range of
/// positions in `indices`, so that nothing is kept (ten-crop features of conv layers are
/// large). Batches are of `cfg.batch_size` images.
///
/// # Errors
/// A loader failure, or conv layers of a ResNet.
pub fn extract_each(
    model: &Model,
    cfg: &TrainConfig,
    file: &Arc<RecordFile>,
    indices: &[usize],
    layers: &[Layer],
    ten_crop: bool,
    f: impl FnMut(std::ops::Range<usize>, &[Tensor]),
) -> Result<()> {
    extract_batches(
        model,
        cfg,
        file,
        indices,
        layers,
        ten_crop,
        cfg.batch_size,
        f,
    )
}

/// [`extract_each`] in batches of `batch_size` images, in the order of `indices`: the
/// batch starting at position `p` holds `indices[p..p + batch_size]`, so that a caller can
/// choose which images share a batch (a probe's minibatches).
///
/// # Errors
/// A loader failure, or conv layers of a ResNet.
#[allow(clippy::too_many_arguments)]
pub fn extract_batches(
    model: &Model,
    cfg: &TrainConfig,
    file: &Arc<RecordFile>,
    indices: &[usize],
    layers: &[Layer],
    ten_crop: bool,
    batch_size: usize,
    mut f: impl FnMut(std::ops::Range<usize>, &[Tensor]),
) -> Result<()> {
    let s = i64::from(cfg.input_size);
    let mut lc = eval_loader_config(cfg);
    lc.batch_size = batch_size;
    let side = match (ten_crop, lc.crop) {
        // The resized square whose corners and centre are cropped.
        (true, uic_loader::CropMode::Center { resize }) => {
            lc.size = (resize, resize);
            i64::from(resize)
        }
        _ => s,
    };
    let loader = Loader::new(file.clone(), lc)?;
    let mut got = 0usize;
    for batch in loader.epoch(0, indices.to_vec(), 0)? {
        let batch = batch?;
        let n = batch.len() as i64;
        let x = Tensor::from_slice(batch.pixels(0)).view([n, 3, side, side]);
        // Only the backbone runs without gradients: `f` may train on the features.
        let feats = tch::no_grad(|| -> Result<Vec<Tensor>> {
            let views = if ten_crop { ten_crops(&x, s) } else { x };
            let feats = layers_features(model, &views, layers)?;
            Ok(match ten_crop {
                true => feats.iter().map(|t| t.view([n, 10, -1])).collect(),
                false => feats,
            })
        })?;
        f(got..got + batch.len(), &feats);
        got += batch.len();
    }
    if got != indices.len() {
        return Err(Error::Internal(format!(
            "the loader stopped after {got} of {} images",
            indices.len()
        )));
    }
    Ok(())
}

/// The ten crops of side `s` of each square image in `x` (`[n, 3, r, r]`), as `[n * 10, 3,
/// s, s]` with the ten crops of an image consecutive.
fn ten_crops(x: &Tensor, s: i64) -> Tensor {
    let r = x.size()[2];
    let (far, mid) = (r - s, (r - s) / 2);
    let offsets = [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)];
    let crops: Vec<Tensor> = offsets
        .iter()
        .map(|&(y, xo)| x.narrow(2, y, s).narrow(3, xo, s))
        .collect();
    let mirrored: Vec<Tensor> = crops.iter().map(|c| c.flip([3])).collect();
    let all: Vec<Tensor> = crops.into_iter().chain(mirrored).collect();
    Tensor::stack(&all, 1).view([-1, 3, s, s])
}

/// The probe inputs of `pixels` (eval mode) at each of `layers`, `[n, d]` each: conv
/// activations max-pooled to about [`POOLED_VALUES`], or the final features. The input
/// layer and the conv trunk run once for all of them.
pub(crate) fn layers_features(
    model: &Model,
    pixels: &Tensor,
    layers: &[Layer],
) -> Result<Vec<Tensor>> {
    let x = model.input(pixels);
    let deepest = layers
        .iter()
        .filter_map(|l| match l {
            Layer::Conv(c) => Some(*c),
            Layer::Final | Layer::Pixels => None,
        })
        .max();
    let convs = match deepest {
        Some(upto) => model.conv_activations(&x, upto)?,
        None => Vec::new(),
    };
    layers
        .iter()
        .map(|&layer| match layer {
            Layer::Final => Ok(model.features(&x, false)),
            Layer::Conv(l) => {
                let a = &convs[l - 1];
                Ok(a.adaptive_max_pool2d([pooled_side(a), pooled_side(a)])
                    .0
                    .flatten(1, -1))
            }
            Layer::Pixels => Ok(x
                .adaptive_avg_pool2d([pooled_side(&x), pooled_side(&x)])
                .flatten(1, -1)),
        })
        .collect()
}

/// The side to which a probe pools `[n, c, h, w]` activations: about [`POOLED_VALUES`]
/// values in all, never more than `h` (square maps).
fn pooled_side(a: &Tensor) -> i64 {
    let (c, h) = (a.size()[1], a.size()[2]);
    ((POOLED_VALUES / c as f64).sqrt().round() as i64).clamp(1, h)
}

/// The argmax of `model` on the centre crop of `indices`.
///
/// # Errors
/// A loader failure.
pub fn assign(
    model: &Model,
    cfg: &TrainConfig,
    file: &Arc<RecordFile>,
    indices: &[usize],
) -> Result<Vec<u32>> {
    Ok(predict(model, cfg, file, indices)?.0)
}

/// The argmax of `model` on the centre crop of `indices`, and the entropy (nats) of each
/// softmax output: low entropy means a confident assignment.
///
/// # Errors
/// A loader failure.
pub fn predict(
    model: &Model,
    cfg: &TrainConfig,
    file: &Arc<RecordFile>,
    indices: &[usize],
) -> Result<(Vec<u32>, Vec<f32>)> {
    let s = i64::from(cfg.input_size);
    let loader = Loader::new(file.clone(), eval_loader_config(cfg))?;
    let mut out = Vec::with_capacity(indices.len());
    let mut ent = Vec::with_capacity(indices.len());
    tch::no_grad(|| -> Result<()> {
        for batch in loader.epoch(0, indices.to_vec(), 0)? {
            let batch = batch?;
            let x = Tensor::from_slice(batch.pixels(0)).view([batch.len() as i64, 3, s, s]);
            let logits = model.forward(&x, false);
            let logp = logits.log_softmax(1, Kind::Float);
            let h = -(logp.exp() * &logp).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
            let p: Vec<i64> = Vec::try_from(logits.argmax(1, false))?;
            out.extend(p.into_iter().map(|p| p as u32));
            ent.extend(Vec::<f32>::try_from(h)?);
        }
        Ok(())
    })?;
    if out.len() != indices.len() {
        return Err(Error::Internal(format!(
            "the loader stopped after {} of {} images",
            out.len(),
            indices.len()
        )));
    }
    Ok((out, ent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_crops_are_corners_centre_and_mirrors() {
        let x = Tensor::arange(16, (Kind::Float, Device::Cpu))
            .view([1, 1, 4, 4])
            .expand([1, 3, 4, 4], false);
        let c = ten_crops(&x, 2);
        assert_eq!(c.size(), vec![10, 3, 2, 2]);
        let v = |i: i64| -> Vec<f32> { Vec::try_from(c.get(i).get(0).flatten(0, -1)).unwrap() };
        assert_eq!(v(0), vec![0.0, 1.0, 4.0, 5.0]);
        assert_eq!(v(3), vec![10.0, 11.0, 14.0, 15.0]);
        assert_eq!(v(4), vec![5.0, 6.0, 9.0, 10.0]);
        assert_eq!(v(5), vec![1.0, 0.0, 5.0, 4.0]);
    }

    #[test]
    fn layers_parse() {
        assert_eq!("conv3".parse::<Layer>().unwrap(), Layer::Conv(3));
        assert_eq!("final".parse::<Layer>().unwrap(), Layer::Final);
        assert_eq!("pixels".parse::<Layer>().unwrap(), Layer::Pixels);
        for l in [Layer::Conv(2), Layer::Final, Layer::Pixels] {
            assert_eq!(l.to_string().parse::<Layer>().unwrap(), l);
        }
        assert!("conv6".parse::<Layer>().is_err());
    }

    #[test]
    fn pixel_features_are_the_normalised_input_pooled_when_large() {
        use crate::model::{Arch, ModelConfig};
        for (sobel, size) in [(false, 32), (true, 32), (false, 96)] {
            let cfg = ModelConfig {
                arch: Arch::AlexnetSmall,
                width: 0.25,
                k: 5,
                input_size: size,
                sobel,
                ..Default::default()
            };
            let m = Model::new(&cfg, Device::Cpu).unwrap();
            let s = i64::from(size);
            let c = if sobel { 2 } else { 3 };
            if size == 32 {
                // 32 x 32 x 3 is under the pooled size: every input value, unpooled.
                let px = Tensor::randint(256, [2, 3, s, s], (Kind::Uint8, Device::Cpu));
                let f = layers_features(&m, &px, &[Layer::Final, Layer::Pixels]).unwrap();
                assert_eq!(f[1].size(), vec![2, c * 32 * 32]);
                assert!(f[1].equal(&m.input(&px).flatten(1, -1).contiguous()));
                assert_eq!(f[0].size()[0], 2);
            } else {
                // 96 x 96 x 3 averages to a 55 x 55 grid, which keeps a flat colour.
                let rgb = Tensor::from_slice(&[200u8, 30, 90]).view([1, 3, 1, 1]);
                let px = rgb.expand([2, 3, s, s], false).contiguous();
                let f = layers_features(&m, &px, &[Layer::Pixels]).unwrap();
                assert_eq!(f[0].size(), vec![2, 3 * 55 * 55]);
                let flat =
                    m.input(&rgb)
                        .flatten(0, -1)
                        .repeat_interleave_self_int(55 * 55, 0, None);
                for i in 0..2 {
                    assert!(f[0].get(i).allclose(&flat, 1e-6, 1e-6, false));
                }
            }
        }
    }
}

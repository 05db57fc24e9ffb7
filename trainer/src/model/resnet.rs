//! ResNet-50 (torchvision's layout and parameter names, PyTorch's initialisation), used as a
//! backbone up to the global average pool (2048-d).

use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::alexnet::{bn2d, conv_init};
use super::shape::window_out;

/// torchvision's initialisation: `kaiming_normal_(mode="fan_out", nonlinearity="relu")`.
fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    let init = nn::Init::Kaiming {
        dist: nn::init::NormalOrUniform::Normal,
        fan: nn::init::FanInOut::FanOut,
        non_linearity: nn::init::NonLinearity::ReLU,
    };
    conv_init(p, c_in, c_out, k, stride, padding, init)
}

#[derive(Debug)]
struct Bottleneck {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    conv3: nn::Conv2D,
    bn3: nn::BatchNorm,
    down: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Bottleneck {
    fn new(p: nn::Path, c_in: i64, planes: i64, stride: i64) -> Self {
        let out = planes * 4;
        let down = (stride != 1 || c_in != out).then(|| {
            (
                conv(&p / "downsample" / "0", c_in, out, 1, stride, 0),
                bn2d(&p / "downsample" / "1", out),
            )
        });
        Bottleneck {
            conv1: conv(&p / "conv1", c_in, planes, 1, 1, 0),
            bn1: bn2d(&p / "bn1", planes),
            conv2: conv(&p / "conv2", planes, planes, 3, stride, 1),
            bn2: bn2d(&p / "bn2", planes),
            conv3: conv(&p / "conv3", planes, out, 1, 1, 0),
            bn3: bn2d(&p / "bn3", out),
            down,
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let y = x
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .apply(&self.conv2)
            .apply_t(&self.bn2, train)
            .relu()
            .apply(&self.conv3)
            .apply_t(&self.bn3, train);
        let shortcut = match &self.down {
            Some((c, b)) => x.apply(c).apply_t(b, train),
            None => x.shallow_clone(),
        };
        (y + shortcut).relu()
    }
}

/// The side of layer4's output for input side `s`, or `None` where some layer gets less
/// input than it needs.
pub(crate) fn trunk_side(s: i64) -> Option<i64> {
    let mut x = window_out(window_out(s, 7, 2, 3, false)?, 3, 2, 1, false)?;
    // The first block of layer2..layer4 halves the side (3x3 conv, padding 1, and its 1x1
    // shortcut); every other conv keeps it.
    for _ in 0..3 {
        x = window_out(x, 3, 2, 1, false)?.min(window_out(x, 1, 2, 0, false)?);
    }
    Some(x)
}

/// ResNet-50 without its classifier: `conv1`, `bn1`, `layer1`..`layer4`, average pool.
#[derive(Debug)]
pub struct ResNet50 {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    layers: Vec<Vec<Bottleneck>>,
}

impl ResNet50 {
    /// Builds the layers under `p` for `in_channels` inputs (3 for RGB, 2 after Sobel).
    pub fn new(p: &nn::Path, in_channels: i64) -> Self {
        let mut c_in = 64;
        let layers = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]
            .iter()
            .enumerate()
            .map(|(li, &(planes, blocks, stride))| {
                (0..blocks)
                    .map(|b| {
                        let blk = Bottleneck::new(
                            p / format!("layer{}", li + 1) / b.to_string(),
                            c_in,
                            planes,
                            if b == 0 { stride } else { 1 },
                        );
                        c_in = planes * 4;
                        blk
                    })
                    .collect()
            })
            .collect();
        ResNet50 {
            conv1: conv(p / "conv1", in_channels, 64, 7, 2, 3),
            bn1: bn2d(p / "bn1", 64),
            layers,
        }
    }

    /// Width of the features.
    pub fn feature_dim(&self) -> i64 {
        2048
    }
}

impl ModuleT for ResNet50 {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for layer in &self.layers {
            for b in layer {
                x = b.forward(&x, train);
            }
        }
        x.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn has_resnet50s_parameter_count_and_feature_width() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResNet50::new(&vs.root(), 3);
        let params: i64 = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
        // torchvision's resnet50 has 25,557,032 parameters; its fc layer has 2,049,000.
        assert_eq!(params, 25_557_032 - 2_049_000);
        let x = Tensor::zeros([1, 3, 64, 64], (Kind::Float, Device::Cpu));
        assert_eq!(net.forward_t(&x, false).size(), vec![1, 2048]);
    }
}

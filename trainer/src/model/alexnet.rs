//! AlexNet with BatchNorm in place of LRN (the paper's and DeepCluster's backbone), and the
//! width/resolution-scaled `alexnet-small` for small images on the CPU.

use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::shape::window_out;

/// Settings of an [`AlexNet`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlexNetConfig {
    /// Channel multiplier (1.0 for the paper's widths).
    pub width: f64,
    /// Input channels: 2 after the Sobel layer, 3 for RGB.
    pub in_channels: i64,
    /// The small variant (5x5 stride-2 conv1, ceil-mode pools, global average pool, no FC).
    pub small: bool,
    /// Input side in pixels (sizes the FC layers of the full variant).
    pub input_size: i64,
    /// Dropout before fc6 and fc7 (full variant).
    pub dropout: f64,
}

impl Default for AlexNetConfig {
    fn default() -> Self {
        AlexNetConfig {
            width: 1.0,
            in_channels: 2,
            small: false,
            input_size: 224,
            dropout: 0.5,
        }
    }
}

#[derive(Debug)]
struct ConvBlock {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    pool: bool,
}

/// The backbone up to the features the classifier head reads: fc7 (4096-d at width 1) for
/// the full variant, the global average pool of conv5 for the small one.
#[derive(Debug)]
pub struct AlexNet {
    blocks: Vec<ConvBlock>,
    fc: Option<(nn::Linear, nn::Linear)>,
    cfg: AlexNetConfig,
    feature_dim: i64,
}

fn scaled(c: i64, width: f64) -> i64 {
    ((c as f64 * width).round() as i64).max(1)
}

/// A bias-free convolution (every conv here is followed by BatchNorm) initialised by `init`.
pub(crate) fn conv_init(
    p: nn::Path,
    c_in: i64,
    c_out: i64,
    k: i64,
    stride: i64,
    padding: i64,
    ws_init: nn::Init,
) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding,
        bias: false,
        ws_init,
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, k, cfg)
}

/// DeepCluster's initialisation: conv weights from `N(0, sqrt(2 / (k*k*out)))`.
fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    let stdev = (2.0 / (k * k * c_out) as f64).sqrt();
    conv_init(
        p,
        c_in,
        c_out,
        k,
        stride,
        padding,
        nn::Init::Randn { mean: 0.0, stdev },
    )
}

/// BatchNorm with PyTorch's initialisation (weight 1, bias 0).
pub(crate) fn bn2d(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(
        p,
        c,
        nn::BatchNormConfig {
            ws_init: nn::Init::Const(1.0),
            ..Default::default()
        },
    )
}

/// A linear layer with DeepCluster's initialisation: `N(0, 0.01)` weights, zero bias.
pub(crate) fn linear(p: nn::Path, i: i64, o: i64) -> nn::Linear {
    nn::linear(
        p,
        i,
        o,
        nn::LinearConfig {
            ws_init: nn::Init::Randn {
                mean: 0.0,
                stdev: 0.01,
            },
            bs_init: Some(nn::Init::Const(0.0)),
            bias: true,
        },
    )
}

/// Output side of a 3/2 max-pool (0 where libtorch would refuse the input).
fn pooled(s: i64, ceil: bool) -> i64 {
    window_out(s, 3, 2, 0, ceil).unwrap_or(0)
}

/// The side of conv5's pooled output for input side `s`, or `None` where some layer gets
/// less input than it needs (libtorch: "Output size is too small").
pub(crate) fn trunk_side(small: bool, s: i64) -> Option<i64> {
    let (k1, s1, p1) = if small { (5, 2, 2) } else { (11, 4, 2) };
    let pool = |x| window_out(x, 3, 2, 0, small);
    let mut x = pool(window_out(s, k1, s1, p1, false)?)?;
    x = pool(window_out(x, 5, 1, 2, false)?)?;
    for _ in 0..3 {
        x = window_out(x, 3, 1, 1, false)?;
    }
    pool(x)
}

impl AlexNet {
    /// Builds the layers under `p` (`conv1`..`conv5`, `bn1`..`bn5`, `fc6`, `fc7`).
    pub fn new(p: &nn::Path, cfg: AlexNetConfig) -> Self {
        let w = cfg.width;
        let (chans, k1, s1, p1) = if cfg.small {
            ([64, 192, 384, 256, 256], 5, 2, 2)
        } else {
            ([96, 256, 384, 384, 256], 11, 4, 2)
        };
        let c: Vec<i64> = chans.iter().map(|&c| scaled(c, w)).collect();
        let spec = [
            (cfg.in_channels, c[0], k1, s1, p1, true),
            (c[0], c[1], 5, 1, 2, true),
            (c[1], c[2], 3, 1, 1, false),
            (c[2], c[3], 3, 1, 1, false),
            (c[3], c[4], 3, 1, 1, true),
        ];
        let blocks = spec
            .iter()
            .enumerate()
            .map(|(i, &(ci, co, k, s, pad, pool))| ConvBlock {
                conv: conv(p / format!("conv{}", i + 1), ci, co, k, s, pad),
                bn: bn2d(p / format!("bn{}", i + 1), co),
                pool,
            })
            .collect();
        let (fc, feature_dim) = if cfg.small {
            (None, c[4])
        } else {
            let mut side = (cfg.input_size + 2 * p1 - k1).div_euclid(s1) + 1;
            side = pooled(pooled(side, false), false);
            side = pooled(side, false);
            let hidden = scaled(4096, w);
            let fc6 = linear(p / "fc6", c[4] * side * side, hidden);
            let fc7 = linear(p / "fc7", hidden, hidden);
            (Some((fc6, fc7)), hidden)
        };
        AlexNet {
            blocks,
            fc,
            cfg,
            feature_dim,
        }
    }

    /// Width of the features [`forward_t`](ModuleT::forward_t) returns.
    pub fn feature_dim(&self) -> i64 {
        self.feature_dim
    }

    /// The activations after conv layers 1..=`upto` (eval mode; after BN and ReLU, before
    /// each pool), from one pass: the inputs of the paper's linear probes.
    ///
    /// # Panics
    /// If `upto` is not in 1..=5.
    pub fn conv_activations(&self, xs: &Tensor, upto: usize) -> Vec<Tensor> {
        assert!((1..=5).contains(&upto), "conv layer {upto} not in 1..=5");
        let mut out = Vec::with_capacity(upto);
        let mut x = xs.shallow_clone();
        for b in &self.blocks[..upto] {
            x = x.apply(&b.conv).apply_t(&b.bn, false).relu();
            out.push(x.shallow_clone());
            if b.pool {
                x = x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], self.cfg.small);
            }
        }
        out
    }
}

impl ModuleT for AlexNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.shallow_clone();
        for b in &self.blocks {
            x = x.apply(&b.conv).apply_t(&b.bn, train).relu();
            if b.pool {
                x = x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], self.cfg.small);
            }
        }
        match &self.fc {
            None => x.adaptive_avg_pool2d([1, 1]).flatten(1, -1),
            Some((fc6, fc7)) => x
                .flatten(1, -1)
                .dropout(self.cfg.dropout, train)
                .apply(fc6)
                .relu()
                .dropout(self.cfg.dropout, train)
                .apply(fc7)
                .relu(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn pooled_sizes_match_pytorch() {
        // nn.MaxPool2d(3, 2, ceil_mode=True) on 16, 8, 4 gives 8, 4, 2; floor mode on 55 gives 27.
        assert_eq!(pooled(16, true), 8);
        assert_eq!(pooled(8, true), 4);
        assert_eq!(pooled(4, true), 2);
        assert_eq!(pooled(55, false), 27);
        assert_eq!(pooled(13, false), 6);
    }

    #[test]
    fn shapes_of_both_variants() {
        let vs = nn::VarStore::new(Device::Cpu);
        let small = AlexNet::new(
            &(vs.root() / "s"),
            AlexNetConfig {
                width: 0.5,
                in_channels: 3,
                small: true,
                input_size: 32,
                dropout: 0.0,
            },
        );
        let x = Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        assert_eq!(small.forward_t(&x, false).size(), vec![2, 128]);
        let a = small.conv_activations(&x, 5);
        assert_eq!(a.len(), 5);
        assert_eq!(a[0].size(), vec![2, 32, 16, 16]);
        assert_eq!(a[4].size(), vec![2, 128, 4, 4]);
        assert_eq!(small.conv_activations(&x, 2).len(), 2);

        let full = AlexNet::new(
            &(vs.root() / "f"),
            AlexNetConfig {
                width: 0.25,
                input_size: 224,
                ..Default::default()
            },
        );
        let x = Tensor::zeros([1, 2, 224, 224], (Kind::Float, Device::Cpu));
        assert_eq!(full.forward_t(&x, false).size(), vec![1, 1024]);
        assert_eq!(full.conv_activations(&x, 5)[4].size(), vec![1, 64, 13, 13]);
    }
}

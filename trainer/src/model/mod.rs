//! The classifier `f = head(backbone(input layer(x)))` that UIC trains.
//!
//! The input layer turns a `u8` NCHW batch (as the loader produces it) into the network's
//! input on the model's device: scale to `[0, 1]`, normalise with ImageNet's mean and
//! standard deviation, and, with Sobel on, take DeepCluster's fixed (non-trainable) Sobel
//! filters of the channel mean. Nothing of that runs on the loader threads.

mod alexnet;
mod resnet;
mod shape;

use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

pub use alexnet::{AlexNet, AlexNetConfig};
pub use resnet::ResNet50;

use crate::error::{Error, Result};
use uic_loader::seeds::TorchStream;

/// The backbone architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// AlexNet with BatchNorm (conv1-5, fc6-7), the paper's main model.
    Alexnet,
    /// AlexNet-BN scaled for small images: 5x5 stride-2 conv1, ceil-mode pools, global
    /// average pool instead of fc6-7.
    AlexnetSmall,
    /// ResNet-50.
    Resnet50,
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Arch::Alexnet => "alexnet",
            Arch::AlexnetSmall => "alexnet-small",
            Arch::Resnet50 => "resnet50",
        })
    }
}

/// Settings of a [`Model`].
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Backbone.
    pub arch: Arch,
    /// Channel multiplier of the AlexNets.
    pub width: f64,
    /// Classes of the head.
    pub k: usize,
    /// The fixed Sobel input layer.
    pub sobel: bool,
    /// Input side in pixels.
    pub input_size: u32,
    /// Dropout in AlexNet's FC layers.
    pub dropout: f64,
    /// A 2-layer MLP (linear, BN, ReLU) before the classifier, as in the official code.
    pub mlp_head: bool,
    /// Run the training forward pass under bfloat16 autocast.
    pub amp: bool,
    /// Activations in channels-last (NHWC) memory layout from the input layer on.
    pub channels_last: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            arch: Arch::Alexnet,
            width: 1.0,
            k: 3000,
            sobel: true,
            input_size: 224,
            dropout: 0.5,
            mlp_head: false,
            amp: false,
            channels_last: true,
        }
    }
}

#[derive(Debug)]
enum Backbone {
    AlexNet(AlexNet),
    ResNet(ResNet50),
}

/// The network, its parameters and its fixed input layer.
#[derive(Debug)]
pub struct Model {
    vs: nn::VarStore,
    backbone: Backbone,
    mlp: Option<(nn::Linear, nn::BatchNorm)>,
    top: nn::Linear,
    scale: Tensor,
    shift: Tensor,
    sobel: Option<Tensor>,
    cfg: ModelConfig,
}

const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const STD: [f64; 3] = [0.229, 0.224, 0.225];

impl Model {
    /// Builds a freshly initialised model on `device` (seed libtorch first for a
    /// reproducible initialisation).
    ///
    /// # Errors
    /// Settings out of range.
    pub fn new(cfg: &ModelConfig, device: Device) -> Result<Self> {
        if cfg.k < 2 {
            return Err(Error::Config(format!(
                "k = {} (need at least 2 classes)",
                cfg.k
            )));
        }
        if !(cfg.width > 0.0 && cfg.width <= 8.0) {
            return Err(Error::Config(format!("width {} not in (0, 8]", cfg.width)));
        }
        let min_side = cfg.arch.min_input_size();
        if cfg.input_size < min_side {
            return Err(Error::Config(format!(
                "input size {} is below {min_side} px, the least {} can take",
                cfg.input_size, cfg.arch
            )));
        }
        if cfg.amp {
            crate::amp::use_bfloat16();
        }
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let in_channels = if cfg.sobel { 2 } else { 3 };
        let backbone = match cfg.arch {
            Arch::Alexnet | Arch::AlexnetSmall => Backbone::AlexNet(AlexNet::new(
                &(&root / "features"),
                AlexNetConfig {
                    width: cfg.width,
                    in_channels,
                    small: cfg.arch == Arch::AlexnetSmall,
                    input_size: i64::from(cfg.input_size),
                    dropout: cfg.dropout,
                },
            )),
            Arch::Resnet50 => Backbone::ResNet(ResNet50::new(&(&root / "features"), in_channels)),
        };
        let dim = match &backbone {
            Backbone::AlexNet(a) => a.feature_dim(),
            Backbone::ResNet(r) => r.feature_dim(),
        };
        let mlp = cfg.mlp_head.then(|| {
            let l = alexnet::linear(&root / "head" / "fc", dim, dim);
            let bn = nn::batch_norm1d(
                &root / "head" / "bn",
                dim,
                nn::BatchNormConfig {
                    ws_init: nn::Init::Const(1.0),
                    ..Default::default()
                },
            );
            (l, bn)
        });
        let top = alexnet::linear(&root / "top_layer", dim, cfg.k as i64);
        let scale: Vec<f32> = STD.iter().map(|s| (1.0 / (255.0 * s)) as f32).collect();
        let shift: Vec<f32> = MEAN.iter().zip(STD).map(|(m, s)| (-m / s) as f32).collect();
        let sobel = cfg.sobel.then(|| sobel_weight().to_device(device));
        Ok(Model {
            vs,
            backbone,
            mlp,
            top,
            scale: Tensor::from_slice(&scale)
                .view([1, 3, 1, 1])
                .to_device(device),
            shift: Tensor::from_slice(&shift)
                .view([1, 3, 1, 1])
                .to_device(device),
            sobel,
            cfg: cfg.clone(),
        })
    }

    /// A freshly initialised model, exactly as a run with `seed` starts: libtorch seeded
    /// from `seed`, the weights drawn on the CPU whatever the device (so they do not depend
    /// on it), then moved to `device`. A training run and the untrained baseline of its
    /// evaluation both start here.
    ///
    /// # Errors
    /// Settings out of range.
    pub fn init(cfg: &ModelConfig, seed: u64, device: Device) -> Result<Self> {
        tch::manual_seed(TorchStream::InitWeights.seed(seed));
        let mut m = Model::new(cfg, Device::Cpu)?;
        if device != Device::Cpu {
            m.to_device(device);
            // Fixed input shapes: let cuDNN time its algorithms once and keep the fastest (as
            // `torch.backends.cudnn.benchmark = True` in PyTorch's ImageNet example).
            tch::Cuda::cudnn_set_benchmark(true);
        }
        Ok(m)
    }

    /// The settings it was built with.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Whether training runs under bfloat16 autocast.
    pub fn amp(&self) -> bool {
        self.cfg.amp
    }

    /// The parameters and buffers.
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// The parameters and buffers, mutably (to load weights).
    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    /// The device the parameters live on.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Every variable (parameters and batch-norm buffers), in name order: the state that
    /// data-parallel ranks share.
    pub fn state_tensors(&self) -> Vec<Tensor> {
        let mut v: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.into_iter().map(|(_, t)| t).collect()
    }

    /// Trainable parameters by name, for the optimiser.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The input layer: a `u8` NCHW batch (any device) to the backbone's float input on the
    /// model's device (normalised, then Sobel if enabled). With `channels_last`, the batch
    /// is laid out NHWC first (still indexed N, C, H, W); every layer after it keeps that
    /// layout, which oneDNN's convolutions, pools and batch norms run fastest on.
    pub fn input(&self, pixels: &Tensor) -> Tensor {
        let x = pixels.to_device(self.device());
        let x = if self.cfg.channels_last && x.dim() == 4 {
            x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
        } else {
            x
        };
        let x = x.to_kind(self.scale.kind());
        let x = x * &self.scale + &self.shift;
        match &self.sobel {
            Some(w) => x.conv2d(w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1),
            None => x,
        }
    }

    /// Backbone features of an input-layer output (`[N, D]`).
    pub fn features(&self, x: &Tensor, train: bool) -> Tensor {
        let f = match &self.backbone {
            Backbone::AlexNet(a) => a.forward_t(x, train),
            Backbone::ResNet(r) => r.forward_t(x, train),
        };
        match &self.mlp {
            Some((l, bn)) => f.apply(l).apply_t(bn, train).relu(),
            None => f,
        }
    }

    /// Class scores `[N, K]` of a `u8` NCHW batch.
    pub fn forward(&self, pixels: &Tensor, train: bool) -> Tensor {
        self.features(&self.input(pixels), train).apply(&self.top)
    }

    /// The AlexNet activations after conv layers 1..=`upto` (1..=5) of an input-layer output
    /// `x`, from one pass, for linear probes.
    ///
    /// # Errors
    /// If the backbone is not an AlexNet or `upto` is not in 1..=5.
    pub fn conv_activations(&self, x: &Tensor, upto: usize) -> Result<Vec<Tensor>> {
        match &self.backbone {
            Backbone::AlexNet(a) if (1..=5).contains(&upto) => Ok(a.conv_activations(x, upto)),
            Backbone::AlexNet(_) => Err(Error::Config(format!("no conv layer {upto}"))),
            Backbone::ResNet(_) => Err(Error::Config(
                "per-layer features are only defined for the AlexNets".into(),
            )),
        }
    }

    /// Moves parameters, buffers and the input layer's constants to `device`.
    pub fn to_device(&mut self, device: Device) {
        self.vs.set_device(device);
        self.scale = self.scale.to_device(device);
        self.shift = self.shift.to_device(device);
        if let Some(w) = &mut self.sobel {
            *w = w.to_device(device);
        }
    }

    /// Casts parameters, buffers and the input layer's constants to `kind` (`Double` gives
    /// a float64 reference to check float32 results against).
    pub fn set_kind(&mut self, kind: Kind) {
        self.vs.set_kind(kind);
        self.scale = self.scale.to_kind(kind);
        self.shift = self.shift.to_kind(kind);
        if let Some(w) = &mut self.sobel {
            *w = w.to_kind(kind);
        }
    }

    /// Re-initialises the classifier layer (DeepCluster does this after each clustering).
    pub fn reset_head(&mut self) {
        tch::no_grad(|| {
            let _ = self.top.ws.normal_(0.0, 0.01);
            if let Some(b) = &mut self.top.bs {
                let _ = b.zero_();
            }
        });
    }
}

/// DeepCluster's fixed input layer as one convolution: the 1x1 grayscale conv (weights 1/3)
/// followed by the Sobel x and y kernels is `[2, 3, 3, 3]` with the kernels divided by 3.
fn sobel_weight() -> Tensor {
    let gx = [1.0f32, 0.0, -1.0, 2.0, 0.0, -2.0, 1.0, 0.0, -1.0];
    let gy = [1.0f32, 2.0, 1.0, 0.0, 0.0, 0.0, -1.0, -2.0, -1.0];
    let mut w = Vec::with_capacity(54);
    for g in [gx, gy] {
        for _ in 0..3 {
            w.extend(g.iter().map(|v| v / 3.0));
        }
    }
    Tensor::from_slice(&w).view([2, 3, 3, 3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sobel_layer_matches_the_augment_kernel() {
        // The fixed conv must equal uic_augment::sobel (golden-tested against torch) on the
        // normalised image.
        let (w, h) = (7usize, 5usize);
        let px: Vec<u8> = (0..3 * w * h)
            .map(|i| ((i * 37 + 11) % 256) as u8)
            .collect();
        let cfg = ModelConfig {
            arch: Arch::AlexnetSmall,
            width: 0.25,
            k: 4,
            sobel: true,
            input_size: 32,
            ..Default::default()
        };
        let m = Model::new(&cfg, Device::Cpu).unwrap();
        // `px` is packed HWC, as the augment kernels take it.
        let t = Tensor::from_slice(&px)
            .view([1, h as i64, w as i64, 3])
            .permute([0, 3, 1, 2]);
        let got: Vec<f32> = Vec::try_from(m.input(&t).flatten(0, -1)).unwrap();
        let mut norm = vec![0f32; 3 * w * h];
        uic_augment::normalize::normalize(&px, &mut norm, &Default::default());
        let mut want = vec![0f32; 2 * w * h];
        uic_augment::sobel::sobel(&norm, &mut want, w, h);
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn logits_have_k_columns() {
        for (arch, size) in [(Arch::AlexnetSmall, 32), (Arch::Alexnet, 96)] {
            let cfg = ModelConfig {
                arch,
                width: 0.25,
                k: 7,
                input_size: size,
                mlp_head: true,
                ..Default::default()
            };
            let m = Model::new(&cfg, Device::Cpu).unwrap();
            let x = Tensor::zeros([2, 3, size as i64, size as i64], (Kind::Uint8, Device::Cpu));
            assert_eq!(m.forward(&x, true).size(), vec![2, 7]);
        }
    }

    #[test]
    fn a_float64_copy_computes_the_same_function_in_float64() {
        let cfg = ModelConfig {
            arch: Arch::AlexnetSmall,
            width: 0.25,
            k: 5,
            sobel: true,
            input_size: 32,
            ..Default::default()
        };
        let f32m = Model::new(&cfg, Device::Cpu).unwrap();
        let mut f64m = Model::new(&cfg, Device::Cpu).unwrap();
        f64m.var_store_mut().copy(f32m.var_store()).unwrap();
        f64m.set_kind(Kind::Double);
        let x = Tensor::randint(256, [4, 3, 32, 32], (Kind::Uint8, Device::Cpu));
        let (a, b) = (f32m.forward(&x, false), f64m.forward(&x, false));
        assert_eq!(b.kind(), Kind::Double);
        assert!(f64m
            .named_parameters()
            .iter()
            .all(|(_, t)| t.kind() == Kind::Double));
        let rel =
            (a.to_kind(Kind::Double) - &b).norm().double_value(&[]) / b.norm().double_value(&[]);
        assert!(
            rel < 1e-5,
            "float32 and float64 logits differ by {rel} (relative L2)"
        );
        assert!(rel > 0.0, "the float64 model still computes in float32");
    }

    #[test]
    fn channels_last_changes_the_layout_not_the_results() {
        let make = |channels_last| {
            let cfg = ModelConfig {
                arch: Arch::AlexnetSmall,
                width: 0.25,
                k: 5,
                sobel: false,
                input_size: 32,
                channels_last,
                ..Default::default()
            };
            Model::new(&cfg, Device::Cpu).unwrap()
        };
        // Same weights in both (tests share libtorch's global generator, so copy them).
        let (nhwc, mut nchw) = (make(true), make(false));
        nchw.var_store_mut().copy(nhwc.var_store()).unwrap();
        let x = Tensor::randint(256, [4, 3, 32, 32], (Kind::Uint8, Device::Cpu));
        // N, C, H, W indexing either way; only the strides differ (C innermost).
        assert_eq!(nhwc.input(&x).stride(), vec![3 * 32 * 32, 1, 32 * 3, 3]);
        assert_eq!(nchw.input(&x).stride(), vec![3 * 32 * 32, 32 * 32, 32, 1]);
        let (a, b) = (nhwc.forward(&x, false), nchw.forward(&x, false));
        let diff = (&a - &b).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "logits differ by {diff}");
        // Gradients of the first conv's weight agree too.
        let grad = |m: &Model| {
            let loss = m.forward(&x, true).logsumexp([1], false).sum(Kind::Float);
            let names: Vec<String> = m.named_parameters().into_iter().map(|p| p.0).collect();
            let mut w = m
                .named_parameters()
                .into_iter()
                .find(|(n, t)| n.starts_with("features") && t.dim() == 4)
                .unwrap_or_else(|| panic!("no conv weight in {names:?}"))
                .1;
            w.zero_grad();
            loss.backward();
            w.grad().copy()
        };
        let (ga, gb) = (grad(&nhwc), grad(&nchw));
        let rel = ((&ga - &gb).abs().max() / gb.abs().max()).double_value(&[]);
        assert!(rel < 1e-4, "conv1 gradients differ by {rel} (relative)");
    }

    #[test]
    fn rejects_bad_settings() {
        let bad = ModelConfig {
            k: 1,
            ..Default::default()
        };
        assert!(Model::new(&bad, Device::Cpu).is_err());
        let bad = ModelConfig {
            input_size: 32,
            ..Default::default()
        };
        assert!(Model::new(&bad, Device::Cpu).is_err());
    }
}

//! End-to-end check of the libtorch set-up: a tiny conv net learns on the CPU.

use uic_trainer::tch::{self, nn, nn::Module, nn::OptimizerConfig, Device, Kind, Tensor};

fn tiny_net(vs: &nn::Path) -> impl Module {
    nn::seq()
        .add(nn::conv2d(
            vs / "conv1",
            3,
            8,
            3,
            nn::ConvConfig {
                padding: 1,
                ..Default::default()
            },
        ))
        .add_fn(|x| x.relu())
        .add_fn(|x| x.adaptive_avg_pool2d([1, 1]).flatten(1, -1))
        .add(nn::linear(vs / "fc", 8, 2, Default::default()))
}

#[test]
fn tiny_conv_net_loss_drops_with_sgd() {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = tiny_net(&vs.root());
    let mut opt = nn::Sgd {
        momentum: 0.9,
        ..Default::default()
    }
    .build(&vs, 0.05)
    .unwrap();

    // Two classes that differ in mean brightness: learnable by a conv + pooling net.
    let n = 32;
    let labels = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(2);
    let shift = labels.to_kind(Kind::Float).view([n, 1, 1, 1]) * 2.0 - 1.0;
    let images = Tensor::randn([n, 3, 8, 8], (Kind::Float, Device::Cpu)) * 0.5 + shift;

    let loss_at = |net: &dyn Module| {
        tch::no_grad(|| {
            net.forward(&images)
                .cross_entropy_for_logits(&labels)
                .double_value(&[])
        })
    };
    let before = loss_at(&net);
    for _ in 0..20 {
        let loss = net.forward(&images).cross_entropy_for_logits(&labels);
        opt.backward_step(&loss);
    }
    let after = loss_at(&net);
    assert!(
        before.is_finite() && after.is_finite(),
        "loss not finite: {before} -> {after}"
    );
    assert!(
        after < 0.5 * before,
        "loss did not drop enough: {before} -> {after}"
    );
}

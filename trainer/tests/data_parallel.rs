//! Data parallelism against one process: two ranks (threads, each with its own c10d group
//! on 127.0.0.1 and its own model) each train on half of every batch; one process trains
//! the same model on the same two halves and averages their gradients. The weights must
//! agree to float tolerance after every step, and equal each other exactly.

use std::net::TcpListener;
use std::time::Duration;

use tch::{Device, Tensor};
use uic_c10d::{Group, Rendezvous};
use uic_trainer::sgd::Sgd;
use uic_trainer::{train_step_with, Arch, Dist, Model, ModelConfig, Sync};

const STEPS: usize = 3;
const BATCH: i64 = 8;
const LR: f64 = 0.05;

fn model_config() -> ModelConfig {
    ModelConfig {
        arch: Arch::AlexnetSmall,
        width: 0.25,
        k: 5,
        input_size: 32,
        // Dropout draws differ between one process and two; batch norm does not (each
        // half is normalised with its own statistics on both sides).
        dropout: 0.0,
        ..ModelConfig::default()
    }
}

/// libtorch's generator is one per process: the rank threads take turns to initialise.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn model() -> (Model, Sgd) {
    let _turn = INIT.lock().unwrap();
    let m = Model::init(&model_config(), 7, Device::Cpu).unwrap();
    let opt = Sgd::new(m.named_parameters(), 0.9, 1e-4);
    (m, opt)
}

/// Step `s`'s global batch: pixels and targets, from a plain generator (libtorch's is one
/// per process, which the two rank threads would race on).
fn batch(s: usize) -> (Tensor, Tensor) {
    let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ s as u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let pixels: Vec<u8> = (0..BATCH * 3 * 32 * 32).map(|_| next() as u8).collect();
    let targets: Vec<i64> = (0..BATCH).map(|_| (next() % 5) as i64).collect();
    (
        Tensor::from_slice(&pixels).view([BATCH, 3, 32, 32]),
        Tensor::from_slice(&targets),
    )
}

fn half(t: &Tensor, r: i64) -> Tensor {
    t.narrow(0, r * BATCH / 2, BATCH / 2)
}

fn params(m: &Model) -> Vec<Vec<f32>> {
    m.named_parameters()
        .iter()
        .map(|(_, t)| Vec::try_from(&t.detach().flatten(0, -1)).unwrap())
        .collect()
}

/// The parameters after each step (per step, per tensor, its values), and the losses.
type Trace = (Vec<Vec<Vec<f32>>>, Vec<f64>);

/// Runs `f(rank, group)` on ranks 0 and 1 (threads) of a fresh group on 127.0.0.1, and
/// returns their results in rank order.
fn on_two_ranks<T: Send + 'static>(f: fn(usize, &Dist) -> T) -> Vec<T> {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hs: Vec<_> = (0..2)
        .map(|rank| {
            std::thread::spawn(move || {
                let mut r = Rendezvous::loopback(port, rank, 2);
                r.timeout = Duration::from_secs(60);
                f(rank, &Dist::new(Group::connect(&r).unwrap(), 0))
            })
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).collect()
}

/// The ranks' parameters after each step, and their global losses.
fn two_ranks() -> Vec<Trace> {
    on_two_ranks(|rank, dist| {
        let (m, mut opt) = model();
        let (mut after, mut losses) = (Vec::new(), Vec::new());
        for s in 0..STEPS {
            let (x, y) = batch(s);
            let sync = Sync {
                group: dist,
                share: 0.5,
                step: s as u64,
            };
            let (loss, pred) = train_step_with(
                &m,
                &mut opt,
                &half(&x, rank as i64),
                &half(&y, rank as i64),
                LR,
                Some(sync),
            )
            .unwrap();
            assert_eq!(pred.len(), BATCH as usize / 2);
            after.push(params(&m));
            losses.push(loss);
        }
        (after, losses)
    })
}

/// One process: both halves' gradients, averaged, then the same update.
fn one_process() -> Trace {
    let (m, mut opt) = model();
    let (mut after, mut losses) = (Vec::new(), Vec::new());
    for s in 0..STEPS {
        let (x, y) = batch(s);
        opt.zero_grad();
        let mut loss = 0.0;
        for r in 0..2 {
            let l = m
                .forward(&half(&x, r), true)
                .cross_entropy_for_logits(&half(&y, r))
                * 0.5;
            l.backward();
            loss += l.double_value(&[]);
        }
        opt.step(LR);
        after.push(params(&m));
        losses.push(loss);
    }
    (after, losses)
}

#[test]
fn two_ranks_on_half_batches_equal_one_process_averaging_the_halves() {
    let ranks = two_ranks();
    let (reference, ref_losses) = one_process();
    // The ranks hold bit-identical weights after every step.
    assert!(ranks[0].0 == ranks[1].0, "the ranks' weights differ");
    assert_eq!(
        ranks[0].1, ranks[1].1,
        "the ranks saw different global losses"
    );
    let mut moved = 0.0f32;
    for s in 0..STEPS {
        assert!(
            (ranks[0].1[s] - ref_losses[s]).abs() < 1e-5,
            "step {s} loss"
        );
        for (p, (a, b)) in ranks[0].0[s].iter().zip(&reference[s]).enumerate() {
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (x - y).abs() <= 1e-5 + 1e-4 * y.abs(),
                    "step {s}, parameter {p}: {x} vs {y}"
                );
            }
        }
    }
    // And training did something: the weights moved from their initial values.
    let (init, _) = model();
    for (a, b) in params(&init).iter().zip(&ranks[0].0[STEPS - 1]) {
        for (x, y) in a.iter().zip(b) {
            moved = moved.max((x - y).abs());
        }
    }
    assert!(moved > 1e-4, "the steps changed nothing");
}

#[test]
fn ranks_with_different_state_are_refused_by_name() {
    let errors = on_two_ranks(|rank, dist| {
        dist.check_same(42, "settings").unwrap();
        dist.check_same(42 + rank as u64, "settings")
            .unwrap_err()
            .to_string()
    });
    for e in errors {
        assert_eq!(
            e,
            "invalid setting: rank 1's settings differ from rank 0's: start every rank with \
             the same settings and data file"
        );
    }
}

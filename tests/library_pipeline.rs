//! The whole job through the library, as a Rust user would write it without the `uic`
//! command: an image folder converted into a record file, UIC trained on it, the checkpoint
//! evaluated with the paper's protocol, and the typed report read back.

use std::path::Path;

use uic::loader::convert::{convert, ConvertOptions};
use uic::loader::synth::{write_image_folder, SynthOptions};
use uic::trainer::eval::{evaluate, Protocol, What};
use uic::trainer::infer::Layer;
use uic::trainer::{checkpoint, Arch, Quiet, TrainConfig, Trainer};

fn small_run() -> TrainConfig {
    TrainConfig {
        arch: Arch::AlexnetSmall,
        width: 0.25,
        input_size: 32,
        k: 6,
        epochs: 2,
        batch_size: 32,
        threads: 1,
        torch_threads: 1,
        seed: 4,
        ..TrainConfig::default()
    }
}

fn convert_folder(dir: &Path) -> std::path::PathBuf {
    let images = dir.join("images");
    let opts = SynthOptions {
        classes: 6,
        per_class: 20,
        size: 36,
        seed: 2,
    };
    write_image_folder(&images, &opts).unwrap();
    let rec = dir.join("synth.uicr");
    convert(&images, &rec, &ConvertOptions::default(), &|_| {}).unwrap();
    rec
}

#[test]
fn a_trained_checkpoint_is_evaluated_against_its_untrained_start() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = convert_folder(tmp.path());
    let run = tmp.path().join("run");
    let mut t = Trainer::new(small_run(), &rec, &run, false).unwrap();
    assert_eq!(t.run(&mut Quiet).unwrap(), uic_trainer::Ended::Finished);
    assert_eq!(t.epochs_done(), 2);

    // The checkpoint loads as the model the trainer holds.
    let (model, ck) = checkpoint::load_model(&run).unwrap();
    assert_eq!(ck.state.epoch, 2);
    let (a, b) = (model.named_parameters(), t.model().named_parameters());
    assert_eq!(a.len(), b.len());
    for ((na, pa), (nb, pb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(pa.equal(pb), "{na}");
    }

    let p = Protocol {
        what: What::All,
        probe_epochs: 2,
        layers: vec![Layer::Conv(2), Layer::Final],
        threads: 1,
        ..Protocol::default()
    };
    let r = evaluate(&run, &rec, None, &p).unwrap();
    assert_eq!((r.epoch, r.arch), (2, Arch::AlexnetSmall));
    assert_eq!(r.train_images + r.test_images, 120);
    assert_eq!(r.test_images, 36);
    let trained = r.trained.as_ref().unwrap();
    let linear = trained.linear_top1.as_ref().unwrap();
    assert_eq!(
        linear.keys().copied().collect::<Vec<_>>(),
        [Layer::Conv(2), Layer::Final]
    );
    let gain = r.gain().unwrap();
    for (l, g) in gain.linear_top1.as_ref().unwrap() {
        let want = linear[l] - r.random_init.linear_top1.as_ref().unwrap()[l];
        assert_eq!(*g, want, "{l}");
        assert!((0.0..=1.0).contains(&linear[l]));
    }
    let knn = trained.knn_top1.unwrap();
    assert_eq!(gain.knn_top1, Some(knn - r.random_init.knn_top1.unwrap()));
    let nmi = trained.nmi.as_ref().unwrap();
    assert!((0.0..=1.0).contains(&nmi.nmi_true), "{nmi:?}");
    assert!(nmi.classes_used <= 6);

    // The untrained backbone alone scores exactly as the baseline above.
    let only = evaluate(
        &run,
        &rec,
        None,
        &Protocol {
            random_init_only: true,
            ..p.clone()
        },
    )
    .unwrap();
    assert!(only.trained.is_none() && only.gain().is_none());
    assert_eq!(only.random_init, r.random_init);

    // Contradictory settings are refused before any work.
    let bad = Protocol {
        train_frac: 1.0,
        ..p
    };
    let e = evaluate(&run, &rec, None, &bad).unwrap_err().to_string();
    assert!(e.contains("train_frac 1"), "{e}");
}

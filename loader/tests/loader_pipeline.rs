//! The batch pipeline: determinism across thread counts, resume, views, corrupt records,
//! and no hang however the consumer behaves.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use uic_loader::convert::{convert, ConvertOptions};
use uic_loader::order::{Order, Random, Sequential};
use uic_loader::{CropMode, Loader, LoaderConfig, RecordFile};

fn dataset(dir: &Path) -> Arc<RecordFile> {
    let input = dir.join("in");
    common::image_folder(&input, 3, 12);
    common::write(&input.join("class0/big.jpg"), &common::jpeg(640, 480, 77));
    let out = dir.join("d.uicr");
    convert(&input, &out, &ConvertOptions::default(), &|_| {}).unwrap();
    Arc::new(RecordFile::open(&out).unwrap())
}

fn cfg(threads: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: 5,
        threads,
        size: (24, 32),
        seed: 11,
        ..Default::default()
    }
}

fn run(loader: &Loader, epoch: u64, indices: Vec<usize>, start: usize) -> Vec<(Vec<u32>, Vec<u8>)> {
    loader
        .epoch(epoch, indices, start)
        .unwrap()
        .map(|b| b.unwrap())
        .map(|b| (b.indices().to_vec(), b.pixels(0).to_vec()))
        .collect()
}

#[test]
fn batches_are_identical_for_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let file = dataset(dir.path());
    let order = Random {
        len: file.len(),
        seed: 3,
    };
    let reference = run(
        &Loader::new(file.clone(), cfg(1)).unwrap(),
        2,
        order.indices(2),
        0,
    );
    assert_eq!(reference.len(), 37usize.div_ceil(5));
    for threads in [2, 3, 8] {
        let got = run(
            &Loader::new(file.clone(), cfg(threads)).unwrap(),
            2,
            order.indices(2),
            0,
        );
        assert!(got == reference, "{threads} threads gave different batches");
    }
    // A different epoch or seed gives different crops.
    let other = run(
        &Loader::new(file.clone(), cfg(2)).unwrap(),
        2,
        Sequential { len: file.len() }.indices(0),
        0,
    );
    assert_ne!(other[0].1, reference[0].1);
}

#[test]
fn an_epoch_resumes_part_way_and_drop_last_drops() {
    let dir = tempfile::tempdir().unwrap();
    let file = dataset(dir.path());
    let loader = Loader::new(file.clone(), cfg(2)).unwrap();
    let idx = Random {
        len: file.len(),
        seed: 1,
    }
    .indices(0);
    let full = run(&loader, 0, idx.clone(), 0);
    let tail = run(&loader, 0, idx.clone(), 3);
    assert!(tail[..] == full[3..]);
    assert_eq!(full.last().unwrap().0.len(), 37 % 5);

    let dl = Loader::new(
        file.clone(),
        LoaderConfig {
            drop_last: true,
            ..cfg(2)
        },
    )
    .unwrap();
    let batches = run(&dl, 0, idx, 0);
    assert_eq!(batches.len(), 7);
    assert!(batches
        .iter()
        .all(|(i, p)| i.len() == 5 && p.len() == 5 * 3 * 24 * 32));
}

#[test]
fn the_strong_preset_is_deterministic_and_differs_from_paper() {
    use uic_augment::{Augment, Preset};
    let dir = tempfile::tempdir().unwrap();
    let file = dataset(dir.path());
    let idx: Vec<usize> = (0..file.len()).collect();
    let strong = |threads| LoaderConfig {
        augment: Augment::preset(Preset::Strong),
        ..cfg(threads)
    };
    let a = run(
        &Loader::new(file.clone(), strong(1)).unwrap(),
        0,
        idx.clone(),
        0,
    );
    let b = run(
        &Loader::new(file.clone(), strong(3)).unwrap(),
        0,
        idx.clone(),
        0,
    );
    assert!(a == b, "strong preset depends on the thread count");
    let paper = run(&Loader::new(file.clone(), cfg(2)).unwrap(), 0, idx, 0);
    assert!(a != paper, "jitter, grayscale and blur changed nothing");
}

#[test]
fn deferred_steps_are_the_drawn_ones_and_applying_them_gives_the_same_batch() {
    use uic_augment::{Augment, Preset};
    let dir = tempfile::tempdir().unwrap();
    let file = dataset(dir.path());
    let idx: Vec<usize> = (0..file.len()).collect();
    let strong = |defer_augment| LoaderConfig {
        augment: Augment::preset(Preset::Strong),
        views: 2,
        defer_augment,
        ..cfg(2)
    };
    let now = Loader::new(file.clone(), strong(false)).unwrap();
    let later = Loader::new(file.clone(), strong(true)).unwrap();
    let aug = Augment::preset(Preset::Strong);
    let (h, w) = (24, 32);
    let mut applied = 0;
    for (a, b) in now
        .epoch(1, idx.clone(), 0)
        .unwrap()
        .zip(later.epoch(1, idx, 0).unwrap())
    {
        let (a, b) = (a.unwrap(), b.unwrap());
        for v in 0..2 {
            // The same draws, whether or not the loader applied them.
            assert_eq!(a.drawn(v), b.drawn(v));
            assert_eq!(a.drawn(v).len(), a.len());
            let (done, left) = (a.pixels(v), b.pixels(v));
            for (row, d) in b.drawn(v).iter().enumerate() {
                let plane = 3 * h * w;
                // The deferred row is cropped and flipped only; the draws applied to it on
                // the consumer's side give the loader's own row.
                let mut hwc = vec![0u8; plane];
                for (i, px) in hwc.chunks_exact_mut(3).enumerate() {
                    for (c, v) in px.iter_mut().enumerate() {
                        *v = left[row * plane + c * h * w + i];
                    }
                }
                aug.apply_drawn(d, &mut hwc, w, h, &mut Vec::new());
                for (i, px) in hwc.chunks_exact(3).enumerate() {
                    for (c, v) in px.iter().enumerate() {
                        assert_eq!(*v, done[row * plane + c * h * w + i], "row {row} {d:?}");
                    }
                }
                // Left undone: the loader's row differs from the deferred one.
                applied += usize::from(
                    left[row * plane..(row + 1) * plane] != done[row * plane..(row + 1) * plane],
                );
            }
        }
    }
    assert!(applied > 10, "{applied}");
}

#[test]
fn two_views_are_independent_and_labels_ride_along() {
    let dir = tempfile::tempdir().unwrap();
    let file = dataset(dir.path());
    let loader = Loader::new(file.clone(), LoaderConfig { views: 2, ..cfg(2) }).unwrap();
    let b = loader
        .epoch(0, (0..10).collect(), 0)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_ne!(b.pixels(0), b.pixels(1));
    assert_eq!(b.pixels(1).len(), 5 * 3 * 24 * 32);
    let labels = b.labels().unwrap();
    for (row, &i) in b.indices().iter().enumerate() {
        assert_eq!(Some(labels[row]), file.sample(i as usize).label);
    }
}

#[test]
fn a_corrupt_record_is_counted_and_substituted_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let file = dataset(dir.path());
    let (offset, _) = file.extents()[4];
    let path = file.path().to_path_buf();
    drop(file);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset as usize..offset as usize + 16].fill(0); // destroy the JPEG's header
    let broken = dir.path().join("broken.uicr");
    std::fs::write(&broken, bytes).unwrap();
    let file = Arc::new(RecordFile::open(&broken).unwrap());
    let loader = Loader::new(file.clone(), cfg(2)).unwrap();
    let batches: Vec<_> = loader
        .epoch(0, Sequential { len: file.len() }.indices(0), 0)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let substituted: usize = batches.iter().map(|b| b.substituted()).sum();
    assert_eq!(substituted, 1);
    assert_eq!(batches[0].substituted(), 1, "record 4 is in batch 0");
    assert_eq!(
        loader
            .stats()
            .substituted
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The substitute is deterministic grey.
    let plane = 24 * 32;
    assert!(batches[0].pixels(0)[4 * 3 * plane..5 * 3 * plane]
        .iter()
        .all(|&v| v == 128));
}

#[test]
fn holding_every_batch_or_stopping_early_never_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dataset(dir.path());
    let loader = Loader::new(
        file.clone(),
        LoaderConfig {
            batch_size: 2,
            batches_ahead: 1,
            ..cfg(2)
        },
    )
    .unwrap();
    // Keep all 19 batches alive at once: more than the slot pool holds.
    let held: Vec<_> = loader
        .epoch(0, (0..file.len()).collect(), 0)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(held.len(), 19);
    drop(held);
    // Stop after one batch, then start another epoch at once.
    let mut e = loader.epoch(1, (0..file.len()).collect(), 0).unwrap();
    assert!(e.next().is_some());
    drop(e);
    assert_eq!(
        loader
            .epoch(2, (0..file.len()).collect(), 0)
            .unwrap()
            .count(),
        19
    );
}

#[test]
fn center_crop_mode_is_deterministic_and_bad_indices_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dataset(dir.path());
    let c = LoaderConfig {
        crop: CropMode::Center { resize: 36 },
        augment: uic_augment::Augment::none(),
        ..cfg(2)
    };
    let loader = Loader::new(file.clone(), c).unwrap();
    let a = run(&loader, 0, (0..file.len()).collect(), 0);
    let b = run(&loader, 5, (0..file.len()).collect(), 0);
    assert!(a == b, "centre crops must not depend on the epoch");
    assert!(loader.epoch(0, vec![file.len()], 0).is_err());
}

#[test]
fn next_timeout_gives_the_same_batches_as_next_then_none() {
    let dir = tempfile::tempdir().unwrap();
    let file = dataset(dir.path());
    let loader = Loader::new(file.clone(), cfg(2)).unwrap();
    let order = Random {
        len: file.len(),
        seed: 3,
    };
    let expected = run(&loader, 1, order.indices(1), 0);
    let mut epoch = loader.epoch(1, order.indices(1), 0).unwrap();
    let (mut got, mut timeouts) = (Vec::new(), 0);
    loop {
        // A zero timeout polls: it must neither block nor lose a batch.
        match epoch.next_timeout(std::time::Duration::ZERO) {
            Ok(Some(b)) => got.push((b.indices().to_vec(), b.pixels(0).to_vec())),
            Ok(None) => break,
            Err(uic_loader::NextError::TimedOut) => timeouts += 1,
            Err(uic_loader::NextError::Stopped(e)) => panic!("{e}"),
        }
        assert!(timeouts < 10_000_000, "the epoch never ended");
    }
    assert_eq!(got, expected);
    assert!(matches!(
        epoch.next_timeout(std::time::Duration::ZERO),
        Ok(None)
    ));
}

#[test]
fn a_preset_gives_its_crop_and_augmentations() {
    use uic_augment::{Augment, Preset};
    let eval = LoaderConfig::for_preset(Preset::Eval, (224, 160));
    assert_eq!(eval.crop, CropMode::Center { resize: 183 });
    assert_eq!(eval.augment, Augment::none());
    let strong = LoaderConfig::for_preset(Preset::Strong, (224, 224));
    assert!(matches!(strong.crop, CropMode::RandomResized(_)));
    assert_eq!(strong.augment, Augment::preset(Preset::Strong));
    assert_eq!(strong.size, (224, 224));
}

//! Orders and samplers: class balance against a hand-computed distribution, shards.

use std::collections::HashMap;

use uic_loader::order::{shard, ClassBalanced, Order, QuasiRandom, Random, Subset};

#[test]
fn class_balanced_sampler_matches_the_hand_computed_distribution() {
    // N = 10 samples: class 0 has 6 (samples 0-5), class 1 has 3 (6-8), class 2 has 1 (9),
    // class 3 is empty. Non-empty classes K' = 3, quota = 10 / 3 + 1 = 4 draws each:
    // class 0 draws 4 of its 6 without replacement, class 1 draws 4 of 3 with replacement,
    // class 2 draws its one sample 4 times. 12 draws, shuffled, cut to 10.
    let labels = [0, 0, 0, 0, 0, 0, 1, 1, 1, 2];
    let s = ClassBalanced::new(&labels, 4, 9);
    assert_eq!(s.quota(), 4);
    let epochs = 6000;
    let mut count = [0f64; 10];
    for e in 0..epochs {
        let idx = s.indices(e);
        assert_eq!(idx.len(), 10);
        let mut per_epoch: HashMap<usize, usize> = HashMap::new();
        for &i in &idx {
            *per_epoch.entry(i).or_default() += 1;
            count[i] += 1.0;
        }
        // Without replacement in class 0: each of its samples at most once per epoch.
        assert!((0..6).all(|i| per_epoch.get(&i).copied().unwrap_or(0) <= 1));
        assert!(per_epoch.get(&9).copied().unwrap_or(0) <= 4);
    }
    // Expected draws per epoch: each class 4 * 10/12; class 0 spreads it over 6 samples,
    // class 1 over 3, class 2 on 1.
    let expect = |i: usize| match i {
        0..=5 => 4.0 * 10.0 / 12.0 / 6.0,
        6..=8 => 4.0 * 10.0 / 12.0 / 3.0,
        _ => 4.0 * 10.0 / 12.0,
    };
    for (i, &c) in count.iter().enumerate() {
        let got = c / epochs as f64;
        assert!(
            (got - expect(i)).abs() < 0.03 * expect(i).max(1.0),
            "sample {i}: {got} vs {}",
            expect(i)
        );
    }
}

#[test]
fn balanced_sampler_follows_label_updates() {
    let mut s = ClassBalanced::new(&[0, 0, 1, 1], 2, 0);
    // Now class 1 holds only sample 3 and class 2 is empty: quota = 4 / 2 + 1 = 3, so sample 3
    // is drawn 3 times of 6 draws before the cut to 4: 2 times per epoch on average.
    s.set_labels(&[0, 0, 0, 1], 3);
    assert_eq!(s.quota(), 3);
    let epochs = 3000;
    let mut threes = 0usize;
    for e in 0..epochs {
        let idx = s.indices(e);
        assert_eq!(idx.len(), 4);
        for i in 0..3 {
            assert!(
                idx.iter().filter(|&&x| x == i).count() <= 1,
                "class 0 drawn with replacement"
            );
        }
        threes += idx.iter().filter(|&&x| x == 3).count();
    }
    let mean = threes as f64 / epochs as f64;
    assert!(
        (mean - 2.0).abs() < 0.05,
        "sample 3 drawn {mean} times per epoch, expected 2"
    );
}

#[test]
fn shards_partition_every_order() {
    let qr = QuasiRandom::new(
        &(0..103u64).map(|i| (i * 500, 400)).collect::<Vec<_>>(),
        4096,
        3,
        5,
    );
    let orders: Vec<Box<dyn Order>> = vec![
        Box::new(Random { len: 103, seed: 1 }),
        Box::new(qr),
        Box::new(Subset {
            indices: (0..103).rev().collect(),
            shuffle: true,
            seed: 2,
        }),
    ];
    for order in &orders {
        let all = order.indices(4);
        for world in [1, 2, 3, 8] {
            let parts: Vec<Vec<usize>> = (0..world).map(|r| shard(&all, r, world, false)).collect();
            let mut union: Vec<usize> = parts.concat();
            union.sort_unstable();
            let mut expected = all.clone();
            expected.sort_unstable();
            assert_eq!(union, expected, "{order:?} world {world}: not a partition");
            let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            let equal: Vec<usize> = (0..world)
                .map(|r| shard(&all, r, world, true).len())
                .collect();
            assert!(equal.iter().all(|&n| n == 103 / world));
        }
    }
}

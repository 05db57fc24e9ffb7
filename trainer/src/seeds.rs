//! The run's random streams, each a pure function of (seed, stream, epoch), so that a
//! resumed run draws exactly what an uninterrupted one would.

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// The stream of the initial labels.
pub(crate) const STREAM_INIT: u64 = 1;
/// The stream of the empty-class repair.
pub(crate) const STREAM_EMPTY: u64 = 2;

/// The libtorch seed of epoch `e` (dropout; `u64::MAX` for the initial weights).
pub(crate) fn torch_seed(seed: u64, epoch: u64) -> i64 {
    let mut r = Xoshiro256PlusPlus::seed_from_u64(
        seed ^ 0x7a3d_0c11 ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    (rand::Rng::gen::<u64>(&mut r) >> 1) as i64
}

/// The generator of `stream` in epoch `epoch`.
pub(crate) fn stream_rng(seed: u64, stream: u64, epoch: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(
        seed.wrapping_mul(0xbf58_476d_1ce4_e5b9)
            ^ stream.wrapping_mul(0x94d0_49bb_1331_11eb)
            ^ epoch,
    )
}

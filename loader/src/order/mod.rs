//! Traversal orders: each epoch's list of sample indices, one small strategy per file.
//!
//! Every [`Order`] is a pure function of `(epoch)` and its own seed, so all ranks of a
//! data-parallel job compute the same global order and [`shard`] cuts it into disjoint
//! parts. The batch pipeline takes the resulting index list.

mod balanced;
mod quasi_random;
mod random;
mod sequential;
mod shard;
mod subset;

pub use balanced::ClassBalanced;
pub use quasi_random::QuasiRandom;
pub use random::Random;
pub use sequential::Sequential;
pub use shard::shard;
pub use subset::Subset;

/// A traversal order.
pub trait Order: Send + Sync + std::fmt::Debug {
    /// The sample indices of `epoch`, for all ranks together.
    fn indices(&self, epoch: u64) -> Vec<usize>;
}

/// The RNG of an order in an epoch: a pure function of (seed, epoch).
pub(crate) fn epoch_rng(seed: u64, epoch: u64) -> rand_xoshiro::Xoshiro256PlusPlus {
    use rand::SeedableRng;
    let mut z = seed ^ epoch.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(z ^ (z >> 31))
}

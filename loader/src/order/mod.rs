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
pub use shard::{shard, shard_positions};
pub use subset::Subset;

/// A traversal order.
pub trait Order: Send + Sync + std::fmt::Debug {
    /// The sample indices of `epoch`, for all ranks together.
    fn indices(&self, epoch: u64) -> Vec<usize>;
}

/// The orders a caller can name (the Python package's `order=`): each built over a whole
/// record file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderKind {
    /// File order, every epoch.
    Sequential,
    /// A fresh permutation each epoch.
    Random,
    /// FFCV's quasi-random order: blocks of [`QUASI_RANDOM_BLOCK_BYTES`] shuffled, then samples
    /// shuffled within windows of [`QUASI_RANDOM_WINDOW`] blocks.
    QuasiRandom,
}

/// The block size of [`OrderKind::QuasiRandom`]: FFCV's page size.
pub const QUASI_RANDOM_BLOCK_BYTES: u64 = 8 << 20;
/// Blocks shuffled together by [`OrderKind::QuasiRandom`].
pub const QUASI_RANDOM_WINDOW: usize = 2;

impl OrderKind {
    /// The order over every sample of `file`, drawn from `seed`.
    pub fn build(self, file: &crate::RecordFile, seed: u64) -> Box<dyn Order> {
        let len = file.len();
        match self {
            OrderKind::Sequential => Box::new(Sequential { len }),
            OrderKind::Random => Box::new(Random { len, seed }),
            OrderKind::QuasiRandom => Box::new(QuasiRandom::new(
                &file.extents(),
                QUASI_RANDOM_BLOCK_BYTES,
                QUASI_RANDOM_WINDOW,
                seed,
            )),
        }
    }
}

impl std::str::FromStr for OrderKind {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "sequential" => Ok(OrderKind::Sequential),
            "random" => Ok(OrderKind::Random),
            "quasi_random" | "quasi-random" => Ok(OrderKind::QuasiRandom),
            _ => Err(crate::Error::InvalidArgument(format!(
                "order {s:?}: expected \"random\", \"sequential\" or \"quasi_random\""
            ))),
        }
    }
}

/// The RNG of an order in an epoch: a pure function of (seed, epoch).
pub(crate) fn epoch_rng(seed: u64, epoch: u64) -> rand_xoshiro::Xoshiro256PlusPlus {
    crate::seeds::Stream::Order { epoch }.rng(seed)
}

//! Cutting a global order into the parts of data-parallel ranks.

/// Rank `rank`'s part of `indices`: positions `rank, rank + world, ...`. The parts of all
/// ranks are disjoint and their union is `indices`. With `equal`, the tail that does not
/// divide evenly is dropped so every rank gets `len / world` samples (needed when every rank
/// must run the same number of steps).
///
/// # Panics
/// If `world == 0` or `rank >= world`.
pub fn shard(indices: &[usize], rank: usize, world: usize, equal: bool) -> Vec<usize> {
    assert!(world > 0 && rank < world, "rank {rank} of world {world}");
    let usable = if equal {
        indices.len() / world * world
    } else {
        indices.len()
    };
    indices[..usable]
        .iter()
        .skip(rank)
        .step_by(world)
        .copied()
        .collect()
}

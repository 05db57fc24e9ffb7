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

/// Rank `rank`'s part of `indices` as `shard(indices, rank, world, true)` cuts it (every rank
/// gets `len / world` samples, like PyTorch's `DistributedSampler` with `drop_last`), with
/// each sample's position in `indices`: what seeds its random draws
/// ([`Loader::epoch_at`](crate::Loader::epoch_at)), so a sample gets the same view whatever
/// the number of ranks.
///
/// # Panics
/// If `world == 0` or `rank >= world`.
pub fn shard_positions(indices: &[usize], rank: usize, world: usize) -> (Vec<usize>, Vec<usize>) {
    let positions: Vec<usize> = (0..indices.len()).collect();
    let positions = shard(&positions, rank, world, true);
    let part = positions.iter().map(|&p| indices[p]).collect();
    (part, positions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_point_back_into_the_order() {
        let order = [7, 3, 9, 1, 4, 8, 0];
        let mut seen = Vec::new();
        for rank in 0..3 {
            let (part, pos) = shard_positions(&order, rank, 3);
            assert_eq!(part.len(), 2);
            assert_eq!(part, shard(&order, rank, 3, true));
            for (&i, &p) in part.iter().zip(&pos) {
                assert_eq!(order[p], i);
            }
            seen.extend(pos);
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2, 3, 4, 5]);
    }
}

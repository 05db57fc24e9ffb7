//! Data parallelism over a c10d process group ([`uic_c10d::Group`]).
//!
//! What a run keeps the same at every world size:
//! - `batch_size` is the global batch; each global batch of the epoch's order is cut into
//!   one contiguous share per rank ([`shard`]), and every sample keeps its global position,
//!   so its augmentation draw does not depend on the world size either;
//! - gradients are the whole batch's mean: each rank scales its gradients by its share of
//!   the batch, and the buckets are summed ([`Collective::sum_step`]);
//! - the label table: every rank records (position, argmax) for its samples, and at the
//!   epoch's end the ranks exchange them ([`Dist::gather_by_position`]), so each applies
//!   the whole epoch's argmaxes in the order one process would have.
//!
//! BatchNorm statistics are per rank, as DDP's default; rank 0's are broadcast before each
//! checkpoint. Only rank 0 touches the output folder.
//!
//! The training loop is written once, against [`Collective`]: what the ranks share. It has
//! two implementations: [`Solo`], one process, where every operation is the identity, and
//! [`Dist`], a c10d group. A new collective is a method of the trait with both.

use tch::{Device, Kind, Tensor};
use uic_c10d::Group;

use crate::error::{Error, Result};

/// What the ranks of a run share, as the training loop sees it: its place in the world,
/// the per-step sum of gradients and values, and the few exchanges of an epoch's start and
/// end. [`Solo`] is one process (every operation the identity); [`Dist`] a c10d group.
/// Every failure is [`Error::Collective`], naming `what` (or the step).
pub trait Collective: std::fmt::Debug + Send {
    /// This process's rank.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn world(&self) -> usize;
    /// The rank on this node (it picks the CUDA device).
    fn local_rank(&self) -> usize;
    /// One step's exchange, between backward and the update: each parameter's gradient
    /// becomes the sum over the ranks of gradient times `share` (this rank's fraction of the
    /// global batch: the sum is the global batch's mean gradient), and the step's `values`
    /// (a 1-d tensor, the same length on every rank: the loss times `share`, counts, flags)
    /// are summed and returned, identical on every rank.
    ///
    /// # Errors
    /// [`Error::Collective`] (a rank left, or the timeout passed).
    fn sum_step(
        &self,
        params: &[Tensor],
        values: &Tensor,
        share: f64,
        step: u64,
    ) -> Result<Vec<f64>>;
    /// Before backward: starts the step's exchange so that it runs during the backward pass
    /// (each bucket of gradients summed as soon as it is complete); [`Collective::sum_step`]
    /// then completes it, with the same arguments. A no-op where nothing overlaps.
    ///
    /// # Errors
    /// [`Error::Collective`].
    fn begin_step(
        &self,
        _params: &[Tensor],
        _values: &Tensor,
        _share: f64,
        _step: u64,
    ) -> Result<()> {
        Ok(())
    }
    /// Whether [`Collective::begin_step`] overlaps the sync with backward (`overlap_sync`).
    fn set_overlap(&mut self, _on: bool) {}
    /// Replaces `tensors` with rank 0's, in place.
    ///
    /// # Errors
    /// [`Error::Collective`].
    fn broadcast(&self, tensors: &[Tensor], what: &str) -> Result<()>;
    /// Rank 0's `bytes`, on every rank.
    ///
    /// # Errors
    /// [`Error::Collective`].
    fn broadcast_bytes(&self, bytes: &[u8], what: &str) -> Result<Vec<u8>>;
    /// Every rank's `values` (the same length on each), in rank order.
    ///
    /// # Errors
    /// [`Error::Collective`].
    fn allgather_f64(&self, values: &[f64], what: &str) -> Result<Vec<Vec<f64>>>;
    /// Values known at scattered global positions on each rank, gathered into one vector
    /// of `total` entries (`-1` where no rank had a value). Positions are unique across
    /// ranks.
    ///
    /// # Errors
    /// [`Error::Collective`], or a position past `total`.
    fn gather_by_position(
        &self,
        positions: &[usize],
        values: &[i64],
        total: usize,
        what: &str,
    ) -> Result<Vec<i64>>;
    /// Refuses to go on unless every rank computed the same `hash` of `what`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first rank that differs, or [`Error::Collective`].
    fn check_same(&self, hash: u64, what: &str) -> Result<()>;
}

/// One process: rank 0 of a world of 1, where every collective is the identity.
#[derive(Debug, Default, Clone, Copy)]
pub struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn world(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn sum_step(&self, _: &[Tensor], values: &Tensor, _share: f64, _: u64) -> Result<Vec<f64>> {
        // One rank's share is the whole batch: the gradients are already the mean.
        let v = values.detach().to_kind(Kind::Double).to_device(Device::Cpu);
        Ok(Vec::<f64>::try_from(&v)?)
    }
    fn broadcast(&self, _: &[Tensor], _: &str) -> Result<()> {
        Ok(())
    }
    fn broadcast_bytes(&self, bytes: &[u8], _: &str) -> Result<Vec<u8>> {
        Ok(bytes.to_vec())
    }
    fn allgather_f64(&self, values: &[f64], _: &str) -> Result<Vec<Vec<f64>>> {
        Ok(vec![values.to_vec()])
    }
    fn gather_by_position(
        &self,
        positions: &[usize],
        values: &[i64],
        total: usize,
        what: &str,
    ) -> Result<Vec<i64>> {
        place_by_position(
            positions.iter().copied().zip(values.iter().copied()),
            total,
            what,
        )
    }
    fn check_same(&self, _: u64, _: &str) -> Result<()> {
        Ok(())
    }
}

impl Collective for Dist {
    fn rank(&self) -> usize {
        Dist::rank(self)
    }
    fn begin_step(&self, params: &[Tensor], values: &Tensor, share: f64, step: u64) -> Result<()> {
        if !self.overlap {
            return Ok(());
        }
        let trainable: Vec<Tensor> = params
            .iter()
            .filter(|p| p.requires_grad())
            .map(Tensor::shallow_clone)
            .collect();
        let mut v = values.shallow_clone();
        self.group
            .overlap_begin(&trainable, &mut v, share, BUCKET_BYTES)
            .map_err(self.fail(format!("averaging the gradients of step {}", step + 1)))?;
        self.armed.set(true);
        Ok(())
    }
    fn set_overlap(&mut self, on: bool) {
        self.overlap = on;
    }
    fn world(&self) -> usize {
        Dist::world(self)
    }
    fn local_rank(&self) -> usize {
        Dist::local_rank(self)
    }
    fn sum_step(
        &self,
        params: &[Tensor],
        values: &Tensor,
        share: f64,
        step: u64,
    ) -> Result<Vec<f64>> {
        if self.armed.replace(false) {
            self.group
                .overlap_finish()
                .map_err(self.fail(format!("averaging the gradients of step {}", step + 1)))?;
            let sums = values.detach().to_device(Device::Cpu).to_kind(Kind::Double);
            return Ok(Vec::<f64>::try_from(&sums)?);
        }
        self.sum_buckets(params, values, share, step)
    }
    fn broadcast(&self, tensors: &[Tensor], what: &str) -> Result<()> {
        Dist::broadcast(self, tensors, what)
    }
    fn broadcast_bytes(&self, bytes: &[u8], what: &str) -> Result<Vec<u8>> {
        Dist::broadcast_bytes(self, bytes, what)
    }
    fn allgather_f64(&self, values: &[f64], what: &str) -> Result<Vec<Vec<f64>>> {
        Dist::allgather_f64(self, values, what)
    }
    fn gather_by_position(
        &self,
        positions: &[usize],
        values: &[i64],
        total: usize,
        what: &str,
    ) -> Result<Vec<i64>> {
        Dist::gather_by_position(self, positions, values, total, what)
    }
    fn check_same(&self, hash: u64, what: &str) -> Result<()> {
        Dist::check_same(self, hash, what)
    }
}

/// `(position, value)` pairs placed into a vector of `total` entries, `-1` elsewhere.
fn place_by_position(
    pairs: impl IntoIterator<Item = (usize, i64)>,
    total: usize,
    what: &str,
) -> Result<Vec<i64>> {
    let mut out = vec![-1i64; total];
    for (p, v) in pairs {
        let slot = out.get_mut(p).ok_or_else(|| {
            Error::Internal(format!(
                "{what}: position {p} past the {total} of the epoch"
            ))
        })?;
        *slot = v;
    }
    Ok(out)
}

/// Gradient bucket size: large enough that Gloo runs near its bandwidth, small enough that
/// the buckets' copies overlap.
const BUCKET_BYTES: usize = 25 << 20;

/// This process's data-parallel group.
#[derive(Debug)]
pub struct Dist {
    group: Group,
    local_rank: usize,
    /// Sync the gradients during backward ([`Collective::begin_step`]).
    overlap: bool,
    /// A step was begun with the overlapped sync and awaits its [`Collective::sum_step`].
    armed: std::cell::Cell<bool>,
}

impl Dist {
    /// Wraps a connected group; `local_rank` (the rank on this node) picks the CUDA device.
    pub fn new(group: Group, local_rank: usize) -> Self {
        Dist {
            group,
            local_rank,
            overlap: false,
            armed: std::cell::Cell::new(false),
        }
    }

    /// The rank on this node.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    /// Number of ranks.
    pub fn world(&self) -> usize {
        self.group.world()
    }

    /// The group.
    pub fn group(&self) -> &Group {
        &self.group
    }

    fn fail(&self, what: impl Into<String>) -> impl FnOnce(uic_c10d::Error) -> Error {
        let (rank, world, what) = (self.rank(), self.world(), what.into());
        move |error| Error::Collective {
            rank,
            world,
            what,
            error,
        }
    }

    /// Replaces `tensors` with rank 0's, in place.
    ///
    /// # Errors
    /// [`Error::Collective`], naming `what`.
    pub fn broadcast(&self, tensors: &[Tensor], what: &str) -> Result<()> {
        let mut ts: Vec<Tensor> = tensors.iter().map(Tensor::shallow_clone).collect();
        tch::no_grad(|| self.group.broadcast(&mut ts, 0)).map_err(self.fail(what))
    }

    /// Rank 0's `bytes`, on every rank (the others' `bytes` are ignored).
    ///
    /// # Errors
    /// [`Error::Collective`], naming `what`.
    pub fn broadcast_bytes(&self, bytes: &[u8], what: &str) -> Result<Vec<u8>> {
        let len = Tensor::from_slice(&[bytes.len() as i64]);
        self.broadcast(std::slice::from_ref(&len), what)?;
        let n = usize::try_from(i64::try_from(&len)?).unwrap_or(0);
        let buf = match self.rank() {
            0 => Tensor::from_slice(bytes),
            _ => Tensor::zeros([n as i64], (Kind::Uint8, Device::Cpu)),
        };
        self.broadcast(std::slice::from_ref(&buf), what)?;
        Ok(Vec::<u8>::try_from(&buf)?)
    }

    /// Every rank's `values` (the same length on each), in rank order.
    ///
    /// # Errors
    /// [`Error::Collective`], naming `what`.
    pub fn allgather_f64(&self, values: &[f64], what: &str) -> Result<Vec<Vec<f64>>> {
        let t = self
            .group
            .allgather(&Tensor::from_slice(values))
            .map_err(self.fail(what))?;
        let flat: Vec<f64> = Vec::try_from(&t.flatten(0, -1))?;
        Ok(flat
            .chunks(values.len().max(1))
            .map(<[f64]>::to_vec)
            .collect())
    }

    /// Sums over the ranks each parameter's gradient times `share` (this rank's fraction
    /// of the global batch, so that the sum is the global batch's mean gradient), and the
    /// step's `values` (see [`Collective::sum_step`]). Parameters without a gradient are
    /// left alone (the same ones on every rank, as every rank runs the same model).
    ///
    /// # Errors
    /// [`Error::Collective`] (a rank left, or the timeout passed).
    fn sum_buckets(
        &self,
        params: &[Tensor],
        values: &Tensor,
        share: f64,
        step: u64,
    ) -> Result<Vec<f64>> {
        let grads: Vec<Tensor> = params
            .iter()
            .map(Tensor::grad)
            .filter(Tensor::defined)
            .collect();
        let device = grads.first().map_or(Device::Cpu, Tensor::device);
        let mut buckets = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        let mut bytes = usize::MAX;
        for (i, g) in grads.iter().enumerate() {
            let b = g.numel() * 4;
            if bytes.saturating_add(b) > BUCKET_BYTES && !members.last().is_some_and(Vec::is_empty)
            {
                members.push(Vec::new());
                bytes = 0;
            }
            members.last_mut().expect("a bucket").push(i);
            bytes += b;
        }
        tch::no_grad(|| {
            for m in &members {
                let parts: Vec<Tensor> = m
                    .iter()
                    .map(|&i| grads[i].to_kind(Kind::Float).flatten(0, -1))
                    .collect();
                buckets.push(Tensor::cat(&parts, 0) * share);
            }
            // The step's values travel with the gradients: one round trip, and every rank
            // sees the same sums (a non-finite loss, a stop) at the same step.
            buckets.push(values.detach().to_kind(Kind::Double).to_device(device));
        });
        self.group
            .allreduce_sum(&mut buckets)
            .map_err(self.fail(format!("averaging the gradients of step {}", step + 1)))?;
        tch::no_grad(|| {
            for (m, flat) in members.iter().zip(&buckets) {
                let mut off = 0i64;
                for &i in m {
                    let mut g = grads[i].shallow_clone();
                    let n = g.numel() as i64;
                    g.copy_(&flat.narrow(0, off, n).view_as(&g));
                    off += n;
                }
            }
        });
        let sums = buckets
            .last()
            .expect("the values bucket")
            .to_device(Device::Cpu);
        Ok(Vec::<f64>::try_from(&sums)?)
    }

    /// Values known at scattered global positions on each rank, gathered into one vector
    /// of `total` entries on every rank (`-1` where no rank had a value). Positions are
    /// unique across ranks.
    ///
    /// # Errors
    /// [`Error::Collective`], naming `what`.
    pub fn gather_by_position(
        &self,
        positions: &[usize],
        values: &[i64],
        total: usize,
        what: &str,
    ) -> Result<Vec<i64>> {
        if positions.len() != values.len() {
            return Err(Error::Internal(format!(
                "{what}: {} positions for {} values",
                positions.len(),
                values.len()
            )));
        }
        // Ranks may hold different counts: agree on the longest, pad with -1.
        let counts = self.allgather_f64(&[positions.len() as f64], what)?;
        let most = counts.iter().map(|c| c[0] as usize).max().unwrap_or(0);
        let mut mine = vec![-1i64; 2 * most];
        for (j, (&p, &v)) in positions.iter().zip(values).enumerate() {
            mine[2 * j] = p as i64;
            mine[2 * j + 1] = v;
        }
        let all = self
            .group
            .allgather(&Tensor::from_slice(&mine))
            .map_err(self.fail(what))?;
        let all: Vec<i64> = Vec::try_from(&all.flatten(0, -1))?;
        place_by_position(
            all.chunks_exact(2)
                .filter(|pair| pair[0] >= 0)
                .map(|pair| (pair[0] as usize, pair[1])),
            total,
            what,
        )
    }

    /// Refuses to go on unless every rank computed the same `hash` of `what`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first rank that differs from rank 0, or
    /// [`Error::Collective`].
    pub fn check_same(&self, hash: u64, what: &str) -> Result<()> {
        // Two exact halves: an f64 holds 32-bit integers exactly.
        let halves = [(hash >> 32) as f64, (hash & 0xffff_ffff) as f64];
        let all = self.allgather_f64(&halves, &format!("comparing {what}"))?;
        match all.iter().position(|h| h != &all[0]) {
            None => Ok(()),
            Some(r) => Err(Error::Config(format!(
                "rank {r}'s {what} differ from rank 0's: start every rank with the same \
                 settings and data file"
            ))),
        }
    }
}

/// Rank `rank`'s part of an epoch `order` cut into global batches of `batch`: the samples
/// and their positions in `order`. Each global batch is split into `world` contiguous
/// shares that differ by at most one sample (lower ranks take the extra). A last, partial
/// batch where some rank's share would hold fewer than 2 samples (which batch norm cannot
/// train on) is dropped on every rank; with one rank that is a last batch of 1, as the
/// single-process loader drops it.
pub fn shard(order: &[usize], batch: usize, rank: usize, world: usize) -> (Vec<usize>, Vec<usize>) {
    let (mut indices, mut positions) = (Vec::new(), Vec::new());
    for (b, chunk) in order.chunks(batch).enumerate() {
        if chunk.len() < batch && chunk.len() < 2 * world {
            break;
        }
        let (base, extra) = (chunk.len() / world, chunk.len() % world);
        let start = rank * base + rank.min(extra);
        let len = base + usize::from(rank < extra);
        indices.extend_from_slice(&chunk[start..start + len]);
        positions.extend(b * batch + start..b * batch + start + len);
    }
    (indices, positions)
}

/// A 64-bit FNV-1a hash of `bytes`, continuing from `h` (start with [`HASH_START`]).
pub(crate) fn hash_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// FNV-1a's offset basis.
pub(crate) const HASH_START: u64 = 0xcbf2_9ce4_8422_2325;

/// A hash of tensors' values (on the CPU, in order), for [`Dist::check_same`].
pub(crate) fn hash_tensors<'a>(ts: impl IntoIterator<Item = &'a Tensor>) -> Result<u64> {
    let mut h = HASH_START;
    for t in ts {
        let c = t
            .detach()
            .to_device(Device::Cpu)
            .contiguous()
            .to_kind(Kind::Float);
        let v: Vec<f32> = Vec::try_from(&c.flatten(0, -1))?;
        // Hash the bits 8 bytes at a time: FNV per byte would cost seconds on ResNet-50.
        for pair in v.chunks(2) {
            let lo = u64::from(pair[0].to_bits());
            let hi = pair.get(1).map_or(0, |x| u64::from(x.to_bits()));
            h = (h ^ (lo | hi << 32)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_each_batch_once_in_order() {
        let order: Vec<usize> = (100..123).collect(); // 23 samples, batches of 8
        let parts: Vec<_> = (0..2).map(|r| shard(&order, 8, r, 2)).collect();
        assert_eq!(parts[0].1, [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19]);
        assert_eq!(parts[1].1, [4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22]);
        for (idx, pos) in &parts {
            for (i, p) in idx.iter().zip(pos) {
                assert_eq!(*i, order[*p]);
            }
        }
        // One rank: everything, but a last batch of one sample.
        assert_eq!(shard(&order, 8, 0, 1).1.len(), 23);
        assert_eq!(shard(&order[..17], 8, 0, 1).1.len(), 16);
        // Two ranks: a last batch of 3 would leave one rank a single sample.
        assert_eq!(shard(&order[..19], 8, 1, 2).1.len(), 8);
        assert_eq!(shard(&order[..20], 8, 1, 2).1.len(), 10);
    }

    #[test]
    fn tensor_hashes_see_one_changed_value() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        let b = Tensor::from_slice(&[1.0f32, 2.0, 3.0000002]);
        assert_eq!(
            hash_tensors([&a]).unwrap(),
            hash_tensors([&a.copy()]).unwrap()
        );
        assert_ne!(hash_tensors([&a]).unwrap(), hash_tensors([&b]).unwrap());
        assert_ne!(
            hash_bytes(HASH_START, b"k=3"),
            hash_bytes(HASH_START, b"k=4")
        );
    }
}

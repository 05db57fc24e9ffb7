//! Data-parallel collectives through libtorch's own c10d: a `TCPStore` rendezvous and a
//! `ProcessGroupGloo`, reached through a small C++ shim (`csrc/shim.cpp`) that turns every
//! C++ exception into an [`Error`] carrying its message.
//!
//! Gloo reduces CPU tensors, and CUDA tensors through host staging. Every call blocks until
//! its collective has finished on this rank, or fails after the group's timeout; a peer
//! that exits makes the pending call fail at once ("Connection closed by peer").
//!
//! ```no_run
//! # use std::time::Duration;
//! let group = uic_c10d::Group::connect(&uic_c10d::Rendezvous::loopback(29500, 0, 2))?;
//! let mut t = [tch::Tensor::from_slice(&[1.0f32, 2.0])];
//! group.allreduce_sum(&mut t)?; // every rank now holds the sum
//! # Ok::<(), uic_c10d::Error>(())
//! ```

mod env;
mod ffi;
pub mod rng;

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::c_char;
use std::ptr::NonNull;
use std::time::Duration;

use tch::Tensor;

pub use env::{Launch, LaunchError, LaunchSource};

/// A failed collective or rendezvous: the operation, and c10d's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// What was attempted (`"rendezvous"`, `"allreduce"`, ...).
    pub op: &'static str,
    /// c10d's (or gloo's) message, without the C++ backtrace.
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.op, self.message.trim_end())
    }
}

impl std::error::Error for Error {}

/// Where and how the ranks meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendezvous {
    /// The store's host (torchrun's `MASTER_ADDR`).
    pub host: String,
    /// The store's port (`MASTER_PORT`).
    pub port: u16,
    /// This process's rank, `0..world`.
    pub rank: usize,
    /// Number of ranks.
    pub world: usize,
    /// The store is already hosted by a launcher's agent (torchrun's
    /// `TORCHELASTIC_USE_AGENT_STORE=True`): every rank connects as a client, and keys live
    /// under [`prefix`](Self::prefix). Otherwise rank 0 hosts the store.
    pub agent_store: bool,
    /// Prefix of every store key (torchrun: `/worker/attempt_<restart count>`), or empty.
    pub prefix: String,
    /// Address the Gloo device binds to; `None`: the interface in `GLOO_SOCKET_IFNAME`, else
    /// the address this machine's hostname resolves to (as PyTorch does).
    pub bind: Option<String>,
    /// Limit on the rendezvous and on every collective.
    pub timeout: Duration,
    /// NCCL on this CUDA device instead of Gloo (a build with the `nccl` feature; torchrun's
    /// `LOCAL_RANK` usually). Tensors on another device are copied to it for each
    /// collective and back.
    pub nccl_device: Option<usize>,
}

impl Rendezvous {
    /// Ranks on this machine meeting at 127.0.0.1:`port`, with a one-minute timeout.
    pub fn loopback(port: u16, rank: usize, world: usize) -> Self {
        Rendezvous {
            host: "127.0.0.1".into(),
            port,
            rank,
            world,
            agent_store: false,
            prefix: String::new(),
            bind: Some("127.0.0.1".into()),
            timeout: Duration::from_secs(60),
            nccl_device: None,
        }
    }
}

/// Whether this build can make NCCL groups ([`Rendezvous::nccl_device`]): the `nccl`
/// feature, against a CUDA libtorch.
pub fn has_nccl() -> bool {
    // SAFETY: a constant of the shim.
    unsafe { ffi::uic_c10d_has_nccl() != 0 }
}

/// A connected process group (Gloo, or NCCL). Collectives must be called in the same order
/// on every rank.
#[derive(Debug)]
pub struct Group {
    raw: NonNull<ffi::Group>,
    rank: usize,
    world: usize,
    timeout: Duration,
    nccl_device: Option<usize>,
    /// The overlapped sync's hooks, and the parameters they are on (data pointers).
    overlap: std::sync::Mutex<Option<(NonNull<ffi::Overlap>, Vec<usize>)>>,
}

// The shim's group is a ProcessGroupGloo, whose calls are thread-safe; `Group` is moved
// between threads, never shared (every collective takes `&self` but the trainer uses one
// group from one thread at a time).
unsafe impl Send for Group {}

/// Takes the message the shim allocated.
fn take_message(err: *mut c_char) -> String {
    if err.is_null() {
        return "no message (out of memory?)".into();
    }
    // SAFETY: the shim returns a NUL-terminated string from malloc, ours to free once.
    let s = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    unsafe { ffi::uic_c10d_free_string(err) };
    without_source_location(&s).to_string()
}

/// `m`, with the timeout that passed when `m` says one did.
fn with_timeout(m: &str, timeout: Duration) -> String {
    if m.to_ascii_lowercase().contains("timed out") {
        format!(
            "{} (the timeout is {} s)",
            m.trim_end_matches('!'),
            timeout.as_secs_f64()
        )
    } else {
        m.to_string()
    }
}

/// Gloo's messages start with the C++ source line that threw them
/// (`[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:547] Connection closed by peer`),
/// which says nothing to a user: drop it.
fn without_source_location(m: &str) -> &str {
    if let Some(rest) = m.strip_prefix('[') {
        if let Some((loc, tail)) = rest.split_once("] ") {
            let is_source = loc.rsplit_once(':').is_some_and(|(file, line)| {
                (file.ends_with(".cc") || file.ends_with(".cpp") || file.ends_with(".h"))
                    && line.chars().all(|c| c.is_ascii_digit())
            });
            if is_source {
                return tail;
            }
        }
    }
    m
}

fn check(op: &'static str, rc: i32, err: *mut c_char) -> Result<(), Error> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Error {
            op,
            message: take_message(err),
        })
    }
}

impl Group {
    /// [`check`], naming the group's timeout in a timeout's message (Gloo's says only
    /// "Operation timed out!").
    fn check(&self, op: &'static str, rc: i32, err: *mut c_char) -> Result<(), Error> {
        check(op, rc, err).map_err(|mut e| {
            e.message = with_timeout(&e.message, self.timeout);
            e
        })
    }

    /// Meets the other ranks and connects the group; blocks until all `world` ranks have
    /// arrived, or fails after `r.timeout`.
    ///
    /// # Errors
    /// A refused or timed-out rendezvous, an address that cannot be bound, bad arguments.
    pub fn connect(r: &Rendezvous) -> Result<Group, Error> {
        let bad = |m: String| Error {
            op: "rendezvous",
            message: m,
        };
        if r.world == 0 || r.rank >= r.world {
            return Err(bad(format!(
                "rank {} is not below world size {}",
                r.rank, r.world
            )));
        }
        let cstr = |s: &str| CString::new(s).map_err(|_| bad(format!("{s:?} holds a NUL byte")));
        let host = cstr(&r.host)?;
        let prefix = cstr(&r.prefix)?;
        let bind = cstr(r.bind.as_deref().unwrap_or(""))?;
        let ms = i64::try_from(r.timeout.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let nccl_device = match r.nccl_device {
            None => -1,
            Some(d) => i32::try_from(d).map_err(|_| bad(format!("CUDA device {d}")))?,
        };
        let mut err = std::ptr::null_mut();
        // SAFETY: valid C strings that outlive the call; `err` is written only on failure.
        let raw = unsafe {
            ffi::uic_c10d_new(
                host.as_ptr(),
                r.port,
                r.rank as i32,
                r.world as i32,
                i32::from(r.agent_store),
                prefix.as_ptr(),
                bind.as_ptr(),
                nccl_device,
                ms,
                &mut err,
            )
        };
        match NonNull::new(raw) {
            Some(raw) => Ok(Group {
                raw,
                rank: r.rank,
                world: r.world,
                timeout: r.timeout,
                nccl_device: r.nccl_device,
                overlap: std::sync::Mutex::new(None),
            }),
            None => Err(bad(take_message(err))),
        }
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn world(&self) -> usize {
        self.world
    }

    /// Sums every tensor across ranks, in place. Each tensor is one bucket (Gloo wants one
    /// shape per call); the buckets are reduced concurrently.
    ///
    /// # Errors
    /// A peer that left, a timeout, or tensors that differ across ranks.
    pub fn allreduce_sum(&self, tensors: &mut [Tensor]) -> Result<(), Error> {
        let mut staged = self.staged(tensors);
        let ptrs = tensor_ptrs(&mut staged);
        let mut err = std::ptr::null_mut();
        // SAFETY: the pointers are live tensors of `staged`, borrowed mutably for the call.
        let rc = unsafe {
            ffi::uic_c10d_allreduce_sum(self.raw.as_ptr(), ptrs.as_ptr(), ptrs.len(), &mut err)
        };
        self.check("allreduce", rc, err)?;
        self.unstage(tensors, &staged);
        Ok(())
    }

    /// The device of an NCCL group's collectives; `None` for Gloo, which takes any.
    pub fn device(&self) -> Option<tch::Device> {
        self.nccl_device.map(tch::Device::Cuda)
    }

    /// `t` where the group's collectives can take it: the same tensor for Gloo, a copy on
    /// its CUDA device for NCCL.
    fn on_device(&self, t: &Tensor) -> Tensor {
        match self.device() {
            Some(d) if t.device() != d => t.to_device(d),
            _ => t.shallow_clone(),
        }
    }

    /// [`on_device`](Self::on_device) of each of `tensors`.
    fn staged(&self, tensors: &[Tensor]) -> Vec<Tensor> {
        tensors.iter().map(|t| self.on_device(t)).collect()
    }

    /// Copies the results of [`staged`](Self::staged) copies back into `tensors`.
    fn unstage(&self, tensors: &mut [Tensor], staged: &[Tensor]) {
        for (t, s) in tensors.iter_mut().zip(staged) {
            if t.device() != s.device() {
                t.copy_(s);
            }
        }
    }

    /// Overwrites every tensor with rank `root`'s, in place.
    ///
    /// # Errors
    /// As [`allreduce_sum`](Self::allreduce_sum), and a root outside the group.
    pub fn broadcast(&self, tensors: &mut [Tensor], root: usize) -> Result<(), Error> {
        if root >= self.world {
            return Err(Error {
                op: "broadcast",
                message: format!("root {root} is not below world size {}", self.world),
            });
        }
        let mut staged = self.staged(tensors);
        let ptrs = tensor_ptrs(&mut staged);
        let mut err = std::ptr::null_mut();
        // SAFETY: as in `allreduce_sum`.
        let rc = unsafe {
            ffi::uic_c10d_broadcast(
                self.raw.as_ptr(),
                ptrs.as_ptr(),
                ptrs.len(),
                root as i32,
                &mut err,
            )
        };
        self.check("broadcast", rc, err)?;
        self.unstage(tensors, &staged);
        Ok(())
    }

    /// Every rank's `input` (same shape and type on every rank), stacked along a new first
    /// dimension in rank order: `[world, ..input.size()]`.
    ///
    /// # Errors
    /// As [`allreduce_sum`](Self::allreduce_sum).
    pub fn allgather(&self, input: &Tensor) -> Result<Tensor, Error> {
        let home = input.device();
        let input = self.on_device(&input.contiguous());
        let mut shape = vec![self.world as i64];
        shape.extend(input.size());
        let output = Tensor::empty(&shape, (input.kind(), input.device()));
        let mut err = std::ptr::null_mut();
        // SAFETY: both tensors live through the call; the shim writes only into `output`.
        let rc = unsafe {
            ffi::uic_c10d_allgather(
                self.raw.as_ptr(),
                output.as_ptr() as *mut _,
                input.as_ptr() as *mut _,
                &mut err,
            )
        };
        self.check("allgather", rc, err)?;
        Ok(output.to_device(home))
    }

    /// Waits until every rank has reached its barrier.
    ///
    /// # Errors
    /// As [`allreduce_sum`](Self::allreduce_sum).
    pub fn barrier(&self) -> Result<(), Error> {
        let mut err = std::ptr::null_mut();
        // SAFETY: a live group.
        let rc = unsafe { ffi::uic_c10d_barrier(self.raw.as_ptr(), &mut err) };
        self.check("barrier", rc, err)
    }
}

impl Group {
    /// Arms the gradient sync overlapped with the next backward pass over `params` (leaf
    /// tensors that require gradients, in forward order; the same on every rank): hooks after
    /// each gradient's accumulation sum buckets of about `bucket_bytes` across the ranks,
    /// last parameters first, each as soon as its gradients are in, while backward goes on.
    /// Each gradient is multiplied by `share`; `values` (a 1-d tensor) is summed in place with
    /// the last bucket. [`overlap_finish`](Self::overlap_finish) after backward completes it.
    /// The hooks are made on the first call and again when `params` change.
    ///
    /// # Errors
    /// A parameter that does not require a gradient.
    pub fn overlap_begin(
        &self,
        params: &[Tensor],
        values: &mut Tensor,
        share: f64,
        bucket_bytes: usize,
    ) -> Result<(), Error> {
        let ids: Vec<usize> = params.iter().map(|p| p.data_ptr() as usize).collect();
        let mut slot = self.overlap.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|(_, have)| *have != ids) {
            if let Some((o, _)) = slot.take() {
                // SAFETY: made by `uic_c10d_overlap_new`, freed once.
                unsafe { ffi::uic_c10d_overlap_free(o.as_ptr()) };
            }
        }
        if slot.is_none() {
            let mut ps: Vec<Tensor> = params.iter().map(Tensor::shallow_clone).collect();
            let ptrs = tensor_ptrs(&mut ps);
            let mut err = std::ptr::null_mut();
            // SAFETY: live tensors and group; the shim copies the tensor handles.
            let raw = unsafe {
                ffi::uic_c10d_overlap_new(
                    self.raw.as_ptr(),
                    ptrs.as_ptr(),
                    ptrs.len(),
                    i64::try_from(bucket_bytes).unwrap_or(i64::MAX),
                    &mut err,
                )
            };
            match NonNull::new(raw) {
                Some(o) => *slot = Some((o, ids)),
                None => {
                    return Err(Error {
                        op: "hooking the gradients",
                        message: take_message(err),
                    })
                }
            }
        }
        let (o, _) = slot.as_ref().expect("made above");
        let mut err = std::ptr::null_mut();
        // SAFETY: a live overlap; `values` lives through the call (the shim keeps a handle).
        let rc = unsafe {
            ffi::uic_c10d_overlap_begin(
                o.as_ptr(),
                share,
                values.as_mut_ptr() as *mut ffi::AtTensor,
                &mut err,
            )
        };
        self.check("allreduce", rc, err)
    }

    /// After backward: waits for every bucket [`overlap_begin`](Self::overlap_begin)
    /// started (and starts those whose gradients never came), and writes the sums into the
    /// gradients and the values.
    ///
    /// # Errors
    /// A peer that left, a timeout, or no armed step.
    pub fn overlap_finish(&self) -> Result<(), Error> {
        let slot = self.overlap.lock().unwrap_or_else(|e| e.into_inner());
        let Some((o, _)) = slot.as_ref() else {
            return Err(Error {
                op: "allreduce",
                message: "no overlapped step was begun".into(),
            });
        };
        let mut err = std::ptr::null_mut();
        // SAFETY: a live overlap.
        let rc = unsafe { ffi::uic_c10d_overlap_finish(o.as_ptr(), &mut err) };
        self.check("allreduce", rc, err)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some((o, _)) = self
            .overlap
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            // SAFETY: made by `uic_c10d_overlap_new`, freed once, before its group.
            unsafe { ffi::uic_c10d_overlap_free(o.as_ptr()) };
        }
        // SAFETY: the group was made by `uic_c10d_new` and is freed once.
        unsafe { ffi::uic_c10d_free(self.raw.as_ptr()) }
    }
}

/// A `TCPStore` server, as torchrun's agent hosts one: ranks started with
/// [`Rendezvous::agent_store`] join it as clients. For launchers and tests.
#[derive(Debug)]
pub struct StoreServer {
    raw: NonNull<std::ffi::c_void>,
}

// A TCPStore serves from its own thread; the handle only keeps it alive.
unsafe impl Send for StoreServer {}

impl StoreServer {
    /// Listens on `port` (all interfaces; 0 lets the kernel choose a free one, see
    /// [`port`](Self::port)) for `world` ranks.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub fn host(port: u16, world: usize, timeout: Duration) -> Result<StoreServer, Error> {
        let ms = i64::try_from(timeout.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let mut err = std::ptr::null_mut();
        // SAFETY: plain values; `err` is written only on failure.
        let raw = unsafe { ffi::uic_c10d_store_host(port, world as i32, ms, &mut err) };
        NonNull::new(raw)
            .map(|raw| StoreServer { raw })
            .ok_or_else(|| Error {
                op: "hosting the store",
                message: take_message(err),
            })
    }

    /// The port the store listens on.
    pub fn port(&self) -> u16 {
        // SAFETY: a live store made by `uic_c10d_store_host`.
        unsafe { ffi::uic_c10d_store_port(self.raw.as_ptr()) }
    }
}

impl Drop for StoreServer {
    fn drop(&mut self) {
        // SAFETY: made by `uic_c10d_store_host`, freed once.
        unsafe { ffi::uic_c10d_store_free(self.raw.as_ptr()) }
    }
}

fn tensor_ptrs(tensors: &mut [Tensor]) -> Vec<*mut ffi::AtTensor> {
    tensors
        .iter_mut()
        .map(|t| t.as_mut_ptr() as *mut ffi::AtTensor)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn gloos_source_locations_are_dropped() {
        use super::without_source_location as w;
        assert_eq!(
            w(
                "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:547] Connection closed \
               by peer [127.0.0.1]:1412"
            ),
            "Connection closed by peer [127.0.0.1]:1412"
        );
        assert_eq!(w("Operation timed out!"), "Operation timed out!");
        assert_eq!(w("[rank 1] not a location"), "[rank 1] not a location");
    }

    #[test]
    fn a_timeout_says_how_long_it_was() {
        use super::with_timeout;
        use std::time::Duration;
        let t = Duration::from_secs(60);
        assert_eq!(
            with_timeout("Operation timed out!", t),
            "Operation timed out (the timeout is 60 s)"
        );
        assert_eq!(
            with_timeout("Connection closed by peer", t),
            "Connection closed by peer"
        );
    }
}

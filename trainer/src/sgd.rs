//! SGD with momentum and weight decay, PyTorch's `torch.optim.SGD` update, with state that
//! can be saved and restored exactly (libtorch's optimisers do not expose theirs to tch).
//!
//! For each parameter `p` with gradient `g`:
//! `d = g + wd p; b = d (first step) or m b + d; p -= lr b`.

use std::collections::HashMap;

use tch::Tensor;

/// The optimiser over a fixed, named set of parameters.
#[derive(Debug)]
pub struct Sgd {
    params: Vec<(String, Tensor)>,
    buffers: Vec<Option<Tensor>>,
    momentum: f64,
    weight_decay: f64,
}

impl Sgd {
    /// An optimiser over `params` (name, trainable tensor), sorted by name.
    pub fn new(mut params: Vec<(String, Tensor)>, momentum: f64, weight_decay: f64) -> Self {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let buffers = params.iter().map(|_| None).collect();
        Sgd {
            params,
            buffers,
            momentum,
            weight_decay,
        }
    }

    /// Clears every gradient.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// One update with learning rate `lr`. Parameters without a gradient are skipped.
    pub fn step(&mut self, lr: f64) {
        tch::no_grad(|| {
            // Scalars as 0-d tensors so that `addcmul_` does each scaled add in one kernel
            // without a temporary (tch has no `add_` with `alpha`).
            let (mut wd, mut neg_lr) = (None, None);
            for ((_, p), buf) in self.params.iter_mut().zip(&mut self.buffers) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let opts = (p.kind(), p.device());
                let scalar = |x: f64| Tensor::from(x).to_kind(opts.0).to_device(opts.1);
                let w = (self.weight_decay != 0.0)
                    .then(|| &*wd.get_or_insert_with(|| scalar(self.weight_decay)));
                let l = neg_lr.get_or_insert_with(|| scalar(-lr));
                update(p, g, buf, self.momentum, w, l);
            }
        });
    }

    /// The parameters, in the optimiser's (name) order.
    pub fn parameters(&self) -> Vec<Tensor> {
        self.params.iter().map(|(_, p)| p.shallow_clone()).collect()
    }

    /// Whether any momentum buffer exists (any step was taken).
    pub fn has_momentum(&self) -> bool {
        self.buffers.iter().any(Option::is_some)
    }

    /// Every parameter's momentum buffer, zeros made where there is none yet (the same
    /// update: a zero buffer becomes `0 * momentum + d = d`, as a missing one does), for
    /// copying a state between processes.
    pub fn momentum_buffers(&mut self) -> Vec<Tensor> {
        self.params
            .iter()
            .zip(&mut self.buffers)
            .map(|((_, p), b)| {
                b.get_or_insert_with(|| p.detach().zeros_like())
                    .shallow_clone()
            })
            .collect()
    }

    /// Drops the momentum of the parameters whose name starts with `prefix` (after their
    /// re-initialisation).
    pub fn reset_state(&mut self, prefix: &str) {
        for ((n, _), b) in self.params.iter().zip(&mut self.buffers) {
            if n.starts_with(prefix) {
                *b = None;
            }
        }
    }

    /// The momentum buffers that exist, by parameter name.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .zip(&self.buffers)
            .filter_map(|((n, _), b)| b.as_ref().map(|b| (n.clone(), b.shallow_clone())))
            .collect()
    }

    /// Restores momentum buffers saved by [`state`](Self::state).
    ///
    /// # Errors
    /// A name that is not a parameter, or a shape that differs.
    pub fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<(), StateError> {
        let mut by_name: HashMap<String, Tensor> = state.into_iter().collect();
        for ((n, p), buf) in self.params.iter().zip(&mut self.buffers) {
            *buf = match by_name.remove(n) {
                Some(b) if b.size() == p.size() => Some(b.to_device(p.device())),
                Some(b) => {
                    return Err(StateError::Shape {
                        name: n.clone(),
                        saved: b.size(),
                        param: p.size(),
                    })
                }
                None => None,
            };
        }
        match by_name.into_keys().next() {
            Some(n) => Err(StateError::Unknown(n)),
            None => Ok(()),
        }
    }
}

/// Why saved momentum does not fit the model it is loaded into.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A buffer whose shape is not its parameter's.
    #[error("momentum of {name} has shape {saved:?}, the parameter {param:?}")]
    Shape {
        /// The parameter.
        name: String,
        /// The saved buffer's shape.
        saved: Vec<i64>,
        /// The parameter's shape.
        param: Vec<i64>,
    },
    /// A buffer for a parameter the model does not have.
    #[error("momentum for unknown parameter {0}")]
    Unknown(String),
}

/// The update rule of [`Sgd::step`] for one parameter `p` with gradient `g`, in place:
/// `g += wd p; buf = g (first step) or momentum buf + g; p += neg_lr buf`. `wd` and `neg_lr`
/// broadcast against `p`: 0-d tensors for one rate, or one row each for a stack of
/// parameters that each have their own (the probe grid's). `g` is changed in place (it is
/// the parameter's gradient, zeroed before the next backward pass). Call it under
/// [`tch::no_grad`].
pub fn update(
    p: &mut Tensor,
    mut g: Tensor,
    buf: &mut Option<Tensor>,
    momentum: f64,
    wd: Option<&Tensor>,
    neg_lr: &Tensor,
) {
    if let Some(w) = wd {
        let _ = g.addcmul_(p, w);
    }
    let b = match buf {
        Some(b) => {
            let _ = b.g_mul_scalar_(momentum).g_add_(&g);
            b
        }
        None => buf.insert(g.detach().copy()),
    };
    let _ = p.addcmul_(b, neg_lr);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn matches_the_pytorch_update_by_hand() {
        // One parameter, loss = sum(p^2) / 2, so g = p.
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut opt = Sgd::new(vec![("w".into(), p.shallow_clone())], 0.9, 0.1);
        let mut expect = [1.0f64, -2.0];
        let mut buf = [0.0f64; 2];
        for step in 0..3 {
            opt.zero_grad();
            let loss = (&p * &p).sum(Kind::Float) * 0.5;
            loss.backward();
            opt.step(0.5);
            for j in 0..2 {
                let d = expect[j] + 0.1 * expect[j];
                buf[j] = if step == 0 { d } else { 0.9 * buf[j] + d };
                expect[j] -= 0.5 * buf[j];
            }
        }
        let got: Vec<f32> = Vec::try_from(&p.detach()).unwrap();
        for j in 0..2 {
            assert!(
                (got[j] as f64 - expect[j]).abs() < 1e-5,
                "{got:?} vs {expect:?}"
            );
        }
        assert_eq!(opt.state().len(), 1);
        let _ = Device::Cpu;
    }
}

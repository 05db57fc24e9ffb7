//! Learning-rate schedules, per optimisation step.

use serde::{Deserialize, Serialize};

/// How the learning rate moves from its base value to 0 over a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// `lr (1 - t / T)`: the paper's linear decay.
    #[default]
    Linear,
    /// `lr (1 + cos(pi t / T)) / 2`: the official code's cosine decay.
    Cosine,
    /// `lr` throughout.
    Constant,
}

impl Schedule {
    /// The learning rate of step `t` of `total` (0-based), for base rate `lr`.
    pub fn lr(self, lr: f64, t: u64, total: u64) -> f64 {
        if total == 0 {
            return lr;
        }
        let f = (t.min(total) as f64) / total as f64;
        match self {
            Schedule::Linear => lr * (1.0 - f),
            Schedule::Cosine => lr * 0.5 * (1.0 + (std::f64::consts::PI * f).cos()),
            Schedule::Constant => lr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_start_at_lr_and_end_near_zero() {
        for s in [Schedule::Linear, Schedule::Cosine] {
            assert_eq!(s.lr(0.1, 0, 100), 0.1);
            assert!(s.lr(0.1, 99, 100) < 0.002);
            assert!((s.lr(0.1, 50, 100) - 0.05).abs() < 1e-12);
        }
        assert!((Schedule::Linear.lr(0.1, 25, 100) - 0.075).abs() < 1e-12);
        assert!(
            (Schedule::Cosine.lr(0.1, 25, 100) - 0.1 * (0.5 + 0.5 * 0.5f64.sqrt())).abs() < 1e-12
        );
        assert_eq!(Schedule::Constant.lr(0.1, 99, 100), 0.1);
    }
}

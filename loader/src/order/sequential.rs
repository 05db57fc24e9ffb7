//! Indices in file order.

use super::Order;

/// `0..len`, every epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequential {
    /// Number of samples.
    pub len: usize,
}

impl Order for Sequential {
    fn indices(&self, _epoch: u64) -> Vec<usize> {
        (0..self.len).collect()
    }
}

//! The integration tests of `the `uic` command`, one module per file, built as one test binary (as
//! ripgrep's `tests/tests.rs`): each extra binary would link every dependency again, libtorch included.

mod cli;
mod dist;
mod eval;
mod gpu;
mod preempt;
mod remote;
mod synth;
mod train;

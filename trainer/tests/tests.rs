//! The integration tests of `uic-trainer`, one module per file, built as one test binary (as
//! ripgrep's `tests/tests.rs`): each extra binary would link every dependency again, libtorch included.

mod data_parallel;
mod libtorch;
mod nmi_golden;

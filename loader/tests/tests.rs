//! The integration tests of `uic-loader`, one module per file, built as one test binary (as
//! ripgrep's `tests/tests.rs`): each extra binary would link every dependency again.

mod common;
mod convert_determinism;
mod corrupt_files;
mod crop_decode;
mod fuzz_regressions;
mod hostile_inputs;
mod loader_pipeline;
mod orders;
mod record_roundtrip;
mod remote;
mod tar_input;

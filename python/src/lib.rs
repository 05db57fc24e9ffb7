//! `uic._uic`, the native half of the `uic` Python package: `convert`, `RecordFile` and
//! `Loader` (in the private modules `convert`, `record` and `loader`), thin over the
//! `uic-loader` crate. The Python half (`python/uic/`) re-exports them with type stubs.
//!
//! Rules kept throughout:
//! - The GIL is released while converting, opening, verifying and waiting for batches; waits
//!   are cut into short slices with a signal check between them, so Ctrl-C interrupts.
//! - Errors are the library's messages, as the CLI prints them: `OSError` (with the errno, so
//!   Python picks `FileNotFoundError` and the like) for I/O, `ValueError` otherwise.
//! - A batch's pixels are lent to NumPy without a copy: the array's base object owns the
//!   batch, whose buffer goes back to the loader only when the last array over it is gone.

mod convert;
mod error;
mod loader;
mod record;

use pyo3::prelude::*;

/// The native module.
#[pymodule]
fn _uic(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(convert::convert, m)?)?;
    m.add_function(wrap_pyfunction!(_synth_image_folder, m)?)?;
    m.add_class::<record::RecordFile>()?;
    m.add_class::<loader::Loader>()?;
    m.add_class::<loader::EpochIter>()?;
    m.add_class::<loader::BatchBuffer>()?;
    Ok(())
}

/// Writes an ImageFolder tree of synthetic JPEGs (`classes` x `per_class` images of
/// `size` px, drawn from `seed`) for tests and examples; returns the files written.
#[pyfunction]
#[pyo3(signature = (dir, classes = 4, per_class = 8, size = 64, seed = 0))]
fn _synth_image_folder(
    py: Python<'_>,
    dir: std::path::PathBuf,
    classes: usize,
    per_class: usize,
    size: u32,
    seed: u64,
) -> PyResult<Vec<std::path::PathBuf>> {
    let opts = uic_loader::synth::SynthOptions {
        classes,
        per_class,
        size,
        seed,
    };
    py.detach(|| uic_loader::synth::write_image_folder(&dir, &opts))
        .map_err(error::to_py)
}

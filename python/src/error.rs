//! The loader crate's errors as Python exceptions.

use std::error::Error as _;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::PyErr;
use uic_loader::Error;

/// `OSError` for I/O (built from the errno, so Python raises `FileNotFoundError`,
/// `PermissionError`... where one applies), `ValueError` for everything else. The message
/// is the CLI's: the error and its causes, joined by `: `.
pub fn to_py(e: Error) -> PyErr {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    match &e {
        Error::Io { source, path, .. } => match source.raw_os_error() {
            Some(errno) => PyOSError::new_err((errno, msg, path.display().to_string())),
            None => PyOSError::new_err(msg),
        },
        Error::Remote { .. } => PyOSError::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

/// A `ValueError` with `msg`.
pub fn invalid(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// Issues a Python warning of class `W` (shown once per call site under the default filters).
pub fn warn<W: pyo3::PyTypeInfo>(py: pyo3::Python<'_>, msg: &str) -> pyo3::PyResult<()> {
    let msg = std::ffi::CString::new(msg.replace('\0', " ")).unwrap_or_default();
    PyErr::warn(py, py.get_type::<W>().as_any(), &msg, 1)
}

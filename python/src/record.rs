//! `uic.RecordFile`: a record file, mapped.

use std::path::PathBuf;
use std::sync::Arc;

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::to_py;

/// A record file written by `uic convert`, memory-mapped and validated on open.
#[derive(Debug)]
#[pyclass(module = "uic", name = "RecordFile", frozen)]
pub struct RecordFile {
    pub(crate) file: Arc<uic_loader::RecordFile>,
}

#[pymethods]
impl RecordFile {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let file = py
            .detach(|| uic_loader::RecordFile::open(&path))
            .map_err(to_py)?;
        Ok(RecordFile {
            file: Arc::new(file),
        })
    }

    fn __len__(&self) -> usize {
        self.file.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "RecordFile({:?}, samples={}, classes={}, mode={:?})",
            self.file.path().display().to_string(),
            self.file.len(),
            self.file.num_classes(),
            self.file.mode().to_string()
        )
    }

    /// The file's path.
    #[getter]
    fn path(&self) -> PathBuf {
        self.file.path().to_path_buf()
    }

    /// Number of classes (0 for a file without labels).
    #[getter]
    fn num_classes(&self) -> usize {
        self.file.num_classes()
    }

    /// Class names, in label order.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.file
            .class_names()
            .into_iter()
            .map(|c| c.into_owned())
            .collect()
    }

    /// Storage mode: "jpeg" or "raw".
    #[getter]
    fn mode(&self) -> String {
        self.file.mode().to_string()
    }

    /// Each sample's label as int64, or None for a file without labels.
    #[getter]
    fn labels<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray1<i64>>> {
        let labels = self.file.labels()?;
        let labels: Vec<i64> = labels.into_iter().map(i64::from).collect();
        Some(PyArray1::from_vec(py, labels))
    }

    /// Each sample's source path, as the conversion read it.
    fn source_path(&self, index: usize) -> PyResult<String> {
        if index >= self.file.len() {
            return Err(pyo3::exceptions::PyIndexError::new_err(format!(
                "sample {index} of {}",
                self.file.len()
            )));
        }
        Ok(self.file.source_path_lossy(index).into_owned())
    }

    /// Sample `index` (negative counts from the end) as a dict: `index`, `label` (None
    /// without labels), `width`, `height`, `path`, and `data`, the stored bytes.
    fn __getitem__<'py>(&self, py: Python<'py>, index: isize) -> PyResult<Bound<'py, PyDict>> {
        let n = self.file.len();
        let i = if index < 0 { index + n as isize } else { index };
        if i < 0 || i as usize >= n {
            return Err(pyo3::exceptions::PyIndexError::new_err(format!(
                "sample {index} of {n}"
            )));
        }
        let i = i as usize;
        py.detach(|| self.file.fetch(&[i])).map_err(to_py)?;
        let s = self.file.sample(i);
        let d = PyDict::new(py);
        d.set_item("index", i)?;
        d.set_item("label", s.label)?;
        d.set_item("width", s.width)?;
        d.set_item("height", s.height)?;
        d.set_item("path", self.file.source_path_lossy(i).into_owned())?;
        d.set_item("data", pyo3::types::PyBytes::new(py, s.data))?;
        Ok(d)
    }

    /// Checks every record's CRC-32C; returns the bad ones as dicts (index, path,
    /// expected, actual), an empty list when all are intact.
    fn verify<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let file = self.file.clone();
        let bad = py.detach(move || file.verify());
        bad.into_iter()
            .map(|b| {
                let d = PyDict::new(py);
                d.set_item("index", b.index)?;
                d.set_item("path", b.path)?;
                d.set_item("expected", b.expected)?;
                d.set_item("actual", b.actual)?;
                Ok(d)
            })
            .collect()
    }
}

//! Converting image folders into record files: `uic convert`'s library API.
//!
//! [`discover`](source::discover) turns an input (an ImageFolder tree, a flat folder with a
//! labels CSV, or a file list) into an ordered list of sources; [`prepare`](prepare::prepare)
//! turns one file's bytes into a record or a reason to skip it; [`convert`](run::convert)
//! runs both in parallel and writes the record file and its JSON report.

mod prepare;
mod report;
mod run;
mod source;

pub use prepare::{fit_within, prepare, Codec, PrepareOptions, Prepared};
pub use report::{Report, ReportEntry};
pub use run::{convert, report_path, ConvertOptions, Progress};
pub use source::{discover, Layout, SourceItem, SourceOptions, Sources, IMAGE_EXTENSIONS};

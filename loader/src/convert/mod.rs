//! Converting image folders into record files: `uic convert`'s library API.
//!
//! [`source::discover`] turns an input (an ImageFolder tree, a flat folder with a
//! labels file, a file list, the ImageNet train tar, a tar with a labels file, or WebDataset
//! shards) into an ordered list of sources; [`prepare`](prepare::prepare)
//! turns one file's bytes into a record or a reason to skip it; [`run::convert`]
//! runs both in parallel and writes the record file and its JSON report.

mod labels;
mod prepare;
mod report;
mod run;
mod skip;
mod source;
mod tar;

pub use labels::LabelsFormat;
pub use prepare::{fit_within, prepare, Codec, PrepareOptions, Prepared};
pub use report::{Report, ReportEntry, Skipped};
pub use run::{convert, convert_inputs, report_path, ConvertOptions, Progress};
pub use skip::{NotAClass, SkipReason, TarDamage};
pub use source::{
    discover, discover_inputs, Layout, Origin, SourceItem, SourceOptions, Sources, IMAGE_EXTENSIONS,
};
pub use tar::expand_braces;

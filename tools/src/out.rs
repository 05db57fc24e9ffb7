//! Standard output that a closed pipe ends quietly, as ripgrep does: `uic inspect FILE |
//! head -1` must not panic when `head` has read its line and gone.
//!
//! Rust ignores SIGPIPE, so a write into a pipe whose reader has closed returns `EPIPE`,
//! and `println!` turns that into a panic. Every line of the binary's standard output goes
//! through [`line()`] (by the `outln!` macro) instead, which exits with status 0 when the
//! reader is gone (there is no one left to tell) and with status 1 on any other failure.
//! SIGPIPE is left ignored on purpose: the c10d sockets of a data-parallel run must see a
//! dead peer as an error they can report, not die of a signal.

use std::io::{ErrorKind, Write};

/// Writes `args` and a newline to standard output, flushed at the newline (standard output
/// is line-buffered), ending the process quietly if the reader has gone.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut o = std::io::stdout().lock();
    let r = o
        .write_fmt(args)
        .and_then(|()| o.write_all(b"\n"))
        .and_then(|()| o.flush());
    if let Err(e) = r {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!` through [`line()`].
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}

//! libtorch's OpenMP threads wait passively unless the user says otherwise.
//!
//! libgomp (libtorch's OpenMP runtime) spins at the end of every parallel region before it
//! sleeps (`OMP_WAIT_POLICY` unset: 300,000 spins per wait). On an idle machine that saves
//! a few microseconds at the next region; on a machine whose cores are also busy, with our
//! loader's threads or another process, the spinning threads take the cores from the very
//! threads they wait for. `uic train` with one busy process per core ran ten times slower
//! than idle (2,600 -> 250 images/s); waiting passively it keeps most of its idle rate
//! (docs/benchmarks.md, "A busy machine").
//!
//! libgomp reads its environment once, in its constructor, which runs when libtorch is
//! loaded, before `main`: setting the variable from `main` is too late. Setting it from the
//! executable's `.preinit_array` (which runs before the libraries' constructors) does not
//! work either: glibc's own initialisation then resets the environment to the one the
//! process started with (measured: libgomp still reported `GOMP_SPINCOUNT = '300000'`). So a
//! command that runs libtorch re-executes itself once with `OMP_WAIT_POLICY=PASSIVE` (same
//! process id, arguments and standard streams; about the start-up time of the program
//! again, 0.4 s for a debug build). A value the user set, `ACTIVE` included, is kept and
//! nothing is re-executed; `GOMP_SPINCOUNT` still tunes either policy.

use std::os::unix::process::CommandExt;

/// The variable libgomp reads.
const VAR: &str = "OMP_WAIT_POLICY";

/// Re-executes this program with `OMP_WAIT_POLICY=PASSIVE` if the variable is unset; returns
/// only if it is set, or if the re-execution failed (then libgomp's default stays, which is
/// slower on a busy machine but correct).
pub fn passive_wait() {
    if std::env::var_os(VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let err = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env(VAR, "PASSIVE")
        .exec();
    // `exec` returns only on failure.
    tracing::debug!("could not re-execute {} with {VAR}=PASSIVE: {err}", exe.display());
}

//! libtorch's OpenMP threads spin briefly, not for long, unless the user says otherwise.
//!
//! libgomp (libtorch's OpenMP runtime) spins at the end of every parallel region before it
//! sleeps: 300,000 spins by default. On an idle machine that saves a wake-up at the next
//! region; on a machine whose cores are also busy, with our loader's threads or another
//! process, the spinning threads take the cores from the very threads they wait for.
//! `uic train` with one busy process per core ran 4-10 times slower than idle (2,200 ->
//! 430 images/s here, 2,600 -> 250 on the machine of the report).
//!
//! Measured on 2 cores (docs/benchmarks.md, "A busy machine"): `OMP_WAIT_POLICY=PASSIVE`
//! (no spin) kept 0.45x of the idle rate under load but cost a fifth of the idle rate;
//! `GOMP_SPINCOUNT=10000` kept 0.42x under load at the idle rate of the default. So a
//! command that runs libtorch uses `GOMP_SPINCOUNT=10000` when neither variable is set.
//!
//! libgomp reads its environment once, in its constructor, which runs when libtorch is
//! loaded, before `main`: setting the variable from `main` is too late. Setting it from the
//! executable's `.preinit_array` (which runs before the libraries' constructors) does not
//! work either: glibc's own initialisation then resets the environment to the one the
//! process started with (tried: libgomp still reported `GOMP_SPINCOUNT = '300000'`). So the
//! command re-executes itself once with the variable set (same process id, arguments and
//! standard streams; the cost is the program's start-up again, about 0.25 s for a release
//! build). A value the user set for either variable is kept and nothing is re-executed.

use std::os::unix::process::CommandExt;

/// The spin count chosen (about 10-30 µs of spinning).
pub const SPIN_COUNT: &str = "10000";

/// Re-executes this program with `GOMP_SPINCOUNT` set to [`SPIN_COUNT`] if neither it nor
/// `OMP_WAIT_POLICY` is set; returns only if one is set, or if the re-execution failed (then
/// libgomp's default stays: slower on a busy machine, but correct).
pub fn bounded_spin() {
    if std::env::var_os("OMP_WAIT_POLICY").is_some() || std::env::var_os("GOMP_SPINCOUNT").is_some()
    {
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
        .env("GOMP_SPINCOUNT", SPIN_COUNT)
        .exec();
    // `exec` returns only on failure.
    tracing::debug!(
        "could not re-execute {} with GOMP_SPINCOUNT={SPIN_COUNT}: {err}",
        exe.display()
    );
}

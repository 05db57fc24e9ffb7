//! Ctrl-C, SIGTERM and SIGUSR1. One handler for the process (a thread, not a signal
//! context), which runs what the current command registered. By default an interrupt exits
//! with 130, as a shell expects of an interrupted command; `uic train` instead stops at the
//! next step with a checkpoint, and only a second signal exits at once.
//!
//! SIGINT, SIGTERM and SIGHUP reach the handler through `ctrlc`; SIGUSR1 (what SLURM's
//! `--signal=B:USR1@120` sends ahead of the end of a job's time) is blocked in every thread
//! and taken by a thread of its own with `sigwait`, which then runs the same handler.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// What to do on the `n`th signal (1-based); returns whether to exit now.
type Action = Box<dyn Fn(usize) -> bool + Send>;

static ON_INTERRUPT: Mutex<Option<Action>> = Mutex::new(None);

/// Signals received so far.
static RECEIVED: AtomicUsize = AtomicUsize::new(0);

/// Installs the handlers. Without an action registered, a signal just exits with 130.
/// Call before any thread starts, so that every thread inherits SIGUSR1 blocked.
pub fn install() {
    let _ = ctrlc::set_handler(handle);
    // SAFETY: sigset calls on a local set; pthread_sigmask on this thread only.
    let blocked = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) == 0
    };
    if blocked {
        let _ = std::thread::Builder::new()
            .name("uic-sigusr1".into())
            .spawn(|| loop {
                // SAFETY: as above; sigwait blocks this thread until SIGUSR1 is pending.
                let got = unsafe {
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, libc::SIGUSR1);
                    let mut sig = 0;
                    libc::sigwait(&set, &mut sig) == 0
                };
                if got {
                    handle();
                }
            });
    }
}

fn handle() {
    let n = RECEIVED.fetch_add(1, Ordering::SeqCst) + 1;
    // A progress bar may hold the terminal's last line: clear it, so the message that
    // follows stands on a line of its own.
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprint!("\r\x1b[2K");
    }
    let exit = ON_INTERRUPT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_none_or(|f| f(n));
    if exit {
        // `_exit`, not `exit`: running libtorch's and the C++ runtime's exit-time
        // destructors while its worker threads still run can crash the process instead of
        // ending it. stderr is unbuffered; nothing that stdout still buffers matters after
        // a Ctrl-C.
        // SAFETY: `_exit` ends the process at once; nothing after it runs.
        unsafe { libc::_exit(130) }
    }
}

/// What to do on an interrupt, before exiting: remove partial files, say how to resume.
pub fn on_interrupt(f: impl Fn() + Send + 'static) {
    on_signal(move |_| {
        f();
        true
    });
}

/// Like [`on_interrupt`], but the process does not exit after `f`: for a command that
/// ends itself once `f` has taken effect (the launcher forwards the signal to its ranks,
/// then exits with their status).
pub fn on_interrupt_wait(f: impl Fn() + Send + 'static) {
    on_signal(move |_| {
        f();
        false
    });
}

/// The general form: `f(n)` on the `n`th signal, exiting with 130 when it returns true.
pub fn on_signal(f: impl Fn(usize) -> bool + Send + 'static) {
    *ON_INTERRUPT.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
}

//! Ctrl-C and SIGTERM. One handler for the process (ctrlc's thread, not a signal context),
//! which runs what the current command registered, then exits with 130 as a shell expects
//! of an interrupted command.

use std::sync::Mutex;

type Action = Box<dyn Fn() + Send>;

static ON_INTERRUPT: Mutex<Option<Action>> = Mutex::new(None);

/// Set by [`on_interrupt_wait`]: an interrupt runs the action and returns, and the command
/// ends in its own time (the launcher waits for its ranks to stop).
static NO_EXIT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Installs the handler. Without an action registered, an interrupt just exits with 130.
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        // A progress bar may hold the terminal's last line: clear it, so the message that
        // follows stands on a line of its own.
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprint!("\r\x1b[2K");
        }
        if let Some(f) = ON_INTERRUPT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            f();
        }
        if NO_EXIT.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        // `_exit`, not `exit`: running libtorch's and the C++ runtime's exit-time destructors
        // while its worker threads still run can crash the process instead of ending it.
        // stderr is unbuffered; nothing that stdout still buffers matters after a Ctrl-C.
        // SAFETY: `_exit` ends the process at once; nothing after it runs.
        unsafe { libc::_exit(130) }
    });
}

/// What to do on an interrupt, before exiting: remove partial files, say how to resume.
pub fn on_interrupt(f: impl Fn() + Send + 'static) {
    *ON_INTERRUPT.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
}

/// Like [`on_interrupt`], but the process does not exit after `f`: for a command that
/// ends itself once `f` has taken effect (the launcher forwards the signal to its ranks,
/// then exits with their status).
pub fn on_interrupt_wait(f: impl Fn() + Send + 'static) {
    NO_EXIT.store(true, std::sync::atomic::Ordering::SeqCst);
    on_interrupt(f);
}

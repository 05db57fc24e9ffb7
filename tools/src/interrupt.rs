//! Ctrl-C and SIGTERM. One handler for the process (ctrlc's thread, not a signal context),
//! which runs what the current command registered, then exits with 130 as a shell expects
//! of an interrupted command.

use std::sync::Mutex;

type Action = Box<dyn Fn() + Send>;

static ON_INTERRUPT: Mutex<Option<Action>> = Mutex::new(None);

/// Installs the handler. Without an action registered, an interrupt just exits with 130.
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        if let Some(f) = ON_INTERRUPT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            f();
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

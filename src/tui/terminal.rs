//! The terminal's lifecycle: raw mode and the alternate screen, restored on every way out
//! (drop, panic in the UI's code, a second call), and the panic hook that keeps a listener
//! task's panic off the screen.

use std::cell::Cell;
use std::future::Future;
use std::io::{self, Stdout};
use std::panic::{self, PanicHookInfo};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

pub type Screen = Terminal<CrosstermBackend<Stdout>>;

/// Whether the terminal is in raw mode on the alternate screen, so restoring happens once.
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set while this thread runs the UI's code: a panic there must restore the terminal
    /// before its message is printed, or the message vanishes with the alternate screen.
    static IN_UI: Cell<bool> = const { Cell::new(false) };
}

type PanicHook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Raw mode, the alternate screen and a panic hook that leaves them; dropping the guard
/// restores the terminal and the previous panic hook.
pub struct TerminalGuard {
    previous_hook: Arc<PanicHook>,
}

impl TerminalGuard {
    pub fn enter() -> io::Result<TerminalGuard> {
        let previous_hook: Arc<PanicHook> = Arc::new(panic::take_hook());
        let hook = previous_hook.clone();
        panic::set_hook(Box::new(move |info| {
            if IN_UI.get() {
                restore_terminal();
                hook(info);
            } else {
                // A listener task's panic: keep it off the screen (the log file has it) and
                // let the UI carry on.
                tracing::error!("{info}");
            }
        }));
        let guard = TerminalGuard { previous_hook };
        terminal::enable_raw_mode()?;
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        crossterm::execute!(io::stdout(), EnterAlternateScreen, EnableMouseCapture)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
        // The hook cannot be changed while unwinding; ours stays and restores nothing more.
        if !std::thread::panicking() {
            let previous = self.previous_hook.clone();
            drop(panic::take_hook());
            panic::set_hook(Box::new(move |info| previous(info)));
        }
    }
}

/// Leaves raw mode and the alternate screen and shows the cursor; once, however often called.
fn restore_terminal() {
    if TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
        // Nothing more can be done if the terminal refuses: these are best effort.
        let _ = terminal::disable_raw_mode();
        let _ = crossterm::execute!(
            io::stdout(),
            DisableMouseCapture,
            LeaveAlternateScreen,
            crossterm::cursor::Show
        );
    }
}

/// Marks the thread as running UI code while the UI's future is polled (see `IN_UI`).
pub struct UiScope<F>(pub Pin<Box<F>>);

impl<F: Future> Future for UiScope<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        /// Puts the flag back however the poll ends, unwinding included.
        struct Restore(bool);
        impl Drop for Restore {
            fn drop(&mut self) {
                IN_UI.set(self.0);
            }
        }
        let _restore = Restore(IN_UI.replace(true));
        self.0.as_mut().poll(cx)
    }
}

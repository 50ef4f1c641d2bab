//! The operating system's stop requests.
//!
//! Unix: SIGTERM (what the kubelet sends) and SIGINT. Windows: the console control events
//! CTRL_C, CTRL_BREAK, CTRL_CLOSE and CTRL_SHUTDOWN; a Windows container receives
//! CTRL_SHUTDOWN_EVENT when it is stopped. For CLOSE and SHUTDOWN, Windows ends the process as
//! soon as the handler returns; tokio's handler for those events parks the handler thread, so the
//! process lives on while [`crate::server::run`] drains and `main` returns.
//!
//! Handlers are installed by [`StopSignals::install`] before the listener binds, so a stop that
//! arrives during start-up is not lost.

use std::io;

/// A stream of stop requests; the first starts the drain, a second cuts it short.
pub struct StopSignals {
    inner: imp::Signals,
}

impl StopSignals {
    /// Installs the handlers. Must be called inside a tokio runtime.
    pub fn install() -> io::Result<StopSignals> {
        Ok(StopSignals { inner: imp::Signals::install()? })
    }

    /// Waits for the next stop request and returns its name (`SIGTERM`, `CTRL_SHUTDOWN`, ...).
    pub async fn recv(&mut self) -> &'static str {
        self.inner.recv().await
    }
}

#[cfg(unix)]
mod imp {
    use std::io;

    use tokio::signal::unix::{Signal, SignalKind, signal};

    pub struct Signals {
        terminate: Signal,
        interrupt: Signal,
    }

    impl Signals {
        pub fn install() -> io::Result<Signals> {
            Ok(Signals { terminate: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
        }

        pub async fn recv(&mut self) -> &'static str {
            tokio::select! {
                _ = self.terminate.recv() => "SIGTERM",
                _ = self.interrupt.recv() => "SIGINT",
            }
        }
    }
}

#[cfg(windows)]
mod imp {
    use std::io;

    use tokio::signal::windows::{
        CtrlBreak, CtrlC, CtrlClose, CtrlShutdown, ctrl_break, ctrl_c, ctrl_close, ctrl_shutdown,
    };

    pub struct Signals {
        c: CtrlC,
        brk: CtrlBreak,
        close: CtrlClose,
        shutdown: CtrlShutdown,
    }

    impl Signals {
        pub fn install() -> io::Result<Signals> {
            Ok(Signals { c: ctrl_c()?, brk: ctrl_break()?, close: ctrl_close()?, shutdown: ctrl_shutdown()? })
        }

        pub async fn recv(&mut self) -> &'static str {
            tokio::select! {
                _ = self.c.recv() => "CTRL_C",
                _ = self.brk.recv() => "CTRL_BREAK",
                _ = self.close.recv() => "CTRL_CLOSE",
                _ = self.shutdown.recv() => "CTRL_SHUTDOWN",
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn handlers_install_in_a_runtime() {
        // Installing must succeed on every platform we build for; delivery is covered by the
        // black-box drain tests (Unix) and the wine suite (Windows).
        let _signals = StopSignals::install().expect("stop handlers install");
    }
}

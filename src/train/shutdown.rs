//! Graceful shutdown on Ctrl-C (SIGINT) and SIGTERM: the first signal sets a flag that the loop
//! polls between steps (to finish the step, write `last.ckpt` and flush the logs); a second one
//! exits at once with the shell's code for the signal (130 for SIGINT, 143 for SIGTERM).

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::SigId;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The signal handlers could not be installed.
#[derive(Debug, thiserror::Error)]
#[error(
    "could not install the Ctrl-C/SIGTERM handler: {0}; the run would not stop cleanly, \
     so it does not start"
)]
pub struct ShutdownError(#[from] io::Error);

/// A stop request set by SIGINT or SIGTERM (or by [`ShutdownSignal::request`]).
#[derive(Debug)]
pub struct ShutdownSignal {
    requested: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
    handlers: Vec<SigId>,
}

impl ShutdownSignal {
    /// Installs the handlers; they are removed again when the value is dropped.
    pub fn install() -> Result<Self, ShutdownError> {
        let requested = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        let mut handlers = Vec::new();
        for (sig, code) in [(SIGINT, 130), (SIGTERM, 143)] {
            // Registered first, so that it sees the flag as it was before this signal.
            handlers.push(signal_hook::flag::register_conditional_shutdown(
                sig,
                code,
                Arc::clone(&requested),
            )?);
            handlers.push(signal_hook::flag::register(sig, Arc::clone(&requested))?);
            handlers.push(signal_hook::flag::register_usize(
                sig,
                Arc::clone(&signal),
                sig as usize,
            )?);
        }
        Ok(ShutdownSignal {
            requested,
            signal,
            handlers,
        })
    }

    /// A signal that no OS signal sets (tests, or a stop asked for by the program itself).
    pub fn manual() -> Self {
        ShutdownSignal {
            requested: Arc::new(AtomicBool::new(false)),
            signal: Arc::new(AtomicUsize::new(0)),
            handlers: Vec::new(),
        }
    }

    /// Whether a stop was requested; the loop polls this after every optimizer step.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Asks the loop to stop, as a first Ctrl-C would.
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }

    /// The name of the signal that asked for the stop (`SIGINT`, `SIGTERM`), if one did.
    pub fn signal_name(&self) -> Option<&'static str> {
        match self.signal.load(Ordering::SeqCst) as i32 {
            SIGINT => Some("SIGINT"),
            SIGTERM => Some("SIGTERM"),
            _ => None,
        }
    }
}

impl Drop for ShutdownSignal {
    fn drop(&mut self) {
        for id in self.handlers.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Duration;

    const CHILD_ENV: &str = "FLOWRUN_SHUTDOWN_TEST_CHILD";

    /// Runs `child_process` in a fresh test process (signals would hit the whole test binary).
    fn run_child(mode: &str) -> std::process::Output {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "train::shutdown::tests::child_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, mode)
            .output()
            .unwrap()
    }

    #[test]
    #[ignore = "run by the other shutdown tests in a child process"]
    fn child_process() {
        let Ok(mode) = std::env::var(CHILD_ENV) else {
            return;
        };
        let stop = ShutdownSignal::install().unwrap();
        let sig = if mode.ends_with("term") {
            SIGTERM
        } else {
            SIGINT
        };
        signal_hook::low_level::raise(sig).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        println!(
            "first: requested={} by {:?}",
            stop.requested(),
            stop.signal_name()
        );
        if mode.starts_with("twice") {
            signal_hook::low_level::raise(sig).unwrap();
            std::thread::sleep(Duration::from_millis(500));
            println!("still running after the second signal");
        }
    }

    #[test]
    fn a_first_signal_only_sets_the_flag() {
        for (mode, name) in [("once-int", "SIGINT"), ("once-term", "SIGTERM")] {
            let out = run_child(mode);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{mode}: {stdout}");
            assert!(
                stdout.contains(&format!("first: requested=true by Some(\"{name}\")")),
                "{mode}: {stdout}"
            );
        }
    }

    #[test]
    fn a_second_signal_exits_at_once() {
        for (mode, code) in [("twice-int", 130), ("twice-term", 143)] {
            let out = run_child(mode);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(code), "{mode}: {stdout}");
            assert!(stdout.contains("first: requested=true"), "{stdout}");
            assert!(!stdout.contains("still running"), "{stdout}");
        }
    }

    #[test]
    fn a_manual_signal_is_requested_by_the_program() {
        let stop = ShutdownSignal::manual();
        assert!(!stop.requested());
        stop.request();
        assert!(stop.requested());
        assert_eq!(stop.signal_name(), None);
    }
}

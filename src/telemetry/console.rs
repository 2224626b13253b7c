//! Training progress on the console, and its copy in `<run>/train.log`.
//!
//! On a terminal an indicatif bar shows epoch, step, loss, lr, samples/s, data-wait % and ETA.
//! Elsewhere (Slurm logs, `nohup`, pipes) a plain line is printed every `plain_interval`, so log
//! files stay readable. Every line printed (messages, periodic lines, the summary) is also
//! appended to `train.log`, written line by line for `tail -f`; in terminal mode the periodic
//! lines go only to `train.log`. Console writes are best effort (a closed terminal does not stop
//! training); `train.log` failures are returned.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::TelemetryError;

/// The log file every console line is copied to, inside the run directory.
pub const TRAIN_LOG_FILE: &str = "train.log";

/// Whether progress is drawn as a bar or printed as periodic lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DisplayMode {
    /// A bar when standard output is a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Always the bar (indicatif draws nothing when stdout is not a terminal).
    Terminal,
    /// Always plain lines.
    Plain,
}

impl DisplayMode {
    /// Resolves `Auto` with `stdout_is_terminal`; `true` means draw a bar.
    pub fn uses_bar(self, stdout_is_terminal: bool) -> bool {
        match self {
            DisplayMode::Auto => stdout_is_terminal,
            DisplayMode::Terminal => true,
            DisplayMode::Plain => false,
        }
    }
}

/// How the console reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// Bar, plain lines, or decided by the terminal.
    pub mode: DisplayMode,
    /// Time between periodic lines (on the console in plain mode, and in `train.log`).
    pub plain_interval: Duration,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            mode: DisplayMode::Auto,
            plain_interval: Duration::from_secs(30),
        }
    }
}

/// The numbers one progress update shows.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProgressStats {
    /// The current epoch.
    pub epoch: u64,
    /// The global step reached.
    pub step: u64,
    /// The latest (or smoothed) training loss.
    pub loss: f64,
    /// The current learning rate.
    pub lr: f64,
    /// Training throughput.
    pub samples_per_s: f64,
    /// Fraction of step time spent waiting for data, in `[0, 1]`.
    pub data_wait_frac: f64,
}

enum Display {
    Bar(ProgressBar),
    Plain(Box<dyn Write + Send>),
}

/// The console and `train.log` of one run; see the module docs.
pub struct Console {
    display: Display,
    log_path: PathBuf,
    log: File,
    total_steps: u64,
    settings: ConsoleSettings,
    started: Instant,
    first_update: Option<(u64, Instant)>,
    last_periodic_line: Option<Instant>,
    pending: Option<ProgressStats>,
}

impl Console {
    /// A console for a run of `total_steps` steps, appending to `<run_dir>/train.log`.
    pub fn new(
        run_dir: &Path,
        total_steps: u64,
        settings: ConsoleSettings,
    ) -> Result<Self, TelemetryError> {
        let display = if settings.mode.uses_bar(std::io::stdout().is_terminal()) {
            let bar =
                ProgressBar::with_draw_target(Some(total_steps), ProgressDrawTarget::stdout());
            if let Ok(style) = ProgressStyle::with_template("{bar:30.cyan/blue} {msg}") {
                bar.set_style(style.progress_chars("=> "));
            }
            Display::Bar(bar)
        } else {
            Display::Plain(Box::new(std::io::stdout()))
        };
        Self::with_display(run_dir, total_steps, settings, display)
    }

    /// A plain-line console printing to `out` instead of standard output (tests, embedding).
    pub fn with_plain_output(
        run_dir: &Path,
        total_steps: u64,
        settings: ConsoleSettings,
        out: Box<dyn Write + Send>,
    ) -> Result<Self, TelemetryError> {
        Self::with_display(run_dir, total_steps, settings, Display::Plain(out))
    }

    fn with_display(
        run_dir: &Path,
        total_steps: u64,
        settings: ConsoleSettings,
        display: Display,
    ) -> Result<Self, TelemetryError> {
        let log_path = run_dir.join(TRAIN_LOG_FILE);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| TelemetryError::io("open", &log_path, e))?;
        Ok(Console {
            display,
            log_path,
            log,
            total_steps,
            settings,
            started: Instant::now(),
            first_update: None,
            last_periodic_line: None,
            pending: None,
        })
    }

    /// The `train.log` being appended to.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Whether progress is drawn as a bar.
    pub fn uses_bar(&self) -> bool {
        matches!(self.display, Display::Bar(_))
    }

    /// Shows new progress: redraws the bar, and prints a periodic line when one is due.
    pub fn update(&mut self, stats: &ProgressStats) -> Result<(), TelemetryError> {
        let now = Instant::now();
        self.first_update.get_or_insert((stats.step, now));
        if let Display::Bar(bar) = &self.display {
            bar.set_position(stats.step.min(self.total_steps));
            bar.set_message(self.progress_line(stats, now));
        }
        self.pending = Some(*stats);
        let due = self
            .last_periodic_line
            .is_none_or(|last| now.duration_since(last) >= self.settings.plain_interval);
        if due {
            self.print_periodic_line(now)?;
        }
        Ok(())
    }

    /// Prints a message above the bar (or as a line) and appends it to `train.log`.
    pub fn println(&mut self, message: &str) -> Result<(), TelemetryError> {
        match &mut self.display {
            Display::Bar(bar) => bar.println(message),
            Display::Plain(out) => {
                let _ = writeln!(out, "{message}").and_then(|_| out.flush());
            }
        }
        self.append_to_log(message)
    }

    /// Prints the last progress line if not yet shown, clears the bar, then prints `summary`.
    pub fn finish(&mut self, summary: &str) -> Result<(), TelemetryError> {
        if self.pending.is_some() {
            self.print_periodic_line(Instant::now())?;
        }
        if let Display::Bar(bar) = &self.display {
            bar.finish_and_clear();
        }
        self.println(summary)
    }

    fn print_periodic_line(&mut self, now: Instant) -> Result<(), TelemetryError> {
        let Some(stats) = self.pending.take() else {
            return Ok(());
        };
        self.last_periodic_line = Some(now);
        let line = self.progress_line(&stats, now);
        if let Display::Plain(out) = &mut self.display {
            let _ = writeln!(out, "{line}").and_then(|_| out.flush());
        }
        self.append_to_log(&line)
    }

    fn append_to_log(&mut self, text: &str) -> Result<(), TelemetryError> {
        let mut line = String::with_capacity(text.len() + 1);
        line.push_str(text);
        line.push('\n');
        self.log
            .write_all(line.as_bytes())
            .map_err(|e| TelemetryError::io("append to", &self.log_path, e))
    }

    /// Estimated time to `total_steps` at the rate since the first update, if any progress yet.
    fn eta(&self, step: u64, now: Instant) -> Option<Duration> {
        let (first_step, first_time) = self.first_update?;
        let done = step.checked_sub(first_step).filter(|&d| d > 0)?;
        let per_step = now.duration_since(first_time).as_secs_f64() / done as f64;
        let left = self.total_steps.saturating_sub(step) as f64;
        Some(Duration::from_secs_f64(per_step * left))
    }

    fn progress_line(&self, stats: &ProgressStats, now: Instant) -> String {
        let percent = if self.total_steps == 0 {
            100.0
        } else {
            100.0 * stats.step as f64 / self.total_steps as f64
        };
        let eta = self
            .eta(stats.step, now)
            .map(format_duration)
            .unwrap_or_else(|| "?".to_string());
        format!(
            "epoch {} | step {}/{} ({percent:.1}%) | loss {} | lr {:.2e} | {:.1} samples/s | data-wait {:.1}% | elapsed {} | eta {eta}",
            stats.epoch,
            stats.step,
            self.total_steps,
            format_loss(stats.loss),
            stats.lr,
            stats.samples_per_s,
            100.0 * stats.data_wait_frac,
            format_duration(now.duration_since(self.started)),
        )
    }
}

/// A loss with four decimals, or in scientific notation when that would hide it.
fn format_loss(loss: f64) -> String {
    if loss != 0.0 && loss.is_finite() && (loss.abs() < 1e-3 || loss.abs() >= 1e4) {
        format!("{loss:.3e}")
    } else {
        format!("{loss:.4}")
    }
}

/// `H:MM:SS`, hours unbounded.
fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_follows_the_terminal_and_forced_modes_do_not() {
        assert!(DisplayMode::Auto.uses_bar(true));
        assert!(!DisplayMode::Auto.uses_bar(false));
        assert!(DisplayMode::Terminal.uses_bar(false));
        assert!(!DisplayMode::Plain.uses_bar(true));
    }

    #[test]
    fn durations_and_losses_format_readably() {
        assert_eq!(format_duration(Duration::from_secs(0)), "0:00:00");
        assert_eq!(
            format_duration(Duration::from_secs(3 * 3600 + 62)),
            "3:01:02"
        );
        assert_eq!(
            format_duration(Duration::from_secs(100 * 3600)),
            "100:00:00"
        );
        assert_eq!(format_loss(0.12345), "0.1235");
        assert_eq!(format_loss(0.0), "0.0000");
        assert_eq!(format_loss(2.5e-5), "2.500e-5");
        assert_eq!(format_loss(f64::NAN), "NaN");
    }

    #[test]
    fn eta_needs_progress_and_scales_with_the_steps_left() {
        let dir = tempfile::tempdir().unwrap();
        let settings = ConsoleSettings {
            mode: DisplayMode::Plain,
            plain_interval: Duration::from_secs(3600),
        };
        let mut console =
            Console::with_plain_output(dir.path(), 1000, settings, Box::new(std::io::sink()))
                .unwrap();
        let start = Instant::now();
        console.first_update = Some((100, start));
        assert_eq!(console.eta(100, start + Duration::from_secs(5)), None);
        let eta = console.eta(200, start + Duration::from_secs(10)).unwrap();
        assert_eq!(eta.as_secs(), 80);
    }
}

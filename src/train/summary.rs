//! What a finished training run reports: why it ended and its end-of-run summary.

use std::path::PathBuf;
use std::time::Duration;

/// Why a run ended without an error.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// The step or epoch budget is spent.
    Finished,
    /// Early stopping fired.
    EarlyStopping(String),
    /// SIGINT or SIGTERM asked for a stop.
    Interrupted(&'static str),
}

/// The end-of-run summary.
#[derive(Debug, Clone)]
pub struct FitSummary {
    /// Optimizer steps taken in total (including those before a resume).
    pub steps: u64,
    /// Epochs started.
    pub epochs: u64,
    /// Wall time of this process's training.
    pub wall_time: Duration,
    /// Mean training throughput of this process.
    pub samples_per_s: f64,
    /// The best monitored value and its checkpoint.
    pub best: Option<(f64, PathBuf)>,
    /// The last validation loss.
    pub last_val_loss: Option<f64>,
    /// Why the run ended.
    pub stop: StopReason,
}

impl FitSummary {
    /// The summary as console lines.
    pub fn render(&self, monitor: &str) -> String {
        let mut out = String::new();
        let how = match &self.stop {
            StopReason::Finished => "finished".to_string(),
            StopReason::EarlyStopping(why) => format!("stopped early: {why}"),
            StopReason::Interrupted(sig) => format!("interrupted by {sig}"),
        };
        out.push_str(&format!(
            "training {how} after {} steps ({} epochs) in {:.1} s, {:.1} samples/s\n",
            self.steps,
            self.epochs,
            self.wall_time.as_secs_f64(),
            self.samples_per_s
        ));
        if let Some((score, path)) = &self.best {
            out.push_str(&format!(
                "best {monitor}: {score:.6} ({})\n",
                path.display()
            ));
        } else if let Some(v) = self.last_val_loss {
            out.push_str(&format!("last val_loss: {v:.6}\n"));
        }
        out
    }
}

//! Which checkpoint files to write and which to delete (Lightning's `ModelCheckpoint`, shaped as
//! burn-train's strategies): plain data that is told about steps, epochs and validations and
//! answers with [`CheckpointAction`]s. It does no I/O; the loop carries the actions out.
//!
//! Files, all in the run's `checkpoints/` directory:
//! * `last.ckpt`: every `checkpoint.last_every_n_steps` optimizer steps, at the end of every
//!   `checkpoint.every_n_epochs`-th epoch and when the run ends (when `save_last` is true);
//! * `epoch{EEE}-{monitor}{X.XXXX}.ckpt` (e.g. `epoch003-val_loss0.1234.ckpt`): the
//!   `save_top_k` best validations by `monitor` (`mode` min or max; -1 keeps every one);
//! * `step{N}.ckpt`: every `checkpoint.every_n_steps` optimizer steps, the newest
//!   `save_total_limit` kept.
//!
//! The loop should write the files of the `Save` actions before carrying out the `Delete`s, with
//! [`CheckpointPolicy::state`] (which already counts the new files) inside each file.

use crate::config::schema::{CheckpointSettings, MonitorMode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The name of the rolling latest checkpoint.
pub const LAST_FILE: &str = "last.ckpt";

/// Why a checkpoint file is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SaveReason {
    /// The rolling `last.ckpt`.
    Last,
    /// One of the best `save_top_k` by the monitored metric.
    TopK {
        /// The monitored value.
        score: f64,
        /// 1 for the best kept file.
        rank: usize,
    },
    /// A regular `step{N}.ckpt`.
    Regular,
}

/// One thing the loop must do with the checkpoint directory.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckpointAction {
    /// Write the current state to `file` (a name inside `checkpoints/`).
    Save {
        /// The file name.
        file: String,
        /// Why it is written.
        reason: SaveReason,
    },
    /// Delete `file` (a name inside `checkpoints/`), which the policy no longer keeps.
    Delete {
        /// The file name.
        file: String,
    },
}

/// A kept top-k checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredCheckpoint {
    /// The file name.
    pub file: String,
    /// The monitored value it was saved with.
    pub score: f64,
    /// The global step it was saved at.
    pub step: u64,
    /// The epoch it was saved in.
    pub epoch: u64,
}

/// A kept regular `step{N}.ckpt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegularCheckpoint {
    /// The file name.
    pub file: String,
    /// The global step it was saved at.
    pub step: u64,
}

/// What the policy remembers between decisions, saved inside every checkpoint for resume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointPolicyState {
    /// The kept top-k checkpoints, best first.
    pub best: Vec<ScoredCheckpoint>,
    /// The kept regular checkpoints, oldest first.
    pub regular: Vec<RegularCheckpoint>,
    /// The global step `last.ckpt` was last written at.
    pub last_saved_step: Option<u64>,
}

/// The monitored metric is not among the validation's metrics.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key} is '{monitor}', but validation logged only: {logged}; set {key} to one of them")]
pub struct MissingMetric {
    /// The config key naming the metric (`checkpoint.monitor`).
    pub key: &'static str,
    /// The configured metric name.
    pub monitor: String,
    /// The metrics that were logged, comma-separated.
    pub logged: String,
}

/// The value of `monitor` among `metrics`, or the error naming the config `key` to fix.
pub fn monitored_value(
    key: &'static str,
    monitor: &str,
    metrics: &BTreeMap<String, f64>,
) -> Result<f64, MissingMetric> {
    metrics.get(monitor).copied().ok_or_else(|| MissingMetric {
        key,
        monitor: monitor.to_string(),
        logged: metrics.keys().cloned().collect::<Vec<_>>().join(", "),
    })
}

/// The checkpoint policy of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointPolicy {
    settings: CheckpointSettings,
    state: CheckpointPolicyState,
}

impl CheckpointPolicy {
    /// A fresh policy from the `checkpoint` settings.
    pub fn new(settings: &CheckpointSettings) -> Self {
        CheckpointPolicy {
            settings: settings.clone(),
            state: CheckpointPolicyState::default(),
        }
    }

    /// The policy continued from a checkpoint's state.
    pub fn with_state(mut self, state: CheckpointPolicyState) -> Self {
        self.state = state;
        self
    }

    /// The state to save inside the checkpoints.
    pub fn state(&self) -> &CheckpointPolicyState {
        &self.state
    }

    /// The best kept checkpoint by the monitored metric.
    pub fn best(&self) -> Option<&ScoredCheckpoint> {
        self.state.best.first()
    }

    /// The metric that ranks checkpoints.
    pub fn monitor(&self) -> &str {
        &self.settings.monitor
    }

    fn save_last(&mut self, step: u64, actions: &mut Vec<CheckpointAction>) {
        if !self.settings.save_last || self.state.last_saved_step == Some(step) {
            return;
        }
        self.state.last_saved_step = Some(step);
        actions.push(CheckpointAction::Save {
            file: LAST_FILE.to_string(),
            reason: SaveReason::Last,
        });
    }

    /// After optimizer step number `step` (1 for the first): `last.ckpt` and `step{N}.ckpt` on
    /// their cadences, and the regular files past `save_total_limit` deleted.
    pub fn on_step(&mut self, step: u64) -> Vec<CheckpointAction> {
        let mut actions = Vec::new();
        if is_due(step, self.settings.last_every_n_steps) {
            self.save_last(step, &mut actions);
        }
        if is_due(step, self.settings.every_n_steps) {
            let file = format!("step{step}.ckpt");
            if !self.state.regular.iter().any(|r| r.file == file) {
                self.state.regular.push(RegularCheckpoint {
                    file: file.clone(),
                    step,
                });
                actions.push(CheckpointAction::Save {
                    file,
                    reason: SaveReason::Regular,
                });
            }
            if let Some(limit) = self.settings.save_total_limit {
                let excess = self.state.regular.len().saturating_sub(limit as usize);
                for old in self.state.regular.drain(..excess) {
                    actions.push(CheckpointAction::Delete { file: old.file });
                }
            }
        }
        actions
    }

    /// At the end of epoch `epoch` (0-based) after `step` optimizer steps: `last.ckpt` on every
    /// `every_n_epochs`-th epoch.
    pub fn on_epoch_end(&mut self, epoch: u64, step: u64) -> Vec<CheckpointAction> {
        let mut actions = Vec::new();
        if is_due(epoch + 1, self.settings.every_n_epochs) {
            self.save_last(step, &mut actions);
        }
        actions
    }

    /// When the run ends for any reason (budget reached, early stop, Ctrl-C, abort): `last.ckpt`.
    pub fn on_end(&mut self, step: u64) -> Vec<CheckpointAction> {
        let mut actions = Vec::new();
        self.save_last(step, &mut actions);
        actions
    }

    /// After a validation in epoch `epoch` at global step `step`: a top-k file when the monitored
    /// value ranks among the best kept, and the file it pushes out deleted.
    pub fn on_validation(
        &mut self,
        epoch: u64,
        step: u64,
        metrics: &BTreeMap<String, f64>,
    ) -> Result<Vec<CheckpointAction>, MissingMetric> {
        let score = monitored_value("checkpoint.monitor", &self.settings.monitor, metrics)?;
        let k = self.settings.save_top_k;
        // Files beyond a save_top_k lowered since the state was saved.
        let mut actions: Vec<CheckpointAction> = match usize::try_from(k) {
            Ok(keep) if keep < self.state.best.len() => self
                .state
                .best
                .drain(keep..)
                .map(|dropped| CheckpointAction::Delete { file: dropped.file })
                .collect(),
            _ => Vec::new(),
        };
        if k == 0 || !score.is_finite() {
            return Ok(actions);
        }
        let mode = self.settings.mode;
        let rank = self
            .state
            .best
            .iter()
            .position(|kept| better(mode, score, kept.score))
            .unwrap_or(self.state.best.len());
        if k > 0 && rank >= k as usize {
            return Ok(actions);
        }
        let file = self.top_k_name(epoch, score);
        self.state.best.insert(
            rank,
            ScoredCheckpoint {
                file: file.clone(),
                score,
                step,
                epoch,
            },
        );
        actions.insert(
            0,
            CheckpointAction::Save {
                file,
                reason: SaveReason::TopK {
                    score,
                    rank: rank + 1,
                },
            },
        );
        if k > 0 {
            for dropped in self
                .state
                .best
                .drain((k as usize).min(self.state.best.len())..)
            {
                actions.push(CheckpointAction::Delete { file: dropped.file });
            }
        }
        Ok(actions)
    }

    /// `epoch{EEE}-{monitor}{X.XXXX}.ckpt`, with `-v1`, `-v2`, ... when that name is kept already.
    fn top_k_name(&self, epoch: u64, score: f64) -> String {
        let metric: String = self
            .settings
            .monitor
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let stem = format!("epoch{epoch:03}-{metric}{score:.4}");
        let taken = |name: &str| self.state.best.iter().any(|b| b.file == name);
        let mut name = format!("{stem}.ckpt");
        let mut version = 1;
        while taken(&name) {
            name = format!("{stem}-v{version}.ckpt");
            version += 1;
        }
        name
    }
}

fn is_due(count: u64, every: Option<u64>) -> bool {
    matches!(every, Some(n) if n > 0 && count > 0 && count % n == 0)
}

fn better(mode: MonitorMode, a: f64, b: f64) -> bool {
    match mode {
        MonitorMode::Min => a < b,
        MonitorMode::Max => a > b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CheckpointSettings {
        CheckpointSettings {
            save_last: true,
            save_top_k: 2,
            monitor: "val_loss".into(),
            mode: MonitorMode::Min,
            every_n_epochs: Some(1),
            every_n_steps: None,
            last_every_n_steps: None,
            save_total_limit: None,
        }
    }

    fn val(p: &mut CheckpointPolicy, epoch: u64, loss: f64) -> Vec<CheckpointAction> {
        let metrics = BTreeMap::from([("val_loss".to_string(), loss)]);
        p.on_validation(epoch, epoch * 10, &metrics).unwrap()
    }

    fn save(file: &str) -> String {
        format!("save {file}")
    }

    fn describe(actions: &[CheckpointAction]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                CheckpointAction::Save { file, .. } => save(file),
                CheckpointAction::Delete { file } => format!("delete {file}"),
            })
            .collect()
    }

    #[test]
    fn top_k_keeps_the_best_and_deletes_the_pushed_out() {
        let mut p = CheckpointPolicy::new(&settings());
        assert_eq!(
            describe(&val(&mut p, 0, 0.5)),
            [save("epoch000-val_loss0.5000.ckpt")]
        );
        assert_eq!(
            describe(&val(&mut p, 1, 0.3)),
            [save("epoch001-val_loss0.3000.ckpt")]
        );
        assert!(val(&mut p, 2, 0.6).is_empty());
        assert_eq!(
            describe(&val(&mut p, 3, 0.4)),
            [
                save("epoch003-val_loss0.4000.ckpt"),
                "delete epoch000-val_loss0.5000.ckpt".to_string()
            ]
        );
        assert_eq!(p.best().unwrap().file, "epoch001-val_loss0.3000.ckpt");
        let ranks: Vec<f64> = p.state().best.iter().map(|b| b.score).collect();
        assert_eq!(ranks, [0.3, 0.4]);
    }

    #[test]
    fn top_k_reports_the_rank_and_handles_max_mode_and_keep_all() {
        let mut s = settings();
        s.mode = MonitorMode::Max;
        s.save_top_k = -1;
        let mut p = CheckpointPolicy::new(&s);
        val(&mut p, 0, 0.1);
        let actions = val(&mut p, 1, 0.9);
        assert_eq!(
            actions,
            [CheckpointAction::Save {
                file: "epoch001-val_loss0.9000.ckpt".into(),
                reason: SaveReason::TopK {
                    score: 0.9,
                    rank: 1
                }
            }]
        );
        val(&mut p, 2, 0.05);
        assert_eq!(p.state().best.len(), 3);
        assert!(val(&mut p, 3, f64::NAN).is_empty());
    }

    #[test]
    fn same_epoch_and_score_get_a_version_suffix() {
        let mut s = settings();
        s.save_top_k = 3;
        let mut p = CheckpointPolicy::new(&s);
        val(&mut p, 4, 0.25);
        assert_eq!(
            describe(&val(&mut p, 4, 0.24999)),
            [save("epoch004-val_loss0.2500-v1.ckpt")]
        );
    }

    #[test]
    fn a_missing_monitor_names_the_logged_metrics() {
        let mut s = settings();
        s.monitor = "val/fid".into();
        let mut p = CheckpointPolicy::new(&s);
        let metrics = BTreeMap::from([("val_loss".to_string(), 1.0)]);
        let err = p.on_validation(0, 0, &metrics).unwrap_err();
        assert_eq!(
            err.to_string(),
            "checkpoint.monitor is 'val/fid', but validation logged only: val_loss; set \
             checkpoint.monitor to one of them"
        );
    }

    #[test]
    fn last_follows_its_cadences_and_is_written_once_per_step() {
        let mut s = settings();
        s.last_every_n_steps = Some(5);
        s.every_n_epochs = Some(2);
        let mut p = CheckpointPolicy::new(&s);
        assert!(p.on_step(4).is_empty());
        assert_eq!(describe(&p.on_step(5)), [save(LAST_FILE)]);
        assert!(p.on_epoch_end(0, 7).is_empty());
        assert_eq!(describe(&p.on_epoch_end(1, 10)), [save(LAST_FILE)]);
        assert!(p.on_step(10).is_empty(), "already written at step 10");
        assert_eq!(describe(&p.on_end(12)), [save(LAST_FILE)]);
        s.save_last = false;
        let mut p = CheckpointPolicy::new(&s);
        assert!(p.on_step(5).is_empty() && p.on_end(6).is_empty());
    }

    #[test]
    fn regular_files_respect_the_total_limit() {
        let mut s = settings();
        s.every_n_steps = Some(100);
        s.save_total_limit = Some(2);
        let mut p = CheckpointPolicy::new(&s);
        let mut all = Vec::new();
        for step in 1..=300 {
            all.extend(describe(&p.on_step(step)));
        }
        assert_eq!(
            all,
            [
                save("step100.ckpt"),
                save("step200.ckpt"),
                save("step300.ckpt"),
                "delete step100.ckpt".to_string()
            ]
        );
    }

    #[test]
    fn a_lowered_save_top_k_trims_the_kept_files_at_the_next_validation() {
        let mut s = settings();
        s.save_top_k = 3;
        let mut p = CheckpointPolicy::new(&s);
        for (epoch, loss) in [(0, 0.3), (1, 0.2), (2, 0.1)] {
            val(&mut p, epoch, loss);
        }
        s.save_top_k = 1;
        let mut p = CheckpointPolicy::new(&s).with_state(p.state().clone());
        assert_eq!(
            describe(&val(&mut p, 3, 0.5)),
            [
                "delete epoch001-val_loss0.2000.ckpt".to_string(),
                "delete epoch000-val_loss0.3000.ckpt".to_string()
            ]
        );
        assert_eq!(p.state().best.len(), 1);
    }

    #[test]
    fn a_restored_policy_decides_as_the_uninterrupted_one() {
        let mut s = settings();
        s.every_n_steps = Some(1);
        s.save_total_limit = Some(1);
        let mut a = CheckpointPolicy::new(&s);
        val(&mut a, 0, 0.5);
        val(&mut a, 1, 0.4);
        a.on_step(1);
        let json = serde_json::to_string(a.state()).unwrap();
        let state: CheckpointPolicyState = serde_json::from_str(&json).unwrap();
        let mut b = CheckpointPolicy::new(&s).with_state(state);
        assert_eq!(b, a);
        assert_eq!(val(&mut b, 2, 0.45), val(&mut a, 2, 0.45));
        assert_eq!(b.on_step(2), a.on_step(2));
    }
}

//! Early stopping on a monitored metric (Lightning's `EarlyStopping`): plain data that is fed
//! each validation's value and answers whether to go on.
//!
//! A value improves on the best when `value < best - min_delta` (mode `min`) or
//! `value > best + min_delta` (mode `max`). After `patience` validations in a row without
//! improvement, or on a non-finite value, the policy answers [`EarlyStopAction::Stop`].

use crate::config::schema::{EarlyStoppingSettings, MonitorMode};
use crate::train::checkpoint::policy::{monitored_value, MissingMetric};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the loop should do after a validation.
#[derive(Debug, Clone, PartialEq)]
pub enum EarlyStopAction {
    /// Keep training.
    Continue,
    /// Stop training; `reason` is one line for the console and the run summary.
    Stop {
        /// Why the run stops.
        reason: String,
    },
}

/// The part of the policy that changes during a run, saved in checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EarlyStoppingState {
    /// The best value seen so far (None before the first validation).
    pub best: Option<f64>,
    /// The global step of the best value.
    pub best_step: Option<u64>,
    /// Validations in a row without improvement.
    pub wait_count: u64,
}

/// Early stopping on one monitored metric.
#[derive(Debug, Clone, PartialEq)]
pub struct EarlyStopping {
    monitor: String,
    patience: u64,
    min_delta: f64,
    mode: MonitorMode,
    state: EarlyStoppingState,
}

impl EarlyStopping {
    /// A fresh policy from the `early_stopping` settings.
    pub fn new(settings: &EarlyStoppingSettings) -> Self {
        EarlyStopping {
            monitor: settings.monitor.clone(),
            patience: settings.patience,
            min_delta: settings.min_delta.abs(),
            mode: settings.mode,
            state: EarlyStoppingState::default(),
        }
    }

    /// The policy continued from a checkpoint's state.
    pub fn with_state(mut self, state: EarlyStoppingState) -> Self {
        self.state = state;
        self
    }

    /// The metric this policy watches.
    pub fn monitor(&self) -> &str {
        &self.monitor
    }

    /// The state to save in a checkpoint.
    pub fn state(&self) -> &EarlyStoppingState {
        &self.state
    }

    fn improves(&self, value: f64, best: f64) -> bool {
        match self.mode {
            MonitorMode::Min => value < best - self.min_delta,
            MonitorMode::Max => value > best + self.min_delta,
        }
    }

    /// Records the validation at global `step` from all its logged metrics.
    pub fn update_from(
        &mut self,
        metrics: &BTreeMap<String, f64>,
        step: u64,
    ) -> Result<EarlyStopAction, MissingMetric> {
        let value = monitored_value("early_stopping.monitor", &self.monitor, metrics)?;
        Ok(self.update(value, step))
    }

    /// Records the monitored value of the validation at global `step`.
    pub fn update(&mut self, value: f64, step: u64) -> EarlyStopAction {
        if !value.is_finite() {
            return EarlyStopAction::Stop {
                reason: format!(
                    "{} is {value} at step {step}; stopping because it is not finite",
                    self.monitor
                ),
            };
        }
        match self.state.best {
            Some(best) if !self.improves(value, best) => self.state.wait_count += 1,
            _ => {
                self.state.best = Some(value);
                self.state.best_step = Some(step);
                self.state.wait_count = 0;
            }
        }
        if self.state.wait_count < self.patience {
            return EarlyStopAction::Continue;
        }
        let best = self.state.best.unwrap_or(value);
        let at = self.state.best_step.unwrap_or(step);
        EarlyStopAction::Stop {
            reason: format!(
                "{} did not improve by more than {} for {} validations in a row \
                 (best {best:.6} at step {at})",
                self.monitor, self.min_delta, self.state.wait_count
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(patience: u64, min_delta: f64, mode: MonitorMode) -> EarlyStopping {
        EarlyStopping::new(&EarlyStoppingSettings {
            enabled: true,
            monitor: "val_loss".into(),
            patience,
            min_delta,
            mode,
        })
    }

    fn stops(a: &EarlyStopAction) -> bool {
        matches!(a, EarlyStopAction::Stop { .. })
    }

    #[test]
    fn stops_after_patience_validations_without_improvement() {
        let mut p = policy(2, 0.0, MonitorMode::Min);
        assert!(!stops(&p.update(1.0, 10)));
        assert!(!stops(&p.update(0.9, 20)));
        assert!(!stops(&p.update(0.95, 30)));
        let action = p.update(0.9, 40);
        let EarlyStopAction::Stop { reason } = action else {
            panic!("{action:?}")
        };
        assert!(reason.contains("best 0.900000 at step 20"), "{reason}");
        assert_eq!(p.state().wait_count, 2);
    }

    #[test]
    fn min_delta_requires_a_large_enough_gain() {
        let mut p = policy(1, 0.1, MonitorMode::Min);
        p.update(1.0, 1);
        assert!(stops(&p.update(0.95, 2)));
        let mut p = policy(1, 0.1, MonitorMode::Min);
        p.update(1.0, 1);
        assert!(!stops(&p.update(0.85, 2)));
        assert_eq!(p.state().best, Some(0.85));
    }

    #[test]
    fn max_mode_counts_rises_as_improvement() {
        let mut p = policy(1, 0.0, MonitorMode::Max);
        p.update(0.5, 1);
        assert!(!stops(&p.update(0.6, 2)));
        assert!(stops(&p.update(0.6, 3)));
    }

    #[test]
    fn non_finite_values_stop_at_once() {
        let mut p = policy(100, 0.0, MonitorMode::Min);
        let EarlyStopAction::Stop { reason } = p.update(f64::NAN, 7) else {
            panic!()
        };
        assert!(reason.contains("NaN at step 7"), "{reason}");
    }

    #[test]
    fn metrics_are_looked_up_by_the_monitor_key() {
        let mut p = policy(1, 0.0, MonitorMode::Min);
        let metrics = BTreeMap::from([("val_loss".to_string(), 0.5)]);
        assert_eq!(p.update_from(&metrics, 3), Ok(EarlyStopAction::Continue));
        let err = p.update_from(&BTreeMap::new(), 4).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("early_stopping.monitor is 'val_loss'"),
            "{err}"
        );
    }

    #[test]
    fn a_restored_state_continues_the_count() {
        let mut p = policy(3, 0.0, MonitorMode::Min);
        p.update(1.0, 1);
        p.update(2.0, 2);
        p.update(2.0, 3);
        let json = serde_json::to_string(p.state()).unwrap();
        let state: EarlyStoppingState = serde_json::from_str(&json).unwrap();
        let mut resumed = policy(3, 0.0, MonitorMode::Min).with_state(state);
        assert!(stops(&resumed.update(2.0, 4)));
    }
}

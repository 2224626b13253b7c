//! `early_stopping`: stop when a validation metric stops improving (see `train::early_stopping`).

use super::check::{at_least_one, ensure};
use super::de::NodeDe;
use super::target::Validate;
use super::{MonitorMode, SchemaError};
use serde::Deserialize;

/// Lightning's `EarlyStopping`, counted in validations.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingSettings {
    /// Whether early stopping is on.
    pub enabled: bool,
    /// The logged validation metric to watch.
    pub monitor: String,
    /// Validations in a row without improvement before stopping.
    pub patience: u64,
    /// The smallest change that counts as an improvement.
    pub min_delta: f64,
    /// Whether lower or higher `monitor` is better.
    pub mode: MonitorMode,
}

impl Default for EarlyStoppingSettings {
    fn default() -> Self {
        EarlyStoppingSettings {
            enabled: false,
            monitor: "val_loss".to_string(),
            patience: 10,
            min_delta: 0.0,
            mode: MonitorMode::Min,
        }
    }
}

impl Validate for EarlyStoppingSettings {
    fn validate(&self, at: &NodeDe<'_>) -> Result<(), SchemaError> {
        at_least_one(at, "patience", self.patience)?;
        ensure(
            self.min_delta.is_finite() && self.min_delta >= 0.0,
            at,
            "min_delta",
            || format!("must be a finite number >= 0, found {:?}", self.min_delta),
            || format!("set {}=0.0", at.key_of("min_delta")),
        )?;
        ensure(
            !self.monitor.trim().is_empty(),
            at,
            "monitor",
            || "must name a logged metric, found an empty string".to_string(),
            || format!("set {}=val_loss", at.key_of("monitor")),
        )
    }
}

//! `early_stopping`: stop when a validation metric stops improving (see `train::early_stopping`).

use super::check::{at_least_one, ensure, metric_name};
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
        metric_name(at, "monitor", &self.monitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::Node;
    use crate::config::schema::target::decode_checked;
    use crate::config::yaml::load_str;
    use std::sync::Arc;

    fn decode(text: &str) -> Result<EarlyStoppingSettings, SchemaError> {
        let node: Node = load_str(text, &Arc::from("es.yaml")).unwrap().unwrap();
        decode_checked(NodeDe::at(&node, "early_stopping"))
    }

    const GOOD: &str =
        "enabled: true\nmonitor: val_loss\npatience: 3\nmin_delta: 0.01\nmode: min\n";

    #[test]
    fn decodes_and_checks_each_key() {
        let s = decode(GOOD).unwrap();
        assert_eq!(
            (s.patience, s.min_delta, s.mode),
            (3, 0.01, MonitorMode::Min)
        );
        let err = decode(&GOOD.replace("patience: 3", "patience: 0")).unwrap_err();
        assert_eq!(err.key, "early_stopping.patience");
        assert_eq!(err.origin, "es.yaml:3:11");
        let err = decode(&GOOD.replace("min_delta: 0.01", "min_delta: -1")).unwrap_err();
        assert_eq!(err.hint(), Some("set early_stopping.min_delta=0.0"));
        let err = decode(&GOOD.replace("mode: min", "mode: mni")).unwrap_err();
        assert!(err.message.contains("Did you mean 'min'?"), "{err}");
        let err = decode(&GOOD.replace("patience", "patients")).unwrap_err();
        assert!(
            err.hint().unwrap_or_default().contains("'patience'"),
            "{err}"
        );
    }
}

//! `checkpoint`: when to save weights and which to keep (see `train::checkpoint::policy`).

use super::check::{at_least_one, ensure, metric_name};
use super::de::NodeDe;
use super::target::Validate;
use super::SchemaError;
use serde::Deserialize;

/// When to save checkpoints and which to keep (Lightning's `ModelCheckpoint`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSettings {
    /// Keep the latest state as `last.ckpt` (written on its cadences and when the run ends).
    pub save_last: bool,
    /// Keep the best this many `epoch{EEE}-{monitor}{X.XXXX}.ckpt` files (0: none, -1: all).
    pub save_top_k: i64,
    /// The logged metric that ranks checkpoints.
    pub monitor: String,
    /// Whether lower or higher `monitor` is better.
    pub mode: MonitorMode,
    /// Write `last.ckpt` at the end of every this many epochs (null: not by epoch).
    pub every_n_epochs: Option<u64>,
    /// Write a permanent `step{N}.ckpt` every this many optimizer steps (null: none).
    pub every_n_steps: Option<u64>,
    /// Write `last.ckpt` every this many optimizer steps (null: not by step).
    #[serde(default)]
    pub last_every_n_steps: Option<u64>,
    /// Keep only the newest this many `step{N}.ckpt` files (null: keep all).
    #[serde(default)]
    pub save_total_limit: Option<u64>,
}

/// Whether lower or higher values of a monitored metric are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorMode {
    /// Lower is better (losses).
    Min,
    /// Higher is better (accuracies).
    Max,
}

impl Validate for CheckpointSettings {
    fn validate(&self, at: &NodeDe<'_>) -> Result<(), SchemaError> {
        ensure(
            self.save_top_k >= -1,
            at,
            "save_top_k",
            || {
                format!(
                    "must be -1 (keep all), 0 (keep none) or more, found {}",
                    self.save_top_k
                )
            },
            || format!("set {}=1", at.key_of("save_top_k")),
        )?;
        metric_name(at, "monitor", &self.monitor)?;
        for (key, value) in [
            ("every_n_epochs", self.every_n_epochs),
            ("every_n_steps", self.every_n_steps),
            ("last_every_n_steps", self.last_every_n_steps),
            ("save_total_limit", self.save_total_limit),
        ] {
            if let Some(n) = value {
                at_least_one(at, key, n).map_err(|e| {
                    e.with_hint(format!(
                        "set {}=1 or more, or null to turn it off",
                        at.key_of(key)
                    ))
                })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::Node;
    use crate::config::schema::target::decode_checked;
    use crate::config::yaml::load_str;
    use std::sync::Arc;

    fn decode(text: &str) -> Result<CheckpointSettings, SchemaError> {
        let node: Node = load_str(text, &Arc::from("ckpt.yaml")).unwrap().unwrap();
        decode_checked(NodeDe::at(&node, "checkpoint"))
    }

    const OLD_STYLE: &str = "save_last: true\nsave_top_k: 1\nmonitor: val_loss\nmode: min\n\
                             every_n_epochs: 1\nevery_n_steps: null\n";

    #[test]
    fn the_retention_keys_are_optional_and_checked() {
        let s = decode(OLD_STYLE).unwrap();
        assert_eq!((s.last_every_n_steps, s.save_total_limit), (None, None));
        let s = decode(&format!(
            "{OLD_STYLE}last_every_n_steps: 50\nsave_total_limit: 3\n"
        ))
        .unwrap();
        assert_eq!(
            (s.last_every_n_steps, s.save_total_limit),
            (Some(50), Some(3))
        );
        let err = decode(&format!("{OLD_STYLE}save_total_limit: 0\n")).unwrap_err();
        assert_eq!(err.key, "checkpoint.save_total_limit");
        assert!(err.hint().unwrap_or_default().contains("or null"), "{err}");
        let err = decode(&OLD_STYLE.replace("save_top_k: 1", "save_top_k: -2")).unwrap_err();
        assert_eq!(err.key, "checkpoint.save_top_k");
    }
}

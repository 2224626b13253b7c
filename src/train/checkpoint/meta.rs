//! The metadata document stored in every checkpoint: where the run stands (step, epoch, data
//! cursor, RNG states), the policies' states, the best scores and the resolved config.

use super::policy::{CheckpointPolicyState, SaveReason};
use crate::train::early_stopping::EarlyStoppingState;
use crate::train::lr::LrSchedule;
use crate::train::nan_guard::NanGuardState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The format version written by this build (bumped on incompatible changes).
pub const FORMAT_VERSION: u32 = 1;

/// Everything but the tensors, stored as JSON in the safetensors `__metadata__`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// The checkpoint format version ([`FORMAT_VERSION`] when written by this build).
    pub format_version: u32,
    /// The flowrun version that wrote the file.
    pub flowrun_version: String,
    /// Optimizer steps taken.
    pub step: u64,
    /// The current epoch (0-based).
    pub epoch: u64,
    /// Batches already consumed in the current epoch.
    pub batches_seen_in_epoch: u64,
    /// The state of each named RNG stream (`flowrun::rng::Rng::state`).
    pub rng: BTreeMap<String, [u64; 4]>,
    /// The data sampler's state, as the data pipeline wrote it.
    pub data_sampler: serde_json::Value,
    /// The learning-rate schedule in force (informational: the rate depends only on the step).
    pub lr_schedule: Option<LrSchedule>,
    /// The checkpoint policy's kept files.
    pub checkpoint_policy: CheckpointPolicyState,
    /// The early-stopping counters (None when early stopping is off).
    pub early_stopping: Option<EarlyStoppingState>,
    /// The non-finite step counters.
    pub nan_guard: NanGuardState,
    /// Best values of the monitored metrics so far (`val_loss` -> best).
    pub best_scores: BTreeMap<String, f64>,
    /// Why this file was written (the policy's reason, with the score and rank of a top-k file).
    pub saved_as: SaveReason,
    /// The resolved job config as YAML.
    pub config_yaml: String,
    /// The number of data-parallel ranks of the run (1 in files written before it was stored).
    #[serde(default = "one")]
    pub world_size: u64,
}

fn one() -> u64 {
    1
}

impl CheckpointMeta {
    /// Metadata for a run at `step` in `epoch` with resolved config `config_yaml`; the other
    /// fields start empty and are filled in by the loop.
    pub fn new(step: u64, epoch: u64, config_yaml: impl Into<String>) -> Self {
        CheckpointMeta {
            format_version: FORMAT_VERSION,
            flowrun_version: env!("CARGO_PKG_VERSION").to_string(),
            step,
            epoch,
            batches_seen_in_epoch: 0,
            rng: BTreeMap::new(),
            data_sampler: serde_json::Value::Null,
            lr_schedule: None,
            checkpoint_policy: CheckpointPolicyState::default(),
            early_stopping: None,
            nan_guard: NanGuardState::default(),
            best_scores: BTreeMap::new(),
            saved_as: SaveReason::Last,
            config_yaml: config_yaml.into(),
            world_size: 1,
        }
    }
}

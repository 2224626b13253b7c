//! Typed settings: the resolved job config (without `hydra`) checked against the schema.
//!
//! [`load_train_settings`] turns a composed, interpolated [`Node`] into [`TrainSettings`]. Every
//! error is a [`SchemaError`] naming the deepest key involved, the file and line (or the
//! command-line override) it came from, and what to type instead.
//!
//! * [`de`]: a serde deserializer over [`Node`] (type, range, unknown key and value checks);
//! * [`target`]: closed `_target_` registries and the [`Validate`] trait for cross-field checks;
//! * one file per section: [`model`], [`path`], [`sampler`], [`trainer`], [`data`], [`optim`],
//!   [`checkpoint`], [`early_stopping`].

mod access;
mod check;
pub mod checkpoint;
pub mod commands;
pub mod data;
pub mod de;
pub mod early_stopping;
mod error;
pub mod model;
pub mod optim;
pub mod path;
pub mod sampler;
pub mod target;
pub mod trainer;

#[cfg(test)]
mod tests;

pub use checkpoint::{CheckpointSettings, MonitorMode};
pub use commands::{load_evaluate_settings, load_inspect_settings, load_sample_settings};
pub use commands::{EvaluateSettings, InspectSettings, SampleSettings, TrainedSource};
pub use data::{DataSettings, DataSource, OnBadFile};
pub use de::NodeDe;
pub use early_stopping::EarlyStoppingSettings;
pub use error::SchemaError;
pub use model::{DiTSettings, ModelSettings, TimeSampling};
pub use optim::{
    ConstantLrSettings, DecayingLrSettings, LrSchedulerSettings, OptimizerSettings, Warmup,
};
pub use path::{AffinePathSettings, AffineScheduler, BetaSchedule, DiffusionPathSettings};
pub use path::{PathSettings, PredictionType};
pub use sampler::{DiffusionSamplerSettings, DiffusionSamplerType, OdeMethod};
pub use sampler::{OdeSamplerSettings, SamplerSettings, TimestepSpacing, VarianceType};
pub use target::{Target, Validate};
pub use trainer::{
    Accelerator, Devices, NanPolicy, Precision, ScaleLr, Strategy, TrainerSettings,
    ValCheckInterval,
};

use crate::config::node::Node;
use check::{at_least_one, ensure, positive};
use target::{decode_checked, decode_target, Section};

/// Everything a training run reads from its config.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSettings {
    /// Seed of every random number generator.
    pub seed: u64,
    /// Samples per batch (per device).
    pub batch_size: usize,
    /// Epoch budget (fed to `trainer.max_epochs`).
    pub max_epochs: u64,
    /// Base learning rate (fed to `optimizer.lr`).
    pub base_lr: f64,
    /// Side of the square masks (fed to `model.net.input_size` and `data.image_size`).
    pub image_size: usize,
    /// Inference steps (fed to `model.sampler.steps`).
    pub sampling_steps: usize,
    /// The generative model: network, path and sampler.
    pub model: ModelSettings,
    /// The training loop.
    pub trainer: TrainerSettings,
    /// The dataset.
    pub data: DataSettings,
    /// The optimizer.
    pub optimizer: OptimizerSettings,
    /// The learning-rate schedule.
    pub scheduler: LrSchedulerSettings,
    /// Checkpointing.
    pub checkpoint: CheckpointSettings,
    /// Early stopping (off when the section is absent).
    pub early_stopping: EarlyStoppingSettings,
    /// The checkpoint to resume from: a `.ckpt` file, a run directory, or `last` (null: a fresh run).
    pub ckpt_path: Option<String>,
}

const TRAIN_FIELDS: &[&str] = &[
    "seed",
    "batch_size",
    "max_epochs",
    "base_lr",
    "image_size",
    "sampling_steps",
    "model",
    "trainer",
    "data",
    "optimizer",
    "scheduler",
    "checkpoint",
    "early_stopping",
    "ckpt_path",
];

/// Decodes and checks the resolved job config (the composed config without its `hydra` node).
pub fn load_train_settings(job: &Node) -> Result<TrainSettings, SchemaError> {
    let s = Section::open(NodeDe::root(job), TRAIN_FIELDS)?;
    let settings = TrainSettings {
        seed: s.field("seed")?,
        batch_size: s.field("batch_size")?,
        max_epochs: s.field("max_epochs")?,
        base_lr: s.field("base_lr")?,
        image_size: s.field("image_size")?,
        sampling_steps: s.field("sampling_steps")?,
        model: decode_target(s.child("model")?, model::MODEL_TARGETS)?,
        trainer: decode_target(s.child("trainer")?, trainer::TRAINER_TARGETS)?,
        data: decode_target(s.child("data")?, data::DATA_TARGETS)?,
        optimizer: decode_target(s.child("optimizer")?, optim::OPTIMIZER_TARGETS)?,
        scheduler: decode_target(s.child("scheduler")?, optim::SCHEDULER_TARGETS)?,
        checkpoint: decode_checked(s.child("checkpoint")?)?,
        early_stopping: match s.child("early_stopping") {
            Ok(de) => decode_checked(de)?,
            Err(_) => EarlyStoppingSettings::default(),
        },
        ckpt_path: s.field("ckpt_path")?,
    };
    settings.validate(s.de())?;
    Ok(settings)
}

impl Validate for TrainSettings {
    fn validate(&self, at: &NodeDe<'_>) -> Result<(), SchemaError> {
        at_least_one(at, "batch_size", self.batch_size as u64)?;
        at_least_one(at, "max_epochs", self.max_epochs)?;
        positive(at, "base_lr", self.base_lr)?;
        at_least_one(at, "image_size", self.image_size as u64)?;
        at_least_one(at, "sampling_steps", self.sampling_steps as u64)?;
        let (net, data) = (self.model.net.input_size, self.data.image_size);
        ensure(
            net == data,
            at,
            "model.net.input_size",
            || format!("the network reads {net}x{net} masks but data.image_size is {data}"),
            || {
                format!(
                    "set image_size={data} (it feeds both), or make model.net.input_size and \
                     data.image_size equal"
                )
            },
        )
    }
}

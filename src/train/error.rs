//! Everything that can stop a training run, as one typed error with a hint where one helps.

use crate::data::DataError;
use crate::dist::DistError;
use crate::model::ema::EmaError;
use crate::model::generative::GenerativeError;
use crate::model::weights::WeightsError;
use crate::telemetry::TelemetryError;
use crate::train::checkpoint::{CheckpointError, ResumeError};
use crate::train::device::DeviceError;
use crate::train::lr::LrError;
use crate::train::optim::OptimError;
use std::path::PathBuf;

/// The hint of every error writing into the run directory.
pub const OUTPUT_DIR_HINT: &str = "check that the output directory is writable and the disk has \
     space (hydra.run.dir=... moves the run)";

/// Why a training run stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configured device cannot be used.
    #[error(transparent)]
    Device(Box<DeviceError>),
    /// The data-parallel job could not start, or another rank failed.
    #[error(transparent)]
    Dist(Box<DistError>),
    /// The data could not be read or generated.
    #[error(transparent)]
    Data(Box<DataError>),
    /// The model could not be built or run.
    #[error(transparent)]
    Model(Box<GenerativeError>),
    /// Weights did not fit the model.
    #[error(transparent)]
    Weights(Box<WeightsError>),
    /// The weight average failed.
    #[error(transparent)]
    Ema(Box<EmaError>),
    /// The optimizer failed.
    #[error(transparent)]
    Optim(Box<OptimError>),
    /// The learning-rate schedule does not fit the step budget.
    #[error("the learning-rate schedule: {0}")]
    Lr(Box<LrError>),
    /// A checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(Box<CheckpointError>),
    /// The checkpoint to resume from belongs to another configuration.
    #[error(transparent)]
    Resume(Box<ResumeError>),
    /// TensorBoard events, metrics or the console log could not be written.
    #[error(transparent)]
    Telemetry(Box<TelemetryError>),
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(Box<candle_core::Error>),
    /// The loss or the gradients stopped being finite.
    #[error("{reason}{}", saved.as_ref().map(|p| format!("; the last good state is in {}", p.display())).unwrap_or_default())]
    NonFinite {
        /// The optimizer step.
        step: u64,
        /// What was not finite.
        reason: String,
        /// The checkpoint written before stopping.
        saved: Option<PathBuf>,
    },
    /// The step budget and the data do not fit together.
    #[error("{message}")]
    Budget {
        /// What is wrong.
        message: String,
        /// What to type instead.
        hint: String,
    },
    /// A run directory entry could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl From<DeviceError> for TrainError {
    fn from(e: DeviceError) -> Self {
        TrainError::Device(Box::new(e))
    }
}

impl From<DistError> for TrainError {
    fn from(e: DistError) -> Self {
        TrainError::Dist(Box::new(e))
    }
}

impl From<DataError> for TrainError {
    fn from(e: DataError) -> Self {
        TrainError::Data(Box::new(e))
    }
}

impl From<GenerativeError> for TrainError {
    fn from(e: GenerativeError) -> Self {
        TrainError::Model(Box::new(e))
    }
}

impl From<WeightsError> for TrainError {
    fn from(e: WeightsError) -> Self {
        TrainError::Weights(Box::new(e))
    }
}

impl From<EmaError> for TrainError {
    fn from(e: EmaError) -> Self {
        TrainError::Ema(Box::new(e))
    }
}

impl From<OptimError> for TrainError {
    fn from(e: OptimError) -> Self {
        TrainError::Optim(Box::new(e))
    }
}

impl From<LrError> for TrainError {
    fn from(e: LrError) -> Self {
        TrainError::Lr(Box::new(e))
    }
}

impl From<CheckpointError> for TrainError {
    fn from(e: CheckpointError) -> Self {
        TrainError::Checkpoint(Box::new(e))
    }
}

impl From<ResumeError> for TrainError {
    fn from(e: ResumeError) -> Self {
        TrainError::Resume(Box::new(e))
    }
}

impl From<TelemetryError> for TrainError {
    fn from(e: TelemetryError) -> Self {
        TrainError::Telemetry(Box::new(e))
    }
}

impl From<candle_core::Error> for TrainError {
    fn from(e: candle_core::Error) -> Self {
        TrainError::Candle(Box::new(e))
    }
}

impl TrainError {
    /// What to type next, where the error knows.
    pub fn hint(&self) -> Option<String> {
        match self {
            TrainError::Device(e) => Some(e.hint().to_string()),
            TrainError::Dist(e) => e.hint(),
            TrainError::Budget { hint, .. } => Some(hint.clone()),
            TrainError::Resume(_) => Some(
                "resume with the checkpoint's config (only max_epochs, max_steps, logging and \
                 checkpoint cadence may change), or start a fresh run without ckpt_path"
                    .to_string(),
            ),
            TrainError::NonFinite { saved: Some(p), .. } => Some(format!(
                "lower base_lr or set trainer.gradient_clip_val, then resume with ckpt_path={}",
                p.display()
            )),
            TrainError::Io { .. } => Some(OUTPUT_DIR_HINT.to_string()),
            _ => None,
        }
    }
}

//! The one-to-one map from `model.path` settings (config group `path/`) to path types.

use super::affine::AffineProbPath;
use super::diffusion::{BetaSchedule, DiffusionSchedule, PredictionType};
use super::error::PathError;
use super::scheduler::AffineScheduler;
use crate::config::schema::path as cfg;
use crate::config::schema::PathSettings;

/// A probability path ready to use: a flow-matching path, or a discrete diffusion schedule with
/// what the network predicts.
#[derive(Debug, Clone)]
pub enum ProbPath {
    /// `flowrun.path.AffineProbPath`.
    Affine(AffineProbPath),
    /// `flowrun.path.DiffusionPath`.
    Diffusion {
        /// The beta schedule and its cumulative products.
        schedule: DiffusionSchedule,
        /// What the network predicts.
        prediction_type: PredictionType,
    },
}

impl From<cfg::BetaSchedule> for BetaSchedule {
    fn from(b: cfg::BetaSchedule) -> Self {
        match b {
            cfg::BetaSchedule::Linear => BetaSchedule::Linear,
            cfg::BetaSchedule::ScaledLinear => BetaSchedule::ScaledLinear,
            cfg::BetaSchedule::SquaredcosCapV2 => BetaSchedule::SquaredcosCapV2,
        }
    }
}

impl From<cfg::PredictionType> for PredictionType {
    fn from(p: cfg::PredictionType) -> Self {
        match p {
            cfg::PredictionType::Epsilon => PredictionType::Epsilon,
            cfg::PredictionType::VPrediction => PredictionType::VPrediction,
            cfg::PredictionType::Sample => PredictionType::Sample,
        }
    }
}

/// The affine scheduler described by `model.path` settings.
pub fn affine_scheduler(s: &cfg::AffinePathSettings) -> Result<AffineScheduler, PathError> {
    let scheduler = match s.scheduler {
        cfg::AffineScheduler::CondOt => AffineScheduler::CondOt,
        cfg::AffineScheduler::Cosine => AffineScheduler::Cosine,
        cfg::AffineScheduler::LinearVp => AffineScheduler::LinearVp,
        cfg::AffineScheduler::Vp => AffineScheduler::vp(s.beta_min, s.beta_max)?,
        cfg::AffineScheduler::Polynomial => AffineScheduler::polynomial(s.exponent)?,
    };
    Ok(scheduler)
}

impl ProbPath {
    /// Builds the path that `model.path` describes.
    pub fn from_settings(settings: &PathSettings) -> Result<Self, PathError> {
        match settings {
            PathSettings::Affine(s) => {
                Ok(ProbPath::Affine(AffineProbPath::new(affine_scheduler(s)?)))
            }
            PathSettings::Diffusion(s) => Ok(ProbPath::Diffusion {
                schedule: DiffusionSchedule::new(
                    s.num_train_timesteps,
                    s.beta_start,
                    s.beta_end,
                    s.beta_schedule.into(),
                )?,
                prediction_type: s.prediction_type.into(),
            }),
        }
    }

    /// The prediction type of a diffusion path (`None` for flow matching, which predicts velocity).
    pub fn prediction_type(&self) -> Option<PredictionType> {
        match self {
            ProbPath::Affine(_) => None,
            ProbPath::Diffusion {
                prediction_type, ..
            } => Some(*prediction_type),
        }
    }
}

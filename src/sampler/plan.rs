//! The one-to-one map from `model.sampler` settings (config group `sampler/`) to a typed plan
//! of how to sample: an ODE solve, or a DDIM / DDPM loop over diffusers' timesteps.

use super::ddim::DdimConfig;
use super::ddpm::{DdpmConfig, VarianceType};
use super::error::SamplerError;
use super::ode::{uniform_steps, OdeMethod, OdeOptions, TimeGrid};
use super::timesteps::{InferenceSteps, TimestepSpacing};
use crate::config::schema::sampler as cfg;
use crate::config::schema::SamplerSettings;
use crate::path::settings::ProbPath;
use candle_core::DType;

/// How to sample, fully resolved from the config.
#[derive(Debug, Clone)]
pub enum SamplerPlan {
    /// Integrate the velocity field (or a diffusion model's probability-flow ODE) from t=0 to t=1.
    Ode {
        /// The method.
        method: OdeMethod,
        /// Fixed steps for euler / midpoint / rk4 (ignored by dopri5).
        steps: usize,
        /// dopri5's absolute tolerance.
        atol: f64,
        /// dopri5's relative tolerance.
        rtol: f64,
        /// The most steps a solve may take.
        max_steps: usize,
    },
    /// diffusers' DDIM loop.
    Ddim {
        /// The step rule.
        config: DdimConfig,
        /// The timesteps to visit.
        steps: InferenceSteps,
    },
    /// diffusers' DDPM loop.
    Ddpm {
        /// The step rule.
        config: DdpmConfig,
        /// The timesteps to visit.
        steps: InferenceSteps,
    },
}

impl From<cfg::OdeMethod> for OdeMethod {
    fn from(m: cfg::OdeMethod) -> Self {
        match m {
            cfg::OdeMethod::Euler => OdeMethod::Euler,
            cfg::OdeMethod::Midpoint => OdeMethod::Midpoint,
            cfg::OdeMethod::Rk4 => OdeMethod::Rk4,
            cfg::OdeMethod::Dopri5 => OdeMethod::Dopri5,
        }
    }
}

impl From<cfg::TimestepSpacing> for TimestepSpacing {
    fn from(s: cfg::TimestepSpacing) -> Self {
        match s {
            cfg::TimestepSpacing::Leading => TimestepSpacing::Leading,
            cfg::TimestepSpacing::Trailing => TimestepSpacing::Trailing,
            cfg::TimestepSpacing::Linspace => TimestepSpacing::Linspace,
        }
    }
}

impl From<cfg::VarianceType> for VarianceType {
    fn from(v: cfg::VarianceType) -> Self {
        match v {
            cfg::VarianceType::FixedSmall => VarianceType::FixedSmall,
            cfg::VarianceType::FixedLarge => VarianceType::FixedLarge,
        }
    }
}

impl SamplerPlan {
    /// The plan `model.sampler` describes for `path`; a diffusion sampler needs a diffusion path.
    pub fn from_settings(
        settings: &SamplerSettings,
        path: &ProbPath,
    ) -> Result<Self, SamplerError> {
        let diffusion = match (settings, path) {
            (SamplerSettings::Ode(s), _) => {
                return Ok(SamplerPlan::Ode {
                    method: s.method.into(),
                    steps: s.steps,
                    atol: s.atol,
                    rtol: s.rtol,
                    max_steps: s.max_steps,
                })
            }
            (SamplerSettings::Diffusion(s), ProbPath::Diffusion { schedule, prediction_type }) => (s, schedule, *prediction_type),
            (SamplerSettings::Diffusion(s), ProbPath::Affine(_)) => {
                return Err(SamplerError::InvalidParameter {
                    name: "sampler",
                    message: format!(
                        "{:?} needs a diffusion path; samplers valid for a flow-matching path: euler, midpoint, rk4, dopri5",
                        s.sampler_type
                    ),
                })
            }
        };
        let (s, schedule, prediction_type) = diffusion;
        let steps = InferenceSteps::new(
            schedule.num_train_timesteps(),
            s.steps,
            s.timestep_spacing.into(),
            s.steps_offset,
        )?;
        Ok(match s.sampler_type {
            cfg::DiffusionSamplerType::Ddim => SamplerPlan::Ddim {
                config: DdimConfig {
                    eta: s.eta,
                    set_alpha_to_one: s.set_alpha_to_one,
                    clip_sample: s.clip_sample,
                    clip_sample_range: s.clip_sample_range,
                    use_clipped_model_output: false,
                    prediction_type,
                },
                steps,
            },
            cfg::DiffusionSamplerType::Ddpm => SamplerPlan::Ddpm {
                config: DdpmConfig {
                    variance_type: s.variance_type.into(),
                    clip_sample: s.clip_sample,
                    clip_sample_range: s.clip_sample_range,
                    prediction_type,
                },
                steps,
            },
        })
    }

    /// For an ODE plan: the time grid [0, 1] in `dtype` and the solver options.
    pub fn ode_setup(&self, dtype: DType) -> Result<Option<(TimeGrid, OdeOptions)>, SamplerError> {
        let SamplerPlan::Ode {
            method,
            steps,
            atol,
            rtol,
            max_steps,
        } = *self
        else {
            return Ok(None);
        };
        if method == OdeMethod::Dopri5 {
            let options = OdeOptions::new(method)
                .with_tolerances(atol, rtol)
                .with_max_steps(max_steps);
            return Ok(Some((TimeGrid::unit_interval(dtype)?, options)));
        }
        let steps = i64::try_from(steps).map_err(|_| SamplerError::InvalidParameter {
            name: "steps",
            message: format!("{steps} is too large"),
        })?;
        Ok(Some(uniform_steps(method, steps, dtype)?))
    }
}

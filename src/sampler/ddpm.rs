//! The DDPM ancestral sampler (Ho et al. 2020), numerically matching diffusers 0.42.1's
//! `DDPMScheduler` with `fixed_small` / `fixed_large` variances.
//!
//! Conventions (`a_t = alphas_cumprod[t]`, scalar coefficients in `f32` like diffusers' 0-dim
//! tensors, tensor arithmetic in the sample's dtype):
//! * the previous timestep is the entry after `t` in the inference timesteps (or -1 after the
//!   last) when there is such a list, else `t - 1` ([`ddpm_prev_timestep`]);
//! * `a_prev = alphas_cumprod[t_prev]`, or 1 when `t_prev < 0`;
//! * `b = 1 - a_t / a_prev` is the effective beta over the stride (not `betas[t]`);
//! * `x0` comes from the model output by prediction type and is clipped to
//!   `[-clip_sample_range, clip_sample_range]` when `clip_sample`;
//! * `mean = sqrt(a_prev) b / (1 - a_t) x0 + sqrt(a_t / a_prev) (1 - a_prev) / (1 - a_t) x`;
//! * noise is added only when the timestep value `t > 0`: `prev = mean + sqrt(var) noise` with
//!   `fixed_small` `var = max((1 - a_prev) / (1 - a_t) b, 1e-20)` or `fixed_large` `var = b`.

use std::fmt;
use std::str::FromStr;

use candle_core::Tensor;

use crate::path::diffusion::{DiffusionSchedule, PredictionType};

use super::discrete::{
    check_clip_range, check_finite, check_step_args, clip_original_sample, DiffusionStats,
    StepOutput,
};
use super::error::SamplerError;
use super::prediction::{mul_scalar, predict_original_sample};
use super::timesteps::InferenceSteps;

/// The variance of the DDPM reverse step (diffusers' `variance_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarianceType {
    /// The posterior variance `(1 - a_prev) / (1 - a_t) b`, clamped at 1e-20 (`"fixed_small"`).
    FixedSmall,
    /// The effective beta `b` (`"fixed_large"`).
    FixedLarge,
}

impl VarianceType {
    /// The diffusers name of this variance type.
    pub fn name(self) -> &'static str {
        match self {
            VarianceType::FixedSmall => "fixed_small",
            VarianceType::FixedLarge => "fixed_large",
        }
    }
}

impl fmt::Display for VarianceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for VarianceType {
    type Err = SamplerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fixed_small" => Ok(VarianceType::FixedSmall),
            "fixed_large" => Ok(VarianceType::FixedLarge),
            other => Err(SamplerError::InvalidParameter {
                name: "variance_type",
                message: format!("unknown or unsupported variance type {other:?}; expected fixed_small or fixed_large"),
            }),
        }
    }
}

/// DDPM settings (diffusers' names and defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdpmConfig {
    /// The reverse-step variance.
    pub variance_type: VarianceType,
    /// Whether to clamp the predicted `x0` to `[-clip_sample_range, clip_sample_range]`.
    pub clip_sample: bool,
    /// The clamp bound used when `clip_sample` is set (finite, > 0).
    pub clip_sample_range: f64,
    /// What the model predicts.
    pub prediction_type: PredictionType,
}

impl Default for DdpmConfig {
    fn default() -> Self {
        DdpmConfig {
            variance_type: VarianceType::FixedSmall,
            clip_sample: true,
            clip_sample_range: 1.0,
            prediction_type: PredictionType::Epsilon,
        }
    }
}

impl DdpmConfig {
    /// Checks a finite, positive `clip_sample_range`.
    pub fn validate(&self) -> Result<(), SamplerError> {
        check_clip_range(self.clip_sample_range)
    }
}

/// The previous DDPM timestep: the entry after `t` in `timesteps` (-1 after the last), or
/// `t - 1` when no inference timesteps were set; errors when `t` is not in the list.
pub fn ddpm_prev_timestep(t: i64, timesteps: Option<&[i64]>) -> Result<i64, SamplerError> {
    let Some(list) = timesteps else {
        return Ok(t.saturating_sub(1));
    };
    match list.iter().position(|s| *s == t) {
        Some(i) => Ok(list.get(i + 1).copied().unwrap_or(-1)),
        None => Err(SamplerError::InvalidParameter {
            name: "t",
            message: format!("timestep {t} is not one of the inference timesteps {list:?}"),
        }),
    }
}

/// The `f32` scalars of one DDPM step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdpmCoefficients {
    /// `a_t`.
    pub alpha_prod_t: f32,
    /// `a_prev` (1 when `t_prev < 0`).
    pub alpha_prod_t_prev: f32,
    /// The effective beta `b = 1 - a_t / a_prev`.
    pub current_beta_t: f32,
    /// `sqrt(a_prev) b / (1 - a_t)`, the weight of `x0` in the mean.
    pub pred_original_sample_coeff: f32,
    /// `sqrt(a_t / a_prev) (1 - a_prev) / (1 - a_t)`, the weight of `x_t` in the mean.
    pub current_sample_coeff: f32,
    /// The variance of the configured `variance_type`.
    pub variance: f32,
    /// `sqrt(variance)` when `t > 0`, else 0 (no noise is added at `t = 0`).
    pub std_dev_t: f32,
}

/// The DDPM scalars for a step from `t` to `t_prev` (`t` must be in `0..N`, `t_prev < N`).
pub fn ddpm_coefficients(
    schedule: &DiffusionSchedule,
    config: &DdpmConfig,
    t: i64,
    t_prev: i64,
) -> Result<DdpmCoefficients, SamplerError> {
    let alpha_prod_t = schedule.alphas_cumprod_at(t)?;
    let alpha_prod_t_prev = if t_prev >= 0 {
        schedule.alphas_cumprod_at(t_prev)?
    } else {
        1.0
    };
    let beta_prod_t = 1.0 - alpha_prod_t;
    let beta_prod_t_prev = 1.0 - alpha_prod_t_prev;
    let current_alpha_t = alpha_prod_t / alpha_prod_t_prev;
    let current_beta_t = 1.0 - current_alpha_t;
    let pred_original_sample_coeff = (alpha_prod_t_prev.sqrt() * current_beta_t) / beta_prod_t;
    let current_sample_coeff = current_alpha_t.sqrt() * beta_prod_t_prev / beta_prod_t;
    let variance = match config.variance_type {
        VarianceType::FixedSmall => (beta_prod_t_prev / beta_prod_t * current_beta_t).max(1e-20),
        VarianceType::FixedLarge => current_beta_t,
    };
    let std_dev_t = if t > 0 { variance.sqrt() } else { 0.0 };
    Ok(DdpmCoefficients {
        alpha_prod_t,
        alpha_prod_t_prev,
        current_beta_t,
        pred_original_sample_coeff,
        current_sample_coeff,
        variance,
        std_dev_t,
    })
}

/// One DDPM step from `t` to `t_prev`; `noise` (shaped like `sample`) is required when `t > 0`.
pub fn ddpm_step(
    schedule: &DiffusionSchedule,
    config: &DdpmConfig,
    sample: &Tensor,
    t: i64,
    t_prev: i64,
    model_output: &Tensor,
    noise: Option<&Tensor>,
) -> Result<StepOutput, SamplerError> {
    config.validate()?;
    let noise = check_step_args(schedule, sample, t, t_prev, model_output, noise, t > 0)?;
    let c = ddpm_coefficients(schedule, config, t, t_prev)?;
    let x0 = predict_original_sample(config.prediction_type, c.alpha_prod_t, sample, model_output)?;
    let x0 = clip_original_sample(x0, config.clip_sample, config.clip_sample_range)?;
    let mean = (mul_scalar(&x0, c.pred_original_sample_coeff)?
        + mul_scalar(sample, c.current_sample_coeff)?)?;
    let prev_sample = match noise {
        Some(z) => (mean + mul_scalar(z, c.std_dev_t)?)?,
        None => mean,
    };
    Ok(StepOutput {
        prev_sample,
        pred_original_sample: x0,
    })
}

/// Runs DDPM from `x_t` over `steps.timesteps`, one `model(x, t)` call per timestep.
///
/// The previous timestep is the next list entry (-1 after the last); the plan
/// `InferenceSteps::new(N, N, Leading, 0)` is the full chain `N-1, ..., 0`. `noise(x)` must
/// return standard Gaussian noise shaped like `x`; it is called for every `t > 0`.
/// Returns the final sample and the loop statistics.
pub fn ddpm_sample<M, R>(
    schedule: &DiffusionSchedule,
    config: &DdpmConfig,
    steps: &InferenceSteps,
    x_t: &Tensor,
    mut model: M,
    mut noise: R,
) -> Result<(Tensor, DiffusionStats), SamplerError>
where
    M: FnMut(&Tensor, i64) -> Result<Tensor, SamplerError>,
    R: FnMut(&Tensor) -> Result<Tensor, SamplerError>,
{
    config.validate()?;
    steps.validate(schedule.num_train_timesteps())?;
    let mut x = x_t.clone();
    let mut stats = DiffusionStats::default();
    for &t in &steps.timesteps {
        let model_output = model(&x, t)?;
        stats.nfe += 1;
        let t_prev = ddpm_prev_timestep(t, Some(&steps.timesteps))?;
        let z = if t > 0 { Some(noise(&x)?) } else { None };
        x = ddpm_step(schedule, config, &x, t, t_prev, &model_output, z.as_ref())?.prev_sample;
        check_finite(&x, t)?;
    }
    Ok((x, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::diffusion::BetaSchedule;
    use crate::path::error::PathError;
    use crate::sampler::timesteps::TimestepSpacing;
    use candle_core::{DType, Device};

    fn schedule() -> DiffusionSchedule {
        DiffusionSchedule::new(100, 1e-4, 0.02, BetaSchedule::Linear).expect("valid")
    }

    fn zeros() -> Tensor {
        Tensor::zeros((2, 3), DType::F32, &Device::Cpu).expect("zeros")
    }

    #[test]
    fn missing_noise_is_an_error_only_when_t_positive() {
        let x = zeros();
        let config = DdpmConfig::default();
        let err = ddpm_step(&schedule(), &config, &x, 5, 4, &x, None).unwrap_err();
        assert!(
            matches!(err, SamplerError::InvalidParameter { name: "noise", .. }),
            "{err}"
        );
        assert!(ddpm_step(&schedule(), &config, &x, 0, -1, &x, None).is_ok());
    }

    #[test]
    fn bad_timesteps_are_errors() {
        let x = zeros();
        let config = DdpmConfig::default();
        let err = ddpm_step(&schedule(), &config, &x, 100, 99, &x, Some(&x)).unwrap_err();
        assert!(
            matches!(
                err,
                SamplerError::Path(PathError::TimestepOutOfRange { value: 100, .. })
            ),
            "{err}"
        );
        let err = ddpm_step(&schedule(), &config, &x, 5, 7, &x, Some(&x)).unwrap_err();
        assert!(
            matches!(err, SamplerError::InvalidParameter { name: "t_prev", .. }),
            "{err}"
        );
        let err = ddpm_prev_timestep(7, Some(&[9, 5, 1])).unwrap_err();
        assert!(
            matches!(err, SamplerError::InvalidParameter { name: "t", .. }),
            "{err}"
        );
    }

    #[test]
    fn prev_timestep_rules() {
        assert_eq!(ddpm_prev_timestep(5, None).expect("ok"), 4);
        assert_eq!(ddpm_prev_timestep(9, Some(&[9, 5, 1])).expect("ok"), 5);
        assert_eq!(ddpm_prev_timestep(1, Some(&[9, 5, 1])).expect("ok"), -1);
    }

    #[test]
    fn bad_config_is_an_error() {
        let x = zeros();
        let config = DdpmConfig {
            clip_sample_range: f64::INFINITY,
            ..DdpmConfig::default()
        };
        let err = ddpm_step(&schedule(), &config, &x, 0, -1, &x, None).unwrap_err();
        assert!(
            matches!(
                err,
                SamplerError::InvalidParameter {
                    name: "clip_sample_range",
                    ..
                }
            ),
            "{err}"
        );
        assert!("learned".parse::<VarianceType>().is_err());
        assert_eq!(
            "fixed_large".parse::<VarianceType>().expect("known"),
            VarianceType::FixedLarge
        );
    }

    #[test]
    fn loop_draws_noise_for_every_positive_timestep() {
        let s = schedule();
        let steps = InferenceSteps::new(100, 10, TimestepSpacing::Leading, 0).expect("plan");
        let x = Tensor::ones((2, 3), DType::F32, &Device::Cpu).expect("ones");
        let mut draws = 0;
        let (out, stats) = ddpm_sample(
            &s,
            &DdpmConfig::default(),
            &steps,
            &x,
            |x, _| Ok(x.zeros_like()?),
            |x| {
                draws += 1;
                Ok(x.zeros_like()?)
            },
        )
        .expect("sample");
        assert_eq!(stats.nfe, 10);
        assert_eq!(draws, 9);
        assert_eq!(out.dims(), &[2, 3]);
    }

    #[test]
    fn loop_reports_non_finite_states() {
        let s = schedule();
        let steps = InferenceSteps::new(100, 5, TimestepSpacing::Leading, 0).expect("plan");
        let x = zeros();
        let config = DdpmConfig {
            clip_sample: false,
            ..DdpmConfig::default()
        };
        let err = ddpm_sample(
            &s,
            &config,
            &steps,
            &x,
            |x, _| Ok((x.ones_like()? * f64::INFINITY)?),
            |x| Ok(x.zeros_like()?),
        )
        .unwrap_err();
        assert!(matches!(err, SamplerError::NonFinite { .. }), "{err}");
    }
}

//! The DDIM sampler (Song et al. 2021), numerically matching diffusers 0.42.1's `DDIMScheduler`.
//!
//! Conventions (`a_t = alphas_cumprod[t]`, scalar coefficients in `f32` like diffusers' 0-dim
//! tensors, tensor arithmetic in the sample's dtype):
//! * the previous timestep is `t - N // n` ([`ddim_prev_timestep`]), not the next entry of the
//!   timestep list, which matters for trailing and linspace spacing;
//! * `a_prev = alphas_cumprod[t_prev]` if `t_prev >= 0`, else the final alpha cumprod (1 when
//!   `set_alpha_to_one`, else `alphas_cumprod[0]`);
//! * `var = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)`, `std = eta * sqrt(var)`;
//! * `x0` and `eps` come from the model output by prediction type; `x0` is clipped to
//!   `[-clip_sample_range, clip_sample_range]` (when `clip_sample`) after `eps` was computed from
//!   the unclipped `x0`; `use_clipped_model_output` recomputes `eps` from the clipped `x0`;
//! * `prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - std^2) eps`, plus `std * noise` when `eta > 0`.
//!   A rounding-negative `1 - a_prev - std^2` is taken as 0 (diffusers would give NaN).

use candle_core::Tensor;

use crate::path::diffusion::{DiffusionSchedule, PredictionType};

use super::discrete::{
    check_clip_range, check_finite, check_step_args, clip_original_sample, DiffusionStats,
    StepOutput,
};
use super::error::SamplerError;
use super::prediction::{
    epsilon_from_original_sample, mul_scalar, predict_epsilon, predict_original_sample,
};
use super::timesteps::{check_counts, InferenceSteps};

/// DDIM settings (diffusers' names and defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdimConfig {
    /// Stochasticity in `[0, 1]`: 0 is deterministic DDIM, 1 matches DDPM's posterior variance.
    pub eta: f64,
    /// Whether the step past `t = 0` uses `a_prev = 1` (true) or `alphas_cumprod[0]` (false).
    pub set_alpha_to_one: bool,
    /// Whether to clamp the predicted `x0` to `[-clip_sample_range, clip_sample_range]`.
    pub clip_sample: bool,
    /// The clamp bound used when `clip_sample` is set (finite, > 0).
    pub clip_sample_range: f64,
    /// Whether to recompute `eps` from the clipped `x0`.
    pub use_clipped_model_output: bool,
    /// What the model predicts.
    pub prediction_type: PredictionType,
}

impl Default for DdimConfig {
    fn default() -> Self {
        DdimConfig {
            eta: 0.0,
            set_alpha_to_one: true,
            clip_sample: true,
            clip_sample_range: 1.0,
            use_clipped_model_output: false,
            prediction_type: PredictionType::Epsilon,
        }
    }
}

impl DdimConfig {
    /// Checks `0 <= eta <= 1` and a finite, positive `clip_sample_range`.
    pub fn validate(&self) -> Result<(), SamplerError> {
        if !(0.0..=1.0).contains(&self.eta) {
            return Err(SamplerError::InvalidParameter {
                name: "eta",
                message: format!("got {}; it must be in [0, 1]", self.eta),
            });
        }
        check_clip_range(self.clip_sample_range)
    }

    /// The `a_prev` used when the previous timestep is negative.
    pub fn final_alpha_cumprod(&self, schedule: &DiffusionSchedule) -> f32 {
        if self.set_alpha_to_one {
            1.0
        } else {
            schedule.alphas_cumprod()[0]
        }
    }
}

/// The previous DDIM timestep `t - N // n` (negative past the end).
pub fn ddim_prev_timestep(
    t: i64,
    num_train_timesteps: usize,
    num_inference_steps: usize,
) -> Result<i64, SamplerError> {
    check_counts(num_train_timesteps, num_inference_steps)?;
    Ok(t.saturating_sub((num_train_timesteps / num_inference_steps) as i64))
}

/// The `f32` scalars of one DDIM step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdimCoefficients {
    /// `a_t`.
    pub alpha_prod_t: f32,
    /// `a_prev` (the final alpha cumprod when `t_prev < 0`).
    pub alpha_prod_t_prev: f32,
    /// `(1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)`.
    pub variance: f32,
    /// `eta * sqrt(variance)`.
    pub std_dev_t: f32,
}

/// The DDIM scalars for a step from `t` to `t_prev` (`t` must be in `0..N`, `t_prev < N`).
pub fn ddim_coefficients(
    schedule: &DiffusionSchedule,
    config: &DdimConfig,
    t: i64,
    t_prev: i64,
) -> Result<DdimCoefficients, SamplerError> {
    let alpha_prod_t = schedule.alphas_cumprod_at(t)?;
    let alpha_prod_t_prev = if t_prev >= 0 {
        schedule.alphas_cumprod_at(t_prev)?
    } else {
        config.final_alpha_cumprod(schedule)
    };
    let beta_prod_t = 1.0 - alpha_prod_t;
    let beta_prod_t_prev = 1.0 - alpha_prod_t_prev;
    let variance = (beta_prod_t_prev / beta_prod_t) * (1.0 - alpha_prod_t / alpha_prod_t_prev);
    let std_dev_t = config.eta as f32 * variance.sqrt();
    Ok(DdimCoefficients {
        alpha_prod_t,
        alpha_prod_t_prev,
        variance,
        std_dev_t,
    })
}

/// One DDIM step from `t` to `t_prev`; `noise` (shaped like `sample`) is required when `eta > 0`.
pub fn ddim_step(
    schedule: &DiffusionSchedule,
    config: &DdimConfig,
    sample: &Tensor,
    t: i64,
    t_prev: i64,
    model_output: &Tensor,
    noise: Option<&Tensor>,
) -> Result<StepOutput, SamplerError> {
    config.validate()?;
    let noise = check_step_args(
        schedule,
        sample,
        t,
        t_prev,
        model_output,
        noise,
        config.eta > 0.0,
    )?;
    let c = ddim_coefficients(schedule, config, t, t_prev)?;
    let pt = config.prediction_type;
    let x0 = predict_original_sample(pt, c.alpha_prod_t, sample, model_output)?;
    let eps = predict_epsilon(pt, c.alpha_prod_t, sample, model_output)?;
    let x0 = clip_original_sample(x0, config.clip_sample, config.clip_sample_range)?;
    let eps = if config.use_clipped_model_output {
        epsilon_from_original_sample(c.alpha_prod_t, sample, &x0)?
    } else {
        eps
    };
    let direction = ((1.0 - c.alpha_prod_t_prev) - c.std_dev_t * c.std_dev_t)
        .max(0.0)
        .sqrt();
    let mut prev = (mul_scalar(&x0, c.alpha_prod_t_prev.sqrt())? + mul_scalar(&eps, direction)?)?;
    if let Some(z) = noise {
        prev = (prev + mul_scalar(z, c.std_dev_t)?)?;
    }
    Ok(StepOutput {
        prev_sample: prev,
        pred_original_sample: x0,
    })
}

/// Runs DDIM from `x_t` over `steps.timesteps`, one `model(x, t)` call per timestep.
///
/// `noise(x)` must return standard Gaussian noise shaped like `x`; it is called once per step
/// when `eta > 0` and never otherwise. Returns the final sample and the loop statistics.
pub fn ddim_sample<M, R>(
    schedule: &DiffusionSchedule,
    config: &DdimConfig,
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
    let n_train = schedule.num_train_timesteps();
    steps.validate(n_train)?;
    let mut x = x_t.clone();
    let mut stats = DiffusionStats::default();
    for &t in &steps.timesteps {
        let model_output = model(&x, t)?;
        stats.nfe += 1;
        let t_prev = ddim_prev_timestep(t, n_train, steps.num_inference_steps)?;
        let z = if config.eta > 0.0 {
            Some(noise(&x)?)
        } else {
            None
        };
        x = ddim_step(schedule, config, &x, t, t_prev, &model_output, z.as_ref())?.prev_sample;
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
    fn missing_noise_is_an_error() {
        let config = DdimConfig {
            eta: 0.5,
            ..DdimConfig::default()
        };
        let x = zeros();
        let err = ddim_step(&schedule(), &config, &x, 50, 40, &x, None).unwrap_err();
        assert!(
            matches!(err, SamplerError::InvalidParameter { name: "noise", .. }),
            "{err}"
        );
        assert!(ddim_step(&schedule(), &DdimConfig::default(), &x, 50, 40, &x, None).is_ok());
    }

    #[test]
    fn bad_timesteps_are_errors() {
        let x = zeros();
        let config = DdimConfig::default();
        let err = ddim_step(&schedule(), &config, &x, 100, 90, &x, None).unwrap_err();
        assert!(
            matches!(
                err,
                SamplerError::Path(PathError::TimestepOutOfRange { value: 100, .. })
            ),
            "{err}"
        );
        let err = ddim_step(&schedule(), &config, &x, 50, 50, &x, None).unwrap_err();
        assert!(
            matches!(err, SamplerError::InvalidParameter { name: "t_prev", .. }),
            "{err}"
        );
        let err = ddim_step(&schedule(), &config, &x, -1, -11, &x, None).unwrap_err();
        assert!(
            matches!(
                err,
                SamplerError::Path(PathError::TimestepOutOfRange { value: -1, .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn bad_config_and_shapes_are_errors() {
        let x = zeros();
        for eta in [-0.1, 1.5, f64::NAN] {
            let config = DdimConfig {
                eta,
                ..DdimConfig::default()
            };
            assert!(matches!(
                config.validate(),
                Err(SamplerError::InvalidParameter { name: "eta", .. })
            ));
        }
        let config = DdimConfig {
            clip_sample_range: 0.0,
            ..DdimConfig::default()
        };
        assert!(ddim_step(&schedule(), &config, &x, 50, 40, &x, None).is_err());
        let wrong = Tensor::zeros((3, 2), DType::F32, &Device::Cpu).expect("zeros");
        let err = ddim_step(
            &schedule(),
            &DdimConfig::default(),
            &x,
            50,
            40,
            &wrong,
            None,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                SamplerError::Path(PathError::BadShape {
                    what: "model_output",
                    ..
                })
            ),
            "{err}"
        );
        let config = DdimConfig {
            eta: 1.0,
            ..DdimConfig::default()
        };
        let err = ddim_step(&schedule(), &config, &x, 50, 40, &x, Some(&wrong)).unwrap_err();
        assert!(
            matches!(
                err,
                SamplerError::Path(PathError::BadShape { what: "noise", .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn f64_states_stay_f64() {
        let x = Tensor::ones((2, 3), DType::F64, &Device::Cpu).expect("ones");
        let config = DdimConfig {
            eta: 1.0,
            ..DdimConfig::default()
        };
        let out = ddim_step(&schedule(), &config, &x, 50, 40, &x, Some(&x)).expect("step");
        assert_eq!(out.prev_sample.dtype(), DType::F64);
        assert_eq!(out.pred_original_sample.dtype(), DType::F64);
    }

    #[test]
    fn prev_timestep_rules() {
        assert_eq!(ddim_prev_timestep(999, 1000, 29).expect("ok"), 965);
        assert!(ddim_prev_timestep(10, 1000, 0).is_err());
        assert!(ddim_prev_timestep(10, 1000, 1001).is_err());
    }

    #[test]
    fn loop_counts_evaluations_and_uses_noise_only_when_stochastic() {
        let s = schedule();
        let steps = InferenceSteps::new(100, 10, TimestepSpacing::Leading, 0).expect("plan");
        let x = Tensor::ones((2, 3), DType::F32, &Device::Cpu).expect("ones");
        let mut draws = 0;
        let (out, stats) = ddim_sample(
            &s,
            &DdimConfig::default(),
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
        assert_eq!(draws, 0);
        assert_eq!(out.dims(), &[2, 3]);
        let config = DdimConfig {
            eta: 1.0,
            ..DdimConfig::default()
        };
        let mut draws = 0;
        ddim_sample(
            &s,
            &config,
            &steps,
            &x,
            |x, _| Ok(x.zeros_like()?),
            |x| {
                draws += 1;
                Ok(x.zeros_like()?)
            },
        )
        .expect("sample");
        assert_eq!(draws, 10);
    }

    #[test]
    fn loop_rejects_negative_timesteps_and_model_errors() {
        let s = schedule();
        let x = zeros();
        let steps = InferenceSteps::new(100, 29, TimestepSpacing::Trailing, 0).expect("plan");
        let mut calls = 0;
        let err = ddim_sample(
            &s,
            &DdimConfig::default(),
            &steps,
            &x,
            |x, _| {
                calls += 1;
                Ok(x.clone())
            },
            |x| Ok(x.clone()),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                SamplerError::InvalidParameter {
                    name: "timesteps",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(calls, 0);
        let steps = InferenceSteps::new(100, 10, TimestepSpacing::Leading, 0).expect("plan");
        let err = ddim_sample(
            &s,
            &DdimConfig::default(),
            &steps,
            &x,
            |_, _| {
                Err(SamplerError::InvalidParameter {
                    name: "model",
                    message: "boom".into(),
                })
            },
            |x| Ok(x.clone()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("boom"));
    }
}

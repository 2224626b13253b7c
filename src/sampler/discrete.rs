//! Pieces shared by the discrete-time samplers (DDPM and DDIM): the step result, the loop
//! statistics and the argument checks.
//!
//! A step is a pure function of its arguments; the caller supplies the previous timestep and,
//! when the step is stochastic, the Gaussian noise (shaped like the sample).

use candle_core::{DType, Tensor};

use crate::path::diffusion::{check_same_shape, DiffusionSchedule};

use super::error::SamplerError;

/// The result of one DDPM or DDIM step.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// The sample at the previous (less noisy) timestep.
    pub prev_sample: Tensor,
    /// The model's clean-sample prediction `x0` at this step, after clipping.
    pub pred_original_sample: Tensor,
}

/// Statistics of a sampling loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiffusionStats {
    /// Number of model evaluations (one per visited timestep).
    pub nfe: usize,
}

/// Checks the step arguments: `t` in `0..N`, `t_prev < t` and `t_prev < N`, model output shaped
/// like the sample. Returns the noise when `needed`, or a clear error if it is missing or misshapen.
pub(crate) fn check_step_args<'a>(
    schedule: &DiffusionSchedule,
    sample: &Tensor,
    t: i64,
    t_prev: i64,
    model_output: &Tensor,
    noise: Option<&'a Tensor>,
    needed: bool,
) -> Result<Option<&'a Tensor>, SamplerError> {
    schedule.timestep_index(t)?;
    if t_prev >= t {
        return Err(SamplerError::InvalidParameter {
            name: "t_prev",
            message: format!(
                "the previous timestep {t_prev} must be below the current timestep {t}"
            ),
        });
    }
    check_same_shape("model_output", sample, model_output)?;
    if !needed {
        return Ok(None);
    }
    match noise {
        Some(n) => {
            check_same_shape("noise", sample, n)?;
            Ok(Some(n))
        }
        None => Err(SamplerError::InvalidParameter {
            name: "noise",
            message: format!(
                "this step at t={t} is stochastic and needs a noise tensor shaped like the sample"
            ),
        }),
    }
}

/// Clamps `x0` to `[-range, range]` when `clip` is set.
pub(crate) fn clip_original_sample(
    x0: Tensor,
    clip: bool,
    range: f64,
) -> Result<Tensor, SamplerError> {
    if clip {
        Ok(x0.clamp(-range, range)?)
    } else {
        Ok(x0)
    }
}

/// Errors unless `clip_sample_range` is finite and positive.
pub(crate) fn check_clip_range(range: f64) -> Result<(), SamplerError> {
    if range.is_finite() && range > 0.0 {
        Ok(())
    } else {
        Err(SamplerError::InvalidParameter {
            name: "clip_sample_range",
            message: format!("got {range}; it must be finite and > 0"),
        })
    }
}

/// Errors with `NonFinite` when `x` holds a NaN or an infinity.
pub(crate) fn check_finite(x: &Tensor, t: i64) -> Result<(), SamplerError> {
    // `0 * v` is 0 for finite `v` and NaN for NaN or infinite `v`.
    let zero = x
        .affine(0.0, 0.0)?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    if zero == 0.0 {
        Ok(())
    } else {
        Err(SamplerError::NonFinite { t: t as f64 })
    }
}

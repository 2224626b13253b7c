//! Conversions of a diffusion model's output to the clean sample `x0` and the noise `eps`, as
//! diffusers' DDPM/DDIM schedulers do them.
//!
//! Conventions: `a_t = alphas_cumprod[t]` is an `f32`; every scalar coefficient (`sqrt(a_t)`,
//! `sqrt(1 - a_t)`) is computed in `f32`, like diffusers' 0-dim `f32` tensors, then applied to the
//! tensors in their own dtype with one rounding per operation (divisions are true divisions).

use candle_core::Tensor;

use crate::path::diffusion::{check_same_shape, PredictionType};

use super::error::SamplerError;

/// The clean-sample prediction `x0` from a model output `m` at `a_t` (before any clipping):
/// epsilon `(x - sqrt(1-a_t) m) / sqrt(a_t)`, sample `m`, v_prediction `sqrt(a_t) x - sqrt(1-a_t) m`.
pub fn predict_original_sample(
    prediction_type: PredictionType,
    alpha_prod_t: f32,
    sample: &Tensor,
    model_output: &Tensor,
) -> Result<Tensor, SamplerError> {
    check_same_shape("model_output", sample, model_output)?;
    let sqrt_a = alpha_prod_t.sqrt();
    let sqrt_b = (1.0 - alpha_prod_t).sqrt();
    match prediction_type {
        PredictionType::Epsilon => {
            div_scalar(&(sample - mul_scalar(model_output, sqrt_b)?)?, sqrt_a)
        }
        PredictionType::Sample => Ok(model_output.clone()),
        PredictionType::VPrediction => {
            Ok((mul_scalar(sample, sqrt_a)? - mul_scalar(model_output, sqrt_b)?)?)
        }
    }
}

/// The noise prediction `eps` from a model output `m` at `a_t`: epsilon `m`, sample
/// `(x - sqrt(a_t) m) / sqrt(1-a_t)`, v_prediction `sqrt(a_t) m + sqrt(1-a_t) x`.
pub fn predict_epsilon(
    prediction_type: PredictionType,
    alpha_prod_t: f32,
    sample: &Tensor,
    model_output: &Tensor,
) -> Result<Tensor, SamplerError> {
    check_same_shape("model_output", sample, model_output)?;
    match prediction_type {
        PredictionType::Epsilon => Ok(model_output.clone()),
        PredictionType::Sample => epsilon_from_original_sample(alpha_prod_t, sample, model_output),
        PredictionType::VPrediction => {
            let sqrt_a = alpha_prod_t.sqrt();
            let sqrt_b = (1.0 - alpha_prod_t).sqrt();
            Ok((mul_scalar(model_output, sqrt_a)? + mul_scalar(sample, sqrt_b)?)?)
        }
    }
}

/// The noise implied by a clean sample: `(x - sqrt(a_t) x0) / sqrt(1 - a_t)`.
pub fn epsilon_from_original_sample(
    alpha_prod_t: f32,
    sample: &Tensor,
    x0: &Tensor,
) -> Result<Tensor, SamplerError> {
    check_same_shape("x0", sample, x0)?;
    div_scalar(
        &(sample - mul_scalar(x0, alpha_prod_t.sqrt())?)?,
        (1.0 - alpha_prod_t).sqrt(),
    )
}

/// `x * c` with `c` an `f32` scalar cast to the tensor's dtype (one rounding, like torch).
pub(crate) fn mul_scalar(x: &Tensor, c: f32) -> Result<Tensor, SamplerError> {
    Ok(x.broadcast_mul(&scalar_like(x, c)?)?)
}

/// `x / c` as a true division (candle's `Tensor / f64` multiplies by `1/c`, which rounds twice).
pub(crate) fn div_scalar(x: &Tensor, c: f32) -> Result<Tensor, SamplerError> {
    Ok(x.broadcast_div(&scalar_like(x, c)?)?)
}

/// A 0-dim tensor holding `c`, with the dtype and device of `x`.
fn scalar_like(x: &Tensor, c: f32) -> Result<Tensor, SamplerError> {
    Ok(Tensor::new(c, x.device())?.to_dtype(x.dtype())?)
}

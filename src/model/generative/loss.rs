//! The training loss: a regression MSE plus a weighted auxiliary Dice loss, every part reported.
//!
//! * MSE (`tests/golden/losses.json` conventions): `mean((prediction - target)^2)` over every
//!   element, in f32. The target is the path velocity `dx_t` for flow matching, and the noise,
//!   `get_velocity(x0, noise, t)` or `x0` for diffusion (epsilon, v_prediction, sample).
//! * Dice: the clean mask the prediction implies (`x_1` for flow matching, `x0` for diffusion),
//!   mapped from [-1, 1] to [0, 1] by `(x + 1) / 2` and clamped there, against the target mapped
//!   the same way; per sample `1 - (2 sum(p g) + 1) / (sum(p) + sum(g) + 1)` (smoothing 1), then
//!   the batch mean.
//! * `train_loss = mse + aux_loss_weight * aux_dice`.

use candle_core::{DType, Tensor};

use crate::path::diffusion::{DiffusionSchedule, PredictionType};

use super::error::GenerativeError;

/// Additive smoothing of the Dice ratio (keeps an empty mask against an empty target at 0 loss).
pub const DICE_SMOOTHING: f64 = 1.0;

/// The loss of one batch: the tensor to backpropagate and its parts as numbers.
#[derive(Debug, Clone)]
pub struct LossTerms {
    /// `mse + aux_weight * aux_dice`, a 0-dim f32 tensor to call `backward` on.
    pub total: Tensor,
    /// The value of `total`.
    pub train_loss: f64,
    /// The regression MSE.
    pub mse: f64,
    /// The auxiliary Dice loss (reported even when its weight is 0).
    pub aux_dice: f64,
    /// The weight the Dice loss entered `total` with.
    pub aux_weight: f64,
}

impl LossTerms {
    /// Builds the terms from the two loss tensors (0-dim) and the Dice weight.
    pub fn combine(mse: Tensor, dice: Tensor, aux_weight: f64) -> Result<Self, GenerativeError> {
        let total = if aux_weight > 0.0 {
            (&mse + dice.affine(aux_weight, 0.0)?)?
        } else {
            mse.clone()
        };
        let value = |t: &Tensor| -> Result<f64, GenerativeError> {
            Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
        };
        Ok(Self {
            train_loss: value(&total)?,
            mse: value(&mse)?,
            aux_dice: value(&dice)?,
            aux_weight,
            total,
        })
    }

    /// The named components, as logged: `train_loss`, `mse`, `aux_dice`.
    pub fn components(&self) -> [(&'static str, f64); 3] {
        [
            ("train_loss", self.train_loss),
            ("mse", self.mse),
            ("aux_dice", self.aux_dice),
        ]
    }
}

/// `mean((prediction - target)^2)` over all elements, as a 0-dim f32 tensor.
pub fn mse(prediction: &Tensor, target: &Tensor) -> Result<Tensor, GenerativeError> {
    if prediction.dims() != target.dims() {
        return Err(GenerativeError::BadShape {
            what: "prediction",
            expected: format!("{:?} (the shape of the regression target)", target.dims()),
            got: prediction.dims().to_vec(),
        });
    }
    let diff = (prediction.to_dtype(DType::F32)? - target.to_dtype(DType::F32)?)?;
    Ok(diff.sqr()?.mean_all()?)
}

/// The soft Dice loss between two masks in [-1, 1] (see the module docs), a 0-dim f32 tensor.
pub fn dice_loss(predicted: &Tensor, target: &Tensor) -> Result<Tensor, GenerativeError> {
    if predicted.dims() != target.dims() || predicted.rank() < 2 {
        return Err(GenerativeError::BadShape {
            what: "predicted mask",
            expected: format!("{:?} (the target's shape, batch first)", target.dims()),
            got: predicted.dims().to_vec(),
        });
    }
    let to_unit = |x: &Tensor| -> candle_core::Result<Tensor> {
        x.to_dtype(DType::F32)?
            .affine(0.5, 0.5)?
            .clamp(0f32, 1f32)?
            .flatten_from(1)
    };
    let p = to_unit(predicted)?;
    let g = to_unit(target)?;
    let intersection = (&p * &g)?.sum(1)?;
    let denominator = (p.sum(1)? + g.sum(1)?)?.affine(1.0, DICE_SMOOTHING)?;
    let ratio = intersection
        .affine(2.0, DICE_SMOOTHING)?
        .div(&denominator)?;
    Ok(ratio.affine(-1.0, 1.0)?.mean_all()?)
}

/// The clean sample `x0` a diffusion model's output implies at per-sample timesteps `(B,)`:
/// epsilon `(x - sqrt(1-a) m) / sqrt(a)`, sample `m`, v_prediction `sqrt(a) x - sqrt(1-a) m`.
pub fn diffusion_clean_prediction(
    schedule: &DiffusionSchedule,
    prediction_type: PredictionType,
    noisy: &Tensor,
    output: &Tensor,
    timesteps: &[i64],
) -> Result<Tensor, GenerativeError> {
    let mut shape = vec![1usize; noisy.rank()];
    shape[0] = timesteps.len();
    let mut sqrt_a = Vec::with_capacity(timesteps.len());
    let mut sqrt_b = Vec::with_capacity(timesteps.len());
    for &t in timesteps {
        let a = schedule.alphas_cumprod_at(t)?;
        sqrt_a.push(a.sqrt());
        sqrt_b.push((1.0 - a).sqrt());
    }
    let dtype = noisy.dtype();
    let column = |v: Vec<f32>| -> candle_core::Result<Tensor> {
        Tensor::from_vec(v, shape.as_slice(), noisy.device())?.to_dtype(dtype)
    };
    let (sa, sb) = (column(sqrt_a)?, column(sqrt_b)?);
    let output = output.to_dtype(dtype)?;
    Ok(match prediction_type {
        PredictionType::Epsilon => (noisy - output.broadcast_mul(&sb)?)?.broadcast_div(&sa)?,
        PredictionType::Sample => output,
        PredictionType::VPrediction => (noisy.broadcast_mul(&sa)? - output.broadcast_mul(&sb)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::diffusion::BetaSchedule;
    use candle_core::Device;

    #[test]
    fn dice_is_zero_on_a_match_and_near_one_on_disjoint_masks() -> Result<(), GenerativeError> {
        let dev = Device::Cpu;
        let half: Vec<f32> = (0..32).map(|i| if i < 16 { 1.0 } else { -1.0 }).collect();
        let other: Vec<f32> = half.iter().map(|v| -v).collect();
        let a = Tensor::from_vec(half, (1, 1, 4, 8), &dev)?;
        let b = Tensor::from_vec(other, (1, 1, 4, 8), &dev)?;
        let same = dice_loss(&a, &a)?.to_scalar::<f32>()?;
        assert!(same.abs() < 1e-6, "{same}");
        let disjoint = dice_loss(&a, &b)?.to_scalar::<f32>()?;
        // 1 - 1 / (16 + 16 + 1)
        assert!((disjoint - (1.0 - 1.0 / 33.0)).abs() < 1e-6, "{disjoint}");
        // Out-of-range predictions are clamped to the mask range.
        let over = dice_loss(&a.affine(3.0, 0.0)?, &a)?.to_scalar::<f32>()?;
        assert!(over.abs() < 1e-6, "{over}");
        assert!(dice_loss(&a, &a.flatten_all()?).is_err());
        Ok(())
    }

    #[test]
    fn mse_is_the_mean_square() -> Result<(), GenerativeError> {
        let dev = Device::Cpu;
        let p = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &dev)?;
        let t = Tensor::new(&[[1f32, 0.0], [0.0, 4.0]], &dev)?;
        assert_eq!(mse(&p, &t)?.to_scalar::<f32>()?, (4.0 + 9.0) / 4.0);
        assert!(mse(&p, &t.flatten_all()?).is_err());
        Ok(())
    }

    #[test]
    fn combine_adds_the_weighted_dice() -> Result<(), GenerativeError> {
        let dev = Device::Cpu;
        let terms =
            LossTerms::combine(Tensor::new(0.5f32, &dev)?, Tensor::new(0.25f32, &dev)?, 0.1)?;
        assert!((terms.train_loss - (0.5 + 0.1 * 0.25)).abs() < 1e-7);
        assert_eq!(terms.components()[2], ("aux_dice", 0.25));
        Ok(())
    }

    #[test]
    fn clean_prediction_inverts_add_noise() -> Result<(), GenerativeError> {
        let dev = Device::Cpu;
        let schedule = DiffusionSchedule::new(100, 1e-4, 0.02, BetaSchedule::Linear)?;
        let x0 = Tensor::new(&[[0.5f32, -0.25], [1.0, -1.0]], &dev)?.reshape((2, 1, 2))?;
        let noise = Tensor::new(&[[0.3f32, 1.2], [-0.7, 0.1]], &dev)?.reshape((2, 1, 2))?;
        let steps = [10i64, 90];
        let ts = Tensor::new(&steps, &dev)?;
        let noisy = schedule.add_noise(&x0, &noise, &ts)?;
        for pt in [
            PredictionType::Epsilon,
            PredictionType::VPrediction,
            PredictionType::Sample,
        ] {
            let output = schedule.training_target(pt, &x0, &noise, &ts)?;
            let got = diffusion_clean_prediction(&schedule, pt, &noisy, &output, &steps)?;
            let err = (got - &x0)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(err < 1e-4, "{pt}: {err}");
        }
        Ok(())
    }
}

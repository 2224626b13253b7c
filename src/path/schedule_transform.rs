//! Changing the scheduler of a trained velocity model (flow_matching's `ScheduleTransformedModel`).
//!
//! A velocity `u_t(x)` trained on the path of an original scheduler `(alpha_t, sigma_t)` generates,
//! after the scale-time (ST) change `x_bar_r = s_r x_{t_r}`, the path of a new scheduler
//! `(alpha_bar_r, sigma_bar_r)` with the same coupling. With `rho = alpha / sigma` the SNR:
//!
//! ```text
//! t_r  = rho^-1(rho_bar(r))                       (the original's snr_inverse)
//! s_r  = sigma_bar_r / sigma_{t_r}
//! dt_r = sigma_t^2 (sigma_bar_r d_alpha_bar_r - alpha_bar_r d_sigma_bar_r)
//!        / (sigma_bar_r^2 (sigma_t d_alpha_t - alpha_t d_sigma_t))
//! ds_r = (sigma_t d_sigma_bar_r - sigma_bar_r d_sigma_t dt_r) / sigma_t^2
//! u_bar_r(x) = ds_r x / s_r + dt_r s_r u_{t_r}(x / s_r)
//! ```
//!
//! r is a time of the new scheduler (t=0 noise, t=1 data), e.g. the 0-dim time an ODE solver passes;
//! it broadcasts against x. It is not restricted to [0, 1] (adaptive solvers step just past their
//! end), and `t_r` may leave [0, 1] where the original's SNR range is narrower than the new one's.

use candle_core::Tensor;

use crate::path::error::PathError;
use crate::path::scheduler::AffineScheduler;

/// The scale-time change from an original scheduler to a new one, evaluated at new times r.
#[derive(Debug, Clone)]
pub struct ScaleTime {
    /// `t_r`, the original time with the same SNR as r.
    pub t_r: Tensor,
    /// `s_r = sigma_bar_r / sigma_{t_r}`, the scale.
    pub s_r: Tensor,
    /// `d t_r / dr`.
    pub dt_r: Tensor,
    /// `d s_r / dr`.
    pub ds_r: Tensor,
}

impl ScaleTime {
    /// Evaluates the scale-time change from `original` to `new` at the new times `r` (dtype of r).
    pub fn at(
        original: &AffineScheduler,
        new: &AffineScheduler,
        r: &Tensor,
    ) -> Result<Self, PathError> {
        let bar = new.at(r)?;
        let t_r = original.snr_inverse(&bar.alpha_t.div(&bar.sigma_t)?)?;
        let orig = original.at(&t_r)?;
        let s_r = bar.sigma_t.div(&orig.sigma_t)?;
        let sigma_t2 = orig.sigma_t.mul(&orig.sigma_t)?;
        let num = sigma_t2.mul(
            &bar.sigma_t
                .mul(&bar.d_alpha_t)?
                .sub(&bar.alpha_t.mul(&bar.d_sigma_t)?)?,
        )?;
        let den_orig = orig
            .sigma_t
            .mul(&orig.d_alpha_t)?
            .sub(&orig.alpha_t.mul(&orig.d_sigma_t)?)?;
        let den = bar.sigma_t.mul(&bar.sigma_t)?.mul(&den_orig)?;
        let dt_r = num.div(&den)?;
        let ds_num = orig
            .sigma_t
            .mul(&bar.d_sigma_t)?
            .sub(&bar.sigma_t.mul(&orig.d_sigma_t)?.mul(&dt_r)?)?;
        let ds_r = ds_num.div(&sigma_t2)?;
        Ok(ScaleTime {
            t_r,
            s_r,
            dt_r,
            ds_r,
        })
    }
}

/// A velocity model `v(x, t)` trained with `original`, driven as a model of the `new` scheduler.
#[derive(Debug, Clone)]
pub struct ScheduleTransformedModel<F> {
    model: F,
    original: AffineScheduler,
    new: AffineScheduler,
}

impl<F> ScheduleTransformedModel<F>
where
    F: Fn(&Tensor, &Tensor) -> Result<Tensor, PathError>,
{
    /// Wraps `model` (called as `model(x, t)`), checking both schedulers' parameters.
    pub fn new(
        model: F,
        original: AffineScheduler,
        new: AffineScheduler,
    ) -> Result<Self, PathError> {
        original.validate()?;
        new.validate()?;
        Ok(ScheduleTransformedModel {
            model,
            original,
            new,
        })
    }

    /// The scheduler the wrapped model was trained with.
    pub fn original(&self) -> &AffineScheduler {
        &self.original
    }

    /// The scheduler the transformed velocity follows.
    pub fn new_scheduler(&self) -> &AffineScheduler {
        &self.new
    }

    /// The transformed velocity `ds_r x / s_r + dt_r s_r v(x / s_r, t_r)` at new time r.
    ///
    /// The model sees `t_r`, with r's shape; r must broadcast against x.
    pub fn velocity(&self, x: &Tensor, r: &Tensor) -> Result<Tensor, PathError> {
        let st = ScaleTime::at(&self.original, &self.new, r)?;
        let u_t = (self.model)(&x.broadcast_div(&st.s_r)?, &st.t_r)?;
        let drift = st.ds_r.broadcast_mul(x)?.broadcast_div(&st.s_r)?;
        Ok(drift.broadcast_add(&st.dt_r.mul(&st.s_r)?.broadcast_mul(&u_t)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn identity_scalar(x: &Tensor) -> f64 {
        x.to_dtype(DType::F64)
            .and_then(|x| x.to_scalar::<f64>())
            .expect("scalar")
    }

    #[test]
    fn same_scheduler_is_the_identity() {
        let r = Tensor::new(0.3f64, &Device::Cpu).expect("r");
        let st = ScaleTime::at(&AffineScheduler::Cosine, &AffineScheduler::Cosine, &r).expect("st");
        assert!((identity_scalar(&st.t_r) - 0.3).abs() < 1e-15);
        assert!((identity_scalar(&st.s_r) - 1.0).abs() < 1e-15);
        assert!((identity_scalar(&st.dt_r) - 1.0).abs() < 1e-14);
        assert!(identity_scalar(&st.ds_r).abs() < 1e-14);
    }

    #[test]
    fn invalid_schedulers_are_rejected() {
        let model = |x: &Tensor, _t: &Tensor| Ok(x.clone());
        let bad = AffineScheduler::Polynomial { exponent: 0.0 };
        assert!(ScheduleTransformedModel::new(model, bad, AffineScheduler::CondOt).is_err());
        assert!(ScheduleTransformedModel::new(model, AffineScheduler::CondOt, bad).is_err());
    }

    #[test]
    fn model_errors_are_passed_on() {
        let model = |_x: &Tensor, _t: &Tensor| -> Result<Tensor, PathError> {
            Err(PathError::InvalidParameter {
                name: "model",
                message: "boom".into(),
            })
        };
        let m =
            ScheduleTransformedModel::new(model, AffineScheduler::CondOt, AffineScheduler::Cosine)
                .expect("model");
        let x = Tensor::ones((2, 2), DType::F32, &Device::Cpu).expect("x");
        let r = Tensor::new(0.5f32, &Device::Cpu).expect("r");
        assert!(matches!(
            m.velocity(&x, &r),
            Err(PathError::InvalidParameter { name: "model", .. })
        ));
    }
}

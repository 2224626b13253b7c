//! The affine probability path of flow_matching 1.0.10, and conversions between predictions.
//!
//! **Time convention**: flow-matching time runs from **t=0, noise `x_0`**, to **t=1, data `x_1`**.
//! For a scheduler `(alpha_t, sigma_t)` (see [`AffineScheduler`]) the path and its velocity are
//!
//! ```text
//! x_t  = sigma_t x_0 + alpha_t x_1
//! dx_t = d_sigma_t x_0 + d_alpha_t x_1
//! ```
//!
//! [`AffineProbPath::sample`] takes its times as a [`FlowTime`], the only way to build one being
//! [`FlowTime::new`], which checks that every value lies in [0, 1]; so no unchecked time reaches
//! `sample`. The times have shape `(batch_size,)` and are broadcast over the other dimensions of x.
//!
//! The converters between the parameterizations of a model's output (velocity `v = dx_t`, target
//! `x_1`, noise `eps = x_0`) take t already shaped to broadcast against `x_t`, e.g. `(B, 1, .., 1)`,
//! and do not expand it. With `a, s, da, ds` the scheduler at t:
//!
//! ```text
//! target_to_velocity  = (ds/s) x_t + ((da s - ds a)/s) x_1
//! epsilon_to_velocity = (da/a) x_t + ((ds a - da s)/a) eps
//! velocity_to_target  = (-ds/(da s - ds a)) x_t + (s/(da s - ds a)) v
//! epsilon_to_target   = (1/a) x_t - (s/a) eps
//! velocity_to_epsilon = (-da/(ds a - da s)) x_t + (a/(ds a - da s)) v
//! target_to_epsilon   = (1/s) x_t - (a/s) x_1
//! ```
//!
//! Like flow_matching's, the converters accept any real t (an ODE solver may evaluate them just
//! past t=1), and return inf or NaN where a coefficient divides by zero (e.g. `1/s` at t=1).

use candle_core::{DType, Tensor};

use crate::path::error::PathError;
use crate::path::scheduler::{check_float, AffineScheduler, SchedulerOutput};

/// Flow-matching times, every value checked to lie in [0, 1] (t=0 is noise `x_0`, t=1 is data `x_1`).
#[derive(Debug, Clone)]
pub struct FlowTime(Tensor);

impl FlowTime {
    /// Checks that `t` is a floating-point tensor whose values all lie in [0, 1] (NaN is rejected).
    pub fn new(t: Tensor) -> Result<Self, PathError> {
        check_float("t", &t)?;
        let values = t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        if let Some(&value) = values.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            return Err(PathError::TimeOutOfRange { value });
        }
        Ok(FlowTime(t))
    }

    /// The checked times.
    pub fn as_tensor(&self) -> &Tensor {
        &self.0
    }

    /// The checked times, by value.
    pub fn into_tensor(self) -> Tensor {
        self.0
    }
}

/// A sample of the path at times t: the endpoints, `x_t` and the conditional velocity `dx_t`.
#[derive(Debug, Clone)]
pub struct PathSample {
    /// The noise endpoint (t=0), shape `(B, ..)`.
    pub x_0: Tensor,
    /// The data endpoint (t=1), shape `(B, ..)`.
    pub x_1: Tensor,
    /// The times, shape `(B,)`.
    pub t: FlowTime,
    /// `x_t = sigma_t x_0 + alpha_t x_1`, shape `(B, ..)`.
    pub x_t: Tensor,
    /// `dx_t = d_sigma_t x_0 + d_alpha_t x_1`, the regression target of the velocity, shape `(B, ..)`.
    pub dx_t: Tensor,
}

/// The affine probability path `x_t = sigma_t x_0 + alpha_t x_1` of a scheduler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffineProbPath {
    /// The scheduler giving `alpha_t`, `sigma_t` and their derivatives.
    pub scheduler: AffineScheduler,
}

impl AffineProbPath {
    /// The path of `scheduler` (its parameters are checked on every use).
    pub fn new(scheduler: AffineScheduler) -> Self {
        AffineProbPath { scheduler }
    }

    /// Samples `x_t` and `dx_t` for endpoints of shape `(B, ..)` and times of shape `(B,)`.
    pub fn sample(
        &self,
        x_0: &Tensor,
        x_1: &Tensor,
        t: &FlowTime,
    ) -> Result<PathSample, PathError> {
        if x_1.dims() != x_0.dims() {
            return Err(PathError::BadShape {
                what: "x_1",
                expected: format!("{:?} (the shape of x_0)", x_0.dims()),
                got: x_1.dims().to_vec(),
            });
        }
        let Some(&batch) = x_0.dims().first() else {
            return Err(PathError::BadShape {
                what: "x_0",
                expected: "[batch_size, ..] (at least one dimension)".to_string(),
                got: Vec::new(),
            });
        };
        let time = t.as_tensor();
        if time.dims() != [batch] {
            return Err(PathError::BadShape {
                what: "t",
                expected: format!("[batch_size] = [{batch}]"),
                got: time.dims().to_vec(),
            });
        }
        let mut shape = vec![1usize; x_0.rank()];
        shape[0] = batch;
        let out = self.scheduler.at(time)?;
        let expand = |c: &Tensor| c.reshape(shape.as_slice());
        let (alpha_t, sigma_t) = (expand(&out.alpha_t)?, expand(&out.sigma_t)?);
        let (d_alpha_t, d_sigma_t) = (expand(&out.d_alpha_t)?, expand(&out.d_sigma_t)?);
        let x_t = (sigma_t.broadcast_mul(x_0)? + alpha_t.broadcast_mul(x_1)?)?;
        let dx_t = (d_sigma_t.broadcast_mul(x_0)? + d_alpha_t.broadcast_mul(x_1)?)?;
        Ok(PathSample {
            x_0: x_0.clone(),
            x_1: x_1.clone(),
            t: t.clone(),
            x_t,
            dx_t,
        })
    }

    /// The velocity from a prediction of the data `x_1`.
    pub fn target_to_velocity(
        &self,
        x_1: &Tensor,
        x_t: &Tensor,
        t: &Tensor,
    ) -> Result<Tensor, PathError> {
        let c = self.scheduler.at(t)?;
        let a_t = c.d_sigma_t.div(&c.sigma_t)?;
        let b_t = cross(&c, Cross::VelocityMinusTarget)?.div(&c.sigma_t)?;
        combine(&a_t, x_t, &b_t, x_1)
    }

    /// The velocity from a prediction of the noise `epsilon = x_0`.
    pub fn epsilon_to_velocity(
        &self,
        epsilon: &Tensor,
        x_t: &Tensor,
        t: &Tensor,
    ) -> Result<Tensor, PathError> {
        let c = self.scheduler.at(t)?;
        let a_t = c.d_alpha_t.div(&c.alpha_t)?;
        let b_t = cross(&c, Cross::NoiseMinusVelocity)?.div(&c.alpha_t)?;
        combine(&a_t, x_t, &b_t, epsilon)
    }

    /// The data `x_1` from a prediction of the velocity.
    pub fn velocity_to_target(
        &self,
        velocity: &Tensor,
        x_t: &Tensor,
        t: &Tensor,
    ) -> Result<Tensor, PathError> {
        let c = self.scheduler.at(t)?;
        let den = cross(&c, Cross::VelocityMinusTarget)?;
        let a_t = c.d_sigma_t.neg()?.div(&den)?;
        let b_t = c.sigma_t.div(&den)?;
        combine(&a_t, x_t, &b_t, velocity)
    }

    /// The data `x_1` from a prediction of the noise `epsilon = x_0`.
    pub fn epsilon_to_target(
        &self,
        epsilon: &Tensor,
        x_t: &Tensor,
        t: &Tensor,
    ) -> Result<Tensor, PathError> {
        let c = self.scheduler.at(t)?;
        let a_t = c.alpha_t.recip()?;
        let b_t = c.sigma_t.neg()?.div(&c.alpha_t)?;
        combine(&a_t, x_t, &b_t, epsilon)
    }

    /// The noise `epsilon = x_0` from a prediction of the velocity.
    pub fn velocity_to_epsilon(
        &self,
        velocity: &Tensor,
        x_t: &Tensor,
        t: &Tensor,
    ) -> Result<Tensor, PathError> {
        let c = self.scheduler.at(t)?;
        let den = cross(&c, Cross::NoiseMinusVelocity)?;
        let a_t = c.d_alpha_t.neg()?.div(&den)?;
        let b_t = c.alpha_t.div(&den)?;
        combine(&a_t, x_t, &b_t, velocity)
    }

    /// The noise `epsilon = x_0` from a prediction of the data `x_1`.
    pub fn target_to_epsilon(
        &self,
        x_1: &Tensor,
        x_t: &Tensor,
        t: &Tensor,
    ) -> Result<Tensor, PathError> {
        let c = self.scheduler.at(t)?;
        let a_t = c.sigma_t.recip()?;
        let b_t = c.alpha_t.neg()?.div(&c.sigma_t)?;
        combine(&a_t, x_t, &b_t, x_1)
    }
}

/// Which of the two cross terms of the scheduler coefficients.
enum Cross {
    /// `da s - ds a`.
    VelocityMinusTarget,
    /// `ds a - da s`.
    NoiseMinusVelocity,
}

/// The cross term `da s - ds a` or `ds a - da s`, in torch's order of operations.
fn cross(c: &SchedulerOutput, which: Cross) -> Result<Tensor, PathError> {
    let da_s = c.d_alpha_t.mul(&c.sigma_t)?;
    let ds_a = c.d_sigma_t.mul(&c.alpha_t)?;
    Ok(match which {
        Cross::VelocityMinusTarget => da_s.sub(&ds_a)?,
        Cross::NoiseMinusVelocity => ds_a.sub(&da_s)?,
    })
}

/// `a x + b y`, broadcasting the coefficients (shaped like t) against x and y.
fn combine(a: &Tensor, x: &Tensor, b: &Tensor, y: &Tensor) -> Result<Tensor, PathError> {
    Ok(a.broadcast_mul(x)?.broadcast_add(&b.broadcast_mul(y)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn path() -> AffineProbPath {
        AffineProbPath::new(AffineScheduler::CondOt)
    }

    fn x(shape: &[usize]) -> Tensor {
        Tensor::ones(shape, DType::F32, &Device::Cpu).expect("x")
    }

    fn time(values: &[f32]) -> Result<FlowTime, PathError> {
        FlowTime::new(Tensor::new(values, &Device::Cpu)?)
    }

    #[test]
    fn times_outside_the_unit_interval_are_rejected() {
        for bad in [-0.01f32, 1.0001, f32::INFINITY, f32::NEG_INFINITY] {
            let err = time(&[0.5, bad]).expect_err("out of range");
            assert!(
                matches!(err, PathError::TimeOutOfRange { value } if value == bad as f64),
                "{err}"
            );
        }
        assert!(time(&[0.0, 0.5, 1.0]).is_ok());
    }

    #[test]
    fn nan_time_is_rejected() {
        let err = time(&[0.5, f32::NAN]).expect_err("NaN");
        assert!(
            matches!(err, PathError::TimeOutOfRange { value } if value.is_nan()),
            "{err}"
        );
        assert!(err.to_string().contains("[0, 1]"));
    }

    #[test]
    fn integer_time_is_rejected() {
        let t = Tensor::new(&[0u8, 1], &Device::Cpu).expect("t");
        assert!(matches!(
            FlowTime::new(t),
            Err(PathError::InvalidParameter { name: "t", .. })
        ));
    }

    #[test]
    fn time_of_the_wrong_shape_is_rejected() {
        let x0 = x(&[3, 2]);
        for t in [time(&[0.1, 0.2]), time(&[0.1, 0.2, 0.3, 0.4])] {
            let err = path()
                .sample(&x0, &x0, &t.expect("time"))
                .expect_err("batch mismatch");
            match err {
                PathError::BadShape {
                    what: "t",
                    ref expected,
                    ..
                } => assert!(expected.contains("[batch_size]")),
                other => panic!("unexpected error {other}"),
            }
        }
        let column = Tensor::new(&[[0.1f32], [0.2], [0.3]], &Device::Cpu).expect("t");
        let t2 = FlowTime::new(column).expect("time");
        let err = path().sample(&x0, &x0, &t2).expect_err("rank 2 t");
        assert!(
            matches!(err, PathError::BadShape { what: "t", .. }),
            "{err}"
        );
        let scalar = FlowTime::new(Tensor::new(0.5f32, &Device::Cpu).expect("t")).expect("time");
        assert!(matches!(
            path().sample(&x0, &x0, &scalar),
            Err(PathError::BadShape { what: "t", .. })
        ));
    }

    #[test]
    fn mismatched_or_scalar_endpoints_are_rejected() {
        let t = time(&[0.1, 0.2, 0.3]).expect("time");
        let err = path()
            .sample(&x(&[3, 2]), &x(&[3, 4]), &t)
            .expect_err("x_1 shape");
        assert!(
            matches!(err, PathError::BadShape { what: "x_1", .. }),
            "{err}"
        );
        let scalar = Tensor::new(1f32, &Device::Cpu).expect("x");
        let err = path().sample(&scalar, &scalar, &t).expect_err("scalar x");
        assert!(
            matches!(err, PathError::BadShape { what: "x_0", .. }),
            "{err}"
        );
    }

    #[test]
    fn mismatched_dtypes_are_an_error_not_a_panic() {
        let t = time(&[0.1, 0.2, 0.3]).expect("time");
        let x64 = Tensor::ones((3, 2), DType::F64, &Device::Cpu).expect("x");
        assert!(path().sample(&x64, &x64, &t).is_err());
    }

    #[test]
    fn sample_is_noise_at_zero_and_data_at_one() {
        let x0 = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu).expect("x0");
        let x1 = Tensor::new(&[[-1f32, -2.0], [-3.0, -4.0]], &Device::Cpu).expect("x1");
        let s = path()
            .sample(&x0, &x1, &time(&[0.0, 1.0]).expect("time"))
            .expect("sample");
        let xt: Vec<Vec<f32>> = s.x_t.to_vec2().expect("x_t");
        assert_eq!(xt, vec![vec![1.0, 2.0], vec![-3.0, -4.0]]);
        let dxt: Vec<Vec<f32>> = s.dx_t.to_vec2().expect("dx_t");
        assert_eq!(dxt, vec![vec![-2.0, -4.0], vec![-6.0, -8.0]]);
    }

    #[test]
    fn converters_round_trip() {
        let p = AffineProbPath::new(AffineScheduler::Cosine);
        let dev = Device::Cpu;
        let x0 = Tensor::new(&[[0.3f64, -1.2], [0.7, 2.0]], &dev).expect("x0");
        let x1 = Tensor::new(&[[1.5f64, 0.1], [-0.4, 0.9]], &dev).expect("x1");
        let t = time(&[0.3, 0.8])
            .and_then(|t| Ok(t.into_tensor().to_dtype(DType::F64)?))
            .expect("t");
        let s = p
            .sample(&x0, &x1, &FlowTime::new(t.clone()).expect("time"))
            .expect("sample");
        let tc = t.reshape((2, 1)).expect("t");
        let close = |a: &Tensor, b: &Tensor| {
            let d = (a - b)
                .and_then(|d| d.abs())
                .and_then(|d| d.max_all())
                .and_then(|d| d.to_scalar::<f64>());
            assert!(d.expect("diff") < 1e-12);
        };
        close(&p.target_to_velocity(&x1, &s.x_t, &tc).expect("v"), &s.dx_t);
        close(
            &p.epsilon_to_velocity(&x0, &s.x_t, &tc).expect("v"),
            &s.dx_t,
        );
        close(
            &p.velocity_to_target(&s.dx_t, &s.x_t, &tc).expect("x1"),
            &x1,
        );
        close(&p.epsilon_to_target(&x0, &s.x_t, &tc).expect("x1"), &x1);
        close(
            &p.velocity_to_epsilon(&s.dx_t, &s.x_t, &tc).expect("eps"),
            &x0,
        );
        close(&p.target_to_epsilon(&x1, &s.x_t, &tc).expect("eps"), &x0);
    }

    #[test]
    fn converter_with_unbroadcastable_time_is_an_error() {
        let t = Tensor::new(&[0.1f32, 0.2, 0.3, 0.4], &Device::Cpu).expect("t");
        let x0 = x(&[3, 2]);
        assert!(path().target_to_velocity(&x0, &x0, &t).is_err());
    }
}

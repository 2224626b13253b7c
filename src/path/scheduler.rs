//! Affine schedulers `(alpha_t, sigma_t)` of flow_matching 1.0.10, and their inverses.
//!
//! A scheduler gives the coefficients of the affine path `x_t = sigma_t x_0 + alpha_t x_1` (t=0 is
//! noise `x_0`, t=1 is data `x_1`) and their time derivatives `d_alpha_t`, `d_sigma_t`:
//!
//! | scheduler | `alpha_t` | `sigma_t` |
//! |---|---|---|
//! | CondOT | `t` | `1 - t` |
//! | Polynomial(n) | `t^n` | `1 - t^n` |
//! | Cosine | `sin(pi/2 t)` | `cos(pi/2 t)` |
//! | LinearVP | `t` | `sqrt(1 - t^2)` |
//! | VP(b, B) | `exp(-T/2)` | `sqrt(1 - exp(-T))` |
//!
//! with `T = 0.5 (1-t)^2 (B-b) + (1-t) b`, the integral of `beta` over the reversed time `1-t`, and
//! `dT = -(1-t)(B-b) - b`. So `d_sigma_t = -inf` at t=1 for LinearVP and VP, and VP's `alpha_0 =
//! exp(-(B+b)/4)` is not 0.
//!
//! `snr_inverse(snr)` is the t at which `alpha_t / sigma_t = snr`. For the convex schedulers (CondOT,
//! Polynomial) it is `kappa_inverse(snr / (1 + snr))`, where `kappa_t = alpha_t` (so `sigma_t = 1 -
//! kappa_t`): CondOT gives `kappa`, Polynomial `kappa^(1/n)`. Cosine gives `2 atan(snr) / pi`,
//! LinearVP `sqrt(snr^2 / (1 + snr^2))` and VP `1 - (-b + sqrt(b^2 + 2 (B-b) T)) / (B-b)` with
//! `T = -log(snr^2 / (snr^2 + 1))`. The inverses can leave [0, 1] (e.g. VP(0.5, 10) at snr=0.01).
//!
//! Every formula is evaluated with the same sequence of roundings as torch, in the dtype of the
//! input, so f32 results match flow_matching's f32 results (e.g. Cosine at t=1 gives
//! `sigma_t = cos(f32(pi/2)) = -4.37e-8`, not 0). The schedulers take any real t, because
//! `snr_inverse` and ODE solvers evaluate them outside [0, 1]; the [0, 1] contract of the path itself
//! is [`FlowTime`](crate::path::affine::FlowTime).

use candle_core::{DType, Tensor};

use crate::path::error::PathError;

/// An affine scheduler: the coefficients `alpha_t`, `sigma_t` of `x_t = sigma_t x_0 + alpha_t x_1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AffineScheduler {
    /// Conditional optimal transport: `alpha_t = t`, `sigma_t = 1 - t`.
    CondOt,
    /// Cosine: `alpha_t = sin(pi/2 t)`, `sigma_t = cos(pi/2 t)`.
    Cosine,
    /// Variance preserving with a linear `beta` from `beta_min` (at data) to `beta_max` (at noise).
    Vp {
        /// `beta` at t=1 (data); must be positive and below `beta_max`.
        beta_min: f64,
        /// `beta` at t=0 (noise); must be finite and above `beta_min`.
        beta_max: f64,
    },
    /// Linear variance preserving: `alpha_t = t`, `sigma_t = sqrt(1 - t^2)`.
    LinearVp,
    /// Polynomial convex: `alpha_t = t^n`, `sigma_t = 1 - t^n`.
    Polynomial {
        /// The power `n`; must be finite and positive (it need not be an integer).
        exponent: f64,
    },
}

/// The scheduler evaluated at t: the path coefficients and their time derivatives (dtype of t).
#[derive(Debug, Clone)]
pub struct SchedulerOutput {
    /// `alpha_t`, the coefficient of the data `x_1`.
    pub alpha_t: Tensor,
    /// `sigma_t`, the coefficient of the noise `x_0`.
    pub sigma_t: Tensor,
    /// `d alpha_t / dt`.
    pub d_alpha_t: Tensor,
    /// `d sigma_t / dt`.
    pub d_sigma_t: Tensor,
}

impl AffineScheduler {
    /// flow_matching's default VP parameters (`beta_min = 0.1`, `beta_max = 20`).
    pub const VP_DEFAULT: AffineScheduler = AffineScheduler::Vp {
        beta_min: 0.1,
        beta_max: 20.0,
    };

    /// A validated VP scheduler (`0 < beta_min < beta_max`, both finite).
    pub fn vp(beta_min: f64, beta_max: f64) -> Result<Self, PathError> {
        let scheduler = AffineScheduler::Vp { beta_min, beta_max };
        scheduler.validate()?;
        Ok(scheduler)
    }

    /// A validated polynomial convex scheduler (`exponent` finite and positive).
    pub fn polynomial(exponent: f64) -> Result<Self, PathError> {
        let scheduler = AffineScheduler::Polynomial { exponent };
        scheduler.validate()?;
        Ok(scheduler)
    }

    /// Checks the parameters: VP needs `0 < beta_min < beta_max < inf`, Polynomial `0 < n < inf`.
    pub fn validate(&self) -> Result<(), PathError> {
        match *self {
            AffineScheduler::Vp { beta_min, beta_max } => {
                if !(beta_min.is_finite() && beta_min > 0.0) {
                    return Err(invalid(
                        "beta_min",
                        format!("must be finite and > 0, got {beta_min}"),
                    ));
                }
                if !(beta_max.is_finite() && beta_max > beta_min) {
                    return Err(invalid(
                        "beta_max",
                        format!("must be finite and > beta_min={beta_min}, got {beta_max}"),
                    ));
                }
                Ok(())
            }
            AffineScheduler::Polynomial { exponent } => {
                if exponent.is_finite() && exponent > 0.0 {
                    Ok(())
                } else {
                    Err(invalid(
                        "exponent",
                        format!("the polynomial power n must be finite and > 0, got {exponent}"),
                    ))
                }
            }
            AffineScheduler::CondOt | AffineScheduler::Cosine | AffineScheduler::LinearVp => Ok(()),
        }
    }

    /// The scheduler's name, as in flow_matching (`CondOTScheduler`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            AffineScheduler::CondOt => "CondOTScheduler",
            AffineScheduler::Cosine => "CosineScheduler",
            AffineScheduler::Vp { .. } => "VPScheduler",
            AffineScheduler::LinearVp => "LinearVPScheduler",
            AffineScheduler::Polynomial { .. } => "PolynomialConvexScheduler",
        }
    }

    /// Whether `sigma_t = 1 - alpha_t` (CondOT and Polynomial), so that `kappa_inverse` exists.
    pub fn is_convex(&self) -> bool {
        matches!(
            self,
            AffineScheduler::CondOt | AffineScheduler::Polynomial { .. }
        )
    }

    /// Evaluates `alpha_t`, `sigma_t` and their derivatives at every element of the float tensor `t`.
    pub fn at(&self, t: &Tensor) -> Result<SchedulerOutput, PathError> {
        self.validate()?;
        check_float("t", t)?;
        let out = match *self {
            AffineScheduler::CondOt => SchedulerOutput {
                alpha_t: t.clone(),
                sigma_t: one_minus(t)?,
                d_alpha_t: t.ones_like()?,
                d_sigma_t: t.ones_like()?.neg()?,
            },
            AffineScheduler::Polynomial { exponent: n } => {
                let t_n1 = pow_scalar(t, n - 1.0)?;
                let alpha_t = pow_scalar(t, n)?;
                SchedulerOutput {
                    sigma_t: one_minus(&alpha_t)?,
                    alpha_t,
                    d_alpha_t: t_n1.affine(n, 0.0)?,
                    d_sigma_t: t_n1.affine(-n, 0.0)?,
                }
            }
            AffineScheduler::Cosine => {
                let half_pi = std::f64::consts::FRAC_PI_2;
                let angle = t.affine(half_pi, 0.0)?;
                let (sin, cos) = (angle.sin()?, angle.cos()?);
                SchedulerOutput {
                    d_alpha_t: cos.affine(half_pi, 0.0)?,
                    d_sigma_t: sin.affine(-half_pi, 0.0)?,
                    alpha_t: sin,
                    sigma_t: cos,
                }
            }
            AffineScheduler::LinearVp => {
                let sigma_t = one_minus(&t.sqr()?)?.sqrt()?;
                SchedulerOutput {
                    alpha_t: t.clone(),
                    d_alpha_t: t.ones_like()?,
                    d_sigma_t: t.neg()?.div(&sigma_t)?,
                    sigma_t,
                }
            }
            AffineScheduler::Vp {
                beta_min: b,
                beta_max: big_b,
            } => {
                let u = one_minus(t)?;
                let integral =
                    (u.sqr()?.affine(0.5, 0.0)?.affine(big_b - b, 0.0)? + u.affine(b, 0.0)?)?;
                let d_integral = u.neg()?.affine(big_b - b, 0.0)?.affine(1.0, -b)?;
                let exp_half = integral.affine(-0.5, 0.0)?.exp()?;
                let exp_full = integral.neg()?.exp()?;
                let sigma_t = one_minus(&exp_full)?.sqrt()?;
                SchedulerOutput {
                    d_alpha_t: d_integral.affine(-0.5, 0.0)?.mul(&exp_half)?,
                    d_sigma_t: d_integral.affine(0.5, 0.0)?.mul(&exp_full)?.div(&sigma_t)?,
                    alpha_t: exp_half,
                    sigma_t,
                }
            }
        };
        Ok(out)
    }

    /// The time t at which `alpha_t / sigma_t = snr`, element-wise (dtype of `snr`; may leave [0, 1]).
    ///
    /// Cosine needs `atan`, which candle lacks: its values go through host memory in their own dtype.
    pub fn snr_inverse(&self, snr: &Tensor) -> Result<Tensor, PathError> {
        self.validate()?;
        check_float("snr", snr)?;
        match *self {
            AffineScheduler::CondOt | AffineScheduler::Polynomial { .. } => {
                let kappa = snr.div(&snr.affine(1.0, 1.0)?)?;
                self.kappa_inverse(&kappa)
            }
            AffineScheduler::Cosine => {
                let atan = host_map(snr, f32::atan, f64::atan)?;
                Ok(div_scalar(&atan.affine(2.0, 0.0)?, std::f64::consts::PI)?)
            }
            AffineScheduler::LinearVp => {
                let snr2 = snr.sqr()?;
                Ok(snr2.div(&snr2.affine(1.0, 1.0)?)?.sqrt()?)
            }
            AffineScheduler::Vp {
                beta_min: b,
                beta_max: big_b,
            } => {
                let snr2 = snr.sqr()?;
                let integral = snr2.div(&snr2.affine(1.0, 1.0)?)?.log()?.neg()?;
                let root = integral
                    .affine(2.0 * (big_b - b), b.powi(2))?
                    .sqrt()?
                    .affine(1.0, -b)?;
                Ok(one_minus(&div_scalar(&root, big_b - b)?)?)
            }
        }
    }

    /// The time t at which `kappa_t = alpha_t = kappa` (convex schedulers only; dtype of `kappa`).
    pub fn kappa_inverse(&self, kappa: &Tensor) -> Result<Tensor, PathError> {
        self.validate()?;
        check_float("kappa", kappa)?;
        match *self {
            AffineScheduler::CondOt => Ok(kappa.clone()),
            AffineScheduler::Polynomial { exponent } => pow_scalar(kappa, 1.0 / exponent),
            _ => Err(invalid(
                "scheduler",
                format!(
                    "kappa_inverse needs a convex scheduler (CondOTScheduler or PolynomialConvexScheduler), got {}",
                    self.name()
                ),
            )),
        }
    }
}

/// An `InvalidParameter` error.
fn invalid(name: &'static str, message: String) -> PathError {
    PathError::InvalidParameter { name, message }
}

/// Rejects tensors that are not floating point (the formulas need sin, exp, sqrt).
pub(crate) fn check_float(name: &'static str, t: &Tensor) -> Result<(), PathError> {
    if t.dtype().is_float() {
        Ok(())
    } else {
        Err(invalid(
            name,
            format!(
                "must be a floating-point tensor (f16, bf16, f32 or f64), got {:?}",
                t.dtype()
            ),
        ))
    }
}

/// `1 - x`, rounded once.
fn one_minus(x: &Tensor) -> Result<Tensor, PathError> {
    Ok(x.affine(-1.0, 1.0)?)
}

/// `x / s` as a true division by `s` rounded to x's dtype (not a multiplication by `1/s`), like torch.
fn div_scalar(x: &Tensor, s: f64) -> Result<Tensor, PathError> {
    let divisor = Tensor::new(s, x.device())?.to_dtype(x.dtype())?;
    Ok(x.broadcast_div(&divisor)?)
}

/// `x^e` with torch's special cases for a scalar exponent (0, 1, 2, 3, -2, 0.5, -0.5, -1), else `powf`.
fn pow_scalar(x: &Tensor, e: f64) -> Result<Tensor, PathError> {
    let out = if e == 0.0 {
        x.ones_like()?
    } else if e == 1.0 {
        x.clone()
    } else if e == 2.0 {
        x.sqr()?
    } else if e == 3.0 {
        x.sqr()?.mul(x)?
    } else if e == -2.0 {
        x.sqr()?.recip()?
    } else if e == 0.5 {
        x.sqrt()?
    } else if e == -0.5 {
        x.sqrt()?.recip()?
    } else if e == -1.0 {
        x.recip()?
    } else {
        x.powf(e)?
    };
    Ok(out)
}

/// Applies `f32_fn` (f32 and lower precisions) or `f64_fn` (f64) to every element through host memory.
fn host_map(
    x: &Tensor,
    f32_fn: fn(f32) -> f32,
    f64_fn: fn(f64) -> f64,
) -> Result<Tensor, PathError> {
    let flat = x.flatten_all()?;
    let out = if x.dtype() == DType::F64 {
        let values: Vec<f64> = flat.to_vec1::<f64>()?.into_iter().map(f64_fn).collect();
        Tensor::from_vec(values, x.shape(), x.device())?
    } else {
        let values: Vec<f32> = flat
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?
            .into_iter()
            .map(f32_fn)
            .collect();
        Tensor::from_vec(values, x.shape(), x.device())?.to_dtype(x.dtype())?
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn values(t: &Tensor) -> Vec<f64> {
        t.to_dtype(DType::F64)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .expect("values")
    }

    #[test]
    fn bad_vp_parameters_are_rejected() {
        for (b, big_b) in [
            (0.0, 20.0),
            (-0.1, 20.0),
            (20.0, 0.1),
            (1.0, 1.0),
            (0.1, f64::INFINITY),
            (f64::NAN, 1.0),
        ] {
            let err = AffineScheduler::vp(b, big_b).expect_err("invalid VP parameters");
            assert!(matches!(err, PathError::InvalidParameter { .. }), "{err}");
        }
        assert!(AffineScheduler::vp(0.1, 20.0).is_ok());
    }

    #[test]
    fn bad_polynomial_exponent_is_rejected() {
        for n in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = AffineScheduler::polynomial(n).expect_err("invalid exponent");
            assert!(err.to_string().contains("exponent"), "{err}");
        }
    }

    #[test]
    fn invalid_schedulers_built_directly_fail_when_used() {
        let t = Tensor::new(&[0.5f32], &Device::Cpu).expect("t");
        let bad = AffineScheduler::Vp {
            beta_min: 5.0,
            beta_max: 1.0,
        };
        assert!(matches!(
            bad.at(&t),
            Err(PathError::InvalidParameter {
                name: "beta_max",
                ..
            })
        ));
        assert!(bad.snr_inverse(&t).is_err());
        let bad = AffineScheduler::Polynomial { exponent: -2.0 };
        assert!(bad.at(&t).is_err());
        assert!(bad.kappa_inverse(&t).is_err());
    }

    #[test]
    fn kappa_inverse_needs_a_convex_scheduler() {
        let kappa = Tensor::new(&[0.5f64], &Device::Cpu).expect("kappa");
        for s in [
            AffineScheduler::Cosine,
            AffineScheduler::LinearVp,
            AffineScheduler::VP_DEFAULT,
        ] {
            let err = s.kappa_inverse(&kappa).expect_err("not convex");
            assert!(
                matches!(
                    err,
                    PathError::InvalidParameter {
                        name: "scheduler",
                        ..
                    }
                ),
                "{err}"
            );
        }
        let t = AffineScheduler::polynomial(2.0)
            .and_then(|s| s.kappa_inverse(&kappa))
            .expect("convex");
        assert!((values(&t)[0] - 0.5f64.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn integer_times_are_an_error() {
        let t = Tensor::new(&[0i64, 1], &Device::Cpu).expect("t");
        let err = AffineScheduler::Cosine.at(&t).expect_err("integer t");
        assert!(
            matches!(err, PathError::InvalidParameter { name: "t", .. }),
            "{err}"
        );
    }

    #[test]
    fn output_keeps_the_dtype_and_shape_of_t() {
        let t = Tensor::new(&[[0.25f32, 0.5], [0.75, 1.0]], &Device::Cpu).expect("t");
        let schedulers = [
            AffineScheduler::CondOt,
            AffineScheduler::Cosine,
            AffineScheduler::VP_DEFAULT,
            AffineScheduler::LinearVp,
            AffineScheduler::Polynomial { exponent: 1.5 },
        ];
        for s in schedulers {
            let out = s.at(&t).expect("scheduler");
            for x in [&out.alpha_t, &out.sigma_t, &out.d_alpha_t, &out.d_sigma_t] {
                assert_eq!(
                    (x.dtype(), x.dims()),
                    (DType::F32, &[2usize, 2][..]),
                    "{}",
                    s.name()
                );
            }
        }
    }

    #[test]
    fn polynomial_with_a_fractional_power_matches_the_formula() {
        let t = Tensor::new(&[0.0f64, 0.3, 1.0], &Device::Cpu).expect("t");
        let out = AffineScheduler::polynomial(1.5)
            .and_then(|s| s.at(&t))
            .expect("scheduler");
        let (alpha, d_alpha) = (values(&out.alpha_t), values(&out.d_alpha_t));
        for (i, t) in [0.0f64, 0.3, 1.0].into_iter().enumerate() {
            assert!((alpha[i] - t.powf(1.5)).abs() < 1e-15);
            assert!((d_alpha[i] - 1.5 * t.sqrt()).abs() < 1e-15);
        }
    }

    #[test]
    fn snr_inverse_inverts_the_snr() {
        let t = Tensor::new(&[0.2f64, 0.5, 0.8], &Device::Cpu).expect("t");
        let schedulers = [
            AffineScheduler::CondOt,
            AffineScheduler::Cosine,
            AffineScheduler::VP_DEFAULT,
            AffineScheduler::LinearVp,
            AffineScheduler::Polynomial { exponent: 2.5 },
        ];
        for s in schedulers {
            let out = s.at(&t).expect("scheduler");
            let snr = out.alpha_t.div(&out.sigma_t).expect("snr");
            let back = values(&s.snr_inverse(&snr).expect("snr_inverse"));
            for (got, want) in back.iter().zip([0.2, 0.5, 0.8]) {
                assert!((got - want).abs() < 1e-12, "{}: {got} vs {want}", s.name());
            }
        }
    }
}

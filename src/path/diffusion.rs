//! Discrete diffusion schedules and the forward (noising) process, numerically matching
//! HuggingFace diffusers 0.42.1 (`DDPMScheduler` / `DDIMScheduler`).
//!
//! Conventions:
//! * Timesteps are integers `t` in `0..num_train_timesteps` (`N`). `t = 0` is the least noisy
//!   level and `t = N - 1` the noisiest; this runs opposite to the flow-matching time of
//!   [`crate::path`], where `t = 0` is noise and `t = 1` is data.
//! * `betas` and `alphas_cumprod` are `f32`, exactly as diffusers builds them:
//!   - `linear`: `torch.linspace(beta_start, beta_end, N)` in `f32` (step
//!     `(end - start) / (N - 1)` in `f32`; entry `i` is `fma(step, i, start)` for `i < N/2`,
//!     else `fma(-step, N - 1 - i, end)`, one rounding each);
//!   - `scaled_linear`: the same linspace between `sqrt(beta_start)` and `sqrt(beta_end)` (roots
//!     taken in `f64`), squared in `f32`;
//!   - `squaredcos_cap_v2`: `min(1 - abar((i+1)/N) / abar(i/N), 0.999)` in `f64`, with
//!     `abar(s) = cos((s + 0.008) / 1.008 * pi / 2)^2`, cast to `f32` (`beta_start`/`beta_end`
//!     are not used);
//!   - `alphas = 1 - betas` in `f32`, and `alphas_cumprod` is a running product accumulated in
//!     `f64` and rounded to `f32` at each entry (torch's CPU `cumprod`).
//! * `a_t = alphas_cumprod[t]`. The forward process is `x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps`
//!   ([`DiffusionSchedule::add_noise`]) and the v-prediction target is
//!   `v = sqrt(a_t) eps - sqrt(1 - a_t) x0` ([`DiffusionSchedule::get_velocity`]). Both take
//!   per-sample timesteps `(B,)` and cast `alphas_cumprod` to the sample dtype first.
//! * What a model predicts is a [`PredictionType`]; the conversions of its output to `x0` and
//!   `eps` live in [`crate::sampler::prediction`].

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Tensor};

use super::error::PathError;

/// The largest supported `num_train_timesteps` (keeps schedules and timestep lists small).
pub const MAX_TRAIN_TIMESTEPS: usize = 1_000_000;

/// How the betas of a discrete schedule are laid out (diffusers' `beta_schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BetaSchedule {
    /// Betas evenly spaced from `beta_start` to `beta_end` (`"linear"`).
    Linear,
    /// Square roots of the betas evenly spaced (`"scaled_linear"`, Stable Diffusion).
    ScaledLinear,
    /// The cosine schedule of Nichol & Dhariwal, betas capped at 0.999 (`"squaredcos_cap_v2"`).
    SquaredcosCapV2,
}

impl BetaSchedule {
    /// The diffusers name of this schedule.
    pub fn name(self) -> &'static str {
        match self {
            BetaSchedule::Linear => "linear",
            BetaSchedule::ScaledLinear => "scaled_linear",
            BetaSchedule::SquaredcosCapV2 => "squaredcos_cap_v2",
        }
    }
}

impl fmt::Display for BetaSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BetaSchedule {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "linear" => Ok(BetaSchedule::Linear),
            "scaled_linear" => Ok(BetaSchedule::ScaledLinear),
            "squaredcos_cap_v2" => Ok(BetaSchedule::SquaredcosCapV2),
            other => Err(PathError::InvalidParameter {
                name: "beta_schedule",
                message: format!("unknown schedule {other:?}; expected linear, scaled_linear or squaredcos_cap_v2"),
            }),
        }
    }
}

/// What a diffusion model predicts (diffusers' `prediction_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictionType {
    /// The noise `eps` (`"epsilon"`).
    Epsilon,
    /// The velocity `v = sqrt(a_t) eps - sqrt(1 - a_t) x0` (`"v_prediction"`).
    VPrediction,
    /// The clean sample `x0` (`"sample"`).
    Sample,
}

impl PredictionType {
    /// The diffusers name of this prediction type.
    pub fn name(self) -> &'static str {
        match self {
            PredictionType::Epsilon => "epsilon",
            PredictionType::VPrediction => "v_prediction",
            PredictionType::Sample => "sample",
        }
    }
}

impl fmt::Display for PredictionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PredictionType {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "epsilon" => Ok(PredictionType::Epsilon),
            "v_prediction" => Ok(PredictionType::VPrediction),
            "sample" => Ok(PredictionType::Sample),
            other => Err(PathError::InvalidParameter {
                name: "prediction_type",
                message: format!(
                    "unknown prediction type {other:?}; expected epsilon, v_prediction or sample"
                ),
            }),
        }
    }
}

/// A discrete diffusion schedule: `betas` and `alphas_cumprod` over `num_train_timesteps` steps.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffusionSchedule {
    /// `N`, the number of training timesteps.
    num_train_timesteps: usize,
    /// The first beta of the linear schedules.
    beta_start: f64,
    /// The last beta of the linear schedules.
    beta_end: f64,
    /// The beta layout.
    beta_schedule: BetaSchedule,
    /// `betas[t]` in `f32`.
    betas: Vec<f32>,
    /// `alphas_cumprod[t]` in `f32`, all in `(0, 1)`.
    alphas_cumprod: Vec<f32>,
}

impl DiffusionSchedule {
    /// Builds the schedule (bit-exact with diffusers); needs `1 <= N <= MAX_TRAIN_TIMESTEPS` and,
    /// for the linear schedules, `0 < beta_start < beta_end < 1`.
    pub fn new(
        num_train_timesteps: usize,
        beta_start: f64,
        beta_end: f64,
        beta_schedule: BetaSchedule,
    ) -> Result<Self, PathError> {
        if num_train_timesteps == 0 || num_train_timesteps > MAX_TRAIN_TIMESTEPS {
            return Err(PathError::InvalidParameter {
                name: "num_train_timesteps",
                message: format!(
                    "got {num_train_timesteps}; it must be in 1..={MAX_TRAIN_TIMESTEPS}"
                ),
            });
        }
        let linear = matches!(
            beta_schedule,
            BetaSchedule::Linear | BetaSchedule::ScaledLinear
        );
        if linear && !(0.0 < beta_start && beta_start < beta_end && beta_end < 1.0) {
            return Err(PathError::InvalidParameter {
                name: "beta_start",
                message: format!(
                    "{beta_schedule} schedule needs 0 < beta_start < beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}"
                ),
            });
        }
        let betas = match beta_schedule {
            BetaSchedule::Linear => {
                torch_linspace_f32(beta_start as f32, beta_end as f32, num_train_timesteps)
            }
            BetaSchedule::ScaledLinear => torch_linspace_f32(
                beta_start.sqrt() as f32,
                beta_end.sqrt() as f32,
                num_train_timesteps,
            )
            .into_iter()
            .map(|b| b * b)
            .collect(),
            BetaSchedule::SquaredcosCapV2 => squaredcos_cap_v2_betas(num_train_timesteps),
        };
        let alphas_cumprod = cumprod_f64_acc(&betas);
        if alphas_cumprod.first().is_some_and(|a| *a >= 1.0) {
            return Err(PathError::InvalidParameter {
                name: "beta_start",
                message: format!(
                    "the first beta {} is too small: 1 - beta rounds to 1 in f32",
                    betas[0]
                ),
            });
        }
        if let Some(t) = alphas_cumprod
            .iter()
            .position(|a| !(*a > 0.0 && a.is_finite()))
        {
            return Err(PathError::InvalidParameter {
                name: "num_train_timesteps",
                message: format!(
                    "alphas_cumprod underflows to {} at t={t} in f32; use fewer timesteps or smaller betas",
                    alphas_cumprod[t]
                ),
            });
        }
        Ok(DiffusionSchedule {
            num_train_timesteps,
            beta_start,
            beta_end,
            beta_schedule,
            betas,
            alphas_cumprod,
        })
    }

    /// The number of training timesteps `N`.
    pub fn num_train_timesteps(&self) -> usize {
        self.num_train_timesteps
    }

    /// The configured `beta_start` (unused by `squaredcos_cap_v2`).
    pub fn beta_start(&self) -> f64 {
        self.beta_start
    }

    /// The configured `beta_end` (unused by `squaredcos_cap_v2`).
    pub fn beta_end(&self) -> f64 {
        self.beta_end
    }

    /// The beta layout.
    pub fn beta_schedule(&self) -> BetaSchedule {
        self.beta_schedule
    }

    /// The `f32` betas, one per timestep.
    pub fn betas(&self) -> &[f32] {
        &self.betas
    }

    /// The `f32` cumulative products of `1 - beta`, one per timestep.
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    /// Checks that `t` is in `0..N` and returns it as an index.
    pub fn timestep_index(&self, t: i64) -> Result<usize, PathError> {
        usize::try_from(t)
            .ok()
            .filter(|i| *i < self.num_train_timesteps)
            .ok_or(PathError::TimestepOutOfRange {
                value: t,
                num_train_timesteps: self.num_train_timesteps,
            })
    }

    /// `alphas_cumprod[t]`, or `TimestepOutOfRange` when `t` is outside `0..N`.
    pub fn alphas_cumprod_at(&self, t: i64) -> Result<f32, PathError> {
        Ok(self.alphas_cumprod[self.timestep_index(t)?])
    }

    /// The VP form `(alpha_t, sigma_t) = (sqrt(a_t), sqrt(1 - a_t))` at timestep `t`, in `f64`.
    ///
    /// With it, `x_t = alpha_t x0 + sigma_t eps`, so an epsilon prediction gives
    /// `x0 = (x_t - sigma_t eps) / alpha_t`, and along any continuous reparametrisation `s` of the
    /// timesteps the probability-flow ODE velocity is `dx/ds = alpha'(s) x0 + sigma'(s) eps`
    /// (the velocity field an ODE sampler integrates). `alpha_t^2 + sigma_t^2 = 1`.
    pub fn vp_alpha_sigma(&self, t: i64) -> Result<(f64, f64), PathError> {
        let a = f64::from(self.alphas_cumprod_at(t)?);
        Ok((a.sqrt(), (1.0 - a).sqrt()))
    }

    /// The forward process `sqrt(a_t) x0 + sqrt(1 - a_t) noise`, with per-sample timesteps `(B,)`.
    pub fn add_noise(
        &self,
        x0: &Tensor,
        noise: &Tensor,
        timesteps: &Tensor,
    ) -> Result<Tensor, PathError> {
        let (sa, sb) = self.per_sample_coefficients(x0, noise, timesteps)?;
        Ok((x0.broadcast_mul(&sa)? + noise.broadcast_mul(&sb)?)?)
    }

    /// The v-prediction target `sqrt(a_t) noise - sqrt(1 - a_t) x0`, per-sample timesteps `(B,)`.
    pub fn get_velocity(
        &self,
        x0: &Tensor,
        noise: &Tensor,
        timesteps: &Tensor,
    ) -> Result<Tensor, PathError> {
        let (sa, sb) = self.per_sample_coefficients(x0, noise, timesteps)?;
        Ok((noise.broadcast_mul(&sa)? - x0.broadcast_mul(&sb)?)?)
    }

    /// The regression target of a model: `noise` (epsilon), the velocity (v_prediction) or `x0`.
    pub fn training_target(
        &self,
        prediction_type: PredictionType,
        x0: &Tensor,
        noise: &Tensor,
        timesteps: &Tensor,
    ) -> Result<Tensor, PathError> {
        match prediction_type {
            PredictionType::Epsilon => {
                check_same_shape("noise", x0, noise)?;
                Ok(noise.clone())
            }
            PredictionType::VPrediction => self.get_velocity(x0, noise, timesteps),
            PredictionType::Sample => {
                check_same_shape("noise", x0, noise)?;
                Ok(x0.clone())
            }
        }
    }

    /// The per-sample `(sqrt(a_t), sqrt(1 - a_t))` as `(B, 1, ..., 1)` tensors of the sample dtype.
    fn per_sample_coefficients(
        &self,
        x0: &Tensor,
        noise: &Tensor,
        timesteps: &Tensor,
    ) -> Result<(Tensor, Tensor), PathError> {
        check_same_shape("noise", x0, noise)?;
        let dims = x0.dims();
        let batch = match dims.first() {
            Some(b) => *b,
            None => {
                return Err(PathError::BadShape {
                    what: "x0",
                    expected: "[batch_size, ...] (at least one dimension)".to_string(),
                    got: dims.to_vec(),
                })
            }
        };
        if timesteps.dims() != [batch] {
            return Err(PathError::BadShape {
                what: "timesteps",
                expected: format!("[{batch}] (one timestep per sample)"),
                got: timesteps.dims().to_vec(),
            });
        }
        if !timesteps.dtype().is_int() {
            return Err(PathError::InvalidParameter {
                name: "timesteps",
                message: format!(
                    "must be an integer tensor (i64), got {:?}",
                    timesteps.dtype()
                ),
            });
        }
        let dtype = x0.dtype();
        if !dtype.is_float() {
            return Err(PathError::InvalidParameter {
                name: "x0",
                message: format!("must be a floating-point tensor, got {dtype:?}"),
            });
        }
        let ts = timesteps.to_dtype(DType::I64)?.to_vec1::<i64>()?;
        let alphas = ts
            .iter()
            .map(|t| self.alphas_cumprod_at(*t))
            .collect::<Result<Vec<f32>, _>>()?;
        let mut shape = vec![1usize; dims.len()];
        shape[0] = batch;
        let device = x0.device();
        let (sa, sb) = if dtype == DType::F64 {
            let a: Vec<f64> = alphas.iter().map(|a| f64::from(*a)).collect();
            let sa: Vec<f64> = a.iter().map(|a| a.sqrt()).collect();
            let sb: Vec<f64> = a.iter().map(|a| (1.0 - a).sqrt()).collect();
            (
                Tensor::from_vec(sa, shape.as_slice(), device)?,
                Tensor::from_vec(sb, shape.as_slice(), device)?,
            )
        } else {
            let sa: Vec<f32> = alphas.iter().map(|a| a.sqrt()).collect();
            let sb: Vec<f32> = alphas.iter().map(|a| (1.0 - a).sqrt()).collect();
            (
                Tensor::from_vec(sa, shape.as_slice(), device)?,
                Tensor::from_vec(sb, shape.as_slice(), device)?,
            )
        };
        Ok((sa.to_dtype(dtype)?, sb.to_dtype(dtype)?))
    }
}

/// Errors with `BadShape` unless `other` has the shape of `reference`.
pub(crate) fn check_same_shape(
    what: &'static str,
    reference: &Tensor,
    other: &Tensor,
) -> Result<(), PathError> {
    if reference.dims() == other.dims() {
        Ok(())
    } else {
        Err(PathError::BadShape {
            what,
            expected: format!("{:?} (the sample's shape)", reference.dims()),
            got: other.dims().to_vec(),
        })
    }
}

/// `torch.linspace(start, end, n, dtype=float32)` on CPU, bit for bit.
pub(crate) fn torch_linspace_f32(start: f32, end: f32, n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    let halfway = n / 2;
    (0..n)
        .map(|i| {
            if i < halfway {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((n - 1 - i) as f32, end)
            }
        })
        .collect()
}

/// diffusers' `betas_for_alpha_bar` with the cosine transform and `max_beta = 0.999`.
fn squaredcos_cap_v2_betas(n: usize) -> Vec<f32> {
    let alpha_bar = |s: f64| {
        let c = ((s + 0.008) / 1.008 * std::f64::consts::PI / 2.0).cos();
        c * c
    };
    (0..n)
        .map(|i| {
            let t1 = i as f64 / n as f64;
            let t2 = (i + 1) as f64 / n as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}

/// `cumprod(1 - betas)` with an `f64` accumulator rounded to `f32` at each entry.
fn cumprod_f64_acc(betas: &[f32]) -> Vec<f32> {
    let mut acc = 1.0f64;
    betas
        .iter()
        .map(|b| {
            acc *= f64::from(1.0f32 - b);
            acc as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn linear(n: usize) -> DiffusionSchedule {
        DiffusionSchedule::new(n, 1e-4, 0.02, BetaSchedule::Linear).expect("valid schedule")
    }

    #[test]
    fn rejects_bad_beta_ranges() {
        for (bs, be) in [
            (0.0, 0.02),
            (0.02, 0.01),
            (0.01, 0.01),
            (1e-4, 1.0),
            (-1.0, 0.5),
            (f64::NAN, 0.02),
        ] {
            for kind in [BetaSchedule::Linear, BetaSchedule::ScaledLinear] {
                let err = DiffusionSchedule::new(1000, bs, be, kind).unwrap_err();
                assert!(
                    matches!(
                        err,
                        PathError::InvalidParameter {
                            name: "beta_start",
                            ..
                        }
                    ),
                    "{err}"
                );
            }
        }
        assert!(DiffusionSchedule::new(1000, 0.0, 0.0, BetaSchedule::SquaredcosCapV2).is_ok());
    }

    #[test]
    fn rejects_bad_lengths() {
        for n in [0, MAX_TRAIN_TIMESTEPS + 1] {
            let err = DiffusionSchedule::new(n, 1e-4, 0.02, BetaSchedule::Linear).unwrap_err();
            assert!(
                matches!(
                    err,
                    PathError::InvalidParameter {
                        name: "num_train_timesteps",
                        ..
                    }
                ),
                "{err}"
            );
        }
        let err = DiffusionSchedule::new(10, 1e-9, 0.02, BetaSchedule::Linear).unwrap_err();
        assert!(err.to_string().contains("too small"), "{err}");
        let err = DiffusionSchedule::new(100_000, 0.1, 0.9, BetaSchedule::Linear).unwrap_err();
        assert!(err.to_string().contains("underflows"), "{err}");
    }

    #[test]
    fn single_step_schedule_uses_beta_start() {
        let s = DiffusionSchedule::new(1, 1e-4, 0.02, BetaSchedule::Linear).expect("valid");
        assert_eq!(s.betas(), &[1e-4f32]);
        assert_eq!(s.alphas_cumprod(), &[1.0f32 - 1e-4]);
    }

    #[test]
    fn timestep_out_of_range_is_an_error() {
        let s = linear(10);
        for t in [-1, 10, i64::MAX, i64::MIN] {
            let err = s.alphas_cumprod_at(t).unwrap_err();
            assert!(
                matches!(
                    err,
                    PathError::TimestepOutOfRange {
                        num_train_timesteps: 10,
                        ..
                    }
                ),
                "{err}"
            );
        }
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 3), DType::F32, &dev).expect("zeros");
        let ts = Tensor::new(&[3i64, 10], &dev).expect("ts");
        assert!(matches!(
            s.add_noise(&x, &x, &ts),
            Err(PathError::TimestepOutOfRange { value: 10, .. })
        ));
    }

    #[test]
    fn forward_process_rejects_bad_shapes_and_dtypes() {
        let s = linear(10);
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 3), DType::F32, &dev).expect("zeros");
        let wrong = Tensor::zeros((3, 2), DType::F32, &dev).expect("zeros");
        let ts = Tensor::new(&[1i64, 2], &dev).expect("ts");
        assert!(matches!(
            s.add_noise(&x, &wrong, &ts),
            Err(PathError::BadShape { what: "noise", .. })
        ));
        let ts3 = Tensor::new(&[1i64, 2, 3], &dev).expect("ts");
        assert!(matches!(
            s.get_velocity(&x, &x, &ts3),
            Err(PathError::BadShape {
                what: "timesteps",
                ..
            })
        ));
        let tsf = Tensor::new(&[1f32, 2.0], &dev).expect("ts");
        assert!(matches!(
            s.add_noise(&x, &x, &tsf),
            Err(PathError::InvalidParameter {
                name: "timesteps",
                ..
            })
        ));
        let scalar = Tensor::new(1f32, &dev).expect("scalar");
        assert!(matches!(
            s.add_noise(&scalar, &scalar, &ts),
            Err(PathError::BadShape { what: "x0", .. })
        ));
    }

    #[test]
    fn vp_form_is_normalised() {
        let s = linear(1000);
        let (alpha, sigma) = s.vp_alpha_sigma(500).expect("in range");
        assert!((alpha * alpha + sigma * sigma - 1.0).abs() < 1e-12);
        assert!(s.vp_alpha_sigma(1000).is_err());
    }

    #[test]
    fn names_round_trip() {
        for b in [
            BetaSchedule::Linear,
            BetaSchedule::ScaledLinear,
            BetaSchedule::SquaredcosCapV2,
        ] {
            assert_eq!(b.name().parse::<BetaSchedule>().expect("known"), b);
        }
        for p in [
            PredictionType::Epsilon,
            PredictionType::VPrediction,
            PredictionType::Sample,
        ] {
            assert_eq!(p.name().parse::<PredictionType>().expect("known"), p);
        }
        assert!("cosine".parse::<BetaSchedule>().is_err());
        assert!("v".parse::<PredictionType>().is_err());
    }

    #[test]
    fn f64_forward_process_matches_f32_closely() {
        let s = linear(1000);
        let dev = Device::Cpu;
        let x = Tensor::new(&[[0.5f64, -1.0], [2.0, 0.25]], &dev).expect("x");
        let n = Tensor::new(&[[1.0f64, 0.5], [-0.5, 1.5]], &dev).expect("n");
        let ts = Tensor::new(&[0i64, 999], &dev).expect("ts");
        let got64 = s.add_noise(&x, &n, &ts).expect("f64");
        assert_eq!(got64.dtype(), DType::F64);
        let got32 = s
            .add_noise(
                &x.to_dtype(DType::F32).expect("f32"),
                &n.to_dtype(DType::F32).expect("f32"),
                &ts,
            )
            .expect("f32");
        let diff = (got64 - got32.to_dtype(DType::F64).expect("f64")).expect("diff");
        let max = diff
            .abs()
            .and_then(|d| d.max_all())
            .and_then(|m| m.to_scalar::<f64>())
            .expect("max");
        assert!(max < 1e-6, "{max}");
    }
}

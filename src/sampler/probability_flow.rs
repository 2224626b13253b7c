//! The probability-flow ODE of a discrete diffusion schedule, so that ODE solvers (euler,
//! midpoint, rk4, dopri5) can sample a diffusion-trained model (`path=ddpm sampler=dopri5`).
//!
//! Time is flow-matching time, `t = 0` noise to `t = 1` data. It maps to a continuous diffusion
//! timestep `tau = (1 - t) (N - 1)`, so `t = 0` is the noisiest timestep `N - 1` and `t = 1` is
//! timestep 0. Between integer timesteps `log(alphas_cumprod)` is interpolated by a cubic Hermite
//! spline with central-difference slopes (exact at integer timesteps, continuous first
//! derivative, so the velocity is continuous and adaptive solvers are not stalled by kinks),
//! which gives the VP form `alpha_t = sqrt(abar(tau))`, `sigma_t = sqrt(1 - abar(tau))` and its
//! exact time derivatives. The model's output is turned into epsilon (per its prediction type), then
//! into a velocity with the affine path's epsilon-to-velocity conversion:
//! `v = (d_alpha/alpha) x + ((d_sigma alpha - d_alpha sigma)/alpha) eps`.

use super::error::SamplerError;
use super::ode::VelocityField;
use crate::path::diffusion::{DiffusionSchedule, PredictionType};
use candle_core::{DType, Tensor};

/// The VP coefficients of a schedule at one flow time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VpCoefficients {
    /// The continuous diffusion timestep `tau` the network is evaluated at.
    pub timestep: f64,
    /// `sqrt(abar(tau))`.
    pub alpha: f64,
    /// `sqrt(1 - abar(tau))`.
    pub sigma: f64,
    /// `d alpha / d t` in flow time.
    pub d_alpha: f64,
    /// `d sigma / d t` in flow time.
    pub d_sigma: f64,
}

/// A discrete schedule seen as a continuous VP path in flow time.
#[derive(Debug, Clone)]
pub struct ContinuousVp {
    log_alphas_cumprod: Vec<f64>,
}

impl ContinuousVp {
    /// The continuous form of `schedule` (needs at least 2 training timesteps).
    pub fn new(schedule: &DiffusionSchedule) -> Result<Self, SamplerError> {
        let log_alphas_cumprod: Vec<f64> = schedule
            .alphas_cumprod()
            .iter()
            .map(|a| f64::from(*a).ln())
            .collect();
        if log_alphas_cumprod.len() < 2 {
            return Err(SamplerError::InvalidParameter {
                name: "num_train_timesteps",
                message: "the probability-flow ODE needs at least 2 training timesteps".into(),
            });
        }
        Ok(ContinuousVp { log_alphas_cumprod })
    }

    /// The coefficients at flow time `t` (times slightly outside [0, 1], as dopri5 may probe,
    /// extrapolate the end segments).
    pub fn at(&self, t: f64) -> VpCoefficients {
        let y = &self.log_alphas_cumprod;
        let last = y.len() - 1;
        let span = last as f64;
        let timestep = (1.0 - t) * span;
        let k = (timestep.floor().max(0.0) as usize).min(last - 1);
        let u = timestep - k as f64;
        let slope_at = |i: usize| {
            let lo = i.saturating_sub(1);
            let hi = (i + 1).min(last);
            (y[hi] - y[lo]) / (hi - lo) as f64
        };
        let (y0, y1, m0, m1) = (y[k], y[k + 1], slope_at(k), slope_at(k + 1));
        let (u2, u3) = (u * u, u * u * u);
        let log_abar = (2.0 * u3 - 3.0 * u2 + 1.0) * y0
            + (u3 - 2.0 * u2 + u) * m0
            + (3.0 * u2 - 2.0 * u3) * y1
            + (u3 - u2) * m1;
        let slope = (6.0 * u2 - 6.0 * u) * y0
            + (3.0 * u2 - 4.0 * u + 1.0) * m0
            + (6.0 * u - 6.0 * u2) * y1
            + (3.0 * u2 - 2.0 * u) * m1;
        let abar = log_abar.exp();
        let alpha = (0.5 * log_abar).exp();
        let sigma = (1.0 - abar).max(0.0).sqrt();
        let dtau_dt = -span;
        VpCoefficients {
            timestep,
            alpha,
            sigma,
            d_alpha: 0.5 * alpha * slope * dtau_dt,
            d_sigma: if sigma > 0.0 {
                -0.5 * abar * slope / sigma * dtau_dt
            } else {
                0.0
            },
        }
    }
}

/// The probability-flow velocity field of a diffusion model `model(x, tau)`.
pub struct ProbabilityFlow<M> {
    vp: ContinuousVp,
    prediction_type: PredictionType,
    model: M,
}

impl<M> ProbabilityFlow<M>
where
    M: Fn(&Tensor, f64) -> Result<Tensor, SamplerError>,
{
    /// The field of `model` (called with the state and a continuous timestep) on `schedule`.
    pub fn new(
        schedule: &DiffusionSchedule,
        prediction_type: PredictionType,
        model: M,
    ) -> Result<Self, SamplerError> {
        Ok(ProbabilityFlow {
            vp: ContinuousVp::new(schedule)?,
            prediction_type,
            model,
        })
    }

    /// The continuous VP form this field uses.
    pub fn vp(&self) -> &ContinuousVp {
        &self.vp
    }
}

impl<M> VelocityField for ProbabilityFlow<M>
where
    M: Fn(&Tensor, f64) -> Result<Tensor, SamplerError>,
{
    fn velocity(&self, x: &Tensor, t: &Tensor) -> Result<Tensor, SamplerError> {
        let t = t.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let c = self.vp.at(t);
        let output = (self.model)(x, c.timestep)?;
        let eps = match self.prediction_type {
            PredictionType::Epsilon => output,
            PredictionType::Sample => {
                (x - output.affine(c.alpha, 0.0)?)?.affine(1.0 / c.sigma, 0.0)?
            }
            PredictionType::VPrediction => {
                (output.affine(c.alpha, 0.0)? + x.affine(c.sigma, 0.0)?)?
            }
        };
        let x_coef = c.d_alpha / c.alpha;
        let eps_coef = (c.d_sigma * c.alpha - c.d_alpha * c.sigma) / c.alpha;
        Ok((x.affine(x_coef, 0.0)? + eps.affine(eps_coef, 0.0)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::diffusion::BetaSchedule;
    use crate::sampler::ode::{solve, OdeMethod, OdeOptions, TimeGrid};
    use candle_core::Device;

    /// For Gaussian data N(mu, s^2) the optimal epsilon predictor is known, and the flow is
    /// affine: x(t) = alpha_t mu + sqrt(D(t)/D(0)) (x(0) - alpha_0 mu), D = alpha^2 s^2 + sigma^2.
    #[test]
    fn gaussian_data_follows_the_analytic_flow() {
        let (mu, s) = (0.5f64, 0.3f64);
        for (schedule, prediction) in [
            (BetaSchedule::Linear, PredictionType::Epsilon),
            (BetaSchedule::SquaredcosCapV2, PredictionType::VPrediction),
            (BetaSchedule::Linear, PredictionType::Sample),
        ] {
            let sched = DiffusionSchedule::new(1000, 1e-4, 0.02, schedule).unwrap();
            let vp = ContinuousVp::new(&sched).unwrap();
            let vp_model = vp.clone();
            let model = move |x: &Tensor, tau: f64| -> Result<Tensor, SamplerError> {
                let c = vp_model.at(1.0 - tau / 999.0);
                let d = c.alpha * c.alpha * s * s + c.sigma * c.sigma;
                let eps = x.affine(c.sigma / d, -c.sigma * c.alpha * mu / d)?;
                Ok(match prediction {
                    PredictionType::Epsilon => eps,
                    PredictionType::Sample => {
                        ((x - eps.affine(c.sigma, 0.0)?)?.affine(1.0 / c.alpha, 0.0))?
                    }
                    PredictionType::VPrediction => {
                        (eps - x.affine(c.sigma, 0.0)?)?.affine(1.0 / c.alpha, 0.0)?
                    }
                })
            };
            let field = ProbabilityFlow::new(&sched, prediction, model).unwrap();
            let x0 = Tensor::new(&[-2.0f64, -0.5, 0.0, 0.7, 1.9], &Device::Cpu).unwrap();
            let grid = TimeGrid::unit_interval(DType::F64).unwrap();
            let options = OdeOptions::new(OdeMethod::Dopri5)
                .with_tolerances(1e-9, 1e-9)
                .with_max_steps(100_000);
            let sol = solve(&field, &x0, &grid, &options).unwrap();
            let (c0, c1) = (vp.at(0.0), vp.at(1.0));
            let d0 = c0.alpha * c0.alpha * s * s + c0.sigma * c0.sigma;
            let d1 = c1.alpha * c1.alpha * s * s + c1.sigma * c1.sigma;
            let want = x0
                .affine(
                    (d1 / d0).sqrt(),
                    c1.alpha * mu - (d1 / d0).sqrt() * c0.alpha * mu,
                )
                .unwrap();
            let err = (sol.final_state - want)
                .unwrap()
                .abs()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert!(err < 1e-6, "{schedule:?}/{prediction:?}: max error {err}");
            assert!(
                sol.stats.nfe < 5000,
                "{schedule:?}/{prediction:?}: {} evaluations",
                sol.stats.nfe
            );
            assert_eq!(
                sol.stats.nfe,
                2 + 6 * (sol.stats.n_accepted + sol.stats.n_rejected)
            );
        }
    }

    #[test]
    fn coefficients_match_the_schedule_at_integer_timesteps() {
        let sched = DiffusionSchedule::new(10, 1e-4, 0.02, BetaSchedule::Linear).unwrap();
        let vp = ContinuousVp::new(&sched).unwrap();
        for k in 0..10i64 {
            let c = vp.at(1.0 - k as f64 / 9.0);
            let (alpha, sigma) = sched.vp_alpha_sigma(k).unwrap();
            assert!(
                (c.alpha - alpha).abs() < 1e-6 && (c.sigma - sigma).abs() < 1e-6,
                "timestep {k}"
            );
        }
        assert!(ContinuousVp::new(
            &DiffusionSchedule::new(1, 1e-4, 0.02, BetaSchedule::Linear).unwrap()
        )
        .is_err());
    }
}

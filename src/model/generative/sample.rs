//! Sampling masks for a batch of contexts.
//!
//! The initial state is `N(0, 1)` noise `(B, out_channels, H, W)` drawn from `Rng::new(seed)`;
//! stochastic samplers (DDPM, DDIM with `eta > 0`) draw their step noise from the same generator
//! afterwards, so a seed fixes the result. The network time is `t * time_scale` for a
//! flow-matching path (t in [0, 1]), and the diffusion timestep times `time_scale` otherwise; ODE
//! solvers on a diffusion path integrate its probability-flow ODE. Masks come back clamped to
//! [-1, 1].

use candle_core::{DType, Tensor};

use crate::config::schema::SamplerSettings;
use crate::path::settings::ProbPath;
use crate::rng::Rng;
use crate::sampler::ddim::ddim_sample;
use crate::sampler::ddpm::ddpm_sample;
use crate::sampler::error::SamplerError;
use crate::sampler::ode::{solve, SolverStats};
use crate::sampler::plan::SamplerPlan;
use crate::sampler::probability_flow::ProbabilityFlow;

use super::error::GenerativeError;
use super::GenerativeModule;

/// Sampled masks and what the sampler did.
#[derive(Debug, Clone)]
pub struct SampleOutput {
    /// The masks `(B, out_channels, H, W)` in [-1, 1].
    pub masks: Tensor,
    /// Network evaluations and steps (DDIM / DDPM: one accepted step per evaluation).
    pub stats: SolverStats,
}

impl GenerativeModule {
    /// Samples masks for `context` `(B, C, H, W)` with `plan`, from noise seeded by `seed`.
    pub fn sample(
        &self,
        context: &Tensor,
        plan: &SamplerPlan,
        seed: u64,
    ) -> Result<SampleOutput, GenerativeError> {
        let batch = self.layout.check_context(context)?;
        let context = context.to_device(&self.device)?.to_dtype(DType::F32)?;
        let mut rng = Rng::new(seed);
        let (c, s) = (self.layout.target_channels, self.layout.size);
        let x_init = rng.randn((batch, c, s, s), &self.device)?;
        let scale = self.config.time_scale;
        let evaluate = |x: &Tensor, t_net: f64| -> Result<Tensor, SamplerError> {
            let input = self.layout.concat(&context, x)?;
            let t = Tensor::full(t_net as f32, batch, &self.device)?;
            Ok(self.forward_net(&input, &t)?.detach())
        };
        let (state, stats) = match (plan, &self.config.path) {
            (SamplerPlan::Ode { .. }, ProbPath::Affine(_)) => {
                let field = |x: &Tensor, t: &Tensor| -> Result<Tensor, SamplerError> {
                    let t = t.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                    evaluate(x, t * scale)
                };
                ode(plan, &field, &x_init)?
            }
            (
                SamplerPlan::Ode { .. },
                ProbPath::Diffusion {
                    schedule,
                    prediction_type,
                },
            ) => {
                let field = ProbabilityFlow::new(schedule, *prediction_type, |x: &Tensor, tau| {
                    evaluate(x, tau * scale)
                })?;
                ode(plan, &field, &x_init)?
            }
            (SamplerPlan::Ddim { config, steps }, ProbPath::Diffusion { schedule, .. }) => {
                let (x, stats) = ddim_sample(
                    schedule,
                    config,
                    steps,
                    &x_init,
                    |x, t| evaluate(x, t as f64 * scale),
                    |x| Ok(rng.randn(x.dims(), x.device())?),
                )?;
                (x, discrete_stats(stats.nfe))
            }
            (SamplerPlan::Ddpm { config, steps }, ProbPath::Diffusion { schedule, .. }) => {
                let (x, stats) = ddpm_sample(
                    schedule,
                    config,
                    steps,
                    &x_init,
                    |x, t| evaluate(x, t as f64 * scale),
                    |x| Ok(rng.randn(x.dims(), x.device())?),
                )?;
                (x, discrete_stats(stats.nfe))
            }
            (SamplerPlan::Ddim { .. } | SamplerPlan::Ddpm { .. }, ProbPath::Affine(_)) => {
                return Err(GenerativeError::InvalidSetting {
                    key: "model.sampler",
                    message: "DDIM and DDPM need a diffusion path, but model.path is a \
                              flow-matching path; use sampler=euler, midpoint, rk4 or dopri5"
                        .to_string(),
                })
            }
        };
        Ok(SampleOutput {
            masks: state.clamp(-1f32, 1f32)?,
            stats,
        })
    }

    /// The default sampler plan (`model.sampler`).
    pub fn default_plan(&self) -> &SamplerPlan {
        &self.config.sampler
    }

    /// The plan for other sampler settings (e.g. `model.sampler` with more steps) on this
    /// module's path; a diffusion sampler on a flow-matching path is an error.
    pub fn plan_for(&self, sampler: &SamplerSettings) -> Result<SamplerPlan, GenerativeError> {
        Ok(SamplerPlan::from_settings(sampler, &self.config.path)?)
    }
}

fn ode(
    plan: &SamplerPlan,
    field: &impl crate::sampler::ode::VelocityField,
    x_init: &Tensor,
) -> Result<(Tensor, SolverStats), GenerativeError> {
    let (grid, options) =
        plan.ode_setup(DType::F32)?
            .ok_or_else(|| GenerativeError::InvalidSetting {
                key: "model.sampler",
                message: "not an ODE sampler".to_string(),
            })?;
    let solution = solve(field, x_init, &grid, &options)?;
    Ok((solution.final_state, solution.stats))
}

fn discrete_stats(nfe: usize) -> SolverStats {
    SolverStats {
        nfe,
        n_accepted: nfe,
        n_rejected: 0,
    }
}

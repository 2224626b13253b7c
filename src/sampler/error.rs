//! Errors of the samplers (ODE solvers, DDPM and DDIM).

use crate::path::error::PathError;

/// A bad sampler argument, a failed integration, or a failure underneath.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// A sampler parameter is invalid (names it and says what is allowed).
    #[error("invalid {name}: {message}")]
    InvalidParameter {
        /// The parameter, e.g. `steps`, `atol`, `step_size`.
        name: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// The state became NaN or infinite during integration.
    #[error("the state became non-finite (NaN or inf) at t={t}; the velocity field or step size is unstable")]
    NonFinite {
        /// The time at which it happened.
        t: f64,
    },
    /// An adaptive solver needed more steps than allowed.
    #[error("dopri5 did not reach t={target} within max_steps={max_steps} steps (stopped at t={reached}); loosen atol/rtol or raise max_steps")]
    TooManySteps {
        /// The step limit.
        max_steps: usize,
        /// How far it got.
        reached: f64,
        /// Where it had to go.
        target: f64,
    },
    /// dopri5's step size shrank below the resolution of the time (torchdiffeq's "underflow in dt").
    #[error("dopri5 step size underflowed at t={t} (dt={dt}); atol/rtol are probably below the state's precision (f32 resolves about 1e-7 relative) or the velocity field is not smooth")]
    StepSizeUnderflow {
        /// The time at which it happened.
        t: f64,
        /// The step size that no longer advances the time.
        dt: f64,
    },
    /// A path or schedule error.
    #[error(transparent)]
    Path(#[from] PathError),
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

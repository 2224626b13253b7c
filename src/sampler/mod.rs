//! Samplers: torchdiffeq-style ODE solvers for flow matching (and the probability-flow ODE of a
//! diffusion schedule), and diffusers' DDPM and DDIM samplers.
//!
//! Every sampler is stateless: a step is a pure function of its inputs, and every sampler returns
//! statistics with its result (network evaluations; accepted and rejected steps for dopri5).

pub mod ddim;
pub mod ddpm;
pub mod discrete;
pub mod error;
pub mod ode;
pub mod plan;
pub mod prediction;
pub mod probability_flow;
pub mod timesteps;

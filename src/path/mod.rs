//! Probability paths: how data and noise are mixed at training time.
//!
//! **Time convention (flow_matching's, used everywhere in flowrun):** flow-matching time runs
//! from `t = 0`, pure noise `x_0`, to `t = 1`, data `x_1`; `x_t = sigma_t x_0 + alpha_t x_1`.
//! [`affine::FlowTime`] is the only way to hand a time to [`affine::AffineProbPath::sample`], and
//! it checks `t` is in `[0, 1]`. Diffusion (diffusers) counts integer timesteps the other way:
//! timestep 0 is the least noisy; [`diffusion`] keeps that convention for its schedules.
//!
//! * [`scheduler`]: the affine schedulers (CondOT, cosine, VP, linear VP, polynomial);
//! * [`affine`]: the path, `sample(x_0, x_1, t)`, and the velocity / target / epsilon converters;
//! * [`schedule_transform`]: sampling a model trained under one scheduler as if under another;
//! * [`diffusion`]: DDPM beta schedules, `add_noise`, training targets.

pub mod affine;
pub mod diffusion;
pub mod error;
pub mod schedule_transform;
pub mod scheduler;
pub mod settings;

//! Fixed-step methods: Euler, midpoint and RK4 (3/8 rule), as torchdiffeq's `FixedGridODESolver`.
//!
//! Time arithmetic (step sizes, stage times, interpolation weights) happens in the time grid's
//! dtype; each coefficient is then cast to the state's dtype, in torchdiffeq's operation order.
//! Time-grid points inside a step are linearly interpolated between its ends.

use candle_core::{DType, Tensor};

use super::grid::{round_to, solver_grid};
use super::{all_finite, OdeMethod, OdeOptions, OdeSolution, Rhs, SolverStats, StepAttempt};
use super::{TimeGrid, VelocityField};
use crate::sampler::error::SamplerError;

/// Integrates with a fixed-step method over the grid given by `options.fixed_steps`.
pub(crate) fn integrate<F: VelocityField>(
    rhs: &mut Rhs<'_, F>,
    x_init: &Tensor,
    time_grid: &TimeGrid,
    options: &OdeOptions,
) -> Result<OdeSolution, SamplerError> {
    let time_dtype = time_grid.dtype();
    let outputs = time_grid.solver_times();
    let grid = solver_grid(time_grid, options.fixed_steps, options.max_steps)?;
    let last = outputs.len() - 1;
    let mut kept = Vec::new();
    if options.return_intermediates {
        kept.reserve(outputs.len());
        kept.push(x_init.clone());
    }
    let mut final_state = None;
    let mut steps = Vec::with_capacity(grid.len() - 1);
    let mut y = x_init.clone();
    let mut j = 1;
    for w in grid.windows(2) {
        let (a, b) = (w[0], w[1]);
        let dt = round_to(b - a, time_dtype);
        let y1 = (&y + increment(options.method, rhs, a, dt, b, &y, time_dtype)?)?;
        if !all_finite(&y1)? {
            return Err(SamplerError::NonFinite {
                t: rhs.user_time(b),
            });
        }
        steps.push(StepAttempt {
            s: a,
            ds: dt,
            accepted: true,
        });
        while j <= last && b >= outputs[j] {
            if options.return_intermediates || j == last {
                let value = interpolate(a, b, &y, &y1, outputs[j], time_dtype)?;
                if j == last {
                    final_state = Some(value.clone());
                }
                if options.return_intermediates {
                    kept.push(value);
                }
            }
            j += 1;
        }
        y = y1;
    }
    let final_state = final_state.ok_or_else(|| SamplerError::InvalidParameter {
        name: "time_grid",
        message: "the fixed-step grid does not reach the last time".to_string(),
    })?;
    let intermediates = if options.return_intermediates {
        Some(Tensor::stack(&kept, 0)?)
    } else {
        None
    };
    Ok(OdeSolution {
        final_state,
        intermediates,
        stats: SolverStats {
            nfe: rhs.nfe(),
            n_accepted: steps.len(),
            n_rejected: 0,
        },
        steps,
    })
}

/// The increment `y(b) - y(a)` of one step of `method` from `a` to `b = a + dt`.
fn increment<F: VelocityField>(
    method: OdeMethod,
    rhs: &mut Rhs<'_, F>,
    a: f64,
    dt: f64,
    b: f64,
    y: &Tensor,
    time_dtype: DType,
) -> Result<Tensor, SamplerError> {
    let state_dtype = rhs.dtype();
    let dt_state = round_to(dt, state_dtype);
    let k1 = rhs.eval(a, y)?;
    match method {
        OdeMethod::Euler => Ok((k1 * dt_state)?),
        OdeMethod::Midpoint => {
            let half = round_to(0.5 * dt, time_dtype);
            let y_mid = (y + (k1 * round_to(half, state_dtype))?)?;
            let k2 = rhs.eval(round_to(a + half, time_dtype), &y_mid)?;
            Ok((k2 * dt_state)?)
        }
        OdeMethod::Rk4 => {
            let third = round_to(1.0 / 3.0, state_dtype);
            let t2 = round_to(
                a + round_to(dt * round_to(1.0 / 3.0, time_dtype), time_dtype),
                time_dtype,
            );
            let t3 = round_to(
                a + round_to(dt * round_to(2.0 / 3.0, time_dtype), time_dtype),
                time_dtype,
            );
            let y2 = (y + ((&k1 * dt_state)? * third)?)?;
            let k2 = rhs.eval(t2, &y2)?;
            let y3 = (y + ((&k2 - (&k1 * third)?)? * dt_state)?)?;
            let k3 = rhs.eval(t3, &y3)?;
            let y4 = (y + (((&k1 - &k2)? + &k3)? * dt_state)?)?;
            let k4 = rhs.eval(b, &y4)?;
            let sum = ((&k1 + ((&k2 + &k3)? * 3.0)?)? + k4)?;
            Ok(((sum * dt_state)? * 0.125)?)
        }
        OdeMethod::Dopri5 => Err(SamplerError::InvalidParameter {
            name: "method",
            message: "dopri5 is not a fixed-step method".to_string(),
        }),
    }
}

/// The linear interpolation at `s` between `y0` at `a` and `y1` at `b` (exact at the ends).
fn interpolate(
    a: f64,
    b: f64,
    y0: &Tensor,
    y1: &Tensor,
    s: f64,
    time_dtype: DType,
) -> Result<Tensor, SamplerError> {
    if s == a {
        return Ok(y0.clone());
    }
    if s == b {
        return Ok(y1.clone());
    }
    let slope = round_to(
        round_to(s - a, time_dtype) / round_to(b - a, time_dtype),
        time_dtype,
    );
    let delta = ((y1 - y0)? * round_to(slope, y0.dtype()))?;
    Ok((y0 + delta)?)
}

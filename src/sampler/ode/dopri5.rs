//! Adaptive Dormand-Prince 5(4), as torchdiffeq's `Dopri5Solver` (an `RKAdaptiveStepsizeODESolver`).
//!
//! Times are `f64`; the state keeps its dtype, and so do everything computed from it: stage times
//! (`t0`, `dt` and `t0 + dt` cast to the state's dtype), tableau coefficients times `dt`, the
//! initial-step quantities and the error ratio. Scalars are emulated with [`round_to`] after each
//! operation, in torchdiffeq's order. The controller runs in `f64`.

use std::cmp::Ordering;

use candle_core::{DType, Tensor};

use super::grid::{next_below, round_to};
use super::norm::rms;
use super::VelocityField;
use super::{OdeOptions, OdeSolution, Rhs, SolverStats, StepAttempt, TimeGrid};
use crate::sampler::error::SamplerError;

/// Stage times as fractions of the step.
const ALPHA: [f64; 6] = [1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];

/// Stage weights: stage `i + 1` is evaluated at `y0 + dt * sum_j BETA[i][j] k_j`.
const BETA: [&[f64]; 6] = [
    &[1.0 / 5.0],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
    ],
    &[
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
    ],
    &[
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];

/// Error weights: the 5th-order minus the 4th-order solution weights.
const C_ERROR: [f64; 7] = [
    35.0 / 384.0 - 1951.0 / 21600.0,
    0.0,
    500.0 / 1113.0 - 22642.0 / 50085.0,
    125.0 / 192.0 - 451.0 / 720.0,
    -2187.0 / 6784.0 - -12231.0 / 42400.0,
    11.0 / 84.0 - 649.0 / 6300.0,
    -1.0 / 60.0,
];

/// Weights of the dense-output midpoint `y(t0 + dt/2)`.
const C_MID: [f64; 7] = [
    6025192743.0 / 30085553152.0 / 2.0,
    0.0,
    51252292925.0 / 65400821598.0 / 2.0,
    -2691868925.0 / 45128329728.0 / 2.0,
    187940372067.0 / 1594534317056.0 / 2.0,
    -1776094331.0 / 19743644256.0 / 2.0,
    11237099.0 / 235043384.0 / 2.0,
];

/// Controller constants (torchdiffeq's defaults).
const SAFETY: f64 = 0.9;
const IFACTOR: f64 = 10.0;
const DFACTOR: f64 = 0.2;
const ORDER: f64 = 5.0;

/// The last accepted step, kept for dense output.
struct Accepted {
    s0: f64,
    s1: f64,
    dt_state: f64,
    y0: Tensor,
    y1: Tensor,
    k: Vec<Tensor>,
    coefficients: Option<[Tensor; 5]>,
}

impl Accepted {
    /// The dense-output polynomial at solver time `s` in `[s0, s1]`.
    fn evaluate(&mut self, s: f64) -> Result<Tensor, SamplerError> {
        let dtype = self.y0.dtype();
        let coefficients = match self.coefficients.take() {
            Some(coefficients) => coefficients,
            None => self.fit()?,
        };
        let [e, d, c, b, a] = &coefficients;
        let x = round_to((s - self.s0) / (self.s1 - self.s0), dtype);
        let mut total = (e + (d * x)?)?;
        let mut power = x;
        for coefficient in [c, b, a] {
            power = round_to(power * x, dtype);
            total = (total + (coefficient * power)?)?;
        }
        self.coefficients = Some(coefficients);
        Ok(total)
    }

    /// The coefficients `[e, d, c, b, a]` of `e + d x + c x^2 + b x^3 + a x^4`.
    fn fit(&self) -> Result<[Tensor; 5], SamplerError> {
        let dt = self.dt_state;
        let (y0, y1) = (&self.y0, &self.y1);
        let y_mid = combine(Some(y0), &self.k, &C_MID, dt)?;
        let f0 = &self.k[0];
        let f1 = &self.k[6];
        let a = ((((f1 - f0)? * round_to(2.0 * dt, y0.dtype()))? - ((y1 + y0)? * 8.0)?)?
            + (&y_mid * 16.0)?)?;
        let b = (((((f0 * 5.0)? - (f1 * 3.0)?)? * dt)? + (y0 * 18.0)?)? + (y1 * 14.0)?)?;
        let b = (b - (&y_mid * 32.0)?)?;
        let c =
            (((((f1 - (f0 * 4.0)?)? * dt)? - (y0 * 11.0)?)? - (y1 * 5.0)?)? + (&y_mid * 16.0)?)?;
        let d = (f0 * dt)?;
        Ok([y0.clone(), d, c, b, a])
    }
}

/// `base + sum_j k_j * (coeff_j * dt)`, with each `coeff_j * dt` and each product rounded to the
/// state's dtype, summed in the order of torch's CPU `sum(dim=-1)` over `n <= 7` terms (its
/// `row_sum` with 4 partial sums): `((((k0 + k4) + k5) + k6) + k1) + k2) + k3`, or `k0 + k1 + k2`
/// for `n < 4`. Zero coefficients add nothing and are skipped.
fn combine(
    base: Option<&Tensor>,
    k: &[Tensor],
    coefficients: &[f64],
    dt_state: f64,
) -> Result<Tensor, SamplerError> {
    let n = coefficients.len().min(k.len());
    let order: Vec<usize> = if n >= 4 {
        [0].into_iter().chain(4..n).chain(1..4).collect()
    } else {
        (0..n).collect()
    };
    let mut acc: Option<Tensor> = None;
    for j in order {
        let c = coefficients[j];
        if c == 0.0 {
            continue;
        }
        let dtype = k[j].dtype();
        let term = (&k[j] * round_to(round_to(c, dtype) * dt_state, dtype))?;
        acc = Some(match acc {
            None => term,
            Some(sum) => (sum + term)?,
        });
    }
    match (base, acc) {
        (Some(base), Some(sum)) => Ok((base + sum)?),
        (None, Some(sum)) => Ok(sum),
        (Some(base), None) => Ok(base.clone()),
        (None, None) => Ok(k[0].zeros_like()?),
    }
}

/// Integrates adaptively through every time of the grid.
pub(crate) fn integrate<F: VelocityField>(
    rhs: &mut Rhs<'_, F>,
    x_init: &Tensor,
    time_grid: &TimeGrid,
    options: &OdeOptions,
) -> Result<OdeSolution, SamplerError> {
    let dtype = rhs.dtype();
    let outputs = time_grid.solver_times();
    let last_output = outputs.len() - 1;
    let atol = round_to(options.atol, dtype);
    let rtol = round_to(options.rtol, dtype);
    let f0 = rhs.eval(outputs[0], x_init)?;
    let mut dt = initial_step(rhs, outputs[0], x_init, &f0, atol, rtol)?;
    if dt.is_nan() {
        return Err(SamplerError::NonFinite {
            t: rhs.user_time(outputs[0]),
        });
    }
    let mut s = outputs[0];
    let mut y = x_init.clone();
    let mut f = f0;
    let mut accepted: Option<Accepted> = None;
    let mut steps = Vec::new();
    let mut kept = Vec::new();
    if options.return_intermediates {
        kept.push(x_init.clone());
    }
    let mut final_state = None;
    for (j, &target) in outputs.iter().enumerate().skip(1) {
        while target > s {
            if steps.len() >= options.max_steps {
                return Err(SamplerError::TooManySteps {
                    max_steps: options.max_steps,
                    reached: rhs.user_time(s),
                    target: rhs.user_time(outputs[last_output]),
                });
            }
            if (s + dt).partial_cmp(&s) != Some(Ordering::Greater) {
                return Err(SamplerError::StepSizeUnderflow {
                    t: rhs.user_time(s),
                    dt,
                });
            }
            let (y1, k, ratio) = attempt(rhs, s, dt, &y, &f, atol, rtol)?;
            if ratio.is_nan() {
                return Err(SamplerError::NonFinite {
                    t: rhs.user_time(s + dt),
                });
            }
            let accept = ratio <= 1.0;
            steps.push(StepAttempt {
                s,
                ds: dt,
                accepted: accept,
            });
            if accept {
                f = k[6].clone();
                accepted = Some(Accepted {
                    s0: s,
                    s1: s + dt,
                    dt_state: round_to(dt, dtype),
                    y0: y,
                    y1: y1.clone(),
                    k,
                    coefficients: None,
                });
                s += dt;
                y = y1;
            }
            dt = next_step_size(dt, ratio);
        }
        if options.return_intermediates || j == last_output {
            let step = accepted.as_mut().ok_or(SamplerError::InvalidParameter {
                name: "time_grid",
                message: "no step was taken before an output time".to_string(),
            })?;
            let value = step.evaluate(target)?;
            if j == last_output {
                final_state = Some(value.clone());
            }
            if options.return_intermediates {
                kept.push(value);
            }
        }
    }
    let final_state = final_state.ok_or(SamplerError::InvalidParameter {
        name: "time_grid",
        message: "the solve did not reach the last time".to_string(),
    })?;
    let intermediates = if options.return_intermediates {
        Some(Tensor::stack(&kept, 0)?)
    } else {
        None
    };
    let n_accepted = steps.iter().filter(|step| step.accepted).count();
    Ok(OdeSolution {
        final_state,
        intermediates,
        stats: SolverStats {
            nfe: rhs.nfe(),
            n_accepted,
            n_rejected: steps.len() - n_accepted,
        },
        steps,
    })
}

/// One attempted step from `s` with size `dt`: the 5th-order solution, the 7 stages and the
/// error ratio (NaN when the solution or its error estimate is not finite).
fn attempt<F: VelocityField>(
    rhs: &mut Rhs<'_, F>,
    s: f64,
    dt: f64,
    y0: &Tensor,
    f0: &Tensor,
    atol: f64,
    rtol: f64,
) -> Result<(Tensor, Vec<Tensor>, f64), SamplerError> {
    let dtype = rhs.dtype();
    let s0 = round_to(s, dtype);
    let dt_state = round_to(dt, dtype);
    let s1 = round_to(s + dt, dtype);
    let mut k = Vec::with_capacity(7);
    k.push(f0.clone());
    let mut y1 = None;
    for (i, (&alpha, beta)) in ALPHA.iter().zip(BETA).enumerate() {
        let stage_time = if alpha == 1.0 {
            next_below(s1, dtype)
        } else {
            round_to(
                s0 + round_to(round_to(alpha, dtype) * dt_state, dtype),
                dtype,
            )
        };
        let yi = combine(Some(y0), &k, beta, dt_state)?;
        k.push(rhs.eval(stage_time, &yi)?);
        if i == ALPHA.len() - 1 {
            y1 = Some(yi);
        }
    }
    let y1 = y1.ok_or(SamplerError::InvalidParameter {
        name: "method",
        message: "the dopri5 tableau has no stages".to_string(),
    })?;
    let error = combine(None, &k, &C_ERROR, dt_state)?;
    let tolerance = y0.abs()?.maximum(&y1.abs()?)?.affine(rtol, atol)?;
    let scaled = ((error / tolerance)? + y1.affine(0.0, 0.0)?)?;
    Ok((y1, k, rms(&scaled)?))
}

/// The next step size from the error ratio of the last attempt.
fn next_step_size(dt: f64, ratio: f64) -> f64 {
    if ratio == 0.0 {
        return dt * IFACTOR;
    }
    let dfactor = if ratio < 1.0 { 1.0 } else { DFACTOR };
    let factor = IFACTOR.min((SAFETY / ratio.powf(1.0 / ORDER)).max(dfactor));
    dt * factor
}

/// Hairer's initial step (Solving ODEs II.4), in the state's dtype.
fn initial_step<F: VelocityField>(
    rhs: &mut Rhs<'_, F>,
    s0: f64,
    y0: &Tensor,
    f0: &Tensor,
    atol: f64,
    rtol: f64,
) -> Result<f64, SamplerError> {
    let dtype: DType = rhs.dtype();
    let r = |x: f64| round_to(x, dtype);
    let scale = y0.abs()?.affine(rtol, atol)?;
    let d0 = rms(&(y0 / &scale)?)?;
    let d1 = rms(&(f0 / &scale)?)?;
    let h0 = if d0 < r(1e-5) || d1 < r(1e-5) {
        r(1e-6)
    } else {
        r(r(r(0.01) * d0) / d1).abs()
    };
    let y1 = (y0 + (f0 * h0)?)?;
    let f1 = rhs.eval(s0 + h0, &y1)?;
    let d2 = r(rms(&((f1 - f0)? / &scale)?)? / h0).abs();
    let h1 = if d1 <= r(1e-15) && d2 <= r(1e-15) {
        r(1e-6).max(r(h0 * r(1e-3)))
    } else {
        let largest = if d2 > d1 { d2 } else { d1 };
        r(r(r(0.01) / largest).powf(r(1.0 / ORDER))).abs()
    };
    let grown = r(100.0 * h0);
    Ok(if grown.is_nan() || h1.is_nan() {
        f64::NAN
    } else {
        grown.min(h1)
    })
}

//! ODE samplers for flow-matching velocity fields: Euler, midpoint, RK4 (3/8 rule) and adaptive
//! dopri5, matching torchdiffeq 0.2.5 as flow_matching's `ODESolver.sample` calls it:
//! `odeint(f, x_init, time_grid, method, options={"step_size": h} if h, atol, rtol)`.
//!
//! Conventions (the "ODE solving" section of `tests/golden/CONVENTIONS.md`):
//! * The velocity is called as `v(x, t)` with `t` a 0-dim tensor of `x`'s dtype and device.
//! * A descending [`TimeGrid`] is solved in the ascending solver time `s = -t` with
//!   `g(s, y) = -v(y, -s)`; [`StepAttempt`]s are recorded in `s`, everything else in user time `t`.
//! * Fixed-step methods ([`FixedSteps::Size`]) build their grid from the first and last grid time
//!   only, in the time grid's dtype: `n = ceil((t1-t0)/h + 1)`, `g_k = k*h + t0`, `g_{n-1} := t1`
//!   (a step size that does not divide the interval gives a shorter last step). Grid times in
//!   between are *linearly interpolated* inside the step that contains them, even for RK4.
//!   Stage times are computed in the time grid's dtype, then cast to the state's dtype.
//! * dopri5 keeps times in `f64` and the state in its dtype (stage times in the state's dtype;
//!   the two `c = 1` stages at `nextafter(t0 + dt, -inf)`). Initial step by Hairer's rule,
//!   error ratio = RMS over the whole state (the batch shares step sizes), controller with safety
//!   0.9, growth <= 10, shrink >= 0.2 (accepted steps never shrink), FSAL, and outputs from the
//!   4th-order dense polynomial of the last accepted step: steps are never clipped at output times,
//!   so the last step usually overshoots the end time. `nfe = 2 + 6 * (accepted + rejected)`.
//! * States must be `f32` or `f64`; time grids too. A non-finite state stops the solve with
//!   [`SamplerError::NonFinite`]; dopri5 stops after `max_steps` attempted steps with
//!   [`SamplerError::TooManySteps`] and on a step-size underflow with
//!   [`SamplerError::StepSizeUnderflow`].
//!
//! Everything is stateless: [`solve`] is a pure function of its arguments and the field.

mod dopri5;
mod fixed;
mod grid;
mod norm;

use std::str::FromStr;

use candle_core::{DType, Device, Shape, Tensor};

use crate::sampler::error::SamplerError;

pub use grid::TimeGrid;

/// A time-dependent velocity field `v(x, t)`, the right-hand side of `dx/dt = v(x, t)`.
pub trait VelocityField {
    /// The velocity at state `x` and time `t` (a 0-dim tensor of `x`'s dtype), shaped like `x`.
    fn velocity(&self, x: &Tensor, t: &Tensor) -> Result<Tensor, SamplerError>;
}

impl<F> VelocityField for F
where
    F: Fn(&Tensor, &Tensor) -> Result<Tensor, SamplerError>,
{
    fn velocity(&self, x: &Tensor, t: &Tensor) -> Result<Tensor, SamplerError> {
        self(x, t)
    }
}

/// The integration method (torchdiffeq's `euler`, `midpoint`, `rk4` and `dopri5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OdeMethod {
    /// Forward Euler, 1 evaluation per step.
    Euler,
    /// Explicit midpoint, 2 evaluations per step.
    Midpoint,
    /// Classic 4th-order Runge-Kutta in its 3/8-rule form, 4 evaluations per step.
    Rk4,
    /// Adaptive Dormand-Prince 5(4) with error control by `atol`/`rtol`.
    Dopri5,
}

impl OdeMethod {
    /// The torchdiffeq name (`euler`, `midpoint`, `rk4`, `dopri5`).
    pub fn name(self) -> &'static str {
        match self {
            OdeMethod::Euler => "euler",
            OdeMethod::Midpoint => "midpoint",
            OdeMethod::Rk4 => "rk4",
            OdeMethod::Dopri5 => "dopri5",
        }
    }

    /// Whether the method chooses its own step sizes.
    pub fn is_adaptive(self) -> bool {
        self == OdeMethod::Dopri5
    }
}

impl FromStr for OdeMethod {
    type Err = SamplerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "euler" => Ok(OdeMethod::Euler),
            "midpoint" => Ok(OdeMethod::Midpoint),
            "rk4" => Ok(OdeMethod::Rk4),
            "dopri5" => Ok(OdeMethod::Dopri5),
            other => Err(SamplerError::InvalidParameter {
                name: "method",
                message: format!(
                    "unknown ODE method {other:?}; use euler, midpoint, rk4 or dopri5"
                ),
            }),
        }
    }
}

/// Where the fixed-step methods step (dopri5 takes only [`FixedSteps::GridPoints`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FixedSteps {
    /// From each time-grid point to the next (torchdiffeq without `step_size`).
    GridPoints,
    /// Steps of this size from the first to the last grid time, the last one possibly shorter;
    /// the grid times in between are linearly interpolated (torchdiffeq's `step_size`).
    Size(f64),
}

/// How to solve: method, fixed-step placement, dopri5 tolerances and limits, and outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OdeOptions {
    /// The integration method.
    pub method: OdeMethod,
    /// Where fixed-step methods step.
    pub fixed_steps: FixedSteps,
    /// dopri5's absolute tolerance (>= 0; flow_matching's default 1e-5).
    pub atol: f64,
    /// dopri5's relative tolerance (>= 0; flow_matching's default 1e-5).
    pub rtol: f64,
    /// The most steps a solve may take (dopri5: attempted steps, accepted or rejected).
    pub max_steps: usize,
    /// Whether to return the state at every time-grid point, not only the last.
    pub return_intermediates: bool,
}

impl OdeOptions {
    /// `method` stepping between grid points, atol = rtol = 1e-5, max_steps = 10000, final state only.
    pub fn new(method: OdeMethod) -> Self {
        Self {
            method,
            fixed_steps: FixedSteps::GridPoints,
            atol: 1e-5,
            rtol: 1e-5,
            max_steps: 10_000,
            return_intermediates: false,
        }
    }

    /// These options with fixed steps of size `step_size`.
    pub fn with_step_size(mut self, step_size: f64) -> Self {
        self.fixed_steps = FixedSteps::Size(step_size);
        self
    }

    /// These options with dopri5 tolerances `atol` and `rtol`.
    pub fn with_tolerances(mut self, atol: f64, rtol: f64) -> Self {
        self.atol = atol;
        self.rtol = rtol;
        self
    }

    /// These options with a different step limit.
    pub fn with_max_steps(mut self, max_steps: usize) -> Self {
        self.max_steps = max_steps;
        self
    }

    /// These options returning (or not) the state at every time-grid point.
    pub fn with_intermediates(mut self, return_intermediates: bool) -> Self {
        self.return_intermediates = return_intermediates;
        self
    }
}

/// The grid `[0, 1]` in `dtype` and options for `steps` fixed steps of size `1/steps` with `method`.
///
/// This is flowrun's config form (`steps: N`), solved as flow_matching does with
/// `step_size=1/N`; errors when `steps <= 0` or `method` is dopri5. As in torchdiffeq, a few `N`
/// (61 in f32, 49 in f64, about 7% of N <= 2000) get one extra step of one ulp, because `1/h`
/// rounds to just above `N`.
pub fn uniform_steps(
    method: OdeMethod,
    steps: i64,
    dtype: DType,
) -> Result<(TimeGrid, OdeOptions), SamplerError> {
    if steps <= 0 {
        return Err(SamplerError::InvalidParameter {
            name: "steps",
            message: format!("must be a positive number of steps, got {steps}"),
        });
    }
    if method.is_adaptive() {
        return Err(SamplerError::InvalidParameter {
            name: "steps",
            message: "dopri5 chooses its own steps; set atol/rtol instead of steps".to_string(),
        });
    }
    let grid = TimeGrid::unit_interval(dtype)?;
    let options = OdeOptions::new(method)
        .with_step_size(1.0 / steps as f64)
        .with_max_steps(usize::try_from(steps).map_or(usize::MAX, |s| s.max(10_000)));
    Ok((grid, options))
}

/// The fixed-step grid (in user time) that [`solve`] steps on for `time_grid` and `steps`.
pub fn fixed_step_grid(
    time_grid: &TimeGrid,
    steps: FixedSteps,
    max_steps: usize,
) -> Result<Vec<f64>, SamplerError> {
    let sign = if time_grid.is_descending() { -1.0 } else { 1.0 };
    let grid = grid::solver_grid(time_grid, steps, max_steps)?;
    Ok(grid.into_iter().map(|s| sign * s).collect())
}

/// Evaluation counts of a solve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SolverStats {
    /// Velocity-field evaluations.
    pub nfe: usize,
    /// Accepted steps (for fixed-step methods: all steps taken).
    pub n_accepted: usize,
    /// Rejected dopri5 steps (0 for fixed-step methods).
    pub n_rejected: usize,
}

/// One attempted step, in the solver's ascending time `s` (`s = -t` for a descending grid).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepAttempt {
    /// Where the step starts.
    pub s: f64,
    /// Its size (positive).
    pub ds: f64,
    /// Whether it was accepted (always for fixed-step methods).
    pub accepted: bool,
}

/// The result of a solve.
#[derive(Debug, Clone)]
pub struct OdeSolution {
    /// The state at the last time-grid point.
    pub final_state: Tensor,
    /// The states at every time-grid point, shaped `(len(time_grid), *x.shape)`, when requested.
    pub intermediates: Option<Tensor>,
    /// Evaluation and step counts.
    pub stats: SolverStats,
    /// Every step attempted, in order.
    pub steps: Vec<StepAttempt>,
}

/// Solves `dx/dt = v(x, t)` from `x_init` at the first time of `time_grid` through its other times.
pub fn solve(
    field: &impl VelocityField,
    x_init: &Tensor,
    time_grid: &TimeGrid,
    options: &OdeOptions,
) -> Result<OdeSolution, SamplerError> {
    validate(x_init, options)?;
    let mut rhs = Rhs::new(field, x_init, time_grid.is_descending());
    match options.method {
        OdeMethod::Euler | OdeMethod::Midpoint | OdeMethod::Rk4 => {
            fixed::integrate(&mut rhs, x_init, time_grid, options)
        }
        OdeMethod::Dopri5 => dopri5::integrate(&mut rhs, x_init, time_grid, options),
    }
}

/// Checks the state and the options that do not depend on the grid.
fn validate(x_init: &Tensor, options: &OdeOptions) -> Result<(), SamplerError> {
    grid::check_float_dtype("x_init", x_init.dtype())?;
    if !all_finite(x_init)? {
        return Err(SamplerError::InvalidParameter {
            name: "x_init",
            message: "contains NaN or infinite values".to_string(),
        });
    }
    if options.max_steps == 0 {
        return Err(SamplerError::InvalidParameter {
            name: "max_steps",
            message: "must be at least 1".to_string(),
        });
    }
    for (name, value) in [("atol", options.atol), ("rtol", options.rtol)] {
        if !(value.is_finite() && value >= 0.0) {
            return Err(SamplerError::InvalidParameter {
                name,
                message: format!("must be finite and >= 0, got {value}"),
            });
        }
    }
    if options.method.is_adaptive() {
        if options.atol == 0.0 && options.rtol == 0.0 {
            return Err(SamplerError::InvalidParameter {
                name: "atol",
                message: "atol and rtol cannot both be 0 (no step would ever be accepted)"
                    .to_string(),
            });
        }
        if let FixedSteps::Size(h) = options.fixed_steps {
            return Err(SamplerError::InvalidParameter {
                name: "step_size",
                message: format!(
                    "dopri5 chooses its own steps, got step_size={h}; use FixedSteps::GridPoints"
                ),
            });
        }
    }
    Ok(())
}

/// Whether every element of `x` is finite (`0 * x` is 0 for finite values and NaN otherwise).
pub(crate) fn all_finite(x: &Tensor) -> Result<bool, SamplerError> {
    let total = x
        .affine(0.0, 0.0)?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    Ok(!total.is_nan())
}

/// The right-hand side in solver time: `v(y, s)`, or `-v(y, -s)` for a descending grid.
/// Counts evaluations and checks that each velocity has the state's shape and dtype.
pub(crate) struct Rhs<'a, F> {
    field: &'a F,
    reversed: bool,
    dtype: DType,
    device: Device,
    shape: Shape,
    nfe: usize,
}

impl<'a, F: VelocityField> Rhs<'a, F> {
    fn new(field: &'a F, x_init: &Tensor, reversed: bool) -> Self {
        Self {
            field,
            reversed,
            dtype: x_init.dtype(),
            device: x_init.device().clone(),
            shape: x_init.shape().clone(),
            nfe: 0,
        }
    }

    /// The user time of solver time `s`.
    pub(crate) fn user_time(&self, s: f64) -> f64 {
        if self.reversed {
            -s
        } else {
            s
        }
    }

    /// Evaluates at solver time `s` (rounded to the state's dtype here) and state `y`.
    pub(crate) fn eval(&mut self, s: f64, y: &Tensor) -> Result<Tensor, SamplerError> {
        let t = self.user_time(grid::round_to(s, self.dtype));
        let t = match self.dtype {
            DType::F32 => Tensor::new(t as f32, &self.device)?,
            _ => Tensor::new(t, &self.device)?,
        };
        self.nfe += 1;
        let v = self.field.velocity(y, &t)?;
        if v.shape() != &self.shape || v.dtype() != self.dtype {
            return Err(SamplerError::InvalidParameter {
                name: "field",
                message: format!(
                    "the velocity must match the state: expected {:?} {:?}, got {:?} {:?}",
                    self.shape,
                    self.dtype,
                    v.shape(),
                    v.dtype()
                ),
            });
        }
        if self.reversed {
            Ok(v.neg()?)
        } else {
            Ok(v)
        }
    }

    /// Velocity evaluations so far.
    pub(crate) fn nfe(&self) -> usize {
        self.nfe
    }

    /// The state's dtype.
    pub(crate) fn dtype(&self) -> DType {
        self.dtype
    }
}

#[cfg(test)]
mod tests;

//! Time grids, the fixed-step grid built from a step size, and float rounding helpers.
//!
//! Every time value is carried as an `f64` that is exactly representable in the dtype it
//! belongs to (the time grid's dtype for fixed-step grids, the state's dtype for stage times).
//! [`round_to`] emulates one arithmetic operation of that dtype: an `f64` operation on `f32`
//! inputs followed by one rounding to `f32` gives the correctly rounded `f32` result.

use candle_core::{DType, Tensor};

use super::FixedSteps;
use crate::sampler::error::SamplerError;

/// Rounds `x` to the nearest value of `dtype` (`f32` or `f64`), as one operation of that dtype would.
pub(crate) fn round_to(x: f64, dtype: DType) -> f64 {
    match dtype {
        DType::F32 => x as f32 as f64,
        _ => x,
    }
}

/// `nextafter(x, x - 1)` in `dtype`: the next representable value below `x`, or `x` itself when
/// `x - 1` rounds back to `x` (as torch's `nextafter(t, t - 1)` gives).
pub(crate) fn next_below(x: f64, dtype: DType) -> f64 {
    if !x.is_finite() {
        return x;
    }
    match dtype {
        DType::F32 => {
            let v = x as f32;
            if v - 1.0 == v {
                return v as f64;
            }
            let below = if v == 0.0 {
                -f32::from_bits(1)
            } else if v > 0.0 {
                f32::from_bits(v.to_bits() - 1)
            } else {
                f32::from_bits(v.to_bits() + 1)
            };
            below as f64
        }
        _ => {
            if x - 1.0 == x {
                return x;
            }
            if x == 0.0 {
                -f64::from_bits(1)
            } else if x > 0.0 {
                f64::from_bits(x.to_bits() - 1)
            } else {
                f64::from_bits(x.to_bits() + 1)
            }
        }
    }
}

/// Checks that `dtype` is one the solvers compute in (`f32` or `f64`).
pub(crate) fn check_float_dtype(name: &'static str, dtype: DType) -> Result<(), SamplerError> {
    match dtype {
        DType::F32 | DType::F64 => Ok(()),
        other => Err(SamplerError::InvalidParameter {
            name,
            message: format!("dtype must be f32 or f64, got {other:?}"),
        }),
    }
}

/// The output times of an ODE solve: at least two finite, strictly monotonic values of one dtype.
///
/// The dtype (`f32` or `f64`) is the one the fixed-step grid arithmetic happens in, as
/// torchdiffeq does it in the dtype of the `t` tensor. A descending grid integrates backward in time.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeGrid {
    times: Vec<f64>,
    dtype: DType,
}

impl TimeGrid {
    /// A grid of `times` rounded to `dtype`; errors unless they are >= 2 finite, strictly monotonic values.
    pub fn new(times: &[f64], dtype: DType) -> Result<Self, SamplerError> {
        check_float_dtype("time_grid", dtype)?;
        let bad = |message: String| SamplerError::InvalidParameter {
            name: "time_grid",
            message,
        };
        if times.len() < 2 {
            return Err(bad(format!(
                "needs at least 2 time points (start and end), got {}",
                times.len()
            )));
        }
        if let Some(t) = times.iter().find(|t| !t.is_finite()) {
            return Err(bad(format!("every time must be finite, got {t}")));
        }
        let times: Vec<f64> = times.iter().map(|&t| round_to(t, dtype)).collect();
        let ascending = times[1] > times[0];
        let monotonic = times
            .windows(2)
            .all(|w| if ascending { w[1] > w[0] } else { w[1] < w[0] });
        if !monotonic {
            return Err(bad(format!(
                "times must be strictly increasing or strictly decreasing (in {dtype:?}), got {times:?}"
            )));
        }
        Ok(Self { times, dtype })
    }

    /// A grid read from a 1-D `f32` or `f64` tensor, keeping its dtype.
    pub fn from_tensor(times: &Tensor) -> Result<Self, SamplerError> {
        if times.rank() != 1 {
            return Err(SamplerError::InvalidParameter {
                name: "time_grid",
                message: format!("must be a 1-D tensor, got shape {:?}", times.dims()),
            });
        }
        check_float_dtype("time_grid", times.dtype())?;
        let values: Vec<f64> = times.to_dtype(DType::F64)?.to_vec1()?;
        Self::new(&values, times.dtype())
    }

    /// The grid `[0, 1]` (noise to data in flow-matching time) in `dtype`.
    pub fn unit_interval(dtype: DType) -> Result<Self, SamplerError> {
        Self::new(&[0.0, 1.0], dtype)
    }

    /// The times, each exactly representable in [`TimeGrid::dtype`].
    pub fn times(&self) -> &[f64] {
        &self.times
    }

    /// The dtype the grid arithmetic happens in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Whether the grid runs backward in time (solved in `s = -t`).
    pub fn is_descending(&self) -> bool {
        self.times[1] < self.times[0]
    }

    /// The first time.
    pub fn start(&self) -> f64 {
        self.times[0]
    }

    /// The last time.
    pub fn end(&self) -> f64 {
        self.times[self.times.len() - 1]
    }

    /// The times in the solver's ascending time `s` (`s = t`, or `s = -t` for a descending grid).
    pub(crate) fn solver_times(&self) -> Vec<f64> {
        let sign = if self.is_descending() { -1.0 } else { 1.0 };
        self.times.iter().map(|t| sign * t).collect()
    }
}

/// The fixed-step grid in solver time `s` (ascending) for `time_grid` and `steps`.
pub(crate) fn solver_grid(
    time_grid: &TimeGrid,
    steps: FixedSteps,
    max_steps: usize,
) -> Result<Vec<f64>, SamplerError> {
    let solver = time_grid.solver_times();
    match steps {
        FixedSteps::GridPoints => {
            if solver.len() - 1 > max_steps {
                return Err(SamplerError::InvalidParameter {
                    name: "time_grid",
                    message: format!(
                        "stepping between its {} points takes more than max_steps={max_steps} steps",
                        solver.len()
                    ),
                });
            }
            Ok(solver)
        }
        FixedSteps::Size(h) => step_size_grid(
            solver[0],
            solver[solver.len() - 1],
            h,
            time_grid.dtype(),
            max_steps,
        ),
    }
}

/// The fixed-step grid in solver time `s` for steps of `step_size` from `s0` to `s1` (`s1 > s0`).
///
/// torchdiffeq's rule in the grid's dtype: `n = ceil((s1 - s0)/h + 1)` with `h` rounded to the
/// dtype first, `g_k = k*h + s0` with separate roundings, then `g_{n-1} := s1`.
/// Errors when the step size is not positive and finite, exceeds the interval, or needs more than
/// `max_steps` steps.
pub(crate) fn step_size_grid(
    s0: f64,
    s1: f64,
    step_size: f64,
    dtype: DType,
    max_steps: usize,
) -> Result<Vec<f64>, SamplerError> {
    let bad = |message: String| SamplerError::InvalidParameter {
        name: "step_size",
        message,
    };
    if !(step_size.is_finite() && step_size > 0.0) {
        return Err(bad(format!("must be positive and finite, got {step_size}")));
    }
    let h = round_to(step_size, dtype);
    if h <= 0.0 {
        return Err(bad(format!("{step_size} rounds to 0 in {dtype:?}")));
    }
    let length = round_to(s1 - s0, dtype);
    if h > length {
        return Err(bad(format!(
            "{step_size} is larger than the time interval of length {length}"
        )));
    }
    let points = round_to(round_to(length / h, dtype) + 1.0, dtype).ceil();
    if points.is_nan() || points - 1.0 > max_steps as f64 {
        return Err(bad(format!(
            "{step_size} needs {} steps over an interval of length {length}, more than max_steps={max_steps}",
            points - 1.0
        )));
    }
    let n = points as usize;
    let mut grid: Vec<f64> = (0..n)
        .map(|k| round_to(round_to(k as f64 * h, dtype) + s0, dtype))
        .collect();
    grid[n - 1] = s1;
    Ok(grid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_below_matches_nextafter() {
        assert_eq!(next_below(1.0, DType::F32), 1.0 - f32::EPSILON as f64 / 2.0);
        assert_eq!(next_below(1.0, DType::F64), 1.0 - f64::EPSILON / 2.0);
        assert_eq!(next_below(0.0, DType::F32), -(f32::from_bits(1) as f64));
        assert_eq!(next_below(-1.0, DType::F64), -1.0 - f64::EPSILON);
        assert_eq!(next_below(1e30, DType::F32), 1e30f32 as f64);
    }

    #[test]
    fn f32_grid_for_h_0_3_has_a_short_last_step() {
        let g = step_size_grid(0.0, 1.0, 0.3, DType::F32, 100).unwrap();
        let want: Vec<f64> = [0.0f32, 0.3, 0.6, 0.90000004, 1.0]
            .iter()
            .map(|&x| x as f64)
            .collect();
        assert_eq!(g, want);
    }

    #[test]
    fn uniform_step_counts_match_torchdiffeq() {
        // h = 1/N: (1/h) can round to just above N, and torchdiffeq then adds a last step of
        // one ulp (N = 61 in f32, N = 49 in f64); the grid stays strictly increasing.
        for dtype in [DType::F32, DType::F64] {
            let ulp = if dtype == DType::F32 { 6e-8 } else { 1.2e-16 };
            for steps in 1..=2000usize {
                let g = step_size_grid(0.0, 1.0, 1.0 / steps as f64, dtype, 10_000).unwrap();
                assert!(g.windows(2).all(|w| w[1] > w[0]), "{steps} in {dtype:?}");
                if g.len() == steps + 2 {
                    assert!(g[steps + 1] - g[steps] < ulp, "{steps} in {dtype:?}");
                } else {
                    assert_eq!(g.len(), steps + 1, "{steps} in {dtype:?}");
                }
            }
        }
        assert_eq!(
            step_size_grid(0.0, 1.0, 1.0 / 61.0, DType::F32, 100)
                .unwrap()
                .len(),
            63
        );
        assert_eq!(
            step_size_grid(0.0, 1.0, 1.0 / 49.0, DType::F64, 100)
                .unwrap()
                .len(),
            51
        );
    }

    #[test]
    fn bad_grids_are_rejected() {
        let is_grid_error = |r: Result<TimeGrid, SamplerError>| {
            matches!(
                r,
                Err(SamplerError::InvalidParameter {
                    name: "time_grid",
                    ..
                })
            )
        };
        assert!(is_grid_error(TimeGrid::new(&[0.0], DType::F32)));
        assert!(is_grid_error(TimeGrid::new(&[], DType::F64)));
        assert!(is_grid_error(TimeGrid::new(&[0.0, 0.5, 0.5], DType::F64)));
        assert!(is_grid_error(TimeGrid::new(&[0.0, 0.5, 0.2], DType::F64)));
        assert!(is_grid_error(TimeGrid::new(&[0.0, f64::NAN], DType::F64)));
        assert!(is_grid_error(TimeGrid::new(
            &[0.0, f64::INFINITY],
            DType::F64
        )));
        assert!(is_grid_error(TimeGrid::new(&[0.0, 1.0], DType::BF16)));
        assert!(is_grid_error(TimeGrid::new(
            &[1.0, 1.0 + 1e-12],
            DType::F32
        )));
        assert!(TimeGrid::new(&[1.0, 0.5, 0.0], DType::F32)
            .unwrap()
            .is_descending());
    }

    #[test]
    fn bad_step_sizes_are_rejected() {
        let is_step_error = |r: Result<Vec<f64>, SamplerError>| {
            matches!(
                r,
                Err(SamplerError::InvalidParameter {
                    name: "step_size",
                    ..
                })
            )
        };
        for h in [0.0, -0.1, f64::NAN, f64::INFINITY, 1.5, 1e-50] {
            assert!(
                is_step_error(step_size_grid(0.0, 1.0, h, DType::F32, 100)),
                "{h}"
            );
        }
        assert!(is_step_error(step_size_grid(
            0.0,
            1.0,
            1e-3,
            DType::F64,
            100
        )));
        assert_eq!(
            step_size_grid(0.0, 1.0, 1.0, DType::F64, 1).unwrap(),
            [0.0, 1.0]
        );
    }
}

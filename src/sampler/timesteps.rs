//! Inference timesteps of the discrete samplers, exactly as diffusers 0.42.1's `set_timesteps`.
//!
//! Conventions (`N` training timesteps, `n` inference steps, results descending, `i64`):
//! * `leading`: `arange(n) * (N // n)` reversed, plus `steps_offset` (the only spacing that uses it);
//! * `trailing`: `round(arange(N, 0, -N/n)) - 1` with numpy's float `arange` (length
//!   `ceil(N / (N/n))`, which can be `n + 1`: `N = 100, n = 29` gives 30 entries ending in `-1`);
//! * `linspace`: `round(linspace(0, N - 1, n))` reversed.
//!
//! Rounding is numpy's round-half-to-even. A trailing `-1` is reproduced here (it is what
//! diffusers returns) but is not a valid timestep: the sampling loops reject it.

use std::fmt;
use std::str::FromStr;

use crate::path::diffusion::MAX_TRAIN_TIMESTEPS;

use super::error::SamplerError;

/// How inference timesteps are spread over the training timesteps (diffusers' `timestep_spacing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestepSpacing {
    /// Multiples of `N // n` from 0, plus `steps_offset` (`"leading"`, the diffusers default).
    Leading,
    /// Evenly spaced down from `N - 1` (`"trailing"`).
    Trailing,
    /// Rounded `linspace(0, N - 1, n)` (`"linspace"`).
    Linspace,
}

impl TimestepSpacing {
    /// The diffusers name of this spacing.
    pub fn name(self) -> &'static str {
        match self {
            TimestepSpacing::Leading => "leading",
            TimestepSpacing::Trailing => "trailing",
            TimestepSpacing::Linspace => "linspace",
        }
    }
}

impl fmt::Display for TimestepSpacing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TimestepSpacing {
    type Err = SamplerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "leading" => Ok(TimestepSpacing::Leading),
            "trailing" => Ok(TimestepSpacing::Trailing),
            "linspace" => Ok(TimestepSpacing::Linspace),
            other => Err(SamplerError::InvalidParameter {
                name: "timestep_spacing",
                message: format!(
                    "unknown spacing {other:?}; expected leading, trailing or linspace"
                ),
            }),
        }
    }
}

/// The descending inference timesteps for `num_inference_steps` out of `num_train_timesteps`.
///
/// Errors when `num_inference_steps` is 0 or exceeds `num_train_timesteps` (diffusers raises
/// too), when `num_train_timesteps` is 0 or too large, and when `steps_offset` pushes a
/// leading timestep to `num_train_timesteps` or beyond.
pub fn set_timesteps(
    num_train_timesteps: usize,
    num_inference_steps: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
) -> Result<Vec<i64>, SamplerError> {
    check_counts(num_train_timesteps, num_inference_steps)?;
    let big_n = num_train_timesteps as i64;
    let n = num_inference_steps as i64;
    let timesteps = match spacing {
        TimestepSpacing::Leading => {
            let ratio = big_n / n;
            let offset = steps_offset as i64;
            let last = (n - 1) * ratio + offset;
            if steps_offset >= num_train_timesteps || last >= big_n {
                return Err(SamplerError::InvalidParameter {
                    name: "steps_offset",
                    message: format!(
                        "steps_offset={steps_offset} makes the first leading timestep {last}, outside 0..{num_train_timesteps}"
                    ),
                });
            }
            (0..n).rev().map(|i| i * ratio + offset).collect()
        }
        TimestepSpacing::Trailing => trailing(num_train_timesteps, num_inference_steps),
        TimestepSpacing::Linspace => linspace(num_train_timesteps, num_inference_steps),
    };
    Ok(timesteps)
}

/// A sampling plan: the inference step count and the timesteps a sampling loop visits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceSteps {
    /// `n`, the requested number of inference steps (DDIM's stride is `N // n`).
    pub num_inference_steps: usize,
    /// The descending timesteps (may hold `n + 1` entries for trailing spacing).
    pub timesteps: Vec<i64>,
}

impl InferenceSteps {
    /// The plan [`set_timesteps`] gives for these arguments.
    pub fn new(
        num_train_timesteps: usize,
        num_inference_steps: usize,
        spacing: TimestepSpacing,
        steps_offset: usize,
    ) -> Result<Self, SamplerError> {
        let timesteps = set_timesteps(
            num_train_timesteps,
            num_inference_steps,
            spacing,
            steps_offset,
        )?;
        Ok(InferenceSteps {
            num_inference_steps,
            timesteps,
        })
    }

    /// Checks the plan against a schedule of `num_train_timesteps`: a valid step count, at
    /// least one timestep, every timestep in `0..N`, strictly descending.
    pub fn validate(&self, num_train_timesteps: usize) -> Result<(), SamplerError> {
        check_counts(num_train_timesteps, self.num_inference_steps)?;
        if self.timesteps.is_empty() {
            return Err(SamplerError::InvalidParameter {
                name: "timesteps",
                message: "the list is empty".to_string(),
            });
        }
        if let Some(t) = self
            .timesteps
            .iter()
            .find(|t| !(0..num_train_timesteps as i64).contains(*t))
        {
            return Err(SamplerError::InvalidParameter {
                name: "timesteps",
                message: format!(
                    "timestep {t} is outside 0..{num_train_timesteps} (a trailing -1 comes from numpy's float arange; drop it or pick another num_inference_steps)"
                ),
            });
        }
        if self.timesteps.windows(2).any(|w| w[1] >= w[0]) {
            return Err(SamplerError::InvalidParameter {
                name: "timesteps",
                message: format!("must be strictly descending, got {:?}", self.timesteps),
            });
        }
        Ok(())
    }
}

/// Errors unless `1 <= num_inference_steps <= num_train_timesteps <= MAX_TRAIN_TIMESTEPS`.
pub(crate) fn check_counts(
    num_train_timesteps: usize,
    num_inference_steps: usize,
) -> Result<(), SamplerError> {
    if num_train_timesteps == 0 || num_train_timesteps > MAX_TRAIN_TIMESTEPS {
        return Err(SamplerError::InvalidParameter {
            name: "num_train_timesteps",
            message: format!("got {num_train_timesteps}; it must be in 1..={MAX_TRAIN_TIMESTEPS}"),
        });
    }
    if num_inference_steps == 0 || num_inference_steps > num_train_timesteps {
        return Err(SamplerError::InvalidParameter {
            name: "num_inference_steps",
            message: format!(
                "got {num_inference_steps}; it must be in 1..={num_train_timesteps} (num_train_timesteps)"
            ),
        });
    }
    Ok(())
}

/// `round(np.arange(N, 0, -N/n)) - 1`, reproducing numpy's float `arange` (`start + i*delta`
/// with `delta = (start + step) - start`, length `ceil((stop - start) / step)`).
fn trailing(num_train_timesteps: usize, num_inference_steps: usize) -> Vec<i64> {
    let start = num_train_timesteps as f64;
    let step = -(start / num_inference_steps as f64);
    let len = ((-start) / step).ceil() as usize;
    let second = start + step;
    let delta = second - start;
    (0..len)
        .map(|i| match i {
            0 => start,
            1 => second,
            _ => start + i as f64 * delta,
        })
        .map(|v| v.round_ties_even() as i64 - 1)
        .collect()
}

/// `round(np.linspace(0, N - 1, n))[::-1]` (numpy sets the last entry to `N - 1` exactly).
fn linspace(num_train_timesteps: usize, num_inference_steps: usize) -> Vec<i64> {
    let stop = (num_train_timesteps - 1) as f64;
    if num_inference_steps == 1 {
        return vec![0];
    }
    let step = stop / (num_inference_steps - 1) as f64;
    (0..num_inference_steps)
        .rev()
        .map(|i| {
            if i == num_inference_steps - 1 {
                stop
            } else {
                i as f64 * step
            }
        })
        .map(|v| v.round_ties_even() as i64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_zero_and_too_many_steps() {
        for spacing in [
            TimestepSpacing::Leading,
            TimestepSpacing::Trailing,
            TimestepSpacing::Linspace,
        ] {
            for n in [0, 1001] {
                let err = set_timesteps(1000, n, spacing, 0).unwrap_err();
                assert!(
                    matches!(
                        err,
                        SamplerError::InvalidParameter {
                            name: "num_inference_steps",
                            ..
                        }
                    ),
                    "{err}"
                );
                assert!(err.to_string().contains("num_inference_steps"), "{err}");
            }
        }
        let err = set_timesteps(0, 1, TimestepSpacing::Leading, 0).unwrap_err();
        assert!(
            matches!(
                err,
                SamplerError::InvalidParameter {
                    name: "num_train_timesteps",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn rejects_offset_past_the_end() {
        let err = set_timesteps(1000, 1000, TimestepSpacing::Leading, 1).unwrap_err();
        assert!(
            matches!(
                err,
                SamplerError::InvalidParameter {
                    name: "steps_offset",
                    ..
                }
            ),
            "{err}"
        );
        assert!(set_timesteps(1000, 1000, TimestepSpacing::Trailing, usize::MAX).is_ok());
    }

    #[test]
    fn known_sequences() {
        assert_eq!(
            set_timesteps(100, 7, TimestepSpacing::Linspace, 0).expect("ok"),
            vec![99, 82, 66, 50, 33, 16, 0]
        );
        let trailing = set_timesteps(100, 29, TimestepSpacing::Trailing, 0).expect("ok");
        assert_eq!(trailing.len(), 30);
        assert_eq!(trailing.last(), Some(&-1));
        assert_eq!(
            set_timesteps(1000, 10, TimestepSpacing::Leading, 1).expect("ok")[0],
            901
        );
        assert_eq!(
            set_timesteps(1, 1, TimestepSpacing::Linspace, 0).expect("ok"),
            vec![0]
        );
        assert_eq!(
            set_timesteps(1, 1, TimestepSpacing::Trailing, 0).expect("ok"),
            vec![0]
        );
    }

    #[test]
    fn plans_with_negative_timesteps_fail_validation() {
        let plan = InferenceSteps::new(100, 29, TimestepSpacing::Trailing, 0).expect("ok");
        let err = plan.validate(100).unwrap_err();
        assert!(
            matches!(
                err,
                SamplerError::InvalidParameter {
                    name: "timesteps",
                    ..
                }
            ),
            "{err}"
        );
        let plan = InferenceSteps::new(100, 10, TimestepSpacing::Trailing, 0).expect("ok");
        assert!(plan.validate(100).is_ok());
        assert!(plan.validate(50).is_err());
        let unsorted = InferenceSteps {
            num_inference_steps: 2,
            timesteps: vec![10, 20],
        };
        assert!(unsorted.validate(100).is_err());
    }

    #[test]
    fn spacing_names_round_trip() {
        for s in [
            TimestepSpacing::Leading,
            TimestepSpacing::Trailing,
            TimestepSpacing::Linspace,
        ] {
            assert_eq!(s.name().parse::<TimestepSpacing>().expect("known"), s);
        }
        assert!("even".parse::<TimestepSpacing>().is_err());
    }
}

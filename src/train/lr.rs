//! Learning-rate schedules with the semantics of HF transformers' `get_constant_schedule_with_warmup`,
//! `get_linear_schedule_with_warmup` and `get_cosine_with_min_lr_schedule_with_warmup`.
//!
//! The learning rate is `peak_lr * factor(step)`, where `step` counts the optimizer steps already
//! taken (0 for the first update, as with a PyTorch `LambdaLR` stepped after each optimizer step),
//! `W` is the warmup length and `T` the total number of optimizer steps:
//!
//! ```text
//! warmup   (step < W):  factor = step / max(1, W)
//! constant (step >= W): factor = 1
//! progress             = min(1, (step - W) / max(1, T - W))
//! linear   (step >= W): factor = m + (1 - m) * (1 - progress)
//! cosine   (step >= W): factor = m + (1 - m) * 0.5 * (1 + cos(pi * progress))
//! ```
//!
//! `m` is `min_lr_ratio` (0 gives HF's schedules exactly). `warmup_ratio = r` means
//! `W = ceil(r * T)`, as HF's `TrainingArguments.get_warmup_steps`. Unlike HF, `progress` is
//! clamped at 1, so steps past `T` keep the final rate instead of rising again.
//!
//! A schedule is a pure function of the step: a resumed run needs only the global step.

use crate::config::schema::{LrSchedulerSettings, Warmup};
use serde::{Deserialize, Serialize};

/// Why a schedule cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LrError {
    /// The run has no optimizer steps to schedule.
    #[error(
        "the learning-rate schedule needs at least one optimizer step, found a total of 0; \
         set trainer.max_steps or max_epochs to 1 or more"
    )]
    NoSteps,
    /// The peak learning rate is negative or not finite.
    #[error("the peak learning rate must be a finite number >= 0, found {0}; set optimizer.lr")]
    InvalidPeak(f64),
    /// The warmup is as long as the whole run or longer.
    #[error(
        "scheduler warmup of {warmup} steps is not shorter than the run's {total} optimizer \
         steps; set scheduler.warmup_steps below {total}, or use scheduler.warmup_ratio=0.05 \
         (with scheduler.warmup_steps=null)"
    )]
    WarmupTooLong {
        /// Warmup length in optimizer steps.
        warmup: u64,
        /// Total optimizer steps of the run.
        total: u64,
    },
}

/// The shape of the decay after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrDecay {
    /// Stay at the peak.
    Constant,
    /// Fall linearly to `min_lr_ratio * peak`.
    Linear,
    /// Fall along a half cosine to `min_lr_ratio * peak`.
    Cosine,
}

/// A resolved schedule: the decay shape, its lengths in optimizer steps and its floor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// The decay shape after warmup.
    pub decay: LrDecay,
    /// The learning rate at the end of warmup.
    pub peak_lr: f64,
    /// Warmup length `W` in optimizer steps.
    pub warmup_steps: u64,
    /// Total optimizer steps `T` of the run.
    pub total_steps: u64,
    /// The final rate as a fraction of the peak (`m`; 1 for constant).
    pub min_lr_ratio: f64,
}

impl LrSchedule {
    /// The schedule `settings` describe, for a run of `total_steps` optimizer steps at `peak_lr`.
    pub fn new(
        settings: &LrSchedulerSettings,
        peak_lr: f64,
        total_steps: u64,
    ) -> Result<Self, LrError> {
        if total_steps == 0 {
            return Err(LrError::NoSteps);
        }
        if !(peak_lr.is_finite() && peak_lr >= 0.0) {
            return Err(LrError::InvalidPeak(peak_lr));
        }
        let warmup_steps = match settings.warmup() {
            Warmup::None => 0,
            Warmup::Steps(n) => n,
            Warmup::Ratio(r) => (r * total_steps as f64).ceil() as u64,
        };
        if warmup_steps > 0 && warmup_steps >= total_steps {
            return Err(LrError::WarmupTooLong {
                warmup: warmup_steps,
                total: total_steps,
            });
        }
        let decay = match settings {
            LrSchedulerSettings::WarmupCosine(_) => LrDecay::Cosine,
            LrSchedulerSettings::Linear(_) => LrDecay::Linear,
            LrSchedulerSettings::Constant(_) => LrDecay::Constant,
        };
        Ok(LrSchedule {
            decay,
            peak_lr,
            warmup_steps,
            total_steps,
            min_lr_ratio: settings.min_lr_ratio(),
        })
    }

    /// The multiplier of the peak rate after `step` optimizer steps (see the module formulas).
    pub fn factor_at(&self, step: u64) -> f64 {
        let w = self.warmup_steps;
        if step < w {
            return step as f64 / w.max(1) as f64;
        }
        let progress =
            ((step - w) as f64 / self.total_steps.saturating_sub(w).max(1) as f64).min(1.0);
        let m = self.min_lr_ratio;
        let shape = match self.decay {
            LrDecay::Constant => return 1.0,
            LrDecay::Linear => 1.0 - progress,
            LrDecay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        };
        (m + (1.0 - m) * shape).max(0.0)
    }

    /// The learning rate of the update that follows `step` optimizer steps.
    pub fn lr_at(&self, step: u64) -> f64 {
        self.peak_lr * self.factor_at(step)
    }
}

/// The optimizer steps a run takes, as Lightning counts them: `max_steps` when set, capped by
/// `max_epochs` epochs of `ceil(batches_per_epoch / accumulate)` steps each; None when neither
/// limit is set.
pub fn total_optimizer_steps(
    max_steps: Option<u64>,
    max_epochs: Option<u64>,
    batches_per_epoch: u64,
    accumulate_grad_batches: u64,
) -> Option<u64> {
    let per_epoch = batches_per_epoch.div_ceil(accumulate_grad_batches.max(1));
    let by_epochs = max_epochs.map(|e| e.saturating_mul(per_epoch));
    match (max_steps, by_epochs) {
        (Some(s), Some(e)) => Some(s.min(e)),
        (s, e) => s.or(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::{ConstantLrSettings, DecayingLrSettings};

    fn decaying(steps: Option<u64>, ratio: Option<f64>, min: f64) -> DecayingLrSettings {
        DecayingLrSettings {
            warmup_steps: steps,
            warmup_ratio: ratio,
            min_lr_ratio: min,
        }
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    // Reference values computed by hand from HF transformers' lambdas (optimization.py):
    // cosine: 0.5 * (1 + cos(pi * 2 * 0.5 * progress)); linear: (T - s) / (T - W).
    #[test]
    fn cosine_matches_hf_with_warmup_steps() {
        let s = LrSchedulerSettings::WarmupCosine(decaying(Some(10), None, 0.0));
        let lr = LrSchedule::new(&s, 1e-3, 110).unwrap();
        close(lr.lr_at(0), 0.0);
        close(lr.lr_at(5), 0.5e-3);
        close(lr.lr_at(10), 1e-3);
        // progress 0.5: cos(pi/2) = 0, factor 0.5
        close(lr.lr_at(60), 0.5e-3);
        // progress 0.25: 0.5 * (1 + sqrt(2)/2) = 0.853553390593...
        close(lr.factor_at(35), 0.853_553_390_593_273_7);
        close(lr.lr_at(110), 0.0);
        close(lr.lr_at(500), 0.0);
    }

    #[test]
    fn cosine_floor_follows_hf_min_lr_rate() {
        let s = LrSchedulerSettings::WarmupCosine(decaying(Some(0), None, 0.1));
        let lr = LrSchedule::new(&s, 2.0, 100).unwrap();
        close(lr.lr_at(0), 2.0);
        // progress 0.5: 0.1 + 0.9 * 0.5 = 0.55
        close(lr.lr_at(50), 1.1);
        close(lr.lr_at(100), 0.2);
        close(lr.lr_at(1000), 0.2);
    }

    #[test]
    fn linear_matches_hf_and_the_floor() {
        let s = LrSchedulerSettings::Linear(decaying(Some(4), None, 0.0));
        let lr = LrSchedule::new(&s, 1.0, 20).unwrap();
        close(lr.lr_at(1), 0.25);
        close(lr.lr_at(4), 1.0);
        // (20 - 12) / (20 - 4) = 0.5
        close(lr.lr_at(12), 0.5);
        close(lr.lr_at(20), 0.0);
        let s = LrSchedulerSettings::Linear(decaying(None, None, 0.2));
        let lr = LrSchedule::new(&s, 1.0, 10).unwrap();
        // 0.2 + 0.8 * (1 - 0.5) = 0.6
        close(lr.lr_at(5), 0.6);
        close(lr.lr_at(10), 0.2);
    }

    #[test]
    fn warmup_ratio_rounds_up_like_hf() {
        let s = LrSchedulerSettings::Linear(decaying(None, Some(0.05), 0.0));
        let lr = LrSchedule::new(&s, 1.0, 30).unwrap();
        // ceil(0.05 * 30) = ceil(1.5) = 2
        assert_eq!(lr.warmup_steps, 2);
        close(lr.lr_at(1), 0.5);
        close(lr.lr_at(2), 1.0);
    }

    #[test]
    fn constant_warms_up_then_holds() {
        let s = LrSchedulerSettings::Constant(ConstantLrSettings {
            warmup_steps: Some(3),
            warmup_ratio: None,
        });
        let lr = LrSchedule::new(&s, 0.3, 10).unwrap();
        close(lr.lr_at(0), 0.0);
        close(lr.lr_at(2), 0.2);
        close(lr.lr_at(3), 0.3);
        close(lr.lr_at(10_000), 0.3);
    }

    #[test]
    fn bad_lengths_are_errors_that_say_what_to_set() {
        let s = LrSchedulerSettings::WarmupCosine(decaying(Some(500), None, 0.0));
        let err = LrSchedule::new(&s, 1e-4, 200).unwrap_err();
        assert_eq!(
            err,
            LrError::WarmupTooLong {
                warmup: 500,
                total: 200
            }
        );
        assert!(err.to_string().contains("scheduler.warmup_steps"), "{err}");
        assert_eq!(LrSchedule::new(&s, 1e-4, 0).unwrap_err(), LrError::NoSteps);
        assert_eq!(
            LrSchedule::new(&s, f64::NAN, 1000).unwrap_err().to_string(),
            LrError::InvalidPeak(f64::NAN).to_string()
        );
    }

    #[test]
    fn total_steps_take_the_nearer_limit() {
        assert_eq!(
            total_optimizer_steps(Some(2000), Some(1000), 15, 1),
            Some(2000)
        );
        assert_eq!(
            total_optimizer_steps(Some(2000), Some(10), 15, 1),
            Some(150)
        );
        // 15 batches with accumulation 4 make ceil(15 / 4) = 4 steps per epoch.
        assert_eq!(total_optimizer_steps(None, Some(10), 15, 4), Some(40));
        assert_eq!(total_optimizer_steps(None, None, 15, 1), None);
    }

    #[test]
    fn the_schedule_round_trips_through_json() {
        let s = LrSchedulerSettings::WarmupCosine(decaying(Some(10), None, 0.05));
        let lr = LrSchedule::new(&s, 1e-4, 1000).unwrap();
        let back: LrSchedule = serde_json::from_str(&serde_json::to_string(&lr).unwrap()).unwrap();
        assert_eq!(back, lr);
        close(back.lr_at(777), lr.lr_at(777));
    }
}

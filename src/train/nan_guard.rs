//! The policy for non-finite losses and gradients (`trainer.nan_policy`): plain data that is fed
//! each step's loss and gradient norm and answers what the loop should do.
//!
//! * `skip`: the step's update is dropped and counted; after
//!   `trainer.max_consecutive_nan_steps` skipped steps in a row the run aborts.
//! * `abort`: the first non-finite step aborts the run (the loop then saves the last good state).

use crate::config::schema::NanPolicy;
use serde::{Deserialize, Serialize};

/// What the loop should do with the current step.
#[derive(Debug, Clone, PartialEq)]
pub enum NanAction {
    /// Everything is finite: apply the update.
    Continue,
    /// Drop this step's update (zero the gradients, leave the weights and optimizer alone).
    SkipStep,
    /// Stop the run at this global step.
    Abort {
        /// The global step whose values were not finite.
        step: u64,
        /// One line for the console and the run summary.
        reason: String,
    },
}

/// Counters of skipped steps, saved in checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NanGuardState {
    /// Steps skipped since the start of the run.
    pub skipped_total: u64,
    /// Steps skipped in a row up to now.
    pub skipped_in_a_row: u64,
}

/// Watches every step's loss and gradient norm for NaN and infinity.
#[derive(Debug, Clone, PartialEq)]
pub struct NanGuard {
    policy: NanPolicy,
    max_in_a_row: u64,
    state: NanGuardState,
}

impl NanGuard {
    /// A guard with `policy` that aborts after `max_in_a_row` skipped steps in a row.
    pub fn new(policy: NanPolicy, max_in_a_row: u64) -> Self {
        NanGuard {
            policy,
            max_in_a_row: max_in_a_row.max(1),
            state: NanGuardState::default(),
        }
    }

    /// The guard continued from a checkpoint's counters.
    pub fn with_state(mut self, state: NanGuardState) -> Self {
        self.state = state;
        self
    }

    /// The counters to save and log (`nan_skipped`).
    pub fn state(&self) -> &NanGuardState {
        &self.state
    }

    /// Checks global step `step`'s loss and (when computed) gradient norm.
    pub fn check(&mut self, step: u64, loss: f64, grad_norm: Option<f64>) -> NanAction {
        let bad = match (loss.is_finite(), grad_norm) {
            (false, _) => Some(format!("the loss is {loss}")),
            (true, Some(g)) if !g.is_finite() => Some(format!("the gradient norm is {g}")),
            _ => None,
        };
        let Some(what) = bad else {
            self.state.skipped_in_a_row = 0;
            return NanAction::Continue;
        };
        match self.policy {
            NanPolicy::Abort => NanAction::Abort {
                step,
                reason: format!(
                    "{what} at step {step} (trainer.nan_policy=abort; \
                     use trainer.nan_policy=skip to drop such steps)"
                ),
            },
            NanPolicy::Skip => {
                self.state.skipped_total += 1;
                self.state.skipped_in_a_row += 1;
                if self.state.skipped_in_a_row < self.max_in_a_row {
                    return NanAction::SkipStep;
                }
                NanAction::Abort {
                    step,
                    reason: format!(
                        "{what} at step {step}, the {} non-finite step in a row \
                         (trainer.max_consecutive_nan_steps={}); lower the learning rate or \
                         set trainer.gradient_clip_val",
                        ordinal(self.state.skipped_in_a_row),
                        self.max_in_a_row
                    ),
                }
            }
        }
    }
}

fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finite_steps_continue_and_reset_the_run_of_skips() {
        let mut g = NanGuard::new(NanPolicy::Skip, 3);
        assert_eq!(g.check(1, 0.5, Some(1.0)), NanAction::Continue);
        assert_eq!(g.check(2, f64::NAN, None), NanAction::SkipStep);
        assert_eq!(g.check(3, 0.4, None), NanAction::Continue);
        assert_eq!(
            g.state(),
            &NanGuardState {
                skipped_total: 1,
                skipped_in_a_row: 0
            }
        );
    }

    #[test]
    fn skip_aborts_after_k_in_a_row() {
        let mut g = NanGuard::new(NanPolicy::Skip, 2);
        assert_eq!(g.check(5, 1.0, Some(f64::INFINITY)), NanAction::SkipStep);
        let NanAction::Abort { step, reason } = g.check(6, f64::NAN, None) else {
            panic!()
        };
        assert_eq!(step, 6);
        assert!(reason.contains("2nd non-finite step in a row"), "{reason}");
        assert_eq!(g.state().skipped_total, 2);
    }

    #[test]
    fn abort_names_the_step_and_the_value() {
        let mut g = NanGuard::new(NanPolicy::Abort, 10);
        assert_eq!(g.check(1, 1.0, None), NanAction::Continue);
        let NanAction::Abort { step, reason } = g.check(9, f64::NEG_INFINITY, None) else {
            panic!()
        };
        assert_eq!(step, 9);
        assert!(reason.starts_with("the loss is -inf at step 9"), "{reason}");
    }

    #[test]
    fn restored_counters_keep_counting() {
        let mut g = NanGuard::new(NanPolicy::Skip, 2).with_state(NanGuardState {
            skipped_total: 4,
            skipped_in_a_row: 1,
        });
        assert!(matches!(
            g.check(10, f64::NAN, None),
            NanAction::Abort { .. }
        ));
        assert_eq!(ordinal(11), "11th");
        assert_eq!(ordinal(23), "23rd");
    }
}

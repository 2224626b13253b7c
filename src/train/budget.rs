//! How many optimizer steps a run takes and when it validates: pure arithmetic over the
//! trainer settings and the number of batches per epoch.

use crate::config::schema::{TrainerSettings, ValCheckInterval};
use crate::train::lr::total_optimizer_steps;

/// The step budget of a run and its validation cadence, in optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepBudget {
    /// Training batches per epoch on this rank.
    pub batches_per_epoch: u64,
    /// Optimizer steps per epoch (a partial accumulation window at the end of an epoch still
    /// steps, as in Lightning).
    pub steps_per_epoch: u64,
    /// Optimizer steps of the whole run.
    pub total_steps: u64,
    /// Validate every this many optimizer steps within epochs (None: only at epoch ends).
    pub val_every_steps: Option<u64>,
}

impl StepBudget {
    /// The budget for `batches_per_epoch` batches, or a message and a hint when the settings
    /// leave nothing to train.
    pub fn new(
        trainer: &TrainerSettings,
        batches_per_epoch: usize,
    ) -> Result<StepBudget, (String, String)> {
        let batches = batches_per_epoch as u64;
        if batches == 0 {
            return Err((
                "the training split holds fewer scenes than one batch".to_string(),
                "lower batch_size, raise data.num_scenes or lower data.val_fraction".to_string(),
            ));
        }
        let accumulate = trainer.accumulate_grad_batches.max(1) as u64;
        let steps_per_epoch = batches.div_ceil(accumulate);
        let Some(total_steps) =
            total_optimizer_steps(trainer.max_steps, trainer.max_epochs, batches, accumulate)
        else {
            return Err((
                "neither trainer.max_steps nor trainer.max_epochs is set, so the run would \
                 never end"
                    .to_string(),
                "set max_epochs=N or trainer.max_steps=N".to_string(),
            ));
        };
        let val_every_steps = match trainer.val_check_interval {
            None => None,
            Some(ValCheckInterval::Batches(n)) => Some(n.div_ceil(accumulate).max(1)),
            Some(ValCheckInterval::Fraction(f)) if f >= 1.0 => None,
            Some(ValCheckInterval::Fraction(f)) => {
                Some(((f * steps_per_epoch as f64).round() as u64).max(1))
            }
        };
        Ok(StepBudget {
            batches_per_epoch: batches,
            steps_per_epoch,
            total_steps,
            val_every_steps,
        })
    }

    /// Whether the run validates at the end of epoch `epoch` (0-based).
    pub fn validates_after_epoch(&self, trainer: &TrainerSettings, epoch: u64) -> bool {
        trainer
            .check_val_every_n_epoch
            .is_some_and(|n| n > 0 && (epoch + 1) % n as u64 == 0)
    }

    /// Whether the run validates after optimizer step `step` (1-based count) within an epoch.
    pub fn validates_after_step(&self, step: u64) -> bool {
        self.val_every_steps.is_some_and(|n| step % n == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::{Accelerator, Devices, NanPolicy, Precision, ScaleLr, Strategy};

    fn trainer(
        max_epochs: Option<u64>,
        max_steps: Option<u64>,
        accumulate: usize,
    ) -> TrainerSettings {
        TrainerSettings {
            accelerator: Accelerator::Cpu,
            devices: Devices::Count(1),
            num_nodes: 1,
            node_rank: 0,
            strategy: Strategy::Auto,
            scale_lr: ScaleLr::None,
            collective_timeout_s: 300.0,
            precision: Precision::Full32,
            max_epochs,
            max_steps,
            gradient_clip_val: None,
            accumulate_grad_batches: accumulate,
            check_val_every_n_epoch: Some(2),
            val_check_interval: None,
            log_every_n_steps: 1,
            nan_policy: NanPolicy::Skip,
            max_consecutive_nan_steps: 3,
            progress_interval_s: 1.0,
            flush_secs: 1.0,
        }
    }

    #[test]
    fn the_smaller_of_the_two_limits_wins() {
        let b = StepBudget::new(&trainer(Some(3), Some(100), 1), 10).unwrap();
        assert_eq!((b.steps_per_epoch, b.total_steps), (10, 30));
        let b = StepBudget::new(&trainer(Some(3), Some(7), 1), 10).unwrap();
        assert_eq!(b.total_steps, 7);
        let b = StepBudget::new(&trainer(None, Some(7), 1), 10).unwrap();
        assert_eq!(b.total_steps, 7);
    }

    #[test]
    fn accumulation_rounds_the_epoch_up() {
        let b = StepBudget::new(&trainer(Some(2), None, 3), 10).unwrap();
        assert_eq!((b.steps_per_epoch, b.total_steps), (4, 8));
    }

    #[test]
    fn nothing_to_train_is_an_error_with_a_hint() {
        let (msg, hint) = StepBudget::new(&trainer(Some(1), None, 1), 0).unwrap_err();
        assert!(msg.contains("fewer scenes than one batch"), "{msg}");
        assert!(hint.contains("batch_size"), "{hint}");
        let (msg, _) = StepBudget::new(&trainer(None, None, 1), 5).unwrap_err();
        assert!(msg.contains("never end"), "{msg}");
    }

    #[test]
    fn validation_cadence_follows_the_settings() {
        let mut t = trainer(Some(4), None, 1);
        let b = StepBudget::new(&t, 10).unwrap();
        assert!(!b.validates_after_epoch(&t, 0));
        assert!(b.validates_after_epoch(&t, 1));
        t.val_check_interval = Some(ValCheckInterval::Fraction(0.5));
        let b = StepBudget::new(&t, 10).unwrap();
        assert_eq!(b.val_every_steps, Some(5));
        assert!(b.validates_after_step(15) && !b.validates_after_step(12));
        t.val_check_interval = Some(ValCheckInterval::Batches(4));
        t.accumulate_grad_batches = 2;
        assert_eq!(StepBudget::new(&t, 10).unwrap().val_every_steps, Some(2));
    }
}

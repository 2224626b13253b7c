//! Validation inside the training loop: rank 0 validates and every rank receives its numbers,
//! so that all ranks run the same checkpoint and early-stopping policies.

use super::{Trainer, GRID_SCENES};
use crate::train::early_stopping::EarlyStopAction;
use crate::train::error::TrainError;
use crate::train::validation::{validate, ValidationPlan};
use std::collections::BTreeMap;

impl Trainer<'_> {
    /// Validates (on rank 0, whose numbers every rank then receives), logs, ranks the
    /// checkpoint, and returns the early-stopping reason if it fired.
    pub(super) fn validate_now(&mut self) -> Result<Option<String>, TrainError> {
        if self.data.val.is_empty() {
            return Ok(None);
        }
        let (step, epoch) = (self.step, self.epoch());
        let mut numbers = Vec::new();
        let mut detail = None;
        if self.world().is_main() {
            let module = self.module.for_evaluation(Some(&self.ema))?;
            let result = validate(
                &module,
                &self.data,
                ValidationPlan {
                    batch_size: self.settings.batch_size,
                    seed: self.settings.seed,
                    grid_scenes: GRID_SCENES,
                },
            )?;
            if let Some(out) = self.out.as_mut() {
                for (i, grid) in result.grids.iter().enumerate() {
                    out.events
                        .add_image(&format!("Validation_Samples_{i}"), grid, step)?;
                }
            }
            detail = Some((result.scenes, result.sample_nfe));
            numbers = [result.val_loss, result.val_mse, result.val_aux_dice]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
        }
        self.world().broadcast_bytes(&mut numbers)?;
        let [val_loss, val_mse, val_aux_dice]: [f64; 3] = std::array::from_fn(|i| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&numbers[8 * i..8 * i + 8]);
            f64::from_le_bytes(word)
        });
        let best = self
            .best_scores
            .get("val_loss")
            .map_or(val_loss, |b| b.min(val_loss));
        self.best_scores.insert("val_loss".to_string(), best);
        self.last_val_loss = Some(val_loss);
        let scalars = [
            ("val_loss", val_loss),
            ("val_loss_best", best),
            ("val_mse", val_mse),
            ("val_aux_dice", val_aux_dice),
        ];
        self.log_scalars(&scalars, step)?;
        if let Some((scenes, nfe)) = detail {
            self.say(&format!(
                "validation at step {step} (epoch {epoch}): val_loss {val_loss:.6}, best \
                 {best:.6}, {scenes} scenes, {nfe} sampler evaluations"
            ))?;
        }
        let metrics: BTreeMap<String, f64> =
            scalars.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let finished_epoch = if self.loader.state().batch == 0 {
            epoch.saturating_sub(1)
        } else {
            epoch
        };
        match self.policy.on_validation(finished_epoch, step, &metrics) {
            Ok(actions) => self.apply(actions)?,
            Err(missing) => self.warn_missing_monitor(&missing.monitor, &missing.logged)?,
        }
        let Some(early) = self.early.as_mut() else {
            return Ok(None);
        };
        let Some(&value) = metrics.get(early.monitor()) else {
            let monitor = early.monitor().to_string();
            self.warn_missing_monitor(&monitor, "val_loss, val_loss_best, val_mse, val_aux_dice")?;
            return Ok(None);
        };
        Ok(match early.update(value, step) {
            EarlyStopAction::Continue => None,
            EarlyStopAction::Stop { reason } => Some(reason),
        })
    }

    fn warn_missing_monitor(&mut self, monitor: &str, logged: &str) -> Result<(), TrainError> {
        if !self.warned_missing_monitor {
            self.warned_missing_monitor = true;
            self.say(&format!(
                "warning: the monitored metric '{monitor}' is not logged at validation \
                 (logged: {logged}); set checkpoint.monitor / early_stopping.monitor to one of them"
            ))?;
        }
        Ok(())
    }
}

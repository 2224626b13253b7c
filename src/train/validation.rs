//! One validation pass: the loss over the whole validation split with a fixed noise stream (so
//! successive values compare the weights, not the draws), and sample grids of a few scenes.

use crate::data::DataModule;
use crate::model::generative::GenerativeModule;
use crate::rng::Rng;
use crate::telemetry::{validation_grid_from_tensors, Image};
use crate::train::error::TrainError;

/// What a validation pass measured.
#[derive(Debug, Clone)]
pub struct ValidationResult {
    /// Mean total loss (`mse + aux_weight * aux_dice`), weighted by batch size.
    pub val_loss: f64,
    /// Mean regression loss.
    pub val_mse: f64,
    /// Mean auxiliary Dice loss.
    pub val_aux_dice: f64,
    /// Scenes evaluated.
    pub scenes: usize,
    /// Network evaluations the sample grids took.
    pub sample_nfe: usize,
    /// One image per shown scene: context, generated mask, ground truth.
    pub grids: Vec<Image>,
}

/// Settings of a validation pass.
#[derive(Debug, Clone, Copy)]
pub struct ValidationPlan {
    /// Scenes per validation batch.
    pub batch_size: usize,
    /// Seed of the loss noise and of the sampler.
    pub seed: u64,
    /// Scenes shown as sample grids.
    pub grid_scenes: usize,
}

/// Runs one validation pass of `module` over `data`'s validation split.
pub fn validate(
    module: &GenerativeModule,
    data: &DataModule,
    plan: ValidationPlan,
) -> Result<ValidationResult, TrainError> {
    let mut loader = data.val_loader(plan.batch_size)?;
    let mut rng = Rng::new(plan.seed).fork(b"validation-loss");
    let (mut total, mut mse, mut dice, mut scenes) = (0.0, 0.0, 0.0, 0usize);
    let mut shown = None;
    for _ in 0..loader.batches_per_epoch() {
        let batch = loader.next_batch()?;
        let n = batch.context.dim(0)?;
        let terms = module.loss(&batch.context, &batch.target, &mut rng)?;
        total += terms.train_loss * n as f64;
        mse += terms.mse * n as f64;
        dice += terms.aux_dice * n as f64;
        scenes += n;
        if shown.is_none() {
            shown = Some(batch);
        }
    }
    let mut grids = Vec::new();
    let mut sample_nfe = 0;
    if let Some(batch) = shown.filter(|_| plan.grid_scenes > 0) {
        let k = plan.grid_scenes.min(batch.context.dim(0)?);
        let context = batch.context.narrow(0, 0, k)?;
        let target = batch.target.narrow(0, 0, k)?;
        let out = module.sample(&context, module.default_plan(), plan.seed)?;
        sample_nfe = out.stats.nfe;
        for i in 0..k {
            grids.push(validation_grid_from_tensors(
                &context.narrow(0, i, 1)?,
                &out.masks.narrow(0, i, 1)?,
                &target.narrow(0, i, 1)?,
            )?);
        }
    }
    let denom = scenes.max(1) as f64;
    Ok(ValidationResult {
        val_loss: total / denom,
        val_mse: mse / denom,
        val_aux_dice: dice / denom,
        scenes,
        sample_nfe,
        grids,
    })
}

//! The trainer's checkpoints: its snapshot, the restore of a saved run (rank 0 reads, every rank
//! receives) and the policy's save and delete actions (rank 0 writes, between barriers).

use super::{io_err, Trainer};
use crate::data::SamplerState;
use crate::dist::DistError;
use crate::model::weights::WeightsError;
use crate::rng::Rng;
use crate::train::checkpoint::{
    check_resume_yaml, load_checkpoint_bytes, write_checkpoint, Checkpoint, CheckpointAction,
    CheckpointMeta,
};
use crate::train::error::TrainError;
use std::path::Path;

impl Trainer<'_> {
    pub(super) fn snapshot(&self) -> Result<Checkpoint, TrainError> {
        let position = self.loader.state();
        let mut meta = CheckpointMeta::new(self.step, position.epoch, self.config_yaml.clone());
        meta.batches_seen_in_epoch = position.batch as u64;
        meta.rng.insert("noise".to_string(), self.noise.state());
        meta.data_sampler = serde_json::to_value(position).unwrap_or(serde_json::Value::Null);
        meta.lr_schedule = Some(self.schedule);
        meta.checkpoint_policy = self.policy.state().clone();
        meta.early_stopping = self.early.as_ref().map(|e| e.state().clone());
        meta.nan_guard = self.nan_guard.state().clone();
        meta.best_scores = self.best_scores.clone();
        meta.world_size = self.world().size() as u64;
        Ok(Checkpoint {
            model: self.module.state_dict().into_iter().collect(),
            ema: self.ema.state_tensors()?,
            optim: self.optimizer.state_tensors()?,
            meta,
        })
    }

    /// Restores the checkpoint at `path`: rank 0 reads the file and hands its bytes to the
    /// other ranks, so only rank 0 needs to see the run directory.
    pub(super) fn restore(&mut self, path: &Path) -> Result<(), TrainError> {
        let mut bytes = Vec::new();
        if self.world().is_main() {
            bytes = std::fs::read(path).map_err(|source| TrainError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        }
        self.world().broadcast_bytes(&mut bytes)?;
        let ckpt = load_checkpoint_bytes(path, &bytes, self.module.device())?;
        drop(bytes);
        let (saved, now) = (ckpt.meta.world_size.max(1), self.world().size() as u64);
        if saved != now {
            return Err(DistError::Setup {
                message: format!(
                    "{} was written by a run of {saved} rank(s) and this run has {now}; the data \
                     order and the per-rank batches depend on the world size",
                    path.display()
                ),
                hint: format!(
                    "resume with the same world size (trainer.devices={saved} for one node), or \
                     start a new run from its weights"
                ),
            }
            .into());
        }
        let changes = check_resume_yaml(&ckpt.meta.config_yaml, self.req.config)?;
        self.module.load_tensors(&ckpt.model).map_err(|e| match e {
            WeightsError::Mismatch { report, .. } => WeightsError::Mismatch {
                path: path.to_path_buf(),
                report,
            },
            other => other,
        })?;
        self.ema.load_state(&ckpt.ema)?;
        self.optimizer.load_state(&ckpt.optim)?;
        let meta = ckpt.meta;
        self.step = meta.step;
        if let Some(state) = meta.rng.get("noise") {
            self.noise = Rng::from_state(*state);
        }
        let position: SamplerState =
            serde_json::from_value(meta.data_sampler).map_err(|e| TrainError::Budget {
                message: format!("{}: unreadable data-sampler state: {e}", path.display()),
                hint: "resume from another checkpoint of the run".to_string(),
            })?;
        self.loader.restore(position)?;
        self.policy = self.policy.clone().with_state(meta.checkpoint_policy);
        if let (Some(early), Some(state)) = (self.early.as_mut(), meta.early_stopping) {
            *early = early.clone().with_state(state);
        }
        self.nan_guard = self.nan_guard.clone().with_state(meta.nan_guard);
        self.best_scores = meta.best_scores;
        self.say(&format!(
            "resumed from {} at step {} (epoch {}, batch {})",
            path.display(),
            self.step,
            position.epoch,
            position.batch
        ))?;
        for change in changes {
            self.say(&format!("changed on resume: {change}"))?;
        }
        Ok(())
    }

    /// Carries out the policy's actions. Every rank runs the same policy on the same numbers, so
    /// all ranks agree on when a file is written: they meet at a barrier before and after it, and
    /// rank 0 alone touches the disk.
    pub(super) fn apply(&mut self, actions: Vec<CheckpointAction>) -> Result<(), TrainError> {
        let saves = actions
            .iter()
            .any(|a| matches!(a, CheckpointAction::Save { .. }));
        if saves {
            self.world().barrier()?;
        }
        if self.world().is_main() {
            self.write_actions(actions)?;
        }
        if saves {
            self.world().barrier()?;
        }
        Ok(())
    }

    fn write_actions(&mut self, actions: Vec<CheckpointAction>) -> Result<(), TrainError> {
        let mut snapshot: Option<Checkpoint> = None;
        for action in actions {
            match action {
                CheckpointAction::Save { file, reason } => {
                    let ckpt = match snapshot.as_mut() {
                        Some(ckpt) => ckpt,
                        None => snapshot.insert(self.snapshot()?),
                    };
                    ckpt.meta.saved_as = reason;
                    write_checkpoint(&self.checkpoint_dir.join(&file), ckpt)?;
                }
                CheckpointAction::Delete { file } => {
                    let path = self.checkpoint_dir.join(&file);
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_err(&path)(e)),
                    }
                }
            }
        }
        Ok(())
    }
}

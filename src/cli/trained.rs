//! What `sample` and `evaluate` share: loading a trained run (its resolved config and a
//! checkpoint) as a frozen model, picking scenes, and drawing `k` samples per scene.

use crate::config::node::Node;
use crate::config::schema::{load_train_settings, DataSource, TrainSettings, TrainedSource};
use crate::config::yaml::load_str;
use crate::data::dataset::{DataModule, SceneSet};
use crate::data::error::DataError;
use crate::data::scene::{Scene, CHANNELS};
use crate::data::synthetic::{generate_layout, SceneLayout, SyntheticParams};
use crate::model::ema::{EMA_PREFIX, EMA_UPDATES_KEY};
use crate::model::generative::{GenerativeConfig, GenerativeError, GenerativeModule};
use crate::path::settings::ProbPath;
use crate::rng::Rng;
use crate::sampler::ode::SolverStats;
use crate::sampler::plan::SamplerPlan;
use crate::telemetry::TelemetryError;
use crate::train::checkpoint::{list_checkpoints, load_checkpoint, read_meta, CheckpointError};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The samplers valid on a flow-matching path.
pub const FLOW_SAMPLERS: &[&str] = &["euler", "midpoint", "rk4", "dopri5"];

/// Why a trained run could not be loaded or sampled.
#[derive(Debug, thiserror::Error)]
pub enum TrainedError {
    /// The run directory holds no checkpoint.
    #[error(
        "run directory {} holds no checkpoint (no .ckpt file in {}); train it first \
         (train hydra.run.dir={}) or pass ckpt_path=<file.ckpt>",
        dir.display(), dir.join("checkpoints").display(), dir.display()
    )]
    NoCheckpoint {
        /// The run directory.
        dir: PathBuf,
    },
    /// The run's resolved config cannot be read.
    #[error(
        "cannot read the run's config {}: {detail}; run_dir must be a directory written by \
         train (it holds .hydra/config.yaml), or pass ckpt_path=<file.ckpt> alone",
        path.display()
    )]
    RunConfig {
        /// The config file (or checkpoint whose stored config is bad).
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The checkpoint's weights do not fit the network the config describes.
    #[error(
        "checkpoint {} does not match the config {}: {detail}; use a checkpoint of this run \
         (its checkpoints/ directory) or drop run_dir to rebuild the model from the \
         checkpoint's own config",
        ckpt.display(), config.display()
    )]
    Mismatch {
        /// The checkpoint.
        ckpt: PathBuf,
        /// Where the config came from.
        config: PathBuf,
        /// The names and shapes that differ.
        detail: String,
    },
    /// A sampler does not fit the run's probability path.
    #[error(
        "sampler '{sampler}' is not valid for this run: {reason}; valid samplers for it: {valid}"
    )]
    SamplerForPath {
        /// The sampler asked for.
        sampler: String,
        /// Why not.
        reason: String,
        /// The samplers that are valid.
        valid: String,
    },
    /// No scene to sample for.
    #[error("no scenes in {what}; pass data_dir=<folder of .npz scenes> or a run with a validation split")]
    NoScenes {
        /// Where scenes were looked for.
        what: String,
    },
    /// A checkpoint could not be found or read.
    #[error(transparent)]
    Checkpoint(Box<CheckpointError>),
    /// The model could not be built or sampled.
    #[error(transparent)]
    Model(Box<GenerativeError>),
    /// The scenes could not be read.
    #[error(transparent)]
    Data(Box<DataError>),
    /// An image could not be drawn or encoded.
    #[error(transparent)]
    Image(Box<TelemetryError>),
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Tensor(Box<candle_core::Error>),
    /// An output file could not be written.
    #[error("cannot write {}: {source}; check that the run directory is writable", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

macro_rules! boxed_from {
    ($($variant:ident: $source:ty),*) => {
        $(impl From<$source> for TrainedError {
            fn from(e: $source) -> Self {
                TrainedError::$variant(Box::new(e))
            }
        })*
    };
}

boxed_from!(
    Checkpoint: CheckpointError,
    Model: GenerativeError,
    Data: DataError,
    Image: TelemetryError,
    Tensor: candle_core::Error
);

/// A trained model ready to sample, with the config it was trained under.
pub struct TrainedRun {
    /// The run's training settings (model, data, checkpoint policy).
    pub settings: TrainSettings,
    /// The checkpoint the weights came from.
    pub ckpt: PathBuf,
    /// Whether the EMA weights are used.
    pub ema: bool,
    /// The frozen model.
    pub module: GenerativeModule,
}

fn parse_config(text: &str, path: &Path) -> Result<TrainSettings, TrainedError> {
    let bad = |detail: String| TrainedError::RunConfig {
        path: path.to_path_buf(),
        detail,
    };
    let node: Node = load_str(text, &Arc::from(path.display().to_string()))
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| bad("the file is empty".to_string()))?;
    load_train_settings(&node).map_err(|e| bad(e.to_string()))
}

/// The number after `{monitor}` in a top-k checkpoint name such as `epoch003-val_loss0.1234.ckpt`.
fn score_in_name(path: &Path, monitor: &str) -> Option<f64> {
    let stem = path.file_stem()?.to_str()?;
    let (_, rest) = stem.rsplit_once(monitor)?;
    rest.parse().ok()
}

/// The run's best top-k checkpoint by its monitored value, else `last.ckpt`, else any.
pub fn default_checkpoint(
    run_dir: &Path,
    settings: &TrainSettings,
) -> Result<PathBuf, TrainedError> {
    let files = list_checkpoints(&run_dir.join("checkpoints"));
    let monitor = &settings.checkpoint.monitor;
    let maximise = matches!(
        settings.checkpoint.mode,
        crate::config::schema::MonitorMode::Max
    );
    let best = files
        .iter()
        .filter_map(|f| score_in_name(f, monitor).map(|s| (s, f)))
        .filter(|(s, _)| s.is_finite())
        .min_by(|a, b| {
            let order = a.0.total_cmp(&b.0);
            if maximise {
                order.reverse()
            } else {
                order
            }
        })
        .map(|(_, f)| f.clone());
    let last = files
        .iter()
        .find(|f| f.file_name().is_some_and(|n| n == "last.ckpt"))
        .cloned();
    best.or(last)
        .or_else(|| files.last().cloned())
        .ok_or_else(|| TrainedError::NoCheckpoint {
            dir: run_dir.to_path_buf(),
        })
}

/// Loads the run `source` names: the config from `run_dir/.hydra/config.yaml` (or the
/// checkpoint's stored config without a run directory) and the checkpoint's weights.
pub fn load_trained(source: &TrainedSource) -> Result<TrainedRun, TrainedError> {
    let device = Device::Cpu;
    let (settings, config_path, ckpt) = match (&source.run_dir, &source.ckpt_path) {
        (Some(dir), ckpt_path) => {
            let dir = PathBuf::from(dir);
            let config_path = dir.join(".hydra").join("config.yaml");
            let text =
                std::fs::read_to_string(&config_path).map_err(|e| TrainedError::RunConfig {
                    path: config_path.clone(),
                    detail: e.to_string(),
                })?;
            let settings = parse_config(&text, &config_path)?;
            let ckpt = match ckpt_path {
                Some(p) => crate::train::checkpoint::resolve_ckpt_path(p, Some(&dir))?,
                None => default_checkpoint(&dir, &settings)?,
            };
            (settings, config_path, ckpt)
        }
        (None, Some(p)) => {
            let ckpt = crate::train::checkpoint::resolve_ckpt_path(p, None)?;
            let meta = read_meta(&ckpt)?;
            (parse_config(&meta.config_yaml, &ckpt)?, ckpt.clone(), ckpt)
        }
        (None, None) => {
            return Err(TrainedError::RunConfig {
                path: PathBuf::from("run_dir"),
                detail: "neither run_dir nor ckpt_path is set".to_string(),
            })
        }
    };
    let checkpoint = load_checkpoint(&ckpt, &device)?;
    let ema: HashMap<String, Tensor> = checkpoint
        .ema
        .iter()
        .filter(|(k, _)| k.as_str() != EMA_UPDATES_KEY)
        .filter_map(|(k, t)| {
            k.strip_prefix(EMA_PREFIX)
                .map(|n| (n.to_string(), t.clone()))
        })
        .collect();
    let use_ema = source.use_ema && !ema.is_empty();
    let tensors = if use_ema { ema } else { checkpoint.model };
    let config = GenerativeConfig::from_settings(&settings.model)?;
    let template = GenerativeModule::from_config(config.clone(), &device, &mut Rng::new(0))?;
    let report = template.check_weights(&tensors);
    let mismatch = |detail: String| TrainedError::Mismatch {
        ckpt: ckpt.clone(),
        config: config_path.clone(),
        detail,
    };
    if !report.is_clean() {
        return Err(mismatch(report.to_string()));
    }
    let weights = tensors
        .into_iter()
        .filter(|(n, _)| n != crate::model::dit::POS_EMBED_NAME)
        .collect();
    let module =
        GenerativeModule::frozen(config, weights, &device).map_err(|e| mismatch(e.to_string()))?;
    Ok(TrainedRun {
        settings,
        ckpt,
        ema: use_ema,
        module,
    })
}

impl TrainedRun {
    /// Whether the run was trained on a flow-matching (affine) path.
    pub fn is_flow_matching(&self) -> bool {
        matches!(self.module.config().path, ProbPath::Affine(_))
    }

    /// The sampler names valid for this run's path.
    pub fn valid_samplers(&self) -> Vec<&'static str> {
        if self.is_flow_matching() {
            FLOW_SAMPLERS.to_vec()
        } else {
            crate::config::schema::commands::SAMPLER_NAMES.to_vec()
        }
    }

    /// The plan of `sampler`, or an error listing the samplers valid for this run's path.
    pub fn plan(
        &self,
        sampler: &crate::config::schema::SamplerSettings,
    ) -> Result<SamplerPlan, TrainedError> {
        let name = sampler.name();
        if !self.valid_samplers().contains(&name) {
            return Err(TrainedError::SamplerForPath {
                sampler: name.to_string(),
                reason: "DDIM and DDPM need a diffusion path, but the run was trained on a \
                         flow-matching path"
                    .to_string(),
                valid: self.valid_samplers().join(", "),
            });
        }
        Ok(self.module.plan_for(sampler)?)
    }

    /// The first `count` scenes of `data_dir` (a folder of `.npz` files) or of the run's
    /// validation split.
    pub fn scenes(&self, data_dir: Option<&str>, count: usize) -> Result<Vec<Scene>, TrainedError> {
        let size = self.settings.image_size;
        let (set, what) = match data_dir {
            Some(dir) => {
                let entries = std::fs::read_dir(dir).map_err(|e| DataError::Io {
                    path: PathBuf::from(dir),
                    action: "list",
                    source: e,
                })?;
                let mut paths: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "npz"))
                    .collect();
                paths.sort();
                (
                    Arc::new(SceneSet::from_files(paths, size, false)),
                    format!("data_dir={dir}"),
                )
            }
            None => {
                let data = DataModule::from_settings(&self.settings.data, 0, 1)?;
                (data.val, "the run's validation split".to_string())
            }
        };
        let n = count.min(set.len());
        if n == 0 {
            return Err(TrainedError::NoScenes { what });
        }
        (0..n)
            .map(|i| set.scene(i).map_err(TrainedError::from))
            .collect()
    }

    /// The synthetic layout behind `scene` when the run's data is synthetic and the scene id is
    /// `scene_NNNNNN`; `None` otherwise (no validity check possible).
    pub fn layout(&self, scene: &Scene) -> Option<SceneLayout> {
        if !matches!(self.settings.data.source, DataSource::SyntheticNamo { .. }) {
            return None;
        }
        let index: usize = scene.id.strip_prefix("scene_")?.parse().ok()?;
        generate_layout(&SyntheticParams::default(), self.settings.data.seed, index).ok()
    }
}

/// `k` samples for each of `scenes`, drawn in one batch from noise seeded by `seed`.
pub struct Samples {
    /// The contexts `(n, 5, H, W)`.
    pub context: Tensor,
    /// The ground-truth goals `(n, 1, H, W)`.
    pub target: Tensor,
    /// The samples `(n * k, 1, H, W)`, scene-major (sample `j` of scene `i` at `i * k + j`).
    pub masks: Tensor,
    /// What the sampler did.
    pub stats: SolverStats,
}

/// Draws `k` samples per scene with `plan` from noise seeded by `seed`.
pub fn draw_samples(
    module: &GenerativeModule,
    scenes: &[Scene],
    plan: &SamplerPlan,
    k: usize,
    seed: u64,
) -> Result<Samples, TrainedError> {
    let n = scenes.len();
    let size = scenes.first().map_or(0, |s| s.size);
    let plane = size * size;
    let mut context = Vec::with_capacity(n * (CHANNELS - 1) * plane);
    let mut target = Vec::with_capacity(n * plane);
    for scene in scenes {
        context.extend_from_slice(&scene.pixels[..(CHANNELS - 1) * plane]);
        target.extend_from_slice(&scene.pixels[(CHANNELS - 1) * plane..]);
    }
    let device = Device::Cpu;
    let context = Tensor::from_vec(context, (n, CHANNELS - 1, size, size), &device)?;
    let target = Tensor::from_vec(target, (n, 1, size, size), &device)?;
    let repeat: Vec<u32> = (0..n as u32)
        .flat_map(|i| std::iter::repeat_n(i, k))
        .collect();
    let index = Tensor::new(repeat.as_slice(), &device)?;
    let repeated = context.index_select(&index, 0)?;
    let out = module.sample(&repeated, plan, seed)?;
    Ok(Samples {
        context,
        target,
        masks: out.masks,
        stats: out.stats,
    })
}

/// Intersection over union of two masks thresholded at 0 (1 when both are empty).
pub fn iou(a: &[f32], b: &[f32]) -> f64 {
    let (mut inter, mut union) = (0usize, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x > 0.0, y > 0.0);
        inter += usize::from(x && y);
        union += usize::from(x || y);
    }
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_thresholds_at_zero() {
        assert_eq!(iou(&[1.0, 1.0, -1.0], &[1.0, -1.0, -1.0]), 0.5);
        assert_eq!(iou(&[-1.0, -1.0], &[-1.0, -1.0]), 1.0);
        assert_eq!(iou(&[1.0, -1.0], &[-1.0, 1.0]), 0.0);
    }

    #[test]
    fn best_checkpoint_is_read_from_the_name() {
        let p = Path::new("epoch003-val_loss0.1234.ckpt");
        assert_eq!(score_in_name(p, "val_loss"), Some(0.1234));
        assert_eq!(score_in_name(Path::new("last.ckpt"), "val_loss"), None);
    }
}

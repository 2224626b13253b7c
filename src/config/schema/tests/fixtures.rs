//! Resolved jobs shaped as composing the shipped `conf/` tree gives them, and helpers that
//! apply command-line-style edits to them.

use super::super::{load_train_settings, SchemaError};
use crate::config::node::{Node, Origin, Value};
use std::sync::Arc;

/// The model part of `train_fb_flow_matching` (model + path=condot + sampler=midpoint).
pub(super) const FM_MODEL: &str = "\
model:
  _target_: flowrun.model.GenerativeModule
  net:
    _target_: flowrun.model.DiT
    input_size: 64
    patch_size: 2
    in_channels: 8
    out_channels: 1
    hidden_size: 384
    depth: 12
    num_heads: 6
    mlp_ratio: 4.0
  time_scale: 1000.0
  time_sampling: logit_normal
  logit_normal_mean: 0.0
  logit_normal_std: 1.0
  aux_loss_weight: 0.1
  ema_decay: 0.9999
  path:
    _target_: flowrun.path.AffineProbPath
    scheduler: condot
  sampler:
    _target_: flowrun.sampler.OdeSampler
    method: midpoint
    steps: 20
";

/// The model part of `train_hf_diffusion` (model + path=ddpm + sampler=ddim).
pub(super) const DIFFUSION_MODEL: &str = "\
model:
  _target_: flowrun.model.GenerativeModule
  net:
    _target_: flowrun.model.DiT
    input_size: 64
    patch_size: 2
    in_channels: 8
    out_channels: 1
    hidden_size: 384
    depth: 12
    num_heads: 6
    mlp_ratio: 4.0
  time_scale: 1.0
  time_sampling: uniform
  logit_normal_mean: 0.0
  logit_normal_std: 1.0
  aux_loss_weight: 0.1
  ema_decay: 0.9999
  path:
    _target_: flowrun.path.DiffusionPath
    num_train_timesteps: 1000
    beta_schedule: squaredcos_cap_v2
    beta_start: 0.0001
    beta_end: 0.02
    prediction_type: epsilon
  sampler:
    _target_: flowrun.sampler.DiffusionSampler
    sampler_type: ddim
    steps: 50
    eta: 0.0
    timestep_spacing: leading
    steps_offset: 1
    set_alpha_to_one: false
    clip_sample: true
    clip_sample_range: 1.0
";

/// Everything else: trainer=single_gpu, data=synthetic_namo and the primary file's own keys.
pub(super) const REST: &str = "\
trainer:
  _target_: flowrun.train.Trainer
  accelerator: auto
  devices: 1
  num_nodes: 1
  strategy: auto
  precision: \"32\"
  max_epochs: 1000
  max_steps: null
  gradient_clip_val: 1.0
  accumulate_grad_batches: 1
  check_val_every_n_epoch: 1
  val_check_interval: null
  log_every_n_steps: 50
data:
  _target_: flowrun.data.SyntheticNamo
  num_scenes: 512
  cache_dir: .cache/flowrun/synthetic_namo
  image_size: 64
  val_fraction: 0.1
  val_dir: null
  num_workers: 2
  cache: true
  augment: false
  subset: null
  seed: 42
  on_bad_file: error
seed: 42
batch_size: 64
max_epochs: 1000
base_lr: 1e-4
image_size: 64
sampling_steps: 20
optimizer:
  _target_: flowrun.optim.AdamW
  lr: 1e-4
  betas: [0.9, 0.999]
  eps: 1e-8
  weight_decay: 0.0
scheduler:
  _target_: flowrun.lr.WarmupCosine
  warmup_steps: 500
  warmup_ratio: null
  min_lr_ratio: 0.0
checkpoint:
  save_last: true
  save_top_k: 1
  monitor: val_loss
  mode: min
  every_n_epochs: 1
  every_n_steps: null
";

/// The file the flow-matching job is read as.
pub(super) const FM_FILE: &str = "conf/train_fb_flow_matching.yaml";

/// The text of the resolved `train_fb_flow_matching` job.
pub(super) fn fm_text() -> String {
    format!("{FM_MODEL}{REST}")
}

/// Reads a YAML text as the file `file`.
pub(super) fn load(text: &str, file: &str) -> Node {
    crate::config::yaml::load_str(text, &Arc::from(file))
        .expect("valid YAML")
        .expect("a document")
}

/// The resolved `train_fb_flow_matching` job.
pub(super) fn fm() -> Node {
    load(&fm_text(), FM_FILE)
}

/// The resolved `train_hf_diffusion` job.
pub(super) fn diffusion() -> Node {
    let text =
        format!("{DIFFUSION_MODEL}{REST}").replace("sampling_steps: 20", "sampling_steps: 50");
    load(&text, "conf/train_hf_diffusion.yaml")
}

/// Applies a command-line override `key=...` (or `+key=...`) with an already parsed value.
pub(super) fn set(job: &mut Node, text: &str, value: Value) {
    let key = text.split('=').next().unwrap_or_default();
    let node = Node::new(value, Origin::Override(Arc::from(text)));
    put(job, key.trim_start_matches('+'), node);
}

/// Puts `node` at the dotted `key`, replacing what was there.
pub(super) fn put(job: &mut Node, key: &str, node: Node) {
    let (parent, last) = key.rsplit_once('.').unwrap_or(("", key));
    let Some(Node {
        value: Value::Map(map),
        ..
    }) = job.select_mut(parent)
    else {
        panic!("no dict at {parent}");
    };
    map.insert(last.to_string(), node);
}

/// Deletes the dotted `key`, as `~key` does.
pub(super) fn remove(job: &mut Node, key: &str) {
    let (parent, last) = key.rsplit_once('.').unwrap_or(("", key));
    if let Some(Node {
        value: Value::Map(map),
        ..
    }) = job.select_mut(parent)
    {
        map.shift_remove(last);
    }
}

/// A string value.
pub(super) fn s(text: &str) -> Value {
    Value::Str(text.to_string())
}

/// The error `load_train_settings` must return for `job`.
pub(super) fn error_of(job: &Node) -> SchemaError {
    match load_train_settings(job) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

/// 1-based line of the first line of `text` that contains `needle`.
pub(super) fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap_or(0) + 1
}

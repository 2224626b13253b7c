//! `model`: the generative module, its DiT backbone, and the path/sampler pairing
//! (config groups `model/`, `path/` at `model.path` and `sampler/` at `model.sampler`).

use super::check::{at_least_one, ensure, fraction, non_negative, positive};
use super::de::NodeDe;
use super::path::{PathSettings, PATH_TARGETS};
use super::sampler::{SamplerSettings, SAMPLER_TARGETS};
use super::target::{decode_checked, decode_target, Section, Target, Validate};
use super::SchemaError;
use serde::Deserialize;

/// The registry of `model._target_` values.
pub static MODEL_TARGETS: &[Target<ModelSettings>] = &[Target {
    name: "flowrun.model.GenerativeModule",
    decode: decode_model,
}];

/// The registry of `model.net._target_` values.
pub static NET_TARGETS: &[Target<DiTSettings>] = &[Target {
    name: "flowrun.model.DiT",
    decode: |de| decode_checked(de),
}];

/// `flowrun.model.GenerativeModule`: a DiT trained along a probability path.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSettings {
    /// The backbone network.
    pub net: DiTSettings,
    /// The probability path (`path/` group).
    pub path: PathSettings,
    /// The sampler (`sampler/` group).
    pub sampler: SamplerSettings,
    /// Factor applied to `t` before the time embedding (1000 for flow matching's `t` in [0, 1]).
    pub time_scale: f64,
    /// How training times are drawn.
    pub time_sampling: TimeSampling,
    /// Mean of the logit-normal time distribution.
    pub logit_normal_mean: f64,
    /// Standard deviation of the logit-normal time distribution.
    pub logit_normal_std: f64,
    /// Weight of the auxiliary loss.
    pub aux_loss_weight: f64,
    /// Decay of the exponential moving average of the weights.
    pub ema_decay: f64,
    /// Whether the EMA decay warms up as `min(ema_decay, (1 + n) / (10 + n))` after `n` updates
    /// (absent: `true`).
    pub ema_warmup: bool,
    /// Whether validation and sampling use the EMA weights rather than the raw ones (absent: `true`).
    pub ema_for_eval: bool,
}

/// How training times `t` are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSampling {
    /// Uniform over the path's time range.
    Uniform,
    /// `sigmoid(N(logit_normal_mean, logit_normal_std))` (SD3's choice).
    LogitNormal,
}

const MODEL_FIELDS: &[&str] = &[
    "net",
    "path",
    "sampler",
    "time_scale",
    "time_sampling",
    "logit_normal_mean",
    "logit_normal_std",
    "aux_loss_weight",
    "ema_decay",
    "ema_warmup",
    "ema_for_eval",
];

fn group_missing(section: &Section<'_>, key: &str, example: &str) -> SchemaError {
    section.de().missing_error(key).with_hint(format!(
        "choose one in the defaults list or on the command line, e.g. +{key}={example}"
    ))
}

fn decode_model(de: NodeDe<'_>) -> Result<ModelSettings, SchemaError> {
    let s = Section::open(de, MODEL_FIELDS)?;
    let net = decode_target(s.child("net")?, NET_TARGETS)?;
    let path_de = s
        .child("path")
        .map_err(|_| group_missing(&s, "path", "condot"))?;
    let path = decode_target(path_de, PATH_TARGETS)?;
    let sampler_de = s
        .child("sampler")
        .map_err(|_| group_missing(&s, "sampler", "midpoint"))?;
    let sampler = decode_target(sampler_de, SAMPLER_TARGETS)?;
    let model = ModelSettings {
        net,
        path,
        sampler,
        time_scale: s.field("time_scale")?,
        time_sampling: s.field("time_sampling")?,
        logit_normal_mean: s.field("logit_normal_mean")?,
        logit_normal_std: s.field("logit_normal_std")?,
        aux_loss_weight: s.field("aux_loss_weight")?,
        ema_decay: s.field("ema_decay")?,
        ema_warmup: s.field::<Option<bool>>("ema_warmup")?.unwrap_or(true),
        ema_for_eval: s.field::<Option<bool>>("ema_for_eval")?.unwrap_or(true),
    };
    model.validate(s.de())?;
    Ok(model)
}

impl Validate for ModelSettings {
    fn validate(&self, at: &NodeDe<'_>) -> Result<(), SchemaError> {
        positive(at, "time_scale", self.time_scale)?;
        ensure(
            self.logit_normal_mean.is_finite(),
            at,
            "logit_normal_mean",
            || format!("must be finite, found {:?}", self.logit_normal_mean),
            || format!("set {}=0.0", at.key_of("logit_normal_mean")),
        )?;
        positive(at, "logit_normal_std", self.logit_normal_std)?;
        non_negative(at, "aux_loss_weight", self.aux_loss_weight)?;
        fraction(at, "ema_decay", self.ema_decay, true)?;
        check_path_and_sampler(&self.path, &self.sampler, at)
    }
}

/// A flow-matching path is sampled by an ODE solver only; a diffusion path by DDIM, DDPM, or an
/// ODE solver through its probability-flow ODE. Diffusion samplers take no more inference steps
/// than training timesteps.
fn check_path_and_sampler(
    path: &PathSettings,
    sampler: &SamplerSettings,
    at: &NodeDe<'_>,
) -> Result<(), SchemaError> {
    let name = sampler.name();
    match (path, sampler) {
        (PathSettings::Affine(_), SamplerSettings::Diffusion(_)) => Err(at
            .error_at(
                "sampler",
                format!(
                    "the sampler '{name}' needs a diffusion path, but model.path is a \
                     flow-matching (affine) path"
                ),
            )
            .with_hint(
                "samplers valid for a flow-matching path: sampler=euler, sampler=midpoint, \
                 sampler=rk4, sampler=dopri5 (or switch to a diffusion path with path=ddpm)",
            )),
        (_, SamplerSettings::Ode(_)) => Ok(()),
        (PathSettings::Diffusion(p), SamplerSettings::Diffusion(s)) => ensure(
            s.steps <= p.num_train_timesteps,
            at,
            "sampler.steps",
            || {
                format!(
                    "{} inference steps exceed the path's {} training timesteps",
                    s.steps, p.num_train_timesteps
                )
            },
            || {
                format!(
                    "set sampling_steps={} or fewer, or raise model.path.num_train_timesteps",
                    p.num_train_timesteps
                )
            },
        ),
    }
}

/// `flowrun.model.DiT`: a diffusion transformer over patches of the input masks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiTSettings {
    /// Side of the square input, in pixels.
    pub input_size: usize,
    /// Side of a square patch, in pixels.
    pub patch_size: usize,
    /// Input channels (the context masks and the noisy target).
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Width of the transformer.
    pub hidden_size: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Number of attention heads.
    pub num_heads: usize,
    /// Hidden width of the MLPs relative to `hidden_size`.
    pub mlp_ratio: f64,
}

impl Validate for DiTSettings {
    fn validate(&self, at: &NodeDe<'_>) -> Result<(), SchemaError> {
        for (key, value) in [
            ("input_size", self.input_size),
            ("patch_size", self.patch_size),
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("hidden_size", self.hidden_size),
            ("depth", self.depth),
            ("num_heads", self.num_heads),
        ] {
            at_least_one(at, key, value as u64)?;
        }
        positive(at, "mlp_ratio", self.mlp_ratio)?;
        ensure(
            self.hidden_size % self.num_heads == 0,
            at,
            "hidden_size",
            || {
                format!(
                    "hidden_size ({}) must be divisible by num_heads ({})",
                    self.hidden_size, self.num_heads
                )
            },
            || {
                format!(
                    "set {}={} (or another multiple of {}), or change {}",
                    at.key_of("hidden_size"),
                    self.hidden_size.div_ceil(self.num_heads) * self.num_heads,
                    self.num_heads,
                    at.key_of("num_heads")
                )
            },
        )?;
        ensure(
            self.input_size % self.patch_size == 0,
            at,
            "input_size",
            || {
                format!(
                    "input_size ({}) must be divisible by patch_size ({})",
                    self.input_size, self.patch_size
                )
            },
            || {
                format!(
                    "set image_size to a multiple of {}, or {} to a divisor of {}",
                    self.patch_size,
                    at.key_of("patch_size"),
                    self.input_size
                )
            },
        )
    }
}

//! `model.sampler`: how samples are drawn from a trained model (config group `sampler/`).

use super::check::{at_least_one, non_negative, positive};
use super::de::NodeDe;
use super::target::{decode_checked, Target, Validate};
use super::SchemaError;
use serde::Deserialize;

/// The `_target_` of ODE samplers (for flow-matching paths).
pub const ODE_SAMPLER: &str = "flowrun.sampler.OdeSampler";
/// The `_target_` of diffusion samplers (for diffusion paths).
pub const DIFFUSION_SAMPLER: &str = "flowrun.sampler.DiffusionSampler";

/// The sampler, chosen by `model.sampler._target_`.
#[derive(Debug, Clone, PartialEq)]
pub enum SamplerSettings {
    /// `flowrun.sampler.OdeSampler`: integrates the learned velocity field.
    Ode(OdeSamplerSettings),
    /// `flowrun.sampler.DiffusionSampler`: a diffusers-style DDIM or DDPM loop.
    Diffusion(DiffusionSamplerSettings),
}

/// The registry of `model.sampler._target_` values.
pub static SAMPLER_TARGETS: &[Target<SamplerSettings>] = &[
    Target {
        name: ODE_SAMPLER,
        decode: |de| decode_checked(de).map(SamplerSettings::Ode),
    },
    Target {
        name: DIFFUSION_SAMPLER,
        decode: |de| decode_checked(de).map(SamplerSettings::Diffusion),
    },
];

impl SamplerSettings {
    /// The number of sampling steps.
    pub fn steps(&self) -> usize {
        match self {
            SamplerSettings::Ode(s) => s.steps,
            SamplerSettings::Diffusion(s) => s.steps,
        }
    }

    /// The sampler's name as the `sampler/` group spells it (`midpoint`, `ddim`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            SamplerSettings::Ode(s) => s.method.name(),
            SamplerSettings::Diffusion(s) => match s.sampler_type {
                DiffusionSamplerType::Ddim => "ddim",
                DiffusionSamplerType::Ddpm => "ddpm",
            },
        }
    }
}

/// Settings of an ODE sampler.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdeSamplerSettings {
    /// The integration method.
    pub method: OdeMethod,
    /// Number of steps of the fixed-step methods (and the output grid of `dopri5`).
    pub steps: usize,
    /// Absolute tolerance of `dopri5`.
    #[serde(default = "default_tolerance")]
    pub atol: f64,
    /// Relative tolerance of `dopri5`.
    #[serde(default = "default_tolerance")]
    pub rtol: f64,
    /// Step budget of `dopri5`.
    #[serde(default = "default_max_steps")]
    pub max_steps: usize,
}

fn default_tolerance() -> f64 {
    1e-5
}

fn default_max_steps() -> usize {
    10_000
}

/// ODE integration methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OdeMethod {
    /// Explicit Euler, one evaluation per step.
    Euler,
    /// Explicit midpoint, two evaluations per step.
    Midpoint,
    /// Classic 4th-order Runge-Kutta.
    Rk4,
    /// Adaptive Dormand-Prince 5(4).
    Dopri5,
}

impl OdeMethod {
    /// The method's name as written in configs.
    pub fn name(self) -> &'static str {
        match self {
            OdeMethod::Euler => "euler",
            OdeMethod::Midpoint => "midpoint",
            OdeMethod::Rk4 => "rk4",
            OdeMethod::Dopri5 => "dopri5",
        }
    }
}

impl Validate for OdeSamplerSettings {
    fn validate(&self, at: &NodeDe<'_>) -> Result<(), SchemaError> {
        at_least_one(at, "steps", self.steps as u64)?;
        if self.method == OdeMethod::Dopri5 {
            positive(at, "atol", self.atol)?;
            positive(at, "rtol", self.rtol)?;
            at_least_one(at, "max_steps", self.max_steps as u64)?;
        }
        Ok(())
    }
}

/// Settings of a diffusers-style diffusion sampler.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionSamplerSettings {
    /// DDIM or DDPM.
    pub sampler_type: DiffusionSamplerType,
    /// Number of inference steps.
    pub steps: usize,
    /// DDIM noise scale (0 is deterministic DDIM, 1 is DDPM-like).
    #[serde(default)]
    pub eta: f64,
    /// How inference timesteps are spread over the training ones.
    pub timestep_spacing: TimestepSpacing,
    /// Offset added to the inference timesteps.
    pub steps_offset: usize,
    /// DDIM: use alpha_prod = 1 for the final step (as in sampler/ddim.yaml, default false).
    #[serde(default)]
    pub set_alpha_to_one: bool,
    /// Clip the predicted clean sample to `[-clip_sample_range, clip_sample_range]`.
    pub clip_sample: bool,
    /// The clipping bound.
    pub clip_sample_range: f64,
    /// DDPM: the posterior variance (as in sampler/ddpm.yaml, default fixed_small).
    #[serde(default)]
    pub variance_type: VarianceType,
}

/// Diffusion sampling algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffusionSamplerType {
    /// Denoising diffusion implicit models (Song et al., 2021).
    Ddim,
    /// Ancestral DDPM sampling (Ho et al., 2020).
    Ddpm,
}

/// Diffusers' `timestep_spacing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    /// Multiples of `num_train_timesteps / steps`, from 0.
    Leading,
    /// Multiples counted down from the last training timestep.
    Trailing,
    /// Evenly spaced over `[0, num_train_timesteps - 1]`.
    Linspace,
}

/// Diffusers' DDPM `variance_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VarianceType {
    /// The posterior variance `beta_tilde_t`.
    #[default]
    FixedSmall,
    /// The prior variance `beta_t`.
    FixedLarge,
}

impl Validate for DiffusionSamplerSettings {
    fn validate(&self, at: &NodeDe<'_>) -> Result<(), SchemaError> {
        at_least_one(at, "steps", self.steps as u64)?;
        non_negative(at, "eta", self.eta)?;
        if self.clip_sample {
            positive(at, "clip_sample_range", self.clip_sample_range)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::{Map, Node, Value};

    fn dict(entries: &[(&str, Value)]) -> Node {
        let mut m = Map::new();
        for (k, v) in entries {
            m.insert(k.to_string(), Node::builtin(v.clone()));
        }
        Node::builtin(Value::Map(m))
    }

    #[test]
    fn switching_a_fixed_step_file_to_dopri5_uses_the_defaults() {
        let node = dict(&[
            ("method", Value::Str("dopri5".into())),
            ("steps", Value::Int(20)),
        ]);
        let s: OdeSamplerSettings = decode_checked(NodeDe::at(&node, "model.sampler")).unwrap();
        assert_eq!((s.atol, s.rtol, s.max_steps), (1e-5, 1e-5, 10_000));
        assert_eq!(s.method.name(), "dopri5");
    }

    #[test]
    fn ddpm_files_switched_to_ddim_get_the_ddim_defaults() {
        let mut entries = vec![
            ("sampler_type", Value::Str("ddim".into())),
            ("steps", Value::Int(50)),
            ("timestep_spacing", Value::Str("trailing".into())),
            ("steps_offset", Value::Int(1)),
            ("clip_sample", Value::Bool(true)),
            ("clip_sample_range", Value::Float(1.0)),
            ("variance_type", Value::Str("fixed_large".into())),
        ];
        let s: DiffusionSamplerSettings =
            decode_checked(NodeDe::at(&dict(&entries), "model.sampler")).unwrap();
        assert_eq!((s.eta, s.set_alpha_to_one), (0.0, false));
        assert_eq!(s.variance_type, VarianceType::FixedLarge);
        entries.push(("eta", Value::Float(-0.5)));
        let err = decode_checked::<DiffusionSamplerSettings>(NodeDe::at(
            &dict(&entries),
            "model.sampler",
        ))
        .unwrap_err();
        assert_eq!(err.key, "model.sampler.eta");
        entries.pop();
        entries.remove(6);
        let s: DiffusionSamplerSettings =
            decode_checked(NodeDe::at(&dict(&entries), "model.sampler")).unwrap();
        assert_eq!(s.variance_type, VarianceType::FixedSmall);
    }
}

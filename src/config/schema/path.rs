//! `model.path`: the probability path the model is trained on (config group `path/`).

use super::check::{at_least_one, ensure, positive};
use super::de::NodeDe;
use super::target::{decode_checked, Target, Validate};
use super::SchemaError;
use serde::Deserialize;

/// The `_target_` of flow-matching (affine) paths.
pub const AFFINE_PATH: &str = "flowrun.path.AffineProbPath";
/// The `_target_` of discrete-time diffusion paths.
pub const DIFFUSION_PATH: &str = "flowrun.path.DiffusionPath";

/// The probability path, chosen by `model.path._target_`.
#[derive(Debug, Clone, PartialEq)]
pub enum PathSettings {
    /// `flowrun.path.AffineProbPath`: a flow-matching path `x_t = alpha_t x_1 + sigma_t x_0`.
    Affine(AffinePathSettings),
    /// `flowrun.path.DiffusionPath`: a discrete-time DDPM noise schedule.
    Diffusion(DiffusionPathSettings),
}

/// The registry of `model.path._target_` values.
pub static PATH_TARGETS: &[Target<PathSettings>] = &[
    Target {
        name: AFFINE_PATH,
        decode: |de| decode_checked(de).map(PathSettings::Affine),
    },
    Target {
        name: DIFFUSION_PATH,
        decode: |de| decode_checked(de).map(PathSettings::Diffusion),
    },
];

impl PathSettings {
    /// True for flow-matching (affine) paths, which are sampled by an ODE solver.
    pub fn is_flow_matching(&self) -> bool {
        matches!(self, PathSettings::Affine(_))
    }
}

/// Settings of an affine (flow-matching) path.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AffinePathSettings {
    /// The schedule `(alpha_t, sigma_t)`.
    pub scheduler: AffineScheduler,
    /// VP schedule: beta at t=0 (used by `vp` only).
    #[serde(default = "default_beta_min")]
    pub beta_min: f64,
    /// VP schedule: beta at t=1 (used by `vp` only).
    #[serde(default = "default_beta_max")]
    pub beta_max: f64,
    /// Polynomial schedule exponent (used by `polynomial` only).
    #[serde(default = "default_exponent")]
    pub exponent: f64,
}

fn default_beta_min() -> f64 {
    0.1
}

fn default_beta_max() -> f64 {
    20.0
}

fn default_exponent() -> f64 {
    2.0
}

/// The affine schedules of facebookresearch/flow_matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AffineScheduler {
    /// Conditional optimal transport: `alpha_t = t`, `sigma_t = 1 - t`.
    #[serde(rename = "condot")]
    CondOt,
    /// `alpha_t = sin(pi t / 2)`, `sigma_t = cos(pi t / 2)`.
    Cosine,
    /// Variance preserving, from `beta_min` and `beta_max`.
    Vp,
    /// Variance preserving with a linear `alpha_t`.
    LinearVp,
    /// `alpha_t = t^exponent`, `sigma_t = 1 - t^exponent`.
    Polynomial,
}

impl Validate for AffinePathSettings {
    fn validate(&self, at: &NodeDe<'_>) -> Result<(), SchemaError> {
        match self.scheduler {
            AffineScheduler::Vp => {
                positive(at, "beta_min", self.beta_min)?;
                ensure(
                    self.beta_max > self.beta_min && self.beta_max.is_finite(),
                    at,
                    "beta_max",
                    || {
                        format!(
                            "must be greater than beta_min ({:?}), found {:?}",
                            self.beta_min, self.beta_max
                        )
                    },
                    || format!("set {}=20.0 (the usual value)", at.key_of("beta_max")),
                )
            }
            AffineScheduler::Polynomial => positive(at, "exponent", self.exponent),
            _ => Ok(()),
        }
    }
}

/// Settings of a discrete-time diffusion path (diffusers' DDPM conventions).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionPathSettings {
    /// Number of training timesteps.
    pub num_train_timesteps: usize,
    /// How betas grow over the timesteps.
    pub beta_schedule: BetaSchedule,
    /// First beta (linear schedules).
    pub beta_start: f64,
    /// Last beta (linear schedules).
    pub beta_end: f64,
    /// What the network predicts.
    pub prediction_type: PredictionType,
}

/// Diffusers' beta schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// Betas spaced linearly from `beta_start` to `beta_end`.
    Linear,
    /// Square roots of the betas spaced linearly (Stable Diffusion).
    ScaledLinear,
    /// The cosine schedule of Nichol & Dhariwal (2021), capped at 0.999.
    SquaredcosCapV2,
}

/// What a diffusion network is trained to predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// The added noise.
    Epsilon,
    /// The velocity `alpha_t eps - sigma_t x_0`.
    VPrediction,
    /// The clean sample.
    Sample,
}

impl Validate for DiffusionPathSettings {
    fn validate(&self, at: &NodeDe<'_>) -> Result<(), SchemaError> {
        at_least_one(at, "num_train_timesteps", self.num_train_timesteps as u64)?;
        if self.beta_schedule == BetaSchedule::SquaredcosCapV2 {
            return Ok(());
        }
        positive(at, "beta_start", self.beta_start)?;
        ensure(
            self.beta_end > self.beta_start && self.beta_end < 1.0,
            at,
            "beta_end",
            || {
                format!(
                    "must be greater than beta_start ({:?}) and less than 1, found {:?}",
                    self.beta_start, self.beta_end
                )
            },
            || format!("set {}=0.02 (the DDPM value)", at.key_of("beta_end")),
        )
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
    fn enum_names_match_the_shipped_spellings() {
        let node = dict(&[
            ("num_train_timesteps", Value::Int(1000)),
            ("beta_schedule", Value::Str("squaredcos_cap_v2".into())),
            ("beta_start", Value::Float(1e-4)),
            ("beta_end", Value::Float(0.02)),
            ("prediction_type", Value::Str("v_prediction".into())),
        ]);
        let s: DiffusionPathSettings = decode_checked(NodeDe::at(&node, "model.path")).unwrap();
        assert_eq!(s.beta_schedule, BetaSchedule::SquaredcosCapV2);
        assert_eq!(s.prediction_type, PredictionType::VPrediction);
        for name in ["condot", "cosine", "vp", "linear_vp", "polynomial"] {
            let node = dict(&[("scheduler", Value::Str(name.into()))]);
            let s: AffinePathSettings = decode_checked(NodeDe::at(&node, "model.path")).unwrap();
            assert_eq!((s.beta_min, s.beta_max, s.exponent), (0.1, 20.0, 2.0));
        }
    }

    #[test]
    fn schedule_parameters_are_checked_where_they_are_used() {
        let node = dict(&[
            ("scheduler", Value::Str("vp".into())),
            ("beta_min", Value::Float(5.0)),
            ("beta_max", Value::Float(1.0)),
        ]);
        let err =
            decode_checked::<AffinePathSettings>(NodeDe::at(&node, "model.path")).unwrap_err();
        assert_eq!(err.key, "model.path.beta_max");
        let node = dict(&[
            ("scheduler", Value::Str("condot".into())),
            ("beta_max", Value::Float(1.0)),
        ]);
        assert!(decode_checked::<AffinePathSettings>(NodeDe::at(&node, "p")).is_ok());
        let node = dict(&[
            ("num_train_timesteps", Value::Int(10)),
            ("beta_schedule", Value::Str("linear".into())),
            ("beta_start", Value::Float(0.1)),
            ("beta_end", Value::Float(0.01)),
            ("prediction_type", Value::Str("epsilon".into())),
        ]);
        let err = decode_checked::<DiffusionPathSettings>(NodeDe::at(&node, "p")).unwrap_err();
        assert_eq!(err.key, "p.beta_end");
    }
}

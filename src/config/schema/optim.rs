//! `optimizer` and `scheduler`: AdamW and its learning-rate schedule.

use super::check::{ensure, fraction, non_negative, positive};
use super::de::NodeDe;
use super::target::{decode_checked, Target, Validate};
use super::SchemaError;
use serde::Deserialize;

/// The registry of `optimizer._target_` values.
pub static OPTIMIZER_TARGETS: &[Target<OptimizerSettings>] = &[Target {
    name: "flowrun.optim.AdamW",
    decode: |de| decode_checked(de),
}];

/// `flowrun.optim.AdamW`: Adam with decoupled weight decay.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSettings {
    /// Peak learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moment estimates.
    pub betas: [f64; 2],
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Validate for OptimizerSettings {
    fn validate(&self, at: &NodeDe<'_>) -> Result<(), SchemaError> {
        positive(at, "lr", self.lr)?;
        for (i, beta) in self.betas.iter().enumerate() {
            if !(0.0..1.0).contains(beta) {
                let node = at.node();
                let origin = &node.select(&format!("betas.{i}")).unwrap_or(node).origin;
                let key = format!("{}[{i}]", at.key_of("betas"));
                let message = format!("must be in [0, 1), found {beta:?}");
                return Err(SchemaError::new(key, origin, message)
                    .with_hint(format!("set {}=[0.9,0.999]", at.key_of("betas"))));
            }
        }
        positive(at, "eps", self.eps)?;
        non_negative(at, "weight_decay", self.weight_decay)
    }
}

/// The registry of `scheduler._target_` values.
pub static SCHEDULER_TARGETS: &[Target<LrSchedulerSettings>] = &[
    Target {
        name: "flowrun.lr.WarmupCosine",
        decode: |de| decode_checked(de).map(LrSchedulerSettings::WarmupCosine),
    },
    Target {
        name: "flowrun.lr.Constant",
        decode: |de| decode_checked(de).map(LrSchedulerSettings::Constant),
    },
    Target {
        name: "flowrun.lr.Linear",
        decode: |de| decode_checked(de).map(LrSchedulerSettings::Linear),
    },
];

/// The learning-rate schedule, chosen by `scheduler._target_`.
#[derive(Debug, Clone, PartialEq)]
pub enum LrSchedulerSettings {
    /// `flowrun.lr.WarmupCosine`: linear warmup, then cosine decay to `min_lr_ratio * lr`.
    WarmupCosine(DecayingLrSettings),
    /// `flowrun.lr.Constant`: linear warmup, then constant.
    Constant(ConstantLrSettings),
    /// `flowrun.lr.Linear`: linear warmup, then linear decay to `min_lr_ratio * lr`.
    Linear(DecayingLrSettings),
}

/// How the learning rate warms up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Warmup {
    /// No warmup.
    None,
    /// Over this many optimizer steps.
    Steps(u64),
    /// Over this fraction of all optimizer steps.
    Ratio(f64),
}

impl LrSchedulerSettings {
    /// The warmup, whichever key set it.
    pub fn warmup(&self) -> Warmup {
        let (steps, ratio) = match self {
            LrSchedulerSettings::WarmupCosine(s) | LrSchedulerSettings::Linear(s) => {
                (s.warmup_steps, s.warmup_ratio)
            }
            LrSchedulerSettings::Constant(s) => (s.warmup_steps, s.warmup_ratio),
        };
        match (steps, ratio) {
            (Some(n), _) => Warmup::Steps(n),
            (None, Some(r)) => Warmup::Ratio(r),
            (None, None) => Warmup::None,
        }
    }

    /// The final learning rate as a fraction of the peak (1 for the constant schedule).
    pub fn min_lr_ratio(&self) -> f64 {
        match self {
            LrSchedulerSettings::WarmupCosine(s) | LrSchedulerSettings::Linear(s) => s.min_lr_ratio,
            LrSchedulerSettings::Constant(_) => 1.0,
        }
    }
}

/// Settings of the decaying schedules (cosine and linear).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecayingLrSettings {
    /// Warmup length in optimizer steps (exclusive with `warmup_ratio`).
    pub warmup_steps: Option<u64>,
    /// Warmup length as a fraction of all steps (exclusive with `warmup_steps`).
    pub warmup_ratio: Option<f64>,
    /// The final learning rate as a fraction of the peak.
    pub min_lr_ratio: f64,
}

/// Settings of the constant schedule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstantLrSettings {
    /// Warmup length in optimizer steps (exclusive with `warmup_ratio`).
    pub warmup_steps: Option<u64>,
    /// Warmup length as a fraction of all steps (exclusive with `warmup_steps`).
    pub warmup_ratio: Option<f64>,
}

fn check_warmup(
    at: &NodeDe<'_>,
    steps: Option<u64>,
    ratio: Option<f64>,
) -> Result<(), SchemaError> {
    ensure(
        steps.is_none() || ratio.is_none(),
        at,
        "warmup_ratio",
        || {
            format!(
                "warmup_steps ({}) and warmup_ratio ({:?}) are both set; set only one",
                steps.unwrap_or_default(),
                ratio.unwrap_or_default()
            )
        },
        || {
            format!(
                "add {}=null to use the ratio, or {}=null to use the steps",
                at.key_of("warmup_steps"),
                at.key_of("warmup_ratio")
            )
        },
    )?;
    match ratio {
        Some(r) => fraction(at, "warmup_ratio", r, false),
        None => Ok(()),
    }
}

impl Validate for DecayingLrSettings {
    fn validate(&self, at: &NodeDe<'_>) -> Result<(), SchemaError> {
        check_warmup(at, self.warmup_steps, self.warmup_ratio)?;
        fraction(at, "min_lr_ratio", self.min_lr_ratio, true)
    }
}

impl Validate for ConstantLrSettings {
    fn validate(&self, at: &NodeDe<'_>) -> Result<(), SchemaError> {
        check_warmup(at, self.warmup_steps, self.warmup_ratio)
    }
}

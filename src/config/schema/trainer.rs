//! `trainer`: the training loop's devices, precision and step budget (config group `trainer/`).

use super::check::{at_least_one, ensure, non_negative, positive};
use super::de::NodeDe;
use super::target::{decode_checked, Target, Validate};
use super::SchemaError;
use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;

/// The registry of `trainer._target_` values.
pub static TRAINER_TARGETS: &[Target<TrainerSettings>] = &[Target {
    name: "flowrun.train.Trainer",
    decode: |de| decode_checked(de),
}];

/// `flowrun.train.Trainer`: Lightning-style trainer settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerSettings {
    /// Which kind of device to train on.
    pub accelerator: Accelerator,
    /// Devices per node (`auto`: every visible GPU, or the launcher's world size).
    pub devices: Devices,
    /// Number of nodes.
    pub num_nodes: usize,
    /// This node's index among `num_nodes` when `train` starts the workers of one node itself.
    #[serde(default)]
    pub node_rank: usize,
    /// How work is spread over devices.
    pub strategy: Strategy,
    /// How the learning rate follows the data-parallel world size.
    #[serde(default)]
    pub scale_lr: ScaleLr,
    /// Seconds a collective (all-reduce, broadcast, barrier) or the rendezvous may wait before
    /// the whole job stops with an error.
    #[serde(default = "default_collective_timeout_s")]
    pub collective_timeout_s: f64,
    /// Numeric precision.
    pub precision: Precision,
    /// Stop after this many epochs (null: no epoch limit).
    pub max_epochs: Option<u64>,
    /// Stop after this many optimizer steps (null: no step limit; 0: write the run directory and
    /// exit without training).
    pub max_steps: Option<u64>,
    /// Clip gradients to this global norm (null: no clipping).
    pub gradient_clip_val: Option<f64>,
    /// Batches accumulated per optimizer step.
    pub accumulate_grad_batches: usize,
    /// Validate every this many epochs (null: only through `val_check_interval`).
    pub check_val_every_n_epoch: Option<usize>,
    /// Validate within an epoch too: a fraction of it, or every this many batches.
    pub val_check_interval: Option<ValCheckInterval>,
    /// Log every this many steps.
    pub log_every_n_steps: usize,
    /// What to do with a step whose loss or gradient norm is NaN or infinite.
    #[serde(default)]
    pub nan_policy: NanPolicy,
    /// Under `nan_policy: skip`, abort after this many skipped steps in a row.
    #[serde(default = "default_max_consecutive_nan_steps")]
    pub max_consecutive_nan_steps: u64,
    /// Seconds between plain progress lines when the console is not a terminal.
    #[serde(default = "default_progress_interval_s")]
    pub progress_interval_s: f64,
    /// Seconds between flushes of the TensorBoard events and `metrics.jsonl`.
    #[serde(default = "default_flush_secs")]
    pub flush_secs: f64,
}

fn default_max_consecutive_nan_steps() -> u64 {
    10
}

fn default_progress_interval_s() -> f64 {
    30.0
}

fn default_flush_secs() -> f64 {
    5.0
}

fn default_collective_timeout_s() -> f64 {
    300.0
}

/// How many devices a node trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Devices {
    /// Every visible GPU (or, under an external launcher, whatever its world size says).
    Auto,
    /// Exactly this many.
    Count(usize),
}

impl Devices {
    /// The count, or `None` for `auto`.
    pub fn count(self) -> Option<usize> {
        match self {
            Devices::Auto => None,
            Devices::Count(n) => Some(n),
        }
    }
}

impl fmt::Display for Devices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Devices::Auto => f.write_str("auto"),
            Devices::Count(n) => write!(f, "{n}"),
        }
    }
}

struct DevicesVisitor;

impl Visitor<'_> for DevicesVisitor {
    type Value = Devices;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer number of devices or 'auto'")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Devices, E> {
        usize::try_from(v)
            .map(Devices::Count)
            .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Devices, E> {
        usize::try_from(v)
            .map(Devices::Count)
            .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Devices, E> {
        match v.trim() {
            "auto" => Ok(Devices::Auto),
            _ => Err(E::invalid_type(Unexpected::Str(v), &self)),
        }
    }
}

impl<'de> Deserialize<'de> for Devices {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DevicesVisitor)
    }
}

/// How the learning rate follows the data-parallel world size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleLr {
    /// Keep `optimizer.lr` whatever the world size.
    #[default]
    None,
    /// Multiply `optimizer.lr` by the world size (the linear scaling rule).
    Linear,
}

/// What to do with a step whose loss or gradient norm is not finite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NanPolicy {
    /// Drop the step's update, count it, and abort after `max_consecutive_nan_steps` in a row.
    #[default]
    Skip,
    /// Save the last good state and stop, naming the step.
    Abort,
}

/// Which kind of device to train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Accelerator {
    /// A CUDA GPU when built with CUDA and one is visible, the CPU otherwise.
    Auto,
    /// The CPU.
    Cpu,
    /// A CUDA GPU (an error if none can be used).
    Gpu,
}

/// How work is spread over devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// One process on one device.
    Auto,
    /// Distributed data parallel: one process per device (NCCL on GPUs, MPI on the CPU).
    Ddp,
}

/// Numeric precision, spelled as Lightning does (`32`, `"16-mixed"`, `"bf16-mixed"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// 32-bit floats (`32`, `"32"`, `"32-true"`).
    Full32,
    /// 64-bit floats (`64`, `"64"`, `"64-true"`).
    Double64,
    /// f16 autocast over f32 weights (`"16-mixed"`, `"16"`, `16`).
    Mixed16,
    /// bf16 autocast over f32 weights (`"bf16-mixed"`, `"bf16"`).
    MixedBf16,
    /// Everything in f16 (`"16-true"`).
    True16,
    /// Everything in bf16 (`"bf16-true"`).
    TrueBf16,
}

/// The accepted spellings of [`Precision`], canonical ones first.
pub const PRECISION_NAMES: &[&str] = &[
    "32",
    "64",
    "16-mixed",
    "bf16-mixed",
    "16-true",
    "bf16-true",
    "32-true",
    "64-true",
    "16",
    "bf16",
];

impl Precision {
    /// The precision named by one of [`PRECISION_NAMES`].
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "32" | "32-true" => Precision::Full32,
            "64" | "64-true" => Precision::Double64,
            "16-mixed" | "16" => Precision::Mixed16,
            "bf16-mixed" | "bf16" => Precision::MixedBf16,
            "16-true" => Precision::True16,
            "bf16-true" => Precision::TrueBf16,
            _ => return None,
        })
    }

    /// Lightning's canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Full32 => "32-true",
            Precision::Double64 => "64-true",
            Precision::Mixed16 => "16-mixed",
            Precision::MixedBf16 => "bf16-mixed",
            Precision::True16 => "16-true",
            Precision::TrueBf16 => "bf16-true",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

struct PrecisionVisitor;

impl Visitor<'_> for PrecisionVisitor {
    type Value = Precision;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a precision (one of: {})", PRECISION_NAMES.join(", "))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Precision, E> {
        match v {
            16 => Ok(Precision::Mixed16),
            32 => Ok(Precision::Full32),
            64 => Ok(Precision::Double64),
            _ => Err(E::invalid_value(Unexpected::Signed(v), &self)),
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Precision, E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) => Err(E::invalid_value(Unexpected::Unsigned(v), &self)),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Precision, E> {
        Precision::from_name(v.trim()).ok_or_else(|| E::unknown_variant(v, PRECISION_NAMES))
    }
}

impl<'de> Deserialize<'de> for Precision {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PrecisionVisitor)
    }
}

/// When to validate within an epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValCheckInterval {
    /// A fraction of the epoch (a float in (0, 1]).
    Fraction(f64),
    /// Every this many training batches (an integer).
    Batches(u64),
}

struct IntervalVisitor;

impl Visitor<'_> for IntervalVisitor {
    type Value = ValCheckInterval;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a fraction of an epoch (a float) or a number of batches (an integer)")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ValCheckInterval, E> {
        u64::try_from(v)
            .map(ValCheckInterval::Batches)
            .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ValCheckInterval, E> {
        Ok(ValCheckInterval::Batches(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ValCheckInterval, E> {
        Ok(ValCheckInterval::Fraction(v))
    }
}

impl<'de> Deserialize<'de> for ValCheckInterval {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IntervalVisitor)
    }
}

impl Validate for TrainerSettings {
    fn validate(&self, at: &NodeDe<'_>) -> Result<(), SchemaError> {
        if let Devices::Count(n) = self.devices {
            at_least_one(at, "devices", n as u64)?;
        }
        at_least_one(at, "num_nodes", self.num_nodes as u64)?;
        at_least_one(
            at,
            "accumulate_grad_batches",
            self.accumulate_grad_batches as u64,
        )?;
        at_least_one(at, "log_every_n_steps", self.log_every_n_steps as u64)?;
        for (key, value) in [("max_epochs", self.max_epochs)] {
            if let Some(n) = value {
                ensure(
                    n >= 1,
                    at,
                    key,
                    || format!("must be at least 1, found {n}"),
                    || format!("set {}=1 or more, or null for no limit", at.key_of(key)),
                )?;
            }
        }
        at_least_one(
            at,
            "max_consecutive_nan_steps",
            self.max_consecutive_nan_steps,
        )?;
        positive(at, "progress_interval_s", self.progress_interval_s)?;
        positive(at, "flush_secs", self.flush_secs)?;
        positive(at, "collective_timeout_s", self.collective_timeout_s)?;
        ensure(
            self.node_rank < self.num_nodes,
            at,
            "node_rank",
            || {
                format!(
                    "must be below num_nodes ({}), found {}",
                    self.num_nodes, self.node_rank
                )
            },
            || format!("set {}=0 on the first node", at.key_of("node_rank")),
        )?;
        if let Some(n) = self.check_val_every_n_epoch {
            at_least_one(at, "check_val_every_n_epoch", n as u64)?;
        }
        if let Some(clip) = self.gradient_clip_val {
            non_negative(at, "gradient_clip_val", clip)?;
        }
        match self.val_check_interval {
            Some(ValCheckInterval::Fraction(f)) => ensure(
                f > 0.0 && f <= 1.0,
                at,
                "val_check_interval",
                || format!("a fraction of an epoch must be in (0, 1], found {f:?}"),
                || {
                    format!(
                        "set {}=0.5 (twice an epoch) or an integer number of batches",
                        at.key_of("val_check_interval")
                    )
                },
            )?,
            Some(ValCheckInterval::Batches(n)) => at_least_one(at, "val_check_interval", n)?,
            None => {}
        }
        ensure(
            !(self.strategy == Strategy::Ddp && self.accelerator == Accelerator::Auto),
            at,
            "accelerator",
            || {
                "strategy 'ddp' needs accelerator 'gpu' (NCCL) or 'cpu' (MPI), found 'auto'"
                    .to_string()
            },
            || "use trainer=multi_gpu (GPUs) or trainer=ddp_cpu (CPU processes)".to_string(),
        )?;
        ensure(
            self.strategy == Strategy::Ddp || self.devices != Devices::Auto,
            at,
            "devices",
            || "'auto' is only meaningful with strategy 'ddp'".to_string(),
            || format!("set {}=1", at.key_of("devices")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::{Node, Value};

    fn precision(value: Value) -> Result<Precision, SchemaError> {
        NodeDe::at(&Node::builtin(value), "trainer.precision").decode()
    }

    #[test]
    fn precision_accepts_lightning_spellings() {
        assert_eq!(precision(Value::Int(32)).unwrap(), Precision::Full32);
        assert_eq!(
            precision(Value::Str("32".into())).unwrap(),
            Precision::Full32
        );
        assert_eq!(precision(Value::Int(64)).unwrap(), Precision::Double64);
        assert_eq!(
            precision(Value::Str("16".into())).unwrap(),
            Precision::Mixed16
        );
        assert_eq!(
            precision(Value::Str("16-mixed".into())).unwrap(),
            Precision::Mixed16
        );
        assert_eq!(
            precision(Value::Str("bf16".into())).unwrap(),
            Precision::MixedBf16
        );
        assert_eq!(
            precision(Value::Str("bf16-mixed".into())).unwrap(),
            Precision::MixedBf16
        );
        assert_eq!(Precision::MixedBf16.to_string(), "bf16-mixed");
    }

    #[test]
    fn precision_errors_name_the_value_and_key() {
        let err = precision(Value::Str("bf16mixed".into())).unwrap_err();
        assert_eq!(err.key, "trainer.precision");
        assert!(err.message.contains("Did you mean 'bf16-mixed'?"), "{err}");
        let err = precision(Value::Int(8)).unwrap_err();
        assert!(err.message.contains("the integer 8"), "{err}");
        let err = precision(Value::Float(32.5)).unwrap_err();
        assert!(err.message.contains("found the float 32.5"), "{err}");
    }

    #[test]
    fn val_check_interval_is_a_fraction_or_a_count() {
        let get = |v: Value| -> Result<Option<ValCheckInterval>, SchemaError> {
            NodeDe::at(&Node::builtin(v), "trainer.val_check_interval").decode()
        };
        assert_eq!(get(Value::Null).unwrap(), None);
        assert_eq!(
            get(Value::Int(100)).unwrap(),
            Some(ValCheckInterval::Batches(100))
        );
        assert_eq!(
            get(Value::Float(0.25)).unwrap(),
            Some(ValCheckInterval::Fraction(0.25))
        );
        assert!(get(Value::Int(-1)).is_err());
        assert!(get(Value::Str("x".into())).is_err());
    }
}

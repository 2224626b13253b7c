//! An exponential moving average of the weights, used for validation and sampling by default.
//!
//! Update rule (diffusers' `EMAModel` without its power warmup): after `n` earlier updates the
//! decay is `d_n = min(ema_decay, (1 + n) / (10 + n))` with warmup on, `ema_decay` otherwise, and
//! every shadow weight moves as `s <- s - (1 - d_n) (s - p)`. The first update (d_0 = 0.1) brings
//! the shadow close to the weights, so early evaluations are not dominated by the initialisation.
//! The shadow weights and the update count are saved as `ema.<param name>` (f32) and
//! `ema.num_updates` (i64 scalar).

use std::collections::{BTreeSet, HashMap};

use candle_core::{DType, Device, Tensor, Var};

use super::generative::{GenerativeError, GenerativeModule};
use super::kernels::ema_step;

/// Key prefix of the shadow weights in [`Ema::state_tensors`].
pub const EMA_PREFIX: &str = "ema.";
/// Key of the update count in [`Ema::state_tensors`].
pub const EMA_UPDATES_KEY: &str = "ema.num_updates";

/// Errors of the weight EMA.
#[derive(Debug, thiserror::Error)]
pub enum EmaError {
    /// The decay is outside [0, 1].
    #[error("invalid model.ema_decay {0}: must be in [0, 1] (e.g. 0.9999); 1 freezes the average")]
    InvalidDecay(f64),
    /// Parameters or a saved state do not match the averaged weights.
    #[error(
        "EMA state does not match the model: missing [{}]; unexpected [{}]; mismatched [{}]; \
         resume from a checkpoint written by the same model.net settings",
        missing.join(", "),
        unexpected.join(", "),
        mismatched.join(", ")
    )]
    Mismatch {
        /// Expected entries that are absent.
        missing: Vec<String>,
        /// Entries that were not expected.
        unexpected: Vec<String>,
        /// Entries of the wrong shape, `name: shape (a, b), expected (c, d)`.
        mismatched: Vec<String>,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

/// `s - (s - p) (1 - d)` op by op (the fused `ema_step` computes the same bits in one pass).
fn ema_step_ops(shadow: &Tensor, p: &Tensor, d: f64) -> candle_core::Result<Tensor> {
    let step = (shadow - p)?.affine(1.0 - d, 0.0)?;
    shadow - step
}

/// The moving average of a set of named parameters.
#[derive(Debug, Clone)]
pub struct Ema {
    decay: f64,
    warmup: bool,
    num_updates: u64,
    shadow: Vec<(String, Tensor)>,
}

impl Ema {
    /// Starts the average at a copy of `params`.
    pub fn new(params: &[(String, Var)], decay: f64, warmup: bool) -> Result<Self, EmaError> {
        if !(0.0..=1.0).contains(&decay) {
            return Err(EmaError::InvalidDecay(decay));
        }
        let shadow = params
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().to_dtype(DType::F32)?.copy()?)))
            .collect::<Result<Vec<_>, candle_core::Error>>()?;
        Ok(Self {
            decay,
            warmup,
            num_updates: 0,
            shadow,
        })
    }

    /// The average of `module`'s parameters with `model.ema_decay` and `model.ema_warmup`.
    pub fn for_module(
        module: &GenerativeModule,
        decay: f64,
        warmup: bool,
    ) -> Result<Self, EmaError> {
        Self::new(&module.parameters(), decay, warmup)
    }

    /// The decay the next update uses.
    pub fn next_decay(&self) -> f64 {
        decay_after(self.decay, self.warmup, self.num_updates)
    }

    /// Updates seen so far.
    pub fn num_updates(&self) -> u64 {
        self.num_updates
    }

    /// Moves the average toward `params` (same names and shapes as at creation); returns the
    /// decay used.
    pub fn update(&mut self, params: &[(String, Var)]) -> Result<f64, EmaError> {
        let current: HashMap<&str, &Var> = params.iter().map(|(n, v)| (n.as_str(), v)).collect();
        self.check(
            current
                .iter()
                .map(|(n, v)| (n.to_string(), v.dims().to_vec())),
        )?;
        let d = self.next_decay();
        for (name, shadow) in &mut self.shadow {
            let p = current[name.as_str()]
                .as_tensor()
                .detach()
                .to_dtype(DType::F32)?;
            *shadow = match ema_step(shadow, &p, d)? {
                Some(updated) => updated,
                None => ema_step_ops(shadow, &p, d)?,
            };
        }
        self.num_updates += 1;
        Ok(d)
    }

    /// The averaged weights by parameter name.
    pub fn weights(&self) -> HashMap<String, Tensor> {
        self.shadow.iter().cloned().collect()
    }

    /// A frozen copy of `module` computing with the averaged weights.
    pub fn module(&self, module: &GenerativeModule) -> Result<GenerativeModule, GenerativeError> {
        module.with_weights(self.weights())
    }

    /// `ema.<name>` for every shadow weight and `ema.num_updates`, on the CPU.
    pub fn state_tensors(&self) -> Result<HashMap<String, Tensor>, EmaError> {
        let mut out = HashMap::with_capacity(self.shadow.len() + 1);
        let updates = i64::try_from(self.num_updates).unwrap_or(i64::MAX);
        out.insert(
            EMA_UPDATES_KEY.to_string(),
            Tensor::new(updates, &Device::Cpu)?,
        );
        for (name, t) in &self.shadow {
            out.insert(format!("{EMA_PREFIX}{name}"), t.to_device(&Device::Cpu)?);
        }
        Ok(out)
    }

    /// Restores [`Ema::state_tensors`]; on any mismatch nothing changes. Entries without the
    /// `ema.` prefix (model weights, optimizer state) are ignored.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), EmaError> {
        let found = state.iter().filter_map(|(k, t)| {
            k.strip_prefix(EMA_PREFIX)
                .filter(|_| k != EMA_UPDATES_KEY)
                .map(|n| (n.to_string(), t.dims().to_vec()))
        });
        self.check(found)?;
        let Some(updates) = state.get(EMA_UPDATES_KEY) else {
            return Err(EmaError::Mismatch {
                missing: vec![EMA_UPDATES_KEY.to_string()],
                unexpected: Vec::new(),
                mismatched: Vec::new(),
            });
        };
        let updates = updates.to_dtype(DType::I64)?.to_scalar::<i64>()?;
        let mut shadow = Vec::with_capacity(self.shadow.len());
        for (name, old) in &self.shadow {
            let t = &state[&format!("{EMA_PREFIX}{name}")];
            shadow.push((
                name.clone(),
                t.to_dtype(DType::F32)?.to_device(old.device())?,
            ));
        }
        self.shadow = shadow;
        self.num_updates = u64::try_from(updates).unwrap_or(0);
        Ok(())
    }

    fn check(&self, found: impl Iterator<Item = (String, Vec<usize>)>) -> Result<(), EmaError> {
        let found: HashMap<String, Vec<usize>> = found.collect();
        let expected: BTreeSet<&str> = self.shadow.iter().map(|(n, _)| n.as_str()).collect();
        let mut missing = Vec::new();
        let mut mismatched = Vec::new();
        for (name, t) in &self.shadow {
            match found.get(name) {
                None => missing.push(name.clone()),
                Some(dims) if dims.as_slice() != t.dims() => {
                    mismatched.push(format!("{name}: shape {dims:?}, expected {:?}", t.dims()))
                }
                Some(_) => {}
            }
        }
        let mut unexpected: Vec<String> = found
            .keys()
            .filter(|k| !expected.contains(k.as_str()))
            .cloned()
            .collect();
        unexpected.sort();
        if missing.is_empty() && unexpected.is_empty() && mismatched.is_empty() {
            Ok(())
        } else {
            Err(EmaError::Mismatch {
                missing,
                unexpected,
                mismatched,
            })
        }
    }
}

/// The decay after `n` updates: `min(decay, (1 + n) / (10 + n))` with warmup, `decay` without.
pub fn decay_after(decay: f64, warmup: bool, n: u64) -> f64 {
    if warmup {
        decay.min((1.0 + n as f64) / (10.0 + n as f64))
    } else {
        decay
    }
}

impl GenerativeModule {
    /// The module validation and sampling use: the EMA weights when `model.ema_for_eval` is on
    /// and an average is given, the raw weights otherwise.
    pub fn for_evaluation(&self, ema: Option<&Ema>) -> Result<GenerativeModule, GenerativeError> {
        match ema {
            Some(ema) if self.config().ema_for_eval => ema.module(self),
            _ => Ok(self.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(values: &[f32]) -> Var {
        Var::from_tensor(&Tensor::new(values, &Device::Cpu).expect("tensor")).expect("var")
    }

    fn value(ema: &Ema) -> Vec<f32> {
        ema.weights()["w"].to_vec1::<f32>().expect("values")
    }

    #[test]
    fn warmup_then_constant_decay() -> Result<(), EmaError> {
        assert_eq!(decay_after(0.9999, true, 0), 0.1);
        assert_eq!(decay_after(0.9999, true, 90), 91.0 / 100.0);
        assert_eq!(decay_after(0.5, true, 1000), 0.5);
        assert_eq!(decay_after(0.9, false, 0), 0.9);
        let w = var(&[0.0, 10.0]);
        let params = vec![("w".to_string(), w.clone())];
        let mut ema = Ema::new(&params, 0.5, true)?;
        w.set(&Tensor::new(&[10f32, 10.0], &Device::Cpu)?)?;
        assert_eq!(ema.update(&params)?, 0.1);
        assert_eq!(value(&ema), vec![9.0, 10.0]);
        assert_eq!(ema.update(&params)?, 2.0 / 11.0);
        // Warmup would give 3/12 now; the configured 0.5 caps nothing yet.
        assert!((ema.next_decay() - 0.25).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn state_round_trips_and_mismatches_are_named() -> Result<(), EmaError> {
        let w = var(&[1.0, 2.0]);
        let params = vec![("w".to_string(), w.clone())];
        let mut ema = Ema::new(&params, 0.9, false)?;
        w.set(&Tensor::new(&[3f32, 4.0], &Device::Cpu)?)?;
        ema.update(&params)?;
        let state = ema.state_tensors()?;
        let mut fresh = Ema::new(&params, 0.9, false)?;
        fresh.load_state(&state)?;
        assert_eq!(fresh.num_updates(), 1);
        assert_eq!(value(&fresh), value(&ema));
        let mut bad = state.clone();
        bad.insert("ema.w".into(), Tensor::zeros(3, DType::F32, &Device::Cpu)?);
        bad.insert(
            "ema.extra".into(),
            Tensor::zeros(1, DType::F32, &Device::Cpu)?,
        );
        let err = fresh.load_state(&bad).unwrap_err().to_string();
        assert!(err.contains("ema.extra") || err.contains("extra"), "{err}");
        assert!(err.contains("w: shape [3], expected [2]"), "{err}");
        assert!(Ema::new(&params, 1.5, true).is_err());
        Ok(())
    }
    #[test]
    fn fused_step_is_bitwise_the_op_by_op_step() -> candle_core::Result<()> {
        let s = Tensor::randn(0f32, 1.0, (5, 333), &Device::Cpu)?;
        let p = Tensor::randn(0f32, 1.0, (5, 333), &Device::Cpu)?;
        for d in [0.1, 0.9999, 1.0] {
            let fused = ema_step(&s, &p, d)?.expect("f32 CPU tensors take the fused path");
            let ops = ema_step_ops(&s, &p, d)?;
            let (a, b) = (
                fused.flatten_all()?.to_vec1::<f32>()?,
                ops.flatten_all()?.to_vec1::<f32>()?,
            );
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "decay {d}"
            );
        }
        Ok(())
    }
}

//! AdamW with PyTorch semantics and a state that can be saved and restored.
//!
//! The update mirrors `torch.optim.AdamW` (`_single_tensor_adamw`, no amsgrad, not maximising)
//! operation by operation, in float32:
//!
//! ```text
//! p.mul_(1 - lr * wd)
//! exp_avg.lerp_(g, 1 - beta1)
//! exp_avg_sq.mul_(beta2).addcmul_(g, g, value = 1 - beta2)
//! denom = exp_avg_sq.sqrt() / sqrt(1 - beta2^k) + eps
//! p.addcdiv_(exp_avg, denom, value = -lr / (1 - beta1^k))
//! ```
//!
//! Every parameter carries its own step count, as in PyTorch: a parameter without a gradient is
//! skipped and its state is left untouched.

use std::collections::{BTreeSet, HashMap, HashSet};

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

use crate::model::kernels::{adamw_step, AdamWCoefficients};

/// Key of the number of `step` calls in [`AdamW::state_tensors`].
pub const STEP_KEY: &str = "optimizer.step";
/// Key prefix of the first moments in [`AdamW::state_tensors`].
pub const EXP_AVG_PREFIX: &str = "optimizer.exp_avg.";
/// Key prefix of the second moments in [`AdamW::state_tensors`].
pub const EXP_AVG_SQ_PREFIX: &str = "optimizer.exp_avg_sq.";
/// Key prefix of the per-parameter step counts in [`AdamW::state_tensors`].
pub const PARAM_STEP_PREFIX: &str = "optimizer.step.";

/// Errors of the optimizer and of gradient clipping.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// The learning rate is negative or not finite.
    #[error("invalid AdamW learning rate {0}: must be a finite number >= 0")]
    InvalidLr(f64),
    /// A beta coefficient is outside [0, 1).
    #[error("invalid AdamW beta{index} = {value}: must be in [0, 1)")]
    InvalidBeta {
        /// Which beta (1 or 2).
        index: u8,
        /// The offending value.
        value: f64,
    },
    /// Epsilon is not strictly positive.
    #[error("invalid AdamW eps {0}: must be a finite number > 0")]
    InvalidEps(f64),
    /// The weight decay is negative or not finite.
    #[error("invalid AdamW weight_decay {0}: must be a finite number >= 0")]
    InvalidWeightDecay(f64),
    /// Two parameters share a name.
    #[error("duplicate parameter name `{0}` given to the optimizer")]
    DuplicateParam(String),
    /// A parameter is not a floating-point tensor.
    #[error("parameter `{name}` has dtype {dtype:?}; the optimizer needs a floating-point tensor")]
    NonFloatParam {
        /// The parameter name.
        name: String,
        /// Its dtype.
        dtype: DType,
    },
    /// A gradient was given for a name the optimizer does not know.
    #[error("gradients given for unknown parameters: {}", .0.join(", "))]
    UnknownGradients(Vec<String>),
    /// A gradient does not have the shape of its parameter.
    #[error("gradient of `{name}` has shape {got:?}, the parameter has shape {expected:?}")]
    GradShape {
        /// The parameter name.
        name: String,
        /// The parameter shape.
        expected: Vec<usize>,
        /// The gradient shape.
        got: Vec<usize>,
    },
    /// A saved state does not match the optimizer's parameters.
    #[error(
        "optimizer state does not match the parameters: missing [{}]; unexpected [{}]; \
         mismatched [{}]",
        missing.join(", "),
        unexpected.join(", "),
        mismatched.join(", ")
    )]
    StateMismatch {
        /// Expected keys that are absent.
        missing: Vec<String>,
        /// Keys that the optimizer does not expect.
        unexpected: Vec<String>,
        /// Keys present with a wrong shape or an invalid value, with details.
        mismatched: Vec<String>,
    },
    /// The global gradient norm is NaN or infinite.
    #[error("non-finite total gradient norm {total_norm} (first non-finite gradient: `{param}`)")]
    NonFiniteGradNorm {
        /// The computed total norm.
        total_norm: f64,
        /// The first parameter (by name) whose gradient norm is not finite.
        param: String,
    },
    /// The clipping threshold is not strictly positive.
    #[error("invalid max_norm {0} for gradient clipping: must be a finite number > 0")]
    InvalidMaxNorm(f64),
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Hyper-parameters of [`AdamW`] (defaults are PyTorch's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay rate of the first moment.
    pub beta1: f64,
    /// Decay rate of the second moment.
    pub beta2: f64,
    /// Term added to the denominator for numerical stability.
    pub eps: f64,
    /// Decoupled weight decay coefficient.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

impl AdamWConfig {
    /// Checks every hyper-parameter, returning the first invalid one as an error.
    pub fn validate(&self) -> Result<(), OptimError> {
        validate_lr(self.lr)?;
        for (index, value) in [(1, self.beta1), (2, self.beta2)] {
            if !(0.0..1.0).contains(&value) {
                return Err(OptimError::InvalidBeta { index, value });
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(OptimError::InvalidEps(self.eps));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(OptimError::InvalidWeightDecay(self.weight_decay));
        }
        Ok(())
    }
}

fn validate_lr(lr: f64) -> Result<(), OptimError> {
    if lr.is_finite() && lr >= 0.0 {
        Ok(())
    } else {
        Err(OptimError::InvalidLr(lr))
    }
}

/// Per-parameter AdamW state.
#[derive(Debug)]
struct ParamState {
    step: u64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// AdamW over named parameters with PyTorch's exact update and a savable state.
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    params: Vec<(String, Var)>,
    state: Vec<ParamState>,
    steps: u64,
}

impl AdamW {
    /// Creates an optimizer with zero moments over `params` (names are PyTorch state_dict names).
    pub fn new(params: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self, OptimError> {
        config.validate()?;
        let mut seen = HashSet::new();
        let mut state = Vec::with_capacity(params.len());
        for (name, var) in &params {
            if !seen.insert(name.as_str()) {
                return Err(OptimError::DuplicateParam(name.clone()));
            }
            if !var.dtype().is_float() {
                return Err(OptimError::NonFloatParam {
                    name: name.clone(),
                    dtype: var.dtype(),
                });
            }
            let zeros = Tensor::zeros(var.shape(), DType::F32, var.device())?;
            state.push(ParamState {
                step: 0,
                exp_avg: zeros.clone(),
                exp_avg_sq: zeros,
            });
        }
        Ok(Self {
            config,
            params,
            state,
            steps: 0,
        })
    }

    /// The current hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// The current learning rate.
    pub fn lr(&self) -> f64 {
        self.config.lr
    }

    /// Sets the learning rate used by the next steps (for LR schedules); rejects invalid values.
    pub fn set_lr(&mut self, lr: f64) -> Result<(), OptimError> {
        validate_lr(lr)?;
        self.config.lr = lr;
        Ok(())
    }

    /// Number of `step` calls so far (restored by [`AdamW::load_state`]).
    pub fn step_count(&self) -> u64 {
        self.steps
    }

    /// The optimised parameters with their names.
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// One update from the gradients of a backward pass; parameters without a gradient are skipped.
    pub fn step(&mut self, grads: &GradStore) -> Result<(), OptimError> {
        let found: Vec<Option<Tensor>> = self
            .params
            .iter()
            .map(|(_, var)| grads.get(var.as_tensor()).cloned())
            .collect();
        self.apply(found)
    }

    /// One update from gradients keyed by parameter name (e.g. all-reduced across ranks).
    ///
    /// Parameters absent from `grads` are skipped; names that are not parameters are an error.
    pub fn step_with(&mut self, grads: &HashMap<String, Tensor>) -> Result<(), OptimError> {
        let known: HashSet<&str> = self.params.iter().map(|(n, _)| n.as_str()).collect();
        let mut unknown: Vec<String> = grads
            .keys()
            .filter(|k| !known.contains(k.as_str()))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            unknown.sort();
            return Err(OptimError::UnknownGradients(unknown));
        }
        let found: Vec<Option<Tensor>> = self
            .params
            .iter()
            .map(|(name, _)| grads.get(name).cloned())
            .collect();
        self.apply(found)
    }

    fn apply(&mut self, grads: Vec<Option<Tensor>>) -> Result<(), OptimError> {
        // Check every shape first so that an error leaves parameters and state untouched.
        for ((name, var), grad) in self.params.iter().zip(&grads) {
            if let Some(g) = grad {
                if g.dims() != var.dims() {
                    return Err(OptimError::GradShape {
                        name: name.clone(),
                        expected: var.dims().to_vec(),
                        got: g.dims().to_vec(),
                    });
                }
            }
        }
        let cfg = self.config;
        let mut updates = Vec::with_capacity(grads.len());
        for (i, grad) in grads.into_iter().enumerate() {
            let Some(grad) = grad else { continue };
            let var = &self.params[i].1;
            let st = &self.state[i];
            let step = st.step + 1;
            let (p, m, v) = adamw_update(&cfg, step, var.as_tensor(), &grad, st)?;
            updates.push((i, step, p, m, v));
        }
        for (i, step, p, m, v) in updates {
            let var = &self.params[i].1;
            var.set(&p.to_dtype(var.dtype())?)?;
            self.state[i] = ParamState {
                step,
                exp_avg: m,
                exp_avg_sq: v,
            };
        }
        self.steps += 1;
        Ok(())
    }

    /// The full optimizer state: `optimizer.step`, and per parameter `optimizer.exp_avg.<name>`,
    /// `optimizer.exp_avg_sq.<name>` (float32) and `optimizer.step.<name>` (i64 scalar).
    pub fn state_tensors(&self) -> Result<HashMap<String, Tensor>, OptimError> {
        let cpu = candle_core::Device::Cpu;
        let mut out = HashMap::with_capacity(3 * self.params.len() + 1);
        out.insert(STEP_KEY.to_string(), Tensor::new(to_i64(self.steps), &cpu)?);
        for ((name, _), st) in self.params.iter().zip(&self.state) {
            out.insert(format!("{EXP_AVG_PREFIX}{name}"), st.exp_avg.clone());
            out.insert(format!("{EXP_AVG_SQ_PREFIX}{name}"), st.exp_avg_sq.clone());
            out.insert(
                format!("{PARAM_STEP_PREFIX}{name}"),
                Tensor::new(to_i64(st.step), &cpu)?,
            );
        }
        Ok(out)
    }

    /// Restores a state produced by [`AdamW::state_tensors`]; on any mismatch nothing is changed.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), OptimError> {
        // (key, expected shape, whether the entry is a step count)
        let mut expected: Vec<(String, Vec<usize>, bool)> =
            vec![(STEP_KEY.to_string(), vec![], true)];
        for (name, var) in &self.params {
            let dims = var.dims().to_vec();
            expected.push((format!("{EXP_AVG_PREFIX}{name}"), dims.clone(), false));
            expected.push((format!("{EXP_AVG_SQ_PREFIX}{name}"), dims, false));
            expected.push((format!("{PARAM_STEP_PREFIX}{name}"), vec![], true));
        }
        let expected_keys: HashSet<&str> = expected.iter().map(|(k, _, _)| k.as_str()).collect();
        let mut missing = Vec::new();
        let mut mismatched = Vec::new();
        for (key, shape, is_step) in &expected {
            match state.get(key) {
                None => missing.push(key.clone()),
                Some(t) if t.dims() != shape.as_slice() => {
                    mismatched.push(format!("{key}: shape {:?}, expected {shape:?}", t.dims()))
                }
                Some(t) if *is_step => {
                    if let Err(why) = read_step(t) {
                        mismatched.push(format!("{key}: {why}"));
                    }
                }
                Some(t) if !t.dtype().is_float() => {
                    mismatched.push(format!("{key}: dtype {:?}, expected a float", t.dtype()))
                }
                Some(_) => {}
            }
        }
        let unexpected: BTreeSet<String> = state
            .keys()
            .filter(|k| !expected_keys.contains(k.as_str()))
            .cloned()
            .collect();
        if !(missing.is_empty() && mismatched.is_empty() && unexpected.is_empty()) {
            return Err(OptimError::StateMismatch {
                missing,
                unexpected: unexpected.into_iter().collect(),
                mismatched,
            });
        }
        let get = |key: String| &state[&key];
        let steps = read_step(get(STEP_KEY.to_string())).map_err(candle_core::Error::msg)?;
        let mut new_state = Vec::with_capacity(self.params.len());
        for (name, var) in &self.params {
            let load = |t: &Tensor| t.to_dtype(DType::F32)?.to_device(var.device())?.copy();
            new_state.push(ParamState {
                step: read_step(get(format!("{PARAM_STEP_PREFIX}{name}")))
                    .map_err(candle_core::Error::msg)?,
                exp_avg: load(get(format!("{EXP_AVG_PREFIX}{name}")))?,
                exp_avg_sq: load(get(format!("{EXP_AVG_SQ_PREFIX}{name}")))?,
            });
        }
        self.state = new_state;
        self.steps = steps;
        Ok(())
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Reads a step count from a scalar tensor of any numeric dtype.
fn read_step(t: &Tensor) -> Result<u64, String> {
    let v = t
        .to_dtype(DType::F64)
        .and_then(|t| t.to_scalar::<f64>())
        .map_err(|e| format!("unreadable step count ({e})"))?;
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 9.0e15 {
        Ok(v as u64)
    } else {
        Err(format!("invalid step count {v}"))
    }
}

/// One AdamW update of a single parameter in float32, in `_single_tensor_adamw`'s op order.
/// Returns the new parameter (float32), exp_avg and exp_avg_sq.
/// The f32 scalars of step `step` (1-based), rounded from f64 as PyTorch rounds them.
fn coefficients(cfg: &AdamWConfig, step: u64) -> AdamWCoefficients {
    let k = step as f64;
    let w = 1.0 - cfg.beta1;
    AdamWCoefficients {
        decay: (1.0 - cfg.lr * cfg.weight_decay) as f32,
        lerp: if w.abs() < 0.5 {
            w as f32
        } else {
            (1.0 - w) as f32
        },
        lerp_from_grad: w.abs() >= 0.5,
        beta2: cfg.beta2 as f32,
        one_minus_beta2: (1.0 - cfg.beta2) as f32,
        bias_correction2_sqrt: (1.0 - cfg.beta2.powf(k)).sqrt() as f32,
        eps: cfg.eps as f32,
        neg_step_size: (-(cfg.lr / (1.0 - cfg.beta1.powf(k)))) as f32,
    }
}

/// One AdamW step of one parameter: the fused one-pass kernel on f32 CPU tensors (unless
/// `FLOWRUN_FUSED=0`), else PyTorch's op sequence; both round identically.
fn adamw_update(
    cfg: &AdamWConfig,
    step: u64,
    param: &Tensor,
    grad: &Tensor,
    st: &ParamState,
) -> Result<(Tensor, Tensor, Tensor), OptimError> {
    let p = param.to_dtype(DType::F32)?;
    let g = grad.to_dtype(DType::F32)?.to_device(param.device())?;
    let fused = adamw_step(
        &p,
        &g,
        &st.exp_avg,
        &st.exp_avg_sq,
        &coefficients(cfg, step),
    )?;
    match fused {
        Some(updated) => Ok(updated),
        None => adamw_update_ops(cfg, step, p, g, st),
    }
}

/// PyTorch's `_single_tensor_adamw` op by op on f32 `p` and `g`.
///
/// Both are detached first: a parameter's gradient from candle's backward still references the
/// step's forward graph, and `exp_avg` built on it would keep every step's activations alive.
fn adamw_update_ops(
    cfg: &AdamWConfig,
    step: u64,
    p: Tensor,
    g: Tensor,
    st: &ParamState,
) -> Result<(Tensor, Tensor, Tensor), OptimError> {
    let (p, g) = (p.detach(), g.detach());
    // Python scalars are computed in double and rounded to float32 by the kernels.
    let f = |x: f64| x as f32 as f64;
    // p.mul_(1 - lr * wd)
    let p = p.affine(f(1.0 - cfg.lr * cfg.weight_decay), 0.0)?;
    // exp_avg.lerp_(g, w) with w = 1 - beta1 < 0.5: exp_avg + w * (g - exp_avg); for w >= 0.5
    // torch uses g - (g - exp_avg) * (1 - w).
    let w = 1.0 - cfg.beta1;
    let diff = (&g - &st.exp_avg)?;
    let m = if w.abs() < 0.5 {
        (&st.exp_avg + diff.affine(f(w), 0.0)?)?
    } else {
        (&g - diff.affine(f(1.0 - w), 0.0)?)?
    };
    // exp_avg_sq.mul_(beta2).addcmul_(g, g, value = 1 - beta2): v + (value * g) * g
    let v = st.exp_avg_sq.affine(f(cfg.beta2), 0.0)?;
    let v = (v + (g.affine(f(1.0 - cfg.beta2), 0.0)? * &g)?)?;
    let k = step as f64;
    let bias_correction1 = 1.0 - cfg.beta1.powf(k);
    let bias_correction2 = 1.0 - cfg.beta2.powf(k);
    let step_size = cfg.lr / bias_correction1;
    let bias_correction2_sqrt = bias_correction2.sqrt();
    // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    let bc2 = Tensor::new(bias_correction2_sqrt as f32, p.device())?;
    let denom = v.sqrt()?.broadcast_div(&bc2)?.affine(1.0, f(cfg.eps))?;
    // p.addcdiv_(exp_avg, denom, value = -step_size): p + (value * m) / denom
    let upd = (m.affine(f(-step_size), 0.0)? / denom)?;
    let p = (p + upd)?;
    Ok((p, m, v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn param(name: &str, vals: &[f32]) -> (String, Var) {
        let v = Var::from_tensor(&Tensor::new(vals, &Device::Cpu).unwrap()).unwrap();
        (name.to_string(), v)
    }

    #[test]
    fn bad_configs_are_errors() {
        let base = AdamWConfig::default();
        assert!(base.validate().is_ok());
        let cases = [
            AdamWConfig { lr: -1.0, ..base },
            AdamWConfig {
                lr: f64::NAN,
                ..base
            },
            AdamWConfig { beta1: 1.0, ..base },
            AdamWConfig {
                beta1: -0.1,
                ..base
            },
            AdamWConfig { beta2: 1.5, ..base },
            AdamWConfig { eps: 0.0, ..base },
            AdamWConfig {
                weight_decay: -0.01,
                ..base
            },
        ];
        for cfg in cases {
            let err = AdamW::new(vec![param("w", &[1.0])], cfg).unwrap_err();
            assert!(!err.to_string().is_empty());
        }
        let mut opt = AdamW::new(vec![param("w", &[1.0])], base).unwrap();
        assert!(matches!(opt.set_lr(-1.0), Err(OptimError::InvalidLr(_))));
        assert!(opt.set_lr(0.5).is_ok());
        assert_eq!(opt.lr(), 0.5);
    }

    #[test]
    fn duplicate_names_and_unknown_grads_are_errors() {
        let cfg = AdamWConfig::default();
        let err = AdamW::new(vec![param("w", &[1.0]), param("w", &[2.0])], cfg).unwrap_err();
        assert!(err.to_string().contains("`w`"));
        let mut opt = AdamW::new(vec![param("w", &[1.0])], cfg).unwrap();
        let mut grads = HashMap::new();
        grads.insert("x".to_string(), Tensor::new(&[1f32], &Device::Cpu).unwrap());
        let err = opt.step_with(&grads).unwrap_err();
        assert!(err.to_string().contains('x'), "{err}");
        let mut grads = HashMap::new();
        grads.insert(
            "w".to_string(),
            Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap(),
        );
        let err = opt.step_with(&grads).unwrap_err();
        assert!(matches!(err, OptimError::GradShape { .. }), "{err}");
        assert_eq!(opt.step_count(), 0);
    }

    #[test]
    fn skipped_param_keeps_its_own_step() {
        let cfg = AdamWConfig::default();
        let mut opt = AdamW::new(vec![param("a", &[1.0]), param("b", &[1.0])], cfg).unwrap();
        let mut grads = HashMap::new();
        grads.insert(
            "a".to_string(),
            Tensor::new(&[0.5f32], &Device::Cpu).unwrap(),
        );
        opt.step_with(&grads).unwrap();
        let b = opt.params()[1].1.as_tensor().to_vec1::<f32>().unwrap();
        assert_eq!(b, vec![1.0]);
        let st = opt.state_tensors().unwrap();
        let step = |k: &str| st[k].to_scalar::<i64>().unwrap();
        assert_eq!(step("optimizer.step"), 1);
        assert_eq!(step("optimizer.step.a"), 1);
        assert_eq!(step("optimizer.step.b"), 0);
    }

    #[test]
    fn gradstore_step_matches_named_step() {
        let cfg = AdamWConfig::default();
        let (name, var) = param("w", &[1.0, -2.0, 3.0]);
        let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
        let store = loss.backward().unwrap();
        let grad = store.get(var.as_tensor()).unwrap().clone();
        let mut a = AdamW::new(vec![(name.clone(), var)], cfg).unwrap();
        a.step(&store).unwrap();
        let mut b = AdamW::new(vec![param("w", &[1.0, -2.0, 3.0])], cfg).unwrap();
        b.step_with(&HashMap::from([(name, grad)])).unwrap();
        let pa = a.params()[0].1.as_tensor().to_vec1::<f32>().unwrap();
        let pb = b.params()[0].1.as_tensor().to_vec1::<f32>().unwrap();
        assert_eq!(pa, pb);
        assert_ne!(pa, vec![1.0, -2.0, 3.0]);
    }
    #[test]
    fn op_by_op_update_keeps_no_autograd_graph() -> Result<(), OptimError> {
        let dev = Device::Cpu;
        let var = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 5), &dev)?)?;
        let other = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 5), &dev)?)?;
        let loss = var.as_tensor().mul(other.as_tensor())?.sum_all()?;
        let grads = loss.backward()?;
        let g = grads
            .get(var.as_tensor())
            .expect("the variable has a gradient");
        assert!(
            g.track_op(),
            "candle's parameter gradient references the forward graph"
        );
        let st = ParamState {
            step: 0,
            exp_avg: Tensor::zeros((4, 5), DType::F32, &dev)?,
            exp_avg_sq: Tensor::zeros((4, 5), DType::F32, &dev)?,
        };
        let (p, m, v) = adamw_update_ops(
            &AdamWConfig::default(),
            1,
            var.as_tensor().clone(),
            g.clone(),
            &st,
        )?;
        assert!(!p.track_op() && !m.track_op() && !v.track_op());
        Ok(())
    }
    #[test]
    fn fused_update_is_bitwise_the_op_by_op_update() -> Result<(), OptimError> {
        let dev = Device::Cpu;
        let shape = (3, 37, 129);
        let p = Tensor::randn(0f32, 1.0, shape, &dev)?;
        let g = Tensor::randn(0f32, 1e-2, shape, &dev)?;
        let st = ParamState {
            step: 6,
            exp_avg: Tensor::randn(0f32, 1e-3, shape, &dev)?,
            exp_avg_sq: Tensor::randn(0f32, 1e-5, shape, &dev)?.abs()?,
        };
        for beta1 in [0.9, 0.3] {
            let cfg = AdamWConfig {
                lr: 3e-4,
                beta1,
                ..AdamWConfig::default()
            };
            let fused = adamw_step(&p, &g, &st.exp_avg, &st.exp_avg_sq, &coefficients(&cfg, 7))?
                .expect("f32 CPU tensors take the fused path");
            let ops = adamw_update_ops(&cfg, 7, p.clone(), g.clone(), &st)?;
            for (a, b) in [(&fused.0, &ops.0), (&fused.1, &ops.1), (&fused.2, &ops.2)] {
                let (a, b) = (
                    a.flatten_all()?.to_vec1::<f32>()?,
                    b.flatten_all()?.to_vec1::<f32>()?,
                );
                let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "beta1 {beta1}: fused and op-by-op updates differ");
            }
        }
        Ok(())
    }
}

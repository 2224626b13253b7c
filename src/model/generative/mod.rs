//! The GenerativeModule: the one place where the network, the probability path and the sampler
//! meet.
//!
//! * [`input`]: the 8-channel network input (context masks, coordinates, noisy target);
//! * [`time`]: training-time draws of `t` and the time scaling;
//! * [`loss`]: MSE against the path's regression target plus the weighted Dice loss;
//! * [`sample`]: sampling masks with an ODE solver, DDIM or DDPM.
//!
//! Randomness comes only from the [`Rng`] handed in: a training step draws its times first, then
//! the Gaussian noise, so equal generator states give bitwise-equal losses.

pub mod error;
pub mod input;
pub mod loss;
pub mod sample;
pub mod time;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use crate::config::schema::ModelSettings;
use crate::model::dit::{reinit_seeded, Dit, DitConfig, POS_EMBED_NAME};
use crate::model::{ModelInput, VelocityModel};
use crate::path::affine::{AffineProbPath, FlowTime};
use crate::path::scheduler::AffineScheduler;
use crate::path::settings::ProbPath;
use crate::rng::Rng;
use crate::sampler::ode::OdeMethod;
use crate::sampler::plan::SamplerPlan;

pub use error::GenerativeError;
pub use input::InputLayout;
pub use loss::LossTerms;
pub use sample::SampleOutput;
pub use time::TimeDistribution;

use loss::{dice_loss, diffusion_clean_prediction, mse};
use time::network_time;

/// Which rows of a data-parallel global batch this process holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSlot {
    /// This rank.
    pub rank: usize,
    /// The number of ranks.
    pub world: usize,
}

impl BatchSlot {
    /// The whole batch, in one process.
    pub const SOLE: BatchSlot = BatchSlot { rank: 0, world: 1 };
}

/// How far inside (0, 1) the flow time is kept when the clean mask is read off a velocity.
const CLEAN_PREDICTION_T_MARGIN: f32 = 1e-4;

/// Everything a [`GenerativeModule`] is built from, resolved from `model.*`.
#[derive(Debug, Clone)]
pub struct GenerativeConfig {
    /// The network.
    pub net: DitConfig,
    /// The probability path.
    pub path: ProbPath,
    /// The default sampler (`model.sampler`).
    pub sampler: SamplerPlan,
    /// Factor applied to `t` before the network sees it.
    pub time_scale: f64,
    /// How training times are drawn.
    pub time_distribution: TimeDistribution,
    /// Weight of the auxiliary Dice loss.
    pub aux_loss_weight: f64,
    /// Whether validation and sampling use the EMA weights.
    pub ema_for_eval: bool,
}

impl GenerativeConfig {
    /// The module `model.*` describes.
    pub fn from_settings(s: &ModelSettings) -> Result<Self, GenerativeError> {
        let path = ProbPath::from_settings(&s.path)?;
        let sampler = SamplerPlan::from_settings(&s.sampler, &path)?;
        let config = Self {
            net: DitConfig::from(&s.net),
            path,
            sampler,
            time_scale: s.time_scale,
            time_distribution: TimeDistribution::from_settings(s)?,
            aux_loss_weight: s.aux_loss_weight,
            ema_for_eval: s.ema_for_eval,
        };
        config.validate()?;
        Ok(config)
    }

    /// CondOT flow matching on `net`: uniform times, `t * 1000`, no Dice term, 20 Euler steps.
    pub fn flow_matching(net: DitConfig) -> Self {
        Self {
            net,
            path: ProbPath::Affine(AffineProbPath::new(AffineScheduler::CondOt)),
            sampler: SamplerPlan::Ode {
                method: OdeMethod::Euler,
                steps: 20,
                atol: 1e-5,
                rtol: 1e-5,
                max_steps: 10_000,
            },
            time_scale: 1000.0,
            time_distribution: TimeDistribution::Uniform,
            aux_loss_weight: 0.0,
            ema_for_eval: true,
        }
    }

    /// Checks the scalar settings and the network sizes.
    pub fn validate(&self) -> Result<(), GenerativeError> {
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            return Err(GenerativeError::InvalidSetting {
                key: "model.time_scale",
                message: format!(
                    "must be a finite number > 0, got {}; use 1000.0 for flow matching and 1.0 \
                     for diffusion timesteps",
                    self.time_scale
                ),
            });
        }
        if !(self.aux_loss_weight.is_finite() && self.aux_loss_weight >= 0.0) {
            return Err(GenerativeError::InvalidSetting {
                key: "model.aux_loss_weight",
                message: format!(
                    "must be a finite number >= 0, got {}; set 0.0 to turn the Dice loss off",
                    self.aux_loss_weight
                ),
            });
        }
        self.net.validate()?;
        Ok(())
    }
}

/// Where the network weights live.
#[derive(Clone)]
enum Weights {
    /// Trainable f32 variables.
    Trainable(VarMap),
    /// Fixed tensors (e.g. the EMA weights), named as in the `state_dict`.
    Frozen(HashMap<String, Tensor>),
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Weights::Trainable(varmap) => {
                write!(f, "Trainable({} variables)", varmap.all_vars().len())
            }
            Weights::Frozen(tensors) => write!(f, "Frozen({} tensors)", tensors.len()),
        }
    }
}

/// A DiT trained along a probability path, with its parameters.
#[derive(Debug, Clone)]
pub struct GenerativeModule {
    config: GenerativeConfig,
    net: Dit,
    weights: Weights,
    layout: InputLayout,
    compute_dtype: DType,
    device: Device,
}

impl GenerativeModule {
    /// A freshly initialised module (DiT reference init drawn from `rng`, f32 weights) for
    /// `model.*`.
    pub fn new(
        settings: &ModelSettings,
        device: &Device,
        rng: &mut Rng,
    ) -> Result<Self, GenerativeError> {
        Self::from_config(GenerativeConfig::from_settings(settings)?, device, rng)
    }

    /// A freshly initialised module for a resolved config, its weights drawn from `rng`.
    pub fn from_config(
        config: GenerativeConfig,
        device: &Device,
        rng: &mut Rng,
    ) -> Result<Self, GenerativeError> {
        config.validate()?;
        let varmap = VarMap::new();
        let net = Dit::init(&config.net, &varmap, device)?;
        reinit_seeded(&config.net, &varmap, rng)?;
        Self::assemble(config, net, Weights::Trainable(varmap), device)
    }

    /// A frozen module (no trainable parameters) whose network has the weights `tensors`, e.g. the
    /// EMA weights; the names are checked strictly.
    pub fn frozen(
        config: GenerativeConfig,
        tensors: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self, GenerativeError> {
        config.validate()?;
        let net = Dit::from_tensors(&config.net, tensors.clone(), device)?;
        Self::assemble(config, net, Weights::Frozen(tensors), device)
    }

    fn assemble(
        config: GenerativeConfig,
        net: Dit,
        weights: Weights,
        device: &Device,
    ) -> Result<Self, GenerativeError> {
        let layout = InputLayout::new(
            config.net.in_channels,
            config.net.out_channels,
            config.net.input_size,
            device,
        )?;
        Ok(Self {
            config,
            net,
            weights,
            layout,
            compute_dtype: DType::F32,
            device: device.clone(),
        })
    }

    /// A frozen copy with the same config and compute dtype, holding the weights `tensors`.
    pub fn with_weights(&self, tensors: HashMap<String, Tensor>) -> Result<Self, GenerativeError> {
        let mut module = Self::frozen(self.config.clone(), tensors, &self.device)?;
        module.compute_dtype = self.compute_dtype;
        Ok(module)
    }

    /// The resolved config.
    pub fn config(&self) -> &GenerativeConfig {
        &self.config
    }

    /// The network.
    pub fn net(&self) -> &Dit {
        &self.net
    }

    /// The variables of a trainable module (`None` for a frozen one).
    pub fn varmap(&self) -> Option<&VarMap> {
        match &self.weights {
            Weights::Trainable(varmap) => Some(varmap),
            Weights::Frozen(_) => None,
        }
    }

    /// Whether the module has trainable parameters.
    pub fn is_trainable(&self) -> bool {
        matches!(self.weights, Weights::Trainable(_))
    }

    /// The input layout (channel counts, image side, coordinate channels).
    pub fn layout(&self) -> &InputLayout {
        &self.layout
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype the network computes in (f32 unless a mixed precision was applied).
    pub fn compute_dtype(&self) -> DType {
        self.compute_dtype
    }

    /// Computes the network in `dtype` over the f32 master weights (see
    /// [`crate::model::precision`]); the loss is always reduced in f32.
    pub fn set_compute_dtype(&mut self, dtype: DType) -> Result<(), GenerativeError> {
        if !dtype.is_float() {
            return Err(GenerativeError::InvalidSetting {
                key: "trainer.precision",
                message: format!("the network cannot compute in {dtype:?}; use f32, bf16 or f16"),
            });
        }
        self.compute_dtype = dtype;
        Ok(())
    }

    /// The trainable parameters with their PyTorch names, in `state_dict` order (for AdamW).
    pub fn parameters(&self) -> Vec<(String, Var)> {
        let Weights::Trainable(varmap) = &self.weights else {
            return Vec::new();
        };
        let vars = match varmap.data().lock() {
            Ok(vars) => vars.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        self.config
            .net
            .param_names()
            .into_iter()
            .filter_map(|name| vars.get(&name).map(|v| (name, v.clone())))
            .collect()
    }

    /// The trainable weights by name, as tensors (those of the variables for a trainable module,
    /// so that gradients reach them), `pos_embed` excluded.
    pub fn weight_tensors(&self) -> HashMap<String, Tensor> {
        match &self.weights {
            Weights::Trainable(_) => self
                .parameters()
                .into_iter()
                .map(|(n, v)| (n, v.as_tensor().clone()))
                .collect(),
            Weights::Frozen(tensors) => tensors
                .iter()
                .filter(|(n, _)| n.as_str() != POS_EMBED_NAME)
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect(),
        }
    }

    /// The network weights with PyTorch names in `state_dict` order, `pos_embed` first and
    /// included (so PyTorch's strict `load_state_dict` accepts a file of them).
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut weights = self.weight_tensors();
        let mut out = vec![(POS_EMBED_NAME.to_string(), self.net.pos_embed().clone())];
        for name in self.config.net.param_names() {
            if let Some(t) = weights.remove(&name) {
                out.push((name, t.detach()));
            }
        }
        out
    }

    /// The network output for an assembled input `(B, in, H, W)` and network times `(B,)`, in f32.
    pub(crate) fn forward_net(&self, x: &Tensor, t: &Tensor) -> candle_core::Result<Tensor> {
        if self.compute_dtype == DType::F32 {
            let x = x.to_dtype(DType::F32)?;
            return self.net.forward(&ModelInput { x, t: t.clone() });
        }
        let vb = VarBuilder::from_tensors(self.weight_tensors(), self.compute_dtype, &self.device);
        let half = Dit::new(&self.config.net, vb).map_err(|e| match e {
            crate::model::dit::DitError::Candle(e) => e,
            other => candle_core::Error::Msg(other.to_string()),
        })?;
        let x = x.to_dtype(self.compute_dtype)?;
        half.forward(&ModelInput { x, t: t.clone() })?
            .to_dtype(DType::F32)
    }

    /// The network prediction for `context`, a noisy target and network times `(B,)`, in f32.
    pub fn predict(
        &self,
        context: &Tensor,
        noisy: &Tensor,
        t_net: &Tensor,
    ) -> Result<Tensor, GenerativeError> {
        let x = self.layout.assemble(context, noisy)?;
        let batch = x.dim(0)?;
        if t_net.dims() != [batch] {
            return Err(GenerativeError::BadShape {
                what: "t",
                expected: format!("({batch},) (one network time per sample)"),
                got: t_net.dims().to_vec(),
            });
        }
        Ok(self.forward_net(&x, &t_net.to_dtype(DType::F32)?)?)
    }

    /// The training loss of a batch: context `(B, C, H, W)`, target masks `(B, 1, H, W)` in
    /// [-1, 1]. Draws the times, then the noise, from `rng`.
    pub fn loss(
        &self,
        context: &Tensor,
        target: &Tensor,
        rng: &mut Rng,
    ) -> Result<LossTerms, GenerativeError> {
        self.loss_in_global_batch(context, target, rng, BatchSlot::SOLE)
    }

    /// The loss of this rank's rows of a data-parallel global batch: the times and the noise are
    /// drawn for all `B × world` rows, exactly as one process would for the whole batch, and rows
    /// `rank, rank + world, …` are kept (the rows the sampler gives this rank). So a data-parallel
    /// run sees the draws of a one-process run with a `world`-times larger batch, and every
    /// rank's `rng` stays in the same state.
    pub fn loss_in_global_batch(
        &self,
        context: &Tensor,
        target: &Tensor,
        rng: &mut Rng,
        slot: BatchSlot,
    ) -> Result<LossTerms, GenerativeError> {
        let batch = self.layout.check_context(context)?;
        self.layout.check_target(target, batch)?;
        let dev = &self.device;
        let global = batch * slot.world;
        let rows = (slot.world > 1)
            .then(|| {
                let idx: Vec<u32> = (0..batch)
                    .map(|k| (slot.rank + k * slot.world) as u32)
                    .collect();
                Tensor::from_vec(idx, batch, dev)
            })
            .transpose()?;
        let mine = |t: Tensor| -> Result<Tensor, GenerativeError> {
            Ok(match &rows {
                Some(idx) => t.index_select(idx, 0)?,
                None => t,
            })
        };
        let mut global_dims = target.dims().to_vec();
        global_dims[0] = global;
        let clean = target.to_dtype(DType::F32)?.to_device(dev)?;
        let context = context.to_device(dev)?;
        let (prediction, regression_target, clean_prediction) = match &self.config.path {
            ProbPath::Affine(path) => {
                let t = mine(self.config.time_distribution.flow_times(global, rng, dev)?)?;
                let x_0 = mine(rng.randn(global_dims.as_slice(), dev)?)?;
                let sample = path.sample(&x_0, &clean, &FlowTime::new(t.clone())?)?;
                let out = self.predict(
                    &context,
                    &sample.x_t,
                    &network_time(&t, self.config.time_scale)?,
                )?;
                // The clean prediction divides by scheduler terms that vanish at t = 0 or 1 for
                // some schedulers; the Dice term reads it at t kept just inside (0, 1).
                let t_column = t
                    .clamp(CLEAN_PREDICTION_T_MARGIN, 1.0 - CLEAN_PREDICTION_T_MARGIN)?
                    .reshape((batch, 1, 1, 1))?;
                let x1_hat = path.velocity_to_target(&out, &sample.x_t, &t_column)?;
                (out, sample.dx_t, x1_hat)
            }
            ProbPath::Diffusion {
                schedule,
                prediction_type,
            } => {
                let ts = mine(self.config.time_distribution.timesteps(
                    global,
                    schedule.num_train_timesteps(),
                    rng,
                    dev,
                )?)?;
                let noise = mine(rng.randn(global_dims.as_slice(), dev)?)?;
                let noisy = schedule.add_noise(&clean, &noise, &ts)?;
                let out = self.predict(
                    &context,
                    &noisy,
                    &network_time(&ts, self.config.time_scale)?,
                )?;
                let target = schedule.training_target(*prediction_type, &clean, &noise, &ts)?;
                let x0_hat = diffusion_clean_prediction(
                    schedule,
                    *prediction_type,
                    &noisy,
                    &out,
                    &ts.to_vec1::<i64>()?,
                )?;
                (out, target, x0_hat)
            }
        };
        let mse = mse(&prediction, &regression_target)?;
        let dice = dice_loss(&clean_prediction, &clean)?;
        let dice = if self.config.aux_loss_weight > 0.0 {
            dice
        } else {
            dice.detach()
        };
        LossTerms::combine(mse, dice, self.config.aux_loss_weight)
    }
}

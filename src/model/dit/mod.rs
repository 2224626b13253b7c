//! DiT (Peebles & Xie, facebookresearch/DiT `models.py`) without the class-label embedder.
//!
//! Parameter paths equal the PyTorch `state_dict` names, so a reference checkpoint loads through
//! [`VarBuilder::from_tensors`] and a [`VarMap`] trains the same tensors. The frozen 2-D sin-cos
//! `pos_embed` is computed, not stored as a variable; a checkpoint may still carry it.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::{ModelInput, VelocityModel};
use crate::config::schema::DiTSettings;

mod init;
mod layers;

pub use init::reinit_seeded;

pub use layers::{pos_embed_2d, timestep_embedding};
use layers::{DitBlock, FinalLayer, PatchEmbed, TimestepEmbedder};

/// Size of the sinusoidal timestep embedding fed to the timestep MLP.
pub const FREQUENCY_EMBEDDING_SIZE: usize = 256;
/// Epsilon of every LayerNorm in the network.
const LN_EPS: f64 = 1e-6;
/// Name of the frozen positional table a PyTorch checkpoint carries next to the parameters.
pub const POS_EMBED_NAME: &str = "pos_embed";

/// Errors from building or loading a [`Dit`].
#[derive(Debug, thiserror::Error)]
pub enum DitError {
    /// The configuration cannot describe a DiT.
    #[error("invalid DiT config: {0}")]
    InvalidConfig(String),
    /// A checkpoint's tensor names differ from the model's parameter names.
    #[error("DiT checkpoint names do not match the model: missing {missing:?}, unexpected {unexpected:?}")]
    KeyMismatch {
        /// Parameters the model needs that the checkpoint lacks.
        missing: Vec<String>,
        /// Tensors in the checkpoint the model does not have.
        unexpected: Vec<String>,
    },
    /// A tensor operation failed (wrong shape, dtype, I/O, ...).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Hyper-parameters of a [`Dit`].
#[derive(Debug, Clone, PartialEq)]
pub struct DitConfig {
    /// Height and width of the (square) input image.
    pub input_size: usize,
    /// Side of a square patch; kernel and stride of the patch embedding.
    pub patch_size: usize,
    /// Channels of the network input.
    pub in_channels: usize,
    /// Channels of the prediction.
    pub out_channels: usize,
    /// Token width.
    pub hidden_size: usize,
    /// Number of DiT blocks.
    pub depth: usize,
    /// Attention heads per block.
    pub num_heads: usize,
    /// MLP hidden width as a multiple of `hidden_size` (truncated like `int(hidden * ratio)`).
    pub mlp_ratio: f64,
}

impl From<&DiTSettings> for DitConfig {
    /// The network that `model.net` describes (the map from the config schema).
    fn from(s: &DiTSettings) -> Self {
        DitConfig {
            input_size: s.input_size,
            patch_size: s.patch_size,
            in_channels: s.in_channels,
            out_channels: s.out_channels,
            hidden_size: s.hidden_size,
            depth: s.depth,
            num_heads: s.num_heads,
            mlp_ratio: s.mlp_ratio,
        }
    }
}

impl DitConfig {
    fn preset(
        input_size: usize,
        patch_size: usize,
        hidden: usize,
        depth: usize,
        heads: usize,
    ) -> Self {
        Self {
            input_size,
            patch_size,
            in_channels: 8,
            out_channels: 1,
            hidden_size: hidden,
            depth,
            num_heads: heads,
            mlp_ratio: 4.0,
        }
    }

    /// A tiny test network: input 32, patch 4, hidden 64, depth 2, 2 heads.
    pub fn tiny() -> Self {
        Self::preset(32, 4, 64, 2, 2)
    }

    /// DiT-S/2 at input 64: hidden 384, depth 12, 6 heads.
    pub fn s() -> Self {
        Self::preset(64, 2, 384, 12, 6)
    }

    /// DiT-B/2 at input 64: hidden 768, depth 12, 12 heads.
    pub fn b() -> Self {
        Self::preset(64, 2, 768, 12, 12)
    }

    /// DiT-L/2 at input 64: hidden 1024, depth 24, 16 heads.
    pub fn l() -> Self {
        Self::preset(64, 2, 1024, 24, 16)
    }

    /// A CPU-trainable network: input 32, patch 4, hidden 128, depth 4, 4 heads.
    pub fn cpu_small() -> Self {
        Self::preset(32, 4, 128, 4, 4)
    }

    /// The NAMO 64x64 network: input 64, patch 4, hidden 256, depth 6, 4 heads.
    pub fn namo64() -> Self {
        Self::preset(64, 4, 256, 6, 4)
    }

    /// Checks that every size is positive and the divisibility rules hold.
    pub fn validate(&self) -> Result<(), DitError> {
        let bad = |m: String| Err(DitError::InvalidConfig(m));
        for (name, v) in [
            ("input_size", self.input_size),
            ("patch_size", self.patch_size),
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("hidden_size", self.hidden_size),
            ("depth", self.depth),
            ("num_heads", self.num_heads),
        ] {
            if v == 0 {
                return bad(format!("{name} must be > 0"));
            }
        }
        if self.input_size % self.patch_size != 0 {
            return bad(format!(
                "input_size {} is not divisible by patch_size {}",
                self.input_size, self.patch_size
            ));
        }
        if self.hidden_size % self.num_heads != 0 {
            return bad(format!(
                "hidden_size {} is not divisible by num_heads {}",
                self.hidden_size, self.num_heads
            ));
        }
        if self.hidden_size % 4 != 0 {
            return bad(format!(
                "hidden_size {} must be divisible by 4 for the 2-D sin-cos position table",
                self.hidden_size
            ));
        }
        if !(self.mlp_ratio.is_finite() && self.mlp_ratio > 0.0) || self.mlp_hidden() == 0 {
            return bad(format!("mlp_ratio {} gives an empty MLP", self.mlp_ratio));
        }
        Ok(())
    }

    /// Patches per side.
    pub fn grid_size(&self) -> usize {
        self.input_size / self.patch_size
    }

    /// Tokens per image.
    pub fn num_patches(&self) -> usize {
        self.grid_size() * self.grid_size()
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// Hidden width of the block MLPs, `int(hidden_size * mlp_ratio)`.
    pub fn mlp_hidden(&self) -> usize {
        (self.hidden_size as f64 * self.mlp_ratio) as usize
    }

    /// The trainable parameter names (PyTorch `state_dict` names minus `pos_embed`).
    pub fn param_names(&self) -> Vec<String> {
        let mut names: Vec<String> = [
            "x_embedder.proj.weight",
            "x_embedder.proj.bias",
            "t_embedder.mlp.0.weight",
            "t_embedder.mlp.0.bias",
            "t_embedder.mlp.2.weight",
            "t_embedder.mlp.2.bias",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for i in 0..self.depth {
            for l in [
                "attn.qkv",
                "attn.proj",
                "mlp.fc1",
                "mlp.fc2",
                "adaLN_modulation.1",
            ] {
                names.push(format!("blocks.{i}.{l}.weight"));
                names.push(format!("blocks.{i}.{l}.bias"));
            }
        }
        for l in ["final_layer.linear", "final_layer.adaLN_modulation.1"] {
            names.push(format!("{l}.weight"));
            names.push(format!("{l}.bias"));
        }
        names
    }
}

/// Compares checkpoint names with `cfg.param_names()`; `pos_embed` may be present or not.
pub fn check_keys<'a>(
    cfg: &DitConfig,
    found: impl IntoIterator<Item = &'a String>,
) -> Result<(), DitError> {
    let expected: BTreeSet<String> = cfg.param_names().into_iter().collect();
    let found: BTreeSet<&String> = found.into_iter().collect();
    let missing: Vec<String> = expected
        .iter()
        .filter(|n| !found.contains(n))
        .cloned()
        .collect();
    let unexpected: Vec<String> = found
        .iter()
        .filter(|n| !expected.contains(n.as_str()) && n.as_str() != POS_EMBED_NAME)
        .map(|n| n.to_string())
        .collect();
    if missing.is_empty() && unexpected.is_empty() {
        Ok(())
    } else {
        Err(DitError::KeyMismatch {
            missing,
            unexpected,
        })
    }
}

/// Loads a safetensors checkpoint into the variables of `varmap`, with a strict name check.
pub fn load_varmap(
    cfg: &DitConfig,
    varmap: &VarMap,
    path: impl AsRef<Path>,
) -> Result<(), DitError> {
    let data = candle_core::safetensors::load(path.as_ref(), &Device::Cpu)?;
    check_keys(cfg, data.keys())?;
    let vars = varmap.data().lock().map_err(|_| {
        DitError::Candle(candle_core::Error::Msg("VarMap lock poisoned".to_string()))
    })?;
    check_keys(cfg, vars.keys())?;
    for (name, var) in vars.iter() {
        if let Some(t) = data.get(name) {
            let t = t.to_device(var.device())?.to_dtype(var.dtype())?;
            var.set(&t)
                .map_err(|e| candle_core::Error::Msg(format!("setting {name}: {e}")))?;
        }
    }
    Ok(())
}

/// Intermediate tensors of one forward pass, named after the golden `act.*` entries.
#[derive(Debug, Clone)]
pub struct Activations {
    /// Sinusoidal timestep features `(B, 256)`.
    pub t_freq: Tensor,
    /// Patch embedding plus position table `(B, T, hidden)`.
    pub x_embed: Tensor,
    /// Conditioning vector `(B, hidden)`.
    pub c: Tensor,
    /// Output of every block `(B, T, hidden)`.
    pub blocks: Vec<Tensor>,
    /// Final-layer tokens before unpatchify `(B, T, patch*patch*out)`.
    pub final_tokens: Tensor,
}

/// The DiT velocity network.
#[derive(Debug, Clone)]
pub struct Dit {
    cfg: DitConfig,
    x_embedder: PatchEmbed,
    pos_embed: Tensor,
    t_embedder: TimestepEmbedder,
    blocks: Vec<DitBlock>,
    final_layer: FinalLayer,
}

impl Dit {
    /// Builds the network from `vb`; with a `VarMap`-backed builder the reference init is used.
    pub fn new(cfg: &DitConfig, vb: VarBuilder) -> Result<Self, DitError> {
        cfg.validate()?;
        let pos_embed =
            pos_embed_2d(cfg.hidden_size, cfg.grid_size(), vb.device())?.to_dtype(vb.dtype())?;
        let blocks = (0..cfg.depth)
            .map(|i| DitBlock::new(cfg, vb.pp("blocks").pp(i)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            x_embedder: PatchEmbed::new(cfg, vb.pp("x_embedder").pp("proj"))?,
            pos_embed,
            t_embedder: TimestepEmbedder::new(cfg, vb.pp("t_embedder"))?,
            blocks,
            final_layer: FinalLayer::new(cfg, vb.pp("final_layer"))?,
        })
    }

    /// Creates freshly initialised f32 variables in `varmap` (DiT `initialize_weights`).
    pub fn init(cfg: &DitConfig, varmap: &VarMap, device: &Device) -> Result<Self, DitError> {
        Self::new(cfg, VarBuilder::from_varmap(varmap, DType::F32, device))
    }

    /// Builds a frozen f32 network from named tensors after a strict name check.
    pub fn from_tensors(
        cfg: &DitConfig,
        tensors: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self, DitError> {
        check_keys(cfg, tensors.keys())?;
        Self::new(cfg, VarBuilder::from_tensors(tensors, DType::F32, device))
    }

    /// Loads a frozen f32 network from a safetensors checkpoint after a strict name check.
    pub fn load_safetensors(
        cfg: &DitConfig,
        path: impl AsRef<Path>,
        device: &Device,
    ) -> Result<Self, DitError> {
        let tensors = candle_core::safetensors::load(path.as_ref(), device)?;
        Self::from_tensors(cfg, tensors, device)
    }

    /// The configuration this network was built with.
    pub fn config(&self) -> &DitConfig {
        &self.cfg
    }

    /// The computed position table `(1, T, hidden)`.
    pub fn pos_embed(&self) -> &Tensor {
        &self.pos_embed
    }

    /// `(N, T, p*p*C)` tokens → `(N, C, H, W)` images (`einsum nhwpqc->nchpwq`).
    fn unpatchify(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (p, c, g) = (
            self.cfg.patch_size,
            self.cfg.out_channels,
            self.cfg.grid_size(),
        );
        let n = x.dim(0)?;
        x.reshape((n, g, g, p, p, c))?
            .permute((0, 5, 1, 3, 2, 4))?
            .contiguous()?
            .reshape((n, c, g * p, g * p))
    }

    fn check_input(&self, input: &ModelInput) -> candle_core::Result<()> {
        let (b, c, h, w) = input.x.dims4()?;
        let cfg = &self.cfg;
        if c != cfg.in_channels || h != cfg.input_size || w != cfg.input_size {
            candle_core::bail!(
                "DiT input x has shape {:?}, expected (B, {}, {}, {})",
                input.x.dims(),
                cfg.in_channels,
                cfg.input_size,
                cfg.input_size
            );
        }
        if input.t.dims() != [b] {
            candle_core::bail!(
                "DiT input t has shape {:?}, expected ({b},)",
                input.t.dims()
            );
        }
        Ok(())
    }

    /// The prediction together with the intermediate activations.
    pub fn forward_with_activations(
        &self,
        input: &ModelInput,
    ) -> candle_core::Result<(Tensor, Activations)> {
        self.check_input(input)?;
        let x_embed = self
            .x_embedder
            .forward(&input.x)?
            .broadcast_add(&self.pos_embed)?;
        let (t_freq, c) = self.t_embedder.forward(&input.t)?;
        let mut blocks = Vec::with_capacity(self.blocks.len());
        let mut x = x_embed.clone();
        for block in &self.blocks {
            x = block.forward(&x, &c)?;
            blocks.push(x.clone());
        }
        let final_tokens = self.final_layer.forward(&x, &c)?;
        let out = self.unpatchify(&final_tokens)?;
        Ok((
            out,
            Activations {
                t_freq,
                x_embed,
                c,
                blocks,
                final_tokens,
            },
        ))
    }
}

impl VelocityModel for Dit {
    fn forward(&self, input: &ModelInput) -> candle_core::Result<Tensor> {
        Ok(self.forward_with_activations(input)?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(cfg: &DitConfig, b: usize) -> candle_core::Result<ModelInput> {
        let d = Device::Cpu;
        let s = cfg.input_size;
        Ok(ModelInput {
            x: Tensor::randn(0f32, 1.0, (b, cfg.in_channels, s, s), &d)?,
            t: Tensor::rand(0f32, 1000.0, b, &d)?,
        })
    }

    #[test]
    fn presets_validate() {
        for cfg in [
            DitConfig::tiny(),
            DitConfig::s(),
            DitConfig::b(),
            DitConfig::l(),
            DitConfig::cpu_small(),
            DitConfig::namo64(),
        ] {
            assert!(cfg.validate().is_ok(), "{cfg:?}");
        }
    }

    #[test]
    fn bad_configs_are_rejected() {
        let mutations: [fn(&mut DitConfig); 6] = [
            |c| c.patch_size = 5,
            |c| c.num_heads = 3,
            |c| c.depth = 0,
            |c| c.hidden_size = 0,
            |c| c.mlp_ratio = 0.0,
            |c| (c.hidden_size, c.num_heads) = (66, 2),
        ];
        let cases = mutations.map(|m| {
            let mut cfg = DitConfig::tiny();
            m(&mut cfg);
            cfg
        });
        for cfg in cases {
            let err = cfg.validate().unwrap_err();
            assert!(matches!(err, DitError::InvalidConfig(_)), "{err}");
            let vm = VarMap::new();
            assert!(Dit::init(&cfg, &vm, &Device::Cpu).is_err());
        }
    }

    #[test]
    fn fresh_model_outputs_zero_with_right_shapes() -> Result<(), DitError> {
        let cfg = DitConfig::tiny();
        let vm = VarMap::new();
        let dit = Dit::init(&cfg, &vm, &Device::Cpu)?;
        let n_params: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
        let mut names: Vec<String> = vm
            .data()
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        let mut expected = cfg.param_names();
        expected.sort();
        assert_eq!(names, expected);
        assert!(n_params > 0);
        let (out, act) = dit.forward_with_activations(&input(&cfg, 3)?)?;
        assert_eq!(
            out.dims(),
            [3, cfg.out_channels, cfg.input_size, cfg.input_size]
        );
        assert_eq!(act.blocks.len(), cfg.depth);
        assert_eq!(act.x_embed.dims(), [3, cfg.num_patches(), cfg.hidden_size]);
        let max = out.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert_eq!(max, 0.0);
        // The adaLN-Zero blocks are the identity at init.
        let diff = (&act.blocks[1] - &act.x_embed)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
        // t_embedder weights are N(0, 0.02), not zero: c must depend on t.
        assert!(act.c.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()? > 0.0);
        Ok(())
    }

    #[test]
    fn init_follows_the_reference_scheme() -> Result<(), DitError> {
        let cfg = DitConfig::cpu_small();
        let vm = VarMap::new();
        Dit::init(&cfg, &vm, &Device::Cpu)?;
        let vars = vm.data().lock().map(|m| m.clone()).unwrap_or_default();
        let stat = |name: &str| -> candle_core::Result<(f32, f32)> {
            let t = vars[name].as_tensor().flatten_all()?;
            let max = t.abs()?.max(0)?.to_scalar::<f32>()?;
            let std = t.sqr()?.mean_all()?.sqrt()?.to_scalar::<f32>()?;
            Ok((max, std))
        };
        let (d, c, p) = (cfg.hidden_size, cfg.in_channels, cfg.patch_size);
        for (name, fan_in, fan_out) in [
            ("x_embedder.proj.weight", c * p * p, d),
            ("blocks.0.attn.qkv.weight", d, 3 * d),
            ("blocks.1.mlp.fc1.weight", d, cfg.mlp_hidden()),
            ("blocks.3.attn.proj.weight", d, d),
        ] {
            let bound = (6.0 / (fan_in + fan_out) as f32).sqrt();
            let (max, std) = stat(name)?;
            assert!(
                max <= bound && max > 0.9 * bound,
                "{name}: max {max} bound {bound}"
            );
            assert!(
                (std - bound / 3f32.sqrt()).abs() < 0.1 * bound,
                "{name}: std {std}"
            );
        }
        for name in ["t_embedder.mlp.0.weight", "t_embedder.mlp.2.weight"] {
            let (_, std) = stat(name)?;
            assert!((std - 0.02).abs() < 0.003, "{name}: std {std}");
        }
        for name in [
            "x_embedder.proj.bias",
            "t_embedder.mlp.0.bias",
            "blocks.0.attn.qkv.bias",
            "blocks.2.adaLN_modulation.1.weight",
            "blocks.2.adaLN_modulation.1.bias",
            "final_layer.adaLN_modulation.1.weight",
            "final_layer.linear.weight",
            "final_layer.linear.bias",
        ] {
            assert_eq!(stat(name)?.0, 0.0, "{name} must start at zero");
        }
        Ok(())
    }

    #[test]
    fn bad_input_shape_is_an_error() -> Result<(), DitError> {
        let cfg = DitConfig::tiny();
        let dit = Dit::init(&cfg, &VarMap::new(), &Device::Cpu)?;
        let mut inp = input(&cfg, 2)?;
        inp.x = Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu)?;
        assert!(dit.forward(&inp).is_err());
        Ok(())
    }

    #[test]
    fn key_check_lists_missing_and_unexpected() {
        let cfg = DitConfig::tiny();
        let mut names = cfg.param_names();
        names.retain(|n| n != "final_layer.linear.bias");
        names.push("y_embedder.embedding_table.weight".to_string());
        match check_keys(&cfg, names.iter()) {
            Err(DitError::KeyMismatch {
                missing,
                unexpected,
            }) => {
                assert_eq!(missing, vec!["final_layer.linear.bias".to_string()]);
                assert_eq!(
                    unexpected,
                    vec!["y_embedder.embedding_table.weight".to_string()]
                );
            }
            other => panic!("expected KeyMismatch, got {other:?}"),
        }
    }
}

//! The building blocks of the DiT: embeddings, attention, MLP, the adaLN-Zero block and the
//! final layer, each a small `new(.., vb)` + `forward` pair named like the PyTorch modules.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, Linear, VarBuilder};

use super::{DitConfig, FREQUENCY_EMBEDDING_SIZE, LN_EPS};
use crate::model::kernels;

/// The fixed 2-D sin-cos position table `(1, grid*grid, embed_dim)` of DiT/MAE (computed in f64).
pub fn pos_embed_2d(
    embed_dim: usize,
    grid_size: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    if embed_dim % 4 != 0 {
        candle_core::bail!("pos_embed_2d: embed_dim {embed_dim} is not divisible by 4");
    }
    let quarter = embed_dim / 4;
    let omega: Vec<f64> = (0..quarter)
        .map(|d| 1.0 / 10000f64.powf(d as f64 / quarter as f64))
        .collect();
    let mut data = Vec::with_capacity(grid_size * grid_size * embed_dim);
    for i in 0..grid_size {
        for j in 0..grid_size {
            // First half encodes the column (np.meshgrid(w, h)[0]), second half the row.
            for pos in [j as f64, i as f64] {
                data.extend(omega.iter().map(|w| (pos * w).sin() as f32));
                data.extend(omega.iter().map(|w| (pos * w).cos() as f32));
            }
        }
    }
    Tensor::from_vec(data, (1, grid_size * grid_size, embed_dim), device)
}

/// Sinusoidal timestep features `(batch, dim)` = `[cos(t f), sin(t f)]`, computed in f32 as DiT does.
pub fn timestep_embedding(t: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
    let half = dim / 2;
    let neg_log = -(10000f64.ln()) as f32;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (neg_log * i as f32 / half as f32).exp())
        .collect();
    let freqs = Tensor::from_vec(freqs, (1, half), t.device())?;
    let args = t
        .to_dtype(DType::F32)?
        .unsqueeze(1)?
        .broadcast_mul(&freqs)?;
    let mut emb = Tensor::cat(&[args.cos()?, args.sin()?], 1)?;
    if dim % 2 == 1 {
        emb = emb.pad_with_zeros(1, 0, 1)?;
    }
    Ok(emb)
}

pub(super) fn xavier(fan_in: usize, fan_out: usize) -> Init {
    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// A Linear layer with explicit init hints for weight and bias.
pub(super) fn linear(
    in_dim: usize,
    out_dim: usize,
    w_init: Init,
    b_init: Init,
    vb: VarBuilder,
) -> candle_core::Result<Linear> {
    let w = vb.get_with_hints((out_dim, in_dim), "weight", w_init)?;
    let b = vb.get_with_hints(out_dim, "bias", b_init)?;
    Ok(Linear::new(w, Some(b)))
}

/// A Linear layer applied through [`kernels::linear`] (one product op with the bias fused).
fn lin(l: &Linear, x: &Tensor) -> candle_core::Result<Tensor> {
    kernels::linear(x, l.weight(), l.bias())
}

/// A Linear layer with DiT's `_basic_init`: xavier-uniform weight, zero bias.
pub(super) fn linear_xavier(
    in_dim: usize,
    out_dim: usize,
    vb: VarBuilder,
) -> candle_core::Result<Linear> {
    linear(
        in_dim,
        out_dim,
        xavier(in_dim, out_dim),
        Init::Const(0.0),
        vb,
    )
}

/// A Linear layer initialised to zero (adaLN modulation, final projection).
pub(super) fn linear_zero(
    in_dim: usize,
    out_dim: usize,
    vb: VarBuilder,
) -> candle_core::Result<Linear> {
    linear(in_dim, out_dim, Init::Const(0.0), Init::Const(0.0), vb)
}

/// Conv2d with kernel = stride = patch, computed as patch flattening plus a matmul.
#[derive(Debug, Clone)]
pub(super) struct PatchEmbed {
    weight: Tensor,
    bias: Tensor,
    patch: usize,
}

impl PatchEmbed {
    pub(super) fn new(cfg: &DitConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let (p, c, d) = (cfg.patch_size, cfg.in_channels, cfg.hidden_size);
        let weight = vb.get_with_hints((d, c, p, p), "weight", xavier(c * p * p, d))?;
        let bias = vb.get_with_hints(d, "bias", Init::Const(0.0))?;
        Ok(Self {
            weight: weight.reshape((d, c * p * p))?,
            bias,
            patch: p,
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let p = self.patch;
        let (gh, gw) = (h / p, w / p);
        let patches = x
            .reshape((b, c, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b, gh * gw, c * p * p))?;
        kernels::linear(&patches, &self.weight, Some(&self.bias))
    }
}

/// Sinusoidal features followed by Linear → SiLU → Linear.
#[derive(Debug, Clone)]
pub(super) struct TimestepEmbedder {
    fc0: Linear,
    fc2: Linear,
}

impl TimestepEmbedder {
    pub(super) fn new(cfg: &DitConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.hidden_size;
        let n = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let vb = vb.pp("mlp");
        let fc0 = linear(FREQUENCY_EMBEDDING_SIZE, d, n, Init::Const(0.0), vb.pp("0"))?;
        let fc2 = linear(d, d, n, Init::Const(0.0), vb.pp("2"))?;
        Ok(Self { fc0, fc2 })
    }

    /// Returns `(t_freq, c)`.
    pub(super) fn forward(&self, t: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let freq = timestep_embedding(t, FREQUENCY_EMBEDDING_SIZE)?;
        let h = freq.to_dtype(self.fc0.weight().dtype())?;
        let c = lin(&self.fc2, &lin(&self.fc0, &h)?.silu()?)?;
        Ok((freq, c))
    }
}

/// Multi-head self-attention with explicit math (timm `Attention`, no qk-norm).
#[derive(Debug, Clone)]
pub(super) struct Attention {
    qkv: Linear,
    proj: Linear,
    num_heads: usize,
}

impl Attention {
    pub(super) fn new(cfg: &DitConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            qkv: linear_xavier(d, 3 * d, vb.pp("qkv"))?,
            proj: linear_xavier(d, d, vb.pp("proj"))?,
            num_heads: cfg.num_heads,
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let out = kernels::attention(&lin(&self.qkv, x)?, self.num_heads)?;
        lin(&self.proj, &out)
    }
}

/// fc1 → GELU (tanh approximation) → fc2.
#[derive(Debug, Clone)]
pub(super) struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    pub(super) fn new(cfg: &DitConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let (d, h) = (cfg.hidden_size, cfg.mlp_hidden());
        Ok(Self {
            fc1: linear_xavier(d, h, vb.pp("fc1"))?,
            fc2: linear_xavier(h, d, vb.pp("fc2"))?,
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let hidden = kernels::linear_gelu(x, self.fc1.weight(), self.fc1.bias())?;
        lin(&self.fc2, &hidden)
    }
}

/// A DiT block with adaLN-Zero conditioning.
#[derive(Debug, Clone)]
pub(super) struct DitBlock {
    attn: Attention,
    mlp: Mlp,
    ada_ln: Linear,
}

impl DitBlock {
    pub(super) fn new(cfg: &DitConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            attn: Attention::new(cfg, vb.pp("attn"))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
            ada_ln: linear_zero(d, 6 * d, vb.pp("adaLN_modulation").pp("1"))?,
        })
    }

    pub(super) fn forward(&self, x: &Tensor, c: &Tensor) -> candle_core::Result<Tensor> {
        let m = lin(&self.ada_ln, &c.silu()?)?.chunk(6, 1)?;
        let h = kernels::ln_modulate(x, &m[0], &m[1], LN_EPS)?;
        let x = kernels::gated_add(x, &self.attn.forward(&h)?, &m[2])?;
        let h = kernels::ln_modulate(&x, &m[3], &m[4], LN_EPS)?;
        kernels::gated_add(&x, &self.mlp.forward(&h)?, &m[5])
    }
}

/// norm_final + adaLN modulation + linear projection to patch pixels.
#[derive(Debug, Clone)]
pub(super) struct FinalLayer {
    linear: Linear,
    ada_ln: Linear,
}

impl FinalLayer {
    pub(super) fn new(cfg: &DitConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.hidden_size;
        let out = cfg.patch_size * cfg.patch_size * cfg.out_channels;
        Ok(Self {
            linear: linear_zero(d, out, vb.pp("linear"))?,
            ada_ln: linear_zero(d, 2 * d, vb.pp("adaLN_modulation").pp("1"))?,
        })
    }

    pub(super) fn forward(&self, x: &Tensor, c: &Tensor) -> candle_core::Result<Tensor> {
        let m = lin(&self.ada_ln, &c.silu()?)?.chunk(2, 1)?;
        lin(
            &self.linear,
            &kernels::ln_modulate(x, &m[0], &m[1], LN_EPS)?,
        )
    }
}

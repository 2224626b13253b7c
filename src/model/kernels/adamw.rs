//! The AdamW update of one f32 parameter in one pass over its data.
//!
//! The op-by-op update in `train::optim` makes about a dozen full passes and allocations per
//! parameter. This kernel evaluates the same f32 expressions, in the same order, per element,
//! so its results are bitwise identical to the op-by-op path (tested there): rounding happens
//! at the same points because Rust never contracts `a * b + c` into a fused multiply-add.

use candle_core::{DType, Storage, Tensor};
use rayon::prelude::*;

use super::{applies, simd};

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// The f32 scalars of one AdamW step, rounded as PyTorch rounds its Python scalars.
#[derive(Debug, Clone, Copy)]
pub struct AdamWCoefficients {
    /// `1 - lr * weight_decay`.
    pub decay: f32,
    /// The lerp weight `1 - beta1`, or `beta1` when `lerp_from_grad` is set.
    pub lerp: f32,
    /// Whether torch's lerp takes its `w >= 0.5` form `g - (g - m) (1 - w)`.
    pub lerp_from_grad: bool,
    /// `beta2`.
    pub beta2: f32,
    /// `1 - beta2`.
    pub one_minus_beta2: f32,
    /// `sqrt(1 - beta2^k)`.
    pub bias_correction2_sqrt: f32,
    /// `eps`.
    pub eps: f32,
    /// `-lr / (1 - beta1^k)`.
    pub neg_step_size: f32,
}

/// The contiguous f32 CPU data of `t`, copied only if `t` is not already contiguous.
fn data(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(cpu), Some((start, end))) => Ok(cpu.as_slice::<f32>()?[start..end].to_vec()),
        _ => candle_core::bail!("fused AdamW: operand is not a contiguous CPU tensor"),
    }
}

/// New `(param, exp_avg, exp_avg_sq)` from one step, or `None` when the fused path does not
/// apply (switched off, or not f32 CPU tensors of one shape).
pub fn adamw_step(
    param: &Tensor,
    grad: &Tensor,
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    c: &AdamWCoefficients,
) -> candle_core::Result<Option<(Tensor, Tensor, Tensor)>> {
    let all = [param, grad, exp_avg, exp_avg_sq];
    if !all
        .iter()
        .all(|t| applies(t) && t.dims() == param.dims() && t.dtype() == DType::F32)
    {
        return Ok(None);
    }
    let mut p = data(param)?;
    let mut m = data(exp_avg)?;
    let mut v = data(exp_avg_sq)?;
    let g = grad.contiguous()?;
    let (gs, gl) = g.storage_and_layout();
    let g = match (&*gs, gl.contiguous_offsets()) {
        (Storage::Cpu(cpu), Some((start, end))) => &cpu.as_slice::<f32>()?[start..end],
        _ => candle_core::bail!("fused AdamW: gradient is not a contiguous CPU tensor"),
    };
    p.par_chunks_mut(CHUNK)
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)))
        .for_each(|((p, m), (v, g))| {
            simd::vectorized(
                #[inline(always)]
                || {
                    let n = p.len();
                    let (m, v, g) = (&mut m[..n], &mut v[..n], &g[..n]);
                    for i in 0..n {
                        let pd = p[i] * c.decay + 0.0;
                        let diff = g[i] - m[i];
                        let mi = if c.lerp_from_grad {
                            g[i] - (diff * c.lerp + 0.0)
                        } else {
                            m[i] + (diff * c.lerp + 0.0)
                        };
                        let vi = (v[i] * c.beta2 + 0.0) + (g[i] * c.one_minus_beta2 + 0.0) * g[i];
                        let denom = (vi.sqrt() / c.bias_correction2_sqrt) * 1.0 + c.eps;
                        p[i] = pd + (mi * c.neg_step_size + 0.0) / denom;
                        m[i] = mi;
                        v[i] = vi;
                    }
                },
            )
        });
    let dev = param.device();
    let shape = param.shape();
    Ok(Some((
        Tensor::from_vec(p, shape, dev)?,
        Tensor::from_vec(m, shape, dev)?,
        Tensor::from_vec(v, shape, dev)?,
    )))
}

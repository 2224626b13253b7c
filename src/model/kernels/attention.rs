//! Multi-head softmax attention read straight from the packed `qkv` projection.
//!
//! The input is the `(B, N, 3D)` output of the qkv Linear (timm's layout: q, k, v, each split
//! into heads of width `D / H`); the output is `(B, N, D)` with the heads side by side, ready
//! for the output projection. Every `(batch, head)` pair is one task: two strided gemm calls
//! (`S = scale Q Kᵀ`, `O = P V`) and a row softmax in between, with no per-head copies or
//! transposes. The probabilities `P` are kept for the backward pass:
//! `dV = Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ⊙ (dP - rowsum(P ⊙ dP))`, `dQ = scale dS K`,
//! `dK = scale dSᵀ Q`, written into one `(B, N, 3D)` gradient.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use super::sgemm::{sgemm, Mat, MatMut, Threads};
use super::{applies, simd, slice, uninit_output};

/// Softmax attention over `qkv (B, N, 3D)` with `heads` heads; returns `(B, N, D)`.
pub fn attention(qkv: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    if applies(qkv) {
        attention_fused(qkv, heads)
    } else {
        attention_plain(qkv, heads)
    }
}

/// The plain candle composition of [`attention`] (timm's `Attention` without qk-norm).
pub fn attention_plain(qkv: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (b, n, d, hd) = dims(qkv, heads)?;
    let qkv = qkv
        .reshape((b, n, 3, heads, hd))?
        .permute((2, 0, 3, 1, 4))?;
    let q = (qkv.get(0)?.contiguous()? * (hd as f64).powf(-0.5))?;
    let k = qkv.get(1)?.contiguous()?;
    let v = qkv.get(2)?.contiguous()?;
    let attn = q.matmul(&k.t()?.contiguous()?)?;
    let attn = candle_nn::ops::softmax(&attn, D::Minus1)?;
    attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))
}

/// `(B, N, D, D / heads)` of a `(B, N, 3D)` qkv tensor.
fn dims(qkv: &Tensor, heads: usize) -> candle_core::Result<(usize, usize, usize, usize)> {
    let (b, n, d3) = qkv.dims3()?;
    if heads == 0 || d3 % (3 * heads) != 0 {
        candle_core::bail!(
            "attention: qkv width {d3} is not 3 x a multiple of {heads} heads (shape {:?})",
            qkv.dims()
        );
    }
    Ok((b, n, d3 / 3, d3 / 3 / heads))
}

fn attention_fused(qkv: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (b, n, _, hd) = dims(qkv, heads)?;
    let op = Attention {
        geom: Geom {
            batch: b,
            tokens: n,
            heads,
            head_dim: hd,
            scale: (hd as f32).powf(-0.5),
        },
        probs: Mutex::new(None),
    };
    qkv.contiguous()?.apply_op1(op)
}

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy)]
struct Geom {
    batch: usize,
    tokens: usize,
    heads: usize,
    head_dim: usize,
    scale: f32,
}

impl Geom {
    fn width(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// A raw pointer that tasks writing disjoint parts of one buffer may share.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: every task writes a disjoint set of elements (its own head's columns of its own
// batch's rows), and the buffer outlives the parallel loop.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

/// `dst (m×n) = beta · lhs (m×k) · rhs (k×n)` with (row stride, column stride) per operand,
/// on the calling thread.
///
/// # Safety
/// Every pointer must address the full strided matrix it describes.
unsafe fn matmul(
    dims: (usize, usize, usize),
    dst: (*mut f32, usize, usize),
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
    beta: f32,
) {
    let mat = |(ptr, row_stride, col_stride)| Mat {
        ptr,
        row_stride,
        col_stride,
    };
    let dst = MatMut::strided(dst.0, dst.1, dst.2);
    sgemm(Threads::Caller, dims, dst, mat(lhs), mat(rhs), beta, false)
}

/// Row-wise softmax in place over rows of length `n`.
#[inline(always)]
fn softmax_rows(p: &mut [f32], n: usize) {
    for row in p.chunks_exact_mut(n) {
        let max = simd::max(row);
        for v in row.iter_mut() {
            *v = simd::exp(*v - max);
        }
        let inv = 1.0 / simd::sum(row);
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

struct Attention {
    geom: Geom,
    probs: Mutex<Option<Arc<Vec<f32>>>>,
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = slice(s, l, self.name())?;
        let g = self.geom;
        let (n, hd, d) = (g.tokens, g.head_dim, g.width());
        if qkv.len() != g.batch * n * 3 * d {
            candle_core::bail!("{}: qkv has {} elements", self.name(), qkv.len());
        }
        let mut probs = Vec::new();
        let fill_out = |out: &mut [f32]| {
            let dst = SharedMut(out.as_mut_ptr());
            let fill_probs = |probs: &mut [f32]| {
                probs
                    .par_chunks_mut(n * n)
                    .enumerate()
                    .for_each(|(task, p)| {
                        let (b, h) = (task / g.heads, task % g.heads);
                        let base = b * n * 3 * d + h * hd;
                        let (q, k, v) = (&qkv[base..], &qkv[base + d..], &qkv[base + 2 * d..]);
                        let o = dst;
                        // SAFETY: q, k, v address n rows of stride 3d inside qkv; p is n×n; the output
                        // block (rows of batch b, columns of head h) belongs to this task only.
                        unsafe {
                            matmul(
                                (n, n, hd),
                                (p.as_mut_ptr(), n, 1),
                                (q.as_ptr(), 3 * d, 1),
                                (k.as_ptr(), 1, 3 * d),
                                g.scale,
                            );
                            simd::vectorized(
                                #[inline(always)]
                                || softmax_rows(p, n),
                            );
                            matmul(
                                (n, hd, n),
                                (o.0.add(b * n * d + h * hd), d, 1),
                                (p.as_ptr(), n, 1),
                                (v.as_ptr(), 3 * d, 1),
                                1.0,
                            );
                        }
                    })
            };
            // SAFETY: the tasks' n×n blocks tile `probs`; each is written by the first product
            // before the softmax reads it.
            probs = unsafe { uninit_output(g.batch * g.heads * n * n, fill_probs) };
        };
        // SAFETY: the (batch, head) tasks' output blocks (n rows × the head's hd columns) tile
        // `out`, and each is written, not read, by the second product.
        let out = unsafe { uninit_output(g.batch * n * d, fill_out) };
        if let Ok(mut slot) = self.probs.lock() {
            *slot = Some(Arc::new(probs));
        }
        Ok((CpuStorage::F32(out), Shape::from((g.batch, n, d))))
    }

    fn bwd(&self, qkv: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let probs = self
            .probs
            .lock()
            .ok()
            .and_then(|p| p.clone())
            .ok_or_else(|| candle_core::Error::Msg("fused-attention: no forward pass".into()))?;
        let op = AttentionBwd {
            geom: self.geom,
            probs,
        };
        Ok(Some(qkv.apply_op2_no_bwd(&grad.contiguous()?, &op)?))
    }
}

/// `(qkv, dO)` → `dqkv`, from the probabilities of the forward pass.
struct AttentionBwd {
    geom: Geom,
    probs: Arc<Vec<f32>>,
}

impl CustomOp2 for AttentionBwd {
    fn name(&self) -> &'static str {
        "fused-attention-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = slice(s1, l1, self.name())?;
        let dout = slice(s2, l2, self.name())?;
        let g = self.geom;
        let (n, hd, d) = (g.tokens, g.head_dim, g.width());
        if qkv.len() != g.batch * n * 3 * d || dout.len() != g.batch * n * d {
            candle_core::bail!("{}: operand sizes do not fit the forward pass", self.name());
        }
        let fill = |dqkv: &mut [f32]| {
            let dst = SharedMut(dqkv.as_mut_ptr());
            self.probs
                .par_chunks(n * n)
                .enumerate()
                .for_each(|(task, p)| {
                    let (b, h) = (task / g.heads, task % g.heads);
                    let base = b * n * 3 * d + h * hd;
                    let (q, k, v) = (&qkv[base..], &qkv[base + d..], &qkv[base + 2 * d..]);
                    let d_o = &dout[b * n * d + h * hd..];
                    let mut ds: Vec<f32> = Vec::with_capacity(n * n);
                    let o = dst;
                    // SAFETY: as in the forward pass; the dq, dk, dv blocks of (b, h) are written
                    // by this task only.
                    unsafe {
                        let (dq, dk, dv) =
                            (o.0.add(base), o.0.add(base + d), o.0.add(base + 2 * d));
                        matmul(
                            (n, hd, n),
                            (dv, 3 * d, 1),
                            (p.as_ptr(), 1, n),
                            (d_o.as_ptr(), d, 1),
                            1.0,
                        );
                        matmul(
                            (n, n, hd),
                            (ds.as_mut_ptr(), n, 1),
                            (d_o.as_ptr(), d, 1),
                            (v.as_ptr(), 1, 3 * d),
                            1.0,
                        );
                        // The product above wrote all n×n elements of the reserved capacity.
                        ds.set_len(n * n);
                        simd::vectorized(
                            #[inline(always)]
                            || {
                                for (dsr, pr) in ds.chunks_exact_mut(n).zip(p.chunks_exact(n)) {
                                    let c = simd::dot(dsr, pr);
                                    for (s, &pv) in dsr.iter_mut().zip(pr) {
                                        *s = pv * (*s - c);
                                    }
                                }
                            },
                        );
                        matmul(
                            (n, hd, n),
                            (dq, 3 * d, 1),
                            (ds.as_ptr(), n, 1),
                            (k.as_ptr(), 3 * d, 1),
                            g.scale,
                        );
                        matmul(
                            (n, hd, n),
                            (dk, 3 * d, 1),
                            (ds.as_ptr(), 1, n),
                            (q.as_ptr(), 3 * d, 1),
                            g.scale,
                        );
                    }
                });
        };
        // SAFETY: each (batch, head) task writes, without reading, its dq, dk and dv blocks,
        // which together tile `dqkv`.
        let dqkv = unsafe { uninit_output(qkv.len(), fill) };
        Ok((CpuStorage::F32(dqkv), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, vars};
    use super::*;

    #[test]
    fn fused_attention_matches_the_composition() -> candle_core::Result<()> {
        for (b, n, heads, hd) in [(2, 9, 2, 4), (3, 64, 4, 8)] {
            let v = vars(&[&[b, n, 3 * heads * hd]], 1.5)?;
            check(
                &v,
                |x| attention_fused(&x[0], heads),
                |x| attention_plain(&x[0], heads),
                1e-5,
            )?;
        }
        Ok(())
    }

    #[test]
    fn fused_attention_reads_a_strided_input() -> candle_core::Result<()> {
        let x = Tensor::randn(0f32, 1.0, (2, 12, 5), &candle_core::Device::Cpu)?.transpose(1, 2)?;
        let d =
            super::super::testing::rel_diff(&attention_fused(&x, 2)?, &attention_plain(&x, 2)?)?;
        assert!(d < 1e-5, "{d:e}");
        Ok(())
    }

    #[test]
    fn bad_head_count_is_an_error() -> candle_core::Result<()> {
        let x = Tensor::zeros(
            (1, 4, 12),
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )?;
        assert!(attention_fused(&x, 3).is_err());
        assert!(attention_plain(&x, 0).is_err());
        Ok(())
    }
}

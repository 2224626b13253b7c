//! Linear layers as one 2-D matmul plus a fused bias add.
//!
//! candle differentiates `broadcast_add(bias)` by a strided reduction over every leading dim,
//! which on the CPU walks the gradient element by element with index arithmetic (a fifth of a
//! CPU_SMALL training step). [`linear`] folds all leading dims into the matmul's rows and adds
//! the bias in a custom op whose backward is a vectorised column sum over fixed row blocks
//! (summed in a fixed order, so the result does not depend on the thread count or scheduling).

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{applies, simd, slice};

/// Rows per block of the bias-gradient column sum.
const BLOCK_ROWS: usize = 256;

/// `x wᵀ + b` over the last dim of `x` (any rank ≥ 1), with `w (out, in)` and `b (out)`.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    if applies(x) {
        linear_fused(x, w, b)
    } else {
        linear_plain(x, w, b)
    }
}

/// candle-nn's `Linear::forward`: the matmul, then `broadcast_add` of the bias.
pub fn linear_plain(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let y = matmul_rows(x, w)?;
    match b {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// `x wᵀ` with every leading dim of `x` folded into the rows of one 2-D matmul.
fn matmul_rows(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let dims = x.dims();
    let Some((&k, lead)) = dims.split_last() else {
        candle_core::bail!("linear: input is a scalar");
    };
    let rows: usize = lead.iter().product();
    let y = x.contiguous()?.reshape((rows, k))?.matmul(&w.t()?)?;
    let mut out = lead.to_vec();
    out.push(w.dim(0)?);
    y.reshape(out)
}

fn linear_fused(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let y = matmul_rows(x, w)?;
    match b {
        Some(b) => {
            if b.dims() != [w.dim(0)?] {
                candle_core::bail!(
                    "linear: bias {:?} does not fit weight {:?}",
                    b.dims(),
                    w.dims()
                );
            }
            y.apply_op2(&b.contiguous()?, BiasAdd)
        }
        None => Ok(y),
    }
}

/// `y + b` with `b` broadcast over every row of `y`.
struct BiasAdd;

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "fused-bias-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = slice(s1, l1, self.name())?;
        let b = slice(s2, l2, self.name())?;
        let c = b.len();
        let mut out = vec![0f32; y.len()];
        out.par_chunks_mut(BLOCK_ROWS * c)
            .zip(y.par_chunks(BLOCK_ROWS * c))
            .for_each(|(o, y)| {
                simd::vectorized(|| {
                    for (o, y) in o.chunks_exact_mut(c).zip(y.chunks_exact(c)) {
                        for i in 0..c {
                            o[i] = y[i] + b[i];
                        }
                    }
                })
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _y: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let db = grad.apply_op1_no_bwd(&ColumnSum { cols: b.dim(0)? })?;
        Ok((Some(grad), Some(db)))
    }
}

/// Sum over rows of a row-major `(rows, cols)` tensor.
struct ColumnSum {
    cols: usize,
}

impl candle_core::CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "fused-column-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = slice(s, l, self.name())?;
        let c = self.cols;
        let partial: Vec<Vec<f32>> = g
            .par_chunks(BLOCK_ROWS * c)
            .map(|block| {
                let mut acc = vec![0f32; c];
                simd::vectorized(|| {
                    for row in block.chunks_exact(c) {
                        for i in 0..c {
                            acc[i] += row[i];
                        }
                    }
                });
                acc
            })
            .collect();
        let mut out = vec![0f32; c];
        for p in partial {
            for (o, v) in out.iter_mut().zip(p) {
                *o += v;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, vars};
    use super::*;

    #[test]
    fn fused_linear_matches_candle_nn() -> candle_core::Result<()> {
        for x_dims in [&[3usize, 300, 24][..], &[5, 24], &[2, 2, 7, 24]] {
            let v = vars(&[x_dims, &[40, 24], &[40]], 1.0)?;
            check(
                &v,
                |x| linear_fused(&x[0], &x[1], Some(&x[2])),
                |x| {
                    let l = candle_nn::Linear::new(x[1].clone(), Some(x[2].clone()));
                    candle_core::Module::forward(&l, &x[0])
                },
                1e-5,
            )?;
        }
        Ok(())
    }

    #[test]
    fn linear_without_bias_and_bad_bias() -> candle_core::Result<()> {
        let v = vars(&[&[4, 6], &[3, 6], &[5]], 1.0)?;
        let (x, w, b) = (v[0].as_tensor(), v[1].as_tensor(), v[2].as_tensor());
        let d = super::super::testing::rel_diff(&linear_fused(x, w, None)?, &x.matmul(&w.t()?)?)?;
        assert!(d < 1e-6);
        assert!(linear_fused(x, w, Some(b)).is_err());
        Ok(())
    }
}

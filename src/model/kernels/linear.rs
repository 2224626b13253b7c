//! Linear layers as custom ops over one 2-D product: every leading dim of the input is folded
//! into the rows (with no reshape nodes, whose gradients candle would accumulate again), the
//! bias is written into the output before the product accumulates onto it, and the backward
//! pass computes `dx = dy w`, `dw = dyᵀ x` and `db` (a vectorised column sum
//! over fixed row blocks, summed in a fixed order) without candle's transposes, strided
//! gradient adds or broadcast reductions. The products go through [`super::sgemm`].

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::gelu::{gelu_grad_into, gelu_into};
use super::sgemm::{sgemm, Mat, MatMut, Threads};
use super::{applies, simd, slice, uninit_output};

/// Rows per block of the bias fill and of the bias-gradient column sum.
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
    let (rows, k, out) = row_dims(x, w)?;
    let y = x
        .contiguous()?
        .reshape((rows, k))?
        .matmul(&w.t()?)?
        .reshape(out)?;
    match b {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// `gelu(x wᵀ + b)` with the tanh-approximated GELU: the first half of a transformer MLP, fused
/// so that the pre-activation never becomes a graph node (its gradient is not accumulated).
pub fn linear_gelu(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    match b {
        Some(b) if applies(x) => {
            row_dims(x, w)?;
            check_bias(w, b)?;
            x.contiguous()?
                .apply_op3(&w.contiguous()?, &b.contiguous()?, AffineRows::gelu())
        }
        _ => super::gelu(&linear(x, w, b)?),
    }
}

/// Refuses a bias that is not `(out)` for a weight `(out, in)`.
fn check_bias(w: &Tensor, b: &Tensor) -> candle_core::Result<()> {
    if b.dims() != [w.dim(0)?] {
        candle_core::bail!(
            "linear: bias {:?} does not fit weight {:?}",
            b.dims(),
            w.dims()
        );
    }
    Ok(())
}

/// The rows of `x` once its leading dims are folded, its last dim, and the output shape.
fn row_dims(x: &Tensor, w: &Tensor) -> candle_core::Result<(usize, usize, Vec<usize>)> {
    let dims = x.dims();
    let Some((&k, lead)) = dims.split_last() else {
        candle_core::bail!("linear: input is a scalar");
    };
    let (out_features, in_features) = w.dims2()?;
    if in_features != k {
        candle_core::bail!("linear: input {dims:?} does not fit weight {:?}", w.dims());
    }
    let mut out = lead.to_vec();
    out.push(out_features);
    Ok((lead.iter().product(), k, out))
}

fn linear_fused(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    row_dims(x, w)?;
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    match b {
        Some(b) => {
            check_bias(&w, b)?;
            x.apply_op3(&w, &b.contiguous()?, AffineRows::default())
        }
        None => x.apply_op2(&w, Product::X_WT),
    }
}

/// An operand as a matrix: every leading dim folded into the rows.
fn dims2(l: &Layout, op: &str) -> candle_core::Result<(usize, usize)> {
    match l.dims().split_last() {
        Some((&c, lead)) => Ok((lead.iter().product(), c)),
        None => candle_core::bail!("{op}: operand is a scalar"),
    }
}

/// The shape of a product's output: `a`'s leading dims then `n` when `a` is not transposed
/// (so `(B, N, in)` inputs give `(B, N, out)` outputs with no reshape node in the graph),
/// else `(m, n)`.
fn product_shape(a_transposed: bool, a: &Layout, m: usize, n: usize) -> Shape {
    match a.dims().split_last() {
        Some((_, lead)) if !a_transposed => {
            let mut dims = lead.to_vec();
            dims.push(n);
            Shape::from(dims)
        }
        _ => Shape::from((m, n)),
    }
}

/// `op(a) · op(b)` of two row-major matrices, each optionally transposed.
#[derive(Debug, Clone, Copy)]
struct Product {
    a_transposed: bool,
    b_transposed: bool,
}

impl Product {
    /// `x wᵀ`: a Linear layer without bias.
    const X_WT: Product = Product {
        a_transposed: false,
        b_transposed: true,
    };
    /// `dy w`: the input gradient of a Linear layer.
    const DY_W: Product = Product {
        a_transposed: false,
        b_transposed: false,
    };
    /// `dyᵀ x`: the weight gradient of a Linear layer.
    const DYT_X: Product = Product {
        a_transposed: true,
        b_transposed: false,
    };

    /// `(m, n, k)` and the two operands, from the stored shapes.
    fn operands<'a>(
        &self,
        a: &'a [f32],
        (ar, ac): (usize, usize),
        b: &'a [f32],
        (br, bc): (usize, usize),
    ) -> candle_core::Result<((usize, usize, usize), Mat, Mat)> {
        let (m, k) = if self.a_transposed {
            (ac, ar)
        } else {
            (ar, ac)
        };
        let (kb, n) = if self.b_transposed {
            (bc, br)
        } else {
            (br, bc)
        };
        if k != kb {
            candle_core::bail!("fused-product: inner dims {k} and {kb} differ");
        }
        let lhs = if self.a_transposed {
            Mat::transposed(a, ac)
        } else {
            Mat::rows(a, ac)
        };
        let rhs = if self.b_transposed {
            Mat::transposed(b, bc)
        } else {
            Mat::rows(b, bc)
        };
        Ok(((m, n, k), lhs, rhs))
    }
}

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        "fused-product"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let a = slice(s1, l1, self.name())?;
        let b = slice(s2, l2, self.name())?;
        let (dims, lhs, rhs) =
            self.operands(a, dims2(l1, self.name())?, b, dims2(l2, self.name())?)?;
        let (m, n, _) = dims;
        let product = |dst: &mut [f32]| {
            // SAFETY: lhs, rhs address the full stored matrices; dst has m·n elements.
            unsafe {
                sgemm(
                    Threads::Pool,
                    dims,
                    MatMut::rows(dst.as_mut_ptr(), n),
                    lhs,
                    rhs,
                    1.0,
                    false,
                )
            }
        };
        // SAFETY: the product writes, without reading, every element of its m×n output.
        let out = unsafe { uninit_output(m * n, product) };
        Ok((
            CpuStorage::F32(out),
            product_shape(self.a_transposed, l1, m, n),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = linear_grads(x, w, grad)?;
        Ok((Some(dx), Some(dw)))
    }
}

/// `dx = dy w` and `dw = dyᵀ x` for `y = x wᵀ`.
fn linear_grads(x: &Tensor, w: &Tensor, grad: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    let grad = grad.contiguous()?;
    let dx = grad.apply_op2_no_bwd(w, &Product::DY_W)?;
    let dw = grad.apply_op2_no_bwd(x, &Product::DYT_X)?;
    Ok((dx, dw))
}

/// `x wᵀ + b` from the op's storages: the bias written into every row, then the product
/// accumulated onto it. Returns the data and its shape (`x`'s leading dims, then `out`).
fn affine_rows(
    name: &'static str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    (s3, l3): (&CpuStorage, &Layout),
) -> candle_core::Result<(Vec<f32>, Shape)> {
    let x = slice(s1, l1, name)?;
    let w = slice(s2, l2, name)?;
    let b = slice(s3, l3, name)?;
    let (dims, lhs, rhs) = Product::X_WT.operands(x, dims2(l1, name)?, w, dims2(l2, name)?)?;
    let (m, n, _) = dims;
    if b.len() != n {
        candle_core::bail!("{}: bias of {} for {n} outputs", name, b.len());
    }
    let bias_rows = |out: &mut [f32]| {
        out.par_chunks_mut(BLOCK_ROWS * n).for_each(|block| {
            for row in block.chunks_exact_mut(n) {
                row.copy_from_slice(b);
            }
        })
    };
    // SAFETY: `b` has n elements (checked above), so every row of n is assigned.
    let mut out = unsafe { uninit_output(m * n, bias_rows) };
    // SAFETY: lhs, rhs address the full stored matrices; out holds m·n initialised floats.
    unsafe {
        sgemm(
            Threads::Pool,
            dims,
            MatMut::rows(out.as_mut_ptr(), n),
            lhs,
            rhs,
            1.0,
            true,
        )
    };
    Ok((out, product_shape(false, l1, m, n)))
}

/// `act(x wᵀ + b)` with `x (rows, in)`, `w (out, in)`, `b (out)`.
#[derive(Default)]
struct AffineRows {
    activation: Activation,
}

/// What follows the affine map inside [`AffineRows`].
#[derive(Default)]
enum Activation {
    /// Nothing: a Linear layer.
    #[default]
    Identity,
    /// tanh-GELU; the pre-activation is kept for the backward pass.
    Gelu(Mutex<Option<Arc<Vec<f32>>>>),
}

impl AffineRows {
    /// A Linear layer followed by tanh-GELU.
    fn gelu() -> AffineRows {
        AffineRows {
            activation: Activation::Gelu(Mutex::new(None)),
        }
    }
}

impl CustomOp3 for AffineRows {
    fn name(&self) -> &'static str {
        match self.activation {
            Activation::Identity => "fused-linear",
            Activation::Gelu(_) => "fused-linear-gelu",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (u, shape) = affine_rows(self.name(), (s1, l1), (s2, l2), (s3, l3))?;
        let y = match &self.activation {
            Activation::Identity => u,
            Activation::Gelu(slot) => {
                // SAFETY: `gelu_into` assigns every element of an output as long as `u`.
                let y = unsafe { uninit_output(u.len(), |y| gelu_into(&u, y)) };
                if let Ok(mut slot) = slot.lock() {
                    *slot = Some(Arc::new(u));
                }
                y
            }
        };
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dz = match &self.activation {
            Activation::Identity => grad,
            Activation::Gelu(slot) => {
                let pre_activation = slot.lock().ok().and_then(|p| p.clone()).ok_or_else(|| {
                    candle_core::Error::Msg(format!("{}: no forward pass", self.name()))
                })?;
                grad.apply_op1_no_bwd(&GeluGradAt { pre_activation })?
            }
        };
        let (dx, dw) = linear_grads(x, w, &dz)?;
        let db = dz.apply_op1_no_bwd(&ColumnSum { cols: b.dim(0)? })?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// `grad · gelu'(u)` for a stored pre-activation `u`.
struct GeluGradAt {
    pre_activation: Arc<Vec<f32>>,
}

impl CustomOp1 for GeluGradAt {
    fn name(&self) -> &'static str {
        "fused-gelu-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = slice(s, l, self.name())?;
        let u = self.pre_activation.as_slice();
        if g.len() != u.len() {
            candle_core::bail!("{}: gradient and pre-activation sizes differ", self.name());
        }
        // SAFETY: `g` and `u` have the output's length, so every element is assigned.
        let du = unsafe { uninit_output(u.len(), |du| gelu_grad_into(u, g, du)) };
        Ok((CpuStorage::F32(du), l.shape().clone()))
    }
}

/// Sum over rows of a row-major `(rows, cols)` tensor.
struct ColumnSum {
    cols: usize,
}

impl CustomOp1 for ColumnSum {
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
                simd::vectorized(
                    #[inline(always)]
                    || {
                        for row in block.chunks_exact(c) {
                            for (a, v) in acc.iter_mut().zip(row) {
                                *a += v;
                            }
                        }
                    },
                );
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
    fn fused_linear_gelu_matches_the_composition() -> candle_core::Result<()> {
        for x_dims in [&[3usize, 70, 24][..], &[5, 24]] {
            let v = vars(&[x_dims, &[40, 24], &[40]], 1.0)?;
            check(
                &v,
                |x| linear_gelu(&x[0], &x[1], Some(&x[2])),
                |x| super::super::gelu_plain(&linear_plain(&x[0], &x[1], Some(&x[2]))?),
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

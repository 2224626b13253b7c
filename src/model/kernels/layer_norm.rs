//! LayerNorm (no affine) followed by adaLN modulation, and the gated residual of a DiT block.
//!
//! * [`ln_modulate`]: `y = x̂ (1 + scale) + shift`, `x̂ = (x - mean) / sqrt(var + eps)` over the
//!   last dim, with `(B, D)` shift and scale broadcast over the `T` tokens. One pass per row
//!   forward; backward recomputes mean and rstd per row and returns all three gradients from one
//!   pass: `dshift = Σ_t gy`, `dscale = Σ_t gy x̂`, `dx = rstd (g - mean(g) - x̂ mean(g x̂))` with
//!   `g = gy (1 + scale)`.
//! * [`gated_add`]: `x + a * gate` with a `(B, D)` gate; backward `dx = g`, `da = g gate`,
//!   `dgate = Σ_t g a`.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use super::{applies, simd, slice, uninit_output, unpack};

/// Rows per parallel task in the forward passes.
const ROWS: usize = 64;

/// `layer_norm(x) * (1 + scale) + shift` for `x (B, T, D)` and `shift, scale (B, D)`.
pub fn ln_modulate(
    x: &Tensor,
    shift: &Tensor,
    scale: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    if applies(x) {
        ln_modulate_fused(x, shift, scale, eps)
    } else {
        ln_modulate_plain(x, shift, scale, eps)
    }
}

/// The plain candle composition of [`ln_modulate`].
pub fn ln_modulate_plain(
    x: &Tensor,
    shift: &Tensor,
    scale: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let xhat = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
    xhat.broadcast_mul(&(scale.unsqueeze(1)? + 1.0)?)?
        .broadcast_add(&shift.unsqueeze(1)?)
}

/// `x + a * gate` for `x, a (B, T, D)` and `gate (B, D)`.
pub fn gated_add(x: &Tensor, a: &Tensor, gate: &Tensor) -> candle_core::Result<Tensor> {
    if applies(x) {
        gated_add_fused(x, a, gate)
    } else {
        gated_add_plain(x, a, gate)
    }
}

/// The plain candle composition of [`gated_add`].
pub fn gated_add_plain(x: &Tensor, a: &Tensor, gate: &Tensor) -> candle_core::Result<Tensor> {
    x + a.broadcast_mul(&gate.unsqueeze(1)?)?
}

fn check_dims(x: &Tensor, m: &Tensor, op: &str) -> candle_core::Result<(usize, usize, usize)> {
    let (b, t, d) = x.dims3()?;
    if m.dims() != [b, d] {
        candle_core::bail!(
            "{op}: modulation {:?} does not fit x {:?}",
            m.dims(),
            x.dims()
        );
    }
    Ok((b, t, d))
}

fn ln_modulate_fused(
    x: &Tensor,
    shift: &Tensor,
    scale: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let (_, t, _) = check_dims(x, shift, "ln_modulate")?;
    check_dims(x, scale, "ln_modulate")?;
    let op = LnModulate {
        tokens: t,
        eps: eps as f32,
    };
    x.contiguous()?
        .apply_op3(&shift.contiguous()?, &scale.contiguous()?, op)
}

fn gated_add_fused(x: &Tensor, a: &Tensor, gate: &Tensor) -> candle_core::Result<Tensor> {
    let (_, t, _) = check_dims(x, gate, "gated_add")?;
    if a.dims() != x.dims() {
        candle_core::bail!("gated_add: a {:?} differs from x {:?}", a.dims(), x.dims());
    }
    x.contiguous()?.apply_op3(
        &a.contiguous()?,
        &gate.contiguous()?,
        GatedAdd { tokens: t },
    )
}

/// Mean and 1/sqrt(var + eps) of one row.
#[inline(always)]
fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = simd::sum(x) / n;
    let var = simd::sq_dev(x, mean) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

struct LnModulate {
    tokens: usize,
    eps: f32,
}

impl CustomOp3 for LnModulate {
    fn name(&self) -> &'static str {
        "fused-ln-modulate"
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
        let x = slice(s1, l1, self.name())?;
        let shift = slice(s2, l2, self.name())?;
        let scale = slice(s3, l3, self.name())?;
        let d = l2.dims()[1];
        let fill = |y: &mut [f32]| {
            y.par_chunks_mut(ROWS * d)
                .zip(x.par_chunks(ROWS * d))
                .enumerate()
                .for_each(|(chunk, (y, x))| {
                    simd::vectorized(
                        #[inline(always)]
                        || {
                            for (r, (y, x)) in
                                y.chunks_exact_mut(d).zip(x.chunks_exact(d)).enumerate()
                            {
                                let b = (chunk * ROWS + r) / self.tokens;
                                let (sh, sc) = (&shift[b * d..][..d], &scale[b * d..][..d]);
                                let (mean, rstd) = moments(x, self.eps);
                                let (y, x) = (&mut y[..d], &x[..d]);
                                for i in 0..d {
                                    y[i] = (x[i] - mean) * rstd * (1.0 + sc[i]) + sh[i];
                                }
                            }
                        },
                    )
                })
        };
        // SAFETY: `x` is (B, T, D) (checked by `ln_modulate`), so its rows of `d` tile `y` and
        // every element is assigned.
        let y = unsafe { uninit_output(x.len(), fill) };
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        shift: &Tensor,
        scale: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let op = LnModulateBwd {
            tokens: self.tokens,
            eps: self.eps,
        };
        let packed = x.apply_op3_no_bwd(scale, &grad.contiguous()?, &op)?;
        let g = unpack(&packed, &[x.dims(), shift.dims(), scale.dims()])?;
        Ok((Some(g[0].clone()), Some(g[1].clone()), Some(g[2].clone())))
    }
}

/// `(x, scale, gy)` → packed `[dx | dshift | dscale]`.
struct LnModulateBwd {
    tokens: usize,
    eps: f32,
}

impl CustomOp3 for LnModulateBwd {
    fn name(&self) -> &'static str {
        "fused-ln-modulate-bwd"
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
        let x = slice(s1, l1, self.name())?;
        let scale = slice(s2, l2, self.name())?;
        let gy = slice(s3, l3, self.name())?;
        let (bsz, d) = (l2.dims()[0], l2.dims()[1]);
        let td = self.tokens * d;
        let fill = |out: &mut [f32]| {
            let (dx, rest) = out.split_at_mut(x.len());
            rest.fill(0.0);
            let (dshift, dscale) = rest.split_at_mut(bsz * d);
            dx.par_chunks_mut(td)
                .zip(dshift.par_chunks_mut(d).zip(dscale.par_chunks_mut(d)))
                .enumerate()
                .for_each(|(b, (dx, (dsh, dsc)))| {
                    let sc = &scale[b * d..][..d];
                    let mut g = vec![0f32; d];
                    // Slices of length `d` exactly, so the loops below carry no bounds checks.
                    let (g, dsh, dsc) = (&mut g[..d], &mut dsh[..d], &mut dsc[..d]);
                    simd::vectorized(
                        #[inline(always)]
                        || {
                            for t in 0..self.tokens {
                                let xr = &x[b * td + t * d..][..d];
                                let gr = &gy[b * td + t * d..][..d];
                                let (mean, rstd) = moments(xr, self.eps);
                                let mut sum_g = 0f32;
                                let mut sum_gx = 0f32;
                                for i in 0..d {
                                    let xh = (xr[i] - mean) * rstd;
                                    dsh[i] += gr[i];
                                    dsc[i] += gr[i] * xh;
                                    g[i] = gr[i] * (1.0 + sc[i]);
                                }
                                for i in 0..d {
                                    sum_g += g[i];
                                    sum_gx += g[i] * (xr[i] - mean);
                                }
                                let mg = sum_g / d as f32;
                                let mgx = sum_gx * rstd / d as f32;
                                let dxr = &mut dx[t * d..][..d];
                                for i in 0..d {
                                    dxr[i] = rstd * (g[i] - mg - (xr[i] - mean) * rstd * mgx);
                                }
                            }
                        },
                    )
                });
        };
        // SAFETY: `x` is (B, T, D) with B = `bsz`, so the per-batch blocks of `td` tile `dx` and
        // every element is assigned; the accumulators are zeroed first.
        let out = unsafe { uninit_output(x.len() + 2 * bsz * d, fill) };
        Ok((CpuStorage::F32(out), Shape::from(x.len() + 2 * bsz * d)))
    }
}

struct GatedAdd {
    tokens: usize,
}

impl CustomOp3 for GatedAdd {
    fn name(&self) -> &'static str {
        "fused-gated-add"
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
        let x = slice(s1, l1, self.name())?;
        let a = slice(s2, l2, self.name())?;
        let gate = slice(s3, l3, self.name())?;
        let d = l3.dims()[1];
        let fill = |y: &mut [f32]| {
            y.par_chunks_mut(ROWS * d)
                .zip(x.par_chunks(ROWS * d).zip(a.par_chunks(ROWS * d)))
                .enumerate()
                .for_each(|(chunk, (y, (x, a)))| {
                    simd::vectorized(
                        #[inline(always)]
                        || {
                            for (r, ((y, x), a)) in y
                                .chunks_exact_mut(d)
                                .zip(x.chunks_exact(d))
                                .zip(a.chunks_exact(d))
                                .enumerate()
                            {
                                let b = (chunk * ROWS + r) / self.tokens;
                                let g = &gate[b * d..][..d];
                                let (y, x, a) = (&mut y[..d], &x[..d], &a[..d]);
                                for i in 0..d {
                                    y[i] = x[i] + a[i] * g[i];
                                }
                            }
                        },
                    )
                });
        };
        // SAFETY: `x` and `a` are (B, T, D) (checked by `gated_add`), so their rows of `d` tile
        // `y` and every element is assigned.
        let y = unsafe { uninit_output(x.len(), fill) };
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        a: &Tensor,
        gate: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let op = GatedAddBwd {
            tokens: self.tokens,
        };
        let packed = grad.apply_op3_no_bwd(a, gate, &op)?;
        let g = unpack(&packed, &[a.dims(), gate.dims()])?;
        Ok((Some(grad), Some(g[0].clone()), Some(g[1].clone())))
    }
}

/// `(g, a, gate)` → packed `[da | dgate]`.
struct GatedAddBwd {
    tokens: usize,
}

impl CustomOp3 for GatedAddBwd {
    fn name(&self) -> &'static str {
        "fused-gated-add-bwd"
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
        let g = slice(s1, l1, self.name())?;
        let a = slice(s2, l2, self.name())?;
        let gate = slice(s3, l3, self.name())?;
        let (bsz, d) = (l3.dims()[0], l3.dims()[1]);
        let td = self.tokens * d;
        let fill = |out: &mut [f32]| {
            let (da, dgate) = out.split_at_mut(g.len());
            dgate.fill(0.0);
            da.par_chunks_mut(td)
                .zip(dgate.par_chunks_mut(d))
                .enumerate()
                .for_each(|(b, (da, dg))| {
                    let (gt, dg) = (&gate[b * d..][..d], &mut dg[..d]);
                    simd::vectorized(
                        #[inline(always)]
                        || {
                            for t in 0..self.tokens {
                                let gr = &g[b * td + t * d..][..d];
                                let ar = &a[b * td + t * d..][..d];
                                let dar = &mut da[t * d..][..d];
                                for i in 0..d {
                                    dar[i] = gr[i] * gt[i];
                                    dg[i] += gr[i] * ar[i];
                                }
                            }
                        },
                    )
                });
        };
        // SAFETY: the gradient is (B, T, D) with B = `bsz`, so the per-batch blocks of `td`
        // tile `da` and every element is assigned; the gate accumulator is zeroed first.
        let out = unsafe { uninit_output(g.len() + bsz * d, fill) };
        Ok((CpuStorage::F32(out), Shape::from(g.len() + bsz * d)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, vars};
    use super::*;

    #[test]
    fn fused_ln_modulate_matches_the_composition() -> candle_core::Result<()> {
        for (b, t, d) in [(3, 5, 16), (2, 70, 37)] {
            let v = vars(&[&[b, t, d], &[b, d], &[b, d]], 1.0)?;
            let x = ((v[0].as_tensor() * 3.0)? + 2.0)?;
            let v = vec![
                candle_core::Var::from_tensor(&x)?,
                v[1].clone(),
                v[2].clone(),
            ];
            check(
                &v,
                |x| ln_modulate_fused(&x[0], &x[1], &x[2], 1e-6),
                |x| ln_modulate_plain(&x[0], &x[1], &x[2], 1e-6),
                1e-5,
            )?;
        }
        Ok(())
    }

    #[test]
    fn fused_gated_add_matches_the_composition() -> candle_core::Result<()> {
        let v = vars(&[&[3, 67, 24], &[3, 67, 24], &[3, 24]], 1.0)?;
        check(
            &v,
            |x| gated_add_fused(&x[0], &x[1], &x[2]),
            |x| gated_add_plain(&x[0], &x[1], &x[2]),
            1e-5,
        )
    }

    #[test]
    fn mismatched_modulation_is_an_error() -> candle_core::Result<()> {
        let v = vars(&[&[2, 4, 8], &[2, 7]], 1.0)?;
        let (x, m) = (v[0].as_tensor(), v[1].as_tensor());
        assert!(ln_modulate_fused(x, m, m, 1e-6).is_err());
        assert!(gated_add_fused(x, x, m).is_err());
        Ok(())
    }
}

//! tanh-approximated GELU in one pass, forward and backward.
//!
//! `0.5 x (1 + tanh(u))` with `u = sqrt(2/pi) (x + 0.044715 x^3)` equals `x sigmoid(2u)`, which
//! has no cancellation in either tail; the derivative is `s + x s (1 - s) 2u'` with `s =
//! sigmoid(2u)`. Both use the vectorisable [`simd::exp`].

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{applies, simd, slice, uninit_output};

/// sqrt(2 / pi).
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
/// The cubic coefficient of the tanh approximation.
const CUBIC: f32 = 0.044_715;
/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// tanh-approximated GELU (`Tensor::gelu`), fused when [`super::fused`] applies.
pub fn gelu(x: &Tensor) -> candle_core::Result<Tensor> {
    if applies(x) {
        gelu_fused(x)
    } else {
        gelu_plain(x)
    }
}

/// candle's own tanh-approximated GELU.
pub fn gelu_plain(x: &Tensor) -> candle_core::Result<Tensor> {
    x.gelu()
}

fn gelu_fused(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(Gelu)
}

/// `y = gelu(x)` elementwise, in parallel chunks; `y` may be uninitialised (it is only written).
pub(super) fn gelu_into(x: &[f32], y: &mut [f32]) {
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| {
            simd::vectorized(
                #[inline(always)]
                || {
                    for (y, &x) in y.iter_mut().zip(x) {
                        let z = 2.0 * SQRT_2_OVER_PI * (x + CUBIC * x * x * x);
                        *y = x * simd::sigmoid(z);
                    }
                },
            )
        });
}

/// `dx = g · gelu'(x)` elementwise, in parallel chunks; `dx` may be uninitialised.
pub(super) fn gelu_grad_into(x: &[f32], g: &[f32], dx: &mut [f32]) {
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
        .for_each(|(dx, (x, g))| {
            simd::vectorized(
                #[inline(always)]
                || {
                    for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(g) {
                        let x2 = x * x;
                        let z = 2.0 * SQRT_2_OVER_PI * (x + CUBIC * x2 * x);
                        let dz = 2.0 * SQRT_2_OVER_PI * (1.0 + 3.0 * CUBIC * x2);
                        let e = simd::exp(-z);
                        let s = 1.0 / (1.0 + e);
                        *dx = g * (s + x * dz * (e * s) * s);
                    }
                },
            )
        });
}

struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "fused-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s, l, self.name())?;
        // SAFETY: `gelu_into` assigns every element of an output as long as `x`.
        let y = unsafe { uninit_output(x.len(), |y| gelu_into(x, y)) };
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &GeluBwd)?))
    }
}

/// `grad * gelu'(x)`.
struct GeluBwd;

impl CustomOp2 for GeluBwd {
    fn name(&self) -> &'static str {
        "fused-gelu-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, self.name())?;
        let g = slice(s2, l2, self.name())?;
        if g.len() != x.len() {
            candle_core::bail!("{}: gradient and input sizes differ", self.name());
        }
        // SAFETY: `x` and `g` have the output's length, so every element is assigned.
        let dx = unsafe { uninit_output(x.len(), |dx| gelu_grad_into(x, g, dx)) };
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, vars};
    use super::*;

    #[test]
    fn fused_gelu_matches_candle_forward_and_backward() -> candle_core::Result<()> {
        let v = vars(&[&[3, 7, 129]], 3.0)?;
        check(&v, |x| gelu_fused(&x[0]), |x| gelu_plain(&x[0]), 1e-5)
    }

    #[test]
    fn fused_gelu_handles_large_and_strided_inputs() -> candle_core::Result<()> {
        let x = (Tensor::randn(0f32, 1.0, (40, 30), &candle_core::Device::Cpu)? * 40.0)?.t()?;
        let d = super::super::testing::rel_diff(&gelu_fused(&x)?, &gelu_plain(&x)?)?;
        assert!(d < 1e-6, "{d:e}");
        Ok(())
    }
}

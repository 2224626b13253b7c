//! Fused CPU kernels for the DiT, as candle custom ops with their backward passes.
//!
//! Modules by concept: [`gelu`](gelu()), LayerNorm with adaLN modulation and the gated residual
//! ([`ln_modulate`], [`gated_add`]), [`attention`](attention()), [`linear`](linear()) with a fused
//! bias; `simd` holds the vectorisable math they share, `sgemm` the matrix products
//! (through OpenBLAS, loaded by `blas`, when the system has it, else candle's gemm crate).
//!
//! candle evaluates a composed op (LayerNorm, modulation, tanh-GELU, softmax attention) one
//! elementwise pass at a time, with a fresh tensor per pass, and differentiates it the same way.
//! Each kernel here does one such composition in one or two passes over the data, forward and
//! backward. Every public function takes the plain candle composition when the fused path is
//! off ([`fused`]), when the tensors are not f32, or when they are not on the CPU; the two paths
//! agree to float tolerance (tested in each module).
//!
//! The fused path is on by default; `FLOWRUN_FUSED=0` (or `fused = false` in the machine
//! settings file) selects the plain composition.

mod adamw;
mod alloc;
mod attention;
mod blas;
mod ema;
mod gelu;
mod layer_norm;
mod linear;
mod sgemm;
pub(crate) mod simd;

use std::sync::atomic::{AtomicU8, Ordering};

use candle_core::{CpuStorage, DType, Layout, Tensor};

pub use adamw::{adamw_step, AdamWCoefficients};
pub use alloc::tune_allocator;
pub use attention::{attention, attention_plain};
pub use blas::{blas_description, set_blas, BlasLoadError, BLAS_ENV};
pub use ema::ema_step;
pub use gelu::{gelu, gelu_plain};
pub use layer_norm::{gated_add, gated_add_plain, ln_modulate, ln_modulate_plain};
pub use linear::{linear, linear_gelu, linear_plain};

/// Name of the environment variable that switches the fused kernels off (`0`, `false`, `off`).
pub const FUSED_ENV: &str = "FLOWRUN_FUSED";

const UNSET: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;
static FUSED: AtomicU8 = AtomicU8::new(UNSET);

/// Parses a switch value: `0`, `false`, `off`, `no` are off; `1`, `true`, `on`, `yes` are on.
pub fn parse_switch(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "0" | "false" | "off" | "no" => Some(false),
        "1" | "true" | "on" | "yes" => Some(true),
        _ => None,
    }
}

/// Whether the fused kernels are used: [`set_fused`] if called, else `FLOWRUN_FUSED` read once
/// (on unless it says off).
pub fn fused() -> bool {
    match FUSED.load(Ordering::Relaxed) {
        OFF => false,
        ON => true,
        _ => {
            let on = std::env::var(FUSED_ENV)
                .ok()
                .and_then(|v| parse_switch(&v))
                .unwrap_or(true);
            set_fused(on);
            on
        }
    }
}

/// Switches the fused kernels on or off for the whole process (the benchmark compares both).
pub fn set_fused(on: bool) {
    FUSED.store(if on { ON } else { OFF }, Ordering::Relaxed);
}

/// Whether the fused path applies to `t`: switched on, f32, on the CPU.
fn applies(t: &Tensor) -> bool {
    t.dtype() == DType::F32 && t.device().is_cpu() && fused()
}

/// The f32 data of a contiguous CPU operand.
fn slice<'a>(s: &'a CpuStorage, l: &Layout, op: &'static str) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: operand with shape {:?} is not contiguous", l.dims()),
    }
}

/// A `len`-element op output filled by `fill`, with no zeroing pass first (`vec![0; n]` was
/// the largest serial cost of the fused ops: a memset on the calling thread per output).
///
/// # Safety
/// `fill` must write every element of the slice it is given, and read only elements it has
/// already written.
unsafe fn uninit_output(len: usize, fill: impl FnOnce(&mut [f32])) -> Vec<f32> {
    let mut out = Vec::<f32>::with_capacity(len);
    // SAFETY: the capacity is at least `len`; `fill` initialises every element (caller's
    // contract) before `set_len` exposes them.
    unsafe {
        fill(std::slice::from_raw_parts_mut(out.as_mut_ptr(), len));
        out.set_len(len);
    }
    out
}

/// Splits a packed 1-D tensor into consecutive pieces of the given shapes.
fn unpack(packed: &Tensor, shapes: &[&[usize]]) -> candle_core::Result<Vec<Tensor>> {
    let mut start = 0;
    shapes
        .iter()
        .map(|dims| {
            let n: usize = dims.iter().product();
            let piece = packed.narrow(0, start, n)?.reshape(*dims);
            start += n;
            piece
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod testing {
    //! Comparison of the fused and the plain path, forward and backward.

    use candle_core::{Device, Tensor, Var};

    /// Max `|a - b|` over `max |b|` (plus a floor of 1), as f64.
    pub fn rel_diff(a: &Tensor, b: &Tensor) -> candle_core::Result<f64> {
        let diff = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()? as f64;
        let scale = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()? as f64;
        Ok(diff / scale.max(1.0))
    }

    /// Seeded normal variables of the given shapes.
    pub fn vars(shapes: &[&[usize]], std: f64) -> candle_core::Result<Vec<Var>> {
        shapes
            .iter()
            .map(|s| Var::from_tensor(&Tensor::randn(0f32, std as f32, *s, &Device::Cpu)?))
            .collect()
    }

    /// Runs `fused` and `plain` on `inputs`, backpropagates `sum(out * w)` for a fixed random
    /// `w`, and asserts that outputs and every input gradient agree to `tol`.
    pub fn check(
        inputs: &[Var],
        fused: impl Fn(&[Tensor]) -> candle_core::Result<Tensor>,
        plain: impl Fn(&[Tensor]) -> candle_core::Result<Tensor>,
        tol: f64,
    ) -> candle_core::Result<()> {
        let xs: Vec<Tensor> = inputs.iter().map(|v| v.as_tensor().clone()).collect();
        let (a, b) = (fused(&xs)?, plain(&xs)?);
        assert_eq!(a.dims(), b.dims());
        let d = rel_diff(&a, &b)?;
        assert!(d < tol, "forward differs by {d:e}");
        let w = Tensor::randn(0f32, 1.0, a.dims(), &Device::Cpu)?;
        let ga = (&a * &w)?.sum_all()?.backward()?;
        let gb = (&b * &w)?.sum_all()?.backward()?;
        for (i, x) in xs.iter().enumerate() {
            let (Some(ga), Some(gb)) = (ga.get(x), gb.get(x)) else {
                panic!("input {i} has no gradient");
            };
            let d = rel_diff(ga, gb)?;
            assert!(d < tol, "gradient of input {i} differs by {d:e}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_values_parse() {
        for v in ["0", "false", "OFF", " no "] {
            assert_eq!(parse_switch(v), Some(false), "{v}");
        }
        for v in ["1", "true", "On", "yes"] {
            assert_eq!(parse_switch(v), Some(true), "{v}");
        }
        assert_eq!(parse_switch("maybe"), None);
    }

    #[test]
    fn unpack_splits_in_order() -> candle_core::Result<()> {
        let t = Tensor::arange(0f32, 10.0, &candle_core::Device::Cpu)?;
        let parts = unpack(&t, &[&[2, 3], &[4]])?;
        assert_eq!(
            parts[0].to_vec2::<f32>()?,
            vec![vec![0., 1., 2.], vec![3., 4., 5.]]
        );
        assert_eq!(parts[1].to_vec1::<f32>()?, vec![6., 7., 8., 9.]);
        Ok(())
    }
}

//! The weight-EMA update of one f32 tensor in one pass.
//!
//! `s - ((s - p) (1 - d) + 0)` evaluated per element in the order of the op-by-op update in
//! `model::ema` (candle's `affine` adds its zero offset), so the two are bitwise identical.

use candle_core::{DType, Storage, Tensor};
use rayon::prelude::*;

use super::{applies, simd};

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// The contiguous f32 CPU data of `t` (copied out), or `None` for any other tensor.
fn cpu_f32(t: &Tensor) -> candle_core::Result<Option<Vec<f32>>> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    Ok(match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(cpu), Some((start, end))) if t.dtype() == DType::F32 => {
            Some(cpu.as_slice::<f32>()?[start..end].to_vec())
        }
        _ => None,
    })
}

/// The shadow moved toward `param` with weight `1 - decay`, or `None` when the fused path does
/// not apply (switched off, or not f32 CPU tensors of one shape).
pub fn ema_step(
    shadow: &Tensor,
    param: &Tensor,
    decay: f64,
) -> candle_core::Result<Option<Tensor>> {
    if !(applies(shadow) && applies(param) && shadow.dims() == param.dims()) {
        return Ok(None);
    }
    let (Some(mut s), Some(p)) = (cpu_f32(shadow)?, cpu_f32(param)?) else {
        return Ok(None);
    };
    let w = (1.0 - decay) as f32;
    s.par_chunks_mut(CHUNK)
        .zip(p.par_chunks(CHUNK))
        .for_each(|(s, p)| {
            simd::vectorized(
                #[inline(always)]
                || {
                    for (s, &p) in s.iter_mut().zip(p) {
                        *s -= (*s - p) * w + 0.0;
                    }
                },
            )
        });
    Ok(Some(Tensor::from_vec(s, shadow.shape(), shadow.device())?))
}

//! The precision a run computes in, from `trainer.precision` and the device.
//!
//! Master weights, optimizer state and the loss reduction always stay f32. On a CUDA device
//! `16-mixed` and `bf16-mixed` run the network in f16 / bf16 over those weights (casts are part
//! of the graph, so gradients land on the f32 weights). candle's CPU kernels have no fast
//! half-precision path, so on the CPU every precision other than `32` computes in f32, and the
//! returned notice says so in one line for the trainer to print. `*-true` precisions (half
//! weights) and `64` are not offered: they fall back the same way, with a notice.

use candle_core::{DType, Device};

use crate::config::schema::Precision;

/// What a run computes in, and a one-line notice when that is not what was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectivePrecision {
    /// The `trainer.precision` that was asked for.
    pub requested: Precision,
    /// The dtype the network computes in.
    pub compute_dtype: DType,
    /// A line for the user when the request was changed or has a caveat.
    pub notice: Option<String>,
}

/// The precision a run with `requested` uses on `device`.
pub fn effective_precision(requested: Precision, device: &Device) -> EffectivePrecision {
    let name = requested.as_str();
    let half = match requested {
        Precision::Mixed16 | Precision::True16 => Some(DType::F16),
        Precision::MixedBf16 | Precision::TrueBf16 => Some(DType::BF16),
        Precision::Full32 | Precision::Double64 => None,
    };
    let (compute_dtype, notice) = match (requested, half) {
        (Precision::Full32, _) => (DType::F32, None),
        (Precision::Double64, _) => (
            DType::F32,
            Some(format!(
                "trainer.precision={name} is not supported; training in 32-bit floats \
                 (set trainer.precision=32 to silence this)"
            )),
        ),
        (_, Some(dtype)) if device.is_cuda() => {
            let mixed = if dtype == DType::F16 {
                "16-mixed"
            } else {
                "bf16-mixed"
            };
            let notice = match requested {
                Precision::True16 | Precision::TrueBf16 => Some(format!(
                    "trainer.precision={name}: half-precision weights are not supported; using \
                     {mixed} (f32 weights, {dtype:?} compute)"
                )),
                Precision::Mixed16 => Some(
                    "trainer.precision=16-mixed computes in f16 without loss scaling; use \
                     bf16-mixed if the loss underflows or turns NaN"
                        .to_string(),
                ),
                _ => None,
            };
            (dtype, notice)
        }
        (_, _) => (
            DType::F32,
            Some(format!(
                "trainer.precision={name}: half-precision compute is not supported on the {}; \
                 training in 32-bit floats (set trainer.precision=32 to silence this)",
                device_name(device)
            )),
        ),
    };
    EffectivePrecision {
        requested,
        compute_dtype,
        notice,
    }
}

fn device_name(device: &Device) -> &'static str {
    if device.is_cuda() {
        "GPU"
    } else if device.is_metal() {
        "Metal device"
    } else {
        "CPU"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_falls_back_to_f32_with_one_line() {
        let cpu = Device::Cpu;
        let full = effective_precision(Precision::Full32, &cpu);
        assert_eq!((full.compute_dtype, full.notice), (DType::F32, None));
        for p in [
            Precision::MixedBf16,
            Precision::Mixed16,
            Precision::TrueBf16,
            Precision::True16,
            Precision::Double64,
        ] {
            let e = effective_precision(p, &cpu);
            assert_eq!(e.compute_dtype, DType::F32, "{p:?}");
            let notice = e.notice.expect("a notice");
            assert!(!notice.contains('\n'), "{notice}");
            assert!(notice.contains(p.as_str()), "{notice}");
            assert!(notice.contains("32-bit"), "{notice}");
        }
    }
}

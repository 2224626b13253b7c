//! The RMS norm of dopri5's error control, summed in the order of torch's CPU `sum`.
//!
//! At tight tolerances the error estimate of a small step is rounding noise, so the order of the
//! RMS sum moves the next step size. torch sums a contiguous tensor serially with `cascade_sum`
//! (AVX2 vectors of 8 f32 / 4 f64 lanes, 4 chains, 4 cascade levels, accumulating in the dtype)
//! when it has at most 32768 elements; larger tensors are split across threads, an order that
//! depends on the thread count, and are summed here in f64 on their device instead.

use candle_core::{DType, Tensor};

use super::grid::round_to;
use crate::sampler::error::SamplerError;

/// torch's `GRAIN_SIZE`: above it a CPU reduction may be split across threads.
const SERIAL_LIMIT: usize = 32768;

/// Independent accumulator chains of `row_sum`.
const CHAINS: usize = 4;

/// Cascade levels of `multi_row_sum`.
const LEVELS: usize = 4;

/// `sqrt(mean(x^2))` over all elements, rounded to `x`'s dtype as torch's
/// `x.abs().pow(2).mean().sqrt()` computes it (squares, sum, division and root in the dtype).
pub(crate) fn rms(x: &Tensor) -> Result<f64, SamplerError> {
    let dtype = x.dtype();
    let n = x.elem_count();
    let squares = x.sqr()?.flatten_all()?.to_dtype(DType::F64)?;
    let sum = if n <= SERIAL_LIMIT {
        cascade_sum(&squares.to_vec1::<f64>()?, dtype)
    } else {
        round_to(squares.sum_all()?.to_scalar::<f64>()?, dtype)
    };
    let mean = round_to(sum / n.max(1) as f64, dtype);
    Ok(round_to(mean.sqrt(), dtype))
}

/// torch's serial `cascade_sum` of a contiguous run, each addition rounded to `dtype`.
fn cascade_sum(values: &[f64], dtype: DType) -> f64 {
    let add = |a: f64, b: f64| round_to(a + b, dtype);
    let width = if dtype == DType::F32 { 8 } else { 4 };
    if values.len() < width {
        return row_sum(values.len(), 1, |i, _| values[i], add)[0];
    }
    let vectors = values.len() / width;
    let lanes = row_sum(vectors, width, |i, lane| values[i * width + lane], add);
    let tail = values[vectors * width..]
        .iter()
        .fold(0.0, |acc, &v| add(acc, v));
    lanes.into_iter().fold(tail, add)
}

/// `row_sum`: `count` items of `width` lanes summed lane-wise by 4 chains, then the chains folded.
fn row_sum(
    count: usize,
    width: usize,
    load: impl Fn(usize, usize) -> f64,
    add: impl Fn(f64, f64) -> f64,
) -> Vec<f64> {
    let groups = count / CHAINS;
    let mut chains = multi_row_sum(
        groups,
        width,
        |group, chain, lane| load(group * CHAINS + chain, lane),
        &add,
    );
    for item in groups * CHAINS..count {
        for (lane, sum) in chains[0].iter_mut().enumerate() {
            *sum = add(*sum, load(item, lane));
        }
    }
    let (first, rest) = chains.split_at_mut(1);
    add_into(&mut first[0], rest, &add);
    chains.swap_remove(0)
}

/// `multi_row_sum`: the 4 chains of `size` groups, accumulated through 4 cascade levels.
fn multi_row_sum(
    size: usize,
    width: usize,
    load: impl Fn(usize, usize, usize) -> f64,
    add: impl Fn(f64, f64) -> f64,
) -> Vec<Vec<f64>> {
    let level_power = (ceil_log2(size) / LEVELS).max(4);
    let level_step = 1usize << level_power;
    let level_mask = level_step - 1;
    let mut acc = vec![vec![vec![0.0; width]; CHAINS]; LEVELS];
    let accumulate = |level0: &mut Vec<Vec<f64>>, group: usize| {
        for (chain, sums) in level0.iter_mut().enumerate() {
            for (lane, sum) in sums.iter_mut().enumerate() {
                *sum = add(*sum, load(group, chain, lane));
            }
        }
    };
    let mut i = 0;
    while i + level_step <= size {
        for _ in 0..level_step {
            accumulate(&mut acc[0], i);
            i += 1;
        }
        for level in 1..LEVELS {
            let (lower, upper) = acc.split_at_mut(level);
            for (dst, src) in upper[0].iter_mut().zip(lower[level - 1].iter_mut()) {
                for (d, s) in dst.iter_mut().zip(src.iter_mut()) {
                    *d = add(*d, *s);
                    *s = 0.0;
                }
            }
            if i & (level_mask << (level * level_power)) != 0 {
                break;
            }
        }
    }
    while i < size {
        accumulate(&mut acc[0], i);
        i += 1;
    }
    let (first, rest) = acc.split_at_mut(1);
    for level in rest.iter() {
        for (dst, src) in first[0].iter_mut().zip(level) {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = add(*d, *s);
            }
        }
    }
    acc.swap_remove(0)
}

/// Adds each of `others` lane-wise into `sums`, in order.
fn add_into(sums: &mut [f64], others: &[Vec<f64>], add: impl Fn(f64, f64) -> f64) {
    for other in others {
        for (sum, value) in sums.iter_mut().zip(other) {
            *sum = add(*sum, *value);
        }
    }
}

/// ATen's `CeilLog2`: 1 for `x <= 2`, else `ceil(log2(x))`.
fn ceil_log2(x: usize) -> usize {
    if x <= 2 {
        1
    } else {
        (usize::BITS - (x - 1).leading_zeros()) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn twelve_f64_values_sum_lane_by_lane() {
        let v: Vec<f64> = (0..12).map(|i| 1.0 + i as f64 * 1e-17 * 3.0).collect();
        let lane = |j: usize| v[j] + v[4 + j] + v[8 + j];
        let want = 0.0 + lane(0) + lane(1) + lane(2) + lane(3);
        assert_eq!(cascade_sum(&v, DType::F64), want);
    }

    #[test]
    fn sums_are_accurate_for_every_length() {
        for n in [0, 1, 3, 7, 8, 9, 63, 64, 65, 1000, 4096, 20000] {
            let v: Vec<f64> = (0..n).map(|i| ((i * 7919) % 1000) as f64 / 997.0).collect();
            let exact: f64 = v.iter().sum();
            for dtype in [DType::F32, DType::F64] {
                let v: Vec<f64> = v.iter().map(|&x| round_to(x, dtype)).collect();
                let exact_in_dtype: f64 = v.iter().sum();
                let got = cascade_sum(&v, dtype);
                let tol = if dtype == DType::F32 { 1e-6 } else { 1e-14 };
                assert!(
                    (got - exact_in_dtype).abs() <= tol * exact.abs().max(1.0),
                    "{n} {dtype:?}"
                );
            }
        }
        assert_eq!(ceil_log2(1), 1);
        assert_eq!(ceil_log2(3), 2);
        assert_eq!(ceil_log2(1 << 20), 20);
        assert_eq!(ceil_log2((1 << 20) + 1), 21);
    }

    #[test]
    fn rms_matches_the_definition() {
        let x = Tensor::new(&[3.0f64, 4.0], &Device::Cpu).unwrap();
        assert_eq!(rms(&x).unwrap(), 12.5f64.sqrt());
        let big = Tensor::ones(SERIAL_LIMIT + 1, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(rms(&(big * 2.0).unwrap()).unwrap(), 2.0);
    }
}

//! Scalar building blocks written so that the compiler vectorises them: a branch-free `exp`,
//! the logistic function, lane-split sums, and a runner that compiles a closure for AVX2+FMA
//! when the CPU has it (the baseline x86-64 target only guarantees SSE2).

/// `exp(x)` for f32 with about 2 ulp error, branch-free so that loops over it vectorise.
///
/// Cody-Waite reduction `x = n ln2 + r`, `|r| <= ln2 / 2`, a degree-6 Taylor polynomial for
/// `e^r`, and `2^n` built from the exponent bits. Inputs are clamped to `[-87.3, 88.3]`, so
/// the result is never infinite and never subnormal.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // The low mantissa bits of `shifted` hold n as a two's-complement integer, so the exponent
    // field of 2^n comes from integer ops (a float-to-int cast saturates and does not vectorise).
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    p * f32::from_bits(biased << 23)
}

/// The logistic function `1 / (1 + e^-z)`.
#[inline(always)]
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp(-z))
}

/// Sum of a slice, accumulated in 8 lanes so that it vectorises.
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    let mut s = 0f32;
    for v in tail {
        s += v;
    }
    acc.iter().sum::<f32>() + s
}

/// Largest element of a non-empty slice (NaN-free input), compared in 8 lanes.
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    tail.iter()
        .chain(&acc)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// Dot product of two equally long slices, accumulated in 8 lanes.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = 0f32;
    for (x, y) in ta.iter().zip(tb) {
        s += x * y;
    }
    acc.iter().sum::<f32>() + s
}

/// Sum of squared deviations from `mean`, accumulated in 8 lanes.
#[inline(always)]
pub fn sq_dev(x: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            let d = c[l] - mean;
            acc[l] += d * d;
        }
    }
    let mut s = 0f32;
    for v in tail {
        let d = v - mean;
        s += d * d;
    }
    acc.iter().sum::<f32>() + s
}

/// Runs `f`, compiled with AVX2 and FMA enabled when the running CPU supports them.
///
/// Mark the closure `#[inline(always)]` (`vectorized(#[inline(always)] || ...)`): a closure
/// left out of line is compiled on its own for the baseline target (SSE2, no FMA), and the
/// profile showed the LayerNorm, softmax and gated-residual loops running that way.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { run_avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_to_a_few_ulp() {
        let mut worst = 0f32;
        for i in -8700..=8830 {
            let x = i as f32 * 0.01;
            let (got, want) = (exp(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 5e-7, "worst relative error {worst:e}");
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1e-37);
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn sigmoid_is_accurate_in_both_tails() {
        for z in [-30.0f32, -5.0, -0.1, 0.0, 0.1, 5.0, 30.0] {
            let want = 1.0 / (1.0 + (-z as f64).exp());
            let got = sigmoid(z) as f64;
            assert!(((got - want) / want).abs() < 1e-6, "z {z}: {got} vs {want}");
        }
    }

    #[test]
    fn lane_sums_match_sequential_sums() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let s: f64 = a.iter().map(|&v| v as f64).sum();
        let d: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
        let m = (s / 37.0) as f32;
        let v: f64 = a.iter().map(|&x| ((x - m) as f64).powi(2)).sum();
        assert!((sum(&a) as f64 - s).abs() < 1e-5);
        assert!((dot(&a, &b) as f64 - d).abs() < 1e-5);
        assert!((sq_dev(&a, m) as f64 - v).abs() < 1e-5);
        assert_eq!(vectorized(|| sum(&a)), sum(&a));
        let want = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(max(&a), want);
        assert_eq!(
            max(&a[..3]),
            a[..3].iter().copied().fold(f32::NEG_INFINITY, f32::max)
        );
    }
}

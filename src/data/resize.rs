//! Mask resizing, separable, in `f32`.
//!
//! * When the source side is an integer multiple of the output side (224 → 112, 56, 32, 28,
//!   16, …) every output pixel is the plain **area average** of its `k × k` source block.
//! * Otherwise (224 → 64, or any upscale) it is **antialiased bilinear**: Pillow's `BILINEAR`
//!   resampling, a triangle filter whose support widens by the downscale factor, so every
//!   source pixel contributes and thin walls do not vanish.
//!
//! Both are computed by the same code as Pillow's `Image.resize` (box filter in the first case),
//! and the tests compare with numbers Pillow produced.

/// Which filter a resize uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeFilter {
    /// The mean of each source block (integer factors).
    Area,
    /// Pillow's antialiased bilinear (any other factor).
    AntialiasedBilinear,
}

/// The filter [`resize_mask`] picks for a side going from `from` to `to` pixels.
pub fn filter_for(from: usize, to: usize) -> ResizeFilter {
    if to > 0 && from % to == 0 {
        ResizeFilter::Area
    } else {
        ResizeFilter::AntialiasedBilinear
    }
}

/// One output pixel's source window: the first source index and the normalised weights.
struct Tap {
    start: usize,
    weights: Vec<f32>,
}

fn taps(from: usize, to: usize, filter: ResizeFilter) -> Vec<Tap> {
    let scale = from as f64 / to as f64;
    let filter_scale = scale.max(1.0);
    let (base_support, kernel): (f64, fn(f64) -> f64) = match filter {
        ResizeFilter::Area => (0.5, |x| if (-0.5..0.5).contains(&x) { 1.0 } else { 0.0 }),
        ResizeFilter::AntialiasedBilinear => (1.0, |x| (1.0 - x.abs()).max(0.0)),
    };
    let support = base_support * filter_scale;
    (0..to)
        .map(|out| {
            let center = (out as f64 + 0.5) * scale;
            let start = ((center - support + 0.5).floor().max(0.0)) as usize;
            let end = ((center + support + 0.5).floor() as usize).min(from);
            let raw: Vec<f64> = (start..end)
                .map(|i| kernel((i as f64 - center + 0.5) / filter_scale))
                .collect();
            let total: f64 = raw.iter().sum();
            let weights = raw
                .iter()
                .map(|w| {
                    if total != 0.0 {
                        (w / total) as f32
                    } else {
                        0.0
                    }
                })
                .collect();
            Tap { start, weights }
        })
        .collect()
}

/// Resizes a row-major `height × width` mask to `out_h × out_w` (see the module docs for the
/// filter). Equal sizes return a copy.
pub fn resize_mask<T: Copy>(
    src: &[T],
    height: usize,
    width: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32>
where
    f32: From<T>,
{
    if (height, width) == (out_h, out_w) {
        return src.iter().map(|&v| f32::from(v)).collect();
    }
    // Rows first: each output row is a weighted sum of whole source rows (contiguous, so the
    // compiler vectorises it); then each of the few remaining rows is resized along x.
    // Masks are mostly empty: only the span between each source row's first and last nonzero
    // value is accumulated.
    let spans: Vec<(usize, usize)> = src
        .chunks_exact(width)
        .map(|row| {
            let nonzero = |v: &T| f32::from(*v) != 0.0;
            match row.iter().position(nonzero) {
                Some(lo) => (lo, width - row.iter().rev().position(nonzero).unwrap_or(0)),
                None => (0, 0),
            }
        })
        .collect();
    let vertical = taps(height, out_h, filter_for(height, out_h));
    let mut rows = vec![0f32; out_h * width];
    for (y, tap) in vertical.iter().enumerate() {
        let row = &mut rows[y * width..(y + 1) * width];
        for (k, &w) in tap.weights.iter().enumerate() {
            let (lo, hi) = spans[tap.start + k];
            let src_row = &src[(tap.start + k) * width + lo..(tap.start + k) * width + hi];
            for (o, &v) in row[lo..hi].iter_mut().zip(src_row) {
                *o += w * f32::from(v);
            }
        }
    }
    let horizontal = taps(width, out_w, filter_for(width, out_w));
    let mut out = vec![0f32; out_h * out_w];
    for (line, dst) in rows.chunks_exact(width).zip(out.chunks_exact_mut(out_w)) {
        for (o, tap) in dst.iter_mut().zip(&horizontal) {
            *o = tap
                .weights
                .iter()
                .zip(&line[tap.start..])
                .map(|(w, v)| w * v)
                .sum();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() < 1e-5, "at {i}: {x} vs {y}\n{a:?}\n{b:?}");
        }
    }

    #[test]
    fn integer_factors_average_each_block_by_hand() {
        #[rustfmt::skip]
        let src = [
            1., 1., 0., 0.,
            1., 0., 0., 0.,
            0., 0., 1., 1.,
            0., 1., 1., 1.,
        ];
        assert_eq!(filter_for(4, 2), ResizeFilter::Area);
        close(&resize_mask(&src, 4, 4, 2, 2), &[0.75, 0.0, 0.25, 1.0]);
        close(&resize_mask(&src, 4, 4, 1, 1), &[0.5]);
    }

    // Reference: Pillow 13 on a mode "F" image, `Image.resize((3, 3), Image.BILINEAR)` of the
    // 7×7 mask with ones at (row, col) in {(0,0),(1,1),(2,2),(2,3),(3,3),(4,2),(5,5),(6,0)}
    // (computed once, see tests/fixtures/make_fixtures.py).
    #[test]
    fn other_factors_match_pillow_antialiased_bilinear() {
        let mut src = [0f32; 49];
        for (r, c) in [
            (0, 0),
            (1, 1),
            (2, 2),
            (2, 3),
            (3, 3),
            (4, 2),
            (5, 5),
            (6, 0),
        ] {
            src[r * 7 + c] = 1.0;
        }
        assert_eq!(filter_for(7, 3), ResizeFilter::AntialiasedBilinear);
        close(&resize_mask(&src, 7, 7, 3, 3), &PILLOW_7_TO_3);
    }

    const PILLOW_7_TO_3: [f32; 9] = [
        0.357_142_87,
        0.163_865_55,
        0.0,
        0.126_050_43,
        0.384_083_06,
        0.025_210_084,
        0.173_469_4,
        0.075_630_255,
        0.183_673_47,
    ];

    #[test]
    fn constant_masks_stay_constant_and_sizes_are_kept() {
        let src = vec![1f32; 224 * 224];
        let out = resize_mask(&src, 224, 224, 64, 64);
        assert_eq!(out.len(), 64 * 64);
        assert!(out.iter().all(|v| (v - 1.0).abs() < 1e-5));
        let up = resize_mask(&src[..16 * 16], 16, 16, 24, 24);
        assert!(up.iter().all(|v| (v - 1.0).abs() < 1e-5));
    }
}

//! The `Validation_Samples_*` image: per scene, the context as a colour composite, the generated
//! mask and the ground truth, side by side; one row per scene.
//!
//! Masks are in `[-1, 1]` (-1 empty, 1 occupied) and are drawn on black: occupied context
//! channels in the colours of [`CONTEXT_CHANNELS`], the generated and ground-truth masks in gray
//! levels. Panels and rows are separated by [`GUTTER`] pixels of mid gray.

use candle_core::{DType, Tensor};

use super::image::{unit_to_byte, ColorMode, Image};
use super::TelemetryError;

/// The context channels in tensor order, with the colour each is drawn in.
pub const CONTEXT_CHANNELS: [(&str, [u8; 3]); 5] = [
    ("static obstacles", [150, 150, 150]),
    ("movable obstacles", [31, 119, 255]),
    ("robot", [255, 127, 14]),
    ("goal", [44, 200, 44]),
    ("target object", [230, 30, 40]),
];

/// Pixels between panels and between rows.
pub const GUTTER: usize = 2;

/// The gutter's gray level.
const GUTTER_LEVEL: u8 = 96;

/// A batch of scenes as flat row-major `f32` arrays.
#[derive(Debug, Clone, Copy)]
pub struct SceneMasks<'a> {
    /// Context masks, shape `(batch, 5, height, width)`, channels as in [`CONTEXT_CHANNELS`].
    pub context: &'a [f32],
    /// Generated masks, shape `(batch, 1, height, width)`.
    pub generated: &'a [f32],
    /// Ground-truth masks, shape `(batch, 1, height, width)`.
    pub ground_truth: &'a [f32],
    /// Number of scenes.
    pub batch: usize,
    /// Mask height.
    pub height: usize,
    /// Mask width.
    pub width: usize,
}

/// Maps a `[-1, 1]` mask value to occupancy in `[0, 1]`.
fn occupancy(v: f32) -> f32 {
    ((v + 1.0) * 0.5).clamp(0.0, 1.0)
}

fn check_len(what: &'static str, data: &[f32], dims: [usize; 4]) -> Result<(), TelemetryError> {
    if data.len() != dims.iter().product::<usize>() {
        return Err(TelemetryError::BadShape {
            what,
            expected: format!(
                "({}, {}, {}, {}) = {} values",
                dims[0],
                dims[1],
                dims[2],
                dims[3],
                dims.iter().product::<usize>()
            ),
            got: vec![data.len()],
        });
    }
    Ok(())
}

/// Builds the RGB grid: `batch` rows of [context composite | generated | ground truth].
pub fn validation_grid(scenes: &SceneMasks<'_>) -> Result<Image, TelemetryError> {
    let SceneMasks {
        batch,
        height: h,
        width: w,
        ..
    } = *scenes;
    if batch == 0 || h == 0 || w == 0 {
        return Err(TelemetryError::BadShape {
            what: "validation scenes",
            expected: "at least one scene of at least 1x1 pixels".to_string(),
            got: vec![batch, h, w],
        });
    }
    let channels = CONTEXT_CHANNELS.len();
    check_len("context", scenes.context, [batch, channels, h, w])?;
    check_len("generated", scenes.generated, [batch, 1, h, w])?;
    check_len("ground_truth", scenes.ground_truth, [batch, 1, h, w])?;

    let grid_w = 3 * w + 2 * GUTTER;
    let grid_h = batch * h + (batch - 1) * GUTTER;
    let mut pixels = vec![GUTTER_LEVEL; grid_w * grid_h * 3];
    let mut put = |x: usize, y: usize, rgb: [u8; 3]| {
        let i = (y * grid_w + x) * 3;
        pixels[i..i + 3].copy_from_slice(&rgb);
    };
    let plane = h * w;
    for b in 0..batch {
        let top = b * (h + GUTTER);
        for y in 0..h {
            for x in 0..w {
                let at = y * w + x;
                let mut rgb = [0f32; 3];
                for (c, (_, colour)) in CONTEXT_CHANNELS.iter().enumerate() {
                    let a = occupancy(scenes.context[(b * channels + c) * plane + at]);
                    for k in 0..3 {
                        rgb[k] += a * (colour[k] as f32 / 255.0 - rgb[k]);
                    }
                }
                put(x, top + y, rgb.map(unit_to_byte));
                let generated = unit_to_byte(occupancy(scenes.generated[b * plane + at]));
                put(w + GUTTER + x, top + y, [generated; 3]);
                let truth = unit_to_byte(occupancy(scenes.ground_truth[b * plane + at]));
                put(2 * (w + GUTTER) + x, top + y, [truth; 3]);
            }
        }
    }
    Image::new(grid_w as u32, grid_h as u32, ColorMode::Rgb, pixels)
}

/// Reads a rank-4 tensor's shape and values as f32 on the CPU.
fn tensor_values(
    what: &'static str,
    t: &Tensor,
    channels: usize,
) -> Result<([usize; 4], Vec<f32>), TelemetryError> {
    let dims: [usize; 4] = t.dims().try_into().map_err(|_| TelemetryError::BadShape {
        what,
        expected: format!("(batch, {channels}, height, width)"),
        got: t.dims().to_vec(),
    })?;
    if dims[1] != channels {
        return Err(TelemetryError::BadShape {
            what,
            expected: format!("(batch, {channels}, height, width)"),
            got: t.dims().to_vec(),
        });
    }
    let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok((dims, values))
}

/// [`validation_grid`] from candle tensors `(B,5,H,W)`, `(B,1,H,W)`, `(B,1,H,W)` on any device.
pub fn validation_grid_from_tensors(
    context: &Tensor,
    generated: &Tensor,
    ground_truth: &Tensor,
) -> Result<Image, TelemetryError> {
    let (dims, context) = tensor_values("context", context, CONTEXT_CHANNELS.len())?;
    let (gen_dims, generated) = tensor_values("generated", generated, 1)?;
    let (truth_dims, ground_truth) = tensor_values("ground_truth", ground_truth, 1)?;
    let expected = [dims[0], 1, dims[2], dims[3]];
    for (what, got) in [("generated", gen_dims), ("ground_truth", truth_dims)] {
        if got != expected {
            return Err(TelemetryError::BadShape {
                what,
                expected: format!("{expected:?} to match the context"),
                got: got.to_vec(),
            });
        }
    }
    validation_grid(&SceneMasks {
        context: &context,
        generated: &generated,
        ground_truth: &ground_truth,
        batch: dims[0],
        height: dims[2],
        width: dims[3],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two 2x3 scenes: scene b has only context channel `b` occupied at pixel (x=1, y=0).
    fn two_scenes() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (h, w) = (2, 3);
        let mut context = vec![-1.0; 2 * 5 * h * w];
        for b in 0..2 {
            context[(b * 5 + b) * h * w + 1] = 1.0;
        }
        let generated: Vec<f32> = (0..2 * h * w)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let ground_truth: Vec<f32> = (0..2 * h * w)
            .map(|i| if i < 3 { 0.0 } else { -1.0 })
            .collect();
        (context, generated, ground_truth)
    }

    #[test]
    fn panels_land_where_the_layout_says() {
        let (context, generated, ground_truth) = two_scenes();
        let img = validation_grid(&SceneMasks {
            context: &context,
            generated: &generated,
            ground_truth: &ground_truth,
            batch: 2,
            height: 2,
            width: 3,
        })
        .unwrap();
        assert_eq!(
            (img.width(), img.height()),
            (3 * 3 + 2 * 2u32, 2 * 2 + 2u32)
        );
        // Scene 0, context: static obstacle at (1, 0), black elsewhere.
        assert_eq!(img.pixel(1, 0).unwrap(), CONTEXT_CHANNELS[0].1);
        assert_eq!(img.pixel(0, 0).unwrap(), [0, 0, 0]);
        // Scene 1 starts after a gutter; its occupied channel is movable obstacles.
        assert_eq!(img.pixel(1, 4).unwrap(), CONTEXT_CHANNELS[1].1);
        assert_eq!(img.pixel(0, 2).unwrap(), [GUTTER_LEVEL; 3]);
        // Generated panel starts at x = 3 + gutter: 1.0 is white, -1.0 black.
        assert_eq!(img.pixel(5, 0).unwrap(), [255; 3]);
        assert_eq!(img.pixel(6, 0).unwrap(), [0; 3]);
        // Ground truth panel: 0.0 is mid gray.
        assert_eq!(img.pixel(10, 0).unwrap(), [128; 3]);
        assert_eq!(img.pixel(10, 4).unwrap(), [0; 3]);
        assert_eq!(img.pixel(3, 0).unwrap(), [GUTTER_LEVEL; 3]);
    }

    #[test]
    fn tensors_give_the_same_grid_as_slices() {
        let (context, generated, ground_truth) = two_scenes();
        let dev = candle_core::Device::Cpu;
        let ctx = Tensor::from_vec(context.clone(), (2, 5, 2, 3), &dev).unwrap();
        let gen = Tensor::from_vec(generated.clone(), (2, 1, 2, 3), &dev).unwrap();
        let truth = Tensor::from_vec(ground_truth.clone(), (2, 1, 2, 3), &dev).unwrap();
        let from_tensors = validation_grid_from_tensors(&ctx, &gen, &truth).unwrap();
        let from_slices = validation_grid(&SceneMasks {
            context: &context,
            generated: &generated,
            ground_truth: &ground_truth,
            batch: 2,
            height: 2,
            width: 3,
        })
        .unwrap();
        assert_eq!(from_tensors, from_slices);
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let dev = candle_core::Device::Cpu;
        let ctx = Tensor::zeros((2, 5, 4, 4), DType::F32, &dev).unwrap();
        let gen = Tensor::zeros((2, 1, 4, 3), DType::F32, &dev).unwrap();
        let err = validation_grid_from_tensors(&ctx, &gen, &gen).unwrap_err();
        assert!(err.to_string().contains("generated"), "{err}");
        let four_channels = Tensor::zeros((2, 4, 4, 4), DType::F32, &dev).unwrap();
        assert!(validation_grid_from_tensors(&four_channels, &gen, &gen).is_err());
        let short = validation_grid(&SceneMasks {
            context: &[0.0; 10],
            generated: &[0.0; 4],
            ground_truth: &[0.0; 4],
            batch: 1,
            height: 2,
            width: 2,
        });
        assert!(short.is_err());
    }
}

//! One NAMO scene: the six masks of an `.npz` file, checked, resized to `image_size` and mapped
//! from {0, 1} to [-1, 1].

use super::error::DataError;
use super::npy::{decode_npy, read_member, NpyArray, NpyValues};
use super::resize::resize_mask;
use crate::rng::Rng;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

/// The five context keys, in channel order.
pub const CONTEXT_KEYS: [&str; 5] = [
    "robot_image",
    "goal_image",
    "movable_objects_image",
    "static_objects_image",
    "target_object",
];

/// The target key: where the target object should go.
pub const TARGET_KEY: &str = "target_goal";

/// Legacy names accepted for the canonical keys (the canonical name wins when both exist).
pub const LEGACY_KEYS: [(&str, &str); 4] = [
    ("robot_image", "robot"),
    ("goal_image", "goal"),
    ("movable_objects_image", "movable"),
    ("static_objects_image", "static"),
];

/// Masks per scene: the five context channels, then the target.
pub const CHANNELS: usize = 6;

/// A decoded scene: `CHANNELS` square masks of side `size`, row-major, values in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// The scene's name (its file stem).
    pub id: String,
    /// Side of each mask, in pixels.
    pub size: usize,
    /// `CHANNELS × size × size` values: context channels in [`CONTEXT_KEYS`] order, then the target.
    pub pixels: Arc<[f32]>,
}

fn all_keys() -> impl Iterator<Item = &'static str> {
    CONTEXT_KEYS.into_iter().chain([TARGET_KEY])
}

fn aliases(key: &str) -> Vec<&'static str> {
    LEGACY_KEYS
        .iter()
        .filter(|(canonical, _)| *canonical == key)
        .map(|(_, legacy)| *legacy)
        .collect()
}

/// Reads, checks and resizes the scene stored at `path` to `image_size × image_size`.
pub fn read_scene(path: &Path, image_size: usize) -> Result<Scene, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, "read", e))?;
    let mut archive =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| DataError::BadArchive {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let present: Vec<String> = archive
        .file_names()
        .filter_map(|n| n.ok())
        .map(|n| n.trim_end_matches(".npy").to_string())
        .collect();
    let mut masks: Vec<(String, NpyArray)> = Vec::with_capacity(CHANNELS);
    for key in all_keys() {
        let name = std::iter::once(key)
            .chain(aliases(key))
            .find(|candidate| present.iter().any(|p| p == candidate))
            .ok_or_else(|| missing_key(path, key, &present))?;
        let bytes = read_member(&mut archive, &format!("{name}.npy"))
            .and_then(|bytes| decode_npy(&bytes))
            .map_err(|p| bad_array(path, name, p.reason, p.fix))?;
        masks.push((name.to_string(), bytes));
    }
    let id = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    scene_from_arrays(path, id, &masks, image_size)
}

fn missing_key(path: &Path, key: &str, present: &[String]) -> DataError {
    let names = aliases(key);
    DataError::MissingKey {
        path: path.to_path_buf(),
        key: key.to_string(),
        aliases: if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        },
        present: present.join(", "),
        expected: all_keys().collect::<Vec<_>>().join(", "),
    }
}

fn bad_array(path: &Path, key: &str, reason: String, fix: impl Into<String>) -> DataError {
    DataError::BadArray {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason,
        fix: fix.into(),
    }
}

fn scene_from_arrays(
    path: &Path,
    id: String,
    masks: &[(String, NpyArray)],
    image_size: usize,
) -> Result<Scene, DataError> {
    let (first_key, first) = &masks[0];
    let mut pixels = Vec::with_capacity(CHANNELS * image_size * image_size);
    for (key, array) in masks {
        let &[height, width] = array.shape.as_slice() else {
            return Err(bad_array(
                path,
                key,
                format!(
                    "shape {} is not a 2-D (H, W) mask",
                    shape_text(&array.shape)
                ),
                "save each mask as a 2-D array, e.g. mask.squeeze()",
            ));
        };
        if array.shape != first.shape {
            return Err(bad_array(
                path,
                key,
                format!(
                    "shape {} differs from {first_key}'s {}",
                    shape_text(&array.shape),
                    shape_text(&first.shape)
                ),
                "save all six masks of a scene at the same resolution",
            ));
        }
        if height == 0 || width == 0 {
            return Err(bad_array(
                path,
                key,
                format!("shape {} is empty", shape_text(&array.shape)),
                "save a non-empty mask",
            ));
        }
        check_binary(path, key, width, array.first_non_binary)?;
        let resized = match &array.values {
            NpyValues::Bytes(bytes) => resize_mask(bytes, height, width, image_size, image_size),
            NpyValues::Floats(values) => resize_mask(values, height, width, image_size, image_size),
        };
        pixels.extend(resized.iter().map(|v| 2.0 * v - 1.0));
    }
    Ok(Scene {
        id,
        size: image_size,
        pixels: pixels.into(),
    })
}

/// A shape as numpy prints it: `(224, 224)`, `(3,)`.
fn shape_text(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    }
}

fn check_binary(
    path: &Path,
    key: &str,
    width: usize,
    first_non_binary: Option<(usize, f64)>,
) -> Result<(), DataError> {
    let Some((at, value)) = first_non_binary else {
        return Ok(());
    };
    let (path, key, row, col) = (path.to_path_buf(), key.to_string(), at / width, at % width);
    Err(if value.is_nan() {
        DataError::NotANumber {
            path,
            key,
            row,
            col,
        }
    } else {
        DataError::NotBinary {
            path,
            key,
            value,
            row,
            col,
        }
    })
}

/// Builds a scene from binary masks of side `native` held in memory (synthetic scenes),
/// resized to `image_size`.
pub fn scene_from_masks(
    id: String,
    native: usize,
    masks: &[Vec<bool>],
    image_size: usize,
) -> Scene {
    let mut pixels = Vec::with_capacity(CHANNELS * image_size * image_size);
    for mask in masks {
        let bytes: Vec<u8> = mask.iter().map(|&m| u8::from(m)).collect();
        let resized = resize_mask(&bytes, native, native, image_size, image_size);
        pixels.extend(resized.iter().map(|v| 2.0 * v - 1.0));
    }
    Scene {
        id,
        size: image_size,
        pixels: pixels.into(),
    }
}

/// One of the 8 symmetries of the square: `rotations` quarter turns counter-clockwise after an
/// optional left-right flip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Symmetry {
    /// Mirror left-right first.
    pub flip: bool,
    /// Quarter turns counter-clockwise, 0..4.
    pub rotations: u8,
}

impl Symmetry {
    /// Draws one of the 8 symmetries uniformly.
    pub fn draw(rng: &mut Rng) -> Self {
        let k = rng.below(8) as u8;
        Symmetry {
            flip: k >= 4,
            rotations: k % 4,
        }
    }

    /// Where output pixel `(row, col)` reads from, for a square of side `n`.
    fn source(self, row: usize, col: usize, n: usize) -> (usize, usize) {
        let (mut r, mut c) = (row, col);
        for _ in 0..self.rotations {
            (r, c) = (c, n - 1 - r);
        }
        if self.flip {
            c = n - 1 - c;
        }
        (r, c)
    }

    /// Applies the symmetry identically to every channel of `pixels` (channels of `n × n`).
    pub fn apply(self, pixels: &[f32], n: usize) -> Vec<f32> {
        let plane = n * n;
        let mut out = vec![0f32; pixels.len()];
        for (channel, dst) in out.chunks_exact_mut(plane).enumerate() {
            let src = &pixels[channel * plane..(channel + 1) * plane];
            for row in 0..n {
                for col in 0..n {
                    let (r, c) = self.source(row, col, n);
                    dst[row * n + col] = src[r * n + c];
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarter_turn_moves_the_top_right_corner_to_the_top_left() {
        let mut img = vec![0f32; 9];
        img[2] = 1.0;
        let turned = Symmetry {
            flip: false,
            rotations: 1,
        }
        .apply(&img, 3);
        assert_eq!(turned[0], 1.0);
        let flipped = Symmetry {
            flip: true,
            rotations: 0,
        }
        .apply(&img, 3);
        assert_eq!(flipped[0], 1.0);
    }

    #[test]
    fn the_eight_symmetries_are_distinct_and_keep_every_channel_aligned() {
        let n = 4;
        let base: Vec<f32> = (0..2 * n * n).map(|i| (i % (n * n)) as f32).collect();
        let mut seen = Vec::new();
        for k in 0..8u8 {
            let s = Symmetry {
                flip: k >= 4,
                rotations: k % 4,
            };
            let out = s.apply(&base, n);
            assert_eq!(out[..n * n], out[n * n..], "channels diverged for {s:?}");
            assert!(!seen.contains(&out));
            seen.push(out);
        }
    }

    #[test]
    fn masks_map_zero_and_one_to_minus_one_and_one() {
        let masks = vec![vec![true, false, false, true]; CHANNELS];
        let scene = scene_from_masks("s".into(), 2, &masks, 2);
        assert_eq!(&scene.pixels[..4], &[1.0, -1.0, -1.0, 1.0]);
        assert_eq!(scene.pixels.len(), CHANNELS * 4);
    }
}

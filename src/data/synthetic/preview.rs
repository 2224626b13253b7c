//! A PNG contact sheet of synthetic scenes, to see the rule at a glance.
//!
//! Colours: walls dark grey, movable boxes blue, the target object orange, the written
//! `target_goal` green, the other valid placement (if any) pale green, the corridor pale
//! yellow, the robot red and the goal purple.

use super::{generate_layout, SyntheticParams};
use crate::data::error::DataError;
use crate::run::atomic::atomic_write;
use std::path::Path;

const GAP: usize = 4;

fn tile(
    params: &SyntheticParams,
    seed: u64,
    index: usize,
    size: usize,
) -> Result<Vec<[u8; 3]>, DataError> {
    let layout = generate_layout(params, seed, index)?;
    let corridor = layout.corridor();
    let other = layout
        .placements
        .iter()
        .flatten()
        .copied()
        .collect::<Vec<_>>();
    let chosen = layout.placement(layout.chosen);
    let mut pixels = Vec::with_capacity(size * size);
    for row in 0..size {
        for col in 0..size {
            let p = [
                (col as f64 + 0.5) / size as f64,
                (row as f64 + 0.5) / size as f64,
            ];
            let colour = if layout.robot.contains(p) {
                [220, 50, 50]
            } else if layout.goal.contains(p) {
                [150, 60, 200]
            } else if layout.walls.iter().any(|w| w.contains(p)) {
                [60, 60, 60]
            } else if chosen.is_some_and(|c| c.contains(p)) {
                [40, 170, 70]
            } else if layout.target.contains(p) {
                [240, 140, 40]
            } else if layout.boxes.iter().any(|b| b.contains(p)) {
                [90, 130, 200]
            } else if other.iter().any(|o| o.contains(p)) {
                [185, 230, 185]
            } else if corridor.contains(p) {
                [250, 240, 195]
            } else {
                [250, 250, 250]
            };
            pixels.push(colour);
        }
    }
    Ok(pixels)
}

/// Writes scenes `0..count` of `seed` as a grid of `columns` tiles of `tile_size` pixels.
pub fn write_preview(
    path: &Path,
    params: &SyntheticParams,
    seed: u64,
    count: usize,
    columns: usize,
    tile_size: usize,
) -> Result<(), DataError> {
    let columns = columns.clamp(1, count.max(1));
    let rows = count.div_ceil(columns);
    let width = columns * tile_size + (columns + 1) * GAP;
    let height = rows * tile_size + (rows + 1) * GAP;
    let mut image = vec![255u8; width * height * 3];
    for index in 0..count {
        let tile = tile(params, seed, index, tile_size)?;
        let (x0, y0) = (
            GAP + (index % columns) * (tile_size + GAP),
            GAP + (index / columns) * (tile_size + GAP),
        );
        for (k, colour) in tile.iter().enumerate() {
            let at = ((y0 + k / tile_size) * width + x0 + k % tile_size) * 3;
            image[at..at + 3].copy_from_slice(colour);
        }
    }
    let png_error = |e: png::EncodingError| DataError::Png {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(png_error)?;
        writer.write_image_data(&image).map_err(png_error)?;
        writer.finish().map_err(png_error)?;
    }
    atomic_write(path, &bytes).map_err(|e| DataError::io(path, "write", e))
}

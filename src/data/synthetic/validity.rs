//! Is a predicted `target_goal` mask a valid move for a synthetic scene?
//!
//! A mask (any square resolution; a pixel is "on" when its value is > 0, so both {0, 1} and
//! [-1, 1] masks work) is valid when all four criteria hold:
//! 1. **area**: its area is within `area_tolerance` (relative) of the target object's, counted
//!    in pixels at the placement it matches best (a box's pixel count depends on its sub-pixel
//!    offset: a box 3.5 pixels wide covers 3 or 4 columns, so at 32 × 32 the unmoved object's
//!    count can differ from a correct placement's by half);
//! 2. **no overlap**: at most `overlap_tolerance × object area` pixels fall on walls or on the
//!    other movable boxes;
//! 3. **corridor clear**: at most that many pixels fall in the robot–goal corridor;
//! 4. **placement**: its IoU with one of the valid placements (left or right) is ≥ `min_iou`.
//!
//! The report says which criteria failed and which placement matched, for mode coverage.

use super::geometry::rasterise;
use super::{SceneLayout, Side};
use crate::data::error::DataError;

/// Thresholds of the check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValidityCriteria {
    /// Largest relative area difference, `|area − object| / object`.
    pub area_tolerance: f64,
    /// Largest overlap with obstacles or the corridor, as a fraction of the object's area.
    pub overlap_tolerance: f64,
    /// Least IoU with a valid placement.
    pub min_iou: f64,
}

impl Default for ValidityCriteria {
    fn default() -> Self {
        ValidityCriteria {
            area_tolerance: 0.3,
            overlap_tolerance: 0.05,
            min_iou: 0.5,
        }
    }
}

/// One criterion of the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Criterion {
    /// The area is close to the object's.
    Area,
    /// No wall or other movable box is covered.
    NoOverlap,
    /// The corridor is clear.
    CorridorClear,
    /// The mask matches a valid placement.
    Placement,
}

/// The outcome of checking one mask.
#[derive(Debug, Clone, PartialEq)]
pub struct Validity {
    /// Mask area over the object's area, both in pixels, the object's counted at the best
    /// matching placement.
    pub area_ratio: f64,
    /// Pixels on walls or other boxes.
    pub overlap_pixels: usize,
    /// Pixels in the corridor.
    pub corridor_pixels: usize,
    /// IoU with the `[left, right]` placements (0 for an invalid side).
    pub iou: [f64; 2],
    /// The valid placement the mask matches best with IoU ≥ `min_iou`.
    pub matched: Option<Side>,
    /// The criteria that failed, in [`Criterion`] order; empty when valid.
    pub failed: Vec<Criterion>,
}

impl Validity {
    /// Whether every criterion holds.
    pub fn is_valid(&self) -> bool {
        self.failed.is_empty()
    }
}

fn count(mask: &[bool]) -> usize {
    mask.iter().filter(|&&m| m).count()
}

fn iou(a: &[bool], b: &[bool]) -> f64 {
    let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let union = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

impl SceneLayout {
    /// Checks a predicted `size × size` mask (row-major) against the scene's rule.
    pub fn check(
        &self,
        mask: &[f32],
        size: usize,
        criteria: &ValidityCriteria,
    ) -> Result<Validity, DataError> {
        if mask.len() != size * size {
            return Err(DataError::Setting {
                key: "validity check".into(),
                reason: format!("the mask has {} values, not {size}×{size}", mask.len()),
                fix: "pass one (H, W) mask with H = W = size".into(),
            });
        }
        let on: Vec<bool> = mask.iter().map(|&v| v > 0.0).collect();
        let object = count(&rasterise(size, |p| self.target.contains(p))).max(1);
        let obstacles = rasterise(size, |p| {
            self.walls.iter().chain(&self.boxes).any(|r| r.contains(p))
        });
        let corridor = self.corridor();
        let lane = rasterise(size, |p| corridor.contains(p));
        let hits = |region: &[bool]| on.iter().zip(region).filter(|(m, r)| **m && **r).count();
        let overlap_pixels = hits(&obstacles);
        let corridor_pixels = hits(&lane);
        let placed = self
            .placements
            .map(|r| r.map(|r| rasterise(size, |p| r.contains(p))));
        let iou_with = |placed: &Option<Vec<bool>>| placed.as_ref().map_or(0.0, |r| iou(&on, r));
        let iou = [iou_with(&placed[0]), iou_with(&placed[1])];
        let best = if iou[0] >= iou[1] {
            Side::Left
        } else {
            Side::Right
        };
        let matched = (iou[best as usize] >= criteria.min_iou).then_some(best);
        let reference = placed[best as usize]
            .as_ref()
            .or(placed[self.chosen as usize].as_ref())
            .map_or(object, |r| count(r).max(1));
        let area_ratio = count(&on) as f64 / reference as f64;
        let allowed = criteria.overlap_tolerance * object as f64;
        let mut failed = Vec::new();
        if (area_ratio - 1.0).abs() > criteria.area_tolerance {
            failed.push(Criterion::Area);
        }
        if overlap_pixels as f64 > allowed {
            failed.push(Criterion::NoOverlap);
        }
        if corridor_pixels as f64 > allowed {
            failed.push(Criterion::CorridorClear);
        }
        if matched.is_none() {
            failed.push(Criterion::Placement);
        }
        Ok(Validity {
            area_ratio,
            overlap_pixels,
            corridor_pixels,
            iou,
            matched,
            failed,
        })
    }
}

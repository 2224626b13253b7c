//! The synthetic NAMO scene generator, flowrun's built-in default dataset.
//!
//! A scene (unit coordinates, see [`geometry`]) holds border walls and 0–3 interior walls
//! (static), 3–8 movable boxes, a robot disc and a goal disc at least `min_robot_goal` apart,
//! and one **target object**: a movable box blocking the straight corridor (a capsule as wide
//! as the robot) from the robot to the goal. No other object touches the corridor.
//!
//! `target_goal` is the target moved perpendicular to the corridor by the least distance that
//! clears it plus `margin`, to the left or the right. A side is valid when the moved box stays
//! inside the border walls and keeps `margin / 2` from walls, other boxes, the robot and the
//! goal; the generator draws the side uniformly among the valid ones (scenes with no valid side
//! are drawn again). So the target is multimodal with a checkable rule: see [`validity`].
//!
//! Scene `i` of seed `s` depends on `(s, i)` and the parameters only, not on how many scenes are
//! generated.

pub mod cache;
pub mod geometry;
pub mod preview;
pub mod validity;

use super::error::DataError;
use super::scene::{scene_from_masks, Scene};
use crate::rng::Rng;
use geometry::{rasterise, Corridor, Disc, Rect};

/// The generator's parameters, in units of the image side unless said otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticParams {
    /// Side of the written masks, in pixels.
    pub resolution: usize,
    /// Thickness of the border and interior walls.
    pub wall_thickness: f64,
    /// Most interior walls (0 to this many).
    pub max_interior_walls: usize,
    /// Shortest and longest interior wall.
    pub wall_length: (f64, f64),
    /// Fewest and most movable boxes, the target included.
    pub boxes: (usize, usize),
    /// Smallest and largest box side.
    pub box_side: (f64, f64),
    /// Radius of the robot and goal discs (the corridor is `2 × robot_radius` wide).
    pub robot_radius: f64,
    /// Least distance between the robot's and the goal's centres.
    pub min_robot_goal: f64,
    /// Extra clearance between the moved target and the corridor.
    pub margin: f64,
}

impl Default for SyntheticParams {
    /// 224-pixel scenes whose objects stay several pixels wide at 64 × 64: boxes 6–10 px,
    /// discs 7 px across, walls 2 px.
    fn default() -> Self {
        SyntheticParams {
            resolution: 224,
            wall_thickness: 0.03,
            max_interior_walls: 3,
            wall_length: (0.2, 0.45),
            boxes: (3, 8),
            box_side: (0.09, 0.16),
            robot_radius: 0.055,
            min_robot_goal: 0.45,
            margin: 0.03,
        }
    }
}

impl SyntheticParams {
    /// A canonical text of every parameter (for the cache's manifest and folder name).
    pub fn describe(&self) -> String {
        format!(
            "resolution={} wall_thickness={} max_interior_walls={} wall_length={:?} boxes={:?} box_side={:?} robot_radius={} min_robot_goal={} margin={}",
            self.resolution,
            self.wall_thickness,
            self.max_interior_walls,
            self.wall_length,
            self.boxes,
            self.box_side,
            self.robot_radius,
            self.min_robot_goal,
            self.margin
        )
    }
}

/// A side of the corridor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Along [`Corridor::left_normal`].
    Left,
    /// Opposite to it.
    Right,
}

/// The geometry of one synthetic scene.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneLayout {
    /// The robot.
    pub robot: Disc,
    /// The goal.
    pub goal: Disc,
    /// Border and interior walls.
    pub walls: Vec<Rect>,
    /// The movable boxes other than the target.
    pub boxes: Vec<Rect>,
    /// The target object where it stands (blocking the corridor).
    pub target: Rect,
    /// The cleared placement on each side, `[left, right]`; `None` where it would collide.
    pub placements: [Option<Rect>; 2],
    /// The side written as `target_goal`.
    pub chosen: Side,
}

impl SceneLayout {
    /// The corridor from the robot to the goal.
    pub fn corridor(&self) -> Corridor {
        Corridor {
            a: self.robot.centre,
            b: self.goal.centre,
            radius: self.robot.radius,
        }
    }

    /// The placement on `side`, if it is valid.
    pub fn placement(&self, side: Side) -> Option<Rect> {
        self.placements[side as usize]
    }

    /// The six masks at `size × size`, in channel order (robot, goal, movable, static, target
    /// object, target goal).
    pub fn masks(&self, size: usize) -> Vec<Vec<bool>> {
        let chosen = self
            .placement(self.chosen)
            .expect("the chosen side is valid");
        vec![
            rasterise(size, |p| self.robot.contains(p)),
            rasterise(size, |p| self.goal.contains(p)),
            rasterise(size, |p| {
                self.target.contains(p) || self.boxes.iter().any(|b| b.contains(p))
            }),
            rasterise(size, |p| self.walls.iter().any(|w| w.contains(p))),
            rasterise(size, |p| self.target.contains(p)),
            rasterise(size, |p| chosen.contains(p)),
        ]
    }
}

/// The id of synthetic scene `index`.
pub fn scene_id(index: usize) -> String {
    format!("scene_{index:06}")
}

/// Scene `index` of `seed` at the parameters' resolution, resized to `image_size`, in memory.
pub fn generate_scene(
    params: &SyntheticParams,
    seed: u64,
    index: usize,
    image_size: usize,
) -> Result<Scene, DataError> {
    let layout = generate_layout(params, seed, index)?;
    let masks = layout.masks(params.resolution);
    Ok(scene_from_masks(
        scene_id(index),
        params.resolution,
        &masks,
        image_size,
    ))
}

const SCENE_ATTEMPTS: usize = 2000;
const OBJECT_ATTEMPTS: usize = 200;

/// The layout of scene `index` of `seed`.
pub fn generate_layout(
    params: &SyntheticParams,
    seed: u64,
    index: usize,
) -> Result<SceneLayout, DataError> {
    let mut rng = Rng::new(seed)
        .fork(b"synthetic-namo")
        .fork(&(index as u64).to_le_bytes());
    for _ in 0..SCENE_ATTEMPTS {
        if let Some(layout) = try_layout(params, &mut rng) {
            return Ok(layout);
        }
    }
    Err(DataError::Generator {
        index,
        reason: format!("no valid layout in {SCENE_ATTEMPTS} attempts"),
    })
}

fn between(rng: &mut Rng, (lo, hi): (f64, f64)) -> f64 {
    lo + (hi - lo) * rng.uniform()
}

fn try_layout(p: &SyntheticParams, rng: &mut Rng) -> Option<SceneLayout> {
    let t = p.wall_thickness;
    let gap = p.margin / 2.0;
    let mut walls = vec![
        Rect {
            x0: 0.0,
            y0: 0.0,
            x1: 1.0,
            y1: t,
        },
        Rect {
            x0: 0.0,
            y0: 1.0 - t,
            x1: 1.0,
            y1: 1.0,
        },
        Rect {
            x0: 0.0,
            y0: 0.0,
            x1: t,
            y1: 1.0,
        },
        Rect {
            x0: 1.0 - t,
            y0: 0.0,
            x1: 1.0,
            y1: 1.0,
        },
    ];
    let r = p.robot_radius;
    let inner = (t + r + gap, 1.0 - t - r - gap);
    let disc = |rng: &mut Rng| Disc {
        centre: [between(rng, inner), between(rng, inner)],
        radius: r,
    };
    let robot = disc(rng);
    let goal = disc(rng);
    let corridor = Corridor {
        a: robot.centre,
        b: goal.centre,
        radius: r,
    };
    let span = (goal.centre[0] - robot.centre[0]).hypot(goal.centre[1] - robot.centre[1]);
    if span < p.min_robot_goal {
        return None;
    }
    let interior = rng.below(p.max_interior_walls as u64 + 1) as usize;
    for _ in 0..interior {
        let placed = (0..OBJECT_ATTEMPTS).find_map(|_| {
            let length = between(rng, p.wall_length);
            let (w, h) = if rng.below(2) == 0 {
                (length, t)
            } else {
                (t, length)
            };
            let wall = Rect::centred(between(rng, (0.0, 1.0)), between(rng, (0.0, 1.0)), w, h);
            let free = wall.x0 > t + gap
                && wall.y0 > t + gap
                && wall.x1 < 1.0 - t - gap
                && wall.y1 < 1.0 - t - gap
                && corridor.gap(&wall) > gap
                && robot.gap(&wall) > gap
                && goal.gap(&wall) > gap;
            free.then_some(wall)
        });
        walls.extend(placed);
    }
    let inside =
        |b: &Rect| b.x0 > t + gap && b.y0 > t + gap && b.x1 < 1.0 - t - gap && b.y1 < 1.0 - t - gap;
    let clear_of = |b: &Rect, walls: &[Rect], boxes: &[Rect]| {
        inside(b)
            && robot.gap(b) > gap
            && goal.gap(b) > gap
            && walls.iter().all(|w| w.gap(b) > gap)
            && boxes.iter().all(|o| o.gap(b) > gap)
    };
    let target = (0..OBJECT_ATTEMPTS).find_map(|_| {
        let along = between(rng, (0.3, 0.7));
        let normal = corridor.left_normal();
        let off = between(rng, (-0.5, 0.5)) * r;
        let cx = robot.centre[0] + along * (goal.centre[0] - robot.centre[0]) + off * normal[0];
        let cy = robot.centre[1] + along * (goal.centre[1] - robot.centre[1]) + off * normal[1];
        let b = Rect::centred(cx, cy, between(rng, p.box_side), between(rng, p.box_side));
        (clear_of(&b, &walls, &[]) && corridor.gap(&b) == 0.0).then_some(b)
    })?;
    let count = p.boxes.0 + rng.below((p.boxes.1 - p.boxes.0) as u64 + 1) as usize;
    let mut boxes: Vec<Rect> = Vec::new();
    for _ in 1..count {
        let placed = (0..OBJECT_ATTEMPTS).find_map(|_| {
            let b = Rect::centred(
                between(rng, (0.0, 1.0)),
                between(rng, (0.0, 1.0)),
                between(rng, p.box_side),
                between(rng, p.box_side),
            );
            let mut others = boxes.clone();
            others.push(target);
            (clear_of(&b, &walls, &others) && corridor.gap(&b) > gap).then_some(b)
        });
        boxes.push(placed?);
    }
    let placements = cleared_placements(&corridor, &target, p.margin)
        .map(|b| clear_of(&b, &walls, &boxes).then_some(b));
    let valid: Vec<Side> = [Side::Left, Side::Right]
        .into_iter()
        .filter(|&s| placements[s as usize].is_some())
        .collect();
    if valid.is_empty() {
        return None;
    }
    let chosen = valid[rng.below(valid.len() as u64) as usize];
    Some(SceneLayout {
        robot,
        goal,
        walls,
        boxes,
        target,
        placements,
        chosen,
    })
}

/// The target moved perpendicular to the corridor by the least distance that clears it plus
/// `margin`, `[left, right]`.
pub fn cleared_placements(corridor: &Corridor, target: &Rect, margin: f64) -> [Rect; 2] {
    let n = corridor.left_normal();
    let c = target.centre();
    let half =
        (target.x1 - target.x0) / 2.0 * n[0].abs() + (target.y1 - target.y0) / 2.0 * n[1].abs();
    let offset = (c[0] - corridor.a[0]) * n[0] + (c[1] - corridor.a[1]) * n[1];
    let clear = corridor.radius + margin + half;
    let left = clear - offset;
    let right = -(clear + offset);
    [
        target.shifted([left * n[0], left * n[1]]),
        target.shifted([right * n[0], right * n[1]]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleared_placements_just_clear_the_corridor_on_both_sides() {
        let corridor = Corridor {
            a: [0.1, 0.5],
            b: [0.9, 0.5],
            radius: 0.05,
        };
        let target = Rect::centred(0.5, 0.52, 0.1, 0.1);
        let [left, right] = cleared_placements(&corridor, &target, 0.03);
        assert!((corridor.gap(&left) - 0.03).abs() < 1e-12);
        assert!((corridor.gap(&right) - 0.03).abs() < 1e-12);
        assert!(left.centre()[1] < 0.5 && right.centre()[1] > 0.5);
        assert_eq!(left.centre()[0], 0.5);
    }

    #[test]
    fn layouts_follow_the_rule() {
        let p = SyntheticParams::default();
        let mut sides = [0; 2];
        for i in 0..40 {
            let l = generate_layout(&p, 3, i).unwrap();
            let corridor = l.corridor();
            assert_eq!(
                corridor.gap(&l.target),
                0.0,
                "scene {i}: target does not block"
            );
            assert!(l.boxes.iter().all(|b| corridor.gap(b) > 0.0));
            assert!(
                (2..8).contains(&l.boxes.len()),
                "scene {i}: {} boxes",
                l.boxes.len()
            );
            assert!((4..=7).contains(&l.walls.len()));
            assert!(l.placement(l.chosen).is_some());
            sides[l.chosen as usize] += 1;
        }
        assert!(sides[0] > 5 && sides[1] > 5, "{sides:?}");
    }
}

//! Shapes of synthetic scenes in unit coordinates (the image is `[0, 1]²`, x to the right, y
//! down), their distances, and rasterisation at any resolution (a pixel is on when its centre
//! lies inside the shape).

/// An axis-aligned rectangle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    /// Left edge.
    pub x0: f64,
    /// Top edge.
    pub y0: f64,
    /// Right edge.
    pub x1: f64,
    /// Bottom edge.
    pub y1: f64,
}

impl Rect {
    /// The rectangle of the given centre and size.
    pub fn centred(cx: f64, cy: f64, w: f64, h: f64) -> Self {
        Rect {
            x0: cx - w / 2.0,
            y0: cy - h / 2.0,
            x1: cx + w / 2.0,
            y1: cy + h / 2.0,
        }
    }

    /// The centre.
    pub fn centre(&self) -> [f64; 2] {
        [(self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0]
    }

    /// This rectangle moved by `d`.
    pub fn shifted(&self, d: [f64; 2]) -> Self {
        Rect {
            x0: self.x0 + d[0],
            y0: self.y0 + d[1],
            x1: self.x1 + d[0],
            y1: self.y1 + d[1],
        }
    }

    /// Whether the point lies inside.
    pub fn contains(&self, p: [f64; 2]) -> bool {
        p[0] >= self.x0 && p[0] < self.x1 && p[1] >= self.y0 && p[1] < self.y1
    }

    /// The distance from a point to the rectangle (0 inside).
    pub fn distance_to_point(&self, p: [f64; 2]) -> f64 {
        let dx = (self.x0 - p[0]).max(p[0] - self.x1).max(0.0);
        let dy = (self.y0 - p[1]).max(p[1] - self.y1).max(0.0);
        dx.hypot(dy)
    }

    /// The gap between two rectangles (0 when they overlap or touch).
    pub fn gap(&self, other: &Rect) -> f64 {
        let dx = (other.x0 - self.x1).max(self.x0 - other.x1).max(0.0);
        let dy = (other.y0 - self.y1).max(self.y0 - other.y1).max(0.0);
        dx.hypot(dy)
    }

    /// The distance between the rectangle and the segment `a`–`b` (0 when they meet).
    pub fn distance_to_segment(&self, a: [f64; 2], b: [f64; 2]) -> f64 {
        if self.contains(a) || self.contains(b) || self.crossed_by(a, b) {
            return 0.0;
        }
        let corners = [
            [self.x0, self.y0],
            [self.x1, self.y0],
            [self.x1, self.y1],
            [self.x0, self.y1],
        ];
        let from_corners = corners
            .iter()
            .map(|&c| point_segment_distance(c, a, b))
            .fold(f64::INFINITY, f64::min);
        from_corners
            .min(self.distance_to_point(a))
            .min(self.distance_to_point(b))
    }

    fn crossed_by(&self, a: [f64; 2], b: [f64; 2]) -> bool {
        let corners = [
            [self.x0, self.y0],
            [self.x1, self.y0],
            [self.x1, self.y1],
            [self.x0, self.y1],
        ];
        (0..4).any(|i| segments_cross(a, b, corners[i], corners[(i + 1) % 4]))
    }
}

/// A disc.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Disc {
    /// Centre.
    pub centre: [f64; 2],
    /// Radius.
    pub radius: f64,
}

impl Disc {
    /// Whether the point lies inside.
    pub fn contains(&self, p: [f64; 2]) -> bool {
        (p[0] - self.centre[0]).hypot(p[1] - self.centre[1]) <= self.radius
    }

    /// The gap between the disc and a rectangle (0 when they overlap).
    pub fn gap(&self, rect: &Rect) -> f64 {
        (rect.distance_to_point(self.centre) - self.radius).max(0.0)
    }
}

/// The straight corridor from the robot to the goal: every point within `radius` of the
/// segment `a`–`b` (a capsule as wide as the robot).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Corridor {
    /// The robot's centre.
    pub a: [f64; 2],
    /// The goal's centre.
    pub b: [f64; 2],
    /// Half the corridor's width (the robot's radius).
    pub radius: f64,
}

impl Corridor {
    /// Whether the point lies inside.
    pub fn contains(&self, p: [f64; 2]) -> bool {
        point_segment_distance(p, self.a, self.b) <= self.radius
    }

    /// The gap between the corridor and a rectangle (0 when the rectangle blocks it).
    pub fn gap(&self, rect: &Rect) -> f64 {
        (rect.distance_to_segment(self.a, self.b) - self.radius).max(0.0)
    }

    /// The unit normal to the corridor, pointing to its left side (seen from the robot, with y
    /// pointing down the image).
    pub fn left_normal(&self) -> [f64; 2] {
        let (dx, dy) = (self.b[0] - self.a[0], self.b[1] - self.a[1]);
        let len = dx.hypot(dy);
        [dy / len, -dx / len]
    }
}

/// The distance from `p` to the segment `a`–`b`.
pub fn point_segment_distance(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2).clamp(0.0, 1.0)
    };
    (p[0] - a[0] - t * dx).hypot(p[1] - a[1] - t * dy)
}

fn cross(o: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

fn segments_cross(p: [f64; 2], q: [f64; 2], r: [f64; 2], s: [f64; 2]) -> bool {
    let (d1, d2) = (cross(r, s, p), cross(r, s, q));
    let (d3, d4) = (cross(p, q, r), cross(p, q, s));
    d1 * d2 <= 0.0 && d3 * d4 <= 0.0
}

/// A boolean mask of side `size`: pixel `(row, col)` is on when `inside` holds at its centre.
pub fn rasterise(size: usize, inside: impl Fn([f64; 2]) -> bool) -> Vec<bool> {
    let mut mask = Vec::with_capacity(size * size);
    for row in 0..size {
        for col in 0..size {
            let p = [
                (col as f64 + 0.5) / size as f64,
                (row as f64 + 0.5) / size as f64,
            ];
            mask.push(inside(p));
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_between_shapes() {
        let r = Rect::centred(0.5, 0.5, 0.2, 0.2);
        assert_eq!(r.gap(&Rect::centred(0.5, 0.5, 0.1, 0.1)), 0.0);
        assert!((r.gap(&Rect::centred(0.9, 0.5, 0.2, 0.2)) - 0.2).abs() < 1e-12);
        assert_eq!(r.distance_to_segment([0.0, 0.5], [1.0, 0.5]), 0.0);
        assert!((r.distance_to_segment([0.0, 0.1], [1.0, 0.1]) - 0.3).abs() < 1e-12);
        let c = Corridor {
            a: [0.1, 0.5],
            b: [0.9, 0.5],
            radius: 0.05,
        };
        assert!((c.gap(&Rect::centred(0.5, 0.8, 0.2, 0.2)) - 0.15).abs() < 1e-12);
        assert_eq!(c.left_normal(), [0.0, -1.0]);
    }

    #[test]
    fn rasterised_rectangles_cover_their_area() {
        let r = Rect::centred(0.5, 0.5, 0.5, 0.25);
        let mask = rasterise(16, |p| r.contains(p));
        assert_eq!(mask.iter().filter(|&&m| m).count(), 8 * 4);
    }
}

//! Line charts drawn into an RGB image with the `png` crate's encoder (through
//! [`Image::encode_png`]): one panel per tag, stacked vertically, each with its tag as title,
//! axes labelled with their first and last step and lowest and highest value, gridlines, one
//! polyline per run in a distinct colour, and a legend of colour swatches with the run labels
//! (text in the 5x7 pixel [`font`](super::font)). [`Plot`] also returns each panel's tag and
//! axis ranges and the colour of each run for the caller to print.

use super::error::InspectError;
use super::font::{text_pixels, text_width, HEIGHT as TEXT_HEIGHT};
use super::run::Run;
use super::sparkline::fmt_value;
use crate::telemetry::{ColorMode, Image};
use std::collections::BTreeSet;
use std::path::Path;

/// Width of the image in pixels.
pub const WIDTH: u32 = 800;
/// Height of one panel in pixels.
pub const PANEL_HEIGHT: u32 = 260;
const LEFT: i64 = 72;
const RIGHT: i64 = 20;
const TOP: i64 = 34;
const BOTTOM: i64 = 22;
const GRID_LINES: i64 = 4;
const BACKGROUND: [u8; 3] = [255, 255, 255];
const GRID: [u8; 3] = [225, 225, 225];
const AXIS: [u8; 3] = [40, 40, 40];

/// The series colours, in run order (Tableau 10), with their names.
pub const PALETTE: [([u8; 3], &str); 8] = [
    ([31, 119, 180], "blue"),
    ([255, 127, 14], "orange"),
    ([44, 160, 44], "green"),
    ([214, 39, 40], "red"),
    ([148, 103, 189], "purple"),
    ([140, 86, 75], "brown"),
    ([227, 119, 194], "pink"),
    ([127, 127, 127], "grey"),
];

/// The colour and its name for the `index`-th series (the palette repeats after 8).
pub fn colour(index: usize) -> ([u8; 3], &'static str) {
    PALETTE[index % PALETTE.len()]
}

/// One curve: `(step, value)` points in step order; non-finite values break the line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend label (the run).
    pub label: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

/// One chart: a tag and one series per run (a run that did not log the tag has no points but
/// keeps its colour).
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// The tag.
    pub title: String,
    /// The curves.
    pub series: Vec<Series>,
}

/// A drawn panel's tag and axis ranges (after padding).
#[derive(Debug, Clone, PartialEq)]
pub struct PanelInfo {
    /// The tag.
    pub title: String,
    /// The step range of the x axis.
    pub x: (f64, f64),
    /// The value range of the y axis.
    pub y: (f64, f64),
}

/// A drawn chart image with what it shows.
#[derive(Debug, Clone)]
pub struct Plot {
    /// The RGB image.
    pub image: Image,
    /// The panels, top to bottom.
    pub panels: Vec<PanelInfo>,
    /// Each series' label and colour name, in legend order.
    pub legend: Vec<(String, &'static str)>,
}

impl Plot {
    /// Encodes the image as PNG and writes it to `path` atomically.
    pub fn write_png(&self, path: &Path) -> Result<(), InspectError> {
        let fail = |detail: String| InspectError::Write {
            path: path.to_path_buf(),
            detail,
        };
        let bytes = self.image.encode_png().map_err(|e| fail(e.to_string()))?;
        crate::run::atomic_write(path, &bytes).map_err(|e| fail(e.to_string()))
    }
}

/// One panel per tag (every tag any run logged when `tags` is empty), one series per run.
pub fn curve_panels(runs: &[Run], tags: &[String]) -> Result<Vec<Panel>, InspectError> {
    let logged: BTreeSet<&String> = runs.iter().flat_map(|r| r.scalars.keys()).collect();
    let chosen: Vec<String> = if tags.is_empty() {
        logged.iter().map(|t| t.to_string()).collect()
    } else {
        for tag in tags {
            if !logged.contains(tag) {
                return Err(InspectError::UnknownTag {
                    tag: tag.clone(),
                    available: logged.iter().map(|t| t.to_string()).collect(),
                });
            }
        }
        tags.to_vec()
    };
    Ok(chosen
        .into_iter()
        .map(|tag| Panel {
            series: runs
                .iter()
                .map(|r| Series {
                    label: r.label(),
                    points: r
                        .curve(&tag)
                        .iter()
                        .map(|p| (p.step as f64, f64::from(p.value)))
                        .collect(),
                })
                .collect(),
            title: tag,
        })
        .collect())
}

/// Draws `panels` stacked vertically into one image.
pub fn draw(panels: &[Panel]) -> Result<Plot, InspectError> {
    if panels.is_empty() {
        return Err(InspectError::EmptyPlot {
            reason: "no tags were chosen or logged".into(),
        });
    }
    let mut canvas = Canvas::new(WIDTH, PANEL_HEIGHT * panels.len() as u32);
    let mut infos = Vec::new();
    for (i, panel) in panels.iter().enumerate() {
        let top = i64::from(PANEL_HEIGHT) * i as i64;
        let (x, y) = ranges(panel).ok_or_else(|| InspectError::EmptyPlot {
            reason: format!("the tag {} has no finite values", panel.title),
        })?;
        canvas.panel(panel, top, x, y);
        infos.push(PanelInfo {
            title: panel.title.clone(),
            x,
            y,
        });
    }
    let legend = panels[0]
        .series
        .iter()
        .enumerate()
        .map(|(i, s)| (s.label.clone(), colour(i).1))
        .collect();
    let image =
        Image::new(canvas.width, canvas.height, ColorMode::Rgb, canvas.pixels).map_err(|e| {
            InspectError::EmptyPlot {
                reason: e.to_string(),
            }
        })?;
    Ok(Plot {
        image,
        panels: infos,
        legend,
    })
}

/// The padded x and y ranges over every finite point (None when there is none).
fn ranges(panel: &Panel) -> Option<((f64, f64), (f64, f64))> {
    let finite = || {
        panel
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    finite().next()?;
    let fold = |f: fn(&(f64, f64)) -> f64| {
        finite().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(f(p)), hi.max(f(p)))
        })
    };
    let pad = |(lo, hi): (f64, f64), frac: f64| {
        if hi > lo {
            let d = (hi - lo) * frac;
            (lo - d, hi + d)
        } else {
            let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            (lo - d, hi + d)
        }
    };
    Some((pad(fold(|p| p.0), 0.0), pad(fold(|p| p.1), 0.05)))
}

struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: u32, height: u32) -> Self {
        let pixels = BACKGROUND
            .iter()
            .copied()
            .cycle()
            .take(width as usize * height as usize * 3)
            .collect();
        Canvas {
            width,
            height,
            pixels,
        }
    }

    fn set(&mut self, x: i64, y: i64, rgb: [u8; 3]) {
        if x < 0 || y < 0 || x >= i64::from(self.width) || y >= i64::from(self.height) {
            return;
        }
        let at = (y as usize * self.width as usize + x as usize) * 3;
        self.pixels[at..at + 3].copy_from_slice(&rgb);
    }

    fn text(&mut self, x: i64, y: i64, text: &str, rgb: [u8; 3]) {
        for (dx, dy) in text_pixels(text) {
            self.set(x + dx, y + dy, rgb);
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, rgb: [u8; 3]) {
        for y in y0..=y1 {
            for x in x0..=x1 {
                self.set(x, y, rgb);
            }
        }
    }

    /// A line two pixels thick (Bresenham, each point drawn as a 2x2 block).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), rgb: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.rect(x, y, x + 1, y + 1, rgb);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn panel(&mut self, panel: &Panel, top: i64, x: (f64, f64), y: (f64, f64)) {
        let (left, right) = (LEFT, i64::from(self.width) - RIGHT);
        let (upper, lower) = (top + TOP, top + i64::from(PANEL_HEIGHT) - BOTTOM);
        for g in 0..=GRID_LINES {
            let gx = left + (right - left) * g / GRID_LINES;
            let gy = upper + (lower - upper) * g / GRID_LINES;
            self.rect(gx, upper, gx, lower, GRID);
            self.rect(left, gy, right, gy, GRID);
        }
        self.rect(left, upper, left + 1, lower, AXIS);
        self.rect(left, lower - 1, right, lower, AXIS);
        let to_px = |(px, py): (f64, f64)| {
            let fx = if x.1 > x.0 {
                (px - x.0) / (x.1 - x.0)
            } else {
                0.5
            };
            let fy = (py - y.0) / (y.1 - y.0);
            (
                left + (fx * (right - left) as f64).round() as i64,
                lower - (fy * (lower - upper) as f64).round() as i64,
            )
        };
        self.text(left, top + 6, &panel.title, AXIS);
        let (y_lo, y_hi) = (fmt_value(Some(y.0)), fmt_value(Some(y.1)));
        self.text(left - 4 - text_width(&y_hi), upper, &y_hi, AXIS);
        self.text(
            left - 4 - text_width(&y_lo),
            lower - TEXT_HEIGHT,
            &y_lo,
            AXIS,
        );
        let (x_lo, x_hi) = (format!("{}", x.0), format!("{}", x.1));
        self.text(left, lower + 5, &x_lo, AXIS);
        self.text(right - text_width(&x_hi), lower + 5, &x_hi, AXIS);
        self.text(
            (left + right - text_width("step")) / 2,
            lower + 5,
            "step",
            AXIS,
        );
        let mut legend_x = left + text_width(&panel.title) + 24;
        for (i, series) in panel.series.iter().enumerate() {
            let rgb = colour(i).0;
            self.rect(legend_x, top + 6, legend_x + 16, top + 12, rgb);
            self.text(legend_x + 20, top + 6, &series.label, AXIS);
            legend_x += 20 + text_width(&series.label) + 16;
            let mut previous: Option<(i64, i64)> = None;
            for &p in &series.points {
                if !(p.0.is_finite() && p.1.is_finite()) {
                    previous = None;
                    continue;
                }
                let here = to_px(p);
                match previous {
                    Some(prev) => self.line(prev, here, rgb),
                    None => self.rect(here.0 - 1, here.1 - 1, here.0 + 2, here.1 + 2, rgb),
                }
                previous = Some(here);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel(title: &str, series: &[&[(f64, f64)]]) -> Panel {
        Panel {
            title: title.into(),
            series: series
                .iter()
                .enumerate()
                .map(|(i, pts)| Series {
                    label: format!("run{i}"),
                    points: pts.to_vec(),
                })
                .collect(),
        }
    }

    fn count(image: &Image, rgb: [u8; 3]) -> usize {
        image.pixels().chunks(3).filter(|p| *p == rgb).count()
    }

    #[test]
    fn two_series_are_drawn_in_their_own_colours_and_the_png_decodes() {
        let p = panel(
            "loss",
            &[&[(0.0, 2.0), (10.0, 1.0)], &[(0.0, 1.5), (10.0, 1.8)]],
        );
        let plot = draw(&[p]).unwrap();
        assert_eq!(
            (plot.image.width(), plot.image.height()),
            (WIDTH, PANEL_HEIGHT)
        );
        assert!(count(&plot.image, colour(0).0) > 500);
        assert!(count(&plot.image, colour(1).0) > 500);
        assert!(count(&plot.image, colour(2).0) == 0);
        assert_eq!(
            plot.legend,
            [("run0".into(), "blue"), ("run1".into(), "orange")]
        );
        let bytes = plot.image.encode_png().unwrap();
        assert_eq!(Image::decode_png(&bytes).unwrap(), plot.image);
    }

    #[test]
    fn the_first_point_is_at_the_left_edge_and_the_higher_value_is_higher() {
        let plot = draw(&[panel("x", &[&[(0.0, 0.0), (1.0, 1.0)]])]).unwrap();
        let blue = colour(0).0;
        let at = |x: u32, y: u32| plot.image.pixel(x, y).unwrap() == blue;
        let rows = |x: u32| (0..PANEL_HEIGHT).filter(|&y| at(x, y)).collect::<Vec<_>>();
        let (low, high) = (rows(LEFT as u32 + 2), rows(WIDTH - RIGHT as u32 - 2));
        assert!(!low.is_empty() && !high.is_empty());
        assert!(high[0] < low[0], "the rising line ends higher up");
    }

    #[test]
    fn panels_stack_and_empty_or_non_finite_input_is_an_error() {
        let a = panel("a", &[&[(0.0, 1.0)]]);
        let b = panel("b", &[&[(0.0, 1.0), (1.0, f64::NAN), (2.0, 3.0)]]);
        let plot = draw(&[a, b]).unwrap();
        assert_eq!(plot.image.height(), 2 * PANEL_HEIGHT);
        assert_eq!(plot.panels[1].x, (0.0, 2.0));
        assert!(matches!(draw(&[]), Err(InspectError::EmptyPlot { .. })));
        let ink = |img: &Image, y0: u32, y1: u32| {
            (y0..y1)
                .flat_map(|y| (0..WIDTH).map(move |x| (x, y)))
                .filter(|&(x, y)| img.pixel(x, y).unwrap() == AXIS)
                .count()
        };
        assert!(
            ink(&plot.image, 6, 13) > 20,
            "the title and legend are drawn"
        );
        let second = PANEL_HEIGHT + 6;
        assert!(ink(&plot.image, second, second + 7) > 20);
        let nan = panel("nan", &[&[(0.0, f64::NAN)]]);
        let err = draw(&[nan]).unwrap_err();
        assert!(
            err.to_string().contains("nan has no finite values"),
            "{err}"
        );
    }
}

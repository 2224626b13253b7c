//! `evaluate`: sweeps samplers × step counts on a fixed set of scenes with fixed seeds and
//! reports, per cell, the network evaluations, wall time, MSE, IoU, best-of-k IoU, validity rate
//! and mode coverage; writes `eval.csv` and `eval.png` (IoU against evaluations).

use super::trained::{draw_samples, iou, load_trained, TrainedError};
use crate::config::node::{Node, Value};
use crate::config::repo::ConfigRepository;
use crate::config::schema::sampler::SAMPLER_TARGETS;
use crate::config::schema::target::decode_target;
use crate::config::schema::{EvaluateSettings, NodeDe, SamplerSettings};
use crate::data::synthetic::validity::ValidityCriteria;
use crate::data::synthetic::{SceneLayout, Side};
use crate::data::DataError;
use crate::telemetry::{ColorMode, Image};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// One cell of the sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRow {
    /// The sampler's name.
    pub sampler: String,
    /// The step count asked for.
    pub steps: usize,
    /// Network evaluations the sampler made (per sample; the batch shares them).
    pub nfe: usize,
    /// Wall time of sampling all scenes, in seconds.
    pub wall_s: f64,
    /// Mean squared error against the ground truth, in [-1, 1] units.
    pub mse: f64,
    /// Mean IoU against the ground truth (masks thresholded at 0).
    pub iou: f64,
    /// Mean over scenes of the best IoU among the `k` samples.
    pub best_of_k_iou: f64,
    /// Fraction of samples passing the synthetic validity check (`None`: not synthetic data).
    pub validity_rate: Option<f64>,
    /// Fraction of two-placement scenes whose `k` samples hit both placements.
    pub mode_coverage: Option<f64>,
}

/// The settings of sampler `name` with `steps` steps, read from the shipped `sampler/` group
/// (`None` when the group has no such option).
pub fn sampler_settings(name: &str, steps: usize) -> Option<SamplerSettings> {
    let loaded = ConfigRepository::shipped()
        .load(&format!("sampler/{name}"))
        .ok()??;
    let mut node = loaded.content.clone();
    *node.child_mut("steps")? = Node::builtin(Value::Int(i64::try_from(steps).ok()?));
    decode_target(NodeDe::root(&node), SAMPLER_TARGETS).ok()
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"))
}

/// The rows as CSV with a header line.
pub fn to_csv(rows: &[EvalRow]) -> String {
    let mut s = String::from(
        "sampler,steps,nfe,wall_s,mse,iou,best_of_k_iou,validity_rate,mode_coverage\n",
    );
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{:.4},{:.6},{:.4},{:.4},{},{}\n",
            r.sampler,
            r.steps,
            r.nfe,
            r.wall_s,
            r.mse,
            r.iou,
            r.best_of_k_iou,
            r.validity_rate.map_or(String::new(), |v| format!("{v:.4}")),
            r.mode_coverage.map_or(String::new(), |v| format!("{v:.4}")),
        ));
    }
    s
}

/// The rows as a markdown table.
pub fn to_markdown(rows: &[EvalRow]) -> String {
    let mut s = String::from(
        "| sampler | steps | NFE | wall s | MSE | IoU | best-of-k IoU | valid | mode coverage |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.4} | {:.4} | {:.4} | {} | {} |\n",
            r.sampler,
            r.steps,
            r.nfe,
            r.wall_s,
            r.mse,
            r.iou,
            r.best_of_k_iou,
            opt(r.validity_rate),
            opt(r.mode_coverage)
        ));
    }
    s
}

/// Line colours of the plot, one per sampler in the order of `samplers`.
pub const PALETTE: [[u8; 3]; 6] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
];

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = (y as usize * self.w + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        for y in y0..=y1 {
            for x in x0..=x1 {
                self.set(x, y, c);
            }
        }
    }

    fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3]) {
        let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
        for i in 0..=n {
            let t = i as f64 / n as f64;
            let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
            self.rect(x as i64, y as i64, x as i64 + 1, y as i64 + 1, c);
        }
    }
}

/// Draws IoU (y, 0 to 1, ticks every 0.25) against network evaluations (x, log scale, ticks at
/// 1, 10, 100, ...): one coloured line with square markers per sampler in [`PALETTE`] order, and
/// a legend of colour swatches in the same order at the top right. No text is drawn.
pub fn plot(rows: &[EvalRow], samplers: &[String]) -> Result<Image, TrainedError> {
    let (w, h) = (640usize, 400usize);
    let (left, right, top, bottom) = (50.0, 600.0, 30.0, 360.0);
    let mut c = Canvas {
        w,
        h,
        px: vec![255; w * h * 3],
    };
    let max_nfe = rows.iter().map(|r| r.nfe).max().unwrap_or(1).max(2) as f64;
    let x_hi = max_nfe.log10().ceil().max(1.0);
    let x_of = |nfe: usize| left + (nfe.max(1) as f64).log10() / x_hi * (right - left);
    let y_of = |v: f64| bottom - v.clamp(0.0, 1.0) * (bottom - top);
    let (black, grey) = ([0, 0, 0], [220, 220, 220]);
    for q in 0..=4 {
        let y = y_of(q as f64 / 4.0);
        c.line((left, y), (right, y), grey);
        c.line((left - 6.0, y), (left, y), black);
    }
    for d in 0..=(x_hi as i64) {
        let x = left + d as f64 / x_hi * (right - left);
        c.line((x, top), (x, bottom), grey);
        c.line((x, bottom), (x, bottom + 6.0), black);
    }
    c.line((left, top), (left, bottom), black);
    c.line((left, bottom), (right, bottom), black);
    for (si, name) in samplers.iter().enumerate() {
        let colour = PALETTE[si % PALETTE.len()];
        let mut points: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| &r.sampler == name)
            .map(|r| (x_of(r.nfe), y_of(r.iou)))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        for pair in points.windows(2) {
            c.line(pair[0], pair[1], colour);
        }
        for &(x, y) in &points {
            c.rect(
                x as i64 - 3,
                y as i64 - 3,
                x as i64 + 3,
                y as i64 + 3,
                colour,
            );
        }
        let ly = 8 + 14 * si as i64;
        c.rect(w as i64 - 30, ly, w as i64 - 12, ly + 8, colour);
    }
    Ok(Image::new(w as u32, h as u32, ColorMode::Rgb, c.px)?)
}

/// The quality measures of one cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// Mean squared error against the ground truth.
    pub mse: f64,
    /// Mean IoU against the ground truth.
    pub iou: f64,
    /// Mean over scenes of the best IoU among the `k` samples.
    pub best_of_k_iou: f64,
    /// Fraction of samples passing the validity check (`None` without layouts).
    pub validity_rate: Option<f64>,
    /// Fraction of two-placement scenes whose valid samples match both placements.
    pub mode_coverage: Option<f64>,
}

/// Scores `k` samples per scene (`masks`, scene-major, `size × size` each) against the ground
/// truths and, where a scene's synthetic layout is known, its validity check.
pub fn score(
    masks: &[f32],
    truths: &[&[f32]],
    layouts: &[Option<SceneLayout>],
    k: usize,
    size: usize,
) -> Result<Scores, DataError> {
    let plane = size * size;
    let criteria = ValidityCriteria::default();
    let (mut se, mut iou_sum, mut best_sum) = (0.0, 0.0, 0.0);
    let (mut checked, mut valid) = (0usize, 0usize);
    let (mut two_sided, mut covered) = (0usize, 0usize);
    for (i, truth) in truths.iter().enumerate() {
        let mut best: f64 = 0.0;
        let mut hit = [false, false];
        for j in 0..k {
            let m = &masks[(i * k + j) * plane..(i * k + j + 1) * plane];
            se += m
                .iter()
                .zip(truth.iter())
                .map(|(&a, &b)| f64::from(a - b).powi(2))
                .sum::<f64>();
            let v = iou(m, truth);
            iou_sum += v;
            best = best.max(v);
            if let Some(layout) = &layouts[i] {
                let check = layout.check(m, size, &criteria)?;
                checked += 1;
                if check.is_valid() {
                    valid += 1;
                    match check.matched {
                        Some(Side::Left) => hit[0] = true,
                        Some(Side::Right) => hit[1] = true,
                        None => {}
                    }
                }
            }
        }
        best_sum += best;
        if let Some(layout) = &layouts[i] {
            if layout.placements.iter().all(Option::is_some) {
                two_sided += 1;
                covered += usize::from(hit[0] && hit[1]);
            }
        }
    }
    let samples = (truths.len() * k) as f64;
    Ok(Scores {
        mse: se / (samples * plane as f64),
        iou: iou_sum / samples,
        best_of_k_iou: best_sum / truths.len() as f64,
        validity_rate: (checked > 0).then(|| valid as f64 / checked as f64),
        mode_coverage: (two_sided > 0).then(|| covered as f64 / two_sided as f64),
    })
}

/// Runs `evaluate` with `settings`, writing `eval.csv` and `eval.png` into `dir`; the markdown
/// table goes to `out`.
pub fn run_evaluate(
    settings: &EvaluateSettings,
    dir: &Path,
    out: &mut dyn Write,
) -> Result<Vec<EvalRow>, TrainedError> {
    let source = &settings.source;
    let run = load_trained(source)?;
    let mut cells = Vec::new();
    for name in &settings.samplers {
        for &steps in &settings.steps {
            let sampler =
                sampler_settings(name, steps).ok_or_else(|| TrainedError::SamplerForPath {
                    sampler: name.clone(),
                    reason: "unknown sampler".to_string(),
                    valid: run.valid_samplers().join(", "),
                })?;
            let plan = run.plan(&sampler)?;
            cells.push((name.clone(), steps, plan));
        }
    }
    let scenes = run.scenes(source.data_dir.as_deref(), source.num_scenes)?;
    let layouts: Vec<_> = scenes.iter().map(|s| run.layout(s)).collect();
    let _ = writeln!(
        out,
        "[evaluate] {} ({} weights): {} cells on {} scenes x {} samples",
        run.ckpt.display(),
        if run.ema { "EMA" } else { "raw" },
        cells.len(),
        scenes.len(),
        source.num_samples
    );
    let k = source.num_samples;
    let size = scenes[0].size;
    let plane = size * size;
    let mut rows = Vec::new();
    for (name, steps, plan) in cells {
        let start = Instant::now();
        let drawn = draw_samples(&run.module, &scenes, &plan, k, source.seed)?;
        let wall_s = start.elapsed().as_secs_f64();
        let masks = drawn.masks.flatten_all()?.to_vec1::<f32>()?;
        let truths: Vec<&[f32]> = scenes
            .iter()
            .map(|s| &s.pixels[(crate::data::scene::CHANNELS - 1) * plane..])
            .collect();
        let scores = score(&masks, &truths, &layouts, k, size)?;
        let row = EvalRow {
            sampler: name,
            steps,
            nfe: drawn.stats.nfe,
            wall_s,
            mse: scores.mse,
            iou: scores.iou,
            best_of_k_iou: scores.best_of_k_iou,
            validity_rate: scores.validity_rate,
            mode_coverage: scores.mode_coverage,
        };
        let _ = writeln!(
            out,
            "[evaluate] {} steps={}: {} evaluations, {:.2} s, IoU {:.4}",
            row.sampler, row.steps, row.nfe, row.wall_s, row.iou
        );
        rows.push(row);
    }
    let csv = dir.join("eval.csv");
    crate::run::atomic_write(&csv, to_csv(&rows).as_bytes()).map_err(|source| {
        TrainedError::Write {
            path: csv.clone(),
            source,
        }
    })?;
    let png = dir.join("eval.png");
    let image = plot(&rows, &settings.samplers)?;
    crate::run::atomic_write(&png, &image.encode_png()?).map_err(|source| TrainedError::Write {
        path: png.clone(),
        source,
    })?;
    let _ = write!(out, "{}", to_markdown(&rows));
    let _ = writeln!(
        out,
        "[evaluate] wrote {} and {} (IoU against network evaluations; line colours in the \
         order of samplers: {})",
        csv.display(),
        png.display(),
        settings.samplers.join(", ")
    );
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sampler: &str, nfe: usize, iou: f64) -> EvalRow {
        EvalRow {
            sampler: sampler.into(),
            steps: nfe,
            nfe,
            wall_s: 0.1,
            mse: 0.5,
            iou,
            best_of_k_iou: iou,
            validity_rate: None,
            mode_coverage: Some(0.5),
        }
    }

    #[test]
    fn every_group_name_has_settings_and_others_do_not() {
        for name in crate::config::schema::commands::SAMPLER_NAMES {
            let s = sampler_settings(name, 7).unwrap();
            assert_eq!((s.name(), s.steps()), (*name, 7));
        }
        assert!(sampler_settings("heun", 7).is_none());
    }

    #[test]
    fn csv_and_table_hold_one_line_per_cell() {
        let rows = [row("euler", 5, 0.25), row("rk4", 20, 0.75)];
        let csv = to_csv(&rows);
        assert_eq!(csv.lines().count(), 3);
        assert!(csv.contains("\nrk4,20,20,0.1000,0.500000,0.7500,0.7500,,0.5000\n"));
        let md = to_markdown(&rows);
        assert!(md.contains("| euler | 5 | 5 |"));
        assert!(md.contains("| n/a | 0.5000 |"));
    }

    fn two_sided_layout() -> SceneLayout {
        use crate::data::synthetic::{generate_layout, SyntheticParams};
        (0..200)
            .map(|i| generate_layout(&SyntheticParams::default(), 0, i).unwrap())
            .find(|l| l.placements.iter().all(Option::is_some))
            .expect("a scene with two placements")
    }

    fn raster(layout: &SceneLayout, side: usize, size: usize) -> Vec<f32> {
        let rect = layout.placements[side].unwrap();
        crate::data::synthetic::geometry::rasterise(size, |p| rect.contains(p))
            .into_iter()
            .map(|b| if b { 1.0 } else { -1.0 })
            .collect()
    }

    #[test]
    fn coverage_needs_both_placements_and_validity_counts_samples() {
        let size = 32;
        let layout = two_sided_layout();
        let (left, right) = (raster(&layout, 0, size), raster(&layout, 1, size));
        let empty = vec![-1.0f32; size * size];
        let layouts = [Some(layout)];
        let both = [left.clone(), right.clone()].concat();
        let s = score(&both, &[&left], &layouts, 2, size).unwrap();
        assert_eq!((s.validity_rate, s.mode_coverage), (Some(1.0), Some(1.0)));
        assert_eq!(s.best_of_k_iou, 1.0);
        assert!(s.iou < 1.0 && s.mse > 0.0);
        let same = [left.clone(), left.clone()].concat();
        let s = score(&same, &[&left], &layouts, 2, size).unwrap();
        assert_eq!((s.validity_rate, s.mode_coverage), (Some(1.0), Some(0.0)));
        assert_eq!((s.iou, s.mse), (1.0, 0.0));
        let half = [left.clone(), empty].concat();
        let s = score(&half, &[&left], &layouts, 2, size).unwrap();
        assert_eq!(s.validity_rate, Some(0.5));
        let s = score(&same, &[&left], &[None], 2, size).unwrap();
        assert_eq!((s.validity_rate, s.mode_coverage), (None, None));
    }

    #[test]
    fn plot_draws_each_sampler_in_its_colour() {
        let rows = [row("euler", 5, 0.25), row("euler", 50, 0.75)];
        let image = plot(&rows, &["euler".to_string()]).unwrap();
        let has = |c: [u8; 3]| image.pixels().chunks(3).any(|p| p == c);
        assert!(has(PALETTE[0]));
        assert!(!has(PALETTE[1]));
    }
}

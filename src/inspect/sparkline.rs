//! Scalar curves as terminal sparklines (`▁▂▃▄▅▆▇█`) with their min, max and last values.

use crate::telemetry::event_reader::ScalarPoint;
use std::collections::BTreeMap;

/// The eight bar heights, lowest first.
pub const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One tag's curve summarised for the terminal.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveSummary {
    /// The scalar's tag.
    pub tag: String,
    /// How many points were logged.
    pub points: usize,
    /// The first and last logged steps.
    pub steps: (i64, i64),
    /// The smallest finite value.
    pub min: Option<f64>,
    /// The largest finite value.
    pub max: Option<f64>,
    /// The last logged value (possibly non-finite).
    pub last: f64,
    /// The sparkline.
    pub sparkline: String,
}

/// A sparkline of `values` at most `width` characters wide: longer series are averaged in
/// buckets; non-finite values (and buckets holding only them) are drawn as a space.
pub fn sparkline(values: &[f64], width: usize) -> String {
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let buckets = values.len().min(width);
    let means: Vec<Option<f64>> = (0..buckets)
        .map(|b| {
            let lo = b * values.len() / buckets;
            let hi = ((b + 1) * values.len() / buckets).max(lo + 1);
            let finite: Vec<f64> = values[lo..hi]
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            (!finite.is_empty()).then(|| finite.iter().sum::<f64>() / finite.len() as f64)
        })
        .collect();
    let finite = means.iter().flatten();
    let min = finite.clone().copied().fold(f64::INFINITY, f64::min);
    let max = finite.copied().fold(f64::NEG_INFINITY, f64::max);
    means
        .iter()
        .map(|m| match m {
            None => ' ',
            Some(_) if max <= min => BARS[0],
            Some(v) => {
                let level = ((v - min) / (max - min) * (BARS.len() - 1) as f64).round() as usize;
                BARS[level.min(BARS.len() - 1)]
            }
        })
        .collect()
}

/// Summarises the curve `points` of `tag` with a sparkline `width` characters wide (None when
/// nothing was logged).
pub fn summarize_curve(tag: &str, points: &[ScalarPoint], width: usize) -> Option<CurveSummary> {
    let first = points.first()?;
    let last = points.last()?;
    let values: Vec<f64> = points.iter().map(|p| f64::from(p.value)).collect();
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let min = finite.clone().reduce(f64::min);
    let max = finite.reduce(f64::max);
    Some(CurveSummary {
        tag: tag.to_string(),
        points: points.len(),
        steps: (first.step, last.step),
        min,
        max,
        last: f64::from(last.value),
        sparkline: sparkline(&values, width),
    })
}

/// Summaries of the curves in `scalars`: the tags in `tags`, or every tag when it is empty.
pub fn summarize_curves(
    scalars: &BTreeMap<String, Vec<ScalarPoint>>,
    tags: &[String],
    width: usize,
) -> Vec<CurveSummary> {
    let chosen: Vec<&String> = if tags.is_empty() {
        scalars.keys().collect()
    } else {
        tags.iter().collect()
    };
    chosen
        .into_iter()
        .filter_map(|t| summarize_curve(t, scalars.get(t)?, width))
        .collect()
}

/// A value as printed in tables: 6 significant digits, `-` for none.
pub fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "-".to_string(),
        Some(v) if !v.is_finite() => v.to_string(),
        Some(0.0) => "0".to_string(),
        Some(v) if v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-4) => format!("{v:.4e}"),
        Some(v) => {
            let text = format!("{v:.6}");
            let digits_before = text.trim_start_matches('-').find('.').unwrap_or(text.len());
            let keep = 6usize.saturating_sub(digits_before).max(1);
            format!("{v:.keep$}")
        }
    }
}

/// The curve summaries as aligned lines: `tag  sparkline  min .. max  last  (n points, steps a-b)`.
pub fn render_curves(curves: &[CurveSummary]) -> String {
    let tag_w = curves
        .iter()
        .map(|c| c.tag.chars().count())
        .max()
        .unwrap_or(0);
    let line_w = curves
        .iter()
        .map(|c| c.sparkline.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for c in curves {
        let pad = line_w - c.sparkline.chars().count();
        out.push_str(&format!(
            "  {:<tag_w$}  {}{}  min {:>10}  max {:>10}  last {:>10}  ({} points, steps {}-{})\n",
            c.tag,
            c.sparkline,
            " ".repeat(pad),
            fmt_value(c.min),
            fmt_value(c.max),
            fmt_value(Some(c.last)),
            c.points,
            c.steps.0,
            c.steps.1,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(values: &[f32]) -> Vec<ScalarPoint> {
        values
            .iter()
            .enumerate()
            .map(|(i, &value)| ScalarPoint {
                step: i as i64 + 1,
                value,
                wall_time: 0.0,
            })
            .collect()
    }

    #[test]
    fn a_rising_series_uses_every_bar_from_lowest_to_highest() {
        let values: Vec<f64> = (0..8).map(f64::from).collect();
        assert_eq!(sparkline(&values, 40), "▁▂▃▄▅▆▇█");
        assert_eq!(sparkline(&[3.0, 3.0, 3.0], 10), "▁▁▁");
        assert_eq!(sparkline(&[], 10), "");
    }

    #[test]
    fn long_series_are_averaged_into_the_width_and_gaps_stay_blank() {
        let values: Vec<f64> = (0..100).map(f64::from).collect();
        let line = sparkline(&values, 10);
        assert_eq!(line.chars().count(), 10);
        assert!(line.starts_with('▁') && line.ends_with('█'), "{line}");
        assert_eq!(sparkline(&[1.0, f64::NAN, 2.0], 10), "▁ █");
    }

    #[test]
    fn a_summary_keeps_min_max_last_and_steps() {
        let s = summarize_curve("loss", &points(&[2.0, 1.0, f32::NAN, 1.5]), 20).unwrap();
        assert_eq!((s.min, s.max), (Some(1.0), Some(2.0)));
        assert!(s.last == 1.5 && s.points == 4 && s.steps == (1, 4));
        assert!(summarize_curve("x", &[], 20).is_none());
        let text = render_curves(&[s]);
        assert!(
            text.contains("loss  █▁ ▅  min    1.00000  max    2.00000  last    1.50000"),
            "{text}"
        );
    }

    #[test]
    fn values_print_with_six_significant_digits() {
        assert_eq!(fmt_value(Some(2.214672406)), "2.21467");
        assert_eq!(fmt_value(Some(659.0067)), "659.007");
        assert_eq!(fmt_value(Some(4.95e-6)), "4.9500e-6");
        assert_eq!(fmt_value(None), "-");
        assert_eq!(fmt_value(Some(0.0)), "0");
    }
}

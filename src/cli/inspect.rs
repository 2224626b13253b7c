//! `inspect`: summarises the runs of `runs` (config diff against the shipped defaults, best
//! checkpoint, steps, throughput, validation loss, scalar curves as sparklines) and compares them
//! when there are two or more; prints the text and writes it to `summary.md`, with the curves in
//! `curves.png` when `plot=true`.

use crate::config::schema::InspectSettings;
use crate::inspect::sparkline::fmt_value;
use crate::inspect::{compare_configs, curve_panels, draw, render_config_table, render_curves};
use crate::inspect::{render_headlines, render_summary, summarize, summarize_curves};
use crate::inspect::{InspectError, Run};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file holding what `inspect` printed, in its run directory.
pub const SUMMARY_FILE: &str = "summary.md";
/// The curves' plot, in the run directory of `inspect`, when `plot=true`.
pub const PLOT_FILE: &str = "curves.png";

/// What `inspect` wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectReport {
    /// The text printed (also in `summary.md`).
    pub text: String,
    /// `summary.md`.
    pub summary: PathBuf,
    /// `curves.png`, when plotted.
    pub plot: Option<PathBuf>,
}

/// Checks that every entry of `runs` is a run directory written by `train`, before any output
/// directory is created.
pub fn check_runs(settings: &InspectSettings) -> Result<(), InspectError> {
    settings
        .runs
        .iter()
        .try_for_each(|r| Run::check_dir(Path::new(r)))
}

/// Runs `inspect` with `settings`, writing into `dir`; the report's text goes to `out`.
pub fn run_inspect(
    settings: &InspectSettings,
    dir: &Path,
    out: &mut dyn Write,
) -> Result<InspectReport, InspectError> {
    let runs = settings
        .runs
        .iter()
        .map(|d| Run::load(Path::new(d)))
        .collect::<Result<Vec<_>, _>>()?;
    let panels = curve_panels(&runs, &settings.tags)?;
    let tags: Vec<String> = panels.iter().map(|p| p.title.clone()).collect();
    let summaries: Vec<_> = runs.iter().map(summarize).collect();
    let mut text = String::new();
    for (run, summary) in runs.iter().zip(&summaries) {
        text.push_str(&render_summary(summary));
        for file in &run.truncated_event_files {
            text.push_str(&format!(
                "  note: {} ends inside a record (read up to it)\n",
                file.display()
            ));
        }
        text.push_str("  curves:\n");
        text.push_str(&render_curves(&summarize_curves(
            &run.scalars,
            &tags,
            settings.sparkline_width,
        )));
        text.push('\n');
    }
    if runs.len() > 1 {
        text.push_str("comparison\n");
        text.push_str(&render_headlines(&summaries));
        text.push_str("config keys that differ:\n");
        text.push_str(&render_config_table(&compare_configs(&runs)?));
    }
    let plot = if settings.plot {
        let path = dir.join(PLOT_FILE);
        let plot = draw(&panels)?;
        plot.write_png(&path)?;
        text.push_str(&format!(
            "wrote {} ({}x{}, {} panels)\n",
            path.display(),
            plot.image.width(),
            plot.image.height(),
            plot.panels.len()
        ));
        let legend: Vec<String> = plot
            .legend
            .iter()
            .map(|(label, colour)| format!("{label} = {colour}"))
            .collect();
        text.push_str(&format!("  colours: {}\n", legend.join(", ")));
        for p in &plot.panels {
            text.push_str(&format!(
                "  panel {}: steps {}..{}, values {}..{}\n",
                p.title,
                p.x.0,
                p.x.1,
                fmt_value(Some(p.y.0)),
                fmt_value(Some(p.y.1))
            ));
        }
        Some(path)
    } else {
        None
    };
    let _ = write!(out, "{text}");
    let summary = dir.join(SUMMARY_FILE);
    crate::run::atomic_write(&summary, summary_markdown(settings, &text).as_bytes()).map_err(
        |e| InspectError::Write {
            path: summary.clone(),
            detail: e.to_string(),
        },
    )?;
    let _ = writeln!(out, "[inspect] wrote {}", summary.display());
    Ok(InspectReport {
        text,
        summary,
        plot,
    })
}

/// `summary.md`: the runs inspected, then the printed text verbatim in a code block (its tables
/// are aligned for a fixed-width font), then the plot when there is one.
fn summary_markdown(settings: &InspectSettings, text: &str) -> String {
    let mut md = String::from("# inspect\n\nRuns:\n\n");
    for run in &settings.runs {
        md.push_str(&format!("- `{run}`\n"));
    }
    md.push_str("\n```text\n");
    md.push_str(text);
    md.push_str("```\n");
    if settings.plot {
        md.push_str(&format!("\n![scalar curves]({PLOT_FILE})\n"));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_holds_the_runs_the_text_and_the_plot() {
        let settings = InspectSettings {
            runs: vec!["outputs/a".into(), "outputs/b".into()],
            tags: Vec::new(),
            plot: true,
            sparkline_width: 40,
        };
        let md = summary_markdown(&settings, "run outputs/a\n  steps: 3\n");
        assert_eq!(
            md,
            "# inspect\n\nRuns:\n\n- `outputs/a`\n- `outputs/b`\n\n```text\nrun outputs/a\n  \
             steps: 3\n```\n\n![scalar curves](curves.png)\n"
        );
    }

    #[test]
    fn a_path_that_is_not_a_run_is_caught_before_anything_is_written() {
        let root = tempfile::tempdir().unwrap();
        let settings = InspectSettings {
            runs: vec![root.path().display().to_string()],
            tags: Vec::new(),
            plot: false,
            sparkline_width: 40,
        };
        let err = check_runs(&settings).unwrap_err();
        assert!(
            err.to_string().contains(".hydra/config.yaml is missing"),
            "{err}"
        );
    }
}

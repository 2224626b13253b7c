//! `inspect RUN_DIR... [--tag TAG]... [--plot OUT.png]`: summarises one run, or compares several,
//! from their run directories.

use clap::Parser;
use flowrun::inspect::{
    compare_configs, curve_panels, draw, render_config_table, render_curves, render_headlines,
    render_summary, sparkline::fmt_value, summarize, summarize_curves, InspectError, Run,
};
use std::path::PathBuf;
use std::process::ExitCode;

/// Width of the terminal sparklines in characters.
const SPARK_WIDTH: usize = 40;

/// Summarise trained runs (config diff, best checkpoint, steps, throughput, val_loss, scalar
/// curves) or compare two or more.
#[derive(Debug, Parser)]
#[command(name = "inspect", version)]
struct Args {
    /// Run directories written by `train` (each holds .hydra/, tensorboard/, checkpoints/).
    #[arg(required = true, value_name = "RUN_DIR")]
    runs: Vec<PathBuf>,
    /// Show (and plot) only this scalar tag; repeat for several. Default: every logged tag.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Also write the curves as a PNG line chart (one panel per tag, runs overlaid).
    #[arg(long, value_name = "OUT.png")]
    plot: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match inspect(&args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn inspect(args: &Args) -> Result<String, InspectError> {
    let runs = args
        .runs
        .iter()
        .map(|d| Run::load(d))
        .collect::<Result<Vec<_>, _>>()?;
    let panels = curve_panels(&runs, &args.tags)?;
    let tags: Vec<String> = panels.iter().map(|p| p.title.clone()).collect();
    let summaries: Vec<_> = runs.iter().map(summarize).collect();
    let mut out = String::new();
    for (run, summary) in runs.iter().zip(&summaries) {
        out.push_str(&render_summary(summary));
        for file in &run.truncated_event_files {
            out.push_str(&format!(
                "  note: {} ends inside a record (read up to it)\n",
                file.display()
            ));
        }
        out.push_str("  curves:\n");
        out.push_str(&render_curves(&summarize_curves(
            &run.scalars,
            &tags,
            SPARK_WIDTH,
        )));
        out.push('\n');
    }
    if runs.len() > 1 {
        out.push_str("comparison\n");
        out.push_str(&render_headlines(&summaries));
        out.push_str("config keys that differ:\n");
        out.push_str(&render_config_table(&compare_configs(&runs)?));
    }
    if let Some(path) = &args.plot {
        let plot = draw(&panels)?;
        plot.write_png(path)?;
        out.push_str(&format!(
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
        out.push_str(&format!("  colours: {}\n", legend.join(", ")));
        for p in &plot.panels {
            out.push_str(&format!(
                "  panel {}: steps {}..{}, values {}..{}\n",
                p.title,
                p.x.0,
                p.x.1,
                fmt_value(Some(p.y.0)),
                fmt_value(Some(p.y.1))
            ));
        }
    }
    Ok(out)
}

//! Errors of `inspect`: each names the run directory or file, what was expected, and a fix.

use crate::telemetry::TelemetryError;
use std::path::PathBuf;

/// A run directory (or an output file) that `inspect` cannot use.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The directory lacks a file every `train` run directory has.
    #[error(
        "{} is not a flowrun run directory: {} is missing\nhint: give the directory that `train` \
         wrote (its hydra.run.dir, e.g. outputs/<date>/<time>), which holds .hydra/config.yaml, \
         tensorboard/ and checkpoints/",
        dir.display(),
        missing
    )]
    NotARun {
        /// The directory given.
        dir: PathBuf,
        /// What is missing, relative to the directory (e.g. `.hydra/config.yaml`).
        missing: String,
    },
    /// The run has no TensorBoard event files to read curves from.
    #[error(
        "{}: no TensorBoard event files (events.out.tfevents.*) in {}\nhint: the run logged no \
         scalars; train with trainer.log_every_n_steps set so that it logs, or inspect a run that \
         has trained at least one logged step",
        dir.display(),
        events_dir.display()
    )]
    NoEvents {
        /// The run directory.
        dir: PathBuf,
        /// The directory searched.
        events_dir: PathBuf,
    },
    /// A run file cannot be read.
    #[error("could not read {}: {source}\nhint: check that the file exists and is readable", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A run's YAML file does not parse.
    #[error("{} is not valid YAML ({detail})\nhint: the file is damaged; restore it from the run's checkpoint config", path.display())]
    BadYaml {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        detail: String,
    },
    /// The event files cannot be read.
    #[error("{}: {source}", dir.display())]
    Events {
        /// The run directory.
        dir: PathBuf,
        /// The reader's error.
        source: TelemetryError,
    },
    /// A requested tag was logged by none of the runs.
    #[error("--tag {tag}: no run logged this scalar; logged tags: {available}\nhint: pass one of the logged tags")]
    UnknownTag {
        /// The tag asked for.
        tag: String,
        /// The tags that were logged, comma-separated.
        available: String,
    },
    /// A comparison was asked of fewer than two runs.
    #[error("comparing needs at least two run directories, got {count}\nhint: pass two or more run directories")]
    TooFewRuns {
        /// How many runs were given.
        count: usize,
    },
    /// The plot has nothing to draw.
    #[error("nothing to plot: {reason}\nhint: choose tags with at least one finite value (--tag)")]
    EmptyPlot {
        /// Why.
        reason: String,
    },
    /// The plot PNG cannot be encoded or written.
    #[error("could not write the plot {}: {detail}\nhint: check that the directory exists and is writable", path.display())]
    WritePlot {
        /// The output file.
        path: PathBuf,
        /// The underlying error.
        detail: String,
    },
}

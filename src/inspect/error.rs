//! Errors of `inspect`: each names the run directory, file or config key, what was expected, and
//! (in [`InspectError::hint`]) what to type instead.

use crate::config::suggest::did_you_mean;
use crate::telemetry::TelemetryError;
use std::path::{Path, PathBuf};

/// What a run directory written by `train` holds, as the hints describe it.
const RUN_DIR_EXPECTED: &str = "give a directory that `train` wrote (its hydra.run.dir, e.g. \
     outputs/<date>/<time>), which holds .hydra/config.yaml, tensorboard/ and checkpoints/";

/// A run directory (or an output file) that `inspect` cannot use.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The directory lacks a file every `train` run directory has.
    #[error("runs: {} is not a flowrun training run directory: {missing}", dir.display())]
    NotARun {
        /// The directory given.
        dir: PathBuf,
        /// What is missing, relative to the directory (e.g. `.hydra/config.yaml`).
        missing: String,
        /// What to give instead: a near-miss sibling directory, or what a run directory holds.
        hint: String,
    },
    /// The run has no TensorBoard event files to read curves from.
    #[error(
        "{}: no TensorBoard event files (events.out.tfevents.*) in {}",
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
    #[error("could not read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A run's YAML file does not parse.
    #[error("{} is not valid YAML ({detail})", path.display())]
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
    #[error("tags: no run logged the scalar '{tag}'; logged tags: {}", available.join(", "))]
    UnknownTag {
        /// The tag asked for.
        tag: String,
        /// The tags that were logged.
        available: Vec<String>,
    },
    /// A comparison was asked of fewer than two runs.
    #[error("comparing needs at least two run directories, got {count}")]
    TooFewRuns {
        /// How many runs were given.
        count: usize,
    },
    /// The plot has nothing to draw.
    #[error("nothing to plot: {reason}")]
    EmptyPlot {
        /// Why.
        reason: String,
    },
    /// An output file (the plot PNG, `summary.md`) cannot be encoded or written.
    #[error("could not write {}: {detail}", path.display())]
    Write {
        /// The output file.
        path: PathBuf,
        /// The underlying error.
        detail: String,
    },
}

impl InspectError {
    /// What to type or do instead, when there is a clear fix.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            InspectError::NotARun { hint, .. } => hint.clone(),
            InspectError::NoEvents { .. } => "the run logged no scalars; inspect a run that has \
                trained at least trainer.log_every_n_steps steps"
                .to_string(),
            InspectError::Read { .. } => "check that the file exists and is readable".to_string(),
            InspectError::BadYaml { .. } => {
                "the file is damaged; restore it from the run's checkpoint config".to_string()
            }
            InspectError::Events { .. } => return None,
            InspectError::UnknownTag { tag, available } => {
                match did_you_mean(tag, available.iter().map(String::as_str)) {
                    Some(near) => format!("did you mean tags=[{near}]?"),
                    None => match available.first() {
                        Some(first) => format!("pass logged tags, e.g. tags=[{first}]"),
                        None => "the runs logged no scalars".to_string(),
                    },
                }
            }
            InspectError::TooFewRuns { .. } => {
                "pass two or more run directories: runs=[outputs/a,outputs/b]".to_string()
            }
            InspectError::EmptyPlot { .. } => {
                "choose tags with at least one finite value (tags=[...]), or plot=false".to_string()
            }
            InspectError::Write { .. } => {
                "check that the output directory (hydra.run.dir) is writable".to_string()
            }
        })
    }

    /// `dir` is not a run directory because `missing` is absent.
    pub fn not_a_run(dir: &Path, missing: impl Into<String>) -> InspectError {
        InspectError::NotARun {
            dir: dir.to_path_buf(),
            missing: missing.into(),
            hint: not_a_run_hint(dir),
        }
    }
}

/// A sibling directory whose name is a near miss of `dir`'s ("did you mean ...?"), else what a
/// run directory holds.
fn not_a_run_hint(dir: &Path) -> String {
    let near = (!dir.exists())
        .then(|| {
            let name = dir.file_name()?.to_str()?;
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let siblings: Vec<String> = std::fs::read_dir(parent)
                .ok()?
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect();
            let found = did_you_mean(name, siblings.iter().map(String::as_str))?;
            Some(dir.with_file_name(found))
        })
        .flatten();
    match near {
        Some(path) => format!("did you mean {}?", path.display()),
        None => RUN_DIR_EXPECTED.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mistyped_run_directory_suggests_its_sibling() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("12-00-00")).unwrap();
        let typo = root.path().join("12-00-01");
        let hint = InspectError::not_a_run(&typo, "the directory itself")
            .hint()
            .unwrap();
        assert_eq!(
            hint,
            format!("did you mean {}?", root.path().join("12-00-00").display())
        );
        let far = root.path().join("elsewhere");
        let hint = InspectError::not_a_run(&far, "the directory itself")
            .hint()
            .unwrap();
        assert!(hint.contains(".hydra/config.yaml, tensorboard/"), "{hint}");
    }

    #[test]
    fn an_unknown_tag_suggests_the_nearest_logged_one() {
        let err = InspectError::UnknownTag {
            tag: "val_los".into(),
            available: vec!["train_loss".into(), "val_loss".into()],
        };
        assert_eq!(
            err.to_string(),
            "tags: no run logged the scalar 'val_los'; logged tags: train_loss, val_loss"
        );
        assert_eq!(err.hint().unwrap(), "did you mean tags=[val_loss]?");
    }
}

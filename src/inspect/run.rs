//! A trained run directory read back: its resolved config, the overrides it was started with,
//! the primary config's name, its checkpoints' metadata and its TensorBoard scalars.

use super::error::InspectError;
use crate::cli::job_part;
use crate::config::node::{Map, Node, Value};
use crate::config::yaml::load_str;
use crate::telemetry::event_reader::{event_files, read_event_dir, ScalarPoint};
use crate::train::checkpoint::{list_checkpoints, read_meta, CheckpointMeta, CHECKPOINT_DIR};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The run's resolved job config, relative to the run directory.
pub const CONFIG_FILE: &str = ".hydra/config.yaml";
/// The run's Hydra config (records the primary config's name).
pub const HYDRA_FILE: &str = ".hydra/hydra.yaml";
/// The run's command-line overrides.
pub const OVERRIDES_FILE: &str = ".hydra/overrides.yaml";
/// The run's TensorBoard event directory.
pub const EVENTS_DIR: &str = "tensorboard";

/// One checkpoint file and its metadata (None when the metadata cannot be read).
#[derive(Debug, Clone)]
pub struct CheckpointInfo {
    /// The file.
    pub path: PathBuf,
    /// Its metadata, or why it could not be read.
    pub meta: Result<CheckpointMeta, String>,
}

/// Everything `inspect` reads from one run directory.
#[derive(Debug, Clone)]
pub struct Run {
    /// The run directory as given.
    pub dir: PathBuf,
    /// The resolved job config (`.hydra/config.yaml`).
    pub config: Node,
    /// The primary config's name (`hydra.job.config_name`), when `.hydra/hydra.yaml` records it.
    pub config_name: Option<String>,
    /// The task overrides (`.hydra/overrides.yaml`; empty when the file is absent).
    pub overrides: Vec<String>,
    /// The checkpoints in `checkpoints/`, sorted by name.
    pub checkpoints: Vec<CheckpointInfo>,
    /// The logged scalars by tag, in step order.
    pub scalars: BTreeMap<String, Vec<ScalarPoint>>,
    /// Event files that end inside a record (a run still writing, or killed).
    pub truncated_event_files: Vec<PathBuf>,
}

impl Run {
    /// Checks that `dir` looks like a run directory written by `train` (it exists and holds
    /// `.hydra/config.yaml` and `tensorboard/`), without reading it; fails naming what is
    /// missing.
    pub fn check_dir(dir: &Path) -> Result<(), InspectError> {
        if !dir.is_dir() {
            let what = if dir.exists() {
                "it is a file, not a directory"
            } else {
                "no such directory"
            };
            return Err(InspectError::not_a_run(dir, what));
        }
        if !dir.join(CONFIG_FILE).is_file() {
            return Err(InspectError::not_a_run(
                dir,
                format!("{CONFIG_FILE} is missing"),
            ));
        }
        if !dir.join(EVENTS_DIR).is_dir() {
            let job = read_yaml(&dir.join(HYDRA_FILE))
                .ok()
                .flatten()
                .and_then(|h| h.select("hydra.job.name").cloned())
                .and_then(|n| n.value.as_str().map(str::to_string))
                .filter(|job| job != "train");
            let written_by = job.map_or(String::new(), |job| {
                format!(" (it is a run directory of `{job}`, not of `train`)")
            });
            return Err(InspectError::not_a_run(
                dir,
                format!("{EVENTS_DIR}/ (the TensorBoard event directory) is missing{written_by}"),
            ));
        }
        Ok(())
    }

    /// Reads the run directory `dir`; fails naming what is missing when it is not a run.
    pub fn load(dir: &Path) -> Result<Run, InspectError> {
        Run::check_dir(dir)?;
        let config_path = dir.join(CONFIG_FILE);
        let events_dir = dir.join(EVENTS_DIR);
        let config = read_yaml(&config_path)?.unwrap_or_else(empty_map);
        let config = job_part(&config);
        let hydra_path = dir.join(HYDRA_FILE);
        let config_name = if hydra_path.is_file() {
            read_yaml(&hydra_path)?
                .and_then(|h| h.select("hydra.job.config_name").cloned())
                .and_then(|n| n.value.as_str().map(str::to_string))
        } else {
            None
        };
        let overrides_path = dir.join(OVERRIDES_FILE);
        let overrides = if overrides_path.is_file() {
            read_overrides(&overrides_path)?
        } else {
            Vec::new()
        };
        let checkpoints = list_checkpoints(&dir.join(CHECKPOINT_DIR))
            .into_iter()
            .map(|path| {
                let meta = read_meta(&path).map_err(|e| e.to_string());
                CheckpointInfo { path, meta }
            })
            .collect();
        let files = event_files(&events_dir).map_err(|source| InspectError::Events {
            dir: dir.to_path_buf(),
            source,
        })?;
        if files.is_empty() {
            return Err(InspectError::NoEvents {
                dir: dir.to_path_buf(),
                events_dir,
            });
        }
        let log = read_event_dir(&events_dir).map_err(|source| InspectError::Events {
            dir: dir.to_path_buf(),
            source,
        })?;
        let mut scalars = log.scalars;
        for points in scalars.values_mut() {
            points.sort_by_key(|p| p.step);
        }
        Ok(Run {
            dir: dir.to_path_buf(),
            config,
            config_name,
            overrides,
            checkpoints,
            scalars,
            truncated_event_files: log.truncated_files,
        })
    }

    /// A short name for tables and legends: the directory's last component.
    pub fn label(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| self.dir.display().to_string())
    }

    /// The values of `tag` in step order (empty when it was not logged).
    pub fn curve(&self, tag: &str) -> &[ScalarPoint] {
        self.scalars.get(tag).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The run's config value at the dotted `key`, when it is a string.
    pub fn config_str(&self, key: &str) -> Option<&str> {
        self.config.select(key).and_then(|n| n.value.as_str())
    }
}

fn empty_map() -> Node {
    Node::builtin(Value::Map(Map::new()))
}

fn read_text(path: &Path) -> Result<String, InspectError> {
    std::fs::read_to_string(path).map_err(|source| InspectError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_yaml(text: &str, path: &Path) -> Result<Option<Node>, InspectError> {
    load_str(text, &Arc::from(path.display().to_string())).map_err(|e| InspectError::BadYaml {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

fn read_yaml(path: &Path) -> Result<Option<Node>, InspectError> {
    parse_yaml(&read_text(path)?, path)
}

/// The overrides file is a top-level YAML list; the config reader wants a mapping, so the list
/// is read as the value of one key.
fn read_overrides(path: &Path) -> Result<Vec<String>, InspectError> {
    let text = read_text(path)?;
    let wrapped: String = std::iter::once("overrides:\n".to_string())
        .chain(text.lines().map(|l| format!("  {l}\n")))
        .collect();
    let node = parse_yaml(&wrapped, path)?;
    match node
        .and_then(|n| n.child("overrides").cloned())
        .map(|n| n.value)
    {
        Some(Value::List(items)) => Ok(items
            .iter()
            .filter_map(|n| n.value.as_str().map(str::to_string))
            .collect()),
        Some(Value::Null) | None => Ok(Vec::new()),
        Some(other) => Err(InspectError::BadYaml {
            path: path.to_path_buf(),
            detail: format!(
                "expected a list of overrides, found a {}",
                other.type_name()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_a_config_is_not_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let err = Run::load(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(".hydra/config.yaml is missing"), "{text}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
    }

    #[test]
    fn a_run_without_event_files_says_so() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".hydra")).unwrap();
        std::fs::create_dir_all(dir.path().join(EVENTS_DIR)).unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "seed: 1\n").unwrap();
        let err = Run::load(dir.path()).unwrap_err();
        assert!(matches!(err, InspectError::NoEvents { .. }), "{err}");
        assert!(
            err.to_string().contains("no TensorBoard event files"),
            "{err}"
        );
    }

    #[test]
    fn the_overrides_list_is_read_as_typed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overrides.yaml");
        std::fs::write(&path, "- trainer=cpu\n- base_lr=0.01\n").unwrap();
        assert_eq!(
            read_overrides(&path).unwrap(),
            ["trainer=cpu", "base_lr=0.01"]
        );
        std::fs::write(&path, "[]\n").unwrap();
        assert!(read_overrides(&path).unwrap().is_empty());
        std::fs::write(&path, "a: 1\n").unwrap();
        assert!(read_overrides(&path).is_err());
    }

    #[test]
    fn a_damaged_config_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".hydra")).unwrap();
        std::fs::create_dir_all(dir.path().join(EVENTS_DIR)).unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "a: [1, 2\n").unwrap();
        let err = Run::load(dir.path()).unwrap_err();
        assert!(matches!(err, InspectError::BadYaml { .. }), "{err}");
        assert!(err.to_string().contains("config.yaml"), "{err}");
    }
}

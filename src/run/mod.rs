//! Run directories: creating a fresh one per job and writing its `.hydra/` snapshot.
//!
//! Layout (Hydra's): `<run dir>/.hydra/config.yaml` (the resolved job config, enough to rerun
//! alone), `config.unresolved.yaml` (as composed, interpolations kept), `overrides.yaml` (the
//! task overrides as typed) and `hydra.yaml` (runtime choices, overrides, job name, versions,
//! git commit). Every file is written atomically; an existing directory is never reused.

pub mod atomic;

use crate::config::emit::to_yaml;
use crate::config::node::{Map, Node, Value};
pub use atomic::{atomic_write, create_fresh_dir};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The texts of one job's `.hydra/` folder.
#[derive(Debug, Clone)]
pub struct RunSnapshot {
    /// The resolved job config.
    pub config: Node,
    /// The job config as composed, interpolations kept.
    pub config_unresolved: Node,
    /// The task overrides as typed.
    pub overrides: Vec<String>,
    /// The resolved `hydra` node.
    pub hydra: Node,
}

/// The git commit of the working directory, and whether it has uncommitted changes.
pub fn git_state(dir: &Path) -> Option<(String, bool)> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dirty = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    Some((commit, dirty))
}

/// Creates the run directory at `wanted` (or a fresh sibling when taken) and writes `.hydra/`.
pub fn create_run_dir(wanted: &Path, snapshot: &RunSnapshot) -> io::Result<PathBuf> {
    let dir = create_fresh_dir(wanted)?;
    write_snapshot(&dir, snapshot)?;
    Ok(dir)
}

/// Writes the `.hydra/` folder of a run directory that already exists.
pub fn write_snapshot(dir: &Path, snapshot: &RunSnapshot) -> io::Result<()> {
    let hydra_dir = dir.join(".hydra");
    std::fs::create_dir_all(&hydra_dir)?;
    atomic_write(
        &hydra_dir.join("config.yaml"),
        to_yaml(&snapshot.config).as_bytes(),
    )?;
    atomic_write(
        &hydra_dir.join("config.unresolved.yaml"),
        to_yaml(&snapshot.config_unresolved).as_bytes(),
    )?;
    let overrides = Node::builtin(Value::List(
        snapshot
            .overrides
            .iter()
            .map(|o| Node::builtin(Value::Str(o.clone())))
            .collect(),
    ));
    atomic_write(
        &hydra_dir.join("overrides.yaml"),
        to_yaml(&overrides).as_bytes(),
    )?;
    let mut hydra = snapshot.hydra.clone();
    if let Some(runtime) = hydra.select_mut("runtime") {
        let output_dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        if let Value::Map(m) = &mut runtime.value {
            m.insert(
                "output_dir".into(),
                Node::builtin(Value::Str(output_dir.display().to_string())),
            );
            let cwd = std::env::current_dir().unwrap_or_default();
            if let Some((commit, dirty)) = git_state(&cwd) {
                m.insert("git_commit".into(), Node::builtin(Value::Str(commit)));
                m.insert("git_dirty".into(), Node::builtin(Value::Bool(dirty)));
            }
        }
    }
    let mut wrapped = Map::new();
    wrapped.insert("hydra".into(), hydra);
    let wrapped = Node::builtin(Value::Map(wrapped));
    atomic_write(&hydra_dir.join("hydra.yaml"), to_yaml(&wrapped).as_bytes())?;
    Ok(())
}

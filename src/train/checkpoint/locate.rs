//! Finding the checkpoint that `ckpt_path` names: a `.ckpt` file, a run directory (its
//! `checkpoints/last.ckpt`), or `last` together with the run directory.

use super::error::CheckpointError;
use super::policy::LAST_FILE;
use std::path::{Path, PathBuf};

/// The directory of a run that holds its checkpoints.
pub const CHECKPOINT_DIR: &str = "checkpoints";

/// The `.ckpt` files in `dir`, sorted by name (empty when `dir` cannot be read).
pub fn list_checkpoints(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ckpt") && p.is_file())
        .collect();
    files.sort();
    files
}

/// The file `ckpt_path` names. `run_dir` is the directory of the run being resumed, needed
/// for `last`; a directory given as `ckpt_path` is taken as a run directory.
pub fn resolve_ckpt_path(
    ckpt_path: &str,
    run_dir: Option<&Path>,
) -> Result<PathBuf, CheckpointError> {
    let last_in = |run: &Path| {
        if run.ends_with(CHECKPOINT_DIR) {
            run.join(LAST_FILE)
        } else {
            run.join(CHECKPOINT_DIR).join(LAST_FILE)
        }
    };
    let path = if ckpt_path.trim() == "last" {
        last_in(run_dir.ok_or(CheckpointError::NoRunDir)?)
    } else {
        let given = PathBuf::from(ckpt_path);
        if given.is_dir() {
            last_in(&given)
        } else {
            given
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(not_found(&path))
    }
}

/// The "does not exist" error for `path`, listing the checkpoints next to it.
pub(super) fn not_found(path: &Path) -> CheckpointError {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let found = list_checkpoints(dir);
    let hint = if found.is_empty() {
        format!(
            "{} holds no .ckpt files; give a checkpoint file, or a run directory \
             (ckpt_path=outputs/<run>) to resume its checkpoints/last.ckpt",
            dir.display()
        )
    } else {
        let names: Vec<String> = found
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().to_string()))
            .collect();
        format!(
            "checkpoints in {}: {}; e.g. ckpt_path={}",
            dir.display(),
            names.join(", "),
            found[found.len() - 1].display()
        )
    };
    CheckpointError::NotFound {
        path: path.to_path_buf(),
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_a_run_dir_and_a_file_resolve_to_the_same_file() {
        let run = tempfile::tempdir().unwrap();
        let ckpts = run.path().join(CHECKPOINT_DIR);
        std::fs::create_dir(&ckpts).unwrap();
        let last = ckpts.join(LAST_FILE);
        std::fs::write(&last, b"x").unwrap();
        assert_eq!(resolve_ckpt_path("last", Some(run.path())).unwrap(), last);
        assert_eq!(
            resolve_ckpt_path(run.path().to_str().unwrap(), None).unwrap(),
            last
        );
        assert_eq!(
            resolve_ckpt_path(last.to_str().unwrap(), None).unwrap(),
            last
        );
        assert!(matches!(
            resolve_ckpt_path("last", None),
            Err(CheckpointError::NoRunDir)
        ));
    }

    #[test]
    fn a_missing_file_lists_what_is_there() {
        let run = tempfile::tempdir().unwrap();
        std::fs::write(run.path().join("step100.ckpt"), b"x").unwrap();
        std::fs::write(run.path().join("notes.txt"), b"x").unwrap();
        let wanted = run.path().join("step200.ckpt");
        let err = resolve_ckpt_path(wanted.to_str().unwrap(), None).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("step200.ckpt does not exist"), "{text}");
        assert!(
            text.contains("checkpoints in") && text.contains("step100.ckpt"),
            "{text}"
        );
        assert!(!text.contains("notes.txt"), "{text}");
        let empty = tempfile::tempdir().unwrap();
        let err = resolve_ckpt_path("last", Some(empty.path())).unwrap_err();
        assert!(err.to_string().contains("holds no .ckpt files"), "{err}");
    }
}

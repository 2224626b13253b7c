//! Scene folders: listing the `.npz` files in sorted order, and checking every scene once when
//! a dataset opens, with `on_bad_file` deciding whether a bad file stops the run or is left out.
//!
//! Files whose name does not end in `.npz` (a README, `.DS_Store`, sub-folders) are ignored and
//! reported in [`FolderScan::ignored`], never read.

use super::error::DataError;
use super::scene::{read_scene, Scene};
use crate::config::schema::OnBadFile;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The contents of a scene folder.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderScan {
    /// The `.npz` files, sorted by name.
    pub scenes: Vec<PathBuf>,
    /// Everything else in the folder, sorted (ignored).
    pub ignored: Vec<PathBuf>,
}

/// Lists `dir`: fails when it cannot be read or holds no `.npz` file.
pub fn scan_folder(dir: &Path) -> Result<FolderScan, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, "list", e))?;
    let mut scenes = Vec::new();
    let mut ignored = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| DataError::io(dir, "list", e))?.path();
        let is_npz = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
        if is_npz && !path.is_dir() {
            scenes.push(path);
        } else {
            ignored.push(path);
        }
    }
    scenes.sort();
    ignored.sort();
    if scenes.is_empty() {
        let note = if ignored.is_empty() {
            String::new()
        } else {
            format!(
                " (ignored {} other entries: {})",
                ignored.len(),
                names(&ignored, 5)
            )
        };
        return Err(DataError::EmptyFolder {
            dir: dir.to_path_buf(),
            ignored: note,
        });
    }
    Ok(FolderScan { scenes, ignored })
}

/// Up to `limit` file names, comma separated, with a count of the rest.
pub fn names(paths: &[PathBuf], limit: usize) -> String {
    let mut text: Vec<String> = paths
        .iter()
        .take(limit)
        .map(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| p.display().to_string())
        })
        .collect();
    if paths.len() > limit {
        text.push(format!("and {} more", paths.len() - limit));
    }
    text.join(", ")
}

/// A scene file left out under `on_bad_file: skip`.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedFile {
    /// The file.
    pub path: PathBuf,
    /// Why, as the error would have said.
    pub reason: String,
}

/// The scenes of a folder that passed the check.
#[derive(Debug, Default)]
pub struct CheckedScenes {
    /// The good files, in sorted order.
    pub paths: Vec<PathBuf>,
    /// Their decoded scenes, when asked to keep them (`cache`).
    pub scenes: Option<Vec<Scene>>,
    /// The bad files that were left out.
    pub skipped: Vec<SkippedFile>,
}

/// Reads and checks every file (on `threads` threads); keeps the decoded scenes when `keep`.
pub fn check_scenes(
    dir: &Path,
    paths: &[PathBuf],
    image_size: usize,
    on_bad_file: OnBadFile,
    keep: bool,
    threads: usize,
) -> Result<CheckedScenes, DataError> {
    let results: Vec<Mutex<Option<Result<Scene, DataError>>>> =
        paths.iter().map(|_| Mutex::new(None)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, paths.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(path) = paths.get(i) else { break };
                let result = read_scene(path, image_size);
                let stop = result.is_err() && on_bad_file == OnBadFile::Error;
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                if stop {
                    next.store(paths.len(), std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    let mut checked = CheckedScenes {
        scenes: keep.then(Vec::new),
        ..CheckedScenes::default()
    };
    for (path, slot) in paths.iter().zip(results) {
        match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            None => {}
            Some(Ok(scene)) => {
                checked.paths.push(path.clone());
                if let Some(kept) = checked.scenes.as_mut() {
                    kept.push(scene);
                }
            }
            Some(Err(err)) if on_bad_file == OnBadFile::Error => return Err(err),
            Some(Err(err)) => checked.skipped.push(SkippedFile {
                path: path.clone(),
                reason: err.to_string(),
            }),
        }
    }
    if checked.paths.is_empty() && !checked.skipped.is_empty() {
        return Err(DataError::AllSkipped {
            dir: dir.to_path_buf(),
            count: checked.skipped.len(),
            first: checked.skipped[0].reason.clone(),
        });
    }
    Ok(checked)
}

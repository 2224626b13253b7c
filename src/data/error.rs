//! Typed data errors: each names the file (and the array key when there is one), what was
//! expected, and what to do about it.

use std::path::PathBuf;

/// Everything that can go wrong while finding, reading, generating or batching scenes.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be read or written.
    #[error("{path}: {action} failed: {source}; check that the path exists and is readable")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What was being done ("read", "write", "list").
        action: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not a readable zip archive (truncated, corrupted, or not an .npz at all).
    #[error("{path}: not a readable .npz archive ({reason}); re-save it with np.savez or np.savez_compressed, or set data.on_bad_file=skip to leave it out")]
    BadArchive {
        /// The file.
        path: PathBuf,
        /// What the zip reader reported.
        reason: String,
    },
    /// A member of the archive could not be decompressed or decoded as a .npy array.
    #[error("{path}: key '{key}': {reason}; {fix}")]
    BadArray {
        /// The file.
        path: PathBuf,
        /// The array's key in the archive.
        key: String,
        /// What is wrong with it.
        reason: String,
        /// How to fix it.
        fix: String,
    },
    /// A scene lacks one of the mask keys.
    #[error("{path}: key '{key}' is missing (also accepted: {aliases}); keys present: [{present}]; expected keys: [{expected}]. Save the scene with np.savez(path, {key}=mask, ...)")]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The canonical key that is missing.
        key: String,
        /// Legacy names also accepted for it ("none" when there are none).
        aliases: String,
        /// The keys the archive holds, comma separated.
        present: String,
        /// The keys a scene must hold, comma separated.
        expected: String,
    },
    /// A mask holds a value other than 0 and 1.
    #[error("{path}: key '{key}': value {value} at (row {row}, col {col}) is not 0 or 1; masks must be binary, e.g. save (mask > 0.5).astype(np.uint8)")]
    NotBinary {
        /// The file.
        path: PathBuf,
        /// The array's key.
        key: String,
        /// The offending value.
        value: f64,
        /// Its row.
        row: usize,
        /// Its column.
        col: usize,
    },
    /// A mask holds NaN.
    #[error("{path}: key '{key}': NaN at (row {row}, col {col}); masks must be binary 0/1, replace NaN before saving (np.nan_to_num)")]
    NotANumber {
        /// The file.
        path: PathBuf,
        /// The array's key.
        key: String,
        /// Its row.
        row: usize,
        /// Its column.
        col: usize,
    },
    /// A scene folder holds no .npz file.
    #[error("{dir}: no .npz scene files found{ignored}; point data.data_dir (or data.val_dir) at a folder of .npz scenes, or use data=synthetic_namo")]
    EmptyFolder {
        /// The folder.
        dir: PathBuf,
        /// A note on the non-.npz files that were ignored, if any.
        ignored: String,
    },
    /// Every scene file of a folder was bad and skipped.
    #[error("{dir}: all {count} .npz files were bad and skipped (first: {first}); fix the files or set data.on_bad_file=error to see each error")]
    AllSkipped {
        /// The folder.
        dir: PathBuf,
        /// How many were skipped.
        count: usize,
        /// The first skip reason.
        first: String,
    },
    /// A setting does not fit the data (split sizes, batch sizes, ranks).
    #[error("{key}: {reason}; {fix}")]
    Setting {
        /// The setting, as a config key (e.g. `data.val_fraction`).
        key: String,
        /// What is wrong.
        reason: String,
        /// What to change.
        fix: String,
    },
    /// The synthetic generator could not place a scene's objects.
    #[error("synthetic scene {index}: {reason}; loosen the generator parameters (fewer boxes, smaller objects)")]
    Generator {
        /// The scene index.
        index: usize,
        /// What could not be placed.
        reason: String,
    },
    /// A preview image could not be encoded.
    #[error("{path}: cannot write the PNG preview: {reason}")]
    Png {
        /// The image path.
        path: PathBuf,
        /// The encoder's error.
        reason: String,
    },
    /// A tensor operation failed while building a batch.
    #[error("building a batch: {0}")]
    Tensor(#[from] candle_core::Error),
    /// A background loader thread stopped unexpectedly.
    #[error("a data loader thread stopped: {0}; rerun with data.num_workers=0 to load in the training thread and see the underlying error")]
    Worker(String),
}

impl DataError {
    /// Wraps an I/O error with the path and the action.
    pub fn io(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            action,
            source,
        }
    }
}

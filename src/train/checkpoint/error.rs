//! The errors of reading, writing and locating checkpoint files; each names the file, what was
//! expected, and what to do.

use std::io;
use std::path::PathBuf;

/// Why a checkpoint could not be read, written or found.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file does not exist.
    #[error("checkpoint {} does not exist; {hint}", path.display())]
    NotFound {
        /// The path asked for.
        path: PathBuf,
        /// What exists instead and how to ask for it.
        hint: String,
    },
    /// `ckpt_path=last` was given without a run directory to look in.
    #[error(
        "ckpt_path=last needs the run directory whose checkpoints/last.ckpt to resume; \
         pass the run directory itself (ckpt_path=outputs/<run>) or a file \
         (ckpt_path=outputs/<run>/checkpoints/last.ckpt)"
    )]
    NoRunDir,
    /// Reading the file failed.
    #[error("could not read checkpoint {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Writing the file failed; the previous file at that path is untouched.
    #[error(
        "could not write checkpoint {}: {source}; the previous file at that path (if any) is \
         untouched; free disk space or choose a writable output directory (hydra.run.dir=...)",
        path.display()
    )]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The tensors could not be laid out as safetensors (a bug or an unsupported dtype).
    #[error("could not encode checkpoint {}: {detail}", path.display())]
    Encode {
        /// The file being written.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The file is not in the safetensors format at all.
    #[error(
        "{} is not a flowrun checkpoint: {detail}; checkpoints are the .ckpt files in a run's \
         checkpoints/ directory",
        path.display()
    )]
    NotSafetensors {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// A safetensors file without flowrun's metadata (weights from elsewhere).
    #[error(
        "{} is a safetensors file but not a flowrun checkpoint: {detail}; to resume, give a \
         .ckpt file written by flowrun train",
        path.display()
    )]
    NotFlowrun {
        /// The file.
        path: PathBuf,
        /// What is missing.
        detail: String,
    },
    /// The file ends early (an interrupted copy or write).
    #[error(
        "checkpoint {} is truncated: {detail}; it was copied or written only in part; use \
         another checkpoint of the run (its last.ckpt, or an older one)",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Sizes expected and found.
        detail: String,
    },
    /// The file's header or metadata cannot be decoded.
    #[error(
        "checkpoint {} is corrupt: {detail}; use another checkpoint of the run",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What could not be decoded.
        detail: String,
    },
    /// The file was written in a format version this build does not read.
    #[error(
        "checkpoint {} has format version {found}, but this flowrun reads version {supported}; \
         {hint}",
        path.display()
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Its format version.
        found: u32,
        /// The version this build reads.
        supported: u32,
        /// What to do.
        hint: String,
    },
}

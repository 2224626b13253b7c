//! Errors of the telemetry writers and readers: each names the file, what was expected, and a fix.

use std::path::PathBuf;

/// A failure to write or read run telemetry (event files, `metrics.jsonl`, `train.log`, images).
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An operating-system I/O failure on a named file or directory.
    #[error("could not {action} {}: {source}\nhint: check that the directory exists, is writable and that the disk is not full", path.display())]
    Io {
        /// What was being done, e.g. `create event file`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A TFRecord checksum did not match: the file is damaged (not merely cut short).
    #[error("{}: the record at byte {offset} has a bad {part} checksum (expected {expected:#010x}, found {found:#010x}); the event file is corrupt\nhint: move the file aside; TensorBoard will also stop reading it at this record", path.display())]
    CorruptRecord {
        /// The event file.
        path: PathBuf,
        /// Byte offset of the record's start.
        offset: u64,
        /// `length header` or `payload`.
        part: &'static str,
        /// The checksum stored in the file.
        expected: u32,
        /// The checksum computed from the bytes read.
        found: u32,
    },
    /// A record's payload is not a valid `tensorboard.Event` protobuf.
    #[error("{}: the record at byte {offset} is not a TensorBoard Event ({source})\nhint: is this a TensorBoard event file (events.out.tfevents.*)?", path.display())]
    BadEvent {
        /// The event file.
        path: PathBuf,
        /// Byte offset of the record's start.
        offset: u64,
        /// The protobuf decoding error.
        source: prost::DecodeError,
    },
    /// A directory holds no `events.out.tfevents.*` file.
    #[error("no TensorBoard event file (events.out.tfevents.*) in {}\nhint: pass the run's `tensorboard/` directory", path.display())]
    NoEventFiles {
        /// The directory searched.
        path: PathBuf,
    },
    /// Image data that does not fit its declared size, or a PNG that cannot be encoded or decoded.
    #[error("bad image {what}: {message}")]
    BadImage {
        /// Which image (a tag or an argument name).
        what: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// An array or tensor argument has the wrong shape.
    #[error("{what} must have shape {expected}, got {got:?}")]
    BadShape {
        /// Which argument.
        what: &'static str,
        /// The expected shape, in words.
        expected: String,
        /// The shape found.
        got: Vec<usize>,
    },
    /// A metric name that collides with a column every `metrics.jsonl` line already has.
    #[error("metric name `{name}` is reserved in {} (every line already has step, epoch and wall_time)\nhint: rename the metric", path.display())]
    ReservedMetricName {
        /// The metrics file.
        path: PathBuf,
        /// The offending name.
        name: String,
    },
    /// A tensor operation failed while reading images out of candle tensors.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

impl TelemetryError {
    /// Wraps an I/O error with the action and the path it concerns.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        TelemetryError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

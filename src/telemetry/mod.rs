//! Run telemetry: TensorBoard event files, `metrics.jsonl`, the console and `train.log`.
//!
//! - [`tensorboard::EventWriter`] writes scalars, PNG images and text in TensorBoard's TFRecord
//!   event format; [`event_reader`] reads them back with checksums checked.
//! - [`sample_grid`] builds the `Validation_Samples_*` image from context, generated and
//!   ground-truth masks.
//! - [`metrics::MetricsLog`] appends one JSON object per line.
//! - [`console::Console`] shows progress as a bar on a terminal or as periodic lines elsewhere,
//!   copying every line to `train.log`.

pub mod console;
mod error;
pub mod event_reader;
pub mod image;
pub mod metrics;
mod proto;
mod record;
pub mod sample_grid;
pub mod tensorboard;

pub use console::{Console, ConsoleSettings, DisplayMode, ProgressStats};
pub use error::TelemetryError;
pub use event_reader::{read_event_dir, read_event_file, read_scalars, EventLog};
pub use image::{ColorMode, Image};
pub use metrics::MetricsLog;
pub use sample_grid::{validation_grid, validation_grid_from_tensors, SceneMasks};
pub use tensorboard::EventWriter;

//! A TensorBoard event-file writer: scalars, PNG images and text in TFRecord framing.
//!
//! Files are named `events.out.tfevents.{secs}.{hostname}.{pid}.{seq}` and opened with
//! `create_new`, so two writers never overwrite each other's file, even in the same second.
//! Writes are buffered; a background thread flushes them every `flush_interval` (5 s by default)
//! so a live `tensorboard --logdir` follows the run, and dropping the writer flushes the rest.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;

use super::image::Image;
use super::proto::{self, event, summary_value};
use super::record::frame_record;
use super::TelemetryError;

/// How often buffered events reach the disk when nobody calls [`EventWriter::flush`].
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// The file version TensorBoard 2.x expects in the first event of a file.
pub const FILE_VERSION: &str = "brain.Event:2";

/// The `plugin_name` of text summaries.
pub const TEXT_PLUGIN: &str = "text";

/// Distinguishes writers created by one process within one second.
static NEXT_FILE_SEQ: AtomicU64 = AtomicU64::new(0);

/// The buffered file, shared with the background flusher.
struct SharedFile {
    out: BufWriter<File>,
    dirty: bool,
    /// A failure of a background flush, returned by the next call on the writer.
    deferred_error: Option<io::Error>,
}

/// Writes one TensorBoard event file; see the module docs.
pub struct EventWriter {
    path: PathBuf,
    shared: Arc<Mutex<SharedFile>>,
    stop_flusher: Option<mpsc::Sender<()>>,
    flusher: Option<JoinHandle<()>>,
}

fn lock(shared: &Mutex<SharedFile>) -> MutexGuard<'_, SharedFile> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Seconds since the Unix epoch, as TensorBoard stores wall time.
fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The machine's host name with path separators and spaces replaced, for use in a file name.
fn file_safe_hostname() -> String {
    let host = gethostname::gethostname().to_string_lossy().to_string();
    let safe: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        "localhost".to_string()
    } else {
        safe
    }
}

/// Opens a fresh `events.out.tfevents.*` file in `dir`, never reusing an existing name.
fn create_event_file(dir: &Path) -> Result<(PathBuf, File), TelemetryError> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let host = file_safe_hostname();
    let pid = std::process::id();
    loop {
        let seq = NEXT_FILE_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("events.out.tfevents.{secs:010}.{host}.{pid}.{seq}"));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(TelemetryError::io("create event file", path, e)),
        }
    }
}

impl EventWriter {
    /// Creates `dir` if needed and a new event file in it, flushed every [`DEFAULT_FLUSH_INTERVAL`].
    pub fn create(dir: &Path) -> Result<Self, TelemetryError> {
        Self::create_with_flush_interval(dir, DEFAULT_FLUSH_INTERVAL)
    }

    /// Like [`EventWriter::create`], with buffered events flushed every `flush_interval`.
    pub fn create_with_flush_interval(
        dir: &Path,
        flush_interval: Duration,
    ) -> Result<Self, TelemetryError> {
        fs::create_dir_all(dir)
            .map_err(|e| TelemetryError::io("create event directory", dir, e))?;
        let (path, file) = create_event_file(dir)?;
        let shared = Arc::new(Mutex::new(SharedFile {
            out: BufWriter::new(file),
            dirty: false,
            deferred_error: None,
        }));
        let (stop_flusher, stopped) = mpsc::channel::<()>();
        let flusher_shared = Arc::clone(&shared);
        let flusher = std::thread::Builder::new()
            .name("tensorboard-flush".to_string())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(flush_interval) {
                    let mut file = lock(&flusher_shared);
                    if file.dirty && file.deferred_error.is_none() {
                        match file.out.flush() {
                            Ok(()) => file.dirty = false,
                            Err(e) => file.deferred_error = Some(e),
                        }
                    }
                }
            })
            .map_err(|e| TelemetryError::io("start the flush thread for", &path, e))?;
        let mut writer = EventWriter {
            path,
            shared,
            stop_flusher: Some(stop_flusher),
            flusher: Some(flusher),
        };
        writer.write_event(proto::Event {
            wall_time: now_secs(),
            step: 0,
            what: Some(event::What::FileVersion(FILE_VERSION.to_string())),
        })?;
        writer.flush()?;
        Ok(writer)
    }

    /// The event file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logs one scalar (stored as f32, as TensorBoard does).
    pub fn add_scalar(
        &mut self,
        tag: &str,
        value: impl Into<f64>,
        step: u64,
    ) -> Result<(), TelemetryError> {
        self.add_scalars(&[(tag, value.into())], step)
    }

    /// Logs several scalars at one step in a single event.
    pub fn add_scalars(&mut self, values: &[(&str, f64)], step: u64) -> Result<(), TelemetryError> {
        let value = values
            .iter()
            .map(|&(tag, v)| proto::SummaryValue {
                tag: tag.to_string(),
                metadata: None,
                kind: Some(summary_value::Kind::SimpleValue(v as f32)),
            })
            .collect();
        self.write_summary(proto::Summary { value }, step)
    }

    /// Logs an image, PNG-encoded (grayscale or RGB, any width and height).
    pub fn add_image(&mut self, tag: &str, image: &Image, step: u64) -> Result<(), TelemetryError> {
        let encoded = image.encode_png()?;
        let value = proto::SummaryValue {
            tag: tag.to_string(),
            metadata: None,
            kind: Some(summary_value::Kind::Image(proto::SummaryImage {
                height: image.height() as i32,
                width: image.width() as i32,
                colorspace: image.mode().colorspace(),
                encoded_image_string: encoded,
            })),
        };
        self.write_summary(proto::Summary { value: vec![value] }, step)
    }

    /// Logs text for TensorBoard's Text tab (a rank-0 string tensor, rendered as Markdown).
    pub fn add_text(&mut self, tag: &str, text: &str, step: u64) -> Result<(), TelemetryError> {
        let value = proto::SummaryValue {
            tag: tag.to_string(),
            metadata: Some(proto::SummaryMetadata {
                plugin_data: Some(proto::PluginData {
                    plugin_name: TEXT_PLUGIN.to_string(),
                    content: Vec::new(),
                }),
            }),
            kind: Some(summary_value::Kind::Tensor(proto::TensorProto {
                dtype: proto::DT_STRING,
                tensor_shape: Some(proto::TensorShapeProto { dim: Vec::new() }),
                string_val: vec![text.as_bytes().to_vec()],
            })),
        };
        self.write_summary(proto::Summary { value: vec![value] }, step)
    }

    /// Logs a YAML config as text under `tag`, fenced so TensorBoard shows it verbatim.
    pub fn add_config_yaml(
        &mut self,
        tag: &str,
        yaml: &str,
        step: u64,
    ) -> Result<(), TelemetryError> {
        self.add_text(tag, &format!("```yaml\n{}\n```", yaml.trim_end()), step)
    }

    /// Writes every buffered event to the file.
    pub fn flush(&mut self) -> Result<(), TelemetryError> {
        let mut file = lock(&self.shared);
        if let Some(e) = file.deferred_error.take() {
            return Err(TelemetryError::io("write event file", &self.path, e));
        }
        file.out
            .flush()
            .map_err(|e| TelemetryError::io("write event file", &self.path, e))?;
        file.dirty = false;
        Ok(())
    }

    /// Flushes, stops the background flusher and closes the file, reporting any failure.
    pub fn close(mut self) -> Result<(), TelemetryError> {
        self.stop_background_flush();
        self.flush()
    }

    fn stop_background_flush(&mut self) {
        drop(self.stop_flusher.take());
        if let Some(handle) = self.flusher.take() {
            let _ = handle.join();
        }
    }

    fn write_summary(&mut self, summary: proto::Summary, step: u64) -> Result<(), TelemetryError> {
        self.write_event(proto::Event {
            wall_time: now_secs(),
            step: i64::try_from(step).unwrap_or(i64::MAX),
            what: Some(event::What::Summary(summary)),
        })
    }

    fn write_event(&mut self, event: proto::Event) -> Result<(), TelemetryError> {
        let mut framed = Vec::with_capacity(event.encoded_len() + 16);
        frame_record(&event.encode_to_vec(), &mut framed);
        let mut file = lock(&self.shared);
        if let Some(e) = file.deferred_error.take() {
            return Err(TelemetryError::io("write event file", &self.path, e));
        }
        file.out
            .write_all(&framed)
            .map_err(|e| TelemetryError::io("write event file", &self.path, e))?;
        file.dirty = true;
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        self.stop_background_flush();
        let _ = lock(&self.shared).out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_record_is_the_file_version_and_is_on_disk_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let writer = EventWriter::create(dir.path()).unwrap();
        let bytes = fs::read(writer.path()).unwrap();
        let mut input = bytes.as_slice();
        let super::super::record::RecordRead::Record(payload) =
            super::super::record::read_record(&mut input).unwrap()
        else {
            panic!("no first record");
        };
        let first = proto::Event::decode(payload.as_slice()).unwrap();
        assert_eq!(
            first.what,
            Some(event::What::FileVersion(FILE_VERSION.into()))
        );
        assert!(input.is_empty());
    }

    #[test]
    fn the_file_name_follows_tensorflows_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let writer = EventWriter::create(dir.path()).unwrap();
        let name = writer
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let parts: Vec<&str> = name
            .strip_prefix("events.out.tfevents.")
            .unwrap()
            .split('.')
            .collect();
        assert_eq!(parts[0].len(), 10, "{name}");
        assert!(parts[0].parse::<u64>().is_ok(), "{name}");
        assert_eq!(parts[parts.len() - 2], std::process::id().to_string());
        assert!(parts[parts.len() - 1].parse::<u64>().is_ok(), "{name}");
    }

    #[test]
    fn the_background_flusher_writes_without_an_explicit_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer =
            EventWriter::create_with_flush_interval(dir.path(), Duration::from_millis(20)).unwrap();
        let before = fs::metadata(writer.path()).unwrap().len();
        writer.add_scalar("loss", 1.0f32, 1).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while fs::metadata(writer.path()).unwrap().len() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "nothing flushed in 5 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_missing_parent_that_cannot_be_created_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        let Err(err) = EventWriter::create(&blocker.join("tb")) else {
            panic!("created an event dir under a file");
        };
        assert!(err.to_string().contains("tb"), "{err}");
    }
}

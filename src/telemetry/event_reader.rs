//! Reads TensorBoard event files back: scalars, images and text, with TFRecord checksums checked.
//!
//! A file that ends inside a record (a writer still appending, or killed mid-write) is read up to
//! its last whole record and flagged in [`EventLog::truncated_files`]; a checksum mismatch is an
//! error naming the file and the byte offset.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, Seek};
use std::path::{Path, PathBuf};

use prost::Message;

use super::image::Image;
use super::proto::{self, event, summary_value};
use super::record::{read_record, RecordRead};
use super::tensorboard::TEXT_PLUGIN;
use super::TelemetryError;

/// One logged scalar.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarPoint {
    /// The training step it was logged at.
    pub step: i64,
    /// The value, as stored (f32).
    pub value: f32,
    /// Seconds since the Unix epoch when it was logged.
    pub wall_time: f64,
}

/// One logged image, still PNG-encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePoint {
    /// The training step it was logged at.
    pub step: i64,
    /// Seconds since the Unix epoch when it was logged.
    pub wall_time: f64,
    /// Width declared in the event.
    pub width: u32,
    /// Height declared in the event.
    pub height: u32,
    /// TensorBoard colorspace code (1 gray, 3 RGB).
    pub colorspace: i32,
    /// The PNG file bytes.
    pub png: Vec<u8>,
}

impl ImagePoint {
    /// Decodes the PNG bytes.
    pub fn decode(&self) -> Result<Image, TelemetryError> {
        Image::decode_png(&self.png)
    }
}

/// One logged text (text plugin, DT_STRING tensor).
#[derive(Debug, Clone, PartialEq)]
pub struct TextPoint {
    /// The training step it was logged at.
    pub step: i64,
    /// Seconds since the Unix epoch when it was logged.
    pub wall_time: f64,
    /// The text, its string elements joined by newlines.
    pub text: String,
}

/// Everything read from one event file or a directory of them, keyed by tag.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventLog {
    /// The files read, in order.
    pub files: Vec<PathBuf>,
    /// The `file_version` of each file that had one (`brain.Event:2`).
    pub file_versions: Vec<String>,
    /// Scalars by tag, in file order.
    pub scalars: BTreeMap<String, Vec<ScalarPoint>>,
    /// Images by tag, in file order.
    pub images: BTreeMap<String, Vec<ImagePoint>>,
    /// Texts by tag, in file order.
    pub texts: BTreeMap<String, Vec<TextPoint>>,
    /// Files that end inside a record; everything before that record was read.
    pub truncated_files: Vec<PathBuf>,
}

impl EventLog {
    fn add_event(&mut self, event: proto::Event) {
        match event.what {
            Some(event::What::FileVersion(version)) => self.file_versions.push(version),
            Some(event::What::Summary(summary)) => {
                for value in summary.value {
                    self.add_value(event.step, event.wall_time, value);
                }
            }
            None => {}
        }
    }

    fn add_value(&mut self, step: i64, wall_time: f64, value: proto::SummaryValue) {
        let is_text = value
            .metadata
            .as_ref()
            .and_then(|m| m.plugin_data.as_ref())
            .is_some_and(|p| p.plugin_name == TEXT_PLUGIN);
        match value.kind {
            Some(summary_value::Kind::SimpleValue(v)) => self
                .scalars
                .entry(value.tag)
                .or_default()
                .push(ScalarPoint {
                    step,
                    value: v,
                    wall_time,
                }),
            Some(summary_value::Kind::Image(img)) => {
                self.images.entry(value.tag).or_default().push(ImagePoint {
                    step,
                    wall_time,
                    width: img.width.max(0) as u32,
                    height: img.height.max(0) as u32,
                    colorspace: img.colorspace,
                    png: img.encoded_image_string,
                })
            }
            Some(summary_value::Kind::Tensor(tensor))
                if is_text && tensor.dtype == proto::DT_STRING =>
            {
                let parts: Vec<String> = tensor
                    .string_val
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect();
                self.texts.entry(value.tag).or_default().push(TextPoint {
                    step,
                    wall_time,
                    text: parts.join("\n"),
                })
            }
            _ => {}
        }
    }
}

/// Reads one event file.
pub fn read_event_file(path: &Path) -> Result<EventLog, TelemetryError> {
    let mut log = EventLog::default();
    read_into(path, &mut log)?;
    Ok(log)
}

/// Reads every `events.out.tfevents.*` file in `dir` (not recursive), in name order.
pub fn read_event_dir(dir: &Path) -> Result<EventLog, TelemetryError> {
    let files = event_files(dir)?;
    if files.is_empty() {
        return Err(TelemetryError::NoEventFiles {
            path: dir.to_path_buf(),
        });
    }
    let mut log = EventLog::default();
    for file in &files {
        read_into(file, &mut log)?;
    }
    Ok(log)
}

/// The scalars of every event file in `dir`, by tag.
pub fn read_scalars(dir: &Path) -> Result<BTreeMap<String, Vec<ScalarPoint>>, TelemetryError> {
    Ok(read_event_dir(dir)?.scalars)
}

/// The images of every event file in `dir`, by tag.
pub fn read_images(dir: &Path) -> Result<BTreeMap<String, Vec<ImagePoint>>, TelemetryError> {
    Ok(read_event_dir(dir)?.images)
}

/// The texts of every event file in `dir`, by tag.
pub fn read_texts(dir: &Path) -> Result<BTreeMap<String, Vec<TextPoint>>, TelemetryError> {
    Ok(read_event_dir(dir)?.texts)
}

/// The `events.out.tfevents.*` files directly in `dir`, sorted by name.
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>, TelemetryError> {
    let entries =
        fs::read_dir(dir).map_err(|e| TelemetryError::io("list event directory", dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| TelemetryError::io("list event directory", dir, e))?;
        let is_event_file = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.contains("tfevents"));
        if is_event_file && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

fn read_into(path: &Path, log: &mut EventLog) -> Result<(), TelemetryError> {
    let file = File::open(path).map_err(|e| TelemetryError::io("open event file", path, e))?;
    let mut input = BufReader::new(file);
    log.files.push(path.to_path_buf());
    loop {
        let offset = input
            .stream_position()
            .map_err(|e| TelemetryError::io("read event file", path, e))?;
        let record =
            read_record(&mut input).map_err(|e| TelemetryError::io("read event file", path, e))?;
        match record {
            RecordRead::Record(payload) => {
                let event = proto::Event::decode(payload.as_slice()).map_err(|source| {
                    TelemetryError::BadEvent {
                        path: path.to_path_buf(),
                        offset,
                        source,
                    }
                })?;
                log.add_event(event);
            }
            RecordRead::End => return Ok(()),
            RecordRead::Truncated => {
                log.truncated_files.push(path.to_path_buf());
                return Ok(());
            }
            RecordRead::Corrupt {
                part,
                expected,
                found,
            } => {
                return Err(TelemetryError::CorruptRecord {
                    path: path.to_path_buf(),
                    offset,
                    part,
                    expected,
                    found,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::frame_record;
    use super::*;

    fn scalar_event(tag: &str, value: f32, step: i64) -> Vec<u8> {
        proto::Event {
            wall_time: 1.5,
            step,
            what: Some(event::What::Summary(proto::Summary {
                value: vec![proto::SummaryValue {
                    tag: tag.into(),
                    metadata: None,
                    kind: Some(summary_value::Kind::SimpleValue(value)),
                }],
            })),
        }
        .encode_to_vec()
    }

    #[test]
    fn a_truncated_tail_keeps_the_whole_records_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        frame_record(&scalar_event("a", 1.0, 1), &mut bytes);
        frame_record(&scalar_event("a", 2.0, 2), &mut bytes);
        bytes.truncate(bytes.len() - 3);
        let path = dir.path().join("events.out.tfevents.1.h.1.0");
        fs::write(&path, &bytes).unwrap();
        let log = read_event_file(&path).unwrap();
        assert_eq!(log.scalars["a"].len(), 1);
        assert_eq!(log.scalars["a"][0].step, 1);
        assert_eq!(log.truncated_files, vec![path]);
    }

    #[test]
    fn a_corrupt_payload_names_the_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        frame_record(&scalar_event("a", 1.0, 1), &mut bytes);
        let second = bytes.len();
        frame_record(&scalar_event("a", 2.0, 2), &mut bytes);
        bytes[second + 14] ^= 0x55;
        let path = dir.path().join("events.out.tfevents.1.h.1.0");
        fs::write(&path, &bytes).unwrap();
        let err = read_event_file(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&format!("byte {second}")), "{msg}");
        assert!(msg.contains("payload checksum"), "{msg}");
        assert!(msg.contains("events.out.tfevents.1.h.1.0"), "{msg}");
    }

    #[test]
    fn a_record_that_is_not_an_event_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        frame_record(&[0xff, 0xff, 0xff], &mut bytes);
        let path = dir.path().join("events.out.tfevents.1.h.1.0");
        fs::write(&path, &bytes).unwrap();
        let err = read_event_file(&path).unwrap_err();
        assert!(
            matches!(err, TelemetryError::BadEvent { offset: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn an_empty_directory_is_an_error_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_event_dir(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("no TensorBoard event file"),
            "{err}"
        );
    }
}

//! `metrics.jsonl`: one JSON object per line with `step`, `epoch`, `wall_time` and the metrics.
//!
//! Lines are appended (a resumed run continues the same file) and flushed at least every
//! `flush_interval` of writes and on [`MetricsLog::flush`] or drop. Non-finite values are
//! written as `null`, since JSON has no NaN or infinity.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::TelemetryError;

/// How often buffered lines reach the disk by default.
pub const DEFAULT_METRICS_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// Keys every line has; metric names may not reuse them.
pub const RESERVED_KEYS: [&str; 3] = ["step", "epoch", "wall_time"];

/// Appends metric records to a JSON-lines file.
pub struct MetricsLog {
    path: PathBuf,
    out: BufWriter<File>,
    flush_interval: Duration,
    last_flush: Instant,
}

impl MetricsLog {
    /// Opens `path` for appending (creating it), flushed every [`DEFAULT_METRICS_FLUSH_INTERVAL`].
    pub fn open(path: &Path) -> Result<Self, TelemetryError> {
        Self::open_with_flush_interval(path, DEFAULT_METRICS_FLUSH_INTERVAL)
    }

    /// Like [`MetricsLog::open`], flushing when `flush_interval` has passed since the last flush.
    pub fn open_with_flush_interval(
        path: &Path,
        flush_interval: Duration,
    ) -> Result<Self, TelemetryError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| TelemetryError::io("open metrics file", path, e))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            flush_interval,
            last_flush: Instant::now(),
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line: `{"step":..,"epoch":..,"wall_time":..,<name>:<value>,..}` in the given order.
    pub fn append(
        &mut self,
        step: u64,
        epoch: u64,
        values: &[(&str, f64)],
    ) -> Result<(), TelemetryError> {
        let wall_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let line = self.format_line(step, epoch, wall_time, values)?;
        self.out
            .write_all(line.as_bytes())
            .map_err(|e| TelemetryError::io("write metrics file", &self.path, e))?;
        if self.last_flush.elapsed() >= self.flush_interval {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes every buffered line to the file.
    pub fn flush(&mut self) -> Result<(), TelemetryError> {
        self.out
            .flush()
            .map_err(|e| TelemetryError::io("write metrics file", &self.path, e))?;
        self.last_flush = Instant::now();
        Ok(())
    }

    fn format_line(
        &self,
        step: u64,
        epoch: u64,
        wall_time: f64,
        values: &[(&str, f64)],
    ) -> Result<String, TelemetryError> {
        let mut line = format!(
            "{{\"step\":{step},\"epoch\":{epoch},\"wall_time\":{}",
            json_number(wall_time)
        );
        for &(name, value) in values {
            if RESERVED_KEYS.contains(&name) {
                return Err(TelemetryError::ReservedMetricName {
                    path: self.path.clone(),
                    name: name.to_string(),
                });
            }
            line.push(',');
            line.push_str(&serde_json::Value::from(name).to_string());
            line.push(':');
            line.push_str(&json_number(value));
        }
        line.push_str("}\n");
        Ok(line)
    }
}

/// A JSON number for `value`, or `null` when it is not finite.
fn json_number(value: f64) -> String {
    serde_json::Number::from_f64(value)
        .map(|n| n.to_string())
        .unwrap_or_else(|| "null".to_string())
}

impl Drop for MetricsLog {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_objects_in_order_with_null_for_nan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&path).unwrap();
        log.append(
            3,
            1,
            &[
                ("train_loss", 0.25),
                ("lr", f64::NAN),
                ("odd \"name\"", 1e-9),
            ],
        )
        .unwrap();
        log.append(4, 1, &[("val_loss", 0.5)]).unwrap();
        log.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("{\"step\":3,\"epoch\":1,\"wall_time\":"),
            "{}",
            lines[0]
        );
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["train_loss"], 0.25);
        assert!(first["lr"].is_null());
        assert_eq!(first["odd \"name\""], 1e-9);
        assert!(first["wall_time"].as_f64().unwrap() > 1.6e9);
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["step"], 4);
        assert_eq!(second["val_loss"], 0.5);
    }

    #[test]
    fn reopening_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        MetricsLog::open(&path)
            .unwrap()
            .append(1, 0, &[("a", 1.0)])
            .unwrap();
        MetricsLog::open(&path)
            .unwrap()
            .append(2, 0, &[("a", 2.0)])
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let steps: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(steps, vec![1, 2]);
    }

    #[test]
    fn a_zero_interval_flushes_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open_with_flush_interval(&path, Duration::ZERO).unwrap();
        log.append(1, 0, &[("a", 1.0)]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }

    #[test]
    fn reserved_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(&dir.path().join("m.jsonl")).unwrap();
        let err = log.append(1, 0, &[("step", 1.0)]).unwrap_err();
        assert!(err.to_string().contains("`step` is reserved"), "{err}");
    }

    #[test]
    fn an_unwritable_location_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/metrics.jsonl");
        let Err(err) = MetricsLog::open(&path) else {
            panic!("opened a file in a missing directory");
        };
        assert!(err.to_string().contains("missing/metrics.jsonl"), "{err}");
    }
}

//! The `.ckpt` file: one safetensors file holding the tensors, namespaced `model.<name>`
//! (PyTorch `state_dict` names), `ema.<name>` and `optim.<name>`, and in its `__metadata__`:
//!
//! * `format`: `flowrun-checkpoint`;
//! * `flowrun`: the [`CheckpointMeta`] as JSON;
//! * `tensor_hash`: a 64-bit FNV-1a hash of every tensor's name and bytes (in name order), so that
//!   damaged tensor data is caught at load time.
//!
//! Files are written with [`atomic_write`] (a temporary file in the same directory, fsync,
//! rename): a crash or a full disk leaves the previous file whole.

use super::error::CheckpointError;
use super::meta::{CheckpointMeta, FORMAT_VERSION};
use crate::run::atomic::atomic_write;
use candle_core::{Device, Tensor};
use safetensors::View;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The `__metadata__` value of `format` that marks a flowrun checkpoint.
pub const FORMAT_MARKER: &str = "flowrun-checkpoint";

const MODEL_PREFIX: &str = "model.";
const EMA_PREFIX: &str = "ema.";
const OPTIM_PREFIX: &str = "optim.";
/// The largest header the safetensors crate reads.
const MAX_HEADER: u64 = 100_000_000;

/// The whole saved state of a run.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The model weights by PyTorch name.
    pub model: HashMap<String, Tensor>,
    /// The EMA weights by PyTorch name (empty without EMA).
    pub ema: HashMap<String, Tensor>,
    /// The optimizer state (`AdamW::state_tensors`).
    pub optim: HashMap<String, Tensor>,
    /// Everything else.
    pub meta: CheckpointMeta,
}

fn namespaced(ckpt: &Checkpoint) -> Vec<(String, &Tensor)> {
    let mut all: Vec<(String, &Tensor)> = [
        (MODEL_PREFIX, &ckpt.model),
        (EMA_PREFIX, &ckpt.ema),
        (OPTIM_PREFIX, &ckpt.optim),
    ]
    .into_iter()
    .flat_map(|(prefix, map)| map.iter().map(move |(k, t)| (format!("{prefix}{k}"), t)))
    .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// FNV-1a over 8-byte little-endian words (the tail zero-padded), fed names and data in order.
#[derive(Debug, Clone, Copy)]
struct TensorHash(u64);

impl TensorHash {
    fn new() -> Self {
        TensorHash(0xcbf2_9ce4_8422_2325)
    }

    fn feed(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(word)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.0 = (self.0 ^ u64::from_le_bytes(tail) ^ bytes.len() as u64)
            .wrapping_mul(0x0000_0100_0000_01b3);
    }

    fn hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

/// Writes `ckpt` to `path` atomically (the previous file survives any failure).
pub fn write_checkpoint(path: &Path, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
    let encode = |detail: String| CheckpointError::Encode {
        path: path.to_path_buf(),
        detail,
    };
    let tensors = namespaced(ckpt);
    let mut hash = TensorHash::new();
    for (name, tensor) in &tensors {
        hash.feed(name.as_bytes());
        hash.feed(&tensor.data());
    }
    let meta = serde_json::to_string(&ckpt.meta).map_err(|e| encode(e.to_string()))?;
    let info = HashMap::from([
        ("format".to_string(), FORMAT_MARKER.to_string()),
        ("flowrun".to_string(), meta),
        ("tensor_hash".to_string(), hash.hex()),
    ]);
    let bytes = safetensors::serialize(tensors, Some(info)).map_err(|e| encode(e.to_string()))?;
    atomic_write(path, &bytes).map_err(|source| CheckpointError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The decoded header of a checkpoint file.
struct Header {
    meta: CheckpointMeta,
    tensor_hash: Option<String>,
}

fn read_error(path: &Path, source: io::Error) -> CheckpointError {
    if source.kind() == io::ErrorKind::NotFound {
        return super::locate::not_found(path);
    }
    CheckpointError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// Checks the layout of a safetensors file of `file_len` bytes from its first bytes (at least the
/// whole header when the file has one) and decodes flowrun's metadata.
fn parse_header(path: &Path, file_len: u64, start: &[u8]) -> Result<Header, CheckpointError> {
    let p = || path.to_path_buf();
    if file_len < 8 {
        return Err(CheckpointError::Truncated {
            path: p(),
            detail: format!("the file has {file_len} bytes, fewer than the 8-byte header length"),
        });
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&start[..8]);
    let n = u64::from_le_bytes(len_bytes);
    let header_start = start.get(8..).unwrap_or_default();
    if !(2..=MAX_HEADER).contains(&n) || header_start.first().is_some_and(|&b| b != b'{') {
        return Err(CheckpointError::NotSafetensors {
            path: p(),
            detail: "it does not start with a safetensors header".to_string(),
        });
    }
    if 8 + n > file_len {
        return Err(CheckpointError::Truncated {
            path: p(),
            detail: format!(
                "its header needs {n} bytes but the file ends after {}",
                file_len - 8
            ),
        });
    }
    let corrupt = |detail: String| CheckpointError::Corrupt { path: p(), detail };
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&start[8..8 + n as usize])
            .map_err(|e| corrupt(format!("its header is not valid JSON ({e})")))?;
    let mut data_len = 0u64;
    for (name, info) in &header {
        if name == "__metadata__" {
            continue;
        }
        let end = info["data_offsets"][1]
            .as_u64()
            .ok_or_else(|| corrupt(format!("tensor '{name}' has no data_offsets")))?;
        data_len = data_len.max(end);
    }
    let held = file_len - 8 - n;
    if held < data_len {
        return Err(CheckpointError::Truncated {
            path: p(),
            detail: format!(
                "its header lists {data_len} bytes of tensor data but the file holds {held}"
            ),
        });
    }
    if held > data_len {
        return Err(corrupt(format!(
            "{} unexpected bytes follow the tensor data",
            held - data_len
        )));
    }
    let info = header.get("__metadata__").and_then(|m| m.as_object());
    let field = |key: &str| info.and_then(|m| m.get(key)).and_then(|v| v.as_str());
    if field("format") != Some(FORMAT_MARKER) {
        return Err(CheckpointError::NotFlowrun {
            path: p(),
            detail: format!("its __metadata__ has no format={FORMAT_MARKER} entry"),
        });
    }
    let json = field("flowrun").ok_or_else(|| CheckpointError::NotFlowrun {
        path: p(),
        detail: "its __metadata__ has no flowrun entry".to_string(),
    })?;
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| corrupt(format!("its flowrun metadata is not valid JSON ({e})")))?;
    let version = value["format_version"].as_u64().unwrap_or(0) as u32;
    if version != FORMAT_VERSION {
        let hint = if version > FORMAT_VERSION {
            "it was written by a newer flowrun; update flowrun to resume it".to_string()
        } else {
            "it was written by an older flowrun whose format this build cannot read; \
             resume it with that flowrun version"
                .to_string()
        };
        return Err(CheckpointError::UnsupportedVersion {
            path: p(),
            found: version,
            supported: FORMAT_VERSION,
            hint,
        });
    }
    let meta = serde_json::from_value(value)
        .map_err(|e| corrupt(format!("its flowrun metadata does not decode ({e})")))?;
    Ok(Header {
        meta,
        tensor_hash: field("tensor_hash").map(str::to_string),
    })
}

/// Reads only the metadata of the checkpoint at `path` (fast: the tensors are not read).
pub fn read_meta(path: &Path) -> Result<CheckpointMeta, CheckpointError> {
    let mut file = File::open(path).map_err(|e| read_error(path, e))?;
    let file_len = file.metadata().map_err(|e| read_error(path, e))?.len();
    let mut start = vec![0u8; file_len.min(8) as usize];
    file.read_exact(&mut start)
        .map_err(|e| read_error(path, e))?;
    if start.len() == 8 {
        let n = u64::from_le_bytes(start[..8].try_into().unwrap_or_default());
        let wanted = n.min(MAX_HEADER).min(file_len - 8) as usize;
        start.resize(8 + wanted, 0);
        file.read_exact(&mut start[8..])
            .map_err(|e| read_error(path, e))?;
    }
    parse_header(path, file_len, &start).map(|h| h.meta)
}

/// Loads the checkpoint at `path`, its tensors on `device`.
pub fn load_checkpoint(path: &Path, device: &Device) -> Result<Checkpoint, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|e| read_error(path, e))?;
    load_checkpoint_bytes(path, &bytes, device)
}

/// Parses the bytes of the checkpoint file `path` (already read, e.g. by another rank), its
/// tensors on `device`.
pub fn load_checkpoint_bytes(
    path: &Path,
    bytes: &[u8],
    device: &Device,
) -> Result<Checkpoint, CheckpointError> {
    let header = parse_header(path, bytes.len() as u64, bytes)?;
    let corrupt = |detail: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| corrupt(format!("its tensor table is invalid ({e})")))?;
    if let Some(expected) = &header.tensor_hash {
        let mut names = st.names();
        names.sort();
        let mut hash = TensorHash::new();
        for name in names {
            let view = st
                .tensor(name)
                .map_err(|e| corrupt(format!("tensor '{name}': {e}")))?;
            hash.feed(name.as_bytes());
            hash.feed(view.data());
        }
        if &hash.hex() != expected {
            return Err(corrupt(
                "its tensor data does not match the hash written with it (damaged on disk or in \
                 transfer)"
                    .to_string(),
            ));
        }
    }
    let tensors = candle_core::safetensors::load_buffer(bytes, device)
        .map_err(|e| corrupt(format!("its tensors cannot be loaded ({e})")))?;
    let mut ckpt = Checkpoint {
        model: HashMap::new(),
        ema: HashMap::new(),
        optim: HashMap::new(),
        meta: header.meta,
    };
    for (name, tensor) in tensors {
        let (map, key) = if let Some(k) = name.strip_prefix(MODEL_PREFIX) {
            (&mut ckpt.model, k)
        } else if let Some(k) = name.strip_prefix(EMA_PREFIX) {
            (&mut ckpt.ema, k)
        } else if let Some(k) = name.strip_prefix(OPTIM_PREFIX) {
            (&mut ckpt.optim, k)
        } else {
            return Err(corrupt(format!(
                "tensor '{name}' is outside the model., ema. and optim. namespaces"
            )));
        };
        map.insert(key.to_string(), tensor);
    }
    Ok(ckpt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_sees_order_values_and_lengths() {
        let h = |parts: &[&[u8]]| {
            let mut h = TensorHash::new();
            parts.iter().for_each(|p| h.feed(p));
            h.hex()
        };
        assert_ne!(h(&[b"ab", b"c"]), h(&[b"a", b"bc"]));
        assert_ne!(h(&[b"abcdefgh1"]), h(&[b"abcdefgh2"]));
        assert_ne!(h(&[b"a"]), h(&[b"a\0"]));
        assert_eq!(h(&[b"same"]), h(&[b"same"]));
    }

    #[test]
    fn headers_are_classified_before_any_tensor_is_read() {
        let p = Path::new("x.ckpt");
        let err = parse_header(p, 3, b"abc").err().unwrap();
        assert!(matches!(err, CheckpointError::Truncated { .. }), "{err}");
        let text = b"hello world, this is text";
        let err = parse_header(p, text.len() as u64, text).err().unwrap();
        assert!(
            matches!(err, CheckpointError::NotSafetensors { .. }),
            "{err}"
        );
        let mut short = 100u64.to_le_bytes().to_vec();
        short.extend_from_slice(b"{\"a\":");
        let err = parse_header(p, short.len() as u64, &short).err().unwrap();
        assert!(err.to_string().contains("needs 100 bytes"), "{err}");
        let mut plain = 2u64.to_le_bytes().to_vec();
        plain.extend_from_slice(b"{}");
        let err = parse_header(p, plain.len() as u64, &plain).err().unwrap();
        assert!(matches!(err, CheckpointError::NotFlowrun { .. }), "{err}");
    }
}

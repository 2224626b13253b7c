//! Weights I/O: safetensors files with the PyTorch `state_dict` names.
//!
//! Loading is strict and happens after the model is built: the file's names and shapes are
//! compared with the model's, and any difference is reported by name ([`KeyReport`]) before a
//! single weight changes. `pos_embed` (the frozen position table PyTorch keeps in its
//! `state_dict`) is written on save so that PyTorch's strict `load_state_dict` accepts the file;
//! on load it may be present or absent, its shape is checked and its values are recomputed.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::dit::POS_EMBED_NAME;
use super::generative::{GenerativeConfig, GenerativeError, GenerativeModule};
use crate::rng::Rng;

/// A tensor whose shape differs between the file and the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// The tensor name.
    pub name: String,
    /// The shape the model needs.
    pub expected: Vec<usize>,
    /// The shape in the file.
    pub found: Vec<usize>,
}

/// How a set of named tensors differs from what a model needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyReport {
    /// Names the model needs that are absent.
    pub missing: Vec<String>,
    /// Names present that the model does not have.
    pub unexpected: Vec<String>,
    /// Names present with the wrong shape.
    pub shape_mismatches: Vec<ShapeMismatch>,
}

impl KeyReport {
    /// Compares `found` with the `expected` names and shapes; `optional` entries may be absent
    /// but must have their shape when present.
    pub fn compare(
        expected: &[(String, Vec<usize>)],
        optional: &[(String, Vec<usize>)],
        found: &HashMap<String, Tensor>,
    ) -> Self {
        let mut report = KeyReport::default();
        let mut known = BTreeMap::new();
        for (name, shape) in expected {
            known.insert(name.as_str(), shape);
            match found.get(name) {
                None => report.missing.push(name.clone()),
                Some(t) => report.check_shape(name, shape, t),
            }
        }
        for (name, shape) in optional {
            known.insert(name.as_str(), shape);
            if let Some(t) = found.get(name) {
                report.check_shape(name, shape, t);
            }
        }
        report.unexpected = found
            .keys()
            .filter(|k| !known.contains_key(k.as_str()))
            .cloned()
            .collect();
        report.missing.sort();
        report.unexpected.sort();
        report.shape_mismatches.sort_by(|a, b| a.name.cmp(&b.name));
        report
    }

    fn check_shape(&mut self, name: &str, shape: &[usize], t: &Tensor) {
        if t.dims() != shape {
            self.shape_mismatches.push(ShapeMismatch {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
            });
        }
    }

    /// Whether the tensors match exactly.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.shape_mismatches.is_empty()
    }
}

impl fmt::Display for KeyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!(
                "{} missing [{}]",
                self.missing.len(),
                self.missing.join(", ")
            ));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!(
                "{} unexpected [{}]",
                self.unexpected.len(),
                self.unexpected.join(", ")
            ));
        }
        if !self.shape_mismatches.is_empty() {
            let shapes: Vec<String> = self
                .shape_mismatches
                .iter()
                .map(|m| format!("{}: file {:?}, model {:?}", m.name, m.found, m.expected))
                .collect();
            parts.push(format!(
                "{} shape mismatches [{}]",
                shapes.len(),
                shapes.join("; ")
            ));
        }
        if parts.is_empty() {
            write!(f, "all tensors match")
        } else {
            write!(f, "{}", parts.join("; "))
        }
    }
}

/// Errors of saving and loading weights.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file's tensors do not fit the model.
    #[error(
        "weights file {} does not fit the model: {report}; build the model with the model.net \
         settings the file was written with (see the .hydra/config.yaml of that run)",
        path.display()
    )]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What differs.
        report: KeyReport,
    },
    /// The file could not be read or parsed as safetensors.
    #[error("cannot read weights file {}: {source}; check the path and that it is a .safetensors file", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: candle_core::Error,
    },
    /// The file could not be written.
    #[error("cannot write weights file {}: {message}; check that the directory exists and is writable", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The module has no trainable parameters to load into.
    #[error("cannot load weights into a frozen module; load into the trainable module, or build a frozen one with load_frozen")]
    Frozen,
    /// Building the module failed.
    #[error(transparent)]
    Module(#[from] GenerativeError),
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

/// Reads every tensor of a safetensors file onto `device`.
pub fn read_safetensors(
    path: impl AsRef<Path>,
    device: &Device,
) -> Result<HashMap<String, Tensor>, WeightsError> {
    let path = path.as_ref();
    candle_core::safetensors::load(path, device).map_err(|source| WeightsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes named tensors to a safetensors file (through a temporary file and a rename, so a
/// crash never leaves a half-written file under `path`).
pub fn write_safetensors(
    tensors: &[(String, Tensor)],
    path: impl AsRef<Path>,
) -> Result<(), WeightsError> {
    let path = path.as_ref();
    let write_err = |message: String| WeightsError::Write {
        path: path.to_path_buf(),
        message,
    };
    let mut map = HashMap::with_capacity(tensors.len());
    for (name, t) in tensors {
        map.insert(name.clone(), t.to_device(&Device::Cpu)?.contiguous()?);
    }
    let file_name = path
        .file_name()
        .ok_or_else(|| write_err("the path has no file name".to_string()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    candle_core::safetensors::save(&map, &tmp).map_err(|e| write_err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| write_err(e.to_string()))
}

/// Tensor names with their shapes.
type NamedShapes = Vec<(String, Vec<usize>)>;

/// The names and shapes a module needs: the parameters, and `pos_embed` as optional.
fn expected_shapes(module: &GenerativeModule) -> (NamedShapes, NamedShapes) {
    let weights = module.weight_tensors();
    let expected = module
        .config()
        .net
        .param_names()
        .into_iter()
        .filter_map(|n| weights.get(&n).map(|t| (n.clone(), t.dims().to_vec())))
        .collect();
    let optional = vec![(
        POS_EMBED_NAME.to_string(),
        module.net().pos_embed().dims().to_vec(),
    )];
    (expected, optional)
}

impl GenerativeModule {
    /// Writes the network weights (PyTorch names, `pos_embed` included) to `path`.
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<(), WeightsError> {
        write_safetensors(&self.state_dict(), path)
    }

    /// Compares named tensors with this module's weights without changing anything.
    pub fn check_weights(&self, tensors: &HashMap<String, Tensor>) -> KeyReport {
        let (expected, optional) = expected_shapes(self);
        KeyReport::compare(&expected, &optional, tensors)
    }

    /// Loads `path` into the trainable parameters after a strict check of names and shapes;
    /// on a mismatch nothing changes and the error lists every difference.
    pub fn load_weights(&self, path: impl AsRef<Path>) -> Result<(), WeightsError> {
        let path = path.as_ref();
        let tensors = read_safetensors(path, self.device())?;
        self.load_tensors(&tensors).map_err(|e| match e {
            WeightsError::Mismatch { report, .. } => WeightsError::Mismatch {
                path: path.to_path_buf(),
                report,
            },
            other => other,
        })
    }

    /// Sets the trainable parameters from named tensors after a strict check (see
    /// [`GenerativeModule::load_weights`]); the error's path is empty.
    pub fn load_tensors(&self, tensors: &HashMap<String, Tensor>) -> Result<(), WeightsError> {
        if !self.is_trainable() {
            return Err(WeightsError::Frozen);
        }
        let report = self.check_weights(tensors);
        if !report.is_clean() {
            return Err(WeightsError::Mismatch {
                path: PathBuf::new(),
                report,
            });
        }
        for (name, var) in self.parameters() {
            let t = tensors[&name]
                .to_device(var.device())?
                .to_dtype(DType::F32)?;
            var.set(&t)?;
        }
        Ok(())
    }
}

/// A frozen module for `config` with the weights of `path`, after the same strict check.
pub fn load_frozen(
    config: GenerativeConfig,
    path: impl AsRef<Path>,
    device: &Device,
) -> Result<GenerativeModule, WeightsError> {
    let path = path.as_ref();
    let template = GenerativeModule::from_config(config.clone(), device, &mut Rng::new(0))?;
    let tensors = read_safetensors(path, device)?;
    let report = template.check_weights(&tensors);
    if !report.is_clean() {
        return Err(WeightsError::Mismatch {
            path: path.to_path_buf(),
            report,
        });
    }
    let weights = tensors
        .into_iter()
        .filter(|(n, _)| n != POS_EMBED_NAME)
        .collect();
    Ok(GenerativeModule::frozen(config, weights, device)?)
}

//! `data`: where NAMO scenes come from and how they are loaded (config group `data/`).

use super::check::{at_least_one, ensure, fraction};
use super::de::NodeDe;
use super::target::{Section, Target, Validate};
use super::SchemaError;
use serde::Deserialize;
use std::path::PathBuf;

/// The registry of `data._target_` values.
pub static DATA_TARGETS: &[Target<DataSettings>] = &[
    Target {
        name: "flowrun.data.SyntheticNamo",
        decode: |de| {
            decode_data(de, &["num_scenes", "cache_dir"], |s| {
                Ok(DataSource::SyntheticNamo {
                    num_scenes: s.field("num_scenes")?,
                    cache_dir: s.field("cache_dir")?,
                })
            })
        },
    },
    Target {
        name: "flowrun.data.NamoNpz",
        decode: |de| {
            decode_data(de, &["data_dir"], |s| {
                Ok(DataSource::NamoNpz {
                    data_dir: s.field("data_dir")?,
                })
            })
        },
    },
];

/// The dataset: its source (chosen by `data._target_`) and the loading options all sources share.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSettings {
    /// Where the scenes come from.
    pub source: DataSource,
    /// Side of the square masks, in pixels.
    pub image_size: usize,
    /// Fraction of the scenes held out for validation (when `val_dir` is null).
    pub val_fraction: f64,
    /// A separate folder of validation scenes.
    pub val_dir: Option<PathBuf>,
    /// Background loader threads.
    pub num_workers: usize,
    /// Keep decoded scenes in memory.
    pub cache: bool,
    /// Apply random flips and rotations.
    pub augment: bool,
    /// Use only the first this many scenes.
    pub subset: Option<usize>,
    /// Seed of the split and the augmentations.
    pub seed: u64,
    /// What to do with an unreadable scene file.
    pub on_bad_file: OnBadFile,
}

/// Where the scenes come from.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// `flowrun.data.SyntheticNamo`: scenes generated from the seed, cached on disk.
    SyntheticNamo {
        /// Number of scenes to generate.
        num_scenes: usize,
        /// Where generated scenes are cached.
        cache_dir: PathBuf,
    },
    /// `flowrun.data.NamoNpz`: a folder of `.npz` scenes.
    NamoNpz {
        /// The folder of scenes.
        data_dir: PathBuf,
    },
}

/// What to do with an unreadable scene file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBadFile {
    /// Stop with an error naming the file.
    Error,
    /// Warn once and leave the file out.
    Skip,
}

const COMMON_FIELDS: &[&str] = &[
    "image_size",
    "val_fraction",
    "val_dir",
    "num_workers",
    "cache",
    "augment",
    "subset",
    "seed",
    "on_bad_file",
];

fn decode_data(
    de: NodeDe<'_>,
    source_fields: &[&str],
    source: impl FnOnce(&Section<'_>) -> Result<DataSource, SchemaError>,
) -> Result<DataSettings, SchemaError> {
    let fields: Vec<&str> = source_fields.iter().chain(COMMON_FIELDS).copied().collect();
    let s = Section::open(de, &fields)?;
    let data = DataSettings {
        source: source(&s)?,
        image_size: s.field("image_size")?,
        val_fraction: s.field("val_fraction")?,
        val_dir: s.field("val_dir")?,
        num_workers: s.field("num_workers")?,
        cache: s.field("cache")?,
        augment: s.field("augment")?,
        subset: s.field("subset")?,
        seed: s.field("seed")?,
        on_bad_file: s.field("on_bad_file")?,
    };
    data.validate(s.de())?;
    Ok(data)
}

impl Validate for DataSettings {
    fn validate(&self, at: &NodeDe<'_>) -> Result<(), SchemaError> {
        at_least_one(at, "image_size", self.image_size as u64)?;
        fraction(at, "val_fraction", self.val_fraction, false)?;
        if let Some(n) = self.subset {
            at_least_one(at, "subset", n as u64)?;
        }
        match &self.source {
            DataSource::SyntheticNamo {
                num_scenes,
                cache_dir,
            } => {
                at_least_one(at, "num_scenes", *num_scenes as u64)?;
                non_empty_path(at, "cache_dir", cache_dir)
            }
            DataSource::NamoNpz { data_dir } => non_empty_path(at, "data_dir", data_dir),
        }
    }
}

fn non_empty_path(at: &NodeDe<'_>, key: &str, path: &std::path::Path) -> Result<(), SchemaError> {
    ensure(
        !path.as_os_str().is_empty(),
        at,
        key,
        || "must name a folder, found an empty string".to_string(),
        || format!("set {}=<folder>", at.key_of(key)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::{Map, Node, Value};
    use crate::config::schema::target::decode_target;

    fn npz(extra: &[(&str, Value)]) -> Node {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), Node::builtin(v));
        };
        put("_target_", Value::Str("flowrun.data.NamoNpz".into()));
        put("data_dir", Value::Str("data/namo".into()));
        put("image_size", Value::Int(64));
        put("val_fraction", Value::Float(0.1));
        put("val_dir", Value::Null);
        put("num_workers", Value::Int(2));
        put("cache", Value::Bool(true));
        put("augment", Value::Bool(false));
        put("subset", Value::Null);
        put("seed", Value::Int(42));
        put("on_bad_file", Value::Str("skip".into()));
        for (k, v) in extra {
            put(k, v.clone());
        }
        Node::builtin(Value::Map(m))
    }

    #[test]
    fn npz_folders_decode_with_their_shared_options() {
        let data = decode_target(NodeDe::at(&npz(&[]), "data"), DATA_TARGETS).unwrap();
        assert_eq!(
            data.source,
            DataSource::NamoNpz {
                data_dir: "data/namo".into()
            }
        );
        assert_eq!(data.on_bad_file, OnBadFile::Skip);
        assert_eq!(data.val_dir, None);
    }

    #[test]
    fn synthetic_keys_are_unknown_to_npz_folders_and_fractions_are_checked() {
        let node = npz(&[("num_scenes", Value::Int(5))]);
        let err = decode_target(NodeDe::at(&node, "data"), DATA_TARGETS).unwrap_err();
        assert_eq!(err.key, "data.num_scenes");
        assert!(err.message.starts_with("unknown key 'num_scenes'"), "{err}");
        let node = npz(&[("val_fraction", Value::Float(1.0))]);
        let err = decode_target(NodeDe::at(&node, "data"), DATA_TARGETS).unwrap_err();
        assert_eq!(err.key, "data.val_fraction");
        assert!(err.message.contains("[0, 1)"), "{err}");
        let node = npz(&[("subset", Value::Int(0))]);
        let err = decode_target(NodeDe::at(&node, "data"), DATA_TARGETS).unwrap_err();
        assert_eq!(err.key, "data.subset");
    }
}

//! Closed `_target_` registries, and the reader for sections that hold registry-chosen parts.
//!
//! A section such as `model.path` names its implementation with `_target_`. Instead of serde's
//! internally tagged enums (which buffer the dict and lose every position), the section's
//! `_target_` is read from the node, looked up in a fixed table, and the chosen variant is
//! decoded from the same node with `_target_` hidden.

use super::de::{NodeDe, TARGET_KEY};
use super::error::{did_you_mean, shorten};
use super::SchemaError;
use crate::config::node::{Map, Value};
use serde::de::Visitor;
use serde::{forward_to_deserialize_any, Deserialize, Deserializer};

/// One entry of a closed `_target_` registry: the target's name and how to decode its settings.
pub struct Target<T> {
    /// The `_target_` value that selects this entry (`flowrun.path.AffineProbPath`).
    pub name: &'static str,
    /// Decodes the settings from the section's node (whose `_target_` is hidden).
    pub decode: fn(NodeDe<'_>) -> Result<T, SchemaError>,
}

/// Settings that check their own invariants once decoded.
pub trait Validate {
    /// Checks the settings; `at` is the node they were decoded from, for error positions.
    fn validate(&self, at: &NodeDe<'_>) -> Result<(), SchemaError>;
}

/// Decodes a `T` from the node, then runs its checks.
pub fn decode_checked<'a, T: Deserialize<'a> + Validate>(de: NodeDe<'a>) -> Result<T, SchemaError> {
    let value = T::deserialize(de.clone())?;
    value.validate(&de)?;
    Ok(value)
}

/// The names of a registry's targets, in table order.
pub fn target_names<T>(registry: &[Target<T>]) -> Vec<&'static str> {
    registry.iter().map(|t| t.name).collect()
}

/// Decodes a section by looking its `_target_` up in `registry`.
pub fn decode_target<T>(de: NodeDe<'_>, registry: &[Target<T>]) -> Result<T, SchemaError> {
    let names = target_names(registry);
    let listed = names.join(", ");
    let map = de.map(&format!("a dict with a '_target_' key (one of: {listed})"))?;
    let Some(target) = map.get(TARGET_KEY) else {
        let key = de.key_of(TARGET_KEY);
        return Err(SchemaError::new(
            key.clone(),
            &de.node().origin,
            format!(
                "'{}' has no '_target_' key; available targets: {listed}",
                de.path()
            ),
        )
        .with_hint(format!(
            "add it with +{key}={}",
            names.first().unwrap_or(&"")
        )));
    };
    let target_de = NodeDe::at(target, de.key_of(TARGET_KEY));
    let name = match &target.value {
        Value::Str(name) if !target.value.is_missing() => name,
        _ => return Err(target_de.type_error(&format!("a target name (one of: {listed})"))),
    };
    if let Some(entry) = registry.iter().find(|t| t.name == name) {
        return (entry.decode)(de.skipping_target());
    }
    let mut message = format!("unknown target '{}'.", shorten(name));
    let best = did_you_mean(name, names.iter().copied());
    if let Some(best) = best {
        message.push_str(&format!(" Did you mean '{best}'?"));
    }
    message.push_str(&format!(" Available targets for '{}': {listed}", de.path()));
    let suggestion = best.or(names.first().copied()).unwrap_or("");
    Err(target_de
        .error(message)
        .with_hint(format!("set {}={suggestion}", target_de.path())))
}

/// Reads a dict key by key, for sections that hold registry-chosen subsections (and so cannot
/// derive `Deserialize`); unknown and missing keys are reported as serde's derive would.
pub struct Section<'a> {
    de: NodeDe<'a>,
    map: &'a Map,
}

impl<'a> Section<'a> {
    /// Opens the dict at `de`, rejecting keys outside `fields`.
    pub fn open(de: NodeDe<'a>, fields: &[&str]) -> Result<Self, SchemaError> {
        let map = de.map("a dict")?;
        de.check_keys(map, fields)?;
        Ok(Section { de, map })
    }

    /// The node of the section itself.
    pub fn de(&self) -> &NodeDe<'a> {
        &self.de
    }

    /// The child under `key`, or the missing-key error.
    pub fn child(&self, key: &str) -> Result<NodeDe<'a>, SchemaError> {
        self.map
            .get(key)
            .map(|n| NodeDe::at(n, self.de.key_of(key)))
            .ok_or_else(|| self.de.missing_error(key))
    }

    /// Decodes the key `key` as a `T`; as with serde's derive, an absent key is `None` for an
    /// `Option` and an error for anything else.
    pub fn field<T: Deserialize<'a>>(&self, key: &str) -> Result<T, SchemaError> {
        match self.map.get(key) {
            Some(node) => NodeDe::at(node, self.de.key_of(key)).decode(),
            None => T::deserialize(Absent).map_err(|_| self.de.missing_error(key)),
        }
    }
}

/// Stands for an absent key: `None` to an `Option`, an error to everything else.
struct Absent;

impl<'de> Deserializer<'de> for Absent {
    type Error = SchemaError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, SchemaError> {
        Err(SchemaError::unplaced("absent"))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SchemaError> {
        visitor.visit_none()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::{Node, Origin};

    #[derive(Debug, PartialEq)]
    enum Shape {
        Square(u64),
        Circle(u64),
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Dims {
        size: u64,
    }

    static SHAPES: &[Target<Shape>] = &[
        Target {
            name: "geo.Square",
            decode: |de| Ok(Shape::Square(Dims::deserialize(de)?.size)),
        },
        Target {
            name: "geo.Circle",
            decode: |de| Ok(Shape::Circle(Dims::deserialize(de)?.size)),
        },
    ];

    fn at(line: u32, value: Value) -> Node {
        Node::new(
            value,
            Origin::File {
                path: "shape.yaml".into(),
                line,
                col: 7,
            },
        )
    }

    fn shape(target: Option<Value>, size: Value) -> Node {
        let mut m = Map::new();
        if let Some(t) = target {
            m.insert(TARGET_KEY.into(), at(1, t));
        }
        m.insert("size".into(), at(2, size));
        at(1, Value::Map(m))
    }

    #[test]
    fn the_target_selects_the_variant_and_is_hidden_from_it() {
        let node = shape(Some(Value::Str("geo.Circle".into())), Value::Int(3));
        let got = decode_target(NodeDe::at(&node, "shape"), SHAPES).unwrap();
        assert_eq!(got, Shape::Circle(3));
    }

    #[test]
    fn unknown_missing_and_mistyped_targets_list_the_available_ones() {
        let node = shape(Some(Value::Str("geo.Sqare".into())), Value::Int(3));
        let err = decode_target(NodeDe::at(&node, "shape"), SHAPES).unwrap_err();
        assert_eq!(err.key, "shape._target_");
        assert_eq!(err.origin, "shape.yaml:1:7");
        assert!(err.message.contains("Did you mean 'geo.Square'?"), "{err}");
        assert!(err.message.contains("geo.Square, geo.Circle"), "{err}");
        assert_eq!(err.hint(), Some("set shape._target_=geo.Square"));

        let node = shape(None, Value::Int(3));
        let err = decode_target(NodeDe::at(&node, "shape"), SHAPES).unwrap_err();
        assert_eq!(err.key, "shape._target_");
        assert!(err.message.contains("no '_target_' key"), "{err}");

        let node = shape(Some(Value::Int(1)), Value::Int(3));
        let err = decode_target(NodeDe::at(&node, "shape"), SHAPES).unwrap_err();
        assert!(err.message.starts_with("expected a target name"), "{err}");
    }

    #[test]
    fn errors_inside_the_variant_keep_their_key() {
        let node = shape(Some(Value::Str("geo.Square".into())), Value::Int(-2));
        let err = decode_target(NodeDe::at(&node, "shape"), SHAPES).unwrap_err();
        assert_eq!(err.key, "shape.size");
        assert_eq!(err.origin, "shape.yaml:2:7");
        assert!(err.message.contains("-2"), "{err}");
    }

    #[test]
    fn sections_report_missing_keys_with_how_to_add_them() {
        let node = shape(None, Value::Int(1));
        let section = Section::open(NodeDe::at(&node, "shape"), &["size", "color"]).unwrap();
        assert_eq!(section.field::<u64>("size").unwrap(), 1);
        assert_eq!(section.field::<Option<String>>("color").unwrap(), None);
        let err = section.field::<String>("color").unwrap_err();
        assert_eq!(err.key, "shape.color");
        assert!(err.hint().unwrap().contains("+shape.color=VALUE"));
        let err = Section::open(NodeDe::at(&node, "shape"), &["color"])
            .err()
            .unwrap();
        assert!(err.message.starts_with("unknown key 'size'"), "{err}");
    }
}

//! A serde [`Deserializer`] over a resolved config [`Node`] that reports every error at the
//! deepest key involved, with the file and line it came from.
//!
//! Conventions: null is `None`; integers are accepted where floats are expected (YAML users write
//! `1` for `1.0`), as are strings that spell a number (YAML 1.1 reads `1e-4` as a string); unit
//! enums are read from strings; unknown keys (of every struct, as under
//! `#[serde(deny_unknown_fields)]`) and unknown enum values are rejected with a did-you-mean.

use super::access::{MapDe, SeqDe, UnitVariant};
use super::error::{
    describe_value, did_you_mean, join_key, missing_hint, short_value, unknown_message,
};
use super::SchemaError;
use crate::config::node::{Map, Node, Value};
use serde::de::{Deserializer, IntoDeserializer, Visitor};
use serde::Deserialize;

/// The key under which Hydra names the class a config section instantiates.
pub const TARGET_KEY: &str = "_target_";

/// A deserializer for one config node, knowing its dotted key for error messages.
#[derive(Clone, Debug)]
pub struct NodeDe<'a> {
    node: &'a Node,
    path: String,
    skip_target: bool,
}

impl<'a> NodeDe<'a> {
    /// A deserializer for the root of a config.
    pub fn root(node: &'a Node) -> Self {
        NodeDe::at(node, String::new())
    }

    /// A deserializer for a node found at the dotted key `path`.
    pub fn at(node: &'a Node, path: impl Into<String>) -> Self {
        NodeDe {
            node,
            path: path.into(),
            skip_target: false,
        }
    }

    /// The same node with its `_target_` key hidden (it was read by a registry lookup).
    pub fn skipping_target(mut self) -> Self {
        self.skip_target = true;
        self
    }

    /// The node being read.
    pub fn node(&self) -> &'a Node {
        self.node
    }

    /// The dotted key of the node (empty at the root).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The dotted key of a key under this node.
    pub fn key_of(&self, key: &str) -> String {
        join_key(&self.path, key)
    }

    /// Decodes a `T` from this node.
    pub fn decode<T: Deserialize<'a>>(self) -> Result<T, SchemaError> {
        T::deserialize(self)
    }

    /// An error about this node.
    pub fn error(&self, message: impl Into<String>) -> SchemaError {
        SchemaError::new(self.path.clone(), &self.node.origin, message)
    }

    /// An error about the (possibly dotted) key `key` below this node, placed at the origin of
    /// that key if it exists and of this node otherwise.
    pub fn error_at(&self, key: &str, message: impl Into<String>) -> SchemaError {
        let origin = &self.node.select(key).unwrap_or(self.node).origin;
        SchemaError::new(self.key_of(key), origin, message)
    }

    /// An error for a required key that this dict lacks.
    pub fn missing_error(&self, key: &str) -> SchemaError {
        SchemaError::new(
            self.key_of(key),
            &self.node.origin,
            format!("missing required key '{key}'"),
        )
        .with_hint(missing_hint(&self.key_of(key)))
    }

    /// The "expected X, found Y" error for this node (or the "not set" error for `???`).
    pub fn type_error(&self, expected: &str) -> SchemaError {
        if self.node.value.is_missing() {
            return self
                .error("is mandatory ('???') but was never given a value")
                .with_hint(format!("set it with {}=VALUE", self.path));
        }
        let err = self.error(format!(
            "expected {expected}, found {}",
            describe_value(&self.node.value)
        ));
        match &self.node.value {
            Value::Str(s) if expected.contains("integer") && s.trim().parse::<i64>().is_ok() => err
                .with_hint(format!(
                    "write the number without quotes: {}={}",
                    self.path,
                    s.trim()
                )),
            _ => err,
        }
    }

    /// The dict under this node, or the type error naming `expected`.
    pub fn map(&self, expected: &str) -> Result<&'a Map, SchemaError> {
        match &self.node.value {
            Value::Map(map) => Ok(map),
            _ => Err(self.type_error(expected)),
        }
    }

    /// Rejects keys of this dict that are not in `fields` (and not a hidden `_target_`).
    pub fn check_keys(&self, map: &Map, fields: &[&str]) -> Result<(), SchemaError> {
        for (key, child) in map {
            if (self.skip_target && key == TARGET_KEY) || fields.contains(&key.as_str()) {
                continue;
            }
            let full = self.key_of(key);
            let mut err = SchemaError::new(
                full.clone(),
                &child.origin,
                unknown_message("key", key, fields),
            );
            err = match did_you_mean(key, fields.iter().copied()) {
                Some(best) => err.with_hint(format!(
                    "rename '{key}' to '{best}' (on the command line: {}={})",
                    self.key_of(best),
                    short_value(&child.value)
                )),
                None => err.with_hint(format!(
                    "remove it (on the command line: ~{full}) or use one of the valid keys"
                )),
            };
            return Err(err);
        }
        Ok(())
    }

    /// Places an error that no deeper node has placed on this node.
    pub(super) fn place<T>(&self, result: Result<T, SchemaError>) -> Result<T, SchemaError> {
        result.map_err(|e| e.place(&self.path, &self.node.origin))
    }

    fn int_in(&self, lo: i128, hi: i128, expected: &str) -> Result<i128, SchemaError> {
        let Value::Int(i) = self.node.value else {
            return Err(self.type_error(expected));
        };
        let v = i128::from(i);
        if v < 0 && lo == 0 {
            return Err(self.error(format!(
                "expected {expected}, found the negative integer {i}"
            )));
        }
        if v < lo || v > hi {
            return Err(self.error(format!("expected an integer from {lo} to {hi}, found {i}")));
        }
        Ok(v)
    }

    fn float(&self) -> Result<f64, SchemaError> {
        match &self.node.value {
            Value::Float(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            Value::Str(s) if !self.node.value.is_missing() => {
                parse_number(s).ok_or_else(|| self.type_error(NUMBER))
            }
            _ => Err(self.type_error(NUMBER)),
        }
    }

    fn str(&self, expected: &str) -> Result<&'a str, SchemaError> {
        match &self.node.value {
            Value::Str(s) if !self.node.value.is_missing() => Ok(s),
            _ => Err(self.type_error(expected)),
        }
    }

    fn list(&self, expected: &str) -> Result<&'a [Node], SchemaError> {
        match &self.node.value {
            Value::List(items) => Ok(items),
            _ => Err(self.type_error(expected)),
        }
    }

    fn visit_list<V: Visitor<'a>>(
        &self,
        items: &'a [Node],
        visitor: V,
    ) -> Result<V::Value, SchemaError> {
        let mut seq = SeqDe::new(items, &self.path);
        let value = visitor.visit_seq(&mut seq)?;
        let (read, left) = seq.counts();
        if left > 0 {
            return Err(self.error(format!(
                "expected a list of {read} items, found {} items",
                read + left
            )));
        }
        Ok(value)
    }

    fn visit_dict<V: Visitor<'a>>(
        &self,
        map: &'a Map,
        visitor: V,
    ) -> Result<V::Value, SchemaError> {
        visitor.visit_map(MapDe::new(map, &self.path, self.skip_target))
    }

    fn any<V: Visitor<'a>>(&self, visitor: V) -> Result<V::Value, SchemaError> {
        match &self.node.value {
            _ if self.node.value.is_missing() => Err(self.type_error("a value")),
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::List(items) => self.visit_list(items, visitor),
            Value::Map(map) => self.visit_dict(map, visitor),
        }
    }

    fn bool<V: Visitor<'a>>(&self, visitor: V) -> Result<V::Value, SchemaError> {
        match self.node.value {
            Value::Bool(b) => visitor.visit_bool(b),
            _ => Err(self.type_error("a boolean (true or false)")),
        }
    }

    fn option<V: Visitor<'a>>(&self, visitor: V) -> Result<V::Value, SchemaError> {
        match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self.clone()),
        }
    }

    fn unit<V: Visitor<'a>>(&self, visitor: V) -> Result<V::Value, SchemaError> {
        match self.node.value {
            Value::Null => visitor.visit_unit(),
            _ => Err(self.type_error("null")),
        }
    }

    fn struct_<V: Visitor<'a>>(
        &self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, SchemaError> {
        let map = self.map("a dict")?;
        self.check_keys(map, fields)?;
        self.visit_dict(map, visitor)
    }

    fn enum_<V: Visitor<'a>>(
        &self,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, SchemaError> {
        let expected = format!("one of: {}", variants.join(", "));
        let name = self.str(&expected)?;
        if !variants.contains(&name) {
            let mut err = self.error(unknown_message("value", name, variants));
            if let Some(best) = did_you_mean(name, variants.iter().copied()) {
                err = err.with_hint(format!("did you mean {}={best}?", self.path));
            }
            return Err(err);
        }
        visitor.visit_enum(UnitVariant::new(name))
    }
}

const NUMBER: &str = "a number";

/// A string that spells a finite or infinite number (`1e-4`, `0.5`), but not a bare `nan`/`inf`.
fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if !t.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<f64>().ok()
}

macro_rules! placed {
    ($($method:ident => $inner:ident;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SchemaError> {
                let result = self.$inner(visitor);
                self.place(result)
            }
        )*
    };
}

macro_rules! integer {
    ($($method:ident, $visit:ident, $ty:ty, $expected:expr;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SchemaError> {
                let result = self
                    .int_in(i128::from(<$ty>::MIN), i128::from(<$ty>::MAX), $expected)
                    .and_then(|v| match <$ty>::try_from(v) {
                        Ok(v) => visitor.$visit(v),
                        Err(_) => Err(self.type_error($expected)),
                    });
                self.place(result)
            }
        )*
    };
}

const UINT: &str = "an unsigned integer";
const INT: &str = "an integer";

impl<'de> Deserializer<'de> for NodeDe<'de> {
    type Error = SchemaError;

    placed! {
        deserialize_any => any;
        deserialize_bool => bool;
        deserialize_option => option;
        deserialize_unit => unit;
    }

    integer! {
        deserialize_i8, visit_i8, i8, INT;
        deserialize_i16, visit_i16, i16, INT;
        deserialize_i32, visit_i32, i32, INT;
        deserialize_i64, visit_i64, i64, INT;
        deserialize_i128, visit_i128, i128, INT;
        deserialize_u8, visit_u8, u8, UINT;
        deserialize_u16, visit_u16, u16, UINT;
        deserialize_u32, visit_u32, u32, UINT;
        deserialize_u64, visit_u64, u64, UINT;
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SchemaError> {
        let result = self
            .int_in(0, i128::MAX, UINT)
            .and_then(|v| visitor.visit_u128(v.unsigned_abs()));
        self.place(result)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SchemaError> {
        let result = self.float().and_then(|f| {
            if f.is_finite() && f.abs() > f64::from(f32::MAX) {
                Err(self.error(format!(
                    "expected a 32-bit float, found {f:?}, which is too large"
                )))
            } else {
                visitor.visit_f32(f as f32)
            }
        });
        self.place(result)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SchemaError> {
        let result = self.float().and_then(|f| visitor.visit_f64(f));
        self.place(result)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SchemaError> {
        let expected = "a single character";
        let result = self.str(expected).and_then(|s| {
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => visitor.visit_char(c),
                _ => Err(self.type_error(expected)),
            }
        });
        self.place(result)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SchemaError> {
        let result = self
            .str("a string")
            .and_then(|s| visitor.visit_borrowed_str(s));
        self.place(result)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SchemaError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SchemaError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SchemaError> {
        let result = self
            .str("a string")
            .and_then(|s| visitor.visit_borrowed_bytes(s.as_bytes()));
        self.place(result)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SchemaError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, SchemaError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, SchemaError> {
        let result = visitor.visit_newtype_struct(self.clone());
        self.place(result)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SchemaError> {
        let result = self
            .list("a list")
            .and_then(|items| self.visit_list(items, visitor));
        self.place(result)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, SchemaError> {
        let expected = format!("a list of {len} items");
        let result = self.list(&expected).and_then(|items| {
            if items.len() == len {
                self.visit_list(items, visitor)
            } else {
                Err(self.type_error(&expected))
            }
        });
        self.place(result)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, SchemaError> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SchemaError> {
        let result = self
            .map("a dict")
            .and_then(|map| self.visit_dict(map, visitor));
        self.place(result)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, SchemaError> {
        let result = self.struct_(fields, visitor);
        self.place(result)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, SchemaError> {
        let result = self.enum_(variants, visitor);
        self.place(result)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SchemaError> {
        visitor.visit_unit()
    }
}

impl<'de> IntoDeserializer<'de, SchemaError> for NodeDe<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::Origin;
    use std::collections::BTreeMap;

    fn node(value: Value) -> Node {
        Node::new(value, Origin::Override("k=v".into()))
    }

    fn get<T: for<'a> Deserialize<'a>>(value: Value) -> Result<T, SchemaError> {
        NodeDe::at(&node(value), "sec.k").decode()
    }

    #[test]
    fn integers_are_range_checked_and_the_value_is_named() {
        assert_eq!(get::<u8>(Value::Int(255)).unwrap(), 255);
        let err = get::<u8>(Value::Int(300)).unwrap_err();
        assert_eq!(err.message, "expected an integer from 0 to 255, found 300");
        let err = get::<usize>(Value::Int(-1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sec.k: expected an unsigned integer, found the negative integer -1 \
             (at command-line override 'k=v')"
        );
        assert_eq!(get::<i64>(Value::Int(i64::MIN)).unwrap(), i64::MIN);
        assert_eq!(get::<u128>(Value::Int(7)).unwrap(), 7);
        assert!(get::<i8>(Value::Int(-129)).is_err());
        let err = get::<u32>(Value::Float(1.5)).unwrap_err();
        assert_eq!(
            err.message,
            "expected an unsigned integer, found the float 1.5"
        );
    }

    #[test]
    fn floats_accept_integers_and_numeric_strings_only() {
        assert_eq!(get::<f64>(Value::Int(1)).unwrap(), 1.0);
        assert_eq!(get::<f64>(Value::Str("1e-4".into())).unwrap(), 1e-4);
        assert_eq!(get::<f32>(Value::Float(0.5)).unwrap(), 0.5);
        assert!(get::<f32>(Value::Float(1e300)).is_err());
        for bad in ["nan", "abc", ""] {
            let err = get::<f64>(Value::Str(bad.into())).unwrap_err();
            assert!(err.message.starts_with("expected a number"), "{err}");
        }
        assert!(get::<f64>(Value::Bool(true)).is_err());
    }

    #[test]
    fn strings_bools_chars_and_nulls_are_strict() {
        let err = get::<String>(Value::Int(5)).unwrap_err();
        assert_eq!(err.message, "expected a string, found the integer 5");
        assert!(get::<bool>(Value::Str("true".into())).is_err());
        assert_eq!(get::<char>(Value::Str("x".into())).unwrap(), 'x');
        assert!(get::<char>(Value::Str("xy".into())).is_err());
        assert_eq!(get::<Option<u8>>(Value::Null).unwrap(), None);
        assert_eq!(get::<Option<u8>>(Value::Int(3)).unwrap(), Some(3));
        get::<()>(Value::Null).unwrap();
        let err = get::<u8>(Value::Str("???".into())).unwrap_err();
        assert_eq!(err.hint(), Some("set it with sec.k=VALUE"));
    }

    #[test]
    fn list_and_dict_errors_carry_the_item_key() {
        let list = |items: Vec<Value>| Value::List(items.into_iter().map(node).collect());
        assert_eq!(
            get::<Vec<u32>>(list(vec![Value::Int(1), Value::Int(2)])).unwrap(),
            vec![1, 2]
        );
        let err = get::<Vec<u32>>(list(vec![Value::Int(1), Value::Str("x".into())])).unwrap_err();
        assert_eq!(err.key, "sec.k[1]");
        let err = get::<(u8, u8)>(list(vec![Value::Int(1)])).unwrap_err();
        assert_eq!(
            err.message,
            "expected a list of 2 items, found a list of 1 item"
        );
        let mut map = Map::new();
        map.insert("a".into(), node(Value::Int(1)));
        map.insert("b".into(), node(Value::Bool(false)));
        let err = get::<BTreeMap<String, u8>>(Value::Map(map.clone())).unwrap_err();
        assert_eq!(err.key, "sec.k.b");
        get::<serde::de::IgnoredAny>(Value::Map(map)).unwrap();
    }

    #[test]
    fn any_feeds_untagged_values() {
        #[derive(Debug, PartialEq, Deserialize)]
        #[serde(untagged)]
        enum Either {
            Int(i64),
            Text(String),
        }
        assert_eq!(get::<Either>(Value::Int(3)).unwrap(), Either::Int(3));
        assert_eq!(
            get::<Either>(Value::Str("x".into())).unwrap(),
            Either::Text("x".into())
        );
        assert!(get::<Either>(Value::Str("???".into())).is_err());
    }

    #[test]
    fn unit_enums_come_from_strings() {
        #[derive(Debug, PartialEq, Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Mode {
            FastPath,
            Slow,
        }
        assert_eq!(
            get::<Mode>(Value::Str("fast_path".into())).unwrap(),
            Mode::FastPath
        );
        let err = get::<Mode>(Value::Str("fastpath".into())).unwrap_err();
        assert_eq!(
            err.message,
            "unknown value 'fastpath'. Did you mean 'fast_path'? Valid values: fast_path, slow"
        );
        let err = get::<Mode>(Value::Int(1)).unwrap_err();
        assert_eq!(
            err.message,
            "expected one of: fast_path, slow, found the integer 1"
        );
    }
}

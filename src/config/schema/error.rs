//! The schema's error type and the helpers that phrase its messages (value descriptions,
//! did-you-mean suggestions).

use crate::config::node::{Origin, Value};
pub(crate) use crate::config::suggest::did_you_mean;
use serde::de::{Expected, Unexpected};
use std::fmt;

/// A resolved config that does not fit the typed settings: where, what, and what to type instead.
///
/// Errors raised inside serde code are created "unplaced" (empty `origin`, `key` relative to the
/// node that will receive them) and placed by the deepest [`NodeDe`](super::NodeDe) they pass
/// through; every error returned by this module is placed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message} (at {origin})", shown_key(key))]
pub struct SchemaError {
    /// The dotted key of the deepest config node involved (`model.net.hidden_size`).
    pub key: String,
    /// Where that node was defined: `file:line:col`, a command-line override or a built-in.
    pub origin: String,
    /// What is wrong.
    pub message: String,
    /// What to type instead, when there is a clear fix.
    pub hint: Option<String>,
}

fn shown_key(key: &str) -> &str {
    if key.is_empty() {
        "(config root)"
    } else {
        key
    }
}

impl SchemaError {
    /// An error at `key`, defined at `origin`.
    pub fn new(key: impl Into<String>, origin: &Origin, message: impl Into<String>) -> Self {
        SchemaError {
            key: key.into(),
            origin: origin.to_string(),
            message: message.into(),
            hint: None,
        }
    }

    /// The same error with a hint saying what to type instead.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The suggested fix, if the error carries one.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// An error raised below any node, to be placed by the deserializer that receives it.
    pub(crate) fn unplaced(message: impl Into<String>) -> Self {
        SchemaError {
            key: String::new(),
            origin: String::new(),
            message: message.into(),
            hint: None,
        }
    }

    /// Places a not yet placed error on the node at `path` (a placed one is returned unchanged).
    ///
    /// An unplaced error with a (relative) key is a required key missing from that node.
    pub(crate) fn place(mut self, path: &str, origin: &Origin) -> Self {
        if !self.origin.is_empty() {
            return self;
        }
        self.origin = origin.to_string();
        if self.key.is_empty() {
            self.key = path.to_string();
        } else {
            self.key = join_key(path, &self.key);
            if self.hint.is_none() {
                self.hint = Some(missing_hint(&self.key));
            }
        }
        self
    }
}

impl serde::de::Error for SchemaError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        SchemaError::unplaced(msg.to_string())
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        SchemaError::unplaced(format!(
            "expected {exp}, found {}",
            describe_unexpected(&unexp)
        ))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        SchemaError::unplaced(format!(
            "invalid value {}: expected {exp}",
            describe_unexpected(&unexp)
        ))
    }

    fn invalid_length(len: usize, exp: &dyn Expected) -> Self {
        SchemaError::unplaced(format!("expected {exp}, found {}", count_items(len)))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        SchemaError::unplaced(unknown_message("value", variant, expected))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        SchemaError::unplaced(unknown_message("key", field, expected))
    }

    fn missing_field(field: &'static str) -> Self {
        SchemaError {
            key: field.to_string(),
            ..SchemaError::unplaced(format!("missing required key '{field}'"))
        }
    }

    fn duplicate_field(field: &'static str) -> Self {
        SchemaError::unplaced(format!("key '{field}' is given twice"))
    }
}

/// `parent.key`, or `key` at the root.
pub(crate) fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The hint for a required key that is absent.
pub(crate) fn missing_hint(key: &str) -> String {
    format!("add it on the command line with +{key}=VALUE, or write it in the config file")
}

/// `unknown {what} 'word'. Did you mean 'x'? Valid {what}s: a, b, c`.
pub(crate) fn unknown_message(what: &str, word: &str, valid: &[&str]) -> String {
    let mut text = format!("unknown {what} '{}'.", shorten(word));
    if let Some(best) = did_you_mean(word, valid.iter().copied()) {
        text.push_str(&format!(" Did you mean '{best}'?"));
    }
    text.push_str(&format!(" Valid {what}s: {}", valid.join(", ")));
    text
}

/// A config value as an error message names it: `the string "abc"`, `the integer -3`, `null`.
pub(crate) fn describe_value(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Int(i) => format!("the integer {i}"),
        Value::Float(f) => format!("the float {f:?}"),
        Value::Str(s) => format!("the string {}", quote(s)),
        Value::List(items) if items.is_empty() => "an empty list".to_string(),
        Value::List(items) => format!("a list of {}", count_items(items.len())),
        Value::Map(map) if map.is_empty() => "an empty dict".to_string(),
        Value::Map(map) => {
            let keys: Vec<&str> = map.keys().take(5).map(String::as_str).collect();
            let more = if map.len() > 5 { ", ..." } else { "" };
            format!("a dict with keys {}{more}", keys.join(", "))
        }
    }
}

/// A scalar as it would be typed in an override, or `VALUE` for lists and dicts.
pub(crate) fn short_value(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Str(s) if s.len() <= 40 && !s.contains([' ', ',', '=', '\'', '"']) => s.clone(),
        _ => "VALUE".to_string(),
    }
}

/// `1 item`, `3 items`.
pub(crate) fn count_items(n: usize) -> String {
    if n == 1 {
        "1 item".to_string()
    } else {
        format!("{n} items")
    }
}

const SHORT: usize = 60;

/// A string in double quotes with escapes, cut to 60 characters.
pub(crate) fn quote(s: &str) -> String {
    if s.chars().count() <= SHORT {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(SHORT).collect();
        format!("{head:?}...")
    }
}

/// A name as typed, cut to 60 characters (for single-quoted keys and values).
pub(crate) fn shorten(s: &str) -> String {
    if s.chars().count() <= SHORT {
        s.to_string()
    } else {
        let head: String = s.chars().take(SHORT).collect();
        format!("{head}...")
    }
}

fn describe_unexpected(unexp: &Unexpected<'_>) -> String {
    match unexp {
        Unexpected::Bool(b) => format!("the boolean {b}"),
        Unexpected::Unsigned(u) => format!("the integer {u}"),
        Unexpected::Signed(i) => format!("the integer {i}"),
        Unexpected::Float(f) => format!("the float {f:?}"),
        Unexpected::Char(c) => format!("the string {}", quote(&c.to_string())),
        Unexpected::Str(s) => format!("the string {}", quote(s)),
        Unexpected::Unit | Unexpected::Option => "null".to_string(),
        Unexpected::Seq => "a list".to_string(),
        Unexpected::Map => "a dict".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::Error as _;

    #[test]
    fn values_are_described_with_their_type() {
        assert_eq!(
            describe_value(&Value::Str("abc".into())),
            "the string \"abc\""
        );
        assert_eq!(describe_value(&Value::Int(-3)), "the integer -3");
        assert_eq!(describe_value(&Value::Float(1e-5)), "the float 1e-5");
        assert_eq!(describe_value(&Value::List(Vec::new())), "an empty list");
        let long = "é".repeat(100);
        assert!(describe_value(&Value::Str(long)).ends_with("\"..."));
    }

    #[test]
    fn missing_fields_are_placed_under_their_dict() {
        let origin = Origin::Override("x=1".into());
        let err = SchemaError::missing_field("depth").place("model.net", &origin);
        assert_eq!(err.key, "model.net.depth");
        assert_eq!(err.message, "missing required key 'depth'");
        assert!(err.hint().unwrap().contains("+model.net.depth=VALUE"));
        let again = err.clone().place("elsewhere", &Origin::BuiltIn);
        assert_eq!(again, err);
        let root = SchemaError::unplaced("bad").place("", &Origin::BuiltIn);
        assert_eq!(root.to_string(), "(config root): bad (at built-in default)");
    }
}

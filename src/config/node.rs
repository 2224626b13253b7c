//! The ordered, provenance-carrying config tree that every composition stage works on.
//!
//! A config is a tree of [`Node`]s. Each node holds a [`Value`] and the [`Origin`] it came
//! from (a file and line, a command-line override, or a built-in default), so that errors
//! found late (a wrong type in the typed schema, say) can still name the file and line.
//!
//! OmegaConf conventions kept here:
//! * the string `???` is a *missing* value (see [`Value::is_missing`]);
//! * a string containing an unescaped `${` is an interpolation, resolved by `interpolate`.

use indexmap::IndexMap;
use std::fmt;
use std::sync::Arc;

/// The ordered map type of config dictionaries (insertion order is merge order, as in OmegaConf).
pub type Map = IndexMap<String, Node>;

/// The OmegaConf marker for a mandatory value that has not been given yet.
pub const MISSING: &str = "???";

/// Where a config value came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Origin {
    /// Read from a YAML file, at a 1-based line and column.
    File {
        /// The config path as shown to users (e.g. `model/dit.yaml` or an absolute path).
        path: Arc<str>,
        /// 1-based line number.
        line: u32,
        /// 1-based column number.
        col: u32,
    },
    /// Set by a command-line override (the override text as typed).
    Override(Arc<str>),
    /// Created by flowrun itself (built-in defaults, runtime values).
    #[default]
    BuiltIn,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line, col } => write!(f, "{path}:{line}:{col}"),
            Origin::Override(text) => write!(f, "command-line override '{text}'"),
            Origin::BuiltIn => write!(f, "built-in default"),
        }
    }
}

/// A config value: a scalar, a list or an ordered dictionary.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// YAML null / Python None.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float (may be inf or nan).
    Float(f64),
    /// A string; `???` means missing and `${...}` marks an interpolation.
    Str(String),
    /// A list of nodes.
    List(Vec<Node>),
    /// An ordered dictionary.
    Map(Map),
}

impl Value {
    /// True when this is OmegaConf's missing marker `???`.
    pub fn is_missing(&self) -> bool {
        matches!(self, Value::Str(s) if s == MISSING)
    }

    /// True when this is a string holding an (unescaped) interpolation.
    pub fn is_interpolation(&self) -> bool {
        matches!(self, Value::Str(s) if has_interpolation(s))
    }

    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Map(_) => "dict",
        }
    }

    /// The map, if this value is one.
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The string, if this value is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// True when `s` contains an interpolation start `${` that is not escaped as `\${`.
pub fn has_interpolation(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'\\' && bytes[i + 1] == b'$' {
            i += 2;
            continue;
        }
        if bytes[i] == b'$' && bytes[i + 1] == b'{' {
            return true;
        }
        i += 1;
    }
    false
}

/// A config value together with where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where the value was defined.
    pub origin: Origin,
}

impl Node {
    /// A node with the given value and origin.
    pub fn new(value: Value, origin: Origin) -> Self {
        Node { value, origin }
    }

    /// A node created by flowrun itself.
    pub fn builtin(value: Value) -> Self {
        Node::new(value, Origin::BuiltIn)
    }

    /// An empty dictionary node.
    pub fn empty_map(origin: Origin) -> Self {
        Node::new(Value::Map(Map::new()), origin)
    }

    /// Follows a dotted key path (`a.b.0.c`) through maps and lists.
    pub fn select(&self, dotted: &str) -> Option<&Node> {
        if dotted.is_empty() {
            return Some(self);
        }
        let mut cur = self;
        for part in dotted.split('.') {
            cur = cur.child(part)?;
        }
        Some(cur)
    }

    /// Follows a dotted key path, mutably.
    pub fn select_mut(&mut self, dotted: &str) -> Option<&mut Node> {
        if dotted.is_empty() {
            return Some(self);
        }
        let mut cur = self;
        for part in dotted.split('.') {
            cur = cur.child_mut(part)?;
        }
        Some(cur)
    }

    /// The child under one key (a map key, or a list index written as digits).
    pub fn child(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(m) => m.get(key),
            Value::List(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
    }

    /// The child under one key, mutably.
    pub fn child_mut(&mut self, key: &str) -> Option<&mut Node> {
        match &mut self.value {
            Value::Map(m) => m.get_mut(key),
            Value::List(items) => key
                .parse::<usize>()
                .ok()
                .and_then(move |i| items.get_mut(i)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_detection_respects_escapes() {
        assert!(has_interpolation("${a}"));
        assert!(has_interpolation("x_${a.b}_y"));
        assert!(!has_interpolation("\\${a}"));
        assert!(!has_interpolation("$x"));
        assert!(has_interpolation("\\${a}_${b}"));
    }

    #[test]
    fn select_walks_maps_and_lists() {
        let mut inner = Map::new();
        inner.insert(
            "b".into(),
            Node::builtin(Value::List(vec![Node::builtin(Value::Int(7))])),
        );
        let mut root = Map::new();
        root.insert("a".into(), Node::builtin(Value::Map(inner)));
        let root = Node::builtin(Value::Map(root));
        assert_eq!(root.select("a.b.0").unwrap().value, Value::Int(7));
        assert!(root.select("a.c").is_none());
        assert!(root.select("a.b.3").is_none());
    }
}

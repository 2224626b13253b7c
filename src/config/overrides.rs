//! Parser for Hydra's command-line override grammar (`key=value`, `+key=v`, `~key`, sweeps).
//!
//! It follows Hydra 1.3's `OverrideLexer.g4` / `OverrideParser.g4` and `OverridesVisitor`:
//! * `lexer`: a key-mode lexer up to the first `=`, then a value-mode lexer whose tokens are
//!   chosen by longest match, ties going to the rule listed first (as in ANTLR);
//! * `parser`: recursive descent over those tokens, typing primitives as Hydra does;
//! * `functions`: `choice`, `range`, `glob`, `interval`, casts, `sort`, `shuffle`, `extend_list`;
//! * `sweep`: expanding sweeps into values for the basic sweeper.
//!
//! One deliberate extension: an unquoted `${...}` may nest braces (`${oc.env:A,${b}}`).

use std::fmt;

mod functions;
mod lexer;
mod parser;
mod sweep;
#[cfg(test)]
mod tests;

use super::node::{Node, Origin, Value};
use super::pyfmt::float_repr;

/// What an override does to the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverrideKind {
    /// `key=value`: change an existing value or group choice.
    Change,
    /// `+key=value`: add a key or group that is not there yet.
    Add,
    /// `++key=value`: add the key, or change it if it exists.
    ForceAdd,
    /// `~key` or `~key=value`: delete a key or group.
    Delete,
    /// `key=extend_list(a,b)`: append to an existing list.
    ExtendList,
}

/// A parsed value: a primitive, a list or a dictionary.
#[derive(Clone, Debug, PartialEq)]
pub enum Element {
    /// `null` (any case).
    Null,
    /// `true` / `false` (any case).
    Bool(bool),
    /// An integer such as `7`, `-3` or `1_000`.
    Int(i64),
    /// A float such as `1e-4`, `.5`, `5.` or `inf`.
    Float(f64),
    /// A string, unquoted and unescaped.
    Str {
        /// The text of the string.
        text: String,
        /// True when it was written in quotes (`'a b'`).
        quoted: bool,
    },
    /// A list `[a,b]`.
    List(Vec<Element>),
    /// A dictionary `{k:v}`, in written order.
    Dict(Vec<(String, Element)>),
}

/// A bound or step of a `range()` sweep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
}

/// A sweep over several values of one key (used with `--multirun`).
#[derive(Clone, Debug, PartialEq)]
pub enum Sweep {
    /// `a,b,c` or `choice(a,b,c)`.
    Choice(Vec<Element>),
    /// `range(start,stop,step)` with Python semantics (`stop` excluded).
    Range {
        /// The first value.
        start: Number,
        /// The bound that is never reached.
        stop: Number,
        /// The distance between values (never zero).
        step: Number,
    },
    /// `glob(include,exclude)`: the config group options matching shell-style patterns.
    Glob {
        /// Patterns an option must match.
        include: Vec<String>,
        /// Patterns an option must not match.
        exclude: Vec<String>,
    },
    /// `interval(start,end)`: a continuous range, only meaningful to optimizer sweepers.
    Interval(f64, f64),
}

/// The right-hand side of an override.
#[derive(Clone, Debug, PartialEq)]
pub enum OverrideValue {
    /// No `=` at all (`~key`).
    Absent,
    /// One value (`key=` gives the empty string).
    Element(Element),
    /// Several values to sweep over.
    Sweep(Sweep),
}

/// One parsed command-line override.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// What the override does.
    pub kind: OverrideKind,
    /// The config key or group, e.g. `model.lr`, `hydra/launcher` or `path`.
    pub key: String,
    /// The package after `@`, if any (`Some("")` for `group@=x`).
    pub package: Option<String>,
    /// The value after `=`.
    pub value: OverrideValue,
    /// The override exactly as typed.
    pub input: String,
}

/// A command-line override that does not follow the grammar, or a sweep that cannot expand.
#[derive(Clone, Debug, PartialEq)]
pub struct OverrideParseError {
    /// The override (or sweep) as typed.
    pub input: String,
    /// What went wrong, starting with `Error parsing override '...'` for parse errors.
    pub message: String,
    /// What to type instead, when there is a clear fix.
    pub hint: Option<String>,
}

impl fmt::Display for OverrideParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OverrideParseError {}

/// A failure before it is tied to the whole input: a detail line and an optional hint.
#[derive(Debug)]
struct Fail {
    detail: String,
    hint: Option<String>,
}

impl Fail {
    fn new(detail: impl Into<String>) -> Self {
        Fail {
            detail: detail.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl Override {
    /// Parses one override such as `seed=7`, `+model.lr=1e-4`, `~wd` or `lr=0.1,0.01`.
    pub fn parse(input: &str) -> Result<Override, OverrideParseError> {
        parser::parse_override(input).map_err(|f| OverrideParseError {
            input: input.to_string(),
            message: format!("Error parsing override '{input}'\n{}", f.detail),
            hint: f.hint,
        })
    }

    /// The key with its package, without the `+`/`++`/`~` prefix: `path@model.path` or `path`.
    pub fn key_element(&self) -> String {
        match &self.package {
            Some(pkg) => format!("{}@{pkg}", self.key),
            None => self.key.clone(),
        }
    }

    /// True when the value is a sweep (only allowed with `--multirun`).
    pub fn is_sweep(&self) -> bool {
        matches!(self.value, OverrideValue::Sweep(_))
    }

    /// True for overrides of Hydra's own config (`hydra.run.dir=...`, `hydra/launcher=...`).
    pub fn is_hydra(&self) -> bool {
        self.key == "hydra" || self.key.starts_with("hydra.") || self.key.starts_with("hydra/")
    }
}

impl Element {
    /// The config node for this value, every node carrying `origin`.
    pub fn to_node(&self, origin: &Origin) -> Node {
        let value = match self {
            Element::Null => Value::Null,
            Element::Bool(b) => Value::Bool(*b),
            Element::Int(i) => Value::Int(*i),
            Element::Float(x) => Value::Float(*x),
            Element::Str { text, .. } => Value::Str(text.clone()),
            Element::List(items) => Value::List(items.iter().map(|e| e.to_node(origin)).collect()),
            Element::Dict(items) => Value::Map(
                items
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_node(origin)))
                    .collect(),
            ),
        };
        Node::new(value, origin.clone())
    }

    /// The value as Hydra prints it back (`[a,b]`, `{k:v}`, `0.0001`, `True`); parses back to itself.
    pub fn to_value_string(&self) -> String {
        match self {
            Element::Null => "null".into(),
            Element::Bool(b) => if *b { "True" } else { "False" }.into(),
            Element::Int(i) => i.to_string(),
            Element::Float(x) => float_repr(*x),
            Element::Str { text, quoted: true } => quote(text),
            Element::Str {
                text,
                quoted: false,
            } => plain_string(text),
            Element::List(items) => {
                format!(
                    "[{}]",
                    items
                        .iter()
                        .map(Element::to_value_string)
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }
            Element::Dict(items) => {
                let items: Vec<String> = items
                    .iter()
                    .map(|(k, v)| format!("{}:{}", escape_special(k), v.to_value_string()))
                    .collect();
                format!("{{{}}}", items.join(","))
            }
        }
    }
}

/// Escapes the characters that end or split an unquoted value (Hydra's `escape_special_characters`).
fn escape_special(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\()[]{}:=, \t".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An unquoted string printed raw if that parses back to it, else escaped, else quoted.
///
/// Raw text must not start or end with whitespace (separators around it would swallow it),
/// nor end with a backslash (it would escape the `,` or `]` after it).
fn plain_string(text: &str) -> String {
    let edge = |c: char| c == ' ' || c == '\t';
    let raw = Some(text.to_string())
        .filter(|t| !t.starts_with(edge) && !t.ends_with(edge) && !t.ends_with('\\'));
    for candidate in raw.into_iter().chain([escape_special(text)]) {
        if matches!(parser::reparse(&candidate), Some(Element::Str { text: t, .. }) if t == text) {
            return candidate;
        }
    }
    quote(text)
}

/// `text` in quotes, escaping the quote and the backslashes before it (Hydra's `with_quotes`).
fn quote(text: &str) -> String {
    let q = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from(q);
    let mut run = 0;
    for c in text.chars() {
        if c == '\\' {
            run += 1;
            continue;
        }
        let n = if c == q { 2 * run } else { run };
        out.extend(std::iter::repeat_n('\\', n));
        if c == q {
            out.push('\\');
        }
        out.push(c);
        run = 0;
    }
    out.extend(std::iter::repeat_n('\\', 2 * run));
    out.push(q);
    out
}

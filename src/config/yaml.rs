//! Loads one YAML config file into a [`Node`] tree the way OmegaConf reads YAML.
//!
//! Syntax comes from `saphyr-parser`; typing follows PyYAML's `SafeLoader` (YAML 1.1) with
//! OmegaConf's changes (see [`super::pyfmt::resolve_plain_scalar`]). On top of PyYAML:
//! duplicate keys are an error (as in OmegaConf), keys are kept as their text, and only a
//! mapping may sit at the top of a file. Anchors and aliases are expanded into copies, and merge
//! keys (`<<`) follow PyYAML: merged keys come first, the mapping's own keys override them.

use super::node::{Map, Node, Origin, Value};
use super::pyfmt::{
    construct_bool, construct_float, construct_int, is_null_word, resolve_plain_owned,
};
use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Deepest nesting of lists and maps accepted (deeper input is almost certainly an accident).
const MAX_DEPTH: usize = 256;

/// Most nodes a file may expand to once aliases are copied (guards against "billion laughs").
const MAX_NODES: usize = 1_000_000;

/// A YAML syntax or typing error, positioned in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    /// The file's path as shown to users.
    pub path: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path, self.line, self.col, self.message
        )
    }
}

impl std::error::Error for YamlError {}

/// Parses one YAML document into a config tree; `Ok(None)` for an empty or null document.
pub fn load_str(text: &str, path: &Arc<str>) -> Result<Option<Node>, YamlError> {
    let mut loader = Loader {
        path,
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        stack: Vec::new(),
        nodes: 0,
    };
    loader.document()
}

/// How a scalar behaves in key position.
#[derive(Clone, Debug)]
enum KeyInfo {
    /// A plain `<<` (or `!!merge`): a merge key.
    Merge,
    /// A null scalar, which cannot be a key.
    Null,
    /// An ordinary key, kept as its text.
    Text(String),
    /// A list or map.
    Collection,
    /// A scalar in value position that no alias can repeat (its key form is never asked for).
    Unneeded,
}

/// A finished node on its way to its parent (and, for anchors, the copy an alias repeats).
#[derive(Clone)]
struct Done {
    node: Node,
    key: KeyInfo,
    size: usize,
    /// Where the node appears here (for an alias: the alias, not the anchor).
    at: (u32, u32),
}

impl Done {
    /// Bundles a finished node with its key behaviour, size and position.
    fn new(node: Node, key: KeyInfo, size: usize, at: (u32, u32)) -> Self {
        Done {
            node,
            key,
            size,
            at,
        }
    }
}

/// The key a map is waiting to see the value of.
enum Pending {
    Merge,
    Key(String),
}

/// A mapping under construction.
#[derive(Default)]
struct MapFrame {
    own: Map,
    key_lines: Vec<u32>,
    merged: Vec<Map>,
    pending: Option<Pending>,
}

/// The contents of an open collection.
enum Body {
    Seq(Vec<Node>),
    Map(MapFrame),
}

/// An open collection.
struct Frame {
    body: Body,
    at: (u32, u32),
    anchor: usize,
    size: usize,
}

/// The event-driven tree builder.
struct Loader<'a> {
    path: &'a Arc<str>,
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, Done>,
    stack: Vec<Frame>,
    nodes: usize,
}

/// Converts a parser position to 1-based `(line, col)`.
fn position(line: usize, col: usize) -> (u32, u32) {
    let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    (clamp(line), clamp(col.saturating_add(1)))
}

/// The `!!name` of a YAML core-schema tag, `Some("")` for the non-specific `!`, else `None`.
fn core_name(tag: &Tag) -> Option<&str> {
    const CORE: &str = "tag:yaml.org,2002:";
    if tag.handle == CORE {
        Some(&tag.suffix)
    } else if tag.handle.is_empty() && tag.suffix == "!" {
        Some("")
    } else if tag.handle.is_empty() {
        tag.suffix.strip_prefix(CORE)
    } else {
        None
    }
}

/// A tag as the user would write it.
fn show_tag(tag: &Tag) -> String {
    match core_name(tag) {
        Some(name) => format!("!!{name}"),
        None => tag.to_string(),
    }
}

/// The value of a scalar, applying its tag (if any) as PyYAML's constructors do.
fn scalar_value(text: String, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    let Some(tag) = tag else {
        return Ok(match style {
            ScalarStyle::Plain => resolve_plain_owned(text),
            _ => Value::Str(text),
        });
    };
    let fail = |kind: &str| format!("cannot read '{text}' as {kind} (tag {})", show_tag(tag));
    match core_name(tag) {
        Some("" | "str" | "merge") => Ok(Value::Str(text)),
        Some("int") => construct_int(&text)
            .map(Value::Int)
            .ok_or_else(|| fail("an int")),
        Some("float") => construct_float(&text)
            .map(Value::Float)
            .ok_or_else(|| fail("a float")),
        Some("bool") => construct_bool(&text)
            .map(Value::Bool)
            .ok_or_else(|| fail("a bool")),
        Some("null") => Ok(Value::Null),
        _ => Err(format!("unsupported tag '{}'", show_tag(tag))),
    }
}

/// How a scalar acts as a key.
fn scalar_key(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> KeyInfo {
    let name = tag.and_then(core_name);
    let plain = tag.is_none() && style == ScalarStyle::Plain;
    if name == Some("merge") || (plain && text == "<<") {
        KeyInfo::Merge
    } else if name == Some("null") || (plain && is_null_word(text)) {
        KeyInfo::Null
    } else {
        KeyInfo::Text(text.to_string())
    }
}

/// Checks a collection's tag; `wanted` is `map` or `seq`.
fn check_collection_tag(tag: Option<&Tag>, wanted: &str) -> Result<(), String> {
    match tag {
        None => Ok(()),
        Some(t) => match core_name(t) {
            Some(name) if name.is_empty() || name == wanted => Ok(()),
            Some("str" | "int" | "float" | "bool" | "null") => Err(format!(
                "tag '{}' cannot be used on a {}",
                show_tag(t),
                if wanted == "map" { "mapping" } else { "list" }
            )),
            _ => Err(format!("unsupported tag '{}'", show_tag(t))),
        },
    }
}

impl<'a> Loader<'a> {
    /// An error at a 1-based position.
    fn err_at(&self, line: u32, col: u32, message: impl Into<String>) -> YamlError {
        YamlError {
            path: self.path.to_string(),
            line,
            col,
            message: message.into(),
        }
    }

    /// An error at the start of a span.
    fn err(&self, span: &Span, message: impl Into<String>) -> YamlError {
        let (line, col) = position(span.start.line(), span.start.col());
        self.err_at(line, col, message)
    }

    /// The file origin at a 1-based position.
    fn origin(&self, (line, col): (u32, u32)) -> Origin {
        Origin::File {
            path: self.path.clone(),
            line,
            col,
        }
    }

    /// The next parser event, with syntax errors converted.
    fn next(&mut self) -> Result<(Event<'a>, Span), YamlError> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(self.scan_error(&e)),
            None => Err(self.err_at(0, 0, "unexpected end of the YAML stream")),
        }
    }

    /// Converts a saphyr syntax error.
    fn scan_error(&self, e: &ScanError) -> YamlError {
        let (line, col) = position(e.marker().line(), e.marker().col());
        self.err_at(line, col, e.info())
    }

    /// Reads the whole stream: at most one document, which must hold a mapping (or nothing).
    fn document(&mut self) -> Result<Option<Node>, YamlError> {
        let (first, span) = self.next()?;
        if !matches!(first, Event::StreamStart) {
            return Err(self.err(&span, "expected the start of a YAML stream"));
        }
        match self.next()? {
            (Event::StreamEnd, _) => return Ok(None),
            (Event::DocumentStart(_), _) => {}
            (_, span) => return Err(self.err(&span, "expected a YAML document")),
        }
        let root = self.node()?;
        let (end, span) = self.next()?;
        if !matches!(end, Event::DocumentEnd) {
            return Err(self.err(&span, "expected the end of the document"));
        }
        match self.next()? {
            (Event::StreamEnd, _) => {}
            (_, span) => {
                let message = "expected a single document in the file, but found another document";
                return Err(self.err(&span, message));
            }
        }
        match root.node.value {
            Value::Null => Ok(None),
            Value::Map(_) => Ok(Some(root.node)),
            ref other => {
                let found = other.type_name();
                let message = format!("expected a mapping at the top of the file, found a {found}");
                Err(self.err_at(root.at.0, root.at.1, message))
            }
        }
    }

    /// True when the innermost open collection is a mapping waiting for a key.
    fn expecting_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame { body: Body::Map(m), .. }) if m.pending.is_none()
        )
    }

    /// Counts `size` more nodes against the expansion limit.
    fn count(&mut self, size: usize, span: &Span) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(size);
        if self.nodes > MAX_NODES {
            return Err(self.err(
                span,
                format!("the document expands to more than {MAX_NODES} values (too many aliases?)"),
            ));
        }
        Ok(())
    }

    /// Opens a list or map.
    fn open(
        &mut self,
        body: Body,
        anchor: usize,
        tag: Option<&Tag>,
        span: &Span,
    ) -> Result<(), YamlError> {
        let (wanted, what) = match body {
            Body::Seq(_) => ("seq", "list"),
            Body::Map(_) => ("map", "mapping"),
        };
        check_collection_tag(tag, wanted).map_err(|m| self.err(span, m))?;
        if self.expecting_key() {
            return Err(self.err(span, format!("a {what} cannot be used as a key")));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.err(
                span,
                format!("lists and maps nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        self.count(1, span)?;
        let at = position(span.start.line(), span.start.col());
        let size = 1;
        self.stack.push(Frame {
            body,
            at,
            anchor,
            size,
        });
        Ok(())
    }

    /// Builds the next complete node from the event stream.
    fn node(&mut self) -> Result<Done, YamlError> {
        loop {
            let (ev, span) = self.next()?;
            let at = position(span.start.line(), span.start.col());
            let (done, anchor) = match ev {
                Event::Scalar(text, style, anchor, tag) => {
                    self.count(1, &span)?;
                    let tag = tag.as_deref();
                    let key = if anchor > 0 || self.expecting_key() {
                        scalar_key(&text, style, tag)
                    } else {
                        KeyInfo::Unneeded
                    };
                    let value = scalar_value(text.into_owned(), style, tag)
                        .map_err(|m| self.err(&span, m))?;
                    let node = Node::new(value, self.origin(at));
                    (Done::new(node, key, 1, at), anchor)
                }
                Event::Alias(id) => {
                    let size = self.anchors.get(&id).map_or(0, |a| a.size);
                    self.count(size, &span)?;
                    let Some(mut done) = self.anchors.get(&id).cloned() else {
                        return Err(self.err(&span, "an alias cannot refer to its own anchor"));
                    };
                    done.at = at;
                    (done, 0)
                }
                Event::SequenceStart(anchor, tag) => {
                    let body = Body::Seq(Vec::new());
                    self.open(body, anchor, tag.as_deref(), &span)?;
                    continue;
                }
                Event::MappingStart(anchor, tag) => {
                    let body = Body::Map(MapFrame::default());
                    self.open(body, anchor, tag.as_deref(), &span)?;
                    continue;
                }
                Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                    Some(frame) => {
                        let value = match frame.body {
                            Body::Seq(items) => Value::List(items),
                            Body::Map(m) => Value::Map(finish_map(m)),
                        };
                        let node = Node::new(value, self.origin(frame.at));
                        let done = Done::new(node, KeyInfo::Collection, frame.size, frame.at);
                        (done, frame.anchor)
                    }
                    None => return Err(self.err(&span, "unbalanced end of a collection")),
                },
                _ => return Err(self.err(&span, "unexpected YAML event")),
            };
            if anchor > 0 {
                self.anchors.insert(anchor, done.clone());
            }
            if self.stack.is_empty() {
                return Ok(done);
            }
            self.accept(done)?;
        }
    }

    /// Hands a finished node to the innermost open collection.
    fn accept(&mut self, done: Done) -> Result<(), YamlError> {
        let (err_line, err_col) = done.at;
        let Some(frame) = self.stack.last_mut() else {
            return Ok(());
        };
        frame.size = frame.size.saturating_add(done.size);
        let map = match &mut frame.body {
            Body::Seq(items) => {
                items.push(done.node);
                return Ok(());
            }
            Body::Map(map) => map,
        };
        let message = match map.pending.take() {
            None => match done.key {
                KeyInfo::Merge => {
                    map.pending = Some(Pending::Merge);
                    return Ok(());
                }
                KeyInfo::Text(k) => match map.own.get_index_of(&k) {
                    Some(i) => {
                        let first = map.key_lines.get(i).copied().unwrap_or(0);
                        format!("found duplicate key '{k}' (first defined at line {first})")
                    }
                    None => {
                        map.pending = Some(Pending::Key(k));
                        map.key_lines.push(err_line);
                        return Ok(());
                    }
                },
                KeyInfo::Null => "null keys are not supported".to_string(),
                KeyInfo::Collection | KeyInfo::Unneeded => {
                    "a list or mapping cannot be used as a key".to_string()
                }
            },
            Some(Pending::Key(k)) => {
                map.own.insert(k, done.node);
                return Ok(());
            }
            Some(Pending::Merge) => match merge_sources(done.node.value) {
                Ok(maps) => {
                    map.merged.extend(maps);
                    return Ok(());
                }
                Err(found) => format!(
                    "expected a mapping or a list of mappings for merging ('<<'), found a {found}"
                ),
            },
        };
        Err(self.err_at(err_line, err_col, message))
    }
}

/// The maps a merge-key value contributes, in PyYAML's order (a list is taken last to first).
fn merge_sources(value: Value) -> Result<Vec<Map>, &'static str> {
    match value {
        Value::Map(m) => Ok(vec![m]),
        Value::List(items) => {
            let mut maps = Vec::with_capacity(items.len());
            for item in items.into_iter().rev() {
                match item.value {
                    Value::Map(m) => maps.push(m),
                    other => return Err(other.type_name()),
                }
            }
            Ok(maps)
        }
        other => Err(other.type_name()),
    }
}

/// The final map: merged keys first (later merges overriding), then the mapping's own keys.
fn finish_map(frame: MapFrame) -> Map {
    if frame.merged.is_empty() {
        return frame.own;
    }
    let mut out = Map::new();
    for source in frame.merged {
        out.extend(source);
    }
    out.extend(frame.own);
    out
}

#[cfg(test)]
mod tests {
    use super::super::pyfmt::python_str;
    use super::*;

    fn load(text: &str) -> Result<Option<Node>, YamlError> {
        load_str(text, &Arc::from("t.yaml"))
    }

    /// The loaded tree as Python would print it (types stay visible: `'1'`, `1`, `1.0`).
    fn py(text: &str) -> String {
        match load(text) {
            Ok(Some(n)) => python_str(&n.value),
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    fn err(text: &str) -> YamlError {
        match load(text) {
            Err(e) => e,
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    #[test]
    fn scalars_and_positions() {
        let text = "a: 1\nb:\n  c: 'x'\n  d: [1e-4, yes, ~, \"017\", 2024-01-01]\nlit: |\n  x\n";
        let want = "{'a': 1, 'b': {'c': 'x', 'd': [0.0001, True, None, '017', '2024-01-01']}, \
                    'lit': 'x\\n'}";
        assert_eq!(py(text), want);
        let n = load(text).unwrap().unwrap();
        let origin = |p: &str| n.select(p).unwrap().origin.to_string();
        assert_eq!(origin("a"), "t.yaml:1:4");
        assert_eq!(origin("b"), "t.yaml:3:3");
        assert_eq!(origin("b.c"), "t.yaml:3:6");
        assert_eq!(origin("b.d.1"), "t.yaml:4:13");
        assert_eq!(n.origin.to_string(), "t.yaml:1:1");
    }

    #[test]
    fn empty_null_and_non_mapping_documents() {
        for text in [
            "",
            "# only a comment\n",
            "---\n",
            "null\n",
            "~",
            "--- !!null\n",
        ] {
            assert_eq!(load(text), Ok(None), "{text:?}");
        }
        assert_eq!(py("{}"), "{}");
        let e = err("- 1\n- 2\n");
        let want = "t.yaml:1:1: expected a mapping at the top of the file, found a list";
        assert_eq!(e.to_string(), want);
        assert!(err("42").message.ends_with("found a int"));
        assert!(err("'text'").message.ends_with("found a string"));
    }

    #[test]
    fn tags() {
        let text = "a: !!str 1\nb: !!int \"0x1F\"\nc: !!float 1\nd: !!bool yes\ne: !!null x\n\
                    f: ! 12\ng: !!map {k: v}\n";
        let want =
            "{'a': '1', 'b': 31, 'c': 1.0, 'd': True, 'e': None, 'f': '12', 'g': {'k': 'v'}}";
        assert_eq!(py(text), want);
        let e = err("a: 1\nb: !!int abc\n");
        assert_eq!((e.line, e.col), (2, 4));
        assert!(e.message.contains("!!int"), "{e}");
        assert!(err("a: !foo x").message.contains("'!foo'"));
        assert!(err("a: !!binary eA==").message.contains("'!!binary'"));
        assert!(err("a: !!str {b: 1}").message.contains("!!str"));
        assert!(err("a: !!set {b: 1}").message.contains("!!set"));
    }

    #[test]
    fn anchors_aliases_and_merges() {
        let text = "base: &o {lr: 0.1, wd: 0.0}\noptimizer: {<<: *o, lr: 0.2}\n";
        let want = "{'base': {'lr': 0.1, 'wd': 0.0}, 'optimizer': {'lr': 0.2, 'wd': 0.0}}";
        assert_eq!(py(text), want);
        let text = "a: &a {x: 1, y: 2}\nb: &b {y: 3, z: 4}\nc: {<<: [*a, *b], w: 0}\n\
                    d: {c: 0, <<: *b}\ne: {<<: *a, <<: *b}\nl: [&s v, *s]\n'<<': 1";
        let want = "{'a': {'x': 1, 'y': 2}, 'b': {'y': 3, 'z': 4}, \
                    'c': {'y': 2, 'z': 4, 'x': 1, 'w': 0}, 'd': {'y': 3, 'z': 4, 'c': 0}, \
                    'e': {'x': 1, 'y': 3, 'z': 4}, 'l': ['v', 'v'], '<<': 1}";
        assert_eq!(py(text), want);
        assert!(err("a: {<<: 1}").message.contains("for merging"));
        assert!(err("a: {<<: [{b: 1}, 2]}").message.contains("for merging"));
    }

    #[test]
    fn aliases_cannot_recurse_or_explode() {
        assert!(load("a: &x [*x]").is_err());
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        assert!(err(&text).message.contains("too many aliases"));
    }

    #[test]
    fn duplicate_and_bad_keys() {
        let e = err("lr: 1\nwd: 2\nlr: 3\n");
        let want = "t.yaml:3:1: found duplicate key 'lr' (first defined at line 1)";
        assert_eq!(e.to_string(), want);
        assert!(err("a:\n  b: 1\n  b: 2\n").message.contains("key 'b'"));
        assert_eq!(err("~: 1").message, "null keys are not supported");
        assert_eq!(err(": 1").message, "null keys are not supported");
        assert!(err("[a]: 1").message.contains("cannot be used as a key"));
        assert!(err("? {a: 1}\n: 2\n")
            .message
            .contains("cannot be used as a key"));
        assert_eq!(
            py("1: a\n'': b\n\"null\": c"),
            "{'1': 'a', '': 'b', 'null': 'c'}"
        );
        assert_eq!(py("&k x: 1\ny: {*k : 2}\n"), "{'x': 1, 'y': {'x': 2}}");
        let e = err("&k x: 1\n*k : 2\n");
        assert_eq!((e.line, e.col), (2, 1));
    }

    #[test]
    fn documents_and_syntax_errors() {
        assert!(err("a: 1\n---\nb: 2\n").message.contains("single document"));
        let e = err("a: [1, 2\nb: 3\n");
        assert_eq!(e.path, "t.yaml");
        assert!(e.line >= 1 && e.col >= 1);
        assert!(err("a: b: c").line == 1);
        let deep = format!("a: {}{}", "[".repeat(5000), "]".repeat(5000));
        assert!(load(&deep).is_err());
        let block: String = (0..300)
            .map(|depth| format!("{}k{depth}:\n", " ".repeat(depth)))
            .collect();
        assert!(err(&block).message.contains("nested"));
    }

    #[test]
    fn never_panics_on_garbage() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let alphabet: Vec<char> = "ab:-?[]{},&*!|>'\"%@`# \n\t\\~<=.019eE+\u{85}\u{feff}é"
            .chars()
            .collect();
        for _ in 0..10_000 {
            let len = next(40);
            let text: String = (0..len).map(|_| alphabet[next(alphabet.len())]).collect();
            let _ = load(&text);
            let bytes: Vec<u8> = (0..len).map(|_| next(256) as u8).collect();
            let _ = load(&String::from_utf8_lossy(&bytes));
        }
    }
}

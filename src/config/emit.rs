//! Prints a config tree as YAML exactly as `OmegaConf.to_yaml` does, i.e. PyYAML's
//! `yaml.dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)` with
//! OmegaConf's string representer (strings that look like bools or numbers get single quotes).
//!
//! This is a port of the parts of PyYAML's emitter that such data reaches: block mappings and
//! sequences, `[]`/`{}` for empty collections, plain / single-quoted / double-quoted scalars with
//! PyYAML's line folding at 80 columns, and `? key` for keys that cannot be simple keys.
//!
//! One deliberate difference: strings holding U+0085, U+2028 or U+2029 are double-quoted with
//! escapes (PyYAML writes them raw as YAML 1.1 line breaks, which a YAML 1.2 reader does not
//! read back the same way).

use super::node::{Node, Value};
use super::pyfmt::{
    is_bool_word, is_null_word, is_pyyaml_float, is_pyyaml_int, is_pyyaml_timestamp, resolve_typed,
    yaml_float,
};

/// PyYAML's default line width.
const BEST_WIDTH: usize = 80;

/// PyYAML's default indentation step.
const BEST_INDENT: usize = 2;

/// PyYAML counts the key's tag (`!!str`) towards the 128-character limit of a simple key.
const SIMPLE_KEY_TAG_LEN: usize = 5;

/// Renders a config tree as block-style YAML, as `OmegaConf.to_yaml` prints it.
pub fn to_yaml(node: &Node) -> String {
    let mut e = Emitter {
        out: String::new(),
        column: 0,
        whitespace: true,
        indention: true,
        open_ended: false,
        indent: None,
        indents: Vec::new(),
    };
    e.node(&node.value, Ctx::Root);
    e.write_indent();
    if e.open_ended {
        e.write_indicator("...", true, false, false);
        e.write_indent();
    }
    e.out
}

/// Where a node sits, as PyYAML's `expect_node` flags record it.
#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    Root,
    Sequence,
    Mapping,
    SimpleKey,
}

/// The scalar styles used.
#[derive(Clone, Copy, PartialEq)]
enum Style {
    Plain,
    Single,
    Double,
}

/// The result of PyYAML's `analyze_scalar`, reduced to what block context needs.
struct Analysis {
    empty: bool,
    multiline: bool,
    allow_block_plain: bool,
    allow_single_quoted: bool,
}

/// True for the characters PyYAML treats as line breaks.
fn is_break(ch: char) -> bool {
    matches!(ch, '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// True for characters PyYAML counts as whitespace around indicators.
fn is_space_like(ch: Option<char>) -> bool {
    matches!(ch, None | Some('\0' | ' ' | '\t' | '\r')) || ch.is_some_and(is_break)
}

/// True for characters that force double quotes (PyYAML's "special characters", plus U+0085,
/// U+2028 and U+2029, see the module docs).
fn is_special(ch: char) -> bool {
    let printable = matches!(ch, '\n' | '\x20'..='\x7e' | '\u{a0}'..='\u{d7ff}'
        | '\u{e000}'..='\u{fffd}' | '\u{10000}'..='\u{10fffe}');
    !printable || matches!(ch, '\u{feff}' | '\u{2028}' | '\u{2029}')
}

/// PyYAML's `analyze_scalar` with `allow_unicode=True`.
fn analyze(text: &str) -> Analysis {
    if text.is_empty() {
        return Analysis {
            empty: true,
            multiline: false,
            allow_block_plain: true,
            allow_single_quoted: true,
        };
    }
    let mut block_indicators = text.starts_with("---") || text.starts_with("...");
    let (mut line_breaks, mut special) = (false, false);
    let (mut leading_space, mut leading_break) = (false, false);
    let (mut trailing_space, mut trailing_break) = (false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut previous_space, mut previous_break) = (false, false);
    let mut preceded_by_ws = true;
    let mut chars = text.chars().peekable();
    let mut first = true;
    while let Some(ch) = chars.next() {
        let next = chars.peek().copied();
        let (is_first, is_last) = (std::mem::take(&mut first), next.is_none());
        let followed_by_ws = is_space_like(next);
        if is_first {
            if "#,[]{}&*!|>'\"%@`".contains(ch) || (matches!(ch, '?' | ':' | '-') && followed_by_ws)
            {
                block_indicators = true;
            }
        } else if (ch == ':' && followed_by_ws) || (ch == '#' && preceded_by_ws) {
            block_indicators = true;
        }
        line_breaks |= is_break(ch);
        special |= is_special(ch);
        if ch == ' ' {
            leading_space |= is_first;
            trailing_space |= is_last;
            break_space |= previous_break;
            (previous_space, previous_break) = (true, false);
        } else if is_break(ch) {
            leading_break |= is_first;
            trailing_break |= is_last;
            space_break |= previous_space;
            (previous_space, previous_break) = (false, true);
        } else {
            (previous_space, previous_break) = (false, false);
        }
        preceded_by_ws = is_space_like(Some(ch));
    }
    let bad_plain = leading_space || leading_break || trailing_space || trailing_break;
    Analysis {
        empty: false,
        multiline: line_breaks,
        allow_block_plain: !(bad_plain
            || break_space
            || space_break
            || special
            || line_breaks
            || block_indicators),
        allow_single_quoted: !(break_space || space_break || special),
    }
}

/// Python's `int(s)` accepts `s` (ASCII digits; underscores only between digits).
fn py_digits(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.first().is_some_and(u8::is_ascii_digit)
        && b.last().is_some_and(u8::is_ascii_digit)
        && b.iter().all(|&c| c.is_ascii_digit() || c == b'_')
        && !s.contains("__")
}

/// Python's `int(s)` would succeed.
fn py_is_int(s: &str) -> bool {
    let t = s.trim();
    py_digits(t.strip_prefix(['-', '+']).unwrap_or(t))
}

/// Python's `float(s)` would succeed.
fn py_is_float(s: &str) -> bool {
    let t = s.trim();
    let t = t.strip_prefix(['-', '+']).unwrap_or(t);
    if !t.starts_with(|c: char| c.is_ascii_digit() || ".iInN".contains(c)) {
        return false;
    }
    let lower = t.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        return true;
    }
    let (mantissa, exponent) = match lower.split_once('e') {
        Some((m, e)) => (m, Some(e.strip_prefix(['-', '+']).unwrap_or(e))),
        None => (lower.as_str(), None),
    };
    if exponent.is_some_and(|e| !py_digits(e)) {
        return false;
    }
    match mantissa.split_once('.') {
        Some((int, frac)) => {
            (int.is_empty() || py_digits(int))
                && (frac.is_empty() || py_digits(frac))
                && !(int.is_empty() && frac.is_empty())
        }
        None => py_digits(mantissa),
    }
}

/// OmegaConf's string representer asks for single quotes (bool-, int- or float-looking text);
/// also asked for anything this crate's loader would not read back as the same string.
fn wants_quotes(s: &str) -> bool {
    const YAML_BOOLS: [&str; 4] = ["y", "Y", "n", "N"];
    is_bool_word(s)
        || YAML_BOOLS.contains(&s)
        || py_is_int(s)
        || py_is_float(s)
        || resolve_typed(s).is_some()
}

/// PyYAML's default resolver gives a plain `s` the string tag.
fn resolves_to_str(s: &str) -> bool {
    !(is_bool_word(s)
        || is_pyyaml_float(s)
        || is_pyyaml_int(s)
        || is_null_word(s)
        || is_pyyaml_timestamp(s)
        || s == "<<"
        || s == "=")
}

/// The emitter state of PyYAML's `Emitter`.
struct Emitter {
    out: String,
    column: usize,
    whitespace: bool,
    indention: bool,
    open_ended: bool,
    indent: Option<usize>,
    indents: Vec<Option<usize>>,
}

impl Emitter {
    /// PyYAML's `increase_indent`.
    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.indents.push(self.indent);
        self.indent = match self.indent {
            None if flow => Some(BEST_INDENT),
            None => Some(0),
            Some(i) if !indentless => Some(i + BEST_INDENT),
            keep => keep,
        };
    }

    /// Restores the indentation saved by the matching `increase_indent`.
    fn pop_indent(&mut self) {
        self.indent = self.indents.pop().flatten();
    }

    /// Writes characters, tracking the column.
    fn write(&mut self, chars: &[char]) {
        self.column += chars.len();
        self.out.extend(chars);
    }

    /// Writes a string, tracking the column.
    fn write_str(&mut self, s: &str) {
        self.column += s.chars().count();
        self.out.push_str(s);
    }

    /// PyYAML's `write_line_break`.
    fn write_line_break(&mut self, ch: char) {
        self.whitespace = true;
        self.indention = true;
        self.column = 0;
        self.out.push(ch);
    }

    /// PyYAML's `write_indent`: a new line (if needed) and spaces up to the indentation.
    fn write_indent(&mut self) {
        let indent = self.indent.unwrap_or(0);
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.write_line_break('\n');
        }
        if self.column < indent {
            self.whitespace = true;
            self.out
                .extend(std::iter::repeat_n(' ', indent - self.column));
            self.column = indent;
        }
    }

    /// PyYAML's `write_indicator`.
    fn write_indicator(&mut self, ind: &str, need_ws: bool, ws: bool, indention: bool) {
        if !self.whitespace && need_ws {
            self.write_str(" ");
        }
        self.write_str(ind);
        self.whitespace = ws;
        self.indention = self.indention && indention;
        self.open_ended = false;
    }

    /// Emits one node (PyYAML's `expect_node` and the block collection states).
    fn node(&mut self, value: &Value, ctx: Ctx) {
        match value {
            Value::Map(map) if map.is_empty() => self.empty_collection("{", "}"),
            Value::List(items) if items.is_empty() => self.empty_collection("[", "]"),
            Value::Map(map) => {
                self.increase_indent(false, false);
                for (key, child) in map {
                    self.write_indent();
                    let analysis = analyze(key);
                    let simple = key.chars().count() + SIMPLE_KEY_TAG_LEN < 128
                        && !analysis.empty
                        && !analysis.multiline;
                    if simple {
                        self.string(key, Ctx::SimpleKey);
                        self.write_indicator(":", false, false, false);
                    } else {
                        self.write_indicator("?", true, false, true);
                        self.string(key, Ctx::Mapping);
                        self.write_indent();
                        self.write_indicator(":", true, false, true);
                    }
                    self.node(&child.value, Ctx::Mapping);
                }
                self.pop_indent();
            }
            Value::List(items) => {
                let indentless = matches!(ctx, Ctx::Mapping | Ctx::SimpleKey) && !self.indention;
                self.increase_indent(false, indentless);
                for item in items {
                    self.write_indent();
                    self.write_indicator("-", true, false, true);
                    self.node(&item.value, Ctx::Sequence);
                }
                self.pop_indent();
            }
            Value::Str(s) => self.string(s, ctx),
            Value::Null => self.scalar("null", Style::Plain, ctx),
            Value::Bool(b) => self.scalar(if *b { "true" } else { "false" }, Style::Plain, ctx),
            Value::Int(i) => self.scalar(&i.to_string(), Style::Plain, ctx),
            Value::Float(f) => self.scalar(&yaml_float(*f), Style::Plain, ctx),
        }
    }

    /// An empty flow collection (`[]` or `{}`), as PyYAML writes one.
    fn empty_collection(&mut self, open: &str, close: &str) {
        self.write_indicator(open, true, true, false);
        self.increase_indent(true, false);
        self.pop_indent();
        self.write_indicator(close, false, false, false);
    }

    /// A string scalar: PyYAML's `choose_scalar_style` under OmegaConf's representer.
    fn string(&mut self, s: &str, ctx: Ctx) {
        let a = analyze(s);
        let plain_ok = !(ctx == Ctx::SimpleKey && (a.empty || a.multiline)) && a.allow_block_plain;
        // Every word a resolver or Python's int()/float() accepts starts with one of these.
        let word_like =
            s.is_empty() || s.starts_with(|c: char| "-+.0123456789yYnNtTfFoO~<=iI".contains(c));
        let style = if plain_ok && !(word_like && (wants_quotes(s) || !resolves_to_str(s))) {
            Style::Plain
        } else if a.allow_single_quoted && !(ctx == Ctx::SimpleKey && a.multiline) {
            Style::Single
        } else {
            Style::Double
        };
        self.scalar(s, style, ctx);
    }

    /// Emits a scalar in the chosen style (PyYAML's `expect_scalar`).
    fn scalar(&mut self, text: &str, style: Style, ctx: Ctx) {
        self.increase_indent(true, false);
        let split = ctx != Ctx::SimpleKey;
        let chars = || text.chars().collect::<Vec<char>>();
        match style {
            Style::Plain => self.write_plain(text, split, ctx == Ctx::Root),
            Style::Single => self.write_single_quoted(&chars(), split),
            Style::Double => self.write_double_quoted(&chars(), split),
        }
        self.pop_indent();
    }

    /// PyYAML's `write_plain` (plain text never holds line breaks here).
    fn write_plain(&mut self, text: &str, split: bool, root: bool) {
        if root {
            self.open_ended = true;
        }
        if text.is_empty() {
            return;
        }
        if !self.whitespace {
            self.write_str(" ");
        }
        self.whitespace = false;
        self.indention = false;
        if !text.contains(' ') {
            self.write_str(text);
            return;
        }
        let text: Vec<char> = text.chars().collect();
        let (mut spaces, mut start) = (false, 0);
        for end in 0..=text.len() {
            let ch = text.get(end).copied();
            if spaces {
                if ch != Some(' ') {
                    if start + 1 == end && self.column > BEST_WIDTH && split {
                        self.write_indent();
                        self.whitespace = false;
                        self.indention = false;
                    } else {
                        self.write(text.get(start..end).unwrap_or_default());
                    }
                    start = end;
                }
            } else if ch.is_none() || ch == Some(' ') {
                self.write(text.get(start..end).unwrap_or_default());
                start = end;
            }
            spaces = ch == Some(' ');
        }
    }

    /// PyYAML's `write_single_quoted`.
    fn write_single_quoted(&mut self, text: &[char], split: bool) {
        self.write_indicator("'", true, false, false);
        let (mut spaces, mut breaks, mut start) = (false, false, 0);
        for end in 0..=text.len() {
            let ch = text.get(end).copied();
            if spaces {
                if ch != Some(' ') {
                    let fold = start + 1 == end && self.column > BEST_WIDTH && split;
                    if fold && start != 0 && end != text.len() {
                        self.write_indent();
                    } else {
                        self.write(text.get(start..end).unwrap_or_default());
                    }
                    start = end;
                }
            } else if breaks {
                if !ch.is_some_and(is_break) {
                    let run = text.get(start..end).unwrap_or_default();
                    if run.first() == Some(&'\n') {
                        self.write_line_break('\n');
                    }
                    for &br in run {
                        self.write_line_break(br);
                    }
                    self.write_indent();
                    start = end;
                }
            } else if (ch.is_none() || ch.is_some_and(|c| c == ' ' || c == '\'' || is_break(c)))
                && start < end
            {
                self.write(text.get(start..end).unwrap_or_default());
                start = end;
            }
            if ch == Some('\'') {
                self.write_str("''");
                start = end + 1;
            }
            if let Some(c) = ch {
                spaces = c == ' ';
                breaks = is_break(c);
            }
        }
        self.write_indicator("'", false, false, false);
    }

    /// PyYAML's `write_double_quoted` with `allow_unicode=True`.
    fn write_double_quoted(&mut self, text: &[char], split: bool) {
        self.write_indicator("\"", true, false, false);
        let mut start = 0;
        for end in 0..=text.len() {
            let ch = text.get(end).copied();
            let escape = ch.is_none_or(|c| {
                let kept = matches!(c, ' '..='~' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}');
                !kept
                    || matches!(
                        c,
                        '"' | '\\' | '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}'
                    )
            });
            if escape {
                if start < end {
                    self.write(text.get(start..end).unwrap_or_default());
                    start = end;
                }
                if let Some(c) = ch {
                    self.write_str(&escape_char(c));
                    start = end + 1;
                }
            }
            let at_space = ch == Some(' ') || start >= end;
            if 0 < end
                && end + 1 < text.len()
                && at_space
                && self.column + end > BEST_WIDTH + start
                && split
            {
                self.write(text.get(start..end).unwrap_or_default());
                self.write_str("\\");
                start = start.max(end);
                self.write_indent();
                self.whitespace = false;
                self.indention = false;
                if text.get(start) == Some(&' ') {
                    self.write_str("\\");
                }
            }
        }
        self.write_indicator("\"", false, false, false);
    }
}

/// The characters with a one-letter double-quoted escape, and (in the same order) the letters.
const SHORT_ESCAPES: [&str; 2] = [
    "\0\x07\x08\t\n\x0b\x0c\r\x1b\"\\\u{85}\u{a0}\u{2028}\u{2029}",
    "0abtnvfre\"\\N_LP",
];

/// The double-quoted escape PyYAML writes for `c`.
fn escape_char(c: char) -> String {
    let code = c as u32;
    let [from, to] = SHORT_ESCAPES;
    match from
        .chars()
        .position(|k| k == c)
        .and_then(|i| to.chars().nth(i))
    {
        Some(letter) => format!("\\{letter}"),
        None if code <= 0xff => format!("\\x{code:02X}"),
        None if code <= 0xffff => format!("\\u{code:04X}"),
        None => format!("\\U{code:08X}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::node::Map;
    use super::super::pyfmt::python_str;
    use super::super::yaml::load_str;
    use super::*;
    use std::sync::Arc;

    fn emit(src: &str) -> String {
        to_yaml(&load_str(src, &Arc::from("t.yaml")).unwrap().unwrap())
    }

    fn one(v: &str) -> String {
        let mut m = Map::new();
        m.insert("k".into(), Node::builtin(Value::Str(v.into())));
        to_yaml(&Node::builtin(Value::Map(m)))
    }

    #[test]
    fn block_layout() {
        let src =
            "{a: 1, betas: [0.9, 0.999], nested: {x: null, y: true}, layers: [{name: a, w: 1}, \
                   [1, 2], []], empty_list: [], empty_map: {}, lr: 5e-5, big: 1e16, inf: -.inf}";
        let want = "a: 1\nbetas:\n- 0.9\n- 0.999\nnested:\n  x: null\n  'y': true\nlayers:\n\
                    - name: a\n  w: 1\n- - 1\n  - 2\n- []\nempty_list: []\nempty_map: {}\n\
                    lr: 5.0e-05\nbig: 1.0e+16\n'inf': -.inf\n";
        assert_eq!(emit(src), want);
        assert_eq!(emit("{}"), "{}\n");
        assert_eq!(emit("a: {b: [{c: 1}]}"), "a:\n  b:\n  - c: 1\n");
        assert_eq!(emit("? ''\n: [[]]\nyes: {}"), "? ''\n: - []\n'yes': {}\n");
    }

    #[test]
    fn quoting() {
        let quoted = "yes¦on¦y¦n¦N¦null¦true¦1e-4¦42¦3.0¦017¦1:30¦0x1F¦.inf¦2024-01-01¦=¦<<¦¦ a¦a ¦-¦*\
                      ¦@foo¦- a¦? a¦: a¦a: b¦a #b¦a:¦#x¦,¦[a¦]¦{¦}¦&a¦!a¦|¦>¦'¦%¦`x¦---¦...x¦~¦NaN¦inf\
                      ¦-.5¦1_000¦ 42";
        for text in quoted.split('¦') {
            let out = one(text);
            assert!(out.starts_with("k: '"), "{text:?} -> {out:?}");
        }
        let plain =
            "http://host:8080/a?b¦$x¦a-b_c.d¦foo#bar¦a;b¦ünïcødé¦${seed}¦???¦0o17¦-a¦a b¦y1¦a'b";
        for text in plain.split('¦') {
            assert_eq!(one(text), format!("k: {text}\n"), "{text:?}");
        }
        assert_eq!(one("'x'"), "k: '''x'''\n");
        assert_eq!(one("a\tb"), "k: \"a\\tb\"\n");
        assert_eq!(one("\u{7}\\\""), "k: \"\\a\\\\\\\"\"\n");
        assert_eq!(one("a\u{2028}b\u{1F600}\t"), "k: \"a\\Lb\\U0001F600\\t\"\n");
        assert_eq!(one("a\nb"), "k: 'a\n\n  b'\n");
    }

    #[test]
    fn long_text_folds_like_pyyaml() {
        let words = |n: usize| ["word"; 40][..n].join(" ");
        let want = format!("k: {}\n  {}\n", words(16), words(14));
        assert_eq!(one(&words(30)), want);
        let want = format!("k: '{}\n  {}:'\n", words(16), words(14));
        assert_eq!(one(&format!("{}:", words(30))), want);
        let tabbed = format!("{}\t", words(30));
        let want = format!("k: \"{} word\\\n  \\ {}\\t\"\n", words(15), words(14));
        assert_eq!(one(&tabbed), want);
        let key = "k".repeat(123);
        assert_eq!(emit(&format!("{key}: 1")), format!("? {key}\n: 1\n"));
        assert_eq!(
            emit(&format!("{}: 1", &key[1..])),
            format!("{}: 1\n", &key[1..])
        );
    }

    #[test]
    fn root_scalars() {
        let dump = |v: Value| to_yaml(&Node::builtin(v));
        assert_eq!(dump(Value::Null), "null\n...\n");
        assert_eq!(dump(Value::Str("a".into())), "a\n...\n");
        assert_eq!(dump(Value::Str(String::new())), "''\n");
        assert_eq!(
            dump(Value::List(vec![Node::builtin(Value::Int(1))])),
            "- 1\n"
        );
    }

    const PIECES: &str = "a¦ ¦:¦: ¦ #¦#¦-¦- ¦?¦'¦\"¦\\¦\n¦\t¦\r¦,¦[¦]¦{¦}¦&¦*¦!¦|¦>¦%¦@¦`¦ü¦日本¦😀\
                          ¦\u{a0}¦\u{2028}¦\u{85}¦\u{feff}¦\u{7}¦\0¦\u{10ffff}¦yes¦y¦null¦~¦1¦0¦1e5¦1.5\
                          ¦.5¦0x1F¦017¦1:30¦2024-01-01¦${a.b}¦???¦=¦<<¦---¦...¦.inf¦.nan¦_¦  ¦word ¦e¦+¦.";

    /// A xorshift stream producing random config trees with awkward strings and floats.
    struct Gen(u64, Vec<&'static str>);

    impl Gen {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn text(&mut self) -> String {
            let count = [0, 1, 2, 3, 4, 5, 40][self.below(7)];
            let pieces: Vec<usize> = (0..count).map(|_| self.below(self.1.len())).collect();
            pieces.into_iter().map(|i| self.1[i]).collect()
        }

        fn value(&mut self, depth: usize) -> Value {
            let size = self.below(5);
            match self.below(if depth < 4 { 10 } else { 7 }) {
                0 | 1 => Value::Str(self.text()),
                2 => Value::Int(self.0 as i64 >> self.below(64)),
                3 => Value::Float(f64::from_bits(self.0)),
                4 => Value::Float((self.0 as i64 >> self.below(64)) as f64 / 1e3),
                5 => Value::Bool(self.below(2) == 0),
                6 => Value::Null,
                7 => Value::List(
                    (0..size)
                        .map(|_| Node::builtin(self.value(depth + 1)))
                        .collect(),
                ),
                _ => Value::Map(
                    (0..size)
                        .map(|_| (self.text(), Node::builtin(self.value(depth + 1))))
                        .collect(),
                ),
            }
        }
    }

    #[test]
    fn round_trips_through_the_loader() {
        let mut gen = Gen(0x2545_f491_4f6c_dd1d, PIECES.split('¦').collect());
        let path: Arc<str> = Arc::from("rt.yaml");
        let mut maps = 0;
        while maps < 2000 {
            let value = gen.value(0);
            if !matches!(value, Value::Map(_)) {
                continue;
            }
            maps += 1;
            let text = to_yaml(&Node::builtin(value.clone()));
            // python_str is exact (repr of floats and strings), so equal text means equal trees.
            match load_str(&text, &path) {
                Ok(Some(back)) => assert_eq!(python_str(&back.value), python_str(&value), "{text}"),
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }
}

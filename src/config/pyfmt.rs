//! Python and PyYAML scalar semantics: how an unquoted YAML scalar is typed, and how Python
//! prints values back (`repr(float)`, PyYAML's float representer, `str()`).
//!
//! The typing rules are those of PyYAML's `SafeLoader` (YAML 1.1) with OmegaConf's changes: its
//! extra float resolver (which accepts `1e-4`, `1E3`, ...) and no timestamp resolver. The
//! resolver regular expressions are written as small hand-made matchers, since pulling in a
//! regex engine costs more start-up time than the whole config composition may take.
//!
//! Integers that do not fit in an `i64` stay strings (Python would give a big integer).

use super::node::Value;
use std::borrow::Cow;

/// The six YAML 1.1 boolean spellings PyYAML resolves (each in three casings).
fn bool_word(s: &str) -> Option<bool> {
    match s {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

/// True when PyYAML's null resolver matches (`~`, `null`, `Null`, `NULL` or the empty string).
pub(crate) fn is_null_word(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

/// True when PyYAML's bool resolver matches.
pub(crate) fn is_bool_word(s: &str) -> bool {
    bool_word(s).is_some()
}

/// A byte cursor for the hand-written resolver matchers.
struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    fn new(s: &'a str) -> Self {
        Cur {
            b: s.as_bytes(),
            i: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn at(&self, off: usize) -> Option<u8> {
        self.b.get(self.i + off).copied()
    }

    fn end(&self) -> bool {
        self.i >= self.b.len()
    }

    /// Consumes one byte satisfying `f`.
    fn one(&mut self, f: impl Fn(u8) -> bool) -> bool {
        match self.peek() {
            Some(c) if f(c) => {
                self.i += 1;
                true
            }
            _ => false,
        }
    }

    /// Consumes bytes while `f` holds; returns how many.
    fn many(&mut self, f: impl Fn(u8) -> bool) -> usize {
        let start = self.i;
        while self.one(&f) {}
        self.i - start
    }

    /// Consumes a literal byte string.
    fn lit(&mut self, s: &[u8]) -> bool {
        if self.b.get(self.i..self.i + s.len()) == Some(s) {
            self.i += s.len();
            true
        } else {
            false
        }
    }

    /// `[-+]?`
    fn sign(&mut self) {
        self.one(|c| c == b'-' || c == b'+');
    }

    /// `[0-9][0-9_]*`
    fn digits_us(&mut self) -> bool {
        self.one(|c| c.is_ascii_digit()) && {
            self.many(|c| c.is_ascii_digit() || c == b'_');
            true
        }
    }

    /// `(?::[0-5]?[0-9])+`
    fn sexagesimal(&mut self) -> bool {
        let mut groups = 0;
        while self.peek() == Some(b':') {
            let two = matches!(self.at(1), Some(b'0'..=b'5'))
                && matches!(self.at(2), Some(c) if c.is_ascii_digit());
            if two {
                self.i += 3;
            } else if matches!(self.at(1), Some(c) if c.is_ascii_digit()) {
                self.i += 2;
            } else {
                return false;
            }
            groups += 1;
        }
        groups > 0
    }

    /// `[eE][-+][0-9]+` (sign required) or `[eE][-+]?[0-9]+`.
    fn exponent(&mut self, sign_required: bool) -> bool {
        if !self.one(|c| c == b'e' || c == b'E') {
            return false;
        }
        let signed = self.one(|c| c == b'-' || c == b'+');
        (signed || !sign_required) && self.many(|c| c.is_ascii_digit()) > 0
    }

    /// Optional exponent followed by the end of input.
    fn opt_exponent_end(&mut self, sign_required: bool) -> bool {
        self.end() || (self.exponent(sign_required) && self.end())
    }
}

/// The special float spellings `[-+]?.inf` and `.nan` (three casings each).
fn special_float(s: &str) -> bool {
    if !s.ends_with(['f', 'F', 'n', 'N']) {
        return false;
    }
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    matches!(body, ".inf" | ".Inf" | ".INF") || matches!(s, ".nan" | ".NaN" | ".NAN")
}

/// The float alternatives shared by PyYAML and OmegaConf; `omega` selects OmegaConf's variant.
fn float_match(s: &str, omega: bool) -> bool {
    if special_float(s) {
        return true;
    }
    // [-+]?[0-9][0-9_]*\.[0-9_]*(exp)?   and (OmegaConf)   [-+]?[0-9][0-9_]*exp
    let mut c = Cur::new(s);
    c.sign();
    if c.digits_us() {
        let after_int = c.i;
        if c.lit(b".") {
            c.many(|b| b.is_ascii_digit() || b == b'_');
            if c.opt_exponent_end(!omega) {
                return true;
            }
        }
        c.i = after_int;
        if omega && c.exponent(false) && c.end() {
            return true;
        }
        // [-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*
        c.i = after_int;
        if c.sexagesimal() && c.lit(b".") {
            c.many(|b| b.is_ascii_digit() || b == b'_');
            if c.end() {
                return true;
            }
        }
    }
    // PyYAML: \.[0-9][0-9_]*(exp)?   OmegaConf: \.[0-9_]+(exp)?   (no sign allowed)
    let mut c = Cur::new(s);
    c.lit(b".")
        && (omega || matches!(c.peek(), Some(b) if b.is_ascii_digit()))
        && c.many(|b| b.is_ascii_digit() || b == b'_') > 0
        && c.opt_exponent_end(true)
}

/// True when PyYAML's float resolver matches.
pub(crate) fn is_pyyaml_float(s: &str) -> bool {
    float_match(s, false)
}

/// True when PyYAML's int resolver matches.
pub(crate) fn is_pyyaml_int(s: &str) -> bool {
    let mut c = Cur::new(s);
    c.sign();
    let start = c.i;
    if c.lit(b"0b") {
        return c.many(|b| b == b'0' || b == b'1' || b == b'_') > 0 && c.end();
    }
    if c.lit(b"0x") {
        return c.many(|b| b.is_ascii_hexdigit() || b == b'_') > 0 && c.end();
    }
    if c.lit(b"0") {
        return c.end() || (c.many(|b| matches!(b, b'0'..=b'7' | b'_')) > 0 && c.end());
    }
    c.i = start;
    if c.one(|b| matches!(b, b'1'..=b'9')) {
        c.many(|b| b.is_ascii_digit() || b == b'_');
        return c.end() || (c.sexagesimal() && c.end());
    }
    false
}

/// True when PyYAML's timestamp resolver matches (used only to decide quoting when dumping).
pub(crate) fn is_pyyaml_timestamp(s: &str) -> bool {
    let digit = |b: u8| b.is_ascii_digit();
    let mut c = Cur::new(s);
    let fixed = |c: &mut Cur, n: usize| (0..n).all(|_| c.one(digit));
    let one_or_two = |c: &mut Cur| {
        let ok = c.one(digit);
        if ok {
            c.one(digit);
        }
        ok
    };
    if !(fixed(&mut c, 4) && c.lit(b"-")) {
        return false;
    }
    let date_start = c.i;
    if fixed(&mut c, 2) && c.lit(b"-") && fixed(&mut c, 2) && c.end() {
        return true;
    }
    c.i = date_start;
    if !(one_or_two(&mut c) && c.lit(b"-") && one_or_two(&mut c)) {
        return false;
    }
    if !(c.one(|b| b == b'T' || b == b't') || c.many(|b| b == b' ' || b == b'\t') > 0) {
        return false;
    }
    if !(one_or_two(&mut c) && c.lit(b":") && fixed(&mut c, 2) && c.lit(b":") && fixed(&mut c, 2)) {
        return false;
    }
    if c.lit(b".") {
        c.many(digit);
    }
    if c.end() {
        return true;
    }
    c.many(|b| b == b' ' || b == b'\t');
    if c.lit(b"Z") {
        return c.end();
    }
    if !(c.one(|b| b == b'-' || b == b'+') && one_or_two(&mut c)) {
        return false;
    }
    c.end() || (c.lit(b":") && fixed(&mut c, 2) && c.end())
}

/// Parses `digits` (no sign, no underscores) in `radix`; `None` when empty, invalid or too big.
fn parse_radix(digits: &str, radix: u32) -> Option<i128> {
    if digits.is_empty() || !digits.chars().all(|ch| ch.is_digit(radix)) {
        return None;
    }
    i128::from_str_radix(digits, radix).ok()
}

/// PyYAML's `construct_yaml_int`: `None` when the text is not an integer or overflows `i64`.
pub(crate) fn construct_int(text: &str) -> Option<i64> {
    let cleaned: String = text.chars().filter(|&ch| ch != '_').collect();
    let negative = cleaned.starts_with('-');
    let body = cleaned.strip_prefix(['-', '+']).unwrap_or(&cleaned);
    let magnitude = if body == "0" {
        Some(0)
    } else if let Some(bin) = body.strip_prefix("0b") {
        parse_radix(bin, 2)
    } else if let Some(hex) = body.strip_prefix("0x") {
        parse_radix(hex, 16)
    } else if let Some(oct) = body.strip_prefix('0') {
        parse_radix(oct.strip_prefix(['o', 'O']).unwrap_or(oct), 8)
    } else if body.contains(':') {
        body.split(':').try_fold(0i128, |acc, part| {
            acc.checked_mul(60)?.checked_add(parse_radix(part, 10)?)
        })
    } else {
        parse_radix(body, 10)
    }?;
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// PyYAML's `construct_yaml_float`: `None` when the text is not a float.
pub(crate) fn construct_float(text: &str) -> Option<f64> {
    let cleaned = if text.bytes().any(|b| b == b'_' || b.is_ascii_uppercase()) {
        Cow::Owned(text.replace('_', "").to_lowercase())
    } else {
        Cow::Borrowed(text)
    };
    let sign = if cleaned.starts_with('-') { -1.0 } else { 1.0 };
    let body = cleaned.strip_prefix(['-', '+']).unwrap_or(&cleaned);
    let parse = |s: &str| s.parse::<f64>().ok();
    if body == ".inf" {
        Some(sign * f64::INFINITY)
    } else if body == ".nan" {
        Some(f64::NAN)
    } else if body.contains(':') {
        let mut value = 0.0;
        for part in body.split(':') {
            value = value * 60.0 + parse(part)?;
        }
        Some(sign * value)
    } else {
        parse(body).map(|v| sign * v)
    }
}

/// PyYAML's `construct_yaml_bool` (case-insensitive yes/no/true/false/on/off).
pub(crate) fn construct_bool(text: &str) -> Option<bool> {
    match text.to_lowercase().as_str() {
        "yes" | "true" | "on" => Some(true),
        "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Types an unquoted YAML scalar the way OmegaConf's PyYAML loader does.
pub fn resolve_plain_scalar(text: &str) -> Value {
    resolve_typed(text).unwrap_or_else(|| Value::Str(text.to_string()))
}

/// Like [`resolve_plain_scalar`], taking ownership so a string result needs no copy.
pub(crate) fn resolve_plain_owned(text: String) -> Value {
    resolve_typed(&text).unwrap_or(Value::Str(text))
}

/// The non-string value a plain scalar resolves to, or `None` when it stays a string.
pub(crate) fn resolve_typed(text: &str) -> Option<Value> {
    // PyYAML keys its resolvers by first character; dispatch the same way.
    match text.bytes().next() {
        None => Some(Value::Null),
        Some(b'~') => (text == "~").then_some(Value::Null),
        Some(b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O') => {
            match bool_word(text) {
                Some(b) => Some(Value::Bool(b)),
                None => is_null_word(text).then_some(Value::Null),
            }
        }
        Some(b'-' | b'+' | b'.' | b'0'..=b'9') => {
            if is_pyyaml_float(text) {
                construct_float(text).map(Value::Float)
            } else if is_pyyaml_int(text) {
                construct_int(text).map(Value::Int)
            } else if float_match(text, true) {
                construct_float(text).map(Value::Float)
            } else {
                None
            }
        }
        Some(_) => None,
    }
}

/// The shortest round-trip digits of a finite `x` in `d.ddde±x` form, breaking ties between
/// equally short candidates the way Python does (the one nearest to `x`, half to even).
fn shortest_sci(x: f64) -> String {
    let shortest = format!("{x:e}");
    let mantissa = shortest.split('e').next().unwrap_or("");
    let digits = mantissa.bytes().filter(u8::is_ascii_digit).count();
    let nearest = format!("{:.*e}", digits.saturating_sub(1), x);
    if nearest.parse::<f64>().ok() == Some(x) {
        nearest
    } else {
        shortest
    }
}

/// Python's `repr(float)`: shortest round-trip digits, scientific outside `1e-4 <= |x| < 1e16`.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sci = shortest_sci(x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|&c| c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if neg {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        } else {
            let point = exp as usize + 1;
            if digits.len() <= point {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', point - digits.len()));
                out.push_str(".0");
            } else {
                let (int_part, frac) = digits.split_at(point);
                out.push_str(int_part);
                out.push('.');
                out.push_str(frac);
            }
        }
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        out.push_str(&format!("e{sign}{:02}", exp.unsigned_abs()));
    }
    out
}

/// PyYAML's float representer: `.nan`, `.inf`, `-.inf`, else `repr` with a `.0` forced in.
pub fn yaml_float(x: f64) -> String {
    if x.is_nan() {
        return ".nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    let repr = float_repr(x).to_lowercase();
    if !repr.contains('.') && repr.contains('e') {
        repr.replacen('e', ".0e", 1)
    } else {
        repr
    }
}

/// True for characters Python's `str.isprintable()` rejects (an approximation without tables:
/// controls, separators other than the space, and common format characters).
fn py_unprintable(ch: char) -> bool {
    matches!(ch as u32,
        0..=0x1f | 0x7f..=0xa0 | 0xad | 0x1680 | 0x180e | 0x2000..=0x200f | 0x2028..=0x202f
        | 0x205f..=0x2064 | 0x2066..=0x206f | 0x3000 | 0xd800..=0xf8ff | 0xfeff
        | 0xfff9..=0xfffb | 0xe0000..=0xe007f | 0xf0000..=0x10ffff)
}

/// Python's `repr(str)`: single quotes unless the text has `'` but no `"`.
fn py_repr_str(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if py_unprintable(c) => {
                let code = c as u32;
                if code < 0x100 {
                    out.push_str(&format!("\\x{code:02x}"));
                } else if code < 0x10000 {
                    out.push_str(&format!("\\u{code:04x}"));
                } else {
                    out.push_str(&format!("\\U{code:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `repr()` of a value, as used inside printed lists and dicts.
fn py_repr(v: &Value, out: &mut String) {
    match v {
        Value::Str(s) => py_repr_str(s, out),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&item.value, out);
            }
            out.push(']');
        }
        Value::Map(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr_str(k, out);
                out.push_str(": ");
                py_repr(&item.value, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&python_str(scalar)),
    }
}

/// Python's `str()` of a value, as OmegaConf string interpolation renders it.
pub fn python_str(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => float_repr(*f),
        Value::Str(s) => s.clone(),
        Value::List(_) | Value::Map(_) => {
            let mut out = String::new();
            py_repr(v, &mut out);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::node::{Map, Node};
    use super::*;

    /// `type:python_str` of how a plain scalar resolves.
    fn typed(text: &str) -> String {
        let v = resolve_plain_scalar(text);
        format!("{}:{}", v.type_name(), python_str(&v))
    }

    #[test]
    fn plain_scalars_resolve_like_the_checker() {
        let cases = "1e-4>0.0001 5.0e-5>5e-05 .5>0.5 1.>1.0 1E3>1000.0 6.02e+23>6.02e+23 \
                     12_345.6>12345.6 -0.5>-0.5 +1.5>1.5 1:30.5>90.5 .inf>inf -.Inf>-inf \
                     +.INF>inf .NaN>nan .nan>nan ._1>0.1";
        for case in cases.split_whitespace() {
            let (text, want) = case.split_once('>').unwrap();
            assert_eq!(typed(text), format!("float:{want}"), "{text}");
        }
        let cases = "-3>-3 1_000>1000 0x1F>31 017>15 1:30>90 0b101>5 +12>12 0>0 -0x10>-16 \
                     9223372036854775807>9223372036854775807 \
                     -9223372036854775808>-9223372036854775808";
        for case in cases.split_whitespace() {
            let (text, want) = case.split_once('>').unwrap();
            assert_eq!(typed(text), format!("int:{want}"), "{text}");
        }
        for (text, want) in [("yes", true), ("No", false), ("on", true), ("OFF", false)] {
            assert_eq!(resolve_plain_scalar(text), Value::Bool(want));
        }
        for text in ["~", "null", "Null", "NULL", ""] {
            assert_eq!(resolve_plain_scalar(text), Value::Null);
        }
        let strings = "-.5 -.nan 1e e5 1.0e 9223372036854775808 0o17 09 1:60 0x y n 2024-01-01 \
                       nULL yES abc 1.2.3 ${a} ??? ._ = <<";
        for text in strings.split_whitespace() {
            assert_eq!(
                resolve_plain_scalar(text),
                Value::Str(text.into()),
                "{text}"
            );
        }
    }

    #[test]
    fn resolver_pieces() {
        assert!(is_pyyaml_timestamp("2024-01-01"));
        assert!(is_pyyaml_timestamp("2001-12-14t21:59:43.10-05:00"));
        assert!(is_pyyaml_timestamp("2001-12-14 21:59:43.10 -5"));
        assert!(is_pyyaml_timestamp("2001-1-1T1:00:00Z"));
        assert!(!is_pyyaml_timestamp("2001-1-1"));
        assert!(!is_pyyaml_timestamp("2024-01-01x"));
        assert!(!is_pyyaml_float("._1") && float_match("._1", true));
        assert_eq!(construct_int("0o17"), Some(15));
        assert_eq!(construct_int("1.5"), None);
        assert_eq!(construct_float("1"), Some(1.0));
        assert_eq!(construct_float("-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(construct_float("abc"), None);
        assert_eq!(construct_bool("TRUE"), Some(true));
        assert_eq!(construct_bool("maybe"), None);
    }

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (100.0, "100.0"),
            (0.0001, "0.0001"),
            (5e-05, "5e-05"),
            (1e16, "1e+16"),
            (1.5e-07, "1.5e-07"),
            (9999999999999998.0, "9999999999999998.0"),
            (-2.5, "-2.5"),
            (-0.0, "-0.0"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (-5_771_598_259_593_064.0 / 64.0, "-90181222806141.62"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for (x, want) in cases {
            assert_eq!(float_repr(x), want);
        }
        let yaml = [
            (5e-05, "5.0e-05"),
            (1e16, "1.0e+16"),
            (1.5e-07, "1.5e-07"),
            (0.001, "0.001"),
        ];
        for (x, want) in yaml {
            assert_eq!(yaml_float(x), want);
        }
        assert_eq!(yaml_float(f64::NAN), ".nan");
        assert_eq!(yaml_float(f64::INFINITY), ".inf");
        assert_eq!(yaml_float(f64::NEG_INFINITY), "-.inf");
    }

    #[test]
    fn python_str_of_values() {
        let b = Node::builtin;
        assert_eq!(python_str(&Value::Null), "None");
        assert_eq!(python_str(&Value::Bool(true)), "True");
        assert_eq!(python_str(&Value::Float(1e-5)), "1e-05");
        assert_eq!(python_str(&Value::Str("a'b".into())), "a'b");
        let items = [
            Value::Int(1),
            Value::Str("a".into()),
            Value::Str("it's".into()),
        ];
        let mut list: Vec<Node> = items.into_iter().map(b).collect();
        list.extend([b(Value::Null), b(Value::Float(2.0)), b(Value::Bool(false))]);
        assert_eq!(
            python_str(&Value::List(list)),
            "[1, 'a', \"it's\", None, 2.0, False]"
        );
        let mut map = Map::new();
        map.insert("k".into(), b(Value::Int(1)));
        map.insert("t".into(), b(Value::Str("x\ny\u{7}".into())));
        assert_eq!(python_str(&Value::Map(map)), "{'k': 1, 't': 'x\\ny\\x07'}");
    }
}

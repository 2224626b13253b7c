//! OmegaConf interpolation: `${a.b}`, relative `${..x}`, string interpolation and resolvers.
//!
//! Semantics kept from OmegaConf 2.3:
//! * a value that is exactly one `${...}` keeps the target's type (int stays int, a dict is copied);
//! * a string with interpolations inside it is built with Python's `str()` of each part;
//! * `\${x}` is the literal text `${x}`;
//! * anything that depends on a `???` value resolves to `???`;
//! * resolvers: `oc.env`, `oc.decode`, `oc.select`, `oc.create`, `now`, `hydra`, and flowrun's
//!   own `flowrun` (machine settings such as `outputs_root` and `data_root`).

use super::error::{did_you_mean, ConfigError};
use super::node::{Node, Value, MISSING};
use super::overrides::{Override, OverrideValue};
use super::pyfmt::python_str;
use chrono::{DateTime, Local};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The resolvers flowrun knows, for error messages.
pub const RESOLVERS: &[&str] = &[
    "oc.env",
    "oc.decode",
    "oc.select",
    "oc.create",
    "now",
    "hydra",
    "flowrun",
];

/// Inputs of resolution that do not come from the config itself.
#[derive(Debug, Clone)]
pub struct ResolveContext {
    /// The run's start time, used by every `${now:...}` so they agree.
    pub now: DateTime<Local>,
    /// Values served by `${flowrun:KEY}` (machine settings).
    pub machine: BTreeMap<String, String>,
}

impl ResolveContext {
    /// A context for "now" with the given machine settings.
    pub fn new(machine: BTreeMap<String, String>) -> Self {
        ResolveContext {
            now: Local::now(),
            machine,
        }
    }
}

/// Resolves interpolations of one config lazily, memoising each key once.
pub struct Resolver<'a> {
    root: &'a Node,
    ctx: &'a ResolveContext,
    memo: HashMap<String, Node>,
    active: HashSet<String>,
}

enum Segment<'s> {
    Text(String),
    Interp(&'s str),
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn missing_node(origin: &Node) -> Node {
    Node::new(Value::Str(MISSING.into()), origin.origin.clone())
}

/// Finds the `}` closing an interpolation that starts right after `${` at byte `start`.
fn closing_brace(s: &str, start: usize) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 1usize;
    let mut quote: Option<u8> = None;
    let mut i = start;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) if b == b'\\' => i += 1,
            Some(_) => {}
            None => match b {
                b'\\' => i += 1,
                b'\'' | b'"' => quote = Some(b),
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    None
}

fn split_segments(s: &str) -> Result<Vec<Segment<'_>>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    let bytes = s.as_bytes();
    while i < bytes.len() {
        if s[i..].starts_with("\\\\${") {
            text.push('\\');
            i += 2;
            continue;
        }
        if s[i..].starts_with("\\${") {
            text.push_str("${");
            i += 3;
            continue;
        }
        if s[i..].starts_with("${") {
            let end = closing_brace(s, i + 2)
                .ok_or_else(|| format!("unterminated interpolation in '{s}'"))?;
            if !text.is_empty() {
                out.push(Segment::Text(std::mem::take(&mut text)));
            }
            out.push(Segment::Interp(&s[i + 2..end]));
            i = end + 1;
            continue;
        }
        let ch_len = s[i..].chars().next().map(char::len_utf8).unwrap_or(1);
        text.push_str(&s[i..i + ch_len]);
        i += ch_len;
    }
    if !text.is_empty() {
        out.push(Segment::Text(text));
    }
    Ok(out)
}

/// Splits resolver arguments at top-level commas.
fn split_args(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let (mut depth, mut quote, mut start, mut i) = (0i32, None::<u8>, 0usize, 0usize);
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'\\' => i += 1,
                b'\'' | b'"' => quote = Some(b),
                b'{' | b'[' | b'(' => depth += 1,
                b'}' | b']' | b')' => depth -= 1,
                b',' if depth == 0 => {
                    out.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            },
        }
        i += 1;
    }
    out.push(s.get(start..).unwrap_or(""));
    out
}

/// Types a resolver argument or `oc.decode` input with the override grammar (ints, floats, bools, null, lists).
pub fn decode_text(text: &str, origin: &Node) -> Node {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Node::new(Value::Str(String::new()), origin.origin.clone());
    }
    match Override::parse(&format!("_={trimmed}")) {
        Ok(Override {
            value: OverrideValue::Element(e),
            ..
        }) => e.to_node(&origin.origin),
        _ => Node::new(Value::Str(trimmed.to_string()), origin.origin.clone()),
    }
}

impl<'a> Resolver<'a> {
    /// A resolver over `root` (the whole config, `hydra` node included).
    pub fn new(root: &'a Node, ctx: &'a ResolveContext) -> Self {
        Resolver {
            root,
            ctx,
            memo: HashMap::new(),
            active: HashSet::new(),
        }
    }

    /// The fully resolved copy of the node at dotted `path` (`""` for the root).
    pub fn resolved(&mut self, path: &str) -> Result<Node, ConfigError> {
        if let Some(hit) = self.memo.get(path) {
            return Ok(hit.clone());
        }
        if !self.active.insert(path.to_string()) {
            let raw = self.root.select(path);
            return Err(ConfigError::Interpolation {
                key: path.to_string(),
                origin: raw.map(|n| n.origin.to_string()).unwrap_or_default(),
                expression: raw.and_then(|n| n.value.as_str()).unwrap_or("").to_string(),
                message: "circular interpolation".into(),
                hint: Some("break the cycle by giving one of the keys a plain value".into()),
            });
        }
        let raw = self
            .root
            .select(path)
            .ok_or_else(|| ConfigError::Interpolation {
                key: path.to_string(),
                origin: String::new(),
                expression: String::new(),
                message: format!("key '{path}' not found"),
                hint: None,
            })?;
        let out = match &raw.value {
            Value::Map(m) => {
                let mut new = super::node::Map::with_capacity(m.len());
                for k in m.keys() {
                    new.insert(k.clone(), self.resolved(&join_key(path, k))?);
                }
                Node::new(Value::Map(new), raw.origin.clone())
            }
            Value::List(items) => {
                let mut new = Vec::with_capacity(items.len());
                for i in 0..items.len() {
                    new.push(self.resolved(&join_key(path, &i.to_string()))?);
                }
                Node::new(Value::List(new), raw.origin.clone())
            }
            Value::Str(s) if s.contains("${") => self.resolve_string(path, s, raw)?,
            _ => raw.clone(),
        };
        self.active.remove(path);
        self.memo.insert(path.to_string(), out.clone());
        Ok(out)
    }

    fn error(
        &self,
        key: &str,
        node: &Node,
        expression: &str,
        message: String,
        hint: Option<String>,
    ) -> ConfigError {
        ConfigError::Interpolation {
            key: key.to_string(),
            origin: node.origin.to_string(),
            expression: expression.to_string(),
            message,
            hint,
        }
    }

    /// Resolves the string `s` held at `key`.
    fn resolve_string(&mut self, key: &str, s: &str, at: &Node) -> Result<Node, ConfigError> {
        let segments = split_segments(s).map_err(|m| self.error(key, at, s, m, None))?;
        if let [Segment::Interp(inner)] = segments.as_slice() {
            return self.eval(key, inner, at);
        }
        let mut out = String::new();
        for seg in &segments {
            match seg {
                Segment::Text(t) => out.push_str(t),
                Segment::Interp(inner) => {
                    let v = self.eval(key, inner, at)?;
                    if v.value.is_missing() {
                        return Ok(missing_node(at));
                    }
                    out.push_str(&python_str(&v.value));
                }
            }
        }
        Ok(Node::new(Value::Str(out), at.origin.clone()))
    }

    /// Evaluates the inside of one `${...}` appearing at `key`.
    fn eval(&mut self, key: &str, inner: &str, at: &Node) -> Result<Node, ConfigError> {
        let expr = format!("${{{inner}}}");
        let inner_resolved;
        let inner = if inner.contains("${") && !is_resolver_call(inner) {
            let v = self.resolve_string(key, inner, at)?;
            inner_resolved = python_str(&v.value);
            inner_resolved.as_str()
        } else {
            inner
        };
        if let Some((name, args)) = resolver_call(inner) {
            return self.call(key, name, args, at, &expr);
        }
        let target = self.target_path(key, inner.trim());
        if self.root.select(&target).is_none() {
            let hint = self
                .suggest_key(&target)
                .map(|s| format!("did you mean ${{{s}}}?"));
            return Err(self.error(
                key,
                at,
                &expr,
                format!("Interpolation key '{}' not found", inner.trim()),
                hint,
            ));
        }
        let v = self.resolved(&target)?;
        if v.value.is_missing() {
            return Ok(missing_node(at));
        }
        Ok(v)
    }

    fn suggest_key(&self, target: &str) -> Option<String> {
        let (parent, last) = match target.rsplit_once('.') {
            Some((p, l)) => (self.root.select(p)?, l),
            None => (self.root, target),
        };
        let keys = parent.value.as_map()?.keys().map(String::as_str);
        let best = did_you_mean(last, keys)?;
        Some(match target.rsplit_once('.') {
            Some((p, _)) => format!("{p}.{best}"),
            None => best.to_string(),
        })
    }

    /// The absolute dotted path that an interpolation key at `key` refers to.
    fn target_path(&self, key: &str, reference: &str) -> String {
        let reference = reference.replace('[', ".").replace(']', "");
        let dots = reference.chars().take_while(|c| *c == '.').count();
        let rest = &reference[dots..];
        if dots == 0 {
            return rest.to_string();
        }
        let mut parts: Vec<&str> = key.split('.').collect();
        parts.pop();
        for _ in 1..dots {
            parts.pop();
        }
        let base = parts.join(".");
        join_key(&base, rest)
    }

    fn arg(&mut self, key: &str, raw: &str, at: &Node) -> Result<Node, ConfigError> {
        let t = raw.trim();
        let quoted = t.len() >= 2
            && ((t.starts_with('\'') && t.ends_with('\''))
                || (t.starts_with('"') && t.ends_with('"')));
        if quoted {
            let q = &t[..1];
            let body = t[1..t.len() - 1].replace(&format!("\\{q}"), q);
            if body.contains("${") {
                let v = self.resolve_string(key, &body, at)?;
                return Ok(Node::new(
                    Value::Str(python_str(&v.value)),
                    at.origin.clone(),
                ));
            }
            return Ok(Node::new(Value::Str(body), at.origin.clone()));
        }
        if t.contains("${") {
            return self.resolve_string(key, t, at);
        }
        Ok(decode_text(t, at))
    }

    fn call(
        &mut self,
        key: &str,
        name: &str,
        args: &str,
        at: &Node,
        expr: &str,
    ) -> Result<Node, ConfigError> {
        let raw_args = split_args(args);
        let text = |n: &Node| python_str(&n.value);
        match name {
            "oc.env" => {
                let var = self.arg(key, raw_args[0], at)?;
                let var = text(&var);
                match std::env::var(&var) {
                    Ok(v) => Ok(Node::new(Value::Str(v), at.origin.clone())),
                    Err(_) if raw_args.len() > 1 => {
                        let d = self.arg(key, raw_args[1], at)?;
                        if d.value.is_missing() {
                            return Ok(missing_node(at));
                        }
                        Ok(match d.value {
                            Value::Null => Node::new(Value::Null, at.origin.clone()),
                            other => Node::new(Value::Str(python_str(&other)), at.origin.clone()),
                        })
                    }
                    Err(_) => Err(self.error(
                        key,
                        at,
                        expr,
                        format!("Environment variable '{var}' not found"),
                        Some(format!("set it (export {var}=...) or give a default: ${{oc.env:{var},DEFAULT}}")),
                    )),
                }
            }
            "oc.decode" => {
                let v = self.arg(key, raw_args[0], at)?;
                match &v.value {
                    Value::Str(s) => Ok(decode_text(s, at)),
                    _ => Ok(v),
                }
            }
            "oc.create" => self.arg(key, args, at),
            "oc.select" => {
                let reference = text(&self.arg(key, raw_args[0], at)?);
                let target = self.target_path(key, &reference);
                match self.root.select(&target) {
                    Some(n) if !n.value.is_missing() => self.resolved(&target),
                    _ if raw_args.len() > 1 => self.arg(key, raw_args[1], at),
                    _ => Ok(Node::new(Value::Null, at.origin.clone())),
                }
            }
            "now" => {
                let fmt = text(&self.arg(key, args, at)?);
                let mut out = String::new();
                use std::fmt::Write as _;
                write!(out, "{}", self.ctx.now.format(&fmt)).map_err(|_| {
                    self.error(
                        key,
                        at,
                        expr,
                        format!("invalid time format '{fmt}'"),
                        Some("use strftime codes such as %Y-%m-%d_%H-%M-%S".into()),
                    )
                })?;
                Ok(Node::new(Value::Str(out), at.origin.clone()))
            }
            "hydra" => {
                let target = format!("hydra.{}", text(&self.arg(key, args, at)?));
                if self.root.select(&target).is_none() {
                    return Err(self.error(
                        key,
                        at,
                        expr,
                        format!("'{target}' is not set"),
                        Some("see --cfg hydra for the available keys".into()),
                    ));
                }
                self.resolved(&target)
            }
            "flowrun" => {
                let name = text(&self.arg(key, args, at)?);
                match self.ctx.machine.get(&name) {
                    Some(v) => Ok(Node::new(Value::Str(v.clone()), at.origin.clone())),
                    None => Err(self.error(
                        key,
                        at,
                        expr,
                        format!("unknown machine setting '{name}'"),
                        Some(format!(
                            "available: {}",
                            self.ctx
                                .machine
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    )),
                }
            }
            other => {
                let hint = match did_you_mean(other, RESOLVERS.iter().copied()) {
                    Some(s) => format!(
                        "did you mean '{s}'? available resolvers: {}",
                        RESOLVERS.join(", ")
                    ),
                    None => format!("available resolvers: {}", RESOLVERS.join(", ")),
                };
                Err(self.error(
                    key,
                    at,
                    expr,
                    format!("Unsupported interpolation type {other}"),
                    Some(hint),
                ))
            }
        }
    }
}

fn is_resolver_call(inner: &str) -> bool {
    resolver_call(inner).is_some()
}

/// Splits `name:args` when `inner` is a resolver call.
fn resolver_call(inner: &str) -> Option<(&str, &str)> {
    let inner = inner.trim_start();
    let end =
        inner.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'))?;
    if inner[end..].starts_with(':') && end > 0 {
        Some((&inner[..end], &inner[end + 1..]))
    } else {
        None
    }
}

/// Every `???` left in a resolved tree, as (dotted key, origin).
pub fn find_missing(node: &Node, path: &str, out: &mut Vec<super::error::MissingValue>) {
    match &node.value {
        Value::Map(m) => {
            for (k, v) in m {
                find_missing(v, &join_key(path, k), out);
            }
        }
        Value::List(items) => {
            for (i, v) in items.iter().enumerate() {
                find_missing(v, &join_key(path, &i.to_string()), out);
            }
        }
        v if v.is_missing() => out.push(super::error::MissingValue {
            key: path.to_string(),
            origin: node.origin.to_string(),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::load_str;
    use std::sync::Arc;

    fn resolve(text: &str) -> Result<Node, ConfigError> {
        let root = load_str(text, &Arc::from("t.yaml")).unwrap().unwrap();
        let ctx = ResolveContext::new(BTreeMap::from([(
            "data_root".to_string(),
            "/d".to_string(),
        )]));
        Resolver::new(&root, &ctx).resolved("")
    }

    #[test]
    fn keeps_types_and_formats_strings_like_python() {
        let n = resolve(
            "a: 1e-4\nb: ${a}\nc: x${a}_${d}\nd: true\ne: ${.a}\nf: {g: '${..a}'}\nh: '\\${a}'\n",
        )
        .unwrap();
        assert_eq!(n.select("b").unwrap().value, Value::Float(1e-4));
        assert_eq!(
            n.select("c").unwrap().value,
            Value::Str("x0.0001_True".into())
        );
        assert_eq!(n.select("e").unwrap().value, Value::Float(1e-4));
        assert_eq!(n.select("f.g").unwrap().value, Value::Float(1e-4));
        assert_eq!(n.select("h").unwrap().value, Value::Str("${a}".into()));
    }

    #[test]
    fn missing_propagates_and_unknown_keys_fail() {
        let n = resolve("a: ???\nb: ${a}\nc: s${a}\n").unwrap();
        assert!(n.select("b").unwrap().value.is_missing());
        assert!(n.select("c").unwrap().value.is_missing());
        let e = resolve("a: ${nope.key}\n").unwrap_err().to_string();
        assert!(e.contains("nope.key"), "{e}");
        assert!(resolve("a: ${b}\nb: ${a}\n")
            .unwrap_err()
            .to_string()
            .contains("circular"));
    }

    #[test]
    fn resolvers() {
        let n = resolve("s: 3\na: ${oc.env:FLOWRUN_TEST_UNSET_VAR,4}\nb: ${oc.env:FLOWRUN_TEST_UNSET_VAR,null}\nc: ${oc.decode:'8'}\nd: ${oc.env:FLOWRUN_TEST_UNSET_VAR,${s}}\ne: ${flowrun:data_root}/x\n").unwrap();
        assert_eq!(n.select("a").unwrap().value, Value::Str("4".into()));
        assert_eq!(n.select("b").unwrap().value, Value::Null);
        assert_eq!(n.select("c").unwrap().value, Value::Int(8));
        assert_eq!(n.select("d").unwrap().value, Value::Str("3".into()));
        assert_eq!(n.select("e").unwrap().value, Value::Str("/d/x".into()));
        assert!(resolve("a: ${oc.nv:X}\n")
            .unwrap_err()
            .to_string()
            .contains("oc.nv"));
    }
}

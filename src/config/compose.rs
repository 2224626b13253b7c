//! Merging the defaults list into one config and applying value overrides in struct mode.
//!
//! Merge rules are OmegaConf's: dictionaries merge key by key (a key keeps the position of its
//! first appearance), anything else is replaced, and a `???` never replaces a concrete value.
//! After the merge the config is closed ("struct mode"): `key=v` may only change existing keys,
//! `+key=v` only adds new ones, and `++key=v` does either.

use super::defaults::{build_defaults_list, DefaultsList};
use super::error::{did_you_mean, ConfigError};
use super::node::{Map, Node, Origin, Value};
use super::overrides::{Element, Override, OverrideKind, OverrideValue};
use super::repo::ConfigRepository;
use std::sync::Arc;

/// A composed config before interpolation, with everything needed to explain it.
#[derive(Debug, Clone)]
pub struct Composed {
    /// The whole config, `hydra` node included.
    pub root: Node,
    /// The expanded defaults list.
    pub defaults: DefaultsList,
}

/// OmegaConf's merge of `src` into `dest`.
pub fn merge_into(dest: &mut Node, src: Node) {
    if let (Value::Map(d), Value::Map(_)) = (&mut dest.value, &src.value) {
        let Value::Map(s) = src.value else { return };
        for (k, v) in s {
            match d.get_mut(&k) {
                Some(existing) => merge_into(existing, v),
                None => {
                    d.insert(k, v);
                }
            }
        }
        return;
    }
    if src.value.is_missing() && !dest.value.is_missing() {
        return;
    }
    *dest = src;
}

/// Wraps `content` so that it sits at the dotted `package` (`""` is the root).
fn embed_at_package(content: Node, package: &str) -> Node {
    if package.is_empty() {
        return content;
    }
    let origin = content.origin.clone();
    let mut node = content;
    for part in package.rsplit('.') {
        let mut m = Map::new();
        m.insert(part.to_string(), node);
        node = Node::new(Value::Map(m), origin.clone());
    }
    node
}

/// Composes the primary config `config_name` with `overrides` on top of the `hydra` base node.
pub fn compose(
    repo: &ConfigRepository,
    config_name: &str,
    overrides: &[Override],
    hydra_base: Node,
    skip_missing: bool,
) -> Result<Composed, ConfigError> {
    let config_name = config_name.strip_suffix(".yaml").unwrap_or(config_name);
    let defaults = build_defaults_list(repo, config_name, overrides, skip_missing)?;
    let mut root = Node::builtin(Value::Map(Map::new()));
    if let Value::Map(m) = &mut root.value {
        m.insert("hydra".into(), hydra_base);
    }
    for d in &defaults.defaults {
        let Some(loaded) = repo.load(&d.config_path)? else {
            continue;
        };
        merge_into(
            &mut root,
            embed_at_package(loaded.content.clone(), &d.package),
        );
    }
    for ov in &defaults.config_overrides {
        apply_override(&mut root, ov, repo)?;
    }
    Ok(Composed { root, defaults })
}

fn not_in_struct(ov: &Override, missing: &str) -> ConfigError {
    ConfigError::composition_with_hint(
        format!(
            "Could not override '{}'.\nTo append to your config use +{}\nKey '{missing}' is not in struct",
            ov.key, ov.input
        ),
        format!("the key '{}' does not exist; add it with +{}", ov.key, ov.input),
    )
}

fn key_suggestion(root: &Node, key: &str) -> Option<String> {
    let (parent, last) = match key.rsplit_once('.') {
        Some((p, l)) => (root.select(p)?, l),
        None => (root, key),
    };
    let map = parent.value.as_map()?;
    let best = did_you_mean(last, map.keys().map(String::as_str))?;
    Some(match key.rsplit_once('.') {
        Some((p, _)) => format!("{p}.{best}"),
        None => best.to_string(),
    })
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => (*x as f64) == *y,
        (Value::Bool(x), Value::Int(y)) | (Value::Int(y), Value::Bool(x)) => i64::from(*x) == *y,
        _ => a == b,
    }
}

/// Applies one value override (`k=v`, `+k=v`, `++k=v`, `~k[=v]`) to a composed config.
pub fn apply_override(
    root: &mut Node,
    ov: &Override,
    repo: &ConfigRepository,
) -> Result<(), ConfigError> {
    if let Some(pkg) = &ov.package {
        let groups = repo.all_groups();
        let hint = match did_you_mean(&ov.key, groups.iter().map(String::as_str)) {
            Some(g) => format!(
                "did you mean {g}@{pkg}=...? available groups: {}",
                groups.join(", ")
            ),
            None => format!("available groups: {}", groups.join(", ")),
        };
        return Err(ConfigError::composition_with_hint(
            format!(
                "Override {} looks like a config group override, but config group '{}' does not exist.",
                ov.input, ov.key
            ),
            hint,
        ));
    }
    let origin = Origin::Override(Arc::from(ov.input.as_str()));
    let value = match &ov.value {
        OverrideValue::Element(e) => Some(e.to_node(&origin)),
        OverrideValue::Absent => None,
        OverrideValue::Sweep(_) => {
            return Err(ConfigError::composition(format!(
                "the sweep '{}' must be expanded before it is applied",
                ov.input
            )))
        }
    };
    let key = ov.key.as_str();
    match ov.kind {
        OverrideKind::Delete => {
            let current = root.select(key).map(|n| n.value.clone());
            match current {
                None | Some(Value::Null) => {
                    let hint = key_suggestion(root, key)
                        .map(|k| format!("did you mean ~{k}?"))
                        .unwrap_or_else(|| "check the key with --cfg job".into());
                    return Err(ConfigError::composition_with_hint(
                        format!("Could not delete from config. '{key}' does not exist."),
                        hint,
                    ));
                }
                Some(cur) => {
                    if let Some(v) = &value {
                        let empty = matches!(&ov.value, OverrideValue::Element(Element::Str { text, quoted: false }) if text.is_empty());
                        if !empty && !values_equal(&v.value, &cur) {
                            return Err(ConfigError::composition_with_hint(
                                format!(
                                    "Could not delete from config. The value of '{key}' is {} and not {}.",
                                    super::pyfmt::python_str(&cur),
                                    super::pyfmt::python_str(&v.value)
                                ),
                                format!("use ~{key} to delete it whatever its value"),
                            ));
                        }
                    }
                }
            }
            delete_key(root, key);
            Ok(())
        }
        OverrideKind::Add => {
            let value = value.unwrap_or_else(|| Node::new(Value::Str(String::new()), origin));
            let exists = !matches!(root.select(key).map(|n| &n.value), None | Some(Value::Null));
            if exists && !matches!(value.value, Value::Map(_) | Value::List(_)) {
                let rest = ov.input.get(1..).unwrap_or("");
                return Err(ConfigError::composition_with_hint(
                    format!(
                        "Could not append to config. An item is already at '{key}'.\nEither remove + prefix: '{rest}'\nOr add a second + to add or override '{key}': '+{}'",
                        ov.input
                    ),
                    format!("use {rest} to change it, or +{} to add or change", ov.input),
                ));
            }
            update(root, key, value, true).map_err(|m| not_in_struct(ov, &m))
        }
        OverrideKind::ForceAdd => {
            let value = value.unwrap_or_else(|| Node::new(Value::Str(String::new()), origin));
            update(root, key, value, true).map_err(|m| not_in_struct(ov, &m))
        }
        OverrideKind::ExtendList => {
            let value = value.unwrap_or_else(|| Node::new(Value::List(Vec::new()), origin));
            match (root.select_mut(key), value.value) {
                (Some(Node { value: Value::List(items), .. }), Value::List(extra)) => {
                    items.extend(extra);
                    Ok(())
                }
                _ => Err(ConfigError::composition(format!(
                    "Could not extend '{key}': extend_list() needs an existing list and list values ('{}')",
                    ov.input
                ))),
            }
        }
        OverrideKind::Change => {
            let value = value.unwrap_or_else(|| Node::new(Value::Str(String::new()), origin));
            update(root, key, value, false).map_err(|missing| {
                let mut err = not_in_struct(ov, &missing);
                if let (Some(s), ConfigError::Composition { hint, .. }) =
                    (key_suggestion(root, key), &mut err)
                {
                    *hint = Some(format!(
                        "did you mean {s}? To add '{key}' as a new key use +{}",
                        ov.input
                    ));
                }
                err
            })
        }
    }
}

fn delete_key(root: &mut Node, key: &str) {
    let (parent, last) = match key.rsplit_once('.') {
        Some((p, l)) => (root.select_mut(p), l),
        None => (Some(root), key),
    };
    match parent.map(|p| &mut p.value) {
        Some(Value::Map(m)) => {
            m.shift_remove(last);
        }
        Some(Value::List(items)) => {
            if let Ok(i) = last.parse::<usize>() {
                if i < items.len() {
                    items.remove(i);
                }
            }
        }
        _ => {}
    }
}

/// OmegaConf's `update(cfg, key, value, merge=True)`; `Err` carries the key missing in struct mode.
fn update(root: &mut Node, key: &str, value: Node, force_add: bool) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let (last, inner) = parts.split_last().ok_or_else(|| key.to_string())?;
    let mut cur = root;
    for part in inner {
        let is_container = matches!(
            cur.child(part).map(|n| &n.value),
            Some(Value::Map(_) | Value::List(_))
        );
        if !is_container {
            let exists = cur.child(part).is_some();
            match &mut cur.value {
                Value::Map(m) if exists || force_add => {
                    m.insert(part.to_string(), Node::empty_map(value.origin.clone()));
                }
                _ => return Err(part.to_string()),
            }
        }
        cur = cur.child_mut(part).ok_or_else(|| part.to_string())?;
    }
    let existing_is_container = matches!(
        cur.child(last).map(|n| &n.value),
        Some(Value::Map(_) | Value::List(_))
    );
    if existing_is_container && matches!(value.value, Value::Map(_) | Value::List(_)) {
        let target = cur.child_mut(last).ok_or_else(|| last.to_string())?;
        return merge_override(target, value, force_add);
    }
    match &mut cur.value {
        Value::Map(m) => {
            if !force_add && !m.contains_key(*last) {
                return Err(last.to_string());
            }
            m.insert(last.to_string(), value);
            Ok(())
        }
        Value::List(items) => {
            let slot = last
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get_mut(i))
                .ok_or_else(|| last.to_string())?;
            *slot = value;
            Ok(())
        }
        _ => Err(last.to_string()),
    }
}

/// Merges an override value into an existing dict or list; new dict keys need `force_add`.
fn merge_override(target: &mut Node, value: Node, force_add: bool) -> Result<(), String> {
    match (&mut target.value, value.value) {
        (Value::Map(dest), Value::Map(src)) => {
            for (k, v) in src {
                match dest.get_mut(&k) {
                    Some(existing)
                        if matches!(existing.value, Value::Map(_))
                            && matches!(v.value, Value::Map(_)) =>
                    {
                        merge_override(existing, v, force_add)?;
                    }
                    Some(existing) => {
                        if !v.value.is_missing() || existing.value.is_missing() {
                            *existing = v;
                        }
                    }
                    None if force_add => {
                        dest.insert(k, v);
                    }
                    None => return Err(k),
                }
            }
            Ok(())
        }
        (Value::List(_), Value::List(src)) => {
            target.value = Value::List(src);
            target.origin = value.origin;
            Ok(())
        }
        (_, other) => {
            target.value = other;
            target.origin = value.origin;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::load_str;

    fn node(text: &str) -> Node {
        load_str(text, &Arc::from("t.yaml")).unwrap().unwrap()
    }

    fn repo() -> ConfigRepository {
        ConfigRepository::new(Vec::new())
    }

    fn apply(root: &mut Node, text: &str) -> Result<(), ConfigError> {
        apply_override(root, &Override::parse(text).unwrap(), &repo())
    }

    #[test]
    fn merge_keeps_first_position_and_does_not_clobber_with_missing() {
        let mut a = node("x: 1\nm: {a: 1, b: ???}\ny: 2\n");
        merge_into(&mut a, node("m: {b: 3, a: ???, c: 4}\nx: [1]\n"));
        let keys: Vec<_> = a.value.as_map().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["x", "m", "y"]);
        assert_eq!(a.select("m.a").unwrap().value, Value::Int(1));
        assert_eq!(a.select("m.b").unwrap().value, Value::Int(3));
        assert!(matches!(a.select("x").unwrap().value, Value::List(_)));
    }

    #[test]
    fn struct_mode_rules() {
        let mut cfg = node("seed: 1\nopt: {lr: 0.1, betas: [0.9, 0.99]}\nnote: null\n");
        assert!(apply(&mut cfg, "nokey=1").is_err());
        assert!(apply(&mut cfg, "+seed=2").is_err());
        apply(&mut cfg, "+note=x").unwrap();
        apply(&mut cfg, "++seed=3").unwrap();
        apply(&mut cfg, "+a.b.c=1").unwrap();
        assert!(apply(&mut cfg, "opt={lr:0.2,extra:1}").is_err());
        apply(&mut cfg, "opt={lr:0.2}").unwrap();
        apply(&mut cfg, "opt.betas=[0.5]").unwrap();
        apply(&mut cfg, "opt.betas.0=0.7").unwrap();
        assert_eq!(cfg.select("opt.lr").unwrap().value, Value::Float(0.2));
        assert_eq!(cfg.select("opt.betas.0").unwrap().value, Value::Float(0.7));
        assert_eq!(cfg.select("a.b.c").unwrap().value, Value::Int(1));
        assert!(apply(&mut cfg, "~seed=4").is_err());
        apply(&mut cfg, "~seed=3").unwrap();
        assert!(cfg.select("seed").is_none());
        assert!(apply(&mut cfg, "~seed").is_err());
    }

    #[test]
    fn package_embedding_nests_content() {
        let n = embed_at_package(node("a: 1\n"), "model.path");
        assert_eq!(n.select("model.path.a").unwrap().value, Value::Int(1));
    }
}

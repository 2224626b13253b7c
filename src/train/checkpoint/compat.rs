//! May a checkpoint be resumed under a new config? The checkpoint's resolved config is compared
//! with the new one key by key:
//!
//! * refused: any change under `model` (the network, the probability path, EMA; but not
//!   `model.sampler`, which only draws samples), under `data` (but not its loading knobs
//!   `num_workers`, `cache`, `cache_dir`), and `batch_size`, `seed`, `image_size` (they change
//!   what the data cursor and the RNG streams mean);
//! * allowed, and reported so the run can print them: everything else (`max_epochs`,
//!   `trainer.max_steps`, logging and checkpoint cadence, the optimizer, ...);
//! * ignored: `ckpt_path` itself.

use crate::config::node::{Node, Value};
use crate::config::yaml::load_str;
use std::fmt;
use std::sync::Arc;

/// Keys under `data` that only change how the same data is loaded.
const DATA_LOADING_KEYS: &[&str] = &["num_workers", "cache", "cache_dir"];
/// Top-level keys that change what the saved data cursor and RNG streams mean.
const RUN_IDENTITY_KEYS: &[&str] = &["batch_size", "seed", "image_size"];
/// Keys that differ between a run and its resume by design.
const IGNORED_KEYS: &[&str] = &["ckpt_path"];

/// One key whose value differs between the checkpoint's config and the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// The dotted key.
    pub key: String,
    /// The checkpoint's value (None: absent there).
    pub old: Option<String>,
    /// The new value (None: absent now).
    pub new: Option<String>,
}

impl fmt::Display for ConfigChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".to_string());
        write!(f, "{}: {} → {}", self.key, show(&self.old), show(&self.new))
    }
}

/// Why a run cannot be resumed under the new config.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResumeError {
    /// Keys that define the model or its data changed.
    #[error(
        "cannot resume: the new config changes keys that a resumed run must keep (the model, \
         its path, the data, batch_size, seed):\n{}\nresume without these overrides, or drop \
         ckpt_path to train the changed config as a new run",
        list(.changes)
    )]
    Refused {
        /// The refused changes.
        changes: Vec<ConfigChange>,
    },
    /// The checkpoint's config text cannot be read back.
    #[error("the config stored in the checkpoint cannot be read ({detail}); the file is damaged")]
    UnreadableConfig {
        /// The YAML error.
        detail: String,
    },
}

fn list(changes: &[ConfigChange]) -> String {
    changes
        .iter()
        .map(|c| format!("  {c}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether changing `key` is refused on resume.
pub fn is_refused(key: &str) -> bool {
    let mut parts = key.split('.');
    let first = parts.next().unwrap_or_default();
    let second = parts.next().unwrap_or_default();
    match first {
        "model" => second != "sampler",
        "data" => !DATA_LOADING_KEYS.contains(&second),
        _ => RUN_IDENTITY_KEYS.contains(&first),
    }
}

/// Compares the checkpoint's job config `old` with the `new` one: the allowed changes, or the
/// refusal listing every refused change.
pub fn check_resume(old: &Node, new: &Node) -> Result<Vec<ConfigChange>, ResumeError> {
    let mut changes = config_diff(old, new);
    changes.retain(|c| !IGNORED_KEYS.contains(&c.key.as_str()));
    let (refused, allowed): (Vec<_>, Vec<_>) =
        changes.into_iter().partition(|c| is_refused(&c.key));
    if refused.is_empty() {
        Ok(allowed)
    } else {
        Err(ResumeError::Refused { changes: refused })
    }
}

/// [`check_resume`] with the checkpoint's config given as its stored YAML text.
pub fn check_resume_yaml(old_yaml: &str, new: &Node) -> Result<Vec<ConfigChange>, ResumeError> {
    let old = load_str(old_yaml, &Arc::from("<checkpoint config>"))
        .map_err(|e| ResumeError::UnreadableConfig {
            detail: e.to_string(),
        })?
        .unwrap_or_else(|| Node::builtin(Value::Map(Default::default())));
    check_resume(&old, new)
}

/// Every leaf key whose value differs between the config trees `old` and `new`, in `old`'s key
/// order followed by the keys only `new` has (`1` equals `1.0`; origins are ignored).
pub fn config_diff(old: &Node, new: &Node) -> Vec<ConfigChange> {
    let mut changes = Vec::new();
    diff("", Some(&old.value), Some(&new.value), &mut changes);
    changes
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn diff(key: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<ConfigChange>) {
    if let (Some(Value::Map(a)), Some(Value::Map(b))) = (old, new) {
        for (k, v) in a {
            diff(
                &join(key, k),
                Some(&v.value),
                b.get(k).map(|n| &n.value),
                out,
            );
        }
        for (k, v) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
            diff(&join(key, k), None, Some(&v.value), out);
        }
        return;
    }
    let same = match (old, new) {
        (Some(a), Some(b)) => same_value(a, b),
        (None, None) => true,
        _ => false,
    };
    if !same {
        out.push(ConfigChange {
            key: key.to_string(),
            old: old.map(render),
            new: new.map(render),
        });
    }
}

/// Equal values, ignoring where they were defined; `1` equals `1.0`.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(i), Value::Float(f)) | (Value::Float(f), Value::Int(i)) => *i as f64 == *f,
        (Value::Float(x), Value::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(&p.value, &q.value))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(&v.value, &w.value)))
        }
        _ => a == b,
    }
}

/// A one-line rendering of a value for the diff.
fn render(value: &Value) -> String {
    let text = match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Str(s) if s.is_empty() || s.parse::<f64>().is_ok() => format!("'{s}'"),
        Value::Str(s) => s.clone(),
        Value::List(items) => format!(
            "[{}]",
            items
                .iter()
                .map(|n| render(&n.value))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Map(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, n)| format!("{k}: {}", render(&n.value)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(79).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Node {
        load_str(text, &Arc::from("t.yaml")).unwrap().unwrap()
    }

    const OLD: &str = "seed: 1\nmax_epochs: 10\nckpt_path: null\nmodel:\n  net:\n    depth: 4\n  \
                       sampler:\n    steps: 20\ndata:\n  num_workers: 2\n  subset: null\n\
                       trainer:\n  max_steps: 100\n";

    #[test]
    fn budget_cadence_and_sampler_changes_are_allowed_and_listed() {
        let new = yaml(
            &OLD.replace("max_epochs: 10", "max_epochs: 20")
                .replace("steps: 20", "steps: 50")
                .replace("num_workers: 2", "num_workers: 8")
                .replace("max_steps: 100", "max_steps: 500")
                .replace("ckpt_path: null", "ckpt_path: last"),
        );
        let allowed = check_resume(&yaml(OLD), &new).unwrap();
        let shown: Vec<String> = allowed.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            shown,
            [
                "max_epochs: 10 → 20",
                "model.sampler.steps: 20 → 50",
                "data.num_workers: 2 → 8",
                "trainer.max_steps: 100 → 500"
            ]
        );
    }

    #[test]
    fn model_data_and_seed_changes_are_refused_with_the_diff() {
        let new = yaml(
            &OLD.replace("depth: 4", "depth: 6")
                .replace("subset: null", "subset: 5")
                .replace("seed: 1", "seed: 2"),
        );
        let err = check_resume(&yaml(OLD), &new).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("  seed: 1 → 2\n"), "{text}");
        assert!(text.contains("  model.net.depth: 4 → 6\n"), "{text}");
        assert!(text.contains("  data.subset: null → 5\n"), "{text}");
        let new = yaml(&format!("{OLD}  extra: 1\n"));
        assert!(check_resume(&yaml(OLD), &new).is_ok());
        let added = yaml(&OLD.replace("  net:\n", "  net:\n    heads: 2\n"));
        let err = check_resume(&yaml(OLD), &added).unwrap_err();
        assert!(
            err.to_string().contains("model.net.heads: (absent) → 2"),
            "{err}"
        );
    }

    #[test]
    fn equal_values_from_different_files_and_number_spellings_match() {
        let a = yaml("lr: 1\nbetas: [0.9, 0.999]\n");
        let b = yaml("lr: 1.0\nbetas: [0.9, 0.999]\n");
        assert_eq!(check_resume(&a, &b).unwrap(), []);
        assert_eq!(render(&Value::Str("32".into())), "'32'");
    }

    #[test]
    fn unreadable_stored_config_is_an_error() {
        let err = check_resume_yaml("a: [1, 2\n", &yaml(OLD)).unwrap_err();
        assert!(matches!(err, ResumeError::UnreadableConfig { .. }), "{err}");
    }
}

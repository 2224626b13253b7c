//! The command-line overrides that act on the defaults list (Hydra's `Overrides`): group
//! choices, appended groups, deletions, and the bookkeeping that reports unused ones.

use super::entry::{Entry, EntryKind};
use crate::config::error::ConfigError;
use crate::config::overrides::{Element, Override, OverrideKind, OverrideValue};
use crate::config::repo::{ConfigRepository, GroupChoice};
use indexmap::IndexMap;
use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Clone)]
struct OverrideMeta {
    external: bool,
    containing_config: Option<String>,
    used: bool,
}

#[derive(Debug, Clone)]
struct Deletion {
    name: Option<String>,
    used: bool,
}

/// The command-line overrides that act on the defaults list (Hydra's `Overrides`).
#[derive(Debug, Default)]
pub(super) struct GroupOverrides {
    choices: IndexMap<String, GroupChoice>,
    meta: IndexMap<String, OverrideMeta>,
    pub(super) appends: Vec<Entry>,
    deletions: IndexMap<String, Deletion>,
    pub(super) known_choices: IndexMap<String, Option<String>>,
    known_per_group: HashMap<String, BTreeSet<String>>,
}

fn element_to_choice(ov: &Override, e: &Element) -> Result<GroupChoice, ConfigError> {
    match e {
        Element::Str { text, .. } => Ok(GroupChoice::Name(text.clone())),
        Element::Int(_) | Element::Float(_) | Element::Bool(_) => {
            Ok(GroupChoice::Name(e.to_value_string()))
        }
        Element::List(items) => Ok(GroupChoice::Many(
            items.iter().map(Element::to_value_string).collect(),
        )),
        Element::Null => Ok(GroupChoice::Null),
        Element::Dict(_) => Err(ConfigError::composition(format!(
            "Config group override must be a string or a list: '{}'",
            ov.input
        ))),
    }
}

impl GroupOverrides {
    pub(super) fn new(
        repo: &ConfigRepository,
        overrides: &[Override],
    ) -> Result<(Self, Vec<Override>), ConfigError> {
        let mut s = GroupOverrides::default();
        let mut config_overrides = Vec::new();
        for ov in overrides {
            let is_dict = matches!(ov.value, OverrideValue::Element(Element::Dict(_)));
            if is_dict || !repo.group_exists(&ov.key) {
                config_overrides.push(ov.clone());
                continue;
            }
            let key = ov.key_element();
            match ov.kind {
                OverrideKind::ForceAdd => {
                    return Err(ConfigError::composition_with_hint(
                        format!(
                            "force-add of config groups is not supported: '{}'",
                            ov.input
                        ),
                        format!(
                            "use +{}=OPTION to add the group, or {}=OPTION to change it",
                            key, key
                        ),
                    ))
                }
                OverrideKind::ExtendList => {
                    return Err(ConfigError::composition(format!(
                        "extend_list() cannot be used on the config group '{key}': '{}'",
                        ov.input
                    )))
                }
                OverrideKind::Delete => {
                    let name = match &ov.value {
                        OverrideValue::Absent => None,
                        OverrideValue::Element(Element::Str { text, .. }) if text.is_empty() => {
                            None
                        }
                        OverrideValue::Element(e) => Some(e.to_value_string()),
                        OverrideValue::Sweep(_) => {
                            return Err(ConfigError::composition(format!(
                                "Config group override deletion value must be a string: '{}'",
                                ov.input
                            )))
                        }
                    };
                    s.deletions.insert(key, Deletion { name, used: false });
                }
                OverrideKind::Add | OverrideKind::Change => {
                    let OverrideValue::Element(e) = &ov.value else {
                        return Err(ConfigError::composition(format!(
                            "cannot use '{}' here",
                            ov.input
                        )));
                    };
                    let choice = element_to_choice(ov, e)?;
                    if ov.kind == OverrideKind::Add {
                        let mut entry = Entry::new(
                            EntryKind::Group {
                                group: ov.key.clone(),
                                choice,
                                is_override: false,
                            },
                            ov.package.clone(),
                            false,
                        );
                        entry.external_append = true;
                        s.appends.push(entry);
                    } else {
                        s.choices.insert(key.clone(), choice);
                        s.meta.insert(
                            key,
                            OverrideMeta {
                                external: true,
                                containing_config: None,
                                used: false,
                            },
                        );
                    }
                }
            }
        }
        Ok((s, config_overrides))
    }

    pub(super) fn add_config_override(&mut self, containing: &str, entry: &Entry) {
        let key = entry.override_key();
        if let EntryKind::Group { choice, .. } = &entry.kind {
            if !self.choices.contains_key(&key) {
                self.choices.insert(key.clone(), choice.clone());
                self.meta.insert(
                    key,
                    OverrideMeta {
                        external: false,
                        containing_config: Some(containing.to_string()),
                        used: false,
                    },
                );
            }
        }
    }

    pub(super) fn apply_choice(&mut self, entry: &mut Entry) {
        if !entry.is_group() {
            return;
        }
        let key = entry.override_key();
        if let Some(choice) = self.choices.get(&key) {
            if let EntryKind::Group { choice: c, .. } = &mut entry.kind {
                *c = choice.clone();
            }
            if let Some(m) = self.meta.get_mut(&key) {
                m.used = true;
            }
        }
    }

    pub(super) fn is_deleted(&mut self, entry: &Entry) -> bool {
        if !entry.is_group() {
            return false;
        }
        let key = entry.override_key();
        let name = entry.name();
        match self.deletions.get_mut(&key) {
            Some(d) if d.name.is_none() || d.name == name => {
                d.used = true;
                true
            }
            _ => false,
        }
    }

    pub(super) fn set_known_choice(&mut self, entry: &Entry) -> Result<(), ConfigError> {
        if !entry.is_group() {
            return Ok(());
        }
        let key = entry.override_key();
        let name = entry.name();
        match self.known_choices.get(&key) {
            None => {
                self.known_choices.insert(key.clone(), name);
            }
            Some(prev) if *prev != name => {
                let prev = prev.clone().unwrap_or_else(|| "null".into());
                return Err(ConfigError::composition_with_hint(
                    format!("Multiple values for {key}. To override a value use 'override {key}: {prev}'"),
                    format!("a group can be chosen once; to replace the choice on the command line use {key}=OPTION (without +)"),
                ));
            }
            Some(_) => {}
        }
        self.known_per_group
            .entry(entry.group_path())
            .or_default()
            .insert(key);
        Ok(())
    }

    pub(super) fn ensure_used(&self) -> Result<(), ConfigError> {
        for (key, meta) in &self.meta {
            if meta.used {
                continue;
            }
            let group = key.split('@').next().unwrap_or(key);
            let known: Vec<&String> = self
                .known_per_group
                .get(group)
                .map(|s| s.iter().collect())
                .unwrap_or_default();
            let mut msg = match known.len() {
                0 => format!("Could not override '{key}'. No match in the defaults list."),
                1 => format!(
                    "Could not override '{key}'.\nDid you mean to override {}?",
                    known[0]
                ),
                _ => format!(
                    "Could not override '{key}'.\nDid you mean to override one of {}?",
                    known
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            if let Some(c) = &meta.containing_config {
                msg = format!("In '{c}': {msg}");
            }
            if meta.external {
                let value = match self.choices.get(key) {
                    Some(GroupChoice::Name(n)) => n.clone(),
                    Some(GroupChoice::Many(v)) => format!("[{}]", v.join(",")),
                    _ => "null".into(),
                };
                let hint = format!("To append to your default list use +{key}={value}");
                return Err(ConfigError::composition_with_hint(msg, hint));
            }
            return Err(ConfigError::composition(msg));
        }
        for (key, d) in &self.deletions {
            if !d.used {
                let desc = match &d.name {
                    Some(n) => format!("{key}={n}"),
                    None => key.clone(),
                };
                return Err(ConfigError::composition(format!(
                    "Could not delete '{desc}'. No match in the defaults list"
                )));
            }
        }
        Ok(())
    }
}

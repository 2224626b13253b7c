//! Building the defaults tree and the ordered list of configs to merge (Hydra's `defaults_list.py`).
//!
//! Rules kept from Hydra 1.3:
//! * a defaults list is expanded last entry first, so `override` entries in later configs (an
//!   `+experiment`, say) are registered before the groups they override are loaded;
//! * the first registered choice for a group wins: command line, then configs in that order;
//! * `_self_` marks where a config's own content goes (absent means last when the list has
//!   entries other than `override`s);
//! * packages: a group's default package is its path; `# @package` headers are absolute;
//!   `group@pkg` in a defaults list is relative to the containing config's package.

mod choices;
mod entry;

use super::error::ConfigError;
use super::overrides::Override;
use super::repo::{ConfigRepository, GroupChoice};
use choices::GroupOverrides;
use entry::{Entry, EntryKind};
use indexmap::IndexMap;
use std::collections::BTreeSet;

/// One config to merge, in order (Hydra's `ResultDefault`).
#[derive(Debug, Clone, PartialEq)]
pub struct ResultDefault {
    /// The config path, without `.yaml`.
    pub config_path: String,
    /// Where its content lands (`""` is the root).
    pub package: String,
    /// The config whose defaults list named it.
    pub parent: Option<String>,
    /// True for a config's own content (`_self_`).
    pub is_self: bool,
    /// True for the primary config.
    pub primary: bool,
}

/// A node of the defaults tree, for `--info defaults-tree`.
#[derive(Debug, Clone)]
pub struct DefaultsTree {
    /// How the node is shown (e.g. `model: generative_fb_flow_matching`).
    pub label: String,
    /// Its children, in merge order.
    pub children: Vec<DefaultsTree>,
}

/// The outcome of expanding the defaults: what to merge, and what was chosen.
#[derive(Debug, Clone)]
pub struct DefaultsList {
    /// The configs to merge, in order.
    pub defaults: Vec<ResultDefault>,
    /// The option chosen per group override key (Hydra's `runtime.choices`).
    pub choices: IndexMap<String, Option<String>>,
    /// The overrides that set config values rather than choosing options.
    pub config_overrides: Vec<Override>,
    /// The tree, for display.
    pub tree: DefaultsTree,
}

struct Builder<'a> {
    repo: &'a ConfigRepository,
    overrides: GroupOverrides,
    skip_missing: bool,
}

/// A tree node during expansion: the entry and, once expanded, its children.
struct Expanded {
    entry: Entry,
    parent_path: Option<String>,
    children: Option<Vec<Expanded>>,
}

impl Builder<'_> {
    fn missing_config(&self, entry: &Entry, parent: Option<&str>) -> ConfigError {
        let search = self.repo.describe_search_path();
        if entry.primary {
            let available = self.repo.group_options("");
            return ConfigError::composition_with_hint(
                format!(
                    "Cannot find primary config '{}'. Check that it's in your config search path.\n\n{search}",
                    entry.config_path()
                ),
                format!("available primary configs: {}", available.join(", ")),
            );
        }
        let mut msg = match &entry.kind {
            EntryKind::Group { .. } => {
                let group = entry.group_path();
                let options = self.repo.group_options(&group);
                let mut m = format!("Could not find '{}'\n", entry.config_path());
                if !options.is_empty() {
                    m.push_str(&format!("\nAvailable options in '{group}':\n"));
                    m.push_str(
                        &options
                            .iter()
                            .map(|o| format!("\t{o}"))
                            .collect::<Vec<_>>()
                            .join("\n"),
                    );
                }
                m
            }
            _ => format!("Could not load '{}'.\n", entry.config_path()),
        };
        if let Some(p) = parent {
            msg = format!("In '{p}': {msg}");
        }
        let hint = match &entry.kind {
            EntryKind::Group { .. } => {
                let options = self.repo.group_options(&entry.group_path());
                let name = entry.name().unwrap_or_default();
                let plus = if entry.external_append { "+" } else { "" };
                match super::error::did_you_mean(&name, options.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean {plus}{}={s}?", entry.override_key()),
                    None => format!(
                        "choose one of the options above with {plus}{}=OPTION",
                        entry.override_key()
                    ),
                }
            }
            _ => "check the name in the defaults list".to_string(),
        };
        ConfigError::composition_with_hint(format!("{msg}\n{search}"), hint)
    }

    fn expand(
        &mut self,
        mut entry: Entry,
        parent_path: Option<String>,
        is_root: bool,
    ) -> Result<Expanded, ConfigError> {
        if is_root {
            entry.update_parent("", "");
            if !self.repo.config_exists(&entry.config_path()) {
                self.repo.load(&entry.config_path())?;
                return Err(self.missing_config(&entry, None));
            }
        }
        let mut node = Expanded {
            entry,
            parent_path,
            children: None,
        };
        if node.entry.name().is_some() && !matches!(node.entry.name().as_deref(), Some("???")) {
            if let Some(loaded) = self.repo.load(&node.entry.config_path())? {
                let header = loaded.package_header.clone();
                node.entry.set_package_header(header.as_deref());
            }
        }
        if self.overrides.is_deleted(&node.entry) {
            node.entry.deleted = true;
            return Ok(node);
        }
        self.overrides.set_known_choice(&node.entry)?;
        let Some(name) = node.entry.name() else {
            return Ok(node);
        };
        if name == "???" && node.entry.is_group() {
            if self.skip_missing {
                node.entry.deleted = true;
                return Ok(node);
            }
            let group = node.entry.group_path();
            let key = node.entry.override_key();
            let options = self.repo.group_options(&group);
            return Err(ConfigError::composition_with_hint(
                format!(
                    "You must specify '{key}', e.g, {key}=<OPTION>\nAvailable options:\n{}",
                    options
                        .iter()
                        .map(|o| format!("\t{o}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
                format!(
                    "add {key}=<OPTION> to the command line, e.g. {key}={}",
                    options.first().map(String::as_str).unwrap_or("NAME")
                ),
            ));
        }
        let path = node.entry.config_path();
        let Some(loaded) = self.repo.load(&path)? else {
            if node.entry.optional {
                node.entry.deleted = true;
                return Ok(node);
            }
            return Err(self.missing_config(&node.entry, node.parent_path.as_deref()));
        };
        let mut list: Vec<Entry> = loaded
            .defaults
            .clone()
            .unwrap_or_default()
            .iter()
            .map(Entry::from_written)
            .collect();
        if !list.is_empty() || (is_root && !self.overrides.appends.is_empty()) {
            validate_self(&path, &mut list)?;
        }
        if is_root {
            list.extend(self.overrides.appends.clone());
        }
        let parent_group = node.entry.group_path();
        let parent_package = node.entry.final_package(true);
        let own_package = node.entry.final_package(true);
        let mut seen_override: Option<String> = None;
        for e in list.iter_mut().filter(|e| !e.is_self()) {
            e.update_parent(&parent_group, &parent_package);
            if let Some(prev) = &seen_override {
                if !e.is_override() && !e.external_append {
                    return Err(ConfigError::composition(format!(
                        "In {path}: Override '{prev}' is defined before '{}: {}'.\nOverrides must be at the end of the defaults list",
                        e.override_key(),
                        e.name().unwrap_or_default()
                    )));
                }
            }
            if e.is_override() {
                seen_override = Some(format!(
                    "{} : {}",
                    e.override_key(),
                    e.name().unwrap_or_default()
                ));
                self.overrides.add_config_override(&path, e);
            }
        }
        let mut children = Vec::new();
        for mut e in list.into_iter().rev() {
            if e.is_self() {
                e.update_parent(&node.entry.parent_base_dir, &own_package);
                children.push(Expanded {
                    entry: e,
                    parent_path: Some(path.clone()),
                    children: None,
                });
                continue;
            }
            if e.is_override() {
                continue;
            }
            e.update_parent(&parent_group, &parent_package);
            self.overrides.apply_choice(&mut e);
            if let EntryKind::Group {
                group,
                choice: GroupChoice::Many(opts),
                ..
            } = &e.kind
            {
                for item in opts.iter().rev() {
                    let mut c = Entry::new(
                        EntryKind::Config {
                            path: format!("{group}/{item}"),
                        },
                        e.package.clone(),
                        e.optional,
                    );
                    c.update_parent(&parent_group, &parent_package);
                    children.push(self.expand(c, Some(path.clone()), false)?);
                }
                continue;
            }
            children.push(self.expand(e, Some(path.clone()), false)?);
        }
        children.reverse();
        if !children.is_empty() {
            node.children = Some(children);
        }
        Ok(node)
    }
}

fn validate_self(path: &str, list: &mut Vec<Entry>) -> Result<(), ConfigError> {
    let mut has_self = false;
    let mut has_non_override = false;
    for e in list.iter() {
        if !e.is_override() {
            has_non_override = true;
        }
        if e.is_self() {
            if has_self {
                return Err(ConfigError::composition(format!(
                    "Duplicate _self_ defined in {path}"
                )));
            }
            has_self = true;
        }
    }
    if (!has_self && has_non_override) || list.is_empty() {
        list.push(Entry::new(EntryKind::SelfRef, None, false));
    }
    Ok(())
}

fn label(e: &Entry) -> String {
    match &e.kind {
        EntryKind::SelfRef => "_self_".into(),
        EntryKind::Config { .. } => e.config_path(),
        EntryKind::Group { .. } => format!(
            "{}: {}",
            e.override_key(),
            e.name().unwrap_or_else(|| "null".into())
        ),
    }
}

fn flatten(node: &Expanded, out: &mut Vec<ResultDefault>) -> DefaultsTree {
    let mut tree = DefaultsTree {
        label: label(&node.entry),
        children: Vec::new(),
    };
    if node.entry.deleted {
        tree.label.push_str(" (deleted)");
        return tree;
    }
    match &node.children {
        None => {
            if node.entry.name().is_some() {
                out.push(ResultDefault {
                    config_path: node.entry.config_path(),
                    package: node.entry.final_package(true),
                    parent: node.parent_path.clone(),
                    is_self: false,
                    primary: node.entry.primary,
                });
            }
        }
        Some(children) => {
            for child in children {
                if child.entry.is_self() {
                    out.push(ResultDefault {
                        config_path: node.entry.config_path(),
                        package: node.entry.final_package(true),
                        parent: node.parent_path.clone(),
                        is_self: true,
                        primary: node.entry.primary,
                    });
                    tree.children.push(DefaultsTree {
                        label: "_self_".into(),
                        children: Vec::new(),
                    });
                } else {
                    tree.children.push(flatten(child, out));
                }
            }
        }
    }
    tree
}

/// Expands the primary config's defaults list with the group overrides from the command line.
///
/// `skip_missing` leaves mandatory `???` groups out (used when only planning a sweep).
pub fn build_defaults_list(
    repo: &ConfigRepository,
    config_name: &str,
    overrides: &[Override],
    skip_missing: bool,
) -> Result<DefaultsList, ConfigError> {
    let (group_overrides, config_overrides) = GroupOverrides::new(repo, overrides)?;
    let mut builder = Builder {
        repo,
        overrides: group_overrides,
        skip_missing,
    };
    let mut root = Entry::new(
        EntryKind::Config {
            path: config_name.to_string(),
        },
        None,
        false,
    );
    root.primary = true;
    let expanded = builder.expand(root, None, true)?;
    let mut defaults = Vec::new();
    let tree = flatten(&expanded, &mut defaults);
    let mut seen = BTreeSet::new();
    collect_duplicate_check(&expanded, &mut seen)?;
    builder.overrides.ensure_used()?;
    Ok(DefaultsList {
        defaults,
        choices: builder.overrides.known_choices,
        config_overrides,
        tree,
    })
}

fn collect_duplicate_check(
    node: &Expanded,
    seen: &mut BTreeSet<String>,
) -> Result<(), ConfigError> {
    if node.entry.deleted {
        return Ok(());
    }
    if node.entry.is_group() && node.entry.name().is_some() {
        let key = node.entry.override_key();
        if !seen.insert(key.clone()) {
            return Err(ConfigError::composition(format!(
                "{key} appears more than once in the final defaults list"
            )));
        }
    }
    for c in node.children.iter().flatten() {
        collect_duplicate_check(c, seen)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::repo::ConfigSource;

    static TREE: &[(&str, &str)] = &[
        ("config.yaml", "defaults:\n  - trainer: single\n  - model: fm\n  - _self_\nseed: 1\n"),
        ("trainer/single.yaml", "devices: 1\n"),
        ("trainer/multi.yaml", "devices: 8\n"),
        ("model/fm.yaml", "defaults:\n  - _self_\n  - net: small\nname: fm\n"),
        ("model/net/small.yaml", "depth: 2\n"),
        ("model/net/big.yaml", "depth: 24\n"),
        ("experiment/big.yaml", "# @package _global_\ndefaults:\n  - override /trainer: multi\n  - override /model/net: big\nseed: 9\n"),
    ];

    fn list(overrides: &[&str]) -> Result<Vec<(String, String)>, ConfigError> {
        let repo = ConfigRepository::new(vec![ConfigSource::Embedded {
            name: "pkg://test".into(),
            files: TREE,
        }]);
        let ovs: Vec<Override> = overrides
            .iter()
            .map(|o| Override::parse(o).unwrap())
            .collect();
        let d = build_defaults_list(&repo, "config", &ovs, false)?;
        Ok(d.defaults
            .into_iter()
            .map(|r| (r.config_path, r.package))
            .collect())
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn merge_order_follows_self_and_nesting() {
        assert_eq!(
            list(&[]).unwrap(),
            pairs(&[
                ("trainer/single", "trainer"),
                ("model/fm", "model"),
                ("model/net/small", "model.net"),
                ("config", "")
            ])
        );
    }

    #[test]
    fn appended_experiment_overrides_earlier_groups() {
        assert_eq!(
            list(&["+experiment=big"]).unwrap(),
            pairs(&[
                ("trainer/multi", "trainer"),
                ("model/fm", "model"),
                ("model/net/big", "model.net"),
                ("config", ""),
                ("experiment/big", ""),
            ])
        );
    }

    #[test]
    fn command_line_choices_deletions_and_their_errors() {
        assert_eq!(
            list(&["model/net=big", "~trainer"]).unwrap()[0..2],
            pairs(&[("model/fm", "model"), ("model/net/big", "model.net")])[..]
        );
        let e = list(&["trainer=mult"]).unwrap_err();
        assert!(e.to_string().contains("Available options in 'trainer'"));
        assert_eq!(e.hint(), Some("did you mean trainer=multi?"));
        assert!(list(&["~trainer=multi"])
            .unwrap_err()
            .to_string()
            .contains("Could not delete 'trainer=multi'"));
        assert!(list(&["+trainer=multi"])
            .unwrap_err()
            .to_string()
            .contains("Multiple values for trainer"));
    }
}

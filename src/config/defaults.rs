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

use super::error::ConfigError;
use super::overrides::{Element, Override, OverrideKind, OverrideValue};
use super::repo::{ConfigRepository, DefaultsEntry, GroupChoice};
use indexmap::IndexMap;
use std::collections::{BTreeSet, HashMap};

/// What a defaults entry refers to.
#[derive(Debug, Clone)]
enum EntryKind {
    SelfRef,
    Config { path: String },
    Group { group: String, choice: GroupChoice, is_override: bool },
}

/// One entry of a defaults list, placed in its parent (Hydra's `InputDefault`).
#[derive(Debug, Clone)]
struct Entry {
    kind: EntryKind,
    package: Option<String>,
    optional: bool,
    primary: bool,
    parent_base_dir: String,
    parent_package: String,
    package_header: Option<String>,
    deleted: bool,
    external_append: bool,
}

impl Entry {
    fn new(kind: EntryKind, package: Option<String>, optional: bool) -> Self {
        Entry {
            kind,
            package,
            optional,
            primary: false,
            parent_base_dir: String::new(),
            parent_package: String::new(),
            package_header: None,
            deleted: false,
            external_append: false,
        }
    }

    fn from_written(e: &DefaultsEntry) -> Self {
        match e {
            DefaultsEntry::SelfRef => Entry::new(EntryKind::SelfRef, None, false),
            DefaultsEntry::Config { path, package, optional } => {
                Entry::new(EntryKind::Config { path: path.clone() }, package.clone(), *optional)
            }
            DefaultsEntry::Group { group, package, choice, optional, is_override } => Entry::new(
                EntryKind::Group {
                    group: group.clone(),
                    choice: choice.clone(),
                    is_override: *is_override,
                },
                package.clone(),
                *optional,
            ),
        }
    }

    fn is_self(&self) -> bool {
        matches!(self.kind, EntryKind::SelfRef)
    }

    fn is_override(&self) -> bool {
        matches!(self.kind, EntryKind::Group { is_override: true, .. })
    }

    fn is_group(&self) -> bool {
        matches!(self.kind, EntryKind::Group { .. })
    }

    fn update_parent(&mut self, base_dir: &str, package: &str) {
        self.parent_base_dir = base_dir.to_string();
        self.parent_package = package.to_string();
    }

    fn group_path(&self) -> String {
        match &self.kind {
            EntryKind::SelfRef => self.parent_base_dir.clone(),
            EntryKind::Group { group, .. } => match group.strip_prefix('/') {
                Some(abs) => abs.to_string(),
                None if self.parent_base_dir.is_empty() => group.clone(),
                None => format!("{}/{group}", self.parent_base_dir),
            },
            EntryKind::Config { path } => {
                let (absolute, p) = match path.strip_prefix('/') {
                    Some(rest) => (true, rest),
                    None => (false, path.as_str()),
                };
                let dir = p.rfind('/').map(|i| &p[..i]).unwrap_or("");
                if absolute || self.parent_base_dir.is_empty() {
                    dir.to_string()
                } else if dir.is_empty() {
                    self.parent_base_dir.clone()
                } else {
                    format!("{}/{dir}", self.parent_base_dir)
                }
            }
        }
    }

    fn name(&self) -> Option<String> {
        match &self.kind {
            EntryKind::SelfRef => Some("_self_".into()),
            EntryKind::Config { path } => Some(path.rsplit('/').next().unwrap_or(path).to_string()),
            EntryKind::Group { choice, .. } => match choice {
                GroupChoice::Name(n) => Some(n.clone()),
                GroupChoice::Mandatory => Some("???".into()),
                GroupChoice::Null | GroupChoice::Many(_) => None,
            },
        }
    }

    fn config_path(&self) -> String {
        let group = self.group_path();
        let name = self.name().unwrap_or_default();
        if group.is_empty() {
            name
        } else {
            format!("{group}/{name}")
        }
    }

    fn relative_group_path(&self) -> String {
        match &self.kind {
            EntryKind::Group { group, .. } => group.trim_start_matches('/').to_string(),
            EntryKind::Config { path } => {
                let p = path.trim_start_matches('/');
                p.rfind('/').map(|i| p[..i].to_string()).unwrap_or_default()
            }
            EntryKind::SelfRef => String::new(),
        }
    }

    fn default_package(&self) -> String {
        self.group_path().replace('/', ".")
    }

    fn set_package_header(&mut self, header: Option<&str>) {
        let Some(h) = header else { return };
        let mut h = if h != "_global_" && !h.starts_with("_global_.") {
            if h.is_empty() {
                "_global_".to_string()
            } else {
                format!("_global_.{h}")
            }
        } else {
            h.to_string()
        };
        h = h.replace("_group_", &self.default_package());
        self.package_header = Some(h);
    }

    fn final_package(&self, default_to_header: bool) -> String {
        let own = if self.package.is_none() && default_to_header {
            self.package_header.clone()
        } else {
            self.package.clone()
        };
        let mut package = own.unwrap_or_else(|| self.relative_group_path().replace('/', "."));
        if let Some(name) = self.name() {
            package = package.replace("_name_", &name);
        }
        let joined = if self.parent_package.is_empty() {
            package
        } else if package.is_empty() {
            self.parent_package.clone()
        } else {
            format!("{}.{package}", self.parent_package)
        };
        match joined.rfind("_global_") {
            Some(i) => joined.get(i + "_global_".len() + 1..).unwrap_or("").to_string(),
            None => joined,
        }
    }

    fn override_key(&self) -> String {
        let default_pkg = self.default_package();
        let final_pkg = self.final_package(false);
        let key = self.group_path();
        if default_pkg != final_pkg && !final_pkg.is_empty() {
            format!("{key}@{final_pkg}")
        } else {
            key
        }
    }
}

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
struct GroupOverrides {
    choices: IndexMap<String, GroupChoice>,
    meta: IndexMap<String, OverrideMeta>,
    appends: Vec<Entry>,
    deletions: IndexMap<String, Deletion>,
    known_choices: IndexMap<String, Option<String>>,
    known_per_group: HashMap<String, BTreeSet<String>>,
}

fn element_to_choice(ov: &Override, e: &Element) -> Result<GroupChoice, ConfigError> {
    match e {
        Element::Str { text, .. } => Ok(GroupChoice::Name(text.clone())),
        Element::Int(_) | Element::Float(_) | Element::Bool(_) => Ok(GroupChoice::Name(e.to_value_string())),
        Element::List(items) => Ok(GroupChoice::Many(items.iter().map(Element::to_value_string).collect())),
        Element::Null => Ok(GroupChoice::Null),
        Element::Dict(_) => Err(ConfigError::composition(format!(
            "Config group override must be a string or a list: '{}'",
            ov.input
        ))),
    }
}

impl GroupOverrides {
    fn new(repo: &ConfigRepository, overrides: &[Override]) -> Result<(Self, Vec<Override>), ConfigError> {
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
                        format!("force-add of config groups is not supported: '{}'", ov.input),
                        format!("use +{}=OPTION to add the group, or {}=OPTION to change it", key, key),
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
                        OverrideValue::Element(Element::Str { text, .. }) if text.is_empty() => None,
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
                        return Err(ConfigError::composition(format!("cannot use '{}' here", ov.input)));
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

    fn add_config_override(&mut self, containing: &str, entry: &Entry) {
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

    fn apply_choice(&mut self, entry: &mut Entry) {
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

    fn is_deleted(&mut self, entry: &Entry) -> bool {
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

    fn set_known_choice(&mut self, entry: &Entry) -> Result<(), ConfigError> {
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
        self.known_per_group.entry(entry.group_path()).or_default().insert(key);
        Ok(())
    }

    fn ensure_used(&self) -> Result<(), ConfigError> {
        for (key, meta) in &self.meta {
            if meta.used {
                continue;
            }
            let group = key.split('@').next().unwrap_or(key);
            let known: Vec<&String> = self.known_per_group.get(group).map(|s| s.iter().collect()).unwrap_or_default();
            let mut msg = match known.len() {
                0 => format!("Could not override '{key}'. No match in the defaults list."),
                1 => format!("Could not override '{key}'.\nDid you mean to override {}?", known[0]),
                _ => format!(
                    "Could not override '{key}'.\nDid you mean to override one of {}?",
                    known.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
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
                    m.push_str(&options.iter().map(|o| format!("\t{o}")).collect::<Vec<_>>().join("\n"));
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
                match super::error::did_you_mean(&name, options.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean {}={s}?", entry.override_key()),
                    None => format!("choose one of the options above with {}=OPTION", entry.override_key()),
                }
            }
            _ => "check the name in the defaults list".to_string(),
        };
        ConfigError::composition_with_hint(format!("{msg}\n{search}"), hint)
    }

    fn expand(&mut self, mut entry: Entry, parent_path: Option<String>, is_root: bool) -> Result<Expanded, ConfigError> {
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
                    options.iter().map(|o| format!("\t{o}")).collect::<Vec<_>>().join("\n")
                ),
                format!("add {key}=<OPTION> to the command line, e.g. {key}={}", options.first().map(String::as_str).unwrap_or("NAME")),
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
        let mut list: Vec<Entry> = loaded.defaults.clone().unwrap_or_default().iter().map(Entry::from_written).collect();
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
                seen_override = Some(format!("{} : {}", e.override_key(), e.name().unwrap_or_default()));
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
            if let EntryKind::Group { group, choice: GroupChoice::Many(opts), .. } = &e.kind {
                for item in opts.iter().rev() {
                    let mut c = Entry::new(EntryKind::Config { path: format!("{group}/{item}") }, e.package.clone(), e.optional);
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
                return Err(ConfigError::composition(format!("Duplicate _self_ defined in {path}")));
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
        EntryKind::Group { .. } => format!("{}: {}", e.override_key(), e.name().unwrap_or_else(|| "null".into())),
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
    let mut root = Entry::new(EntryKind::Config { path: config_name.to_string() }, None, false);
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

fn collect_duplicate_check(node: &Expanded, seen: &mut BTreeSet<String>) -> Result<(), ConfigError> {
    if node.entry.deleted {
        return Ok(());
    }
    if node.entry.is_group() && node.entry.name().is_some() {
        let key = node.entry.override_key();
        if !seen.insert(key.clone()) {
            return Err(ConfigError::composition(format!("{key} appears more than once in the final defaults list")));
        }
    }
    for c in node.children.iter().flatten() {
        collect_duplicate_check(c, seen)?;
    }
    Ok(())
}

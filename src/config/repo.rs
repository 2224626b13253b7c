//! The config search path: where configs and config groups are found, and how one file is loaded.
//!
//! Like Hydra's `ConfigRepository`, a repository is an ordered list of sources; the first source
//! holding a config wins, and a group's options are the union over all sources. A loaded config
//! is split into its `# @package` header, its `defaults` list and its content.

use super::error::ConfigError;
use super::node::{Node, Origin, Value};
use super::yaml;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

/// Where configs can be read from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A directory on disk.
    Dir {
        /// Hydra's provider name (`main`, `command-line`).
        provider: String,
        /// The directory.
        path: PathBuf,
    },
    /// A tree compiled into the binary: (path relative to the tree root, text).
    Embedded {
        /// Shown in the search path, e.g. `pkg://flowrun/conf`.
        name: String,
        /// The files.
        files: &'static [(&'static str, &'static str)],
    },
}

impl ConfigSource {
    /// How Hydra prints a search path entry.
    pub fn describe(&self) -> String {
        match self {
            ConfigSource::Dir { provider, path } => {
                format!("provider={provider}, path=file://{}", path.display())
            }
            ConfigSource::Embedded { name, .. } => format!("provider=main, path={name}"),
        }
    }

    fn read(&self, rel_file: &str) -> Result<Option<(String, Arc<str>)>, ConfigError> {
        match self {
            ConfigSource::Dir { path, .. } => {
                let full = path.join(rel_file);
                match std::fs::read_to_string(&full) {
                    Ok(text) => Ok(Some((text, Arc::from(full.display().to_string())))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) if full.is_dir() => {
                        let _ = e;
                        Ok(None)
                    }
                    Err(source) => Err(ConfigError::Io {
                        path: full.display().to_string(),
                        source,
                    }),
                }
            }
            ConfigSource::Embedded { name, files } => Ok(files
                .iter()
                .find(|(p, _)| *p == rel_file)
                .map(|(p, text)| (text.to_string(), Arc::from(format!("{name}/{p}"))))),
        }
    }

    fn list_dir(
        &self,
        group: &str,
        out_files: &mut BTreeSet<String>,
        out_dirs: &mut BTreeSet<String>,
    ) {
        match self {
            ConfigSource::Dir { path, .. } => {
                let dir = if group.is_empty() {
                    path.clone()
                } else {
                    path.join(group)
                };
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    return;
                };
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().to_string();
                    let p = entry.path();
                    if p.is_dir() {
                        out_dirs.insert(name);
                    } else if let Some(stem) = name.strip_suffix(".yaml") {
                        out_files.insert(stem.to_string());
                    }
                }
            }
            ConfigSource::Embedded { files, .. } => {
                let prefix = if group.is_empty() {
                    String::new()
                } else {
                    format!("{group}/")
                };
                for (p, _) in files.iter() {
                    if let Some(rest) = p.strip_prefix(&prefix) {
                        match rest.split_once('/') {
                            Some((dir, _)) => {
                                out_dirs.insert(dir.to_string());
                            }
                            None => {
                                if let Some(stem) = rest.strip_suffix(".yaml") {
                                    out_files.insert(stem.to_string());
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn has_dir(&self, group: &str) -> bool {
        match self {
            ConfigSource::Dir { path, .. } => path.join(group).is_dir(),
            ConfigSource::Embedded { files, .. } => {
                let prefix = format!("{group}/");
                files.iter().any(|(p, _)| p.starts_with(&prefix))
            }
        }
    }
}

/// One entry of a config's `defaults` list, as written.
#[derive(Debug, Clone, PartialEq)]
pub enum DefaultsEntry {
    /// `_self_`: where the config's own content is merged.
    SelfRef,
    /// A plain config path such as `base_train` or `/db/mysql`.
    Config {
        /// The path as written.
        path: String,
        /// The `@package` suffix, if any.
        package: Option<String>,
        /// Written with the `optional` keyword.
        optional: bool,
    },
    /// A config group choice such as `model: dit` or `override /trainer: multi_gpu`.
    Group {
        /// The group as written (may start with `/` for absolute).
        group: String,
        /// The `@package` suffix, if any.
        package: Option<String>,
        /// The chosen option.
        choice: GroupChoice,
        /// Written with the `optional` keyword.
        optional: bool,
        /// Written with the `override` keyword.
        is_override: bool,
    },
}

/// The option selected for a group in a defaults list.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupChoice {
    /// One named option.
    Name(String),
    /// `null`: the group is known but nothing is loaded.
    Null,
    /// `???`: the user must choose on the command line.
    Mandatory,
    /// A list of options, all loaded in order.
    Many(Vec<String>),
}

/// A config file split into its parts.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The `# @package` header, if any.
    pub package_header: Option<String>,
    /// The `defaults` list, if the file has one.
    pub defaults: Option<Vec<DefaultsEntry>>,
    /// The content without the `defaults` key.
    pub content: Node,
    /// The file as shown to users.
    pub display_path: Arc<str>,
}

/// The ordered config search path, with a cache of loaded files.
#[derive(Debug)]
pub struct ConfigRepository {
    sources: Vec<ConfigSource>,
    cache: RefCell<HashMap<String, Option<Rc<LoadedConfig>>>>,
}

impl ConfigRepository {
    /// A repository over the given sources, first source first.
    pub fn new(sources: Vec<ConfigSource>) -> Self {
        ConfigRepository {
            sources,
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// The repository of the shipped `conf/` tree alone (compiled into the binary).
    pub fn shipped() -> Self {
        Self::new(vec![ConfigSource::Embedded {
            name: "pkg://flowrun/conf".into(),
            files: crate::config::SHIPPED_CONF,
        }])
    }

    /// The sources, in search order.
    pub fn sources(&self) -> &[ConfigSource] {
        &self.sources
    }

    /// The search path as Hydra prints it in errors.
    pub fn describe_search_path(&self) -> String {
        let mut s = String::from("Config search path:");
        for src in &self.sources {
            s.push_str("\n\t");
            s.push_str(&src.describe());
        }
        s
    }

    /// True when a directory named `group` exists in some source.
    pub fn group_exists(&self, group: &str) -> bool {
        let group = group.trim_matches('/');
        !group.is_empty() && self.sources.iter().any(|s| s.has_dir(group))
    }

    /// The options (config names) of a group, sorted, across all sources.
    pub fn group_options(&self, group: &str) -> Vec<String> {
        let (files, _) = self.list(group.trim_matches('/'));
        files.into_iter().collect()
    }

    /// The sub-groups directly inside a group (`""` for the top level), sorted.
    pub fn subgroups(&self, group: &str) -> Vec<String> {
        let (_, dirs) = self.list(group.trim_matches('/'));
        dirs.into_iter().collect()
    }

    /// Every config group of the tree, recursively, sorted (e.g. `model`, `model/net`).
    pub fn all_groups(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![String::new()];
        while let Some(g) = stack.pop() {
            for sub in self.subgroups(&g) {
                let full = if g.is_empty() {
                    sub
                } else {
                    format!("{g}/{sub}")
                };
                if full != "hydra" {
                    out.push(full.clone());
                    stack.push(full);
                }
            }
        }
        out.sort();
        out
    }

    fn list(&self, group: &str) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut files = BTreeSet::new();
        let mut dirs = BTreeSet::new();
        for src in &self.sources {
            src.list_dir(group, &mut files, &mut dirs);
        }
        (files, dirs)
    }

    /// True when the config `path` (without `.yaml`) exists in some source.
    pub fn config_exists(&self, path: &str) -> bool {
        matches!(self.load(path), Ok(Some(_)))
    }

    /// Loads a config by path (without `.yaml`); `Ok(None)` when no source has it.
    pub fn load(&self, path: &str) -> Result<Option<Rc<LoadedConfig>>, ConfigError> {
        let path = path.trim_start_matches('/');
        if let Some(hit) = self.cache.borrow().get(path) {
            return Ok(hit.clone());
        }
        let rel_file = format!("{path}.yaml");
        let mut loaded = None;
        for src in &self.sources {
            if let Some((text, display)) = src.read(&rel_file)? {
                loaded = Some(Rc::new(parse_config_file(&text, display)?));
                break;
            }
        }
        self.cache
            .borrow_mut()
            .insert(path.to_string(), loaded.clone());
        Ok(loaded)
    }
}

/// Reads Hydra's header comments (`# @package _global_`) from the top of a file.
pub fn parse_header(text: &str, display: &str) -> Result<Option<String>, ConfigError> {
    let mut package = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(comment) = line.strip_prefix('#') else {
            break;
        };
        let comment = comment.trim();
        if !comment.starts_with('@') {
            break;
        }
        let parts: Vec<&str> = comment.split_whitespace().collect();
        if parts.len() != 2 {
            return Err(ConfigError::composition_with_hint(
                format!(
                    "In '{display}': expected a header of the form '# @KEY VALUE', got '{line}'"
                ),
                "write for example '# @package _global_'",
            ));
        }
        if parts[0] == "@package" {
            package = Some(parts[1].to_string());
        }
    }
    Ok(package)
}

fn parse_config_file(text: &str, display: Arc<str>) -> Result<LoadedConfig, ConfigError> {
    let package_header = parse_header(text, &display)?;
    let origin = Origin::File {
        path: display.clone(),
        line: 1,
        col: 1,
    };
    let mut content = yaml::load_str(text, &display)?.unwrap_or_else(|| Node::empty_map(origin));
    let defaults = match &mut content.value {
        Value::Map(map) => match map.shift_remove("defaults") {
            Some(node) => Some(parse_defaults_list(&node, &display)?),
            None => None,
        },
        _ => None,
    };
    Ok(LoadedConfig {
        package_header,
        defaults,
        content,
        display_path: display,
    })
}

fn defaults_error(node: &Node, display: &str, what: &str) -> ConfigError {
    ConfigError::composition_with_hint(
        format!("In '{display}' ({}): invalid defaults list entry: {what}", node.origin),
        "entries look like '- group: option', '- override group: option', '- optional group: option', '- group@pkg: option', '- config_name' or '- _self_'",
    )
}

/// Parses a `defaults:` list node into typed entries.
pub fn parse_defaults_list(node: &Node, display: &str) -> Result<Vec<DefaultsEntry>, ConfigError> {
    let Value::List(items) = &node.value else {
        return Err(defaults_error(
            node,
            display,
            &format!("expected a list, found a {}", node.value.type_name()),
        ));
    };
    items
        .iter()
        .map(|item| parse_defaults_entry(item, display))
        .collect()
}

fn split_package(text: &str) -> (String, Option<String>) {
    match text.split_once('@') {
        Some((k, p)) => (k.to_string(), Some(p.to_string())),
        None => (text.to_string(), None),
    }
}

fn parse_defaults_entry(item: &Node, display: &str) -> Result<DefaultsEntry, ConfigError> {
    match &item.value {
        Value::Str(s) if s == "_self_" => Ok(DefaultsEntry::SelfRef),
        Value::Str(s) => {
            let (path, package) = split_package(s.trim());
            Ok(DefaultsEntry::Config {
                path,
                package,
                optional: false,
            })
        }
        Value::Map(map) if map.len() == 1 => {
            let Some((key, value)) = map.iter().next() else {
                return Err(defaults_error(item, display, "empty mapping"));
            };
            let words: Vec<&str> = key.split_whitespace().collect();
            let Some((name, keywords)) = words.split_last() else {
                return Err(defaults_error(item, display, "empty key"));
            };
            let mut optional = false;
            let mut is_override = false;
            for kw in keywords {
                match *kw {
                    "optional" => optional = true,
                    "override" => is_override = true,
                    other => {
                        return Err(defaults_error(
                            item,
                            display,
                            &format!(
                                "unknown keyword '{other}' (expected 'optional' or 'override')"
                            ),
                        ))
                    }
                }
            }
            let (group, package) = split_package(name);
            let choice = match &value.value {
                Value::Null => GroupChoice::Null,
                Value::Str(s) if s == "???" => GroupChoice::Mandatory,
                Value::Str(s) => GroupChoice::Name(s.clone()),
                Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                    GroupChoice::Name(super::pyfmt::python_str(&value.value))
                }
                Value::List(opts) => GroupChoice::Many(
                    opts.iter()
                        .map(|o| match &o.value {
                            Value::Str(s) => Ok(s.clone()),
                            other => Err(defaults_error(
                                o,
                                display,
                                &format!("option lists hold names, found a {}", other.type_name()),
                            )),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                Value::Map(_) => {
                    return Err(defaults_error(
                        item,
                        display,
                        "the option of a group must be a name, null, ??? or a list",
                    ))
                }
            };
            if let GroupChoice::Name(n) = &choice {
                if n.contains("${") {
                    return Err(ConfigError::composition(format!(
                        "In '{display}': interpolation in a defaults list ('{key}: {n}') is not supported by flowrun; choose the option on the command line instead ({group}=OPTION)"
                    )));
                }
            }
            Ok(DefaultsEntry::Group {
                group,
                package,
                choice,
                optional,
                is_override,
            })
        }
        other => Err(defaults_error(
            item,
            display,
            &format!(
                "expected a string or a one-key mapping, found a {}",
                other.type_name()
            ),
        )),
    }
}

/// A repository over one directory (Hydra's `--config-path`).
pub fn dir_source(provider: &str, path: &Path) -> ConfigSource {
    ConfigSource::Dir {
        provider: provider.to_string(),
        path: path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FILES: &[(&str, &str)] = &[
        ("config.yaml", "defaults:\n  - model: fm\n  - override /trainer: gpu\n  - optional logger: tb\n  - path@model.path: condot\n  - base\n  - _self_\nseed: 1\n"),
        ("model/fm.yaml", "# @package _global_\nx: 1\n"),
        ("model/net/dit.yaml", "depth: 2\n"),
        ("trainer/gpu.yaml", ""),
    ];

    fn repo() -> ConfigRepository {
        ConfigRepository::new(vec![ConfigSource::Embedded {
            name: "pkg://test".into(),
            files: FILES,
        }])
    }

    #[test]
    fn lists_groups_and_options() {
        let r = repo();
        assert!(r.group_exists("model") && r.group_exists("model/net") && !r.group_exists("seed"));
        assert_eq!(r.group_options("model"), vec!["fm"]);
        assert_eq!(r.all_groups(), vec!["model", "model/net", "trainer"]);
    }

    #[test]
    fn splits_header_defaults_and_content() {
        let r = repo();
        let cfg = r.load("config").unwrap().unwrap();
        let defaults = cfg.defaults.clone().unwrap();
        assert_eq!(defaults.len(), 6);
        assert!(
            matches!(&defaults[1], DefaultsEntry::Group { group, is_override: true, .. } if group == "/trainer")
        );
        assert!(matches!(
            &defaults[2],
            DefaultsEntry::Group { optional: true, .. }
        ));
        assert!(
            matches!(&defaults[3], DefaultsEntry::Group { package: Some(p), .. } if p == "model.path")
        );
        assert_eq!(defaults[5], DefaultsEntry::SelfRef);
        assert!(cfg.content.child("defaults").is_none());
        let fm = r.load("model/fm").unwrap().unwrap();
        assert_eq!(fm.package_header.as_deref(), Some("_global_"));
        assert!(r.load("model/nope").unwrap().is_none());
    }

    #[test]
    fn header_stops_at_first_plain_comment() {
        assert_eq!(parse_header("# hello\n# @package x\n", "f").unwrap(), None);
        assert_eq!(
            parse_header("\n# @package a.b\nk: 1\n", "f")
                .unwrap()
                .as_deref(),
            Some("a.b")
        );
        assert!(parse_header("# @package\n", "f").is_err());
    }
}

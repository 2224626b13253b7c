//! One defaults-list entry placed in its parent, and Hydra's rules for its group path,
//! config path, package and override key.

use super::super::repo::{DefaultsEntry, GroupChoice};

/// What a defaults entry refers to.
#[derive(Debug, Clone)]
pub(super) enum EntryKind {
    SelfRef,
    Config {
        path: String,
    },
    Group {
        group: String,
        choice: GroupChoice,
        is_override: bool,
    },
}

/// One entry of a defaults list, placed in its parent (Hydra's `InputDefault`).
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) kind: EntryKind,
    pub(super) package: Option<String>,
    pub(super) optional: bool,
    pub(super) primary: bool,
    pub(super) parent_base_dir: String,
    pub(super) parent_package: String,
    pub(super) package_header: Option<String>,
    pub(super) deleted: bool,
    pub(super) external_append: bool,
}

impl Entry {
    pub(super) fn new(kind: EntryKind, package: Option<String>, optional: bool) -> Self {
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

    pub(super) fn from_written(e: &DefaultsEntry) -> Self {
        match e {
            DefaultsEntry::SelfRef => Entry::new(EntryKind::SelfRef, None, false),
            DefaultsEntry::Config {
                path,
                package,
                optional,
            } => Entry::new(
                EntryKind::Config { path: path.clone() },
                package.clone(),
                *optional,
            ),
            DefaultsEntry::Group {
                group,
                package,
                choice,
                optional,
                is_override,
            } => Entry::new(
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

    pub(super) fn is_self(&self) -> bool {
        matches!(self.kind, EntryKind::SelfRef)
    }

    pub(super) fn is_override(&self) -> bool {
        matches!(
            self.kind,
            EntryKind::Group {
                is_override: true,
                ..
            }
        )
    }

    pub(super) fn is_group(&self) -> bool {
        matches!(self.kind, EntryKind::Group { .. })
    }

    pub(super) fn update_parent(&mut self, base_dir: &str, package: &str) {
        self.parent_base_dir = base_dir.to_string();
        self.parent_package = package.to_string();
    }

    pub(super) fn group_path(&self) -> String {
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

    pub(super) fn name(&self) -> Option<String> {
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

    pub(super) fn config_path(&self) -> String {
        let group = self.group_path();
        let name = self.name().unwrap_or_default();
        if group.is_empty() {
            name
        } else {
            format!("{group}/{name}")
        }
    }

    pub(super) fn relative_group_path(&self) -> String {
        match &self.kind {
            EntryKind::Group { group, .. } => group.trim_start_matches('/').to_string(),
            EntryKind::Config { path } => {
                let p = path.trim_start_matches('/');
                p.rfind('/').map(|i| p[..i].to_string()).unwrap_or_default()
            }
            EntryKind::SelfRef => String::new(),
        }
    }

    pub(super) fn default_package(&self) -> String {
        self.group_path().replace('/', ".")
    }

    pub(super) fn set_package_header(&mut self, header: Option<&str>) {
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

    pub(super) fn final_package(&self, default_to_header: bool) -> String {
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
            Some(i) => joined
                .get(i + "_global_".len() + 1..)
                .unwrap_or("")
                .to_string(),
            None => joined,
        }
    }

    pub(super) fn override_key(&self) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn group(group: &str, package: Option<&str>, parent_dir: &str, parent_pkg: &str) -> Entry {
        let mut e = Entry::new(
            EntryKind::Group {
                group: group.into(),
                choice: GroupChoice::Name("opt".into()),
                is_override: false,
            },
            package.map(str::to_string),
            false,
        );
        e.update_parent(parent_dir, parent_pkg);
        e
    }

    #[test]
    fn packages_and_override_keys_follow_hydra() {
        let e = group("model/path", None, "", "");
        assert_eq!(
            (e.final_package(true), e.override_key()),
            ("model.path".into(), "model/path".into())
        );
        let e = group("net", None, "model", "model");
        assert_eq!(
            (e.config_path(), e.final_package(true), e.override_key()),
            (
                "model/net/opt".into(),
                "model.net".into(),
                "model/net".into()
            )
        );
        let e = group("path", Some("model.path"), "", "");
        assert_eq!(e.override_key(), "path@model.path");
        let e = group("/trainer", None, "experiment", "");
        assert_eq!(
            (e.group_path(), e.override_key()),
            ("trainer".into(), "trainer".into())
        );
        let mut e = group("path", None, "", "");
        e.set_package_header(Some("model.path"));
        assert_eq!(
            (e.final_package(true), e.override_key()),
            ("model.path".into(), "path".into())
        );
        let mut e = group("experiment", None, "", "");
        e.set_package_header(Some("_global_"));
        assert_eq!(e.final_package(true), "");
    }
}

//! `--help` (flags, config groups and their options, the composed config) and `--info` texts.

use super::args::InfoTopic;
use super::job_part;
use super::CommandError;
use crate::config::defaults::DefaultsTree;
use crate::config::emit::to_yaml;
use crate::config::loader::{parse_overrides, ConfigLoader, RunMode};
use std::fmt::Write as _;

const FLAGS: &str = "\
== Flags ==
  --config-name, -cn NAME   primary config (default: train_fb_flow_matching), with or without .yaml
  --config-path, -cp DIR    use DIR as the config tree instead of the shipped one
  --config-dir,  -cd DIR    search DIR before the shipped configs (may repeat)
  --cfg, -c job|hydra|all   print the composed config and exit (nothing is written)
  --resolve                 with --cfg: resolve ${...} interpolations
  --package, -p PKG         with --cfg: print only PKG (e.g. model.path)
  --info [all|config|defaults|defaults-tree|searchpath]
                            explain the composition and exit
  --multirun, -m            sweep: a,b  range(1,4)  choice(a,b)  glob(*)
  --version                 print the version
  --help, -h                this text

== Overrides ==
  key=value      change an existing value     +key=value   add a new key
  ++key=value    add or change                ~key         delete a key
  group=option   choose a config group option +group=option add a group
  group@pkg=opt  choose an option placed at package pkg
";

/// The `--help` text: usage, config groups with their options, the composed config, flags.
pub fn help_text(loader: &ConfigLoader, job_name: &str, config_name: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{job_name} (flowrun {}): Hydra-style composable experiment runner\n",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(s, "Usage: {job_name} [FLAGS] [OVERRIDES]...\n");
    let _ = writeln!(
        s,
        "== Configuration groups ==\nCompose your configuration from those groups (group=option)\n"
    );
    for group in loader.repo.all_groups() {
        let options = loader.repo.group_options(&group);
        if !options.is_empty() {
            let _ = writeln!(s, "{group}: {}", options.join(", "));
        }
    }
    let _ = writeln!(
        s,
        "\nPrimary configs (--config-name): {}\n",
        loader.repo.group_options("").join(", ")
    );
    let _ = writeln!(
        s,
        "== Config ==\nOverride anything in the config (foo.bar=value)\n"
    );
    match loader.compose(config_name, &[], RunMode::Run) {
        Ok(c) => s.push_str(&to_yaml(&job_part(&c.root))),
        Err(e) => {
            let _ = writeln!(s, "(the config '{config_name}' cannot be composed: {e})");
        }
    }
    s.push('\n');
    s.push_str(FLAGS);
    s
}

fn write_tree(s: &mut String, tree: &DefaultsTree, depth: usize) {
    let _ = writeln!(s, "{}{}", "  ".repeat(depth), tree.label);
    for c in &tree.children {
        write_tree(s, c, depth + 1);
    }
}

/// The `--info` text for one topic (or all of them).
pub fn info_text(
    loader: &ConfigLoader,
    config_name: &str,
    overrides: &[String],
    multirun: bool,
    topic: InfoTopic,
) -> Result<String, CommandError> {
    let mut s = String::new();
    let all = topic == InfoTopic::All;
    if all || topic == InfoTopic::Searchpath {
        let _ = writeln!(s, "Config search path\n******************");
        let _ = writeln!(s, "| Provider     | Search path");
        for src in loader.repo.sources() {
            let d = src.describe();
            let (provider, path) = d.split_once(", path=").unwrap_or(("", d.as_str()));
            let _ = writeln!(
                s,
                "| {:<12} | {path}",
                provider.trim_start_matches("provider=")
            );
        }
        s.push('\n');
        if topic == InfoTopic::Searchpath {
            return Ok(s);
        }
    }
    let mode = if multirun {
        RunMode::Multirun
    } else {
        RunMode::Run
    };
    let parsed = parse_overrides(overrides, mode)?;
    let composed = loader.compose(config_name, &parsed, mode)?;
    if all || topic == InfoTopic::DefaultsTree {
        let _ = writeln!(s, "Defaults Tree\n*************");
        write_tree(&mut s, &composed.defaults.tree, 0);
        s.push('\n');
    }
    if all || topic == InfoTopic::Defaults {
        let _ = writeln!(s, "Defaults List\n*************");
        let rows: Vec<(String, String, String, String)> = composed
            .defaults
            .defaults
            .iter()
            .map(|d| {
                (
                    d.config_path.clone(),
                    d.package.clone(),
                    d.parent.clone().unwrap_or_default(),
                    if d.is_self {
                        "True".into()
                    } else {
                        "False".into()
                    },
                )
            })
            .collect();
        let w0 = rows
            .iter()
            .map(|r| r.0.len())
            .max()
            .unwrap_or(0)
            .max("Config path".len());
        let w1 = rows
            .iter()
            .map(|r| r.1.len())
            .max()
            .unwrap_or(0)
            .max("Package".len());
        let w2 = rows
            .iter()
            .map(|r| r.2.len())
            .max()
            .unwrap_or(0)
            .max("_self_".len());
        let _ = writeln!(
            s,
            "| {:<w0$} | {:<w1$} | {:<w2$} | _self_",
            "Config path", "Package", "Parent"
        );
        for r in rows {
            let _ = writeln!(s, "| {:<w0$} | {:<w1$} | {:<w2$} | {}", r.0, r.1, r.2, r.3);
        }
        s.push('\n');
    }
    if all || topic == InfoTopic::Config {
        let _ = writeln!(s, "Config\n******");
        s.push_str(&to_yaml(&job_part(&composed.root)));
    }
    Ok(s)
}

//! The staged pipeline that turns a config name and overrides into a config, as Hydra's
//! `ConfigLoaderImpl` does: parse overrides, expand the defaults list, merge, apply value
//! overrides, record runtime information in the `hydra` node, then resolve on demand.

use super::compose::{compose, Composed};
use super::error::ConfigError;
use super::interp::{ResolveContext, Resolver};
use super::machine::MachineSettings;
use super::node::{Map, Node, Value};
use super::overrides::{Override, OverrideValue};
use super::repo::ConfigRepository;
use super::yaml;
use std::sync::Arc;

/// Whether a command runs one job or a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// One job (`hydra.mode: RUN`).
    Run,
    /// A sweep of jobs (`hydra.mode: MULTIRUN`).
    Multirun,
}

const HYDRA_BASE: &str = "\
run:
  dir: ???
sweep:
  dir: ???
  subdir: ${hydra.job.num}
mode: RUN
searchpath: []
overrides:
  hydra: []
  task: []
job:
  name: ???
  chdir: false
  override_dirname: ''
  id: ???
  num: ???
  config_name: ???
  env_set: {}
  config:
    override_dirname:
      kv_sep: '='
      item_sep: ','
      exclude_keys: []
runtime:
  version: ???
  version_base: '1.3'
  cwd: ''
  output_dir: ???
  config_sources: []
  choices: {}
verbose: false
";

fn str_node(s: &str) -> Node {
    Node::builtin(Value::Str(s.to_string()))
}

fn set(root: &mut Node, path: &str, value: Node) {
    let (parent, last) = match path.rsplit_once('.') {
        Some((p, l)) => (root.select_mut(p), l),
        None => (Some(root), path),
    };
    if let Some(Node {
        value: Value::Map(m),
        ..
    }) = parent
    {
        m.insert(last.to_string(), value);
    }
}

/// Parses command-line overrides, rejecting sweeps unless `mode` is [`RunMode::Multirun`].
pub fn parse_overrides(args: &[String], mode: RunMode) -> Result<Vec<Override>, ConfigError> {
    let mut out = Vec::with_capacity(args.len());
    for arg in args {
        let ov = Override::parse(arg)?;
        if ov.is_sweep() && mode == RunMode::Run {
            return Err(ConfigError::composition_with_hint(
                format!(
                    "Ambiguous value for argument '{arg}'\n1. To use it as a list, use key=[value1,value2]\n2. To use it as string, quote the value: key=\\'value1,value2\\'\n3. To sweep over it, add --multirun to your command line"
                ),
                format!("to sweep, run again with -m; for a list write {}=[...]", ov.key_element()),
            ));
        }
        out.push(ov);
    }
    Ok(out)
}

/// Everything needed to compose configs for one command invocation.
#[derive(Debug)]
pub struct ConfigLoader {
    /// The config search path.
    pub repo: ConfigRepository,
    /// Machine settings (outputs root, data root, ...).
    pub machine: MachineSettings,
    /// Shared resolution inputs (one "now" for the whole invocation).
    pub context: ResolveContext,
    /// Hydra's job name (the command: `train`, `sample`, ...).
    pub job_name: String,
}

impl ConfigLoader {
    /// A loader over `repo` for the command `job_name`.
    pub fn new(repo: ConfigRepository, machine: MachineSettings, job_name: &str) -> Self {
        let context = ResolveContext::new(machine.as_resolver_values());
        ConfigLoader {
            repo,
            machine,
            context,
            job_name: job_name.to_string(),
        }
    }

    fn hydra_base(&self, config_name: &str, mode: RunMode) -> Result<Node, ConfigError> {
        let mut node = yaml::load_str(HYDRA_BASE, &Arc::from("<flowrun built-in hydra config>"))?
            .unwrap_or_else(|| Node::builtin(Value::Map(Map::new())));
        let run_dir = format!(
            "{}/${{now:%Y-%m-%d}}/${{now:%H-%M-%S}}",
            self.machine.outputs_root
        );
        let sweep_dir = format!(
            "{}/${{now:%Y-%m-%d}}/${{now:%H-%M-%S}}",
            self.machine.multirun_root
        );
        set(&mut node, "run.dir", str_node(&run_dir));
        set(&mut node, "sweep.dir", str_node(&sweep_dir));
        let mode_text = if mode == RunMode::Run {
            "RUN"
        } else {
            "MULTIRUN"
        };
        set(&mut node, "mode", str_node(mode_text));
        set(&mut node, "job.name", str_node(&self.job_name));
        set(&mut node, "job.config_name", str_node(config_name));
        set(
            &mut node,
            "runtime.version",
            str_node(concat!("flowrun ", env!("CARGO_PKG_VERSION"))),
        );
        let cwd = std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        set(&mut node, "runtime.cwd", str_node(&cwd));
        let sources = self
            .repo
            .sources()
            .iter()
            .map(|s| str_node(&s.describe()))
            .collect();
        set(
            &mut node,
            "runtime.config_sources",
            Node::builtin(Value::List(sources)),
        );
        Ok(node)
    }

    /// Composes `config_name` with `overrides` and fills the `hydra` node's runtime fields.
    pub fn compose(
        &self,
        config_name: &str,
        overrides: &[Override],
        mode: RunMode,
    ) -> Result<Composed, ConfigError> {
        self.compose_impl(config_name, overrides, mode, false)
    }

    /// Composes the sweep's own config (`multirun.yaml`): sweep overrides are recorded in
    /// `hydra.overrides.task` but not applied, and mandatory groups may stay unchosen.
    pub fn compose_sweep(
        &self,
        config_name: &str,
        overrides: &[Override],
    ) -> Result<Composed, ConfigError> {
        self.compose_impl(config_name, overrides, RunMode::Multirun, true)
    }

    fn compose_impl(
        &self,
        config_name: &str,
        overrides: &[Override],
        mode: RunMode,
        sweep_master: bool,
    ) -> Result<Composed, ConfigError> {
        let config_name = config_name.strip_suffix(".yaml").unwrap_or(config_name);
        let hydra = self.hydra_base(config_name, mode)?;
        let applied: Vec<Override> = overrides
            .iter()
            .filter(|o| !(sweep_master && o.is_sweep()))
            .cloned()
            .collect();
        let mut composed = compose(&self.repo, config_name, &applied, hydra, sweep_master)?;
        let (hydra_ovs, task_ovs): (Vec<&Override>, Vec<&Override>) =
            overrides.iter().partition(|o| o.is_hydra());
        let as_list = |ovs: &[&Override]| {
            Node::builtin(Value::List(
                ovs.iter().map(|o| str_node(&o.input)).collect(),
            ))
        };
        set(
            &mut composed.root,
            "hydra.overrides.task",
            as_list(&task_ovs),
        );
        set(
            &mut composed.root,
            "hydra.overrides.hydra",
            as_list(&hydra_ovs),
        );
        let mut choices = Map::new();
        for (k, v) in &composed.defaults.choices {
            let value = match v {
                Some(s) => Value::Str(s.clone()),
                None => Value::Null,
            };
            choices.insert(k.clone(), Node::builtin(value));
        }
        set(
            &mut composed.root,
            "hydra.runtime.choices",
            Node::builtin(Value::Map(choices)),
        );
        let dirname = override_dirname(&composed.root, &task_ovs);
        set(
            &mut composed.root,
            "hydra.job.override_dirname",
            str_node(&dirname),
        );
        Ok(composed)
    }

    /// The resolved copy of the node at `path` (`""` for everything, `"hydra"` for the hydra node).
    pub fn resolve(&self, composed: &Composed, path: &str) -> Result<Node, ConfigError> {
        Resolver::new(&composed.root, &self.context).resolved(path)
    }
}

/// Hydra's `hydra.job.override_dirname`: the task overrides, sorted, joined with `item_sep`.
fn override_dirname(root: &Node, task: &[&Override]) -> String {
    let text = |path: &str, default: &str| {
        root.select(path)
            .and_then(|n| n.value.as_str())
            .unwrap_or(default)
            .to_string()
    };
    let kv_sep = text("hydra.job.config.override_dirname.kv_sep", "=");
    let item_sep = text("hydra.job.config.override_dirname.item_sep", ",");
    let excluded: Vec<String> = match root
        .select("hydra.job.config.override_dirname.exclude_keys")
        .map(|n| &n.value)
    {
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|n| n.value.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let mut lines: Vec<String> = task
        .iter()
        .filter(|o| !excluded.contains(&o.key))
        .filter(|o| !matches!(o.value, OverrideValue::Sweep(_)))
        .map(|o| o.input.replace('=', &kv_sep))
        .collect();
    lines.sort();
    lines.join(&item_sep)
}

//! The Hydra-style command flow shared by flowrun's commands: parse flags, compose, then either
//! print (`--cfg`, `--info`, `--help`) or create run directories and run each job.
//!
//! Nothing below this module prints; errors come back typed and are rendered here, once.

pub mod args;
pub mod evaluate;
pub mod gen_data;
pub mod info;
pub mod inspect;
pub mod sample;
pub mod train;
pub mod trained;

use crate::config::error::ConfigError;
use crate::config::loader::{parse_overrides, ConfigLoader, RunMode};
use crate::config::machine::MachineSettings;
use crate::config::node::{Map, Node, Value};
use crate::config::repo::{dir_source, ConfigRepository, ConfigSource};
use crate::config::schema::{load_evaluate_settings, load_inspect_settings};
use crate::config::schema::{load_sample_settings, load_train_settings};
use crate::config::schema::{EvaluateSettings, InspectSettings, SampleSettings};
use crate::config::schema::{SchemaError, TrainSettings};
use crate::config::sweep::expand_sweeps;
use crate::config::{emit::to_yaml, SHIPPED_CONF};
use crate::dist::DistError;
use crate::inspect::InspectError;
use crate::run::{create_fresh_dir, create_run_dir, RunSnapshot};
use crate::train::checkpoint::{resolve_ckpt_path, CheckpointError};
use crate::train::error::{TrainError, OUTPUT_DIR_HINT};
use args::{CfgPart, CommandArgs};
use clap::Parser;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Everything that can stop a command, rendered as one message plus an optional hint.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A config could not be composed, resolved or parsed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The composed config does not fit the typed schema.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A flag or path given on the command line is wrong.
    #[error("{message}")]
    Usage {
        /// What is wrong.
        message: String,
        /// What to type instead.
        hint: Option<String>,
    },
    /// Training stopped with an error.
    #[error(transparent)]
    Train(Box<TrainError>),
    /// Data-parallel training could not start, or one of its workers failed.
    #[error(transparent)]
    Dist(Box<DistError>),
    /// A checkpoint named by `ckpt_path` cannot be used.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// SIGINT or SIGTERM stopped training after `last.ckpt` was written.
    #[error("training interrupted by {signal}; last.ckpt was written, so the run can resume")]
    Interrupted {
        /// The signal's name.
        signal: &'static str,
        /// The run directory.
        run_dir: PathBuf,
    },
    /// `sample` or `evaluate` could not load, sample or report on a trained run.
    #[error(transparent)]
    Trained(Box<trained::TrainedError>),
    /// `inspect` could not read a run or write its report.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// A file or directory could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl From<TrainError> for CommandError {
    fn from(e: TrainError) -> Self {
        CommandError::Train(Box::new(e))
    }
}

impl From<DistError> for CommandError {
    fn from(e: DistError) -> Self {
        CommandError::Dist(Box::new(e))
    }
}

impl From<trained::TrainedError> for CommandError {
    fn from(e: trained::TrainedError) -> Self {
        CommandError::Trained(Box::new(e))
    }
}

impl CommandError {
    fn hint(&self) -> Option<String> {
        match self {
            CommandError::Config(e) => e.hint().map(str::to_string),
            CommandError::Schema(e) => e.hint().map(str::to_string),
            CommandError::Usage { hint, .. } => hint.clone(),
            CommandError::Train(e) => e.hint(),
            CommandError::Dist(e) => e.hint(),
            CommandError::Checkpoint(_) | CommandError::Trained(_) => None,
            CommandError::Inspect(e) => e.hint(),
            CommandError::Interrupted { run_dir, .. } => Some(format!(
                "resume with: train hydra.run.dir={} ckpt_path=last",
                run_dir.display()
            )),
            CommandError::Io { .. } => Some(OUTPUT_DIR_HINT.to_string()),
        }
    }

    fn exit_code(&self) -> u8 {
        match self {
            CommandError::Usage { .. } => 2,
            CommandError::Interrupted { signal, .. } if *signal == "SIGTERM" => 143,
            CommandError::Interrupted { .. } => 130,
            CommandError::Dist(e) => match **e {
                DistError::WorkerFailed { code, .. } => code,
                _ => 1,
            },
            _ => 1,
        }
    }
}

/// The config `train` composes by default.
pub const DEFAULT_CONFIG_NAME: &str = "train_fb_flow_matching";

/// flowrun's Hydra-style commands; each has its own primary config, schema and job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `train`: fit a model (primary config `train_fb_flow_matching`).
    Train,
    /// `sample`: draw goal masks from a trained run (primary config `sample`).
    Sample,
    /// `evaluate`: sweep samplers × steps on a trained run (primary config `evaluate`).
    Evaluate,
    /// `inspect`: summarise or compare trained runs (primary config `inspect`).
    Inspect,
}

impl Command {
    /// The command a binary named `job_name` runs (`train` for any name but `sample`,
    /// `evaluate` and `inspect`).
    pub fn for_job(job_name: &str) -> Command {
        match job_name {
            "sample" => Command::Sample,
            "evaluate" => Command::Evaluate,
            "inspect" => Command::Inspect,
            _ => Command::Train,
        }
    }

    /// The primary config composed when `--config-name` is not given.
    pub fn default_config(self) -> &'static str {
        match self {
            Command::Train => DEFAULT_CONFIG_NAME,
            Command::Sample => "sample",
            Command::Evaluate => "evaluate",
            Command::Inspect => "inspect",
        }
    }
}

fn usage(message: impl Into<String>, hint: impl Into<String>) -> CommandError {
    CommandError::Usage {
        message: message.into(),
        hint: Some(hint.into()),
    }
}

/// Builds the search path: `--config-dir`s first, then `--config-path` or the shipped tree.
pub fn build_repository(args: &CommandArgs) -> Result<ConfigRepository, CommandError> {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut sources = Vec::new();
    for dir in &args.config_dir {
        if !dir.is_dir() {
            return Err(usage(
                format!("--config-dir {}: no such directory", dir.display()),
                "give an existing directory of YAML configs",
            ));
        }
        sources.push(dir_source("command-line", &absolute(dir)));
    }
    match &args.config_path {
        Some(p) if !p.is_dir() => {
            return Err(usage(
                format!("--config-path {}: no such directory", p.display()),
                "give the directory that holds the primary config, e.g. --config-path conf",
            ))
        }
        Some(p) => sources.push(dir_source("main", &absolute(p))),
        None => sources.push(ConfigSource::Embedded {
            name: "pkg://flowrun/conf".into(),
            files: SHIPPED_CONF,
        }),
    }
    Ok(ConfigRepository::new(sources))
}

/// The job part of a config: everything but the `hydra` node.
pub fn job_part(root: &Node) -> Node {
    let mut map = Map::new();
    if let Value::Map(m) = &root.value {
        for (k, v) in m.iter().filter(|(k, _)| k.as_str() != "hydra") {
            map.insert(k.clone(), v.clone());
        }
    }
    Node::new(Value::Map(map), root.origin.clone())
}

fn print_cfg(
    loader: &ConfigLoader,
    args: &CommandArgs,
    name: &str,
    overrides: &[String],
    part: CfgPart,
) -> Result<String, CommandError> {
    let mode = if args.multirun {
        RunMode::Multirun
    } else {
        RunMode::Run
    };
    let parsed = parse_overrides(overrides, mode)?;
    let composed = match mode {
        RunMode::Run => loader.compose(name, &parsed, mode)?,
        RunMode::Multirun => loader.compose_sweep(name, &parsed)?,
    };
    let root = if args.resolve {
        let mut map = Map::new();
        if let Value::Map(m) = &composed.root.value {
            for k in m.keys() {
                if part == CfgPart::Job && k == "hydra" {
                    continue;
                }
                map.insert(k.clone(), loader.resolve(&composed, k)?);
            }
        }
        Node::builtin(Value::Map(map))
    } else {
        composed.root.clone()
    };
    let shown = match part {
        CfgPart::Job => job_part(&root),
        CfgPart::Hydra => {
            let mut m = Map::new();
            m.insert(
                "hydra".into(),
                root.child("hydra")
                    .cloned()
                    .unwrap_or_else(|| Node::builtin(Value::Map(Map::new()))),
            );
            Node::builtin(Value::Map(m))
        }
        CfgPart::All => root,
    };
    match &args.package {
        None => Ok(to_yaml(&shown)),
        Some(pkg) => match shown.select(pkg) {
            Some(n) => Ok(format!("# @package {pkg}\n{}", to_yaml(n))),
            None => Err(usage(
                format!("--package {pkg}: no such key in the composed config"),
                "see the keys with --cfg job",
            )),
        },
    }
}

/// One job ready to run: its overrides, composed and checked config, and its run directory.
struct PreparedJob<S> {
    overrides: Vec<String>,
    settings: S,
    snapshot: RunSnapshot,
    dir: PathBuf,
}

fn prepare_job<S>(
    loader: &ConfigLoader,
    name: &str,
    overrides: Vec<String>,
    mode: RunMode,
    num: usize,
    load: fn(&Node) -> Result<S, SchemaError>,
) -> Result<PreparedJob<S>, CommandError> {
    let parsed = parse_overrides(&overrides, RunMode::Run)?;
    let mut composed = loader.compose(name, &parsed, mode)?;
    if mode == RunMode::Multirun {
        if let Some(Node {
            value: Value::Map(job),
            ..
        }) = composed.root.select_mut("hydra.job")
        {
            job.insert("num".into(), Node::builtin(Value::Int(num as i64)));
            job.insert("id".into(), Node::builtin(Value::Str(format!("{num}"))));
        }
    }
    let resolved = loader.resolve(&composed, "")?;
    let job = job_part(&resolved);
    let mut missing = Vec::new();
    crate::config::interp::find_missing(&job, "", &mut missing);
    missing.retain(|m| {
        composed
            .root
            .select(&m.key)
            .is_some_and(|raw| raw.value.is_missing())
    });
    if !missing.is_empty() {
        return Err(ConfigError::MissingValues(missing).into());
    }
    let settings = load(&job)?;
    let hydra = resolved
        .child("hydra")
        .cloned()
        .unwrap_or_else(|| Node::builtin(Value::Map(Map::new())));
    let dir_key = if mode == RunMode::Run {
        "run.dir"
    } else {
        "sweep.subdir"
    };
    let dir_text = hydra
        .select(dir_key)
        .and_then(|n| n.value.as_str())
        .map(str::to_string);
    let dir_text = dir_text
        .or_else(|| {
            hydra
                .select(dir_key)
                .map(|n| crate::config::pyfmt::python_str(&n.value))
        })
        .unwrap_or_default();
    let task_overrides = parsed
        .iter()
        .filter(|o| !o.is_hydra())
        .map(|o| o.input.clone())
        .collect();
    Ok(PreparedJob {
        overrides,
        settings,
        snapshot: RunSnapshot {
            config: job,
            config_unresolved: job_part(&composed.root),
            overrides: task_overrides,
            hydra,
        },
        dir: PathBuf::from(dir_text),
    })
}

/// A run directory and the checkpoint the job resumes from.
type OpenedDir = (PathBuf, Option<PathBuf>);

/// Runs one job in its directory, resuming from a checkpoint, writing progress lines.
type ExecJob<S> =
    fn(&PreparedJob<S>, &Path, Option<PathBuf>, &mut dyn Write) -> Result<(), CommandError>;

/// How one command prepares and runs its jobs.
struct JobKind<S> {
    /// The command's name, prefixed to its console lines.
    name: &'static str,
    /// Decodes the resolved job config.
    load: fn(&Node) -> Result<S, SchemaError>,
    /// The directory of a single run and the checkpoint it resumes from.
    open_single: fn(&PreparedJob<S>) -> Result<OpenedDir, CommandError>,
    /// The checkpoint a job of a sweep resumes from.
    resume_swept: fn(&PreparedJob<S>) -> Result<Option<PathBuf>, CommandError>,
    /// Runs one job in its directory.
    exec: ExecJob<S>,
}

const TRAIN: JobKind<TrainSettings> = JobKind {
    name: "train",
    load: load_train_settings,
    open_single: train::open_run_dir,
    resume_swept: |job| match &job.settings.ckpt_path {
        Some(path) => Ok(Some(resolve_ckpt_path(path, None)?)),
        None => Ok(None),
    },
    exec: |job, dir, resume_from, _| train::train_swept_job(job, dir, resume_from),
};

fn fresh_dir<S>(job: &PreparedJob<S>) -> Result<OpenedDir, CommandError> {
    let dir = create_run_dir(&job.dir, &job.snapshot).map_err(|source| CommandError::Io {
        path: job.dir.display().to_string(),
        source,
    })?;
    Ok((dir, None))
}

const SAMPLE: JobKind<SampleSettings> = JobKind {
    name: "sample",
    load: load_sample_settings,
    open_single: fresh_dir,
    resume_swept: |_| Ok(None),
    exec: |job, dir, _, out| {
        sample::run_sample(&job.settings, dir, out)?;
        Ok(())
    },
};

const EVALUATE: JobKind<EvaluateSettings> = JobKind {
    name: "evaluate",
    load: load_evaluate_settings,
    open_single: fresh_dir,
    resume_swept: |_| Ok(None),
    exec: |job, dir, _, out| {
        evaluate::run_evaluate(&job.settings, dir, out)?;
        Ok(())
    },
};

const INSPECT: JobKind<InspectSettings> = JobKind {
    name: "inspect",
    load: load_inspect_settings,
    open_single: |job| {
        inspect::check_runs(&job.settings)?;
        fresh_dir(job)
    },
    resume_swept: |job| {
        inspect::check_runs(&job.settings)?;
        Ok(None)
    },
    exec: |job, dir, _, out| {
        inspect::run_inspect(&job.settings, dir, out)?;
        Ok(())
    },
};

fn run_jobs<S>(
    loader: &ConfigLoader,
    args: &CommandArgs,
    name: &str,
    out: &mut dyn Write,
    kind: &JobKind<S>,
) -> Result<(), CommandError> {
    let io_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| CommandError::Io { path, source }
    };
    let cmd = kind.name;
    if !args.multirun {
        let job = prepare_job(
            loader,
            name,
            args.overrides.clone(),
            RunMode::Run,
            0,
            kind.load,
        )?;
        let (dir, resume_from) = (kind.open_single)(&job)?;
        let _ = writeln!(out, "[{cmd}] run directory: {}", dir.display());
        let _ = out.flush();
        return (kind.exec)(&job, &dir, resume_from, out);
    }
    let parsed = parse_overrides(&args.overrides, RunMode::Multirun)?;
    let jobs = expand_sweeps(&parsed, &loader.repo)?;
    let mut prepared = Vec::with_capacity(jobs.len());
    for (num, overrides) in jobs.into_iter().enumerate() {
        prepared.push(prepare_job(
            loader,
            name,
            overrides,
            RunMode::Multirun,
            num,
            kind.load,
        )?);
    }
    let sweep_dir_text = prepared
        .first()
        .and_then(|j| j.snapshot.hydra.select("sweep.dir"))
        .and_then(|n| n.value.as_str())
        .unwrap_or("multirun")
        .to_string();
    let sweep_dir =
        create_fresh_dir(Path::new(&sweep_dir_text)).map_err(io_err(Path::new(&sweep_dir_text)))?;
    let _ = writeln!(out, "[{cmd}] sweep directory: {}", sweep_dir.display());
    let _ = writeln!(out, "[{cmd}] Launching {} jobs locally", prepared.len());
    for (num, job) in prepared.iter().enumerate() {
        let _ = writeln!(out, "[{cmd}] \t#{num} : {}", job.overrides.join(" "));
    }
    let composed = loader.compose_sweep(name, &parsed)?;
    let multirun_yaml = to_yaml(&composed.root);
    crate::run::atomic_write(&sweep_dir.join("multirun.yaml"), multirun_yaml.as_bytes())
        .map_err(io_err(&sweep_dir))?;
    for (num, job) in prepared.into_iter().enumerate() {
        let wanted = sweep_dir.join(&job.dir);
        let dir = create_run_dir(&wanted, &job.snapshot).map_err(io_err(&wanted))?;
        let _ = writeln!(out, "[{cmd}] job #{num}: {}", dir.display());
        let _ = out.flush();
        let resume_from = (kind.resume_swept)(&job)?;
        (kind.exec)(&job, &dir, resume_from, out)?;
    }
    Ok(())
}

fn run_command(
    job_name: &str,
    argv: Vec<OsString>,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let raw_args: Vec<OsString> = argv.iter().skip(1).cloned().collect();
    let args = CommandArgs::try_parse_from(args::normalize_argv(argv)).map_err(|e| {
        let text = e.to_string();
        let first = text
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ")
            .to_string();
        usage(first, "see --help for the flags")
    })?;
    if args.version {
        let _ = writeln!(out, "{job_name} (flowrun) {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let repo = build_repository(&args)?;
    let machine = MachineSettings::load()
        .map_err(|m| usage(m, "fix the FLOWRUN_* variables or the settings file"))?;
    crate::model::kernels::set_fused(machine.fused);
    crate::model::kernels::set_blas(&machine.blas).map_err(|e| {
        usage(
            e.to_string(),
            "set FLOWRUN_BLAS=auto to fall back to candle's gemm when OpenBLAS is missing",
        )
    })?;
    crate::model::kernels::tune_allocator();
    let loader = ConfigLoader::new(repo, machine, job_name);
    let command = Command::for_job(job_name);
    let name = args
        .config_name
        .clone()
        .unwrap_or_else(|| command.default_config().to_string());
    if args.help {
        let _ = write!(out, "{}", info::help_text(&loader, job_name, &name));
        return Ok(());
    }
    if let Some(topic) = args.info {
        let text = info::info_text(&loader, &name, &args.overrides, args.multirun, topic)?;
        let _ = write!(out, "{text}");
        return Ok(());
    }
    if let Some(part) = args.cfg {
        let text = print_cfg(&loader, &args, &name, &args.overrides, part)?;
        let _ = write!(out, "{text}");
        return Ok(());
    }
    match command {
        Command::Train if !args.multirun => {
            train::run_single(&loader, &name, &args, &raw_args, out)
        }
        Command::Train => run_jobs(&loader, &args, &name, out, &TRAIN),
        Command::Sample => run_jobs(&loader, &args, &name, out, &SAMPLE),
        Command::Evaluate => run_jobs(&loader, &args, &name, out, &EVALUATE),
        Command::Inspect => run_jobs(&loader, &args, &name, out, &INSPECT),
    }
}

/// Runs a flowrun command (`train`, `sample`, `evaluate`, `inspect`) on `argv` and returns the process exit code.
pub fn main_for(job_name: &str, argv: Vec<OsString>) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match run_command(job_name, argv, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = out.flush();
            let mut err = std::io::stderr().lock();
            if matches!(e, CommandError::Interrupted { .. }) {
                let _ = writeln!(err, "{e}");
            } else {
                let _ = writeln!(err, "error: {e}");
            }
            if let Some(h) = e.hint() {
                let _ = writeln!(err, "hint: {h}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

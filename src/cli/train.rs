//! The `train` command's job: one process, the launcher of a data-parallel node, or one rank of
//! a data-parallel job (see [`crate::dist`]).

use super::{prepare_job, usage, CommandArgs, CommandError, PreparedJob, TRAIN};
use crate::config::loader::{ConfigLoader, RunMode};
use crate::config::node::{Map, Node, Value};
use crate::config::schema::{ScaleLr, TrainSettings};
use crate::dist::launch::{self, LaunchPlan};
use crate::dist::{effective_batch, Backend, World};
use crate::run::{create_run_dir, write_snapshot};
use crate::telemetry::{ConsoleSettings, DisplayMode};
use crate::train::checkpoint::resolve_ckpt_path;
use crate::train::fit::{fit, FitRequest, StopReason};
use crate::train::shutdown::ShutdownSignal;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CommandError {
    let path = path.display().to_string();
    move |source| CommandError::Io { path, source }
}

/// The run directory of a single run and the checkpoint it resumes from. `ckpt_path=last`
/// continues the run in `hydra.run.dir` itself; any other checkpoint starts a fresh directory.
pub(super) fn open_run_dir(
    job: &PreparedJob<TrainSettings>,
) -> Result<(PathBuf, Option<PathBuf>), CommandError> {
    match job.settings.ckpt_path.as_deref() {
        Some(last) if last.trim() == "last" => {
            let ckpt = resolve_ckpt_path(last, Some(&job.dir))?;
            write_snapshot(&job.dir, &job.snapshot).map_err(io_err(&job.dir))?;
            Ok((job.dir.clone(), Some(ckpt)))
        }
        Some(path) => {
            let ckpt = resolve_ckpt_path(path, None)?;
            let dir = create_run_dir(&job.dir, &job.snapshot).map_err(io_err(&job.dir))?;
            Ok((dir, Some(ckpt)))
        }
        None => {
            let dir = create_run_dir(&job.dir, &job.snapshot).map_err(io_err(&job.dir))?;
            Ok((dir, None))
        }
    }
}

fn shutdown_signal() -> Result<ShutdownSignal, CommandError> {
    ShutdownSignal::install().map_err(|e| CommandError::Io {
        path: "signal handlers".to_string(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// Trains one prepared job in `dir` as a rank of `world`.
fn train_job(
    job: &PreparedJob<TrainSettings>,
    dir: &Path,
    resume_from: Option<PathBuf>,
    world: &World,
    device: Option<candle_core::Device>,
) -> Result<(), CommandError> {
    let shutdown = shutdown_signal()?;
    let request = FitRequest {
        settings: &job.settings,
        config: &job.snapshot.config,
        run_dir: dir,
        resume_from,
        console: ConsoleSettings {
            mode: DisplayMode::Auto,
            plain_interval: std::time::Duration::from_secs_f64(
                job.settings.trainer.progress_interval_s,
            ),
        },
        shutdown: &shutdown,
        world,
        device,
    };
    let summary = fit(&request)?;
    match summary.stop {
        StopReason::Interrupted(signal) => Err(CommandError::Interrupted {
            signal,
            run_dir: dir.to_path_buf(),
        }),
        StopReason::Finished | StopReason::EarlyStopping(_) => Ok(()),
    }
}

/// Trains one job of a sweep (always a single process).
pub(super) fn train_swept_job(
    job: &PreparedJob<TrainSettings>,
    dir: &Path,
    resume_from: Option<PathBuf>,
) -> Result<(), CommandError> {
    if Backend::for_trainer(&job.settings.trainer)?.is_some() {
        return Err(usage(
            "data-parallel training (trainer.strategy=ddp) runs one job at a time, not under \
             --multirun",
            "run each configuration as its own `train trainer=... ` command",
        ));
    }
    train_job(job, dir, resume_from, &World::single(), None)
}

/// Records the data-parallel layout and the effective batch in `hydra.runtime.data_parallel`
/// (written to `.hydra/hydra.yaml`).
fn record_layout(job: &mut PreparedJob<TrainSettings>, world: usize) {
    let t = &job.settings.trainer;
    let accumulate = t.accumulate_grad_batches.max(1);
    let lr = match t.scale_lr {
        ScaleLr::None => job.settings.optimizer.lr,
        ScaleLr::Linear => job.settings.optimizer.lr * world as f64,
    };
    let int = |n: usize| Node::builtin(Value::Int(n as i64));
    let mut m = Map::new();
    m.insert("world_size".into(), int(world));
    m.insert("batch_size".into(), int(job.settings.batch_size));
    m.insert("accumulate_grad_batches".into(), int(accumulate));
    m.insert(
        "effective_batch_size".into(),
        int(effective_batch(job.settings.batch_size, world, accumulate)),
    );
    m.insert("lr".into(), Node::builtin(Value::Float(lr)));
    if let Some(Node {
        value: Value::Map(runtime),
        ..
    }) = job.snapshot.hydra.select_mut("runtime")
    {
        runtime.insert("data_parallel".into(), Node::builtin(Value::Map(m)));
    }
}

/// Runs `train` without `--multirun`: alone, as the launcher of this node's ranks, or as one
/// rank of a data-parallel job.
pub(super) fn run_single(
    loader: &ConfigLoader,
    name: &str,
    args: &CommandArgs,
    raw_args: &[OsString],
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let mut job = prepare_job(
        loader,
        name,
        args.overrides.clone(),
        RunMode::Run,
        0,
        TRAIN.load,
    )?;
    let Some(backend) = Backend::for_trainer(&job.settings.trainer)? else {
        record_layout(&mut job, 1);
        let (dir, resume_from) = open_run_dir(&job)?;
        let _ = writeln!(out, "[train] run directory: {}", dir.display());
        let _ = out.flush();
        return train_job(&job, &dir, resume_from, &World::single(), None);
    };
    let env = |k: &str| std::env::var(k).ok();
    let Some(info) = crate::dist::detect(&env)? else {
        return launch_node(&job, backend, raw_args, out);
    };
    let (world, device) = crate::dist::connect(&info, backend, &job.settings.trainer)?;
    record_layout(&mut job, world.size());
    let result = if world.is_main() {
        open_run_dir(&job).and_then(|(dir, resume_from)| {
            let _ = writeln!(out, "[train] run directory: {}", dir.display());
            let _ = out.flush();
            train_job(&job, &dir, resume_from, &world, Some(device))
        })
    } else {
        // Only rank 0 touches the run directory; the others learn the checkpoint's bytes from it.
        let resume_from = job.settings.ckpt_path.as_deref().map(PathBuf::from);
        train_job(&job, &job.dir, resume_from, &world, Some(device))
    };
    if let Err(e) = &result {
        if !matches!(e, CommandError::Interrupted { .. }) {
            let hint = e
                .hint()
                .map(|h| format!(" (hint: {h})"))
                .unwrap_or_default();
            world.report_failure(&format!("{e}{hint}"));
        }
    }
    result
}

/// Starts this node's workers and waits for them.
fn launch_node(
    job: &PreparedJob<TrainSettings>,
    backend: Backend,
    raw_args: &[OsString],
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let env = |k: &str| std::env::var(k).ok();
    let plan = LaunchPlan::new(&job.settings.trainer, backend, &env)?;
    let t = &job.settings.trainer;
    let accumulate = t.accumulate_grad_batches.max(1);
    let run_dir = std::path::absolute(&job.dir).unwrap_or_else(|_| job.dir.clone());
    let _ = writeln!(
        out,
        "[train] data-parallel: starting {} {} ({}), world size {}, effective batch {} \
         (batch_size {} × {} ranks × {} accumulated)",
        plan.local,
        if plan.local == 1 { "rank" } else { "ranks" },
        match backend {
            Backend::Mpi => "mpirun, MPI on the CPU",
            Backend::Nccl => "one process per GPU, NCCL",
        },
        plan.world,
        effective_batch(job.settings.batch_size, plan.world, accumulate),
        job.settings.batch_size,
        plan.world,
        accumulate
    );
    let _ = out.flush();
    let shutdown = shutdown_signal()?;
    let exe = launch::current_exe()?;
    let worker_args = launch::worker_args(raw_args, &run_dir);
    launch::run(&plan, &exe, &worker_args, &shutdown)?;
    Ok(())
}

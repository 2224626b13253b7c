//! `train` as the launcher of one node: with `strategy: ddp` and no launcher's rank variables,
//! it starts the workers itself, as Lightning's ddp strategy does, and waits for them.
//!
//! * MPI (`trainer=ddp_cpu`): one `mpirun -np <devices> --oversubscribe train ...`; mpirun owns
//!   the ranks.
//! * NCCL (`trainer=multi_gpu`): one `train` per GPU with torchrun's variables set (`RANK`,
//!   `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`).
//!
//! The workers get `hydra.run.dir=<the directory this process chose>`, so every rank agrees on it.
//! When a worker fails, the others stop through the control plane; any still running 60 s later
//! are killed. A SIGTERM is passed on. The exit status is the first failure's.

use super::{check_gpu_count, visible_gpus, Backend, DistError};
use crate::config::schema::TrainerSettings;
use crate::train::shutdown::ShutdownSignal;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// How long the other workers may take to stop after one failed.
pub const STOP_GRACE: Duration = Duration::from_secs(60);

/// The workers one node starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchPlan {
    /// The engine.
    pub backend: Backend,
    /// Workers on this node.
    pub local: usize,
    /// Workers in the job.
    pub world: usize,
    /// The global rank of this node's first worker.
    pub first_rank: usize,
    /// Rank 0's rendezvous address (NCCL).
    pub master_addr: String,
    /// Rank 0's rendezvous port (NCCL).
    pub master_port: u16,
}

fn setup(message: String, hint: &str) -> DistError {
    DistError::Setup {
        message,
        hint: hint.to_string(),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map_or(29_500, |a| a.port())
}

impl LaunchPlan {
    /// The plan for `trainer` on this node (`get` reads the environment).
    pub fn new(
        trainer: &TrainerSettings,
        backend: Backend,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<LaunchPlan, DistError> {
        let local = match backend {
            Backend::Mpi => {
                if trainer.num_nodes > 1 {
                    return Err(setup(
                        format!(
                            "trainer=ddp_cpu starts the ranks of one node itself, but \
                             trainer.num_nodes={}",
                            trainer.num_nodes
                        ),
                        "across nodes start the ranks with `mpirun -np N --hostfile ... train ...` \
                         or `srun --mpi=pmix train ...`",
                    ));
                }
                trainer.devices.count().unwrap_or(1)
            }
            Backend::Nccl => {
                let gpus = visible_gpus();
                let n = trainer.devices.count().unwrap_or(gpus);
                if n == 0 {
                    return Err(setup(
                        "trainer.devices=auto found no usable GPU".to_string(),
                        "check the driver and CUDA_VISIBLE_DEVICES, or train on the CPU with \
                         trainer=cpu or trainer=ddp_cpu",
                    ));
                }
                check_gpu_count(n, gpus)?;
                n
            }
        };
        let (master_addr, master_port) = if trainer.num_nodes > 1 {
            let addr = get("MASTER_ADDR");
            let port = get("MASTER_PORT").and_then(|p| p.trim().parse::<u16>().ok());
            match (addr, port) {
                (Some(a), Some(p)) => (a, p),
                _ => {
                    return Err(setup(
                        format!(
                            "trainer.num_nodes={} needs MASTER_ADDR and MASTER_PORT (rank 0's \
                             host and a free port) on every node",
                            trainer.num_nodes
                        ),
                        "export MASTER_ADDR=<first node> MASTER_PORT=29500 and set \
                         trainer.node_rank on each node",
                    ))
                }
            }
        } else {
            let port = get("MASTER_PORT")
                .and_then(|p| p.trim().parse::<u16>().ok())
                .unwrap_or_else(free_port);
            (
                get("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".to_string()),
                port,
            )
        };
        Ok(LaunchPlan {
            backend,
            local,
            world: local * trainer.num_nodes,
            first_rank: trainer.node_rank * local,
            master_addr,
            master_port,
        })
    }
}

/// Quotes an override value for the override grammar when it needs it.
fn override_value(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// The worker's arguments: the user's, with `hydra.run.dir` pinned to `run_dir`.
pub fn worker_args(args: &[OsString], run_dir: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = args
        .iter()
        .filter(|a| !a.to_string_lossy().starts_with("hydra.run.dir="))
        .cloned()
        .collect();
    out.push(format!("hydra.run.dir={}", override_value(run_dir)).into());
    out
}

fn describe(status: ExitStatus) -> (String, u8) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (
            format!("exited with status {code}"),
            u8::try_from(code).unwrap_or(1).max(1),
        ),
        (None, Some(sig)) => (
            format!("was killed by signal {sig}"),
            128u8.saturating_add(sig as u8),
        ),
        _ => ("ended abnormally".to_string(), 1),
    }
}

fn signal(child: &Child, sig: i32) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Starts the workers of `plan` running `exe args`, waits for them, and returns the first
/// failure.
pub fn run(
    plan: &LaunchPlan,
    exe: &Path,
    args: &[OsString],
    shutdown: &ShutdownSignal,
) -> Result<(), DistError> {
    let mut children: Vec<(String, Child)> = Vec::new();
    let spawn_err = |cmd: &Command, source| DistError::Spawn {
        command: format!("{cmd:?}"),
        source,
    };
    match plan.backend {
        Backend::Mpi => {
            let mut cmd = Command::new("mpirun");
            cmd.arg("-np")
                .arg(plan.local.to_string())
                .arg("--oversubscribe")
                .arg(exe)
                .args(args);
            let child = cmd.spawn().map_err(|e| spawn_err(&cmd, e))?;
            children.push(("mpirun".to_string(), child));
        }
        Backend::Nccl => {
            for local in 0..plan.local {
                let rank = plan.first_rank + local;
                let mut cmd = Command::new(exe);
                cmd.args(args)
                    .env("RANK", rank.to_string())
                    .env("WORLD_SIZE", plan.world.to_string())
                    .env("LOCAL_RANK", local.to_string())
                    .env("MASTER_ADDR", &plan.master_addr)
                    .env("MASTER_PORT", plan.master_port.to_string());
                match cmd.spawn() {
                    Ok(child) => children.push((format!("rank {rank}"), child)),
                    Err(e) => {
                        for (_, c) in &mut children {
                            let _ = c.kill();
                        }
                        return Err(spawn_err(&cmd, e));
                    }
                }
            }
        }
    }
    watch(children, shutdown)
}

fn watch(mut children: Vec<(String, Child)>, shutdown: &ShutdownSignal) -> Result<(), DistError> {
    let mut failure: Option<(String, String, u8)> = None;
    let mut failed_at: Option<Instant> = None;
    let mut forwarded = false;
    let mut running: Vec<bool> = vec![true; children.len()];
    while running.iter().any(|&r| r) {
        // Ctrl-C reaches the workers through the terminal's process group already; a SIGTERM
        // sent to this process alone is passed on.
        if shutdown.requested() && !forwarded {
            forwarded = true;
            if shutdown.signal_name() == Some("SIGTERM") {
                for (i, (_, c)) in children.iter().enumerate() {
                    if running[i] {
                        signal(c, libc::SIGTERM);
                    }
                }
            }
        }
        for (i, (who, child)) in children.iter_mut().enumerate() {
            if !running[i] {
                continue;
            }
            if let Ok(Some(status)) = child.try_wait() {
                running[i] = false;
                if !status.success() && failure.is_none() {
                    let (text, code) = describe(status);
                    failure = Some((who.clone(), text, code));
                    failed_at = Some(Instant::now());
                }
            }
        }
        if failed_at.is_some_and(|t| t.elapsed() > STOP_GRACE) {
            for (i, (_, c)) in children.iter_mut().enumerate() {
                if running[i] {
                    let _ = c.kill();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match failure {
        None => Ok(()),
        Some((who, status, code)) => Err(DistError::WorkerFailed { who, status, code }),
    }
}

/// This executable, for starting workers.
pub fn current_exe() -> Result<PathBuf, DistError> {
    std::env::current_exe().map_err(|source| DistError::Spawn {
        command: "the train executable".to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::{Accelerator, Devices, NanPolicy, Precision, ScaleLr, Strategy};

    fn trainer(devices: Devices, num_nodes: usize, node_rank: usize) -> TrainerSettings {
        TrainerSettings {
            accelerator: Accelerator::Cpu,
            devices,
            num_nodes,
            node_rank,
            strategy: Strategy::Ddp,
            scale_lr: ScaleLr::None,
            collective_timeout_s: 300.0,
            precision: Precision::Full32,
            max_epochs: Some(1),
            max_steps: None,
            gradient_clip_val: None,
            accumulate_grad_batches: 1,
            check_val_every_n_epoch: Some(1),
            val_check_interval: None,
            log_every_n_steps: 1,
            nan_policy: NanPolicy::Skip,
            max_consecutive_nan_steps: 3,
            progress_interval_s: 30.0,
            flush_secs: 5.0,
        }
    }

    #[test]
    fn mpi_plans_one_node_and_refuses_several() {
        let none = |_: &str| None;
        let plan = LaunchPlan::new(&trainer(Devices::Count(3), 1, 0), Backend::Mpi, &none).unwrap();
        assert_eq!((plan.local, plan.world, plan.first_rank), (3, 3, 0));
        let err =
            LaunchPlan::new(&trainer(Devices::Count(2), 2, 1), Backend::Mpi, &none).unwrap_err();
        assert!(err.to_string().contains("trainer.num_nodes=2"), "{err}");
    }

    #[test]
    fn worker_args_pin_the_run_directory() {
        let args: Vec<OsString> = vec!["trainer=ddp_cpu".into(), "hydra.run.dir=x".into()];
        let out = worker_args(&args, Path::new("/tmp/run 1"));
        assert_eq!(
            out,
            vec![
                OsString::from("trainer=ddp_cpu"),
                OsString::from("hydra.run.dir='/tmp/run 1'")
            ]
        );
    }

    #[test]
    fn statuses_become_exit_codes() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(describe(ExitStatus::from_raw(3 << 8)).1, 3);
        let (text, code) = describe(ExitStatus::from_raw(9));
        assert_eq!(code, 137);
        assert!(text.contains("signal 9"));
    }
}

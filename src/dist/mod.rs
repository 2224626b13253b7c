//! Data-parallel training: one process per device, gradients averaged before every optimizer
//! step, rank 0 alone writing files.
//!
//! * [`env`] reads the rank variables of torchrun, `mpirun` and Slurm;
//! * [`launch`] is `train` starting the workers of one node itself and watching them;
//! * [`Collective`] is the engine: [`SingleProcess`], MPI on the CPU (`mpi` feature), NCCL on
//!   CUDA (`nccl` feature);
//! * [`control`] is the TCP control plane around rank 0 (rendezvous, failure reports, deadlines);
//! * [`World`] is what the trainer calls.

pub mod collective;
pub mod control;
pub mod env;
pub mod error;
pub mod launch;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod world;

pub use collective::{Collective, SingleProcess};
pub use env::{check_world, detect, Launcher, RankInfo};
pub use error::DistError;
pub use world::World;

use crate::config::schema::{Accelerator, Strategy, TrainerSettings};
use std::time::Duration;

/// Test-only failure hook: `RANK:STEP` makes that rank fail at that optimizer step (1-based).
pub const INJECT_FAIL_VAR: &str = "TRAIN_INJECT_FAIL_AT_RANK";

/// The collective engine a data-parallel trainer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// MPI between CPU processes (`trainer=ddp_cpu`).
    Mpi,
    /// NCCL between GPUs (`trainer=multi_gpu`).
    Nccl,
}

impl Backend {
    /// The engine `trainer` asks for, `None` outside data-parallel training; an error when this
    /// binary was built without it.
    pub fn for_trainer(trainer: &TrainerSettings) -> Result<Option<Backend>, DistError> {
        if trainer.strategy != Strategy::Ddp {
            return Ok(None);
        }
        let backend = match trainer.accelerator {
            Accelerator::Cpu => Backend::Mpi,
            _ => Backend::Nccl,
        };
        match backend {
            Backend::Mpi if !cfg!(feature = "mpi") => Err(DistError::NotBuilt {
                what: "trainer=ddp_cpu (strategy ddp on the CPU)",
                feature: "mpi",
                build: "apt-get install libopenmpi-dev openmpi-bin libclang-dev, then cargo build \
                        --release --features mpi",
            }),
            Backend::Nccl if !cfg!(feature = "nccl") => Err(DistError::NotBuilt {
                what: "trainer=multi_gpu (strategy ddp on GPUs)",
                feature: "nccl",
                build: "cargo build --release --features cuda,nccl on a machine with CUDA, or \
                        train on this machine's CPU with trainer=cpu or trainer=ddp_cpu",
            }),
            b => Ok(Some(b)),
        }
    }
}

/// The effective batch of one optimizer step: `batch_size × world × accumulate_grad_batches`.
pub fn effective_batch(batch_size: usize, world: usize, accumulate: usize) -> usize {
    batch_size * world * accumulate.max(1)
}

/// GPUs this process can see (0 in a build without `cuda`).
pub fn visible_gpus() -> usize {
    #[cfg(feature = "cuda")]
    {
        use candle_core::cuda_backend::cudarc::driver::CudaContext;
        CudaContext::device_count().map_or(0, |n| n.max(0) as usize)
    }
    #[cfg(not(feature = "cuda"))]
    {
        0
    }
}

/// Checks `trainer.devices` against the GPUs present.
pub fn check_gpu_count(requested: usize, available: usize) -> Result<(), DistError> {
    if requested > available {
        return Err(DistError::Setup {
            message: format!(
                "trainer.devices={requested} but this machine has {available} usable GPU{}",
                if available == 1 { "" } else { "s" }
            ),
            hint: format!(
                "set trainer.devices={} or trainer.devices=auto, or check CUDA_VISIBLE_DEVICES",
                available.max(1)
            ),
        });
    }
    Ok(())
}

/// Joins the job described by `info` with `backend`: the engine, then the control plane.
pub fn connect(
    info: &RankInfo,
    backend: Backend,
    trainer: &TrainerSettings,
) -> Result<(World, candle_core::Device), DistError> {
    check_world(info, trainer.devices.count(), trainer.num_nodes)?;
    let timeout = Duration::from_secs_f64(trainer.collective_timeout_s);
    match backend {
        Backend::Mpi => connect_mpi(info, timeout),
        Backend::Nccl => connect_nccl(info, timeout),
    }
}

#[cfg(feature = "mpi")]
fn connect_mpi(
    info: &RankInfo,
    timeout: Duration,
) -> Result<(World, candle_core::Device), DistError> {
    let mpi = mpi::MpiCollective::init()?;
    if mpi.world() != info.world || mpi.rank() != info.rank {
        return Err(DistError::Setup {
            message: format!(
                "MPI_COMM_WORLD has {} process{} (this is rank {}), but the rank variables ({}) \
                 say rank {} of {}",
                mpi.world(),
                if mpi.world() == 1 { "" } else { "es" },
                mpi.rank(),
                info.launcher,
                info.rank,
                info.world
            ),
            hint: "start trainer=ddp_cpu ranks with mpirun (or `train trainer=ddp_cpu` alone, \
                   which runs mpirun itself)"
                .to_string(),
        });
    }
    let control = if info.rank == 0 {
        let listener = control::bind(info.master_port.unwrap_or(0))?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let host = info
            .master_addr
            .clone()
            .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().to_string());
        let mut addr = format!("{host}:{port}").into_bytes();
        mpi.broadcast_bytes(&mut addr, 0)?;
        control::Control::serve(listener, info.world, &[], timeout)?
    } else {
        let mut addr = Vec::new();
        mpi.broadcast_bytes(&mut addr, 0)?;
        let addr = String::from_utf8_lossy(&addr).to_string();
        control::Control::join(info.rank, info.world, &addr, timeout)?.0
    };
    Ok((World::new(Box::new(mpi), control), candle_core::Device::Cpu))
}

#[cfg(not(feature = "mpi"))]
fn connect_mpi(
    _info: &RankInfo,
    _timeout: Duration,
) -> Result<(World, candle_core::Device), DistError> {
    Err(DistError::NotBuilt {
        what: "trainer=ddp_cpu (strategy ddp on the CPU)",
        feature: "mpi",
        build: "cargo build --release --features mpi",
    })
}

#[cfg(feature = "nccl")]
fn connect_nccl(
    info: &RankInfo,
    timeout: Duration,
) -> Result<(World, candle_core::Device), DistError> {
    let (Some(addr), Some(port)) = (info.master_addr.as_deref(), info.master_port) else {
        return Err(DistError::Setup {
            message: "NCCL ranks meet at MASTER_ADDR:MASTER_PORT, and one of them is not set"
                .to_string(),
            hint: "export MASTER_ADDR=<rank 0's host> MASTER_PORT=<free port> on every rank"
                .to_string(),
        });
    };
    check_gpu_count(info.local_rank + 1, visible_gpus())?;
    let device = candle_core::Device::new_cuda(info.local_rank).map_err(|e| DistError::Setup {
        message: format!(
            "rank {} cannot open GPU {}: {e}",
            info.rank, info.local_rank
        ),
        hint: "check CUDA_VISIBLE_DEVICES and the driver".to_string(),
    })?;
    let (control, id) = if info.rank == 0 {
        let id = nccl::new_id(0)?;
        let listener = control::bind(port)?;
        (
            control::Control::serve(listener, info.world, &id, timeout)?,
            id,
        )
    } else {
        control::Control::join(info.rank, info.world, &format!("{addr}:{port}"), timeout)?
    };
    let comm = control.during("nccl init", || {
        nccl::NcclCollective::new(&device, info.rank, info.world, &id)
    })?;
    Ok((World::new(Box::new(comm), control), device))
}

#[cfg(not(feature = "nccl"))]
fn connect_nccl(
    _info: &RankInfo,
    _timeout: Duration,
) -> Result<(World, candle_core::Device), DistError> {
    Err(DistError::NotBuilt {
        what: "trainer=multi_gpu (strategy ddp on GPUs)",
        feature: "nccl",
        build: "cargo build --release --features cuda,nccl",
    })
}

/// The step at which the test-only hook [`INJECT_FAIL_VAR`] fails `rank`, if it names it.
pub fn injected_failure_step(rank: usize) -> Option<u64> {
    let text = std::env::var(INJECT_FAIL_VAR).ok()?;
    let (r, step) = text.split_once(':')?;
    (r.trim().parse::<usize>().ok()? == rank)
        .then(|| step.trim().parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_devices_is_an_error_naming_the_count() {
        assert!(check_gpu_count(2, 2).is_ok());
        let err = check_gpu_count(4, 1).unwrap_err();
        assert!(err.to_string().contains("trainer.devices=4"), "{err}");
        assert!(err.to_string().contains("1 usable GPU"), "{err}");
        assert!(err.hint().unwrap().contains("trainer.devices=1"));
    }

    #[test]
    fn the_effective_batch_multiplies_all_three() {
        assert_eq!(effective_batch(4, 2, 3), 24);
        assert_eq!(effective_batch(4, 1, 0), 4);
    }
}

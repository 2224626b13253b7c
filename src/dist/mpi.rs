//! CPU collectives through MPI (the `mpi` crate on the system's OpenMPI). Processes are started
//! by `mpirun` (or `srun --mpi=pmix`); `MPI_COMM_WORLD` is the job.

use super::{Collective, DistError};
use candle_core::{DType, Device, Tensor};
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};

/// `MPI_COMM_WORLD` of this process (MPI is finalized when it drops).
pub struct MpiCollective {
    world: SimpleCommunicator,
    _universe: Universe,
}

impl std::fmt::Debug for MpiCollective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MpiCollective(rank {} of {})", self.rank(), self.world())
    }
}

fn failed(op: &'static str, rank: usize, reason: impl ToString) -> DistError {
    DistError::Collective {
        op,
        rank,
        reason: reason.to_string(),
    }
}

impl MpiCollective {
    /// Initializes MPI (once per process).
    pub fn init() -> Result<Self, DistError> {
        let universe = mpi::initialize().ok_or_else(|| DistError::Setup {
            message: "MPI was already initialized in this process".to_string(),
            hint: "start one training job per process".to_string(),
        })?;
        Ok(MpiCollective {
            world: universe.world(),
            _universe: universe,
        })
    }

    /// Rank `root`'s bytes on every rank (the length travels first).
    pub fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) -> Result<(), DistError> {
        let mut len = bytes.len() as u64;
        let process = self.world.process_at_rank(root as i32);
        process.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        process.broadcast_into(&mut bytes[..]);
        Ok(())
    }
}

impl Collective for MpiCollective {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn world(&self) -> usize {
        self.world.size() as usize
    }

    fn all_reduce_mean(&self, buf: &Tensor) -> Result<Tensor, DistError> {
        let err = |e: candle_core::Error| failed("all-reduce", self.rank(), e);
        let send = buf.to_vec1::<f32>().map_err(err)?;
        let mut sum = vec![0f32; send.len()];
        self.world
            .all_reduce_into(&send[..], &mut sum[..], SystemOperation::sum());
        let n = self.world() as f32;
        sum.iter_mut().for_each(|x| *x /= n);
        Tensor::from_vec(sum, send.len(), &Device::Cpu).map_err(err)
    }

    fn broadcast(&self, buf: &Tensor, root: usize) -> Result<Tensor, DistError> {
        let err = |e: candle_core::Error| failed("broadcast", self.rank(), e);
        let process = self.world.process_at_rank(root as i32);
        match buf.dtype() {
            DType::U8 => {
                let mut data = buf.to_vec1::<u8>().map_err(err)?;
                process.broadcast_into(&mut data[..]);
                Tensor::from_vec(data, buf.elem_count(), &Device::Cpu).map_err(err)
            }
            _ => {
                let mut data = buf
                    .to_dtype(DType::F32)
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(err)?;
                process.broadcast_into(&mut data[..]);
                Tensor::from_vec(data, buf.elem_count(), &Device::Cpu)
                    .and_then(|t| t.to_dtype(buf.dtype()))
                    .map_err(err)
            }
        }
    }

    fn barrier(&self) -> Result<(), DistError> {
        self.world.barrier();
        Ok(())
    }
}

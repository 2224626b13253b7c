//! GPU collectives through NCCL (candle's `nccl` feature, i.e. cudarc). One process per GPU;
//! rank 0 creates the NCCL unique id and the control plane hands it to the other ranks.
//!
//! Compiled by `just check-cuda`; not yet run on GPU hardware.

use super::{Collective, DistError};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::nccl::{Comm, Id, ReduceOp};
use candle_core::{CpuStorage, CudaStorage, DType, Device, InplaceOp1, Layout, Tensor};

/// The size of an NCCL unique id.
pub const ID_BYTES: usize = 128;

/// A fresh NCCL unique id (rank 0), as bytes for the rendezvous.
pub fn new_id(rank: usize) -> Result<Vec<u8>, DistError> {
    let id = Id::new().map_err(|e| failed("nccl id", rank, format!("{e:?}")))?;
    Ok(id.internal().iter().map(|&c| c as u8).collect())
}

fn failed(op: &'static str, rank: usize, reason: impl ToString) -> DistError {
    DistError::Collective {
        op,
        rank,
        reason: reason.to_string(),
    }
}

/// An NCCL communicator on this rank's GPU.
pub struct NcclCollective {
    comm: Comm,
    device: Device,
}

impl std::fmt::Debug for NcclCollective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NcclCollective(rank {} of {})",
            self.rank(),
            self.world()
        )
    }
}

impl NcclCollective {
    /// Joins the communicator of `world` ranks named by `id` (rank 0's [`new_id`]) on `device`.
    pub fn new(device: &Device, rank: usize, world: usize, id: &[u8]) -> Result<Self, DistError> {
        let bytes: [u8; ID_BYTES] = id.try_into().map_err(|_| {
            failed(
                "nccl init",
                rank,
                format!("the NCCL id has {} bytes, expected {ID_BYTES}", id.len()),
            )
        })?;
        let internal = bytes.map(|b| b as core::ffi::c_char);
        let stream = device
            .as_cuda_device()
            .map_err(|e| failed("nccl init", rank, e))?
            .cuda_stream();
        let comm = Comm::from_rank(stream, rank, world, Id::uninit(internal))
            .map_err(|e| failed("nccl init", rank, format!("{e:?}")))?;
        Ok(NcclCollective {
            comm,
            device: device.clone(),
        })
    }

    fn in_place(&self, buf: &Tensor, op: &NcclOp<'_>) -> Result<Tensor, DistError> {
        let err = |e: candle_core::Error| failed(op.name(), self.rank(), e);
        let out = buf.contiguous().and_then(|t| t.copy()).map_err(err)?;
        out.inplace_op1(op).map_err(err)?;
        self.device.synchronize().map_err(err)?;
        Ok(out)
    }
}

/// One NCCL call on a tensor's CUDA storage, in place.
enum NcclOp<'a> {
    Sum(&'a Comm),
    Broadcast(&'a Comm, usize),
}

impl InplaceOp1 for NcclOp<'_> {
    fn name(&self) -> &'static str {
        match self {
            NcclOp::Sum(_) => "nccl-all-reduce",
            NcclOp::Broadcast(..) => "nccl-broadcast",
        }
    }

    fn cpu_fwd(&self, _: &mut CpuStorage, _: &Layout) -> candle_core::Result<()> {
        candle_core::bail!("NCCL collectives need CUDA tensors; CPU ranks use the MPI backend")
    }

    fn cuda_fwd(&self, s: &mut CudaStorage, l: &Layout) -> candle_core::Result<()> {
        if !l.is_contiguous() || l.start_offset() != 0 {
            candle_core::bail!("{}: the buffer must be contiguous", self.name())
        }
        let nccl = |e| candle_core::Error::Msg(format!("{e:?}"));
        match (self, s.dtype()) {
            (NcclOp::Sum(comm), DType::F32) => {
                comm.all_reduce_in_place(s.as_cuda_slice_mut::<f32>()?, &ReduceOp::Sum)
                    .map_err(nccl)?;
            }
            (NcclOp::Broadcast(comm, root), DType::F32) => {
                comm.broadcast_in_place(s.as_cuda_slice_mut::<f32>()?, *root as i32)
                    .map_err(nccl)?;
            }
            (NcclOp::Broadcast(comm, root), DType::U8) => {
                comm.broadcast_in_place(s.as_cuda_slice_mut::<u8>()?, *root as i32)
                    .map_err(nccl)?;
            }
            (_, dtype) => candle_core::bail!("{}: unsupported dtype {dtype:?}", self.name()),
        }
        Ok(())
    }
}

impl Collective for NcclCollective {
    fn rank(&self) -> usize {
        self.comm.rank()
    }

    fn world(&self) -> usize {
        self.comm.world_size()
    }

    fn all_reduce_mean(&self, buf: &Tensor) -> Result<Tensor, DistError> {
        let sum = self.in_place(buf, &NcclOp::Sum(&self.comm))?;
        (sum / self.world() as f64).map_err(|e| failed("all-reduce", self.rank(), e))
    }

    fn broadcast(&self, buf: &Tensor, root: usize) -> Result<Tensor, DistError> {
        let buf = buf
            .to_device(&self.device)
            .map_err(|e| failed("broadcast", self.rank(), e))?;
        self.in_place(&buf, &NcclOp::Broadcast(&self.comm, root))
    }

    fn barrier(&self) -> Result<(), DistError> {
        let one = Tensor::ones(1, DType::F32, &self.device)
            .map_err(|e| failed("barrier", self.rank(), e))?;
        self.in_place(&one, &NcclOp::Sum(&self.comm)).map(|_| ())
    }
}

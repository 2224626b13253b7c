//! The collective operations data-parallel training needs, behind one small trait, with the
//! single-process implementation. The engines live beside it: MPI on the CPU (`mpi` feature) and
//! NCCL on CUDA (`nccl` feature).

use super::DistError;
use candle_core::Tensor;

/// All-reduce (average), broadcast and barrier over the ranks of one job. Tensors are flat
/// (rank 1) and contiguous; all-reduce takes f32, broadcast f32 or u8.
pub trait Collective {
    /// This process's rank.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn world(&self) -> usize;
    /// The element-wise mean of `buf` over all ranks.
    fn all_reduce_mean(&self, buf: &Tensor) -> Result<Tensor, DistError>;
    /// Rank `root`'s `buf` on every rank (`buf` gives the shape and dtype elsewhere).
    fn broadcast(&self, buf: &Tensor, root: usize) -> Result<Tensor, DistError>;
    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<(), DistError>;
}

/// The world of one process: every operation is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn world(&self) -> usize {
        1
    }

    fn all_reduce_mean(&self, buf: &Tensor) -> Result<Tensor, DistError> {
        Ok(buf.clone())
    }

    fn broadcast(&self, buf: &Tensor, _root: usize) -> Result<Tensor, DistError> {
        Ok(buf.clone())
    }

    fn barrier(&self) -> Result<(), DistError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn a_single_process_returns_its_own_values() {
        let t = Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu).unwrap();
        let c = SingleProcess;
        assert_eq!((c.rank(), c.world()), (0, 1));
        let mean = c.all_reduce_mean(&t).unwrap();
        assert_eq!(mean.to_vec1::<f32>().unwrap(), vec![1.0, 2.0, 3.0]);
        let b = c.broadcast(&t, 0).unwrap();
        assert_eq!(b.to_vec1::<f32>().unwrap(), vec![1.0, 2.0, 3.0]);
        c.barrier().unwrap();
    }
}

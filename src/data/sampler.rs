//! Which scenes make up each batch: a per-epoch seeded shuffle, sharded across data-parallel
//! ranks, cut into batches. Pure arithmetic on `(epoch, batch)`, so the position is two numbers
//! and a restored run sees exactly the batches the uninterrupted run would have.
//!
//! Sharding pads by wrapping: the epoch's order is extended with its own first scenes up to a
//! multiple of `world`, and rank `r` takes positions `r, r + world, r + 2·world, …` (PyTorch's
//! `DistributedSampler` rule). Every rank gets `ceil(len / world)` scenes and the shards together
//! cover every scene; at most `world − 1` scenes are seen twice per epoch.

use super::error::DataError;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// A position in the infinite stream of batches: the next batch to deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SamplerState {
    /// The epoch, from 0.
    pub epoch: u64,
    /// The batch within the epoch, from 0.
    pub batch: usize,
}

/// This process's place among data-parallel ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This rank, `0..world`.
    pub rank: usize,
    /// The number of ranks.
    pub world: usize,
}

impl Shard {
    /// The single-process shard.
    pub const SOLE: Shard = Shard { rank: 0, world: 1 };
}

/// How batches are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPlan {
    /// Scenes per batch on this rank.
    pub batch_size: usize,
    /// Leave out the last, incomplete batch of an epoch (the usual choice for training).
    pub drop_last: bool,
    /// Shuffle each epoch (training) or keep file order (validation).
    pub shuffle: bool,
}

/// The per-epoch shuffled, sharded batch order over `len` scenes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSampler {
    len: usize,
    shard: Shard,
    plan: BatchPlan,
    seed: u64,
}

impl ShardSampler {
    /// A sampler over `len` scenes; fails when a shard cannot fill one batch.
    pub fn new(len: usize, shard: Shard, plan: BatchPlan, seed: u64) -> Result<Self, DataError> {
        if shard.world == 0 || shard.rank >= shard.world {
            return Err(DataError::Setting {
                key: "rank/world".into(),
                reason: format!("rank {} is not in 0..{}", shard.rank, shard.world),
                fix: "pass a rank below the world size".into(),
            });
        }
        if plan.batch_size == 0 {
            return Err(DataError::Setting {
                key: "batch_size".into(),
                reason: "is 0".into(),
                fix: "set batch_size to at least 1".into(),
            });
        }
        if len == 0 {
            return Err(DataError::Setting {
                key: "data".into(),
                reason: "the split holds no scenes".into(),
                fix: "add scenes or lower data.val_fraction".into(),
            });
        }
        let sampler = ShardSampler {
            len,
            shard,
            plan,
            seed,
        };
        if sampler.batches_per_epoch() == 0 {
            return Err(DataError::Setting {
                key: "batch_size".into(),
                reason: format!(
                    "{} exceeds the {} scenes of each rank's shard, and the incomplete batch is dropped",
                    plan.batch_size,
                    sampler.shard_len()
                ),
                fix: format!(
                    "set batch_size to at most {} or use more scenes",
                    sampler.shard_len()
                ),
            });
        }
        Ok(sampler)
    }

    /// Scenes per rank per epoch: `ceil(len / world)`.
    pub fn shard_len(&self) -> usize {
        self.len.div_ceil(self.shard.world)
    }

    /// Batches per epoch on this rank.
    pub fn batches_per_epoch(&self) -> usize {
        if self.plan.drop_last {
            self.shard_len() / self.plan.batch_size
        } else {
            self.shard_len().div_ceil(self.plan.batch_size)
        }
    }

    /// The scenes this rank visits in `epoch`, in order.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len).collect();
        if self.plan.shuffle {
            Rng::new(self.seed)
                .fork(b"data-shuffle")
                .fork(&epoch.to_le_bytes())
                .shuffle(&mut order);
        }
        (0..self.shard_len())
            .map(|k| order[(self.shard.rank + k * self.shard.world) % self.len])
            .collect()
    }

    /// The scenes of batch `position.batch` of `position.epoch`, cut from `order` (that epoch's
    /// [`Self::epoch_order`]).
    pub fn cut(&self, order: &[usize], batch: usize) -> Vec<usize> {
        let start = batch * self.plan.batch_size;
        let end = (start + self.plan.batch_size).min(order.len());
        order[start.min(end)..end].to_vec()
    }

    /// The position after `state`.
    pub fn advance(&self, state: SamplerState) -> SamplerState {
        if state.batch + 1 >= self.batches_per_epoch() {
            SamplerState {
                epoch: state.epoch + 1,
                batch: 0,
            }
        } else {
            SamplerState {
                epoch: state.epoch,
                batch: state.batch + 1,
            }
        }
    }

    /// The position `steps` batches after `state`.
    pub fn skip(&self, state: SamplerState, steps: u64) -> SamplerState {
        let per = self.batches_per_epoch() as u64;
        let flat = state.epoch * per + state.batch as u64 + steps;
        SamplerState {
            epoch: flat / per,
            batch: (flat % per) as usize,
        }
    }

    /// Checks that a saved position fits this sampler.
    pub fn check(&self, state: SamplerState) -> Result<(), DataError> {
        if state.batch >= self.batches_per_epoch() {
            return Err(DataError::Setting {
                key: "sampler state".into(),
                reason: format!(
                    "batch {} is past the {} batches per epoch of this data and batch size",
                    state.batch,
                    self.batches_per_epoch()
                ),
                fix: "resume with the data settings and batch_size of the saved run".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(batch_size: usize, drop_last: bool) -> BatchPlan {
        BatchPlan {
            batch_size,
            drop_last,
            shuffle: true,
        }
    }

    #[test]
    fn epochs_are_permutations_that_differ_between_epochs() {
        let s = ShardSampler::new(10, Shard::SOLE, plan(3, true), 7).unwrap();
        let (a, b) = (s.epoch_order(0), s.epoch_order(1));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_ne!(a, b);
        assert_eq!(a, s.epoch_order(0));
        assert_eq!(s.batches_per_epoch(), 3);
        assert_eq!(
            ShardSampler::new(10, Shard::SOLE, plan(3, false), 7)
                .unwrap()
                .batches_per_epoch(),
            4
        );
    }

    #[test]
    fn skip_agrees_with_repeated_advance() {
        let s = ShardSampler::new(10, Shard::SOLE, plan(3, true), 7).unwrap();
        let mut at = SamplerState::default();
        for _ in 0..7 {
            at = s.advance(at);
        }
        assert_eq!(at, s.skip(SamplerState::default(), 7));
        assert_eq!(at, SamplerState { epoch: 2, batch: 1 });
        assert!(s.check(SamplerState { epoch: 0, batch: 3 }).is_err());
    }

    #[test]
    fn a_batch_larger_than_the_shard_is_an_error_naming_the_limit() {
        let err = ShardSampler::new(5, Shard { rank: 0, world: 2 }, plan(4, true), 0).unwrap_err();
        assert!(err.to_string().contains("at most 3"), "{err}");
    }
}

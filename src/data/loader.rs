//! Batches, in order, from background threads.
//!
//! With `num_workers = 0` the loader builds each batch in the caller's thread. Otherwise
//! `num_workers` threads claim batch positions in order and build them concurrently; at most
//! `queue_depth` batches are claimed ahead of the one the trainer takes next (a bounded queue),
//! and a reorder buffer hands them out in sampler order, so the stream is identical to the
//! synchronous one. The time the trainer spends blocked in [`SceneLoader::next_batch`] is
//! accumulated in [`WaitStats`].

use super::dataset::SceneSet;
use super::error::DataError;
use super::sampler::{SamplerState, ShardSampler};
use candle_core::Tensor;
use std::collections::BTreeMap;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A batch of scenes on the CPU.
#[derive(Debug, Clone)]
pub struct SceneBatch {
    /// `(B, 5, H, W)` f32 in [-1, 1]: robot, goal, movable, static, target object.
    pub context: Tensor,
    /// `(B, 1, H, W)` f32 in [-1, 1]: where the target object should go.
    pub target: Tensor,
    /// The scenes' names (file stems).
    pub ids: Vec<String>,
    /// The scenes' indices in their set.
    pub indices: Vec<usize>,
}

/// How a loader runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoaderOptions {
    /// Background threads; 0 loads in the caller's thread.
    pub num_workers: usize,
    /// Batches that may be built ahead of the one the trainer takes next.
    pub queue_depth: usize,
}

impl LoaderOptions {
    /// `num_workers` threads with a queue of `2 × num_workers` batches (at least 2).
    pub fn with_workers(num_workers: usize) -> Self {
        LoaderOptions {
            num_workers,
            queue_depth: (2 * num_workers).max(2),
        }
    }
}

/// Time the consumer spent waiting for batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WaitStats {
    /// Batches delivered.
    pub batches: u64,
    /// Total time blocked waiting for them.
    pub waited: Duration,
}

impl WaitStats {
    /// Mean wait per batch.
    pub fn mean(&self) -> Duration {
        if self.batches == 0 {
            Duration::ZERO
        } else {
            self.waited / self.batches as u32
        }
    }
}

/// The endless, resumable stream of batches of one scene set on one rank.
pub struct SceneLoader {
    set: Arc<SceneSet>,
    sampler: Arc<ShardSampler>,
    options: LoaderOptions,
    position: SamplerState,
    pipeline: Option<Pipeline>,
    order: Option<(u64, Vec<usize>)>,
    stats: WaitStats,
}

impl SceneLoader {
    /// A loader starting at epoch 0, batch 0.
    pub fn new(set: Arc<SceneSet>, sampler: ShardSampler, options: LoaderOptions) -> Self {
        SceneLoader {
            set,
            sampler: Arc::new(sampler),
            options,
            position: SamplerState::default(),
            pipeline: None,
            order: None,
            stats: WaitStats::default(),
        }
    }

    /// The position of the next batch; save it with a checkpoint.
    pub fn state(&self) -> SamplerState {
        self.position
    }

    /// Continues from a saved position (the next batch will be the one saved as next).
    pub fn restore(&mut self, state: SamplerState) -> Result<(), DataError> {
        self.sampler.check(state)?;
        self.pipeline = None;
        self.position = state;
        Ok(())
    }

    /// Batches per epoch on this rank.
    pub fn batches_per_epoch(&self) -> usize {
        self.sampler.batches_per_epoch()
    }

    /// Waiting time so far.
    pub fn wait_stats(&self) -> WaitStats {
        self.stats
    }

    /// Returns the waiting time since the last call and starts counting afresh.
    pub fn take_wait_stats(&mut self) -> WaitStats {
        std::mem::take(&mut self.stats)
    }

    /// The next batch.
    pub fn next_batch(&mut self) -> Result<SceneBatch, DataError> {
        let started = Instant::now();
        let batch = if self.options.num_workers == 0 {
            let position = self.position;
            let order = epoch_order(&mut self.order, &self.sampler, position.epoch);
            let indices = self.sampler.cut(order, position.batch);
            self.set.batch(&indices, position.epoch)
        } else {
            let (set, sampler, options, start) =
                (&self.set, &self.sampler, self.options, self.position);
            self.pipeline
                .get_or_insert_with(|| Pipeline::start(set, sampler, options, start))
                .next()
        };
        self.stats.waited += started.elapsed();
        self.stats.batches += 1;
        if batch.is_ok() {
            self.position = self.sampler.advance(self.position);
        } else {
            self.pipeline = None;
        }
        batch
    }
}

impl Iterator for SceneLoader {
    type Item = Result<SceneBatch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_batch())
    }
}

fn epoch_order<'a>(
    cache: &'a mut Option<(u64, Vec<usize>)>,
    sampler: &ShardSampler,
    epoch: u64,
) -> &'a [usize] {
    if cache.as_ref().is_none_or(|(e, _)| *e != epoch) {
        *cache = Some((epoch, sampler.epoch_order(epoch)));
    }
    &cache.as_ref().map(|(_, o)| o).expect("filled above")[..]
}

#[derive(Default)]
struct GateState {
    next_claim: u64,
    delivered: u64,
    stop: bool,
}

#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims the next sequence number once it is within `depth` of delivery; `None` on stop.
    fn claim(&self, depth: u64) -> Option<u64> {
        let mut state = self.lock();
        while !state.stop && state.next_claim >= state.delivered + depth {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.stop {
            return None;
        }
        state.next_claim += 1;
        Some(state.next_claim - 1)
    }
}

type Built = (u64, Result<SceneBatch, DataError>);

struct Pipeline {
    gate: Arc<Gate>,
    results: Receiver<Built>,
    pending: BTreeMap<u64, Result<SceneBatch, DataError>>,
    next: u64,
    workers: Vec<JoinHandle<()>>,
}

impl Pipeline {
    fn start(
        set: &Arc<SceneSet>,
        sampler: &Arc<ShardSampler>,
        options: LoaderOptions,
        start: SamplerState,
    ) -> Self {
        let gate = Arc::new(Gate::default());
        let (send, results) = channel::<Built>();
        let workers = (0..options.num_workers)
            .map(|_| {
                let (gate, send) = (Arc::clone(&gate), send.clone());
                let (set, sampler) = (Arc::clone(set), Arc::clone(sampler));
                let depth = options.queue_depth.max(1) as u64;
                std::thread::spawn(move || {
                    let mut order = None;
                    while let Some(seq) = gate.claim(depth) {
                        let at = sampler.skip(start, seq);
                        let indices =
                            sampler.cut(epoch_order(&mut order, &sampler, at.epoch), at.batch);
                        if send.send((seq, set.batch(&indices, at.epoch))).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        Pipeline {
            gate,
            results,
            pending: BTreeMap::new(),
            next: 0,
            workers,
        }
    }

    fn next(&mut self) -> Result<SceneBatch, DataError> {
        let batch = loop {
            if let Some(batch) = self.pending.remove(&self.next) {
                break batch;
            }
            match self.results.recv() {
                Ok((seq, batch)) => {
                    self.pending.insert(seq, batch);
                }
                Err(_) => {
                    return Err(DataError::Worker(
                        "every loader thread exited before delivering the next batch".into(),
                    ))
                }
            }
        };
        self.next += 1;
        self.gate.lock().delivered = self.next;
        self.gate.changed.notify_all();
        batch
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.gate.lock().stop = true;
        self.gate.changed.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

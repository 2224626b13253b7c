//! The job as the trainer sees it: a [`Collective`] plus the control plane that bounds every
//! call by a deadline, and the training-level operations built on them (bucketed gradient
//! averaging, weight and state broadcast, barriers).

use super::control::Control;
use super::{Collective, DistError, SingleProcess};
use candle_core::{DType, Device, Tensor, Var};
use std::collections::HashMap;

/// Elements per all-reduce bucket (16 MiB of f32).
pub const BUCKET_ELEMS: usize = 1 << 22;

/// This process's view of a data-parallel job (a world of one outside data-parallel training).
pub struct World {
    backend: Box<dyn Collective>,
    control: Option<Control>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "World(rank {} of {})", self.rank(), self.size())
    }
}

fn tensor_err(op: &'static str, rank: usize) -> impl Fn(candle_core::Error) -> DistError {
    move |e| DistError::Collective {
        op,
        rank,
        reason: e.to_string(),
    }
}

impl World {
    /// A single process: every operation is free.
    pub fn single() -> World {
        World {
            backend: Box::new(SingleProcess),
            control: None,
        }
    }

    /// A job of `backend`'s ranks watched by `control`.
    pub fn new(backend: Box<dyn Collective>, control: Control) -> World {
        World {
            backend,
            control: Some(control),
        }
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.backend.rank()
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.backend.world()
    }

    /// Whether this rank writes the run's files (rank 0).
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }

    fn guarded<T>(&self, name: &'static str, op: impl FnOnce() -> T) -> T {
        match &self.control {
            Some(c) => c.during(name, op),
            None => op(),
        }
    }

    /// Waits for every rank.
    pub fn barrier(&self) -> Result<(), DistError> {
        if self.size() == 1 {
            return Ok(());
        }
        self.guarded("barrier", || self.backend.barrier())
    }

    /// Averages `grads` (every parameter of `params`, a missing gradient counting as zeros) and
    /// `stats` over the ranks, in flat f32 buckets of at most [`BUCKET_ELEMS`] elements.
    pub fn average(
        &self,
        params: &[(String, Var)],
        grads: &mut HashMap<String, Tensor>,
        stats: &mut [f64],
    ) -> Result<(), DistError> {
        if self.size() == 1 {
            return Ok(());
        }
        self.average_in_buckets(params, grads, stats, BUCKET_ELEMS)
    }

    fn average_in_buckets(
        &self,
        params: &[(String, Var)],
        grads: &mut HashMap<String, Tensor>,
        stats: &mut [f64],
        bucket_elems: usize,
    ) -> Result<(), DistError> {
        let err = tensor_err("all-reduce", self.rank());
        let mut flat: Vec<(String, Tensor)> = Vec::with_capacity(params.len());
        for (name, var) in params {
            let g = match grads.get(name) {
                Some(g) => g.clone(),
                None => var.zeros_like().map_err(&err)?,
            };
            flat.push((name.clone(), g));
        }
        let device = params
            .first()
            .map_or(Device::Cpu, |(_, v)| v.device().clone());
        let stats_tensor = Tensor::from_vec(
            stats.iter().map(|&s| s as f32).collect::<Vec<f32>>(),
            stats.len(),
            &device,
        )
        .map_err(&err)?;
        let mut buckets: Vec<Vec<usize>> = vec![Vec::new()];
        let mut filled = 0;
        for (i, (_, g)) in flat.iter().enumerate() {
            let n = g.elem_count();
            if filled > 0 && filled + n > bucket_elems {
                buckets.push(Vec::new());
                filled = 0;
            }
            if let Some(b) = buckets.last_mut() {
                b.push(i);
            }
            filled += n;
        }
        let last = buckets.len() - 1;
        for (b, members) in buckets.iter().enumerate() {
            let mut parts: Vec<Tensor> = Vec::with_capacity(members.len() + 1);
            for &i in members {
                parts.push(
                    flat[i]
                        .1
                        .flatten_all()
                        .and_then(|t| t.to_dtype(DType::F32))
                        .map_err(&err)?,
                );
            }
            if b == last {
                parts.push(stats_tensor.clone());
            }
            let bucket = Tensor::cat(&parts, 0).map_err(&err)?;
            let mean = self.guarded("all-reduce", || self.backend.all_reduce_mean(&bucket))?;
            let mean = mean.to_device(&device).map_err(&err)?;
            let mut offset = 0;
            for &i in members {
                let (name, g) = &flat[i];
                let n = g.elem_count();
                let back = mean
                    .narrow(0, offset, n)
                    .and_then(|t| t.reshape(g.shape()))
                    .and_then(|t| t.to_dtype(g.dtype()))
                    .map_err(&err)?;
                grads.insert(name.clone(), back);
                offset += n;
            }
            if b == last {
                let s = mean
                    .narrow(0, offset, stats.len())
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(&err)?;
                for (dst, src) in stats.iter_mut().zip(s) {
                    *dst = f64::from(src);
                }
            }
        }
        Ok(())
    }

    /// Sets every variable to rank 0's value.
    pub fn broadcast_vars(&self, params: &[(String, Var)]) -> Result<(), DistError> {
        if self.size() == 1 {
            return Ok(());
        }
        let err = tensor_err("broadcast", self.rank());
        for (_, var) in params {
            let back = self.broadcast_one(var.as_tensor())?;
            var.set(&back).map_err(&err)?;
        }
        Ok(())
    }

    /// Rank 0's value of `t`, with `t`'s shape, dtype and device.
    fn broadcast_one(&self, t: &Tensor) -> Result<Tensor, DistError> {
        let err = tensor_err("broadcast", self.rank());
        let flat = t.flatten_all().map_err(&err)?;
        let got = self.guarded("broadcast", || self.backend.broadcast(&flat, 0))?;
        got.to_device(t.device())
            .and_then(|g| g.reshape(t.shape()))
            .and_then(|g| g.to_dtype(t.dtype()))
            .map_err(&err)
    }

    /// Replaces every tensor of `map` by rank 0's (the key sets must agree).
    pub fn broadcast_tensors(&self, map: &mut HashMap<String, Tensor>) -> Result<(), DistError> {
        if self.size() == 1 {
            return Ok(());
        }
        let mut names: Vec<String> = map.keys().cloned().collect();
        names.sort();
        for name in names {
            let back = self.broadcast_one(&map[&name])?;
            map.insert(name, back);
        }
        Ok(())
    }

    /// Replaces `bytes` by rank 0's.
    pub fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<(), DistError> {
        if self.size() == 1 {
            return Ok(());
        }
        let err = tensor_err("broadcast", self.rank());
        let len = Tensor::from_vec((bytes.len() as u64).to_le_bytes().to_vec(), 8, &Device::Cpu)
            .map_err(&err)?;
        let len = self.guarded("broadcast", || self.backend.broadcast(&len, 0))?;
        let len: Vec<u8> = len.to_vec1().map_err(&err)?;
        let n = u64::from_le_bytes(len.try_into().unwrap_or([0; 8])) as usize;
        bytes.resize(n, 0);
        if n == 0 {
            return Ok(());
        }
        let data = Tensor::from_slice(bytes, n, &Device::Cpu).map_err(&err)?;
        let data = self.guarded("broadcast", || self.backend.broadcast(&data, 0))?;
        *bytes = data.to_vec1().map_err(&err)?;
        Ok(())
    }

    /// Tells the other ranks that this one failed with `message`; they stop at once.
    pub fn report_failure(&self, message: &str) {
        if let Some(c) = &self.control {
            c.report_failure(message);
        }
    }

    /// The clean end of the job: a last barrier, then the control plane closes quietly.
    pub fn finish(&self) -> Result<(), DistError> {
        self.barrier()?;
        if let Some(c) = &self.control {
            c.finish();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A pretend world whose mean is 1.5 times this rank's values, recording each bucket's size.
    struct Doubled(Rc<RefCell<Vec<usize>>>);

    impl Collective for Doubled {
        fn rank(&self) -> usize {
            0
        }
        fn world(&self) -> usize {
            2
        }
        fn all_reduce_mean(&self, buf: &Tensor) -> Result<Tensor, DistError> {
            self.0.borrow_mut().push(buf.elem_count());
            (buf * 1.5).map_err(tensor_err("all-reduce", 0))
        }
        fn broadcast(&self, buf: &Tensor, _root: usize) -> Result<Tensor, DistError> {
            Ok(buf.clone())
        }
        fn barrier(&self) -> Result<(), DistError> {
            Ok(())
        }
    }

    #[test]
    fn gradients_travel_in_buckets_and_come_back_in_shape() -> Result<(), Box<dyn std::error::Error>>
    {
        let dev = Device::Cpu;
        let params: Vec<(String, Var)> = [("a", (2, 1)), ("b", (1, 2)), ("c", (5, 1))]
            .into_iter()
            .map(|(n, shape)| Ok((n.to_string(), Var::zeros(shape, DType::F32, &dev)?)))
            .collect::<Result<_, candle_core::Error>>()?;
        let mut grads = HashMap::new();
        grads.insert("a".to_string(), Tensor::new(&[[1f32], [2.0]], &dev)?);
        grads.insert("c".to_string(), Tensor::ones((5, 1), DType::F32, &dev)?);
        let mut stats = [4.0, 0.0];
        let calls = Rc::new(RefCell::new(Vec::new()));
        let world = World {
            backend: Box::new(Doubled(Rc::clone(&calls))),
            control: None,
        };
        world.average_in_buckets(&params, &mut grads, &mut stats, 4)?;
        assert_eq!(grads["a"].to_vec2::<f32>()?, vec![vec![1.5], vec![3.0]]);
        assert_eq!(grads["b"].to_vec2::<f32>()?, vec![vec![0.0, 0.0]]);
        assert_eq!(grads["c"].dims(), &[5, 1]);
        assert_eq!(stats, [6.0, 0.0]);
        assert_eq!(
            *calls.borrow(),
            vec![4, 7],
            "a+b in one bucket, c and the stats in another"
        );
        Ok(())
    }

    #[test]
    fn a_world_of_one_leaves_everything_alone() -> Result<(), Box<dyn std::error::Error>> {
        let w = World::single();
        assert!(w.is_main());
        let var = Var::new(&[1f32, 2.0], &Device::Cpu)?;
        let params = vec![("w".to_string(), var)];
        let mut grads = HashMap::new();
        grads.insert("w".to_string(), Tensor::new(&[0.5f32, 0.25], &Device::Cpu)?);
        let mut stats = [3.0];
        w.average(&params, &mut grads, &mut stats)?;
        assert_eq!(grads["w"].to_vec1::<f32>()?, vec![0.5, 0.25]);
        assert_eq!(stats, [3.0]);
        let mut bytes = vec![1, 2, 3];
        w.broadcast_bytes(&mut bytes)?;
        assert_eq!(bytes, vec![1, 2, 3]);
        w.finish()?;
        Ok(())
    }
}

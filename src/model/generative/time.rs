//! Training-time draws of `t`, and how a time enters the network.
//!
//! Flow matching draws `t` in [0, 1] (0 noise, 1 data) uniformly or logit-normally
//! (`sigmoid(N(mean, std))`, SD3's choice). Diffusion draws integer timesteps in `0..N`:
//! uniformly, or under `logit_normal` as `min(floor(u N), N - 1)` with `u` logit-normal.
//! The network sees `t * time_scale` (1000 for flow matching, 1 for diffusion timesteps).

use candle_core::{DType, Device, Tensor};

use crate::config::schema::{ModelSettings, TimeSampling};
use crate::rng::Rng;

use super::error::GenerativeError;

/// The distribution of training times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeDistribution {
    /// Uniform over the path's time range.
    Uniform,
    /// `sigmoid(N(mean, std))`.
    LogitNormal {
        /// Mean of the underlying normal.
        mean: f64,
        /// Standard deviation of the underlying normal.
        std: f64,
    },
}

impl TimeDistribution {
    /// The distribution `model.time_sampling` (with its logit-normal mean and std) describes.
    pub fn from_settings(s: &ModelSettings) -> Result<Self, GenerativeError> {
        match s.time_sampling {
            TimeSampling::Uniform => Ok(TimeDistribution::Uniform),
            TimeSampling::LogitNormal => {
                TimeDistribution::logit_normal(s.logit_normal_mean, s.logit_normal_std)
            }
        }
    }

    /// A checked logit-normal distribution (finite mean, positive finite std).
    pub fn logit_normal(mean: f64, std: f64) -> Result<Self, GenerativeError> {
        if !(mean.is_finite() && std.is_finite() && std > 0.0) {
            return Err(GenerativeError::InvalidSetting {
                key: "model.logit_normal_std",
                message: format!(
                    "logit-normal times need a finite mean and a finite std > 0, got mean \
                     {mean} and std {std}; e.g. set model.logit_normal_mean=0.0 \
                     model.logit_normal_std=1.0"
                ),
            });
        }
        Ok(TimeDistribution::LogitNormal { mean, std })
    }

    /// One draw in [0, 1].
    pub fn draw_unit(&self, rng: &mut Rng) -> f64 {
        match *self {
            TimeDistribution::Uniform => rng.uniform(),
            TimeDistribution::LogitNormal { mean, std } => {
                let z = mean + std * rng.normal();
                1.0 / (1.0 + (-z).exp())
            }
        }
    }

    /// `batch` flow-matching times as an f32 tensor `(batch,)` in [0, 1].
    pub fn flow_times(
        &self,
        batch: usize,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Tensor, GenerativeError> {
        let t: Vec<f32> = (0..batch)
            .map(|_| (self.draw_unit(rng) as f32).clamp(0.0, 1.0))
            .collect();
        Ok(Tensor::from_vec(t, batch, device)?)
    }

    /// `batch` integer diffusion timesteps in `0..num_train_timesteps` as an i64 tensor `(batch,)`.
    pub fn timesteps(
        &self,
        batch: usize,
        num_train_timesteps: usize,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Tensor, GenerativeError> {
        let n = num_train_timesteps as u64;
        let ts: Vec<i64> = (0..batch)
            .map(|_| match self {
                TimeDistribution::Uniform => rng.below(n) as i64,
                TimeDistribution::LogitNormal { .. } => {
                    let u = self.draw_unit(rng);
                    ((u * n as f64).floor() as i64).clamp(0, n as i64 - 1)
                }
            })
            .collect();
        Ok(Tensor::from_vec(ts, batch, device)?)
    }
}

/// The network's time input: `t * time_scale` as an f32 tensor `(batch,)`.
pub fn network_time(t: &Tensor, time_scale: f64) -> Result<Tensor, GenerativeError> {
    Ok(t.to_dtype(DType::F32)?.affine(time_scale, 0.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_and_spread(v: &[f64]) -> (f64, f64) {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
        (m, var.sqrt())
    }

    #[test]
    fn uniform_and_logit_normal_have_their_moments() -> Result<(), GenerativeError> {
        let dev = Device::Cpu;
        let mut rng = Rng::new(3);
        let u = TimeDistribution::Uniform
            .flow_times(20_000, &mut rng, &dev)?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let (m, s) = mean_and_spread(&u);
        assert!((m - 0.5).abs() < 0.01 && (s - (1.0f64 / 12.0).sqrt()).abs() < 0.01);
        let ln = TimeDistribution::logit_normal(0.0, 1.0)?
            .flow_times(20_000, &mut rng, &dev)?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let (m, s) = mean_and_spread(&ln);
        // sigmoid(N(0,1)) has mean 0.5 and std about 0.208, narrower than uniform.
        assert!(
            (m - 0.5).abs() < 0.01 && (s - 0.208).abs() < 0.01,
            "{m} {s}"
        );
        let logits: Vec<f64> = ln.iter().map(|t| (t / (1.0 - t)).ln()).collect();
        let (lm, ls) = mean_and_spread(&logits);
        assert!(lm.abs() < 0.03 && (ls - 1.0).abs() < 0.03, "{lm} {ls}");
        let shifted = TimeDistribution::logit_normal(1.0, 0.5)?
            .flow_times(5_000, &mut rng, &dev)?
            .mean_all()?
            .to_scalar::<f32>()?;
        assert!(shifted > 0.65, "{shifted}");
        assert!(TimeDistribution::logit_normal(0.0, 0.0).is_err());
        Ok(())
    }

    #[test]
    fn timesteps_cover_the_range_and_repeat_for_a_seed() -> Result<(), GenerativeError> {
        let dev = Device::Cpu;
        let draw = |seed| -> Result<Vec<i64>, GenerativeError> {
            Ok(TimeDistribution::Uniform
                .timesteps(4_000, 10, &mut Rng::new(seed), &dev)?
                .to_vec1::<i64>()?)
        };
        let a = draw(5)?;
        assert_eq!(a, draw(5)?);
        assert_ne!(a, draw(6)?);
        for k in 0..10 {
            let count = a.iter().filter(|t| **t == k).count();
            assert!((300..500).contains(&count), "timestep {k}: {count}");
        }
        let ln = TimeDistribution::logit_normal(0.0, 1.0)?.timesteps(
            1000,
            10,
            &mut Rng::new(1),
            &dev,
        )?;
        let v = ln.to_vec1::<i64>()?;
        assert!(v.iter().all(|t| (0..10).contains(t)));
        Ok(())
    }

    #[test]
    fn network_time_scales() -> Result<(), GenerativeError> {
        let t = Tensor::new(&[0f32, 0.25, 1.0], &Device::Cpu)?;
        let scaled = network_time(&t, 1000.0)?.to_vec1::<f32>()?;
        assert_eq!(scaled, vec![0.0, 250.0, 1000.0]);
        Ok(())
    }
}

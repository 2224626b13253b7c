//! Networks that a GenerativeModule trains: one model per file, behind one small trait.

pub mod dit;
pub mod ema;
pub mod generative;
pub mod kernels;
pub mod precision;
pub mod weights;

use candle_core::Tensor;

/// What a network sees: the input image stack and the time it is evaluated at.
#[derive(Debug, Clone)]
pub struct ModelInput {
    /// The network input, `(batch, in_channels, height, width)`: context masks, coordinate
    /// channels and the noisy target.
    pub x: Tensor,
    /// The time per sample, `(batch,)`, already scaled for the network (flow-matching `t * 1000`,
    /// diffusion timesteps as they are).
    pub t: Tensor,
}

/// A network predicting a velocity (or epsilon, v, x0) from a [`ModelInput`].
pub trait VelocityModel {
    /// The prediction, `(batch, out_channels, height, width)`.
    fn forward(&self, input: &ModelInput) -> candle_core::Result<Tensor>;
}

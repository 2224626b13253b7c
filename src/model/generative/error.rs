//! Errors of the generative module: bad settings, misshapen batches, and failures underneath.

use crate::model::dit::DitError;
use crate::path::error::PathError;
use crate::sampler::error::SamplerError;

/// Why a [`super::GenerativeModule`] could not be built, trained or sampled.
#[derive(Debug, thiserror::Error)]
pub enum GenerativeError {
    /// A `model.*` setting cannot describe a module (names the key and says what to set).
    #[error("invalid {key}: {message}")]
    InvalidSetting {
        /// The config key, e.g. `model.net.in_channels`.
        key: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A batch tensor has the wrong shape.
    #[error("{what} must have shape {expected}, got {got:?}")]
    BadShape {
        /// Which argument (`context`, `target`, ...).
        what: &'static str,
        /// The expected shape, in words.
        expected: String,
        /// The shape found.
        got: Vec<usize>,
    },
    /// The network could not be built.
    #[error(transparent)]
    Dit(#[from] DitError),
    /// The probability path failed.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The sampler failed.
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

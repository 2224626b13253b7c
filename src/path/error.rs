//! Errors of probability paths and diffusion schedules.

/// A bad argument to a path, scheduler or diffusion schedule, or a tensor failure underneath.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// A flow-matching time outside [0, 1] (t=0 is noise, t=1 is data).
    #[error(
        "time t={value} is outside [0, 1] (flow-matching time runs from t=0, noise, to t=1, data)"
    )]
    TimeOutOfRange {
        /// The offending value.
        value: f64,
    },
    /// A tensor argument has the wrong shape.
    #[error("{what} must have shape {expected}, got {got:?}")]
    BadShape {
        /// Which argument.
        what: &'static str,
        /// The expected shape, in words (e.g. `[batch_size]`).
        expected: String,
        /// The shape found.
        got: Vec<usize>,
    },
    /// A diffusion timestep outside 0..num_train_timesteps.
    #[error("timestep {value} is outside 0..{num_train_timesteps}")]
    TimestepOutOfRange {
        /// The offending timestep.
        value: i64,
        /// The schedule length.
        num_train_timesteps: usize,
    },
    /// A schedule or path parameter is invalid (names the parameter and says what is allowed).
    #[error("invalid {name}: {message}")]
    InvalidParameter {
        /// The parameter, e.g. `num_train_timesteps`.
        name: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

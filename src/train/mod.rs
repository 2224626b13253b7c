//! Training: the AdamW optimizer with savable state, gradient clipping, learning-rate schedules,
//! checkpoints and the run-control policies (early stopping, non-finite steps, shutdown).

pub mod budget;
pub mod checkpoint;
pub mod clip;
pub mod device;
pub mod early_stopping;
pub mod error;
pub mod fit;
pub mod lr;
pub mod nan_guard;
pub mod optim;
pub mod shutdown;
pub mod summary;
pub mod validation;

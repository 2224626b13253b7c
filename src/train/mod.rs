//! Training utilities: the AdamW optimizer with savable state and gradient clipping.

pub mod clip;
pub mod optim;

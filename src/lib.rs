//! flowrun: a Hydra-style composable experiment runner for training generative models.
//!
//! The config engine ([`config`]) composes YAML config trees exactly as Hydra 1.3 does; [`run`]
//! owns run directories; [`cli`] is the command flow shared by the binaries.

#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod data;
pub mod dist;
pub mod inspect;
pub mod model;
pub mod path;
pub mod rng;
pub mod run;
pub mod sampler;
pub mod telemetry;
pub mod train;

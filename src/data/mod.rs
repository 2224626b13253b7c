//! NAMO scenes: reading `.npz` folders, the synthetic generator, splits, the resumable sharded
//! sampler and the prefetching loader.
//!
//! * [`scene`]: one scene's six masks (keys, legacy keys, checks, [-1, 1] mapping, symmetries);
//! * [`npy`]: the `.npy`/`.npz` codec; [`resize`]: area / antialiased bilinear resizing;
//! * [`folder`]: listing a folder and checking its files (`on_bad_file`);
//! * [`dataset`]: [`SceneSet`] and [`DataModule`] (train/val split, cache, augmentation);
//! * [`sampler`]: per-epoch shuffles, rank shards, the saved position;
//! * [`loader`]: [`SceneLoader`], batches from background threads, wait times;
//! * [`synthetic`]: the built-in generator, its cache and the validity check;
//! * [`error`], the typed [`DataError`].

pub mod dataset;
pub mod error;
pub mod folder;
pub mod loader;
pub mod npy;
pub mod resize;
pub mod sampler;
pub mod scene;
pub mod synthetic;

pub use dataset::{DataModule, LoadReport, SceneSet};
pub use error::DataError;
pub use loader::{LoaderOptions, SceneBatch, SceneLoader, WaitStats};
pub use sampler::{BatchPlan, SamplerState, Shard, ShardSampler};
pub use scene::{read_scene, Scene};

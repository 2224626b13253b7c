//! Checkpoints: which files to keep ([`policy`]), the `.ckpt` file format and its atomic
//! writes ([`file`](mod@file), [`meta`]), finding the file to resume from ([`locate`]) and
//! whether a new config may resume it ([`compat`]).

pub mod compat;
mod error;
pub mod file;
pub mod locate;
pub mod meta;
pub mod policy;

pub use compat::{check_resume, check_resume_yaml, config_diff, ConfigChange, ResumeError};
pub use error::CheckpointError;
pub use file::{load_checkpoint, load_checkpoint_bytes, read_meta, write_checkpoint, Checkpoint};
pub use locate::{list_checkpoints, resolve_ckpt_path, CHECKPOINT_DIR};
pub use meta::{CheckpointMeta, FORMAT_VERSION};
pub use policy::{
    CheckpointAction, CheckpointPolicy, CheckpointPolicyState, SaveReason, LAST_FILE,
};

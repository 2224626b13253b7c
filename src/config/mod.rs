//! The config engine: Hydra 1.3 composition in stages, each testable alone.
//!
//! 1. [`overrides`]: parse command-line overrides (Hydra's grammar);
//! 2. [`repo`] + [`defaults`]: find configs and expand the defaults tree;
//! 3. [`compose`]: merge configs at their packages, apply value overrides in struct mode;
//! 4. [`interp`]: resolve `${...}` interpolations;
//! 5. [`schema`]: check the result against typed settings.
//!
//! [`loader`] chains the stages; [`yaml`] and [`emit`] read and write YAML as OmegaConf does.
//! This module does not depend on candle.

pub mod compose;
pub mod defaults;
pub mod emit;
pub mod error;
pub mod interp;
pub mod loader;
pub mod machine;
pub mod node;
pub mod overrides;
pub mod pyfmt;
pub mod repo;
pub mod schema;
pub mod suggest;
pub mod sweep;
pub mod yaml;

mod shipped {
    include!(concat!(env!("OUT_DIR"), "/embedded_conf.rs"));
}

/// The shipped `conf/` tree, compiled into the binary: (path relative to conf/, file text).
pub use shipped::EMBEDDED_CONF as SHIPPED_CONF;

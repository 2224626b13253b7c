//! `inspect`: trained runs read back without Python.
//!
//! - [`run::Run`] reads a run directory (config, overrides, checkpoints, TensorBoard scalars);
//! - [`summary`] summarises one run: its config diff against the shipped defaults of its primary
//!   config, best checkpoint, steps, throughput and validation loss;
//! - [`sparkline`] renders scalar curves as terminal sparklines with min, max and last;
//! - [`plot`] draws the curves as PNG line charts, runs overlaid in distinct colours, labelled
//!   in the 5x7 pixel [`font`];
//! - [`compare`] puts two or more runs side by side (config diff table, headline numbers).
//!
//! The library returns data and text; the `inspect` command (`crate::cli::inspect`) prints it.

pub mod compare;
mod error;
pub mod font;
pub mod plot;
pub mod run;
pub mod sparkline;
pub mod summary;
pub mod table;

pub use compare::{compare_configs, render_config_table, render_headlines, ConfigTable};
pub use error::InspectError;
pub use plot::{curve_panels, draw, Panel, Plot, Series};
pub use run::Run;
pub use sparkline::{render_curves, sparkline, summarize_curves, CurveSummary};
pub use summary::{render_summary, summarize, RunSummary};

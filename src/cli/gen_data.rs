//! The `gen-data` command: write synthetic NAMO scenes to a folder as `.npz` files, and
//! optionally a PNG preview of the first few.

use crate::data::synthetic::cache::write_scenes;
use crate::data::synthetic::preview::write_preview;
use crate::data::synthetic::SyntheticParams;
use crate::data::DataError;
use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// Write synthetic NAMO scenes (the `data=synthetic_namo` rule) as .npz files.
#[derive(Debug, Parser)]
#[command(name = "gen-data")]
pub struct GenDataArgs {
    /// The folder to write `scene_NNNNNN.npz` files into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// How many scenes.
    #[arg(long, default_value_t = 512)]
    pub num_scenes: usize,
    /// The seed; scene i depends only on the seed and i.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Side of the masks, in pixels.
    #[arg(long, default_value_t = 224)]
    pub resolution: usize,
    /// Also write a PNG grid of the first scenes here.
    #[arg(long)]
    pub preview: Option<PathBuf>,
    /// Scenes in the preview.
    #[arg(long, default_value_t = 8)]
    pub preview_count: usize,
    /// Writer threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// Runs `gen-data` with the given arguments (the program name first).
pub fn main_for(args: Vec<OsString>) -> ExitCode {
    let args = match GenDataArgs::try_parse_from(args) {
        Ok(args) => args,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &GenDataArgs) -> Result<(), DataError> {
    let params = SyntheticParams {
        resolution: args.resolution,
        ..SyntheticParams::default()
    };
    write_scenes(&args.out, &params, args.seed, args.num_scenes, args.threads)?;
    println!(
        "wrote {} scenes ({}×{}) to {}",
        args.num_scenes,
        args.resolution,
        args.resolution,
        args.out.display()
    );
    if let Some(path) = &args.preview {
        write_preview(
            path,
            &params,
            args.seed,
            args.preview_count,
            4,
            args.resolution,
        )?;
        println!(
            "wrote a preview of {} scenes to {}",
            args.preview_count,
            path.display()
        );
    }
    Ok(())
}

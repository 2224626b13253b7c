//! `sample`: draws `num_samples` goal masks per scene from a trained run and writes, per scene,
//! a PNG grid (one row per sample: context, sample, ground truth) and an `.npz` holding the
//! input masks and `generated_goal` `(k, H, W)`.

use super::trained::{draw_samples, load_trained, TrainedError};
use crate::config::schema::SampleSettings;
use crate::data::npy::write_npz;
use crate::data::scene::{CONTEXT_KEYS, TARGET_KEY};
use crate::telemetry::validation_grid_from_tensors;
use candle_core::Tensor;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The key of the sampled masks in each written `.npz`.
pub const GENERATED_KEY: &str = "generated_goal";

/// What `sample` wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleReport {
    /// The `.npz` files, one per scene.
    pub npz: Vec<PathBuf>,
    /// The PNG grids, one per scene.
    pub png: Vec<PathBuf>,
    /// Network evaluations of the sampling run.
    pub nfe: usize,
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TrainedError> {
    crate::run::atomic_write(path, bytes).map_err(|source| TrainedError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs `sample` with `settings`, writing into `dir`; progress lines go to `out`.
pub fn run_sample(
    settings: &SampleSettings,
    dir: &Path,
    out: &mut dyn Write,
) -> Result<SampleReport, TrainedError> {
    let source = &settings.source;
    let run = load_trained(source)?;
    let plan = run.plan(&settings.sampler)?;
    let scenes = run.scenes(source.data_dir.as_deref(), source.num_scenes)?;
    let _ = writeln!(
        out,
        "[sample] {} ({} weights), {} scenes x {} samples, sampler {} with {} steps",
        run.ckpt.display(),
        if run.ema { "EMA" } else { "raw" },
        scenes.len(),
        source.num_samples,
        settings.sampler.name(),
        settings.sampler.steps()
    );
    let k = source.num_samples;
    let drawn = draw_samples(&run.module, &scenes, &plan, k, source.seed)?;
    let size = scenes[0].size;
    let plane = size * size;
    let masks = drawn.masks.flatten_all()?.to_vec1::<f32>()?;
    let mut report = SampleReport {
        npz: Vec::new(),
        png: Vec::new(),
        nfe: drawn.stats.nfe,
    };
    for (i, scene) in scenes.iter().enumerate() {
        let rows = Tensor::new(vec![i as u32; k].as_slice(), &candle_core::Device::Cpu)?;
        let grid = validation_grid_from_tensors(
            &drawn.context.index_select(&rows, 0)?,
            &drawn.masks.narrow(0, i * k, k)?,
            &drawn.target.index_select(&rows, 0)?,
        )?;
        let png = dir.join(format!("{}.png", scene.id));
        write_file(&png, &grid.encode_png()?)?;
        let bools = |v: &[f32]| v.iter().map(|&x| x > 0.0).collect::<Vec<bool>>();
        let inputs: Vec<Vec<bool>> = (0..CONTEXT_KEYS.len() + 1)
            .map(|c| bools(&scene.pixels[c * plane..(c + 1) * plane]))
            .collect();
        let generated = bools(&masks[i * k * plane..(i + 1) * k * plane]);
        let mask_shape = [size, size];
        let gen_shape = [k, size, size];
        let mut arrays: Vec<(&str, &[usize], &[bool])> = CONTEXT_KEYS
            .iter()
            .chain([&TARGET_KEY])
            .zip(&inputs)
            .map(|(key, mask)| (*key, &mask_shape[..], mask.as_slice()))
            .collect();
        arrays.push((GENERATED_KEY, &gen_shape[..], generated.as_slice()));
        let bytes = write_npz(std::io::Cursor::new(Vec::new()), &arrays, true)
            .map_err(|e| TrainedError::Write {
                path: dir.join(format!("{}.npz", scene.id)),
                source: std::io::Error::other(e.to_string()),
            })?
            .into_inner();
        let npz = dir.join(format!("{}.npz", scene.id));
        write_file(&npz, &bytes)?;
        report.npz.push(npz);
        report.png.push(png);
    }
    let _ = writeln!(
        out,
        "[sample] {} network evaluations; wrote {} .npz files and {} PNG grids to {}",
        report.nfe,
        report.npz.len(),
        report.png.len(),
        dir.display()
    );
    Ok(report)
}

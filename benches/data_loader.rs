//! Benchmark: loader throughput, 224×224 `.npz` scene files to (B, 5, 64, 64) batches, against
//! what training consumes.
//!
//! The reference is 260 samples/s, the PyTorch-parity training throughput target of the
//! CPU_SMALL configuration (an upper bound of what the trainer can consume on CPU). Target: the
//! loader with `num_workers = 2` and no cache delivers at least 10× that, so data never holds
//! training back. The synchronous path (`num_workers = 0`) and the in-memory cache are printed
//! for comparison.
//!
//! The same run also measures what training actually consumes on this machine: one CPU_SMALL
//! DiT training step (forward, mean-squared loss, backward) at batch 64, in samples/s.
//!
//! Run with `just bench-data` (or `cargo bench --bench data_loader`).

use flowrun::data::synthetic::cache::write_scenes;
use flowrun::data::synthetic::SyntheticParams;
use flowrun::data::{BatchPlan, LoaderOptions, SceneLoader, SceneSet, Shard, ShardSampler};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

const SCENES: usize = 256;
const BATCH: usize = 64;
const EPOCHS: usize = 3;
const TRAINER_SAMPLES_PER_S: f64 = 260.0;

fn scenes_per_second(
    paths: &[PathBuf],
    workers: usize,
    cache: bool,
) -> Result<f64, Box<dyn std::error::Error>> {
    let set = Arc::new(SceneSet::from_files(paths.to_vec(), 64, cache));
    let plan = BatchPlan {
        batch_size: BATCH,
        drop_last: true,
        shuffle: true,
    };
    let sampler = ShardSampler::new(set.len(), Shard::SOLE, plan, 0)?;
    let mut loader = SceneLoader::new(set, sampler, LoaderOptions::with_workers(workers));
    if cache {
        for _ in 0..loader.batches_per_epoch() {
            loader.next_batch()?;
        }
    }
    let batches = EPOCHS * loader.batches_per_epoch();
    let started = Instant::now();
    for _ in 0..batches {
        let batch = loader.next_batch()?;
        assert_eq!(batch.context.dims(), &[BATCH, 5, 64, 64]);
    }
    Ok((batches * BATCH) as f64 / started.elapsed().as_secs_f64())
}

/// Samples/s of a CPU_SMALL DiT training step (forward + MSE + backward) at batch 64, median of 3.
fn training_samples_per_second() -> Result<f64, Box<dyn std::error::Error>> {
    use candle_core::{Device, Tensor};
    use flowrun::model::dit::{Dit, DitConfig};
    use flowrun::model::{ModelInput, VelocityModel};
    let dev = Device::Cpu;
    let cfg = DitConfig::cpu_small();
    let vars = candle_nn::VarMap::new();
    let dit = Dit::init(&cfg, &vars, &dev)?;
    let shape = (BATCH, cfg.in_channels, cfg.input_size, cfg.input_size);
    let input = ModelInput {
        x: Tensor::randn(0f32, 1.0, shape, &dev)?,
        t: Tensor::full(0.5f32, BATCH, &dev)?,
    };
    let out_shape = (BATCH, cfg.out_channels, cfg.input_size, cfg.input_size);
    let target = Tensor::randn(0f32, 1.0, out_shape, &dev)?;
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let loss = dit.forward(&input)?.sub(&target)?.sqr()?.mean_all()?;
        loss.backward()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(BATCH as f64 / times[1])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    write_scenes(dir.path(), &SyntheticParams::default(), 0, SCENES, 2)?;
    println!(
        "generated {SCENES} synthetic 224×224 scenes (savez_compressed format) in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.path())?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    stage_breakdown(&paths)?;
    println!("| loader (224×224 .npz → 64×64, batch {BATCH}) | scenes/s | × trainer ({TRAINER_SAMPLES_PER_S} samples/s) |");
    println!("|---|---|---|");
    let mut target = 0.0;
    for (label, workers, cache) in [
        ("num_workers=2, no cache (the target)", 2, false),
        ("num_workers=0, no cache", 0, false),
        ("num_workers=2, cache", 2, true),
    ] {
        let rate = scenes_per_second(&paths, workers, cache)?;
        if workers == 2 && !cache {
            target = rate;
        }
        println!(
            "| {label} | {rate:.0} | {:.1}× |",
            rate / TRAINER_SAMPLES_PER_S
        );
    }
    let consumed = training_samples_per_second()?;
    println!(
        "measured here: one CPU_SMALL training step at batch {BATCH} consumes {consumed:.0} samples/s; the num_workers=2 loader delivers {:.1}× that",
        target / consumed
    );
    let ratio = target / TRAINER_SAMPLES_PER_S;
    println!(
        "target: >= 10× the trainer's consumption with num_workers=2: {ratio:.1}× ({})",
        if ratio >= 10.0 { "met" } else { "NOT met" }
    );
    Ok(())
}

/// Single-thread time per scene of each stage of reading one file.
fn stage_breakdown(paths: &[PathBuf]) -> Result<(), Box<dyn std::error::Error>> {
    use flowrun::data::npy::{decode_npy, read_member};
    use flowrun::data::scene::{CONTEXT_KEYS, TARGET_KEY};
    let per_scene = |t: Instant| t.elapsed().as_secs_f64() * 1e6 / paths.len() as f64;
    let files: Vec<Vec<u8>> = paths.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    let t = Instant::now();
    let mut members = Vec::new();
    for bytes in &files {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.as_slice()))?;
        for key in CONTEXT_KEYS.iter().chain([&TARGET_KEY]) {
            members.push(read_member(&mut archive, &format!("{key}.npy")).map_err(|p| p.reason)?);
        }
    }
    let unzip = per_scene(t);
    let t = Instant::now();
    let arrays: Vec<_> = members
        .iter()
        .map(|m| decode_npy(m).map_err(|p| p.reason))
        .collect::<Result<_, _>>()?;
    let decode = per_scene(t);
    let t = Instant::now();
    for array in &arrays {
        if let flowrun::data::npy::NpyValues::Bytes(bytes) = &array.values {
            flowrun::data::resize::resize_mask(bytes, 224, 224, 64, 64);
        }
    }
    let resize = per_scene(t);
    let t = Instant::now();
    for path in paths {
        flowrun::data::read_scene(path, 64)?;
    }
    println!(
        "per scene, one thread: inflate {unzip:.0} µs, decode {decode:.0} µs, resize {resize:.0} µs; whole read_scene {:.0} µs",
        per_scene(t)
    );
    Ok(())
}

//! Writes a small TensorBoard event file for checking with TensorBoard itself:
//! `cargo run --example tensorboard_sample -- DIR`, then see tests/tensorboard/README.md.

use std::path::PathBuf;
use std::process::ExitCode;

use flowrun::telemetry::sample_grid::{validation_grid, SceneMasks};
use flowrun::telemetry::{ColorMode, EventWriter, Image, TelemetryError};

fn write_sample(dir: &std::path::Path) -> Result<PathBuf, TelemetryError> {
    let mut writer = EventWriter::create(dir)?;
    for step in 0..100u64 {
        writer.add_scalar("train_loss", 1.0 / (step as f64 + 1.0), step)?;
        writer.add_scalar("lr", 1e-4f32, step)?;
    }
    // RGB, 32 high and 64 wide: pixel (x, y) = (4x, 8y, 128).
    let rgb: Vec<u8> = (0..32u32)
        .flat_map(|y| (0..64u32).flat_map(move |x| [(4 * x) as u8, (8 * y) as u8, 128]))
        .collect();
    writer.add_image("rgb_32x64", &Image::new(64, 32, ColorMode::Rgb, rgb)?, 1)?;
    // Grayscale, 48 high and 16 wide: pixel (x, y) = 5y + x.
    let gray: Vec<u8> = (0..48u32)
        .flat_map(|y| (0..16u32).map(move |x| (5 * y + x) as u8))
        .collect();
    writer.add_image("gray_48x16", &Image::new(16, 48, ColorMode::Gray, gray)?, 2)?;
    let (batch, h, w) = (2, 16, 24);
    let context: Vec<f32> = (0..batch * 5 * h * w)
        .map(|i| if (i / 7) % 5 == 0 { 1.0 } else { -1.0 })
        .collect();
    let generated: Vec<f32> = (0..batch * h * w)
        .map(|i| ((i % w) as f32 / w as f32) * 2.0 - 1.0)
        .collect();
    let grid = validation_grid(&SceneMasks {
        context: &context,
        generated: &generated,
        ground_truth: &generated,
        batch,
        height: h,
        width: w,
    })?;
    writer.add_image("Validation_Samples_0", &grid, 3)?;
    writer.add_config_yaml("config", "model:\n  depth: 4\nbase_lr: 0.0001", 0)?;
    let path = writer.path().to_path_buf();
    writer.close()?;
    Ok(path)
}

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: tensorboard_sample DIR");
        return ExitCode::from(2);
    };
    match write_sample(std::path::Path::new(&dir)) {
        Ok(path) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

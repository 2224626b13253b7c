//! Tiny runs (16x16 masks, a 1-block DiT, 2 epochs of 4 batches of 4, every step logged) for the
//! tests that train before they check something.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Overrides of a tiny run written to `run_dir`, its synthetic scenes cached in `cache`.
pub fn tiny(cache: &Path, run_dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "trainer=cpu",
        "model.net.hidden_size=32",
        "model.net.depth=1",
        "model.net.num_heads=2",
        "model.net.patch_size=4",
        "image_size=16",
        "data.num_scenes=24",
        "data.val_fraction=0.25",
        "data.num_workers=1",
        "batch_size=4",
        "max_epochs=2",
        "trainer.max_steps=null",
        "trainer.log_every_n_steps=1",
        "trainer.check_val_every_n_epoch=1",
        "trainer.progress_interval_s=0.5",
        "scheduler.warmup_steps=1",
        "sampling_steps=2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("data.cache_dir={}", cache.display()));
    args.push(format!("hydra.run.dir={}", run_dir.display()));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Runs the binary `exe` in `cwd` with `args`.
pub fn run(exe: &str, cwd: &Path, args: &[String]) -> Output {
    Command::new(exe)
        .current_dir(cwd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("the command runs")
}

/// Trains a tiny run named `name` under `root` and returns its directory.
pub fn train(root: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let dir = root.join(name);
    let out = run(
        env!("CARGO_BIN_EXE_train"),
        root,
        &tiny(&root.join("cache"), &dir, extra),
    );
    assert!(
        out.status.success(),
        "training {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// Standard output and standard error of `out`, joined.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

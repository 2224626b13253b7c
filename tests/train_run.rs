//! `train` end to end on a tiny configuration: the run directory, TensorBoard events read back,
//! checkpoints, exact resume after SIGINT, a kill at a random moment, early stopping, the
//! non-finite policies, and the errors of bad resumes.

use flowrun::telemetry::event_reader::{read_event_dir, read_texts};
use flowrun::train::checkpoint::load_checkpoint;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use support::tiny;

#[allow(dead_code)]
#[path = "support/tiny_run.rs"]
mod support;
use std::time::{Duration, Instant};

/// One synthetic-scene cache shared by every test (generating scenes is the slow part).
fn scene_cache() -> &'static Path {
    static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let out = run(
                dir.path(),
                &tiny(dir.path(), &dir.path().join("warmup"), &["max_epochs=1"]),
            );
            assert!(out.status.success(), "warm-up run failed: {}", stderr(&out));
            dir
        })
        .path()
}

fn command(cwd: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_train"));
    cmd.current_dir(cwd)
        .args(args)
        .env_remove("TRAIN_INJECT_NAN_AT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run(cwd: &Path, args: &[String]) -> Output {
    command(cwd, args).output().expect("train runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn metrics(run_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The last logged value of `key` at each step.
fn series(run_dir: &Path, key: &str) -> BTreeMap<u64, f64> {
    metrics(run_dir)
        .iter()
        .filter_map(|m| Some((m["step"].as_u64()?, m.get(key)?.as_f64()?)))
        .collect()
}

fn wait_for(mut ready: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[test]
fn a_run_leaves_the_layout_events_and_loadable_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    let out = run(tmp.path(), &tiny(scene_cache(), &run_dir, &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    for file in [
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        ".hydra/hydra.yaml",
    ] {
        assert!(run_dir.join(file).is_file(), "{file} missing");
    }
    assert!(run_dir.join("checkpoints/last.ckpt").is_file());
    let best: Vec<String> = std::fs::read_dir(run_dir.join("checkpoints"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("epoch") && n.contains("-val_loss") && n.ends_with(".ckpt"))
        .collect();
    assert_eq!(best.len(), 1, "save_top_k=1 keeps one best file: {best:?}");
    let log = std::fs::read_to_string(run_dir.join("train.log")).unwrap();
    assert!(log.contains("training finished after 8 steps"), "{log}");
    assert!(log.contains("best val_loss"), "{log}");

    let events = read_event_dir(&run_dir.join("tensorboard")).unwrap();
    for tag in [
        "train_loss",
        "train_mse",
        "train_aux_dice",
        "val_loss",
        "val_loss_best",
        "lr",
        "grad_norm",
        "samples_per_s",
        "data_wait_frac",
        "nan_skipped",
    ] {
        assert!(events.scalars.contains_key(tag), "no scalar {tag}");
    }
    let logged = series(&run_dir, "train_loss");
    let tb: BTreeMap<u64, f32> = events.scalars["train_loss"]
        .iter()
        .map(|p| (p.step as u64, p.value))
        .collect();
    assert_eq!(tb.len(), 8);
    for (step, value) in &tb {
        assert_eq!(*value, logged[step] as f32, "train_loss at step {step}");
    }
    let val = &events.scalars["val_loss"];
    assert_eq!(val.iter().map(|p| p.step).collect::<Vec<_>>(), vec![4, 8]);
    let image = &events.images["Validation_Samples_0"][0];
    let decoded = image.decode().expect("a decodable PNG");
    assert_eq!(
        (decoded.width(), decoded.height()),
        (image.width, image.height)
    );
    assert!(
        decoded.width() > decoded.height(),
        "a row: context, generated, truth"
    );
    let texts = read_texts(&run_dir.join("tensorboard")).unwrap();
    assert!(texts["config"][0].text.contains("batch_size: 4"));

    let ckpt = load_checkpoint(
        &run_dir.join("checkpoints/last.ckpt"),
        &candle_core::Device::Cpu,
    )
    .expect("last.ckpt loads");
    assert_eq!(ckpt.meta.step, 8);
    assert!(ckpt.model.contains_key("final_layer.linear.weight"));
    assert!(!ckpt.ema.is_empty() && !ckpt.optim.is_empty());
    assert!(ckpt.meta.config_yaml.contains("hidden_size: 32"));
}

#[test]
fn sigint_writes_last_ckpt_and_the_resumed_losses_equal_the_uninterrupted_run() {
    let cache = scene_cache();
    let tmp = tempfile::tempdir().unwrap();
    let long = ["max_epochs=10"];
    let whole = tmp.path().join("whole");
    let out = run(tmp.path(), &tiny(cache, &whole, &long));
    assert!(out.status.success(), "{}", stderr(&out));

    let cut = tmp.path().join("cut");
    let child = command(tmp.path(), &tiny(cache, &cut, &long))
        .spawn()
        .unwrap();
    wait_for(
        || std::fs::read_to_string(cut.join("metrics.jsonl")).is_ok_and(|m| m.lines().count() >= 3),
        "three logged steps",
    );
    signal(&child, "INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("interrupted by SIGINT"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("ckpt_path=last"), "{}", stderr(&out));
    let k = load_checkpoint(
        &cut.join("checkpoints/last.ckpt"),
        &candle_core::Device::Cpu,
    )
    .expect("last.ckpt after SIGINT")
    .meta
    .step;
    assert!((3..40).contains(&k), "stopped at step {k}");

    let out = run(tmp.path(), &tiny(cache, &cut, &[long[0], "ckpt_path=last"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let (a, b) = (series(&whole, "train_loss"), series(&cut, "train_loss"));
    assert_eq!(a.len(), 40);
    for step in 1..=40 {
        assert_eq!(
            a[&step].to_bits(),
            b[&step].to_bits(),
            "train_loss differs at step {step} (resumed after step {k})"
        );
    }
    let (va, vb) = (series(&whole, "val_loss"), series(&cut, "val_loss"));
    assert_eq!(va[&40].to_bits(), vb[&40].to_bits());
}

#[test]
fn a_kill_at_a_random_moment_leaves_a_loadable_last_ckpt() {
    let cache = scene_cache();
    let tmp = tempfile::tempdir().unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    for round in 0..2u32 {
        let dir = tmp.path().join(format!("run{round}"));
        let args = tiny(
            cache,
            &dir,
            &["max_epochs=100", "checkpoint.last_every_n_steps=1"],
        );
        let mut child = command(tmp.path(), &args).spawn().unwrap();
        let last = dir.join("checkpoints/last.ckpt");
        wait_for(|| last.is_file(), "the first last.ckpt");
        std::thread::sleep(Duration::from_millis(u64::from((nanos >> round) % 400)));
        child.kill().unwrap();
        child.wait().unwrap();
        let ckpt = load_checkpoint(&last, &candle_core::Device::Cpu)
            .unwrap_or_else(|e| panic!("last.ckpt after a kill: {e}"));
        assert!(ckpt.meta.step >= 1);
    }
}

#[test]
fn early_stopping_ends_the_run_when_val_loss_stops_improving() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = run(
        tmp.path(),
        &tiny(
            scene_cache(),
            &dir,
            &[
                "max_epochs=20",
                "early_stopping.enabled=true",
                "early_stopping.patience=1",
                "early_stopping.min_delta=100.0",
            ],
        ),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let log = std::fs::read_to_string(dir.join("train.log")).unwrap();
    assert!(log.contains("stopped early"), "{log}");
    let steps = series(&dir, "train_loss").len();
    assert!((8..80).contains(&steps), "{steps} steps");
}

#[test]
fn an_injected_nan_is_skipped_or_aborts_with_the_step_named() {
    let cache = scene_cache();
    let tmp = tempfile::tempdir().unwrap();
    let skip = tmp.path().join("skip");
    let out = command(
        tmp.path(),
        &tiny(cache, &skip, &["trainer.nan_policy=skip"]),
    )
    .env("TRAIN_INJECT_NAN_AT", "2")
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let skipped = series(&skip, "nan_skipped");
    assert_eq!(skipped.values().last().copied(), Some(1.0));
    assert!(std::fs::read_to_string(skip.join("train.log"))
        .unwrap()
        .contains("step 2: non-finite loss"));

    let abort = tmp.path().join("abort");
    let out = command(
        tmp.path(),
        &tiny(cache, &abort, &["trainer.nan_policy=abort"]),
    )
    .env("TRAIN_INJECT_NAN_AT", "3")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("at step 3"), "{err}");
    assert!(err.contains("last.ckpt"), "{err}");
    let ckpt = load_checkpoint(
        &abort.join("checkpoints/last.ckpt"),
        &candle_core::Device::Cpu,
    )
    .expect("the last good state");
    assert_eq!(ckpt.meta.step, 2);
}

#[test]
fn bad_resumes_are_refused_with_clear_errors() {
    let cache = scene_cache();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = run(tmp.path(), &tiny(cache, &dir, &["max_epochs=1"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let last: PathBuf = dir.join("checkpoints/last.ckpt");

    let changed = tiny(
        cache,
        &tmp.path().join("changed"),
        &[
            "model.net.depth=2",
            &format!("ckpt_path={}", last.display()),
        ],
    );
    let out = run(tmp.path(), &changed);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("model.net.depth"), "{err}");

    let missing = tiny(
        cache,
        &tmp.path().join("m"),
        &["ckpt_path=/nonexistent/x.ckpt"],
    );
    let out = run(tmp.path(), &missing);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("/nonexistent/x.ckpt"),
        "{}",
        stderr(&out)
    );

    let corrupt = tmp.path().join("corrupt.ckpt");
    std::fs::write(&corrupt, b"not a checkpoint").unwrap();
    let out = run(
        tmp.path(),
        &tiny(
            cache,
            &tmp.path().join("c"),
            &[&format!("ckpt_path={}", corrupt.display())],
        ),
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("corrupt.ckpt"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn an_unwritable_output_directory_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let blocker = tmp.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let out = run(tmp.path(), &tiny(scene_cache(), &blocker.join("run"), &[]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot write"), "{}", stderr(&out));
    assert!(stderr(&out).contains("file/run"), "{}", stderr(&out));
}

#[test]
fn a_gpu_trainer_without_a_cuda_build_says_how_to_build_one() {
    if candle_core::utils::cuda_is_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for choice in ["trainer=multi_gpu", "trainer.accelerator=gpu"] {
        let out = run(
            tmp.path(),
            &tiny(scene_cache(), &tmp.path().join("gpu"), &[choice]),
        );
        assert_eq!(out.status.code(), Some(1), "{choice}");
        let err = stderr(&out);
        assert!(err.contains("--features cuda"), "{choice}: {err}");
        assert!(err.contains("trainer=cpu"), "{choice}: {err}");
    }
}

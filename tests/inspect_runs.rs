//! `inspect` on runs trained by `train`: the summary and curves show the values that were
//! logged, the config diff names the overridden keys, two runs compare key by key, `plot=true`
//! writes a decodable PNG, the command writes its own run directory (`.hydra/`, `summary.md`),
//! and bad input (no runs, a path that is not a run, an unknown tag) gets a clear error.

#[allow(dead_code)]
#[path = "support/tiny_run.rs"]
mod support;
use flowrun::inspect::plot::{colour, PANEL_HEIGHT, WIDTH};
use flowrun::inspect::sparkline::fmt_value;
use flowrun::inspect::Run;
use flowrun::telemetry::event_reader::read_scalars;
use flowrun::telemetry::Image;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// Two tiny runs that differ only in `base_lr`, trained once for every test.
struct Runs {
    _tmp: tempfile::TempDir,
    slow: PathBuf,
    fast: PathBuf,
}

fn runs() -> &'static Runs {
    static RUNS: OnceLock<Runs> = OnceLock::new();
    RUNS.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cache = tmp.path().join("cache");
        let slow = tmp.path().join("lr_slow");
        let fast = tmp.path().join("lr_fast");
        train(tmp.path(), &cache, &slow, "base_lr=0.0005");
        train(tmp.path(), &cache, &fast, "base_lr=0.002");
        Runs {
            _tmp: tmp,
            slow,
            fast,
        }
    })
}

/// Trains a tiny run (16x16 masks, a 1-block DiT, 2 epochs of 4 batches of 4) into `run_dir`.
fn train(cwd: &Path, cache: &Path, run_dir: &Path, lr: &str) {
    let out = support::run(
        env!("CARGO_BIN_EXE_train"),
        cwd,
        &support::tiny(cache, run_dir, &[lr]),
    );
    assert!(
        out.status.success(),
        "train failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `inspect` with `args` and its run directory in a fresh temporary directory, which is
/// returned with the output.
fn inspect_in(args: &[&str]) -> (Output, tempfile::TempDir) {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_inspect"))
        .current_dir(out_dir.path())
        .args(args)
        .arg(format!(
            "hydra.run.dir={}",
            out_dir.path().join("out").display()
        ))
        .stdin(Stdio::null())
        .output()
        .expect("inspect runs");
    (output, out_dir)
}

fn inspect(args: &[&str]) -> Output {
    inspect_in(args).0
}

/// `runs=[a,b,...]`, Hydra's list syntax.
fn runs_arg(dirs: &[&Path]) -> String {
    let items: Vec<&str> = dirs.iter().map(|d| s(d)).collect();
    format!("runs=[{}]", items.join(","))
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &Output) -> String {
    assert!(!out.status.success(), "inspect should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// `(step, value)` of `key` in every `metrics.jsonl` line that has it, as the events store it
/// (f32).
fn logged(run: &Path, key: &str) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .filter_map(|m| Some((m["step"].as_u64()?, m.get(key)?.as_f64()? as f32 as f64)))
        .collect()
}

fn shown(v: f64) -> String {
    fmt_value(Some(v))
}

fn line_of<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with {start:?} in:\n{text}"))
}

#[test]
fn a_summary_shows_the_values_that_were_logged() {
    let run = &runs().slow;
    let text = stdout(&inspect(&[&runs_arg(&[run])]));
    let val = logged(run, "val_loss");
    let (last_step, last) = *val.last().expect("val_loss logged");
    let (best_step, best) = val
        .iter()
        .copied()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert!(
        text.contains(&format!(
            "val_loss: last {} (step {last_step}), best {} (step {best_step})",
            shown(last),
            shown(best)
        )),
        "{text}"
    );
    let steps = logged(run, "train_loss").iter().map(|p| p.0).max().unwrap();
    assert!(text.contains(&format!("steps: {steps} ")), "{text}");
    let mut rates: Vec<f64> = logged(run, "samples_per_s").iter().map(|p| p.1).collect();
    rates.sort_by(f64::total_cmp);
    let median = (rates[rates.len() / 2 - 1] + rates[rates.len() / 2]) / 2.0;
    assert_eq!(rates.len() % 2, 0, "8 logged steps");
    assert!(
        text.contains(&format!("throughput: {} samples/s", shown(median))),
        "{text}"
    );
    let best_line = line_of(&text, "best checkpoint:").trim_start();
    let ckpt = best_line
        .trim_start_matches("best checkpoint: ")
        .split(" (")
        .next()
        .unwrap();
    assert!(Path::new(ckpt).is_file(), "{best_line}");
    assert!(
        best_line.ends_with(&format!("(val_loss {} at step {best_step})", shown(best))),
        "{best_line}"
    );
    let losses = logged(run, "train_loss");
    let values: Vec<f64> = losses.iter().map(|p| p.1).collect();
    let curve = line_of(&text, "train_loss ");
    let expected = format!(
        "min {:>10}  max {:>10}  last {:>10}  ({} points, steps {}-{})",
        shown(values.iter().copied().fold(f64::INFINITY, f64::min)),
        shown(values.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
        shown(*values.last().unwrap()),
        values.len(),
        losses[0].0,
        steps
    );
    assert!(curve.ends_with(&expected), "{curve}\nwanted {expected}");
    assert_eq!(
        curve.chars().filter(|c| ('▁'..='█').contains(c)).count(),
        values.len()
    );
}

#[test]
fn the_library_reads_the_same_scalars_as_the_event_reader() {
    let run = &runs().slow;
    let loaded = Run::load(run).unwrap();
    let direct = read_scalars(&run.join("tensorboard")).unwrap();
    assert_eq!(loaded.scalars, direct);
    assert!(loaded.overrides.iter().any(|o| o == "base_lr=0.0005"));
    assert_eq!(
        loaded.config_name.as_deref(),
        Some("train_fb_flow_matching")
    );
}

#[test]
fn the_config_diff_names_the_overridden_keys() {
    let run = &runs().fast;
    let text = stdout(&inspect(&[&format!("runs={}", s(run)), "tags=[val_loss]"]));
    assert!(
        text.contains("config diff against the shipped train_fb_flow_matching"),
        "{text}"
    );
    for (key, default, ours) in [
        ("base_lr", "0.0001", "0.002"),
        ("optimizer.lr", "0.0001", "0.002"),
        ("batch_size", "16", "4"),
        ("model.net.depth", "4", "1"),
    ] {
        let row: Vec<&str> = line_of(&text, &format!("{key} "))
            .split_whitespace()
            .collect();
        assert_eq!(row, [key, default, ours], "{text}");
    }
    assert!(
        !text.contains("\n    seed "),
        "seed was not overridden:\n{text}"
    );
    assert!(text.contains("  val_loss "), "{text}");
    assert!(
        !text.contains("  train_loss "),
        "tags limits the curves:\n{text}"
    );
}

#[test]
fn two_runs_compare_key_by_key_and_overlay_in_one_png() {
    let r = runs();
    let (out, dir) = inspect_in(&[
        &runs_arg(&[&r.slow, &r.fast]),
        "tags=[train_loss,val_loss]",
        "plot=true",
    ]);
    let text = stdout(&out);
    let run_dir = dir.path().join("out");
    let png = run_dir.join("curves.png");
    let table = &text[text
        .find("config keys that differ:")
        .expect("a config table")..];
    let header: Vec<&str> = line_of(table, "key").split_whitespace().collect();
    assert_eq!(header, ["key", "lr_slow", "lr_fast"]);
    let row: Vec<&str> = line_of(table, "base_lr ").split_whitespace().collect();
    assert_eq!(row, ["base_lr", "0.0005", "0.002"]);
    assert!(
        line_of(table, "optimizer.lr ").ends_with("0.002"),
        "{table}"
    );
    assert!(
        !table.contains("\n  batch_size "),
        "equal keys are not listed:\n{table}"
    );
    assert!(
        text.contains("colours: lr_slow = blue, lr_fast = orange"),
        "{text}"
    );
    let image = Image::decode_png(&std::fs::read(&png).expect("the PNG is written")).unwrap();
    assert_eq!((image.width(), image.height()), (WIDTH, 2 * PANEL_HEIGHT));
    for run in 0..2 {
        let rgb = colour(run).0;
        let count = image.pixels().chunks(3).filter(|p| *p == rgb).count();
        assert!(count > 200, "run {run}'s curve is drawn ({count} pixels)");
    }
    let summary = std::fs::read_to_string(run_dir.join("summary.md")).expect("summary.md");
    let printed = text
        .lines()
        .filter(|l| !l.starts_with("[inspect]"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        summary.contains(&printed),
        "summary.md holds what was printed:\n{summary}"
    );
    assert!(
        summary.contains("![scalar curves](curves.png)"),
        "{summary}"
    );
    let overrides =
        std::fs::read_to_string(run_dir.join(".hydra/overrides.yaml")).expect("the snapshot");
    assert!(overrides.contains("plot=true"), "{overrides}");
    let config = std::fs::read_to_string(run_dir.join(".hydra/config.yaml")).unwrap();
    assert!(config.contains(s(&r.fast)), "{config}");
}

#[test]
fn a_directory_that_is_not_a_run_is_named_with_what_is_missing_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (out, cwd) = inspect_in(&[&runs_arg(&[dir.path()])]);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "runs: {} is not a flowrun training run directory: .hydra/config.yaml is missing",
            dir.path().display()
        )),
        "{err}"
    );
    assert!(
        err.contains("hint: give a directory that `train` wrote"),
        "{err}"
    );
    assert!(
        !cwd.path().join("out").exists(),
        "no run directory for a failed check"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_mistyped_run_directory_gets_a_did_you_mean() {
    let run = &runs().slow;
    let typo = run.with_file_name("lr_slwo");
    let err = stderr(&inspect(&[&runs_arg(&[&typo])]));
    assert!(
        err.contains(&format!(
            "{} is not a flowrun training run directory: no such directory",
            typo.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("hint: did you mean {}?", run.display())),
        "{err}"
    );
}

#[test]
fn no_runs_says_what_to_type() {
    let err = stderr(&inspect(&[]));
    assert!(
        err.contains("runs: no run to inspect: runs is empty"),
        "{err}"
    );
    assert!(
        err.contains("hint: type: inspect runs=[outputs/<date>/<time>]"),
        "{err}"
    );
    assert_eq!(
        inspect(&[]).status.code(),
        Some(1),
        "a config error exits with 1"
    );
}

#[test]
fn the_run_directory_of_another_command_is_named_as_such() {
    let r = runs();
    let (out, dir) = inspect_in(&[&runs_arg(&[&r.slow])]);
    stdout(&out);
    let own = dir.path().join("out");
    let err = stderr(&inspect(&[&runs_arg(&[&own])]));
    assert!(
        err.contains(
            "tensorboard/ (the TensorBoard event directory) is missing (it is a run \
                      directory of `inspect`, not of `train`)"
        ),
        "{err}"
    );
}

#[test]
fn the_hydra_flags_work_as_for_train() {
    let run = &runs().slow;
    let shown = stdout(&inspect(&["--cfg", "job", &runs_arg(&[run]), "plot=true"]));
    assert!(shown.contains(&format!("- {}", s(run))), "{shown}");
    assert!(shown.contains("plot: true"), "{shown}");
    let help = stdout(&inspect(&["--help"]));
    assert!(help.starts_with("inspect (flowrun"), "{help}");
    assert!(help.contains("sparkline_width: 40"), "{help}");
    let info = stdout(&inspect(&["--info", "searchpath"]));
    assert!(info.contains("pkg://flowrun/conf"), "{info}");
    let typo = stderr(&inspect(&[&runs_arg(&[run]), "plto=true"]));
    assert!(typo.contains("plto"), "{typo}");
}

#[test]
fn a_run_without_event_files_and_an_unknown_tag_are_errors() {
    let run = &runs().slow;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("no_events");
    std::fs::create_dir_all(copy.join(".hydra")).unwrap();
    std::fs::create_dir_all(copy.join("tensorboard")).unwrap();
    std::fs::copy(
        run.join(".hydra/config.yaml"),
        copy.join(".hydra/config.yaml"),
    )
    .unwrap();
    let err = stderr(&inspect(&[&runs_arg(&[&copy])]));
    assert!(err.contains("no TensorBoard event files"), "{err}");
    assert!(err.contains(&copy.display().to_string()), "{err}");
    let err = stderr(&inspect(&[&runs_arg(&[run]), "tags=[val_los]"]));
    assert!(
        err.contains("tags: no run logged the scalar 'val_los'") && err.contains("train_loss"),
        "{err}"
    );
    assert!(err.contains("hint: did you mean tags=[val_loss]?"), "{err}");
}

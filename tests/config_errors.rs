//! Every kind of bad input gets a clear, short message and a non-zero exit, never a panic.

use std::path::Path;
use std::process::{Command, Output};

fn train_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .current_dir(cwd)
        .args(args)
        .env_remove("FLOWRUN_SETTINGS")
        .output()
        .unwrap()
}

/// Runs `train` in a fresh directory, asserts it failed cleanly, and returns its stderr.
fn fails(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    fails_in(dir.path(), args)
}

fn fails_in(cwd: &Path, args: &[&str]) -> String {
    let out = train_in(cwd, args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "expected failure for {args:?}, stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "panic for {args:?}: {stderr}"
    );
    assert!(
        stderr.starts_with("error: "),
        "unexpected stderr for {args:?}: {stderr}"
    );
    assert!(
        stderr.lines().count() <= 25,
        "error for {args:?} is too long:\n{stderr}"
    );
    stderr
}

fn assert_contains(text: &str, parts: &[&str]) {
    for p in parts {
        assert!(text.contains(p), "expected {p:?} in:\n{text}");
    }
}

#[test]
fn unknown_key_without_plus() {
    let e = fails(&["--cfg", "job", "batch_sise=3"]);
    assert_contains(
        &e,
        &[
            "Could not override 'batch_sise'",
            "+batch_sise=3",
            "did you mean batch_size",
        ],
    );
}

#[test]
fn plus_on_existing_key() {
    let e = fails(&["--cfg", "job", "+seed=1"]);
    assert_contains(
        &e,
        &["An item is already at 'seed'", "'seed=1'", "'++seed=1'"],
    );
}

#[test]
fn unknown_group_option_lists_options() {
    let e = fails(&["--cfg", "job", "trainer=multi-gpu"]);
    assert_contains(
        &e,
        &[
            "Could not find 'trainer/multi-gpu'",
            "cpu",
            "multi_gpu",
            "single_gpu",
            "did you mean trainer=multi_gpu",
        ],
    );
}

#[test]
fn malformed_override() {
    let e = fails(&["--cfg", "job", "seed"]);
    assert_contains(&e, &["Error parsing override 'seed'", "hint:"]);
    let e = fails(&["--cfg", "job", "seed=[1,2"]);
    assert_contains(&e, &["seed=[1,2"]);
}

fn write_conf(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    std::fs::write(dir.join("conf").join(name), text).unwrap();
}

#[test]
fn yaml_syntax_error_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write_conf(dir.path(), "broken.yaml", "a: 1\nb: [1, 2\nc: 3\n");
    let e = fails_in(
        dir.path(),
        &[
            "--config-path",
            "conf",
            "--config-name",
            "broken",
            "--cfg",
            "job",
        ],
    );
    assert_contains(&e, &["broken.yaml:"]);
}

#[test]
fn duplicate_yaml_key() {
    let dir = tempfile::tempdir().unwrap();
    write_conf(dir.path(), "dup.yaml", "lr: 0.1\nseed: 1\nlr: 0.2\n");
    let e = fails_in(
        dir.path(),
        &[
            "--config-path",
            "conf",
            "--config-name",
            "dup",
            "--cfg",
            "job",
        ],
    );
    assert_contains(&e, &["dup.yaml:3", "duplicate key", "lr"]);
}

#[test]
fn missing_primary_config_lists_available() {
    let e = fails(&["--config-name", "train_fb_flow_matchin", "--cfg", "job"]);
    assert_contains(
        &e,
        &[
            "Cannot find primary config 'train_fb_flow_matchin'",
            "train_fb_flow_matching",
            "train_hf_diffusion",
        ],
    );
}

#[test]
fn interpolation_to_missing_key() {
    let e = fails(&["--cfg", "job", "--resolve", "+tag=run_${sed}"]);
    assert_contains(&e, &["'sed' not found", "tag", "did you mean ${seed}"]);
}

#[test]
fn leftover_missing_values_are_all_listed() {
    let e = fails(&["seed=???", "data.num_scenes=???"]);
    assert_contains(
        &e,
        &[
            "2 mandatory value(s) are missing",
            "seed=<VALUE>",
            "data.num_scenes=<VALUE>",
        ],
    );
}

#[test]
fn type_mismatch_in_typed_section() {
    let e = fails(&["batch_size=abc"]);
    assert_contains(&e, &["batch_size", "abc", "batch_size=abc"]);
    let dir = tempfile::tempdir().unwrap();
    let e = fails_in(dir.path(), &["model.net.depth=two"]);
    assert_contains(&e, &["model.net.depth", "two"]);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "a failed check must not create a run directory"
    );
}

#[test]
fn unknown_target_lists_registry() {
    let e = fails(&["model.path._target_=flowrun.path.AffineProbPat"]);
    assert_contains(
        &e,
        &[
            "model.path",
            "flowrun.path.AffineProbPath",
            "flowrun.path.DiffusionPath",
        ],
    );
}

#[test]
fn sweep_without_multirun() {
    let e = fails(&["--cfg", "job", "base_lr=1e-4,1e-3"]);
    assert_contains(
        &e,
        &[
            "Ambiguous value for argument 'base_lr=1e-4,1e-3'",
            "--multirun",
        ],
    );
}

#[test]
fn bad_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = train_in(dir.path(), &["--cfg", "everything"]);
    assert_eq!(out.status.code(), Some(2));
    let out = train_in(
        dir.path(),
        &["--config-path", "/no/such/dir", "--cfg", "job"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such directory"));
}

/// `train --cfg job` in a fresh directory with one machine setting given by its variable.
fn cfg_job_with_setting(var: &str, value: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_train"))
        .current_dir(dir.path())
        .args(["--cfg", "job"])
        .env_remove("FLOWRUN_SETTINGS")
        .env(var, value)
        .output()
        .unwrap()
}

#[test]
fn the_fused_kernel_switch_is_a_machine_setting() {
    let run = |value: &str| cfg_job_with_setting("FLOWRUN_FUSED", value);
    for ok in ["0", "1", "false", "on"] {
        let out = run(ok);
        assert!(
            out.status.success(),
            "FLOWRUN_FUSED={ok}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run("maybe");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'fused'") && stderr.contains("maybe"),
        "{stderr}"
    );
}

#[test]
fn the_blas_choice_is_a_machine_setting_and_a_missing_library_is_refused() {
    let run = |value: &str| cfg_job_with_setting("FLOWRUN_BLAS", value);
    for ok in ["auto", "off", ""] {
        let out = run(ok);
        assert!(
            out.status.success(),
            "FLOWRUN_BLAS={ok}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run("/nonexistent/libcblas.so");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'blas'")
            && stderr.contains("/nonexistent/libcblas.so")
            && stderr.contains("blas=off"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

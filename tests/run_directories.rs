//! Run and sweep directories: fresh per job, never reused, with a complete `.hydra/` snapshot;
//! `--cfg`, `--info` and `--help` never create anything and work from any directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `train`; runs that would train get `trainer.max_steps=0`, since these tests are about the
/// run directory, not training.
fn train(cwd: &Path, args: &[&str]) -> Output {
    let prints = args.iter().any(|a| {
        a.starts_with("--cfg") || a.starts_with("--info") || *a == "--help" || *a == "--version"
    });
    let out = Command::new(env!("CARGO_BIN_EXE_train"))
        .current_dir(cwd)
        .args(args)
        .args((!prints).then_some("trainer.max_steps=0"))
        .env_remove("FLOWRUN_SETTINGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "train {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn printing_commands_work_anywhere_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = train(
        dir.path(),
        &["--config-name=train_fb_flow_matching", "--cfg", "job"],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("sampling_steps: 20"));
    let help = String::from_utf8_lossy(&train(dir.path(), &["--help"]).stdout).to_string();
    for needle in [
        "== Configuration groups ==",
        "trainer: cpu, ddp_cpu, multi_gpu, single_gpu",
        "sampler: ddim, ddpm, dopri5, euler, midpoint, rk4",
        "experiment: baseline, cpu, fast, improved",
        "== Config ==",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    for topic in ["all", "defaults", "defaults-tree", "searchpath", "config"] {
        train(dir.path(), &["--info", topic]);
    }
    train(dir.path(), &["--cfg", "hydra", "--resolve"]);
    train(dir.path(), &["--cfg", "all", "-p", "model.path"]);
    assert!(
        entries(dir.path()).is_empty(),
        "printing commands created {:?}",
        entries(dir.path())
    );
}

#[test]
fn a_run_writes_its_snapshot_and_never_reuses_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["hydra.run.dir=out/fixed", "batch_size=16", "path=cosine"];
    train(dir.path(), &args);
    train(dir.path(), &args);
    let runs = entries(&dir.path().join("out"));
    assert_eq!(
        runs.iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect::<Vec<_>>(),
        ["fixed", "fixed_1"]
    );
    let hydra_dir = runs[0].join(".hydra");
    let names: Vec<String> = entries(&hydra_dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "config.unresolved.yaml",
            "config.yaml",
            "hydra.yaml",
            "overrides.yaml"
        ]
    );
    let config = std::fs::read_to_string(hydra_dir.join("config.yaml")).unwrap();
    let resolved = String::from_utf8_lossy(
        &train(
            dir.path(),
            &[
                "--cfg",
                "job",
                "--resolve",
                "batch_size=16",
                "path=cosine",
                "trainer.max_steps=0",
            ],
        )
        .stdout,
    )
    .to_string();
    let strip_now = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("cache_dir"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip_now(&config), strip_now(&resolved));
    let overrides = std::fs::read_to_string(hydra_dir.join("overrides.yaml")).unwrap();
    assert_eq!(
        overrides,
        "- batch_size=16\n- path=cosine\n- trainer.max_steps=0\n"
    );
    let hydra = std::fs::read_to_string(hydra_dir.join("hydra.yaml")).unwrap();
    for needle in [
        "choices:",
        "path: cosine",
        "task:",
        "- batch_size=16",
        "name: train",
        "version: flowrun",
        "output_dir:",
    ] {
        assert!(
            hydra.contains(needle),
            "hydra.yaml lacks {needle:?}:\n{hydra}"
        );
    }
    let unresolved = std::fs::read_to_string(hydra_dir.join("config.unresolved.yaml")).unwrap();
    assert!(unresolved.contains("${base_lr}"));
}

#[test]
fn default_run_dir_is_dated() {
    let dir = tempfile::tempdir().unwrap();
    train(dir.path(), &[]);
    let days = entries(&dir.path().join("outputs"));
    assert_eq!(days.len(), 1);
    let day = days[0].file_name().unwrap().to_string_lossy().to_string();
    assert_eq!(day.len(), 10, "expected YYYY-MM-DD, got {day}");
    let times = entries(&days[0]);
    assert!(times[0].join(".hydra/config.yaml").is_file());
}

#[test]
fn multirun_expands_sweeps_into_numbered_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let out = train(
        dir.path(),
        &[
            "-m",
            "hydra.sweep.dir=sweep",
            "base_lr=1e-4,1e-3",
            "sampler=glob(mid*)",
            "seed=range(1,3)",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("Launching 4 jobs"), "{stdout}");
    assert!(
        stdout.contains("#0 : hydra.sweep.dir=sweep base_lr=0.0001 sampler=midpoint seed=1"),
        "{stdout}"
    );
    let sweep = dir.path().join("sweep");
    let names: Vec<String> = entries(&sweep)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, ["0", "1", "2", "3", "multirun.yaml"]);
    let job3 = std::fs::read_to_string(sweep.join("3/.hydra/config.yaml")).unwrap();
    assert!(
        job3.contains("base_lr: 0.001") && job3.contains("seed: 2"),
        "{job3}"
    );
    let hydra3 = std::fs::read_to_string(sweep.join("3/.hydra/hydra.yaml")).unwrap();
    assert!(
        hydra3.contains("num: 3") && hydra3.contains("mode: MULTIRUN"),
        "{hydra3}"
    );
}

#[test]
fn config_dir_adds_and_replaces_shipped_configs() {
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join("my_conf");
    std::fs::create_dir_all(user.join("trainer")).unwrap();
    std::fs::write(user.join("trainer/cluster.yaml"), "_target_: flowrun.train.Trainer\naccelerator: cpu\ndevices: 1\nnum_nodes: 1\nstrategy: auto\nprecision: 32\nmax_epochs: 3\nmax_steps: null\ngradient_clip_val: 1.0\naccumulate_grad_batches: 1\ncheck_val_every_n_epoch: 1\nval_check_interval: null\nlog_every_n_steps: 1\n").unwrap();
    std::fs::write(
        user.join("trainer/cpu.yaml"),
        "_target_: flowrun.train.Trainer\naccelerator: cpu\nlog_every_n_steps: 7\n",
    )
    .unwrap();
    let out = train(
        dir.path(),
        &["--config-dir", "my_conf", "--cfg", "job", "trainer=cluster"],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("max_epochs: 3"));
    let out = train(
        dir.path(),
        &[
            "-cd",
            "my_conf",
            "--cfg",
            "job",
            "-p",
            "trainer",
            "trainer=cpu",
        ],
    );
    // The primary config's own trainer keys (its CPU-sized step budget) merge over the group.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "# @package trainer\n_target_: flowrun.train.Trainer\naccelerator: cpu\nlog_every_n_steps: 7\nmax_steps: 1500\ncheck_val_every_n_epoch: 2\n");
    let help = String::from_utf8_lossy(&train(dir.path(), &["-cd", "my_conf", "--help"]).stdout)
        .to_string();
    assert!(
        help.contains("trainer: cluster, cpu, ddp_cpu, multi_gpu, single_gpu"),
        "{help}"
    );
}

#[test]
fn machine_settings_move_the_outputs_root_below_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("settings.toml");
    std::fs::write(
        &settings,
        "outputs_root = \"from_file\"\ndata_root = \"/data/namo_root\"\n",
    )
    .unwrap();
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_train"));
        cmd.current_dir(dir.path())
            .env("FLOWRUN_SETTINGS", &settings)
            .args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let no_steps = "trainer.max_steps=0";
    run(&[no_steps], &[]);
    assert!(dir.path().join("from_file").is_dir());
    run(&[no_steps], &[("FLOWRUN_OUTPUTS_ROOT", "from_env")]);
    assert!(dir.path().join("from_env").is_dir());
    run(
        &["hydra.run.dir=from_cli", no_steps],
        &[("FLOWRUN_OUTPUTS_ROOT", "from_env")],
    );
    assert!(dir.path().join("from_cli/.hydra").is_dir());
    let cfg = run(&["--cfg", "job", "--resolve", "data=namo_npz"], &[]);
    assert!(cfg.contains("data_dir: /data/namo_root/namo"), "{cfg}");
    let out = Command::new(env!("CARGO_BIN_EXE_train"))
        .current_dir(dir.path())
        .env("FLOWRUN_OUTPUT_ROOT", "x")
        .args(["--cfg", "job"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown flowrun setting 'output_root'"));
}

#[test]
fn version_and_multirun_cfg_print_without_running() {
    let dir = tempfile::tempdir().unwrap();
    let v = String::from_utf8_lossy(&train(dir.path(), &["--version"]).stdout).to_string();
    assert!(v.starts_with("train (flowrun) "), "{v}");
    let cfg = String::from_utf8_lossy(
        &train(dir.path(), &["-m", "--cfg", "job", "base_lr=1e-4,1e-3"]).stdout,
    )
    .to_string();
    assert!(cfg.contains("base_lr: 0.0001"), "{cfg}");
    assert!(entries(dir.path()).is_empty());
}

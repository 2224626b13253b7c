//! Benchmark: the wall time of `train --cfg job` on the shipped config tree (process start
//! included), against Hydra 1.3.8's 567 ms median for the same job on the reference machine,
//! plus the in-process cost of composing and resolving.
//!
//! Run with `just bench-config` (or `cargo bench --bench config_compose`).

use flowrun::cli::args::CommandArgs;
use flowrun::cli::build_repository;
use flowrun::config::loader::{parse_overrides, ConfigLoader, RunMode};
use flowrun::config::machine::MachineSettings;
use std::process::Command;
use std::time::{Duration, Instant};

/// Hydra 1.3.8's median wall time for `--cfg job` on the shipped tree (from the issue).
const HYDRA_MEDIAN_MS: f64 = 567.0;
/// The target: 1/100 of Hydra.
const TARGET_MS: f64 = 5.0;

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn main() {
    let exe = env!("CARGO_BIN_EXE_train");
    let dir = std::env::temp_dir();
    let cases: &[(&str, &[&str])] = &[
        ("--cfg job (defaults)", &["--cfg", "job"]),
        (
            "--cfg job --resolve, README overrides",
            &[
                "--cfg",
                "job",
                "--resolve",
                "trainer=multi_gpu",
                "batch_size=128",
                "model.sampler.method=dopri5",
            ],
        ),
        (
            "--cfg job, +experiment=fast",
            &["--cfg", "job", "+experiment=fast"],
        ),
    ];
    println!("train --cfg job: wall time per process (median of 60 runs, 5 warm-up)");
    for (label, args) in cases {
        for _ in 0..5 {
            Command::new(exe)
                .current_dir(&dir)
                .args(*args)
                .output()
                .unwrap();
        }
        let times: Vec<Duration> = (0..60)
            .map(|_| {
                let t = Instant::now();
                let out = Command::new(exe)
                    .current_dir(&dir)
                    .args(*args)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                t.elapsed()
            })
            .collect();
        let ms = median(times);
        println!(
            "  {label:<42} {ms:7.2} ms   target <= {TARGET_MS} ms: {}   Hydra 1.3.8 {HYDRA_MEDIAN_MS} ms -> {:.0}x faster",
            if ms <= TARGET_MS { "met" } else { "MISSED" },
            HYDRA_MEDIAN_MS / ms
        );
    }
    let args = CommandArgs {
        config_path: None,
        config_name: None,
        config_dir: Vec::new(),
        cfg: None,
        resolve: false,
        package: None,
        info: None,
        multirun: false,
        help: false,
        version: false,
        overrides: Vec::new(),
    };
    let overrides = parse_overrides(
        &[
            "trainer=multi_gpu".to_string(),
            "batch_size=128".to_string(),
        ],
        RunMode::Run,
    )
    .unwrap();
    let times: Vec<Duration> = (0..500)
        .map(|_| {
            let t = Instant::now();
            let loader = ConfigLoader::new(
                build_repository(&args).unwrap(),
                MachineSettings::default(),
                "train",
            );
            let composed = loader
                .compose("train_fb_flow_matching", &overrides, RunMode::Run)
                .unwrap();
            loader.resolve(&composed, "").unwrap();
            t.elapsed()
        })
        .collect();
    println!(
        "in-process compose + resolve (median of 500): {:.3} ms",
        median(times)
    );
}

//! `evaluate` on tiny trained runs: the evaluation counts in its table and `eval.csv` equal the
//! samplers' own statistics, the plot is written, diffusion runs take DDIM and DDPM, and bad
//! sweeps (unknown sampler, sampler invalid for the path, steps ≤ 0, no checkpoint) fail clearly.

#[path = "support/tiny_run.rs"]
mod tiny_run;

use flowrun::cli::evaluate::sampler_settings;
use flowrun::cli::trained::{draw_samples, load_trained};
use flowrun::config::schema::TrainedSource;
use flowrun::telemetry::Image;
use std::collections::BTreeMap;
use std::path::Path;
use tiny_run::{run, text, train};

fn evaluate(cwd: &Path, run_dir: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        format!("run_dir={}", run_dir.display()),
        format!("hydra.run.dir={}", out.display()),
        "num_scenes=2".to_string(),
        "num_samples=2".to_string(),
        "seed=3".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    run(env!("CARGO_BIN_EXE_evaluate"), cwd, &args)
}

/// `eval.csv` as (sampler, steps) -> column -> value.
fn read_csv(path: &Path) -> BTreeMap<(String, usize), BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).expect("eval.csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    lines
        .map(|line| {
            let cells: BTreeMap<String, String> = header
                .iter()
                .zip(line.split(','))
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect();
            let key = (cells["sampler"].clone(), cells["steps"].parse().unwrap());
            (key, cells)
        })
        .collect()
}

#[test]
fn evaluation_counts_equal_the_samplers_own_statistics() {
    let root = tempfile::tempdir().expect("tempdir");
    let trained = train(root.path(), "run", &[]);
    let out_dir = root.path().join("eval");
    let out = evaluate(
        root.path(),
        &trained,
        &out_dir,
        &["samplers=[euler,midpoint,rk4,dopri5]", "steps=[2,5]"],
    );
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("| sampler | steps | NFE |"), "{shown}");
    assert!(shown.contains("| euler | 5 | 5 |"), "{shown}");
    assert!(shown.contains("| midpoint | 5 | 10 |"), "{shown}");
    let rows = read_csv(&out_dir.join("eval.csv"));
    assert_eq!(rows.len(), 8);
    for (per_step, name) in [(1, "euler"), (2, "midpoint"), (4, "rk4")] {
        for steps in [2, 5] {
            let nfe: usize = rows[&(name.to_string(), steps)]["nfe"].parse().unwrap();
            assert_eq!(nfe, per_step * steps, "{name} with {steps} steps");
        }
    }
    let source = TrainedSource {
        run_dir: Some(trained.display().to_string()),
        ckpt_path: None,
        use_ema: true,
        data_dir: None,
        num_scenes: 2,
        num_samples: 2,
        seed: 3,
    };
    let loaded = load_trained(&source).expect("the run loads");
    let scenes = loaded.scenes(None, 2).expect("scenes");
    for steps in [2, 5] {
        let plan = loaded
            .plan(&sampler_settings("dopri5", steps).unwrap())
            .expect("plan");
        let stats = draw_samples(&loaded.module, &scenes, &plan, 2, 3)
            .expect("samples")
            .stats;
        let nfe: usize = rows[&("dopri5".to_string(), steps)]["nfe"].parse().unwrap();
        assert_eq!(nfe, stats.nfe, "dopri5 with {steps} steps");
    }
    for cells in rows.values() {
        for column in ["iou", "best_of_k_iou", "validity_rate", "mode_coverage"] {
            let v: f64 = cells[column].parse().unwrap_or_else(|_| panic!("{column}"));
            assert!((0.0..=1.0).contains(&v), "{column} = {v}");
        }
        let iou: f64 = cells["iou"].parse().unwrap();
        let best: f64 = cells["best_of_k_iou"].parse().unwrap();
        assert!(best >= iou - 1e-9, "best-of-k IoU {best} < mean IoU {iou}");
    }
    let png = std::fs::read(out_dir.join("eval.png")).expect("eval.png");
    let image = Image::decode_png(&png).expect("decodes");
    assert_eq!((image.width(), image.height()), (640, 400));
}

#[test]
fn diffusion_runs_take_ddim_and_ddpm() {
    let root = tempfile::tempdir().expect("tempdir");
    let trained = train(
        root.path(),
        "diffusion",
        &["--config-name", "train_hf_diffusion"],
    );
    let out_dir = root.path().join("eval");
    let out = evaluate(
        root.path(),
        &trained,
        &out_dir,
        &["samplers=[ddim,ddpm,euler]", "steps=[3]"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let rows = read_csv(&out_dir.join("eval.csv"));
    for name in ["ddim", "ddpm", "euler"] {
        assert_eq!(rows[&(name.to_string(), 3)]["nfe"], "3", "{name}");
    }
}

#[test]
fn bad_sweeps_fail_with_the_options() {
    let root = tempfile::tempdir().expect("tempdir");
    let trained = train(root.path(), "run", &[]);
    let out_dir = root.path().join("eval");
    let fails = |run_dir: &Path, extra: &[&str]| {
        let out = evaluate(root.path(), run_dir, &out_dir, extra);
        assert!(!out.status.success());
        text(&out)
    };
    let e = fails(&trained, &["samplers=[euler,heun]"]);
    assert!(
        e.contains("samplers[1] is 'heun', an unknown sampler"),
        "{e}"
    );
    assert!(e.contains("command-line override"), "{e}");
    assert!(
        e.contains("euler, midpoint, rk4, dopri5, ddim, ddpm"),
        "{e}"
    );
    let e = fails(&trained, &["samplers=[euler,ddpm]"]);
    assert!(
        e.contains("sampler 'ddpm' is not valid for this run"),
        "{e}"
    );
    assert!(
        e.contains("valid samplers for it: euler, midpoint, rk4, dopri5"),
        "{e}"
    );
    let e = fails(&trained, &["steps=[5,0]"]);
    assert!(
        e.contains("steps[1] is 0") && e.contains("at least 1"),
        "{e}"
    );
    let e = fails(&trained, &["steps=[-2]"]);
    assert!(e.contains("steps[0] is -2"), "{e}");
    std::fs::remove_dir_all(trained.join("checkpoints")).unwrap();
    let e = fails(&trained, &[]);
    assert!(e.contains("holds no checkpoint"), "{e}");
}

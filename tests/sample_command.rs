//! `sample` on a tiny trained run: the PNG grids and `.npz` files it writes, determinism for a
//! seed, and the errors of a run without checkpoints, a checkpoint of another network, an
//! unknown sampler, a sampler invalid for the path and a step count of 0.

#[path = "support/tiny_run.rs"]
mod tiny_run;

use flowrun::data::npy::{decode_npy, read_member};
use flowrun::data::scene::{CONTEXT_KEYS, TARGET_KEY};
use flowrun::telemetry::Image;
use std::path::{Path, PathBuf};
use tiny_run::{run, text, train};

fn sample(cwd: &Path, run_dir: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        format!("run_dir={}", run_dir.display()),
        format!("hydra.run.dir={}", out.display()),
        "num_scenes=2".to_string(),
        "num_samples=3".to_string(),
        "sampling_steps=3".to_string(),
        "use_ema=false".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    run(env!("CARGO_BIN_EXE_sample"), cwd, &args)
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("output directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    found.sort();
    found
}

fn member(path: &Path, key: &str) -> (Vec<usize>, Vec<f32>) {
    let file = std::fs::File::open(path).expect("npz opens");
    let mut archive = zip::ZipArchive::new(file).expect("npz is a zip");
    let bytes = read_member(&mut archive, &format!("{key}.npy")).expect("member");
    let array = decode_npy(&bytes).expect("npy");
    (array.shape.clone(), array.values.to_f32())
}

#[test]
fn sample_writes_grids_and_npz_and_is_deterministic_for_a_seed() {
    let root = tempfile::tempdir().expect("tempdir");
    let trained = train(root.path(), "run", &[]);
    let first = root.path().join("s1");
    let out = sample(root.path(), &trained, &first, &["seed=7", "sampler=rk4"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("sampler rk4 with 3 steps"),
        "{}",
        text(&out)
    );
    assert!(first.join(".hydra/config.yaml").is_file());
    let npz = files(&first, "npz");
    let png = files(&first, "png");
    assert_eq!((npz.len(), png.len()), (2, 2));
    for p in &png {
        let image = Image::decode_png(&std::fs::read(p).expect("png")).expect("decodes");
        assert!(image.width() > 0 && image.height() > 0);
    }
    for key in CONTEXT_KEYS.iter().chain([&TARGET_KEY]) {
        let (shape, _) = member(&npz[0], key);
        assert_eq!(shape, [16, 16], "{key}");
    }
    let (shape, values) = member(&npz[0], "generated_goal");
    assert_eq!(shape, [3, 16, 16]);
    assert_eq!(values.len(), 3 * 16 * 16);

    let again = root.path().join("s2");
    let out = sample(root.path(), &trained, &again, &["seed=7", "sampler=rk4"]);
    assert!(out.status.success(), "{}", text(&out));
    for (a, b) in npz.iter().zip(files(&again, "npz")) {
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(&b).unwrap());
    }
    let other = root.path().join("s3");
    let out = sample(root.path(), &trained, &other, &["seed=8", "sampler=rk4"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(
        member(&npz[0], "generated_goal").1,
        member(&files(&other, "npz")[0], "generated_goal").1,
        "another seed draws other samples"
    );

    let from_ckpt = root.path().join("s4");
    let ckpt = trained.join("checkpoints/last.ckpt");
    let scenes = std::fs::read_dir(root.path().join("cache"))
        .expect("scene cache")
        .map(|e| e.expect("entry").path())
        .find(|p| p.is_dir())
        .expect("the synthetic scenes' folder");
    let out = run(
        env!("CARGO_BIN_EXE_sample"),
        root.path(),
        &[
            format!("ckpt_path={}", ckpt.display()),
            format!("hydra.run.dir={}", from_ckpt.display()),
            format!("data_dir={}", scenes.display()),
            "num_scenes=1".to_string(),
            "num_samples=2".to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(files(&from_ckpt, "npz").len(), 1);
    assert_eq!(
        member(&files(&from_ckpt, "npz")[0], "generated_goal").0,
        [2, 16, 16]
    );
}

#[test]
fn sample_errors_name_the_problem_and_the_fix() {
    let root = tempfile::tempdir().expect("tempdir");
    let trained = train(root.path(), "run", &[]);
    let other = train(root.path(), "other", &["model.net.hidden_size=16"]);
    let out_dir = root.path().join("out");
    let fails = |run_dir: &Path, extra: &[&str]| {
        let out = sample(root.path(), run_dir, &out_dir, extra);
        assert!(!out.status.success());
        text(&out)
    };

    let empty = root.path().join("empty");
    std::fs::create_dir_all(empty.join(".hydra")).unwrap();
    std::fs::copy(
        trained.join(".hydra/config.yaml"),
        empty.join(".hydra/config.yaml"),
    )
    .unwrap();
    let e = fails(&empty, &[]);
    assert!(e.contains("holds no checkpoint"), "{e}");
    assert!(e.contains("ckpt_path="), "{e}");

    let foreign = other.join("checkpoints/last.ckpt");
    let e = fails(&trained, &[&format!("ckpt_path={}", foreign.display())]);
    assert!(e.contains("does not match the config"), "{e}");

    let e = fails(&trained, &["sampler=heun"]);
    assert!(e.contains("sampler/heun"), "{e}");
    assert!(e.contains("dopri5") && e.contains("midpoint"), "{e}");

    let e = fails(&trained, &["sampler=ddim"]);
    assert!(e.contains("not valid for this run"), "{e}");
    assert!(e.contains("euler, midpoint, rk4, dopri5"), "{e}");

    let e = fails(&trained, &["sampling_steps=0"]);
    assert!(
        e.contains("sampling_steps") && e.contains("at least 1"),
        "{e}"
    );
}

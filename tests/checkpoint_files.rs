//! Checkpoint files on disk: the write/load round trip of tensors and metadata, clear errors for
//! missing, foreign, corrupt, truncated and too-new files, atomic writes that leave the previous
//! file whole when the disk fills up, and the refusal of a resume whose model changed.

use candle_core::{DType, Device, Tensor, Var};
use flowrun::config::node::Node;
use flowrun::config::yaml::load_str;
use flowrun::rng::Rng;
use flowrun::train::checkpoint::compat::check_resume_yaml;
use flowrun::train::checkpoint::policy::ScoredCheckpoint;
use flowrun::train::checkpoint::{
    load_checkpoint, read_meta, resolve_ckpt_path, write_checkpoint, Checkpoint, CheckpointError,
    CheckpointMeta, SaveReason, CHECKPOINT_DIR, LAST_FILE,
};
use flowrun::train::early_stopping::EarlyStoppingState;
use flowrun::train::lr::{LrDecay, LrSchedule};
use flowrun::train::optim::{AdamW, AdamWConfig};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

const CONFIG: &str = "seed: 7\nbatch_size: 4\nmodel:\n  net:\n    hidden_size: 32\n    depth: 2\n\
                      data:\n  subset: null\ntrainer:\n  max_steps: 100\n";

/// A checkpoint of a real AdamW after one update, with every metadata field set.
fn sample_checkpoint(step: u64, width: usize) -> (Checkpoint, AdamW) {
    let cpu = Device::Cpu;
    let mut rng = Rng::new(3);
    let w = Var::from_tensor(&rng.randn((width, 3), &cpu).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::zeros(3, DType::F32, &cpu).unwrap()).unwrap();
    let params = vec![
        ("blocks.0.attn.qkv.weight".to_string(), w.clone()),
        ("blocks.0.attn.qkv.bias".to_string(), b.clone()),
    ];
    let mut optim = AdamW::new(params, AdamWConfig::default()).unwrap();
    let grads = HashMap::from([
        (
            "blocks.0.attn.qkv.weight".to_string(),
            w.ones_like().unwrap(),
        ),
        ("blocks.0.attn.qkv.bias".to_string(), b.ones_like().unwrap()),
    ]);
    optim.step_with(&grads).unwrap();
    let mut meta = CheckpointMeta::new(step, 2, CONFIG);
    meta.batches_seen_in_epoch = 5;
    meta.rng = BTreeMap::from([
        ("data".to_string(), rng.state()),
        ("noise".into(), [1, 2, 3, u64::MAX]),
    ]);
    meta.data_sampler = serde_json::json!({"epoch": 2, "cursor": 20, "order_seed": 11});
    meta.lr_schedule = Some(LrSchedule {
        decay: LrDecay::Cosine,
        peak_lr: 1e-4,
        warmup_steps: 10,
        total_steps: 100,
        min_lr_ratio: 0.0,
    });
    meta.checkpoint_policy.best.push(ScoredCheckpoint {
        file: "epoch001-val_loss0.1234.ckpt".into(),
        score: 0.1234,
        step: 40,
        epoch: 1,
    });
    meta.checkpoint_policy.last_saved_step = Some(step);
    meta.early_stopping = Some(EarlyStoppingState {
        best: Some(0.1234),
        best_step: Some(40),
        wait_count: 1,
    });
    meta.nan_guard.skipped_total = 2;
    meta.saved_as = SaveReason::TopK {
        score: 0.1234,
        rank: 1,
    };
    meta.best_scores = BTreeMap::from([("val_loss".to_string(), 0.1234)]);
    let model = HashMap::from([
        (
            "blocks.0.attn.qkv.weight".to_string(),
            w.as_tensor().clone(),
        ),
        ("blocks.0.attn.qkv.bias".to_string(), b.as_tensor().clone()),
    ]);
    let ema = HashMap::from([(
        "blocks.0.attn.qkv.weight".to_string(),
        (w.as_tensor() * 0.5).unwrap(),
    )]);
    let ckpt = Checkpoint {
        model,
        ema,
        optim: optim.state_tensors().unwrap(),
        meta,
    };
    (ckpt, optim)
}

fn bits(t: &Tensor) -> Vec<u8> {
    let t = t.flatten_all().unwrap();
    match t.dtype() {
        DType::F32 => t
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::I64 => t
            .to_vec1::<i64>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::F64 => t
            .to_vec1::<f64>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        other => panic!("unexpected dtype {other:?}"),
    }
}

fn same_tensors(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) {
    let mut ka: Vec<_> = a.keys().collect();
    let mut kb: Vec<_> = b.keys().collect();
    ka.sort();
    kb.sort();
    assert_eq!(ka, kb);
    for (k, t) in a {
        assert_eq!(t.dims(), b[k].dims(), "{k}");
        assert_eq!(t.dtype(), b[k].dtype(), "{k}");
        assert_eq!(bits(t), bits(&b[k]), "{k}");
    }
}

fn write_sample(dir: &Path, name: &str, step: u64) -> (PathBuf, Checkpoint) {
    let path = dir.join(name);
    let (ckpt, _) = sample_checkpoint(step, 4);
    write_checkpoint(&path, &ckpt).unwrap();
    (path, ckpt)
}

#[test]
fn tensors_and_metadata_round_trip_and_restore_the_optimizer() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, optim) = sample_checkpoint(41, 4);
    let path = dir.path().join(LAST_FILE);
    write_checkpoint(&path, &ckpt).unwrap();
    let back = load_checkpoint(&path, &Device::Cpu).unwrap();
    same_tensors(&ckpt.model, &back.model);
    same_tensors(&ckpt.ema, &back.ema);
    same_tensors(&ckpt.optim, &back.optim);
    assert_eq!(back.meta, ckpt.meta);
    assert_eq!(read_meta(&path).unwrap(), ckpt.meta);

    let (_, mut fresh) = sample_checkpoint(0, 4);
    fresh.load_state(&back.optim).unwrap();
    same_tensors(
        &fresh.state_tensors().unwrap(),
        &optim.state_tensors().unwrap(),
    );
    assert_eq!(fresh.step_count(), optim.step_count());

    // The names are PyTorch state_dict names under their namespace, readable by any
    // safetensors reader.
    let raw = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    assert!(raw.contains_key("model.blocks.0.attn.qkv.weight"));
    assert!(raw.contains_key("ema.blocks.0.attn.qkv.weight"));
    assert!(raw.keys().any(|k| k.starts_with("optim.")));
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary files are left behind");
}

#[test]
fn a_missing_file_suggests_what_to_resume_instead() {
    let run = tempfile::tempdir().unwrap();
    let ckpts = run.path().join(CHECKPOINT_DIR);
    std::fs::create_dir(&ckpts).unwrap();
    write_sample(&ckpts, "step100.ckpt", 100);
    let wanted = ckpts.join("step200.ckpt");
    let err = load_checkpoint(&wanted, &Device::Cpu).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, CheckpointError::NotFound { .. }), "{text}");
    assert!(text.contains(&wanted.display().to_string()), "{text}");
    assert!(text.contains("step100.ckpt"), "{text}");
    let err = resolve_ckpt_path("last", Some(run.path())).unwrap_err();
    assert!(
        err.to_string().contains("last.ckpt does not exist"),
        "{err}"
    );
    write_sample(&ckpts, LAST_FILE, 120);
    let last = resolve_ckpt_path("last", Some(run.path())).unwrap();
    assert_eq!(read_meta(&last).unwrap().step, 120);
}

#[test]
fn foreign_files_are_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("config.yaml");
    std::fs::write(&text, "model:\n  net: dit\n").unwrap();
    let err = load_checkpoint(&text, &Device::Cpu).unwrap_err();
    assert!(
        matches!(err, CheckpointError::NotSafetensors { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("config.yaml is not a flowrun checkpoint"),
        "{err}"
    );

    let weights = dir.path().join("model.safetensors");
    let t = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&HashMap::from([("w".to_string(), t)]), &weights).unwrap();
    let err = read_meta(&weights).unwrap_err();
    assert!(matches!(err, CheckpointError::NotFlowrun { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("safetensors file but not a flowrun checkpoint"),
        "{err}"
    );
}

#[test]
fn corrupt_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_sample(dir.path(), LAST_FILE, 5);
    let good = std::fs::read(&path).unwrap();

    let mut flipped = good.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x40;
    std::fs::write(&path, &flipped).unwrap();
    let err = load_checkpoint(&path, &Device::Cpu).unwrap_err();
    assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("does not match the hash"), "{err}");

    let mut bad_header = good.clone();
    bad_header[9] = b'#';
    std::fs::write(&path, &bad_header).unwrap();
    let err = load_checkpoint(&path, &Device::Cpu).unwrap_err();
    assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains("header is not valid JSON"),
        "{err}"
    );

    let mut longer = good.clone();
    longer.extend_from_slice(b"junk");
    std::fs::write(&path, &longer).unwrap();
    let err = load_checkpoint(&path, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("4 unexpected bytes"), "{err}");
}

#[test]
fn truncated_files_say_so_and_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_sample(dir.path(), LAST_FILE, 5);
    let good = std::fs::read(&path).unwrap();
    for keep in [good.len() - 10, 40, 3, 0] {
        std::fs::write(&path, &good[..keep]).unwrap();
        for err in [
            load_checkpoint(&path, &Device::Cpu).unwrap_err(),
            read_meta(&path).unwrap_err(),
        ] {
            assert!(
                matches!(err, CheckpointError::Truncated { .. }),
                "{keep}: {err}"
            );
            let text = err.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains("is truncated"), "{text}");
        }
    }
}

#[test]
fn a_newer_format_version_is_refused_with_the_versions() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ckpt, _) = sample_checkpoint(1, 4);
    ckpt.meta.format_version = 99;
    let path = dir.path().join("future.ckpt");
    write_checkpoint(&path, &ckpt).unwrap();
    let err = load_checkpoint(&path, &Device::Cpu).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            CheckpointError::UnsupportedVersion {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{text}"
    );
    assert!(text.contains("newer flowrun"), "{text}");
}

const CHILD_ENV: &str = "FLOWRUN_CKPT_FULL_DISK_DIR";

/// Overwrites `last.ckpt` with a much larger checkpoint while the file-size limit is tiny, as a
/// full disk would stop the write halfway.
#[test]
#[ignore = "run by a_failed_write_leaves_the_previous_file_whole under a file-size limit"]
fn child_writes_past_the_file_size_limit() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (big, _) = sample_checkpoint(999, 4096);
    match write_checkpoint(&Path::new(&dir).join(LAST_FILE), &big) {
        Ok(()) => println!("write succeeded"),
        Err(e) => println!("write failed: {e}"),
    }
}

#[test]
fn a_failed_write_leaves_the_previous_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (path, small) = write_sample(dir.path(), LAST_FILE, 10);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size < 16 * 1024, "the first checkpoint must fit the limit");
    // dash's ulimit -f counts 512-byte blocks; an ignored SIGXFSZ stays ignored across exec,
    // so the oversized write fails with EFBIG instead of killing the process.
    let out = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 64; exec \"$0\" --exact child_writes_past_the_file_size_limit --ignored --nocapture")
        .arg(std::env::current_exe().unwrap())
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("write failed: could not write checkpoint"),
        "{stdout}"
    );
    assert!(stdout.contains(&path.display().to_string()), "{stdout}");
    assert!(
        stdout.contains("previous file at that path (if any) is untouched"),
        "{stdout}"
    );
    let back = load_checkpoint(&path, &Device::Cpu).unwrap();
    assert_eq!(back.meta, small.meta);
    same_tensors(&back.model, &small.model);
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(left, [LAST_FILE], "the temporary file is removed");
}

fn job(text: &str) -> Node {
    load_str(text, &Arc::from("new.yaml")).unwrap().unwrap()
}

#[test]
fn resuming_with_a_changed_model_is_refused_with_the_diff() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_sample(dir.path(), LAST_FILE, 10);
    let stored = read_meta(&path).unwrap().config_yaml;
    let changed = CONFIG
        .replace("hidden_size: 32", "hidden_size: 64")
        .replace("max_steps: 100", "max_steps: 200");
    let err = check_resume_yaml(&stored, &job(&changed)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("  model.net.hidden_size: 32 → 64"), "{text}");
    assert!(
        !text.contains("max_steps"),
        "allowed changes are not refused: {text}"
    );
    let allowed = check_resume_yaml(
        &stored,
        &job(&CONFIG.replace("max_steps: 100", "max_steps: 200")),
    )
    .unwrap();
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0].to_string(), "trainer.max_steps: 100 → 200");
}

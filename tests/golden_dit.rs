//! Golden tests of the DiT network against the PyTorch reference (tests/golden/dit/README.md).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use flowrun::model::dit::{check_keys, load_varmap, pos_embed_2d, Dit, DitConfig, DitError};
use flowrun::model::{ModelInput, VelocityModel};
use flowrun::train::clip::clip_grad_norm;
use flowrun::train::optim::{AdamW, AdamWConfig, OptimError};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// One golden case described by a `dit_*.json` file.
struct Case {
    name: String,
    cfg: DitConfig,
    weights: PathBuf,
    io: HashMap<String, Tensor>,
    /// Clip / AdamW goldens; empty when the case has no optimizer file.
    optim: HashMap<String, Tensor>,
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/dit")
}

fn cases() -> Result<Vec<Case>, Box<dyn std::error::Error>> {
    let dir = golden_dir();
    let mut jsons: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("dit_") && n.ends_with(".json"))
        })
        .collect();
    jsons.sort();
    assert!(!jsons.is_empty(), "no dit_*.json in {}", dir.display());
    let mut out = Vec::new();
    for json in jsons {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
        let c = &v["config"];
        let u = |k: &str| {
            c[k].as_u64()
                .map(|x| x as usize)
                .ok_or(format!("config.{k}"))
        };
        assert_eq!(u("frequency_embedding_size")?, 256);
        assert!(c["class_embedder"].is_null());
        assert_eq!(c["learn_sigma"].as_bool(), Some(false));
        let cfg = DitConfig {
            input_size: u("input_size")?,
            patch_size: u("patch_size")?,
            in_channels: u("in_channels")?,
            out_channels: u("out_channels")?,
            hidden_size: u("hidden_size")?,
            depth: u("depth")?,
            num_heads: u("num_heads")?,
            mlp_ratio: c["mlp_ratio"].as_f64().ok_or("config.mlp_ratio")?,
        };
        let files: Vec<String> = v["files"]
            .as_object()
            .ok_or("files")?
            .keys()
            .cloned()
            .collect();
        let find = |suffix: &str| {
            files
                .iter()
                .find(|f| f.ends_with(suffix))
                .map(|f| dir.join(f))
                .ok_or(format!("no *{suffix} in {}", json.display()))
        };
        let io = candle_core::safetensors::load(find("_io.safetensors")?, &Device::Cpu)?;
        let optim = match find("_optim.safetensors") {
            Ok(p) => candle_core::safetensors::load(p, &Device::Cpu)?,
            Err(_) => HashMap::new(),
        };
        let name = v["name"].as_str().unwrap_or("?").to_string();
        let n_params = v["num_trainable_params"]
            .as_u64()
            .ok_or("num_trainable_params")? as usize;
        let vm = VarMap::new();
        Dit::init(&cfg, &vm, &Device::Cpu)?;
        let ours: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
        assert_eq!(ours, n_params, "{name}: trainable parameter count");
        out.push(Case {
            name,
            cfg,
            weights: find("_weights.safetensors")?,
            io,
            optim,
        });
    }
    Ok(out)
}

fn max_abs(t: &Tensor) -> candle_core::Result<f64> {
    t.to_dtype(DType::F64)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f64>()
}

/// Asserts `max|got - want| <= rtol * max|want| + atol` and returns the measured difference.
fn check(
    label: &str,
    got: &Tensor,
    want: &Tensor,
    rtol: f64,
    atol: f64,
) -> candle_core::Result<f64> {
    assert_eq!(got.dims(), want.dims(), "{label}: shape");
    let diff = max_abs(&(got.to_dtype(DType::F64)? - want.to_dtype(DType::F64)?)?)?;
    let tol = rtol * max_abs(want)? + atol;
    assert!(diff <= tol, "{label}: max |diff| {diff:e} > tol {tol:e}");
    Ok(diff)
}

fn io_tensor<'a>(case: &'a Case, key: &str) -> &'a Tensor {
    case.io
        .get(key)
        .unwrap_or_else(|| panic!("{}: io file lacks {key}", case.name))
}

fn model_input(case: &Case) -> ModelInput {
    ModelInput {
        x: io_tensor(case, "x").clone(),
        t: io_tensor(case, "t").clone(),
    }
}

fn loss_of(out: &Tensor, r: &Tensor) -> candle_core::Result<Tensor> {
    (out * r)?.sum_all()
}

#[test]
fn forward_matches_reference() -> TestResult {
    for case in cases()? {
        let weights = candle_core::safetensors::load(&case.weights, &Device::Cpu)?;
        let dit = Dit::from_tensors(&case.cfg, weights.clone(), &Device::Cpu)?;
        let file_pos = weights.get("pos_embed").ok_or("weights lack pos_embed")?;
        let pos = pos_embed_2d(case.cfg.hidden_size, case.cfg.grid_size(), &Device::Cpu)?;
        check(
            &format!("{} pos_embed", case.name),
            &pos,
            file_pos,
            0.0,
            1e-6,
        )?;

        let (out, act) = dit.forward_with_activations(&model_input(&case))?;
        let d = check(
            &format!("{} out", case.name),
            &out,
            io_tensor(&case, "out"),
            1e-5,
            1e-6,
        )?;
        eprintln!("{}: out max|diff| {d:e}", case.name);
        let loss = loss_of(&out, io_tensor(&case, "R"))?.reshape(1)?;
        check(
            &format!("{} loss", case.name),
            &loss,
            io_tensor(&case, "loss"),
            1e-5,
            1e-6,
        )?;

        let t_freq = check(
            "act.t_freq",
            &act.t_freq,
            io_tensor(&case, "act.t_freq"),
            0.0,
            1e-4,
        )?;
        eprintln!("{}: act.t_freq max|diff| {t_freq:e}", case.name);
        let mut acts = vec![
            ("act.x_embed".to_string(), act.x_embed.clone()),
            ("act.c".to_string(), act.c.clone()),
            ("act.final_tokens".to_string(), act.final_tokens.clone()),
        ];
        for (i, b) in act.blocks.iter().enumerate() {
            acts.push((format!("act.block.{i}"), b.clone()));
        }
        let expected_acts = case.io.keys().filter(|k| k.starts_with("act.")).count();
        assert_eq!(
            acts.len() + 1,
            expected_acts,
            "{}: activation count",
            case.name
        );
        for (key, got) in acts {
            check(
                &format!("{} {key}", case.name),
                &got,
                io_tensor(&case, &key),
                1e-5,
                1e-6,
            )?;
        }
    }
    Ok(())
}

#[test]
fn gradients_match_reference() -> TestResult {
    for case in cases()? {
        let vm = VarMap::new();
        let dit = Dit::init(&case.cfg, &vm, &Device::Cpu)?;
        load_varmap(&case.cfg, &vm, &case.weights)?;
        let out = dit.forward(&model_input(&case))?;
        let loss = loss_of(&out, io_tensor(&case, "R"))?;
        let grads = loss.backward()?;
        let vars = vm.data().lock().map_err(|_| "lock")?.clone();
        let n_ref = case.io.keys().filter(|k| k.starts_with("grad.")).count();
        assert_eq!(
            vars.len(),
            n_ref,
            "{}: one golden gradient per parameter",
            case.name
        );
        let mut worst = (0.0, String::new());
        for (name, var) in &vars {
            let g = grads
                .get(var.as_tensor())
                .ok_or_else(|| format!("{}: no gradient for {name}", case.name))?;
            let want = io_tensor(&case, &format!("grad.{name}"));
            let d = check(&format!("{} grad.{name}", case.name), g, want, 1e-4, 1e-7)?;
            let rel = d / max_abs(want)?.max(1e-30);
            if rel > worst.0 {
                worst = (rel, name.clone());
            }
        }
        eprintln!(
            "{}: worst grad max|diff|/max|ref| {:e} ({})",
            case.name, worst.0, worst.1
        );
    }
    Ok(())
}

#[test]
fn save_and_reload_gives_identical_outputs() -> TestResult {
    for case in cases()? {
        let vm = VarMap::new();
        let dit = Dit::init(&case.cfg, &vm, &Device::Cpu)?;
        load_varmap(&case.cfg, &vm, &case.weights)?;
        let path = std::env::temp_dir().join(format!(
            "flowrun-dit-{}-{}.safetensors",
            case.name,
            std::process::id()
        ));
        vm.save(&path)?;

        let vm2 = VarMap::new();
        let dit2 = Dit::init(&case.cfg, &vm2, &Device::Cpu)?;
        load_varmap(&case.cfg, &vm2, &path)?;
        let dit3 = Dit::load_safetensors(&case.cfg, &path, &Device::Cpu)?;
        std::fs::remove_file(&path)?;

        let input = model_input(&case);
        let a = dit.forward(&input)?;
        for other in [dit2.forward(&input)?, dit3.forward(&input)?] {
            let d = max_abs(&(&a - &other)?)?;
            assert_eq!(d, 0.0, "{}: reloaded model differs by {d:e}", case.name);
        }
        check(
            &format!("{} reloaded out", case.name),
            &a,
            io_tensor(&case, "out"),
            1e-5,
            1e-6,
        )?;
    }
    Ok(())
}

#[test]
fn strict_key_check_rejects_wrong_checkpoints() -> TestResult {
    for case in cases()? {
        let weights = candle_core::safetensors::load(&case.weights, &Device::Cpu)?;
        check_keys(&case.cfg, weights.keys())?;

        let mut bad = weights.clone();
        bad.remove("final_layer.linear.bias");
        bad.insert(
            "y_embedder.embedding_table.weight".to_string(),
            Tensor::zeros(4, DType::F32, &Device::Cpu)?,
        );
        match Dit::from_tensors(&case.cfg, bad, &Device::Cpu) {
            Err(DitError::KeyMismatch {
                missing,
                unexpected,
            }) => {
                assert_eq!(missing, ["final_layer.linear.bias"]);
                assert_eq!(unexpected, ["y_embedder.embedding_table.weight"]);
                let msg = DitError::KeyMismatch {
                    missing,
                    unexpected,
                }
                .to_string();
                assert!(msg.contains("final_layer.linear.bias"), "{msg}");
            }
            other => {
                return Err(format!("expected KeyMismatch, got {:?}", other.map(|_| ())).into())
            }
        }

        // A deeper config expects blocks the checkpoint does not have.
        let deeper = DitConfig {
            depth: case.cfg.depth + 1,
            ..case.cfg.clone()
        };
        assert!(matches!(
            Dit::load_safetensors(&deeper, &case.weights, &Device::Cpu),
            Err(DitError::KeyMismatch { .. })
        ));
        let vm = VarMap::new();
        Dit::init(&deeper, &vm, &Device::Cpu)?;
        assert!(load_varmap(&deeper, &vm, &case.weights).is_err());
    }
    Ok(())
}

fn adamw(vars: &HashMap<String, candle_core::Var>) -> Result<AdamW, OptimError> {
    let params = vars.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    AdamW::new(
        params,
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        },
    )
}

/// Checks every parameter against `<prefix><name>`: `atol` where `|grad.*| >= 1e-6`, 2.1e-3 elsewhere.
fn check_params(
    case: &Case,
    vars: &HashMap<String, candle_core::Var>,
    prefix: &str,
    atol: f64,
) -> TestResult {
    for (name, var) in vars {
        let want = io_tensor_any(case, &format!("{prefix}{name}"))?;
        let g = io_tensor(case, &format!("grad.{name}"));
        let diff = (var.as_tensor() - want)?.abs()?;
        let strong = g.abs()?.ge(1e-6)?.to_dtype(DType::F32)?;
        let strong_max = max_abs(&(&diff * &strong)?)?;
        let weak_max = max_abs(&(&diff * (1.0 - &strong)?)?)?;
        assert!(
            strong_max <= atol,
            "{} {prefix}{name}: {strong_max:e} > {atol:e}",
            case.name
        );
        assert!(
            weak_max <= 2.1e-3,
            "{} {prefix}{name} (masked): {weak_max:e}",
            case.name
        );
    }
    Ok(())
}

fn io_tensor_any<'a>(case: &'a Case, key: &str) -> Result<&'a Tensor, String> {
    case.io
        .get(key)
        .or_else(|| case.optim.get(key))
        .ok_or_else(|| format!("{}: golden files lack {key}", case.name))
}

#[test]
fn flowrun_clip_and_adamw_match_reference_after_our_backward() -> TestResult {
    for case in cases()? {
        if case.optim.is_empty() {
            continue;
        }
        let vm = VarMap::new();
        let dit = Dit::init(&case.cfg, &vm, &Device::Cpu)?;
        let vars = vm.data().lock().map_err(|_| "lock")?.clone();
        let input = model_input(&case);
        let r = io_tensor(&case, "R");

        // flowrun's clipping on our own gradients (the optimizer alone is in golden_optim.rs).
        load_varmap(&case.cfg, &vm, &case.weights)?;
        let grads = loss_of(&dit.forward(&input)?, r)?.backward()?;
        let mut raw = HashMap::new();
        for (name, var) in &vars {
            let g = grads.get(var.as_tensor()).ok_or("missing grad")?;
            raw.insert(name.clone(), g.clone());
        }
        let mut clipped = raw.clone();
        let total = clip_grad_norm(&mut clipped, 1.0)?;
        let want_total = io_tensor_any(&case, "clip.total_norm")?
            .reshape(())?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        assert!(
            (total - want_total).abs() <= 1e-5 * want_total,
            "{}: total norm {total} vs {want_total}",
            case.name
        );
        for (name, g) in &clipped {
            let want = io_tensor_any(&case, &format!("clip.grad.{name}"))?;
            check(
                &format!("{} clip.grad.{name}", case.name),
                g,
                want,
                1e-4,
                1e-7,
            )?;
        }

        // AdamW after our own backward: two steps.
        let mut opt = adamw(&vars)?;
        opt.step_with(&raw)?;
        check_params(&case, &vars, "adamw.step1.", 1e-5)?;
        let loss1 = loss_of(&dit.forward(&input)?, r)?.reshape(1)?;
        check(
            &format!("{} adamw.loss_after_step1", case.name),
            &loss1,
            io_tensor_any(&case, "adamw.loss_after_step1")?,
            1e-5,
            1e-6,
        )?;
        let grads = loss1.sum_all()?.backward()?;
        opt.step(&grads)?;
        check_params(&case, &vars, "adamw.step2.", 5e-5)?;
    }
    Ok(())
}

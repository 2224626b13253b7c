//! Golden tests of the optimizer against PyTorch (`tests/golden/dit/dit_shared_*.safetensors`).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use flowrun::train::clip::clip_grad_norm;
use flowrun::train::optim::{AdamW, AdamWConfig, OptimError};

fn golden(file: &str) -> HashMap<String, Tensor> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/dit")
        .join(file);
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

/// Raw gradients keyed by parameter name (the `grad.` prefix stripped).
fn raw_grads() -> HashMap<String, Tensor> {
    golden("dit_shared_io.safetensors")
        .into_iter()
        .filter_map(|(k, t)| k.strip_prefix("grad.").map(|n| (n.to_string(), t)))
        .collect()
}

/// The trainable parameters (those with a gradient), as fresh variables, sorted by name.
fn trainable_params(grads: &HashMap<String, Tensor>) -> Vec<(String, Var)> {
    let weights = golden("dit_shared_weights.safetensors");
    let mut names: Vec<&String> = grads.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let w = weights
                .get(n)
                .unwrap_or_else(|| panic!("no initial weight for {n}"));
            (n.clone(), Var::from_tensor(&w.copy().unwrap()).unwrap())
        })
        .collect()
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&(a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap())
}

#[test]
fn clip_matches_torch() {
    let optim = golden("dit_shared_optim.safetensors");
    let mut grads = raw_grads();
    assert!(!grads.is_empty());
    let total = clip_grad_norm(&mut grads, 1.0).unwrap();
    let want = optim["clip.total_norm"]
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()[0];
    assert!(
        ((total - want) / want).abs() <= 1e-5,
        "total_norm {total} vs {want}"
    );
    for (name, g) in &grads {
        let r = &optim[&format!("clip.grad.{name}")];
        let d = max_abs_diff(g, r);
        let tol = 1e-4 * max_abs(r) + 1e-7;
        assert!(d <= tol, "clip.grad.{name}: |diff| {d} > {tol}");
    }
}

#[test]
fn adamw_step1_matches_torch() {
    let optim = golden("dit_shared_optim.safetensors");
    let grads = raw_grads();
    let params = trainable_params(&grads);
    let mut opt = AdamW::new(params.clone(), AdamWConfig::default()).unwrap();
    opt.step_with(&grads).unwrap();
    let mut worst = 0f32;
    for (name, var) in &params {
        let r = &optim[&format!("adamw.step1.{name}")];
        let d = max_abs_diff(var.as_tensor(), r);
        worst = worst.max(d);
        assert!(d <= 1e-7, "adamw.step1.{name}: |diff| {d} > 1e-7");
    }
    eprintln!("adamw step1 worst |diff| = {worst:e}");
}

fn bits(params: &[(String, Var)]) -> Vec<(String, Vec<u32>)> {
    params
        .iter()
        .map(|(n, v)| {
            let vals = v
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            (n.clone(), vals.into_iter().map(f32::to_bits).collect())
        })
        .collect()
}

fn fresh(params: &[(String, Var)]) -> Vec<(String, Var)> {
    params
        .iter()
        .map(|(n, v)| {
            (
                n.clone(),
                Var::from_tensor(&v.as_tensor().copy().unwrap()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn resume_from_saved_state_is_bitwise_identical() {
    let grads = raw_grads();
    let clipped = {
        let mut g = grads.clone();
        clip_grad_norm(&mut g, 1.0).unwrap();
        g
    };
    let params = trainable_params(&grads);
    let cfg = AdamWConfig::default();
    let mut a = AdamW::new(params.clone(), cfg).unwrap();
    a.step_with(&grads).unwrap();
    a.step_with(&clipped).unwrap();

    // Save (through safetensors bytes) and restore into a fresh optimizer over copied weights.
    let state = a.state_tensors().unwrap();
    let dir = std::env::temp_dir().join(format!("flowrun-optim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("optim.safetensors");
    candle_core::safetensors::save(&state, &file).unwrap();
    let loaded = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    std::fs::remove_dir_all(&dir).ok();

    let params_b = fresh(&params);
    let mut b = AdamW::new(params_b.clone(), cfg).unwrap();
    b.load_state(&loaded).unwrap();
    assert_eq!(b.step_count(), 2);

    a.set_lr(5e-4).unwrap();
    b.set_lr(5e-4).unwrap();
    a.step_with(&grads).unwrap();
    b.step_with(&grads).unwrap();
    assert_eq!(bits(&params), bits(&params_b));
    let (sa, sb) = (a.state_tensors().unwrap(), b.state_tensors().unwrap());
    for (k, t) in &sa {
        let diff = max_abs_diff(t, &sb[k]);
        assert_eq!(diff, 0.0, "{k}");
    }
}

#[test]
fn mismatched_state_is_a_clear_error() {
    let grads = raw_grads();
    let params = trainable_params(&grads);
    let mut opt = AdamW::new(params.clone(), AdamWConfig::default()).unwrap();
    let mut state = opt.state_tensors().unwrap();
    let (first, _) = &params[0];
    let (second, second_var) = &params[1];
    state.remove(&format!("optimizer.exp_avg.{first}"));
    state.insert(
        "optimizer.exp_avg.bogus".to_string(),
        Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap(),
    );
    let wrong_shape = second_var.elem_count() + 1;
    state.insert(
        format!("optimizer.exp_avg_sq.{second}"),
        Tensor::zeros(wrong_shape, DType::F32, &Device::Cpu).unwrap(),
    );
    let before = opt.state_tensors().unwrap();
    let err = opt.load_state(&state).unwrap_err();
    let msg = err.to_string();
    match &err {
        OptimError::StateMismatch {
            missing,
            unexpected,
            mismatched,
        } => {
            assert_eq!(missing, &vec![format!("optimizer.exp_avg.{first}")]);
            assert_eq!(unexpected, &vec!["optimizer.exp_avg.bogus".to_string()]);
            assert_eq!(mismatched.len(), 1);
            assert!(mismatched[0].contains(second.as_str()), "{msg}");
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(msg.contains("missing") && msg.contains("bogus"), "{msg}");
    // A bad step count is also rejected, and a failed load changes nothing.
    let mut bad_step = before.clone();
    bad_step.insert(
        "optimizer.step".to_string(),
        Tensor::new(-3f32, &Device::Cpu).unwrap(),
    );
    assert!(opt.load_state(&bad_step).is_err());
    assert_eq!(opt.step_count(), 0);
    opt.load_state(&before).unwrap();
}

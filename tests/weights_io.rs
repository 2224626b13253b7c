//! Weights I/O: save then load gives identical outputs, the golden PyTorch checkpoint loads
//! unchanged, and a mismatched file is refused with a report naming keys and shapes.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use flowrun::model::dit::{DitConfig, POS_EMBED_NAME};
use flowrun::model::ema::Ema;
use flowrun::model::generative::{GenerativeConfig, GenerativeModule};
use flowrun::model::weights::{load_frozen, read_safetensors, WeightsError};
use flowrun::rng::Rng;

type Res = Result<(), Box<dyn std::error::Error>>;

const DEV: Device = Device::Cpu;
const GOLDEN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/dit");

/// The SHARED config of the golden DiT (tests/golden/dit/README.md).
fn shared_net() -> DitConfig {
    DitConfig {
        input_size: 16,
        patch_size: 4,
        in_channels: 8,
        out_channels: 1,
        hidden_size: 64,
        depth: 2,
        num_heads: 4,
        mlp_ratio: 4.0,
    }
}

fn module(net: DitConfig, seed: u64) -> Result<GenerativeModule, Box<dyn std::error::Error>> {
    Ok(GenerativeModule::from_config(
        GenerativeConfig::flow_matching(net),
        &DEV,
        &mut Rng::new(seed),
    )?)
}

/// A model whose zero-initialised layers have moved, so outputs depend on every weight.
fn trained(seed: u64) -> Result<GenerativeModule, Box<dyn std::error::Error>> {
    let m = module(shared_net(), seed)?;
    let mut rng = Rng::new(seed);
    for (_, var) in m.parameters() {
        let noise = rng.randn(var.shape(), &DEV)?.affine(0.02, 0.0)?;
        var.set(&(var.as_tensor() + noise)?)?;
    }
    Ok(m)
}

fn golden_io() -> Result<HashMap<String, Tensor>, Box<dyn std::error::Error>> {
    Ok(candle_core::safetensors::load(
        format!("{GOLDEN_DIR}/dit_shared_io.safetensors"),
        &DEV,
    )?)
}

fn output(
    m: &GenerativeModule,
    x: &Tensor,
    t: &Tensor,
) -> Result<Tensor, Box<dyn std::error::Error>> {
    Ok(m.predict(&x.narrow(1, 0, 5)?, &x.narrow(1, 7, 1)?, t)?)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32, candle_core::Error> {
    (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
}

#[test]
fn save_then_load_gives_identical_outputs() -> Res {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("weights.safetensors");
    let source = trained(1)?;
    source.save_weights(&file)?;
    // PyTorch names, pos_embed included, nothing else.
    let saved = read_safetensors(&file, &DEV)?;
    let mut names: Vec<&String> = saved.keys().collect();
    names.sort();
    let mut expected = shared_net().param_names();
    expected.push(POS_EMBED_NAME.to_string());
    expected.sort();
    assert_eq!(names, expected.iter().collect::<Vec<_>>());
    assert_eq!(saved["blocks.1.attn.qkv.weight"].dims(), [192, 64]);

    let target = module(shared_net(), 2)?;
    let io = golden_io()?;
    let (x, t) = (&io["x"], &io["t"]);
    assert!(max_abs_diff(&output(&source, x, t)?, &output(&target, x, t)?)? > 0.0);
    target.load_weights(&file)?;
    assert_eq!(
        max_abs_diff(&output(&source, x, t)?, &output(&target, x, t)?)?,
        0.0
    );
    let frozen = load_frozen(GenerativeConfig::flow_matching(shared_net()), &file, &DEV)?;
    assert_eq!(
        max_abs_diff(&output(&source, x, t)?, &output(&frozen, x, t)?)?,
        0.0
    );
    assert!(matches!(
        frozen.load_weights(&file),
        Err(WeightsError::Frozen)
    ));
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
    Ok(())
}

#[test]
fn the_golden_pytorch_checkpoint_loads_unchanged() -> Res {
    let m = module(shared_net(), 3)?;
    m.load_weights(format!("{GOLDEN_DIR}/dit_shared_weights.safetensors"))?;
    let io = golden_io()?;
    let out = output(&m, &io["x"], &io["t"])?;
    let want = &io["out"];
    let scale = want.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    let err = max_abs_diff(&out, want)?;
    assert!(err <= 1e-5 * scale + 1e-6, "max |out - golden| = {err}");
    // Saving what was loaded gives back the golden tensors, pos_embed within 1e-6.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("again.safetensors");
    m.save_weights(&file)?;
    let golden = read_safetensors(format!("{GOLDEN_DIR}/dit_shared_weights.safetensors"), &DEV)?;
    let again = read_safetensors(&file, &DEV)?;
    assert_eq!(golden.len(), again.len());
    for (name, t) in &golden {
        let limit = if name == POS_EMBED_NAME { 1e-6 } else { 0.0 };
        assert!(max_abs_diff(t, &again[name])? <= limit, "{name}");
    }
    Ok(())
}

#[test]
fn a_mismatched_file_is_refused_with_a_named_report() -> Res {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("wider.safetensors");
    let mut wider = shared_net();
    wider.depth = 3;
    wider.mlp_ratio = 2.0;
    module(wider, 1)?.save_weights(&file)?;
    let target = trained(4)?;
    let before = target.weight_tensors();
    let err = target.load_weights(&file).unwrap_err();
    let WeightsError::Mismatch { path, report } = &err else {
        return Err(format!("expected a mismatch, got {err}").into());
    };
    assert_eq!(path, &file);
    assert!(report.missing.is_empty());
    assert!(report
        .unexpected
        .contains(&"blocks.2.attn.qkv.weight".to_string()));
    let fc1 = report
        .shape_mismatches
        .iter()
        .find(|m| m.name == "blocks.0.mlp.fc1.weight")
        .ok_or("no fc1 mismatch")?;
    assert_eq!(
        (fc1.found.clone(), fc1.expected.clone()),
        (vec![128, 64], vec![256, 64])
    );
    let message = err.to_string();
    assert!(message.contains("wider.safetensors"), "{message}");
    assert!(
        message.contains("blocks.0.mlp.fc1.weight: file [128, 64], model [256, 64]"),
        "{message}"
    );
    assert!(message.contains("model.net"), "{message}");
    // Nothing was changed.
    for (name, t) in target.weight_tensors() {
        assert_eq!(max_abs_diff(&t, &before[&name])?, 0.0, "{name}");
    }

    let mut partial = target.weight_tensors();
    partial.remove("final_layer.linear.bias");
    partial.insert(
        "y_embedder.embedding_table.weight".into(),
        Tensor::zeros(3, DType::F32, &DEV)?,
    );
    partial.insert(
        POS_EMBED_NAME.into(),
        Tensor::zeros((1, 4, 64), DType::F32, &DEV)?,
    );
    let report = target.check_weights(&partial);
    assert_eq!(report.missing, ["final_layer.linear.bias"]);
    assert_eq!(report.unexpected, ["y_embedder.embedding_table.weight"]);
    assert_eq!(report.shape_mismatches.len(), 1);
    assert_eq!(report.shape_mismatches[0].name, POS_EMBED_NAME);
    let missing_file = dir.path().join("absent.safetensors");
    let err = target.load_weights(&missing_file).unwrap_err().to_string();
    assert!(err.contains("absent.safetensors"), "{err}");
    Ok(())
}

#[test]
fn ema_state_round_trips_through_a_file() -> Res {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("ema.safetensors");
    let m = trained(5)?;
    let mut ema = Ema::for_module(&m, 0.99, true)?;
    for (_, var) in m.parameters() {
        var.set(&var.as_tensor().affine(1.5, 0.0)?)?;
    }
    ema.update(&m.parameters())?;
    let state: Vec<(String, Tensor)> = ema.state_tensors()?.into_iter().collect();
    flowrun::model::weights::write_safetensors(&state, &file)?;
    let mut restored = Ema::for_module(&module(shared_net(), 6)?, 0.99, true)?;
    restored.load_state(&read_safetensors(&file, &DEV)?)?;
    assert_eq!(restored.num_updates(), 1);
    let (a, b) = (ema.weights(), restored.weights());
    for (name, t) in &a {
        assert_eq!(max_abs_diff(t, &b[name])?, 0.0, "{name}");
    }
    Ok(())
}

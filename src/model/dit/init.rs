//! The reference initialisation drawn from a seedable [`Rng`], so that a run from scratch is
//! bitwise repeatable (candle's own CPU `randn` cannot be seeded).
//!
//! Same scheme as `Dit::init` (DiT `initialize_weights`): xavier-uniform linear and patch
//! weights (`bound = sqrt(6 / (fan_in + fan_out))`, fan_in over all trailing dimensions),
//! `N(0, 0.02)` timestep-MLP weights, zero biases, zero adaLN modulation and final layer.

use candle_core::Tensor;
use candle_nn::VarMap;

use super::{DitConfig, DitError};
use crate::rng::Rng;

/// Which draw a parameter gets.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Draw {
    Zero,
    Normal(f64),
    XavierUniform { fan_in: usize, fan_out: usize },
}

fn draw_for(name: &str, dims: &[usize]) -> Draw {
    let zeroed = name.ends_with(".bias")
        || name.contains("adaLN_modulation")
        || name.starts_with("final_layer.linear");
    if zeroed {
        Draw::Zero
    } else if name.starts_with("t_embedder.") {
        Draw::Normal(0.02)
    } else {
        Draw::XavierUniform {
            fan_in: dims.iter().skip(1).product(),
            fan_out: dims.first().copied().unwrap_or(1),
        }
    }
}

/// Overwrites every variable of a DiT `varmap` with a fresh reference initialisation from `rng`,
/// in `cfg.param_names()` order.
pub fn reinit_seeded(cfg: &DitConfig, varmap: &VarMap, rng: &mut Rng) -> Result<(), DitError> {
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| DitError::Candle(candle_core::Error::Msg("VarMap lock poisoned".into())))?
        .clone();
    super::check_keys(cfg, vars.keys())?;
    for name in cfg.param_names() {
        let var = &vars[&name];
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let values: Vec<f32> = match draw_for(&name, &dims) {
            Draw::Zero => vec![0.0; n],
            Draw::Normal(std) => (0..n).map(|_| (std * rng.normal()) as f32).collect(),
            Draw::XavierUniform { fan_in, fan_out } => {
                let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
                (0..n)
                    .map(|_| (bound * (2.0 * rng.uniform() - 1.0)) as f32)
                    .collect()
            }
        };
        let t = Tensor::from_vec(values, dims.as_slice(), var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::dit::Dit;
    use candle_core::Device;

    #[test]
    fn seeded_init_repeats_and_keeps_the_zero_pattern() -> Result<(), DitError> {
        let cfg = DitConfig::tiny();
        let draw = |seed| -> Result<VarMap, DitError> {
            let vm = VarMap::new();
            Dit::init(&cfg, &vm, &Device::Cpu)?;
            reinit_seeded(&cfg, &vm, &mut Rng::new(seed))?;
            Ok(vm)
        };
        let (a, b, c) = (draw(1)?, draw(1)?, draw(2)?);
        let get = |vm: &VarMap, n: &str| -> candle_core::Result<Vec<f32>> {
            let vars = vm.data().lock().expect("lock");
            vars[n].as_tensor().flatten_all()?.to_vec1::<f32>()
        };
        let w = "blocks.0.attn.qkv.weight";
        assert_eq!(get(&a, w)?, get(&b, w)?);
        assert_ne!(get(&a, w)?, get(&c, w)?);
        let bound = (6.0f32 / (64.0 + 192.0)).sqrt();
        assert!(get(&a, w)?.iter().all(|v| v.abs() <= bound));
        assert!(get(&a, "final_layer.linear.weight")?
            .iter()
            .all(|v| *v == 0.0));
        assert!(get(&a, "blocks.1.adaLN_modulation.1.weight")?
            .iter()
            .all(|v| *v == 0.0));
        let t = get(&a, "t_embedder.mlp.0.weight")?;
        let std = (t.iter().map(|v| v * v).sum::<f32>() / t.len() as f32).sqrt();
        assert!((std - 0.02).abs() < 0.002, "{std}");
        assert_eq!(
            draw_for("x_embedder.proj.weight", &[64, 8, 4, 4]),
            Draw::XavierUniform {
                fan_in: 128,
                fan_out: 64
            }
        );
        Ok(())
    }
}

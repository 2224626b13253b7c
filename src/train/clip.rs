//! Global-norm gradient clipping with the semantics of `torch.nn.utils.clip_grad_norm_`.
//!
//! `total_norm` is the 2-norm of the per-tensor 2-norms (float32), the clip coefficient is
//! `max_norm / (total_norm + 1e-6)` and every gradient is multiplied by `min(1, coef)`.
//! Unlike PyTorch's default, a non-finite total norm is always an error (nothing is scaled).

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

use super::optim::OptimError;

/// Clips named gradients in place to a global 2-norm of at most `max_norm`; returns the norm
/// before clipping.
pub fn clip_grad_norm(
    grads: &mut HashMap<String, Tensor>,
    max_norm: f64,
) -> Result<f64, OptimError> {
    let mut names: Vec<String> = grads.keys().cloned().collect();
    names.sort();
    let tensors: Vec<&Tensor> = names.iter().map(|n| &grads[n]).collect();
    let (total_norm, coef) = clip_coef(&names, &tensors, max_norm)?;
    if let Some(coef) = coef {
        for name in names {
            if let Some(g) = grads.get_mut(&name) {
                *g = scale_grad(g, coef)?;
            }
        }
    }
    Ok(total_norm)
}

/// Clips the gradients of `params` held in a [`GradStore`] in place; returns the norm before
/// clipping. Parameters without a gradient are ignored.
pub fn clip_grad_norm_store(
    grads: &mut GradStore,
    params: &[(String, Var)],
    max_norm: f64,
) -> Result<f64, OptimError> {
    let mut present: Vec<(&String, &Var, Tensor)> = params
        .iter()
        .filter_map(|(n, v)| grads.get(v.as_tensor()).map(|g| (n, v, g.clone())))
        .collect();
    present.sort_by(|a, b| a.0.cmp(b.0));
    let names: Vec<String> = present.iter().map(|(n, _, _)| (*n).clone()).collect();
    let tensors: Vec<&Tensor> = present.iter().map(|(_, _, g)| g).collect();
    let (total_norm, coef) = clip_coef(&names, &tensors, max_norm)?;
    if let Some(coef) = coef {
        for (_, var, g) in &present {
            grads.insert(var.as_tensor(), scale_grad(g, coef)?);
        }
    }
    Ok(total_norm)
}

/// The global 2-norm of the given gradients (float32, as PyTorch), without modifying them.
pub fn total_grad_norm(grads: &HashMap<String, Tensor>) -> Result<f64, OptimError> {
    let mut names: Vec<String> = grads.keys().cloned().collect();
    names.sort();
    let tensors: Vec<&Tensor> = names.iter().map(|n| &grads[n]).collect();
    Ok(global_norm(&names, &tensors)? as f64)
}

/// The 2-norm of the per-tensor 2-norms, in float32; an error when it is not finite.
fn global_norm(names: &[String], tensors: &[&Tensor]) -> Result<f32, OptimError> {
    let mut per = Vec::with_capacity(tensors.len());
    for g in tensors {
        let n = g.to_dtype(DType::F32)?.sqr()?.sum_all()?.sqrt()?;
        per.push(n.to_device(&candle_core::Device::Cpu)?.to_scalar::<f32>()?);
    }
    let total = per.iter().map(|n| n * n).sum::<f32>().sqrt();
    if !total.is_finite() {
        let param = names
            .iter()
            .zip(&per)
            .find(|(_, n)| !n.is_finite())
            .map(|(name, _)| name.clone())
            .unwrap_or_else(|| "<none: the sum of squares overflowed>".to_string());
        return Err(OptimError::NonFiniteGradNorm {
            total_norm: total as f64,
            param,
        });
    }
    Ok(total)
}

/// The total norm and the clip coefficient, `None` when no scaling is needed (coefficient >= 1).
fn clip_coef(
    names: &[String],
    tensors: &[&Tensor],
    max_norm: f64,
) -> Result<(f64, Option<f32>), OptimError> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(OptimError::InvalidMaxNorm(max_norm));
    }
    let total = global_norm(names, tensors)?;
    // torch: max_norm / (total_norm + 1e-6) is `reciprocal(total + 1e-6) * max_norm` in float32.
    let coef = (1.0f32 / (total + 1e-6f32)) * max_norm as f32;
    Ok((total as f64, (coef < 1.0).then_some(coef)))
}

fn scale_grad(g: &Tensor, coef: f32) -> Result<Tensor, OptimError> {
    let scaled = if g.dtype() == DType::F32 {
        g.affine(coef as f64, 0.0)?
    } else {
        g.to_dtype(DType::F32)?
            .affine(coef as f64, 0.0)?
            .to_dtype(g.dtype())?
    };
    Ok(scaled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn grads(vals: &[(&str, &[f32])]) -> HashMap<String, Tensor> {
        vals.iter()
            .map(|(n, v)| (n.to_string(), Tensor::new(*v, &Device::Cpu).unwrap()))
            .collect()
    }

    #[test]
    fn clips_to_max_norm() {
        let mut g = grads(&[("a", &[3.0]), ("b", &[4.0])]);
        let total = clip_grad_norm(&mut g, 1.0).unwrap();
        assert!((total - 5.0).abs() < 1e-6);
        let a = g["a"].to_vec1::<f32>().unwrap()[0];
        let b = g["b"].to_vec1::<f32>().unwrap()[0];
        assert!(((a * a + b * b).sqrt() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn small_norm_is_untouched() {
        let mut g = grads(&[("a", &[0.3]), ("b", &[0.4])]);
        let total = clip_grad_norm(&mut g, 1.0).unwrap();
        assert!((total - 0.5).abs() < 1e-6);
        assert_eq!(g["a"].to_vec1::<f32>().unwrap(), vec![0.3]);
    }

    #[test]
    fn errors_are_named() {
        let mut g = grads(&[("a", &[1.0]), ("b", &[f32::NAN])]);
        let err = clip_grad_norm(&mut g, 1.0).unwrap_err();
        assert!(err.to_string().contains("`b`"), "{err}");
        let mut g = grads(&[("a", &[1.0])]);
        for bad in [0.0, -1.0, f64::NAN] {
            let err = clip_grad_norm(&mut g, bad).unwrap_err();
            assert!(matches!(err, OptimError::InvalidMaxNorm(_)), "{err}");
        }
    }

    #[test]
    fn gradstore_matches_map() {
        let var = Var::from_tensor(&Tensor::new(&[3f32, 4.0], &Device::Cpu).unwrap()).unwrap();
        let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
        let mut store = loss.backward().unwrap();
        let params = vec![("w".to_string(), var.clone())];
        let total = clip_grad_norm_store(&mut store, &params, 1.0).unwrap();
        assert!((total - 10.0).abs() < 1e-5);
        let mut map = grads(&[("w", &[6.0, 8.0])]);
        clip_grad_norm(&mut map, 1.0).unwrap();
        let from_store = store
            .get(var.as_tensor())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(from_store, map["w"].to_vec1::<f32>().unwrap());
    }
}

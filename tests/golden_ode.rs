//! The ODE samplers against torchdiffeq 0.2.5 (via flow_matching's `ODESolver`): every case of
//! `tests/golden/ode.json`.

mod common;

use std::cell::RefCell;

use candle_core::{DType, Device, Tensor};
use common::golden::{self, Case, Report};
use flowrun::sampler::error::SamplerError;
use flowrun::sampler::ode::{self, FixedSteps, OdeMethod, OdeOptions, OdeSolution, TimeGrid};

/// The outputs a case may have; anything else fails the test.
const KNOWN_OUTPUTS: [&str; 9] = [
    "nfe",
    "eval_times",
    "sol",
    "x_final",
    "grid",
    "steps",
    "n_accepted",
    "n_rejected",
    "first_step",
];

/// The velocity fields of the golden cases.
enum Field {
    /// `-x + t`.
    Linear,
    /// `sin(3x)(1+t) - 0.5x`.
    Nonlinear,
    /// `tanh([x, t] @ W1^T + b1) @ W2^T + b2`.
    Mlp {
        w1: Tensor,
        b1: Tensor,
        w2: Tensor,
        b2: Tensor,
    },
}

impl Field {
    fn from_case(case: &Case, device: &Device) -> Result<Field, String> {
        match case.params["field"].as_str() {
            Some("linear") => Ok(Field::Linear),
            Some("nonlinear") => Ok(Field::Nonlinear),
            Some("mlp") => Ok(Field::Mlp {
                w1: case.input("W1").tensor(device),
                b1: case.input("b1").tensor(device),
                w2: case.input("W2").tensor(device),
                b2: case.input("b2").tensor(device),
            }),
            other => Err(format!("unknown field {other:?}")),
        }
    }

    fn velocity(&self, x: &Tensor, t: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Field::Linear => x.neg()?.broadcast_add(t),
            Field::Nonlinear => {
                let one_plus_t = (t + 1.0)?;
                (x * 3.0)?
                    .sin()?
                    .broadcast_mul(&one_plus_t)?
                    .sub(&(x * 0.5)?)
            }
            Field::Mlp { w1, b1, w2, b2 } => {
                let batch = x.dim(0)?;
                let t_col = Tensor::ones((batch, 1), x.dtype(), x.device())?.broadcast_mul(t)?;
                let input = Tensor::cat(&[x, &t_col], 1)?;
                let hidden = input.matmul(&w1.t()?)?.broadcast_add(b1)?.tanh()?;
                hidden.matmul(&w2.t()?)?.broadcast_add(b2)
            }
        }
    }
}

fn method_of(case: &Case) -> Result<OdeMethod, String> {
    let name = case.params["method"].as_str().unwrap_or("");
    name.parse::<OdeMethod>().map_err(|e| e.to_string())
}

fn options_of(case: &Case, method: OdeMethod) -> OdeOptions {
    let mut options =
        OdeOptions::new(method).with_intermediates(case.params["return_intermediates"] == true);
    if let Some(h) = case.params["step_size"].as_f64() {
        options = options.with_step_size(h);
    }
    if let (Some(atol), Some(rtol)) = (case.params["atol"].as_f64(), case.params["rtol"].as_f64()) {
        options = options.with_tolerances(atol, rtol);
    }
    options
}

/// Solves a case, recording the times the field is called at.
fn run_case(
    case: &Case,
    device: &Device,
    grid: &TimeGrid,
    options: &OdeOptions,
) -> Result<(OdeSolution, Vec<f64>), String> {
    let field = Field::from_case(case, device)?;
    let x_init = case.input("x_init").tensor(device);
    let times = RefCell::new(Vec::new());
    let f = |x: &Tensor, t: &Tensor| -> Result<Tensor, SamplerError> {
        times
            .borrow_mut()
            .push(t.to_dtype(DType::F64)?.to_scalar::<f64>()?);
        Ok(field.velocity(x, t)?)
    };
    let solution = ode::solve(&f, &x_init, grid, options).map_err(|e| e.to_string())?;
    Ok((solution, times.into_inner()))
}

/// The tolerance for `sol`/`x_final`: the README's (or `params.tol`), widened for f32 dopri5
/// cases to twice the solver's own atol/rtol.
fn state_tolerance(case: &Case, output: &str, method: OdeMethod) -> (f64, f64) {
    let (mut rtol, mut atol) = golden::tolerance(case, "ode", output);
    if method == OdeMethod::Dopri5 && case.output(output).dtype == "f32" {
        rtol = rtol.max(2.0 * case.params["rtol"].as_f64().unwrap_or(0.0));
        atol = atol.max(2.0 * case.params["atol"].as_f64().unwrap_or(0.0));
    }
    (rtol, atol)
}

/// Compares with an explicit tolerance; an informational comparison only prints.
fn compare(
    report: &mut Report,
    case: &Case,
    output: &str,
    got: &Tensor,
    (rtol, atol): (f64, f64),
    informational: bool,
) {
    if let Some(msg) = golden::compare(got, case.output(output), rtol, atol) {
        if informational {
            println!("{} [{output}] (informational): {msg}", case.name);
        } else {
            report.fail(case, format!("[{output}]: {msg}"));
        }
    }
}

/// Checks values that must match exactly: bit-equal after casting to `f32` for f32 outputs; for
/// f64 outputs within 2 ulp, since the golden loader's default serde_json float parsing may be
/// off by one ulp.
fn compare_exact(report: &mut Report, case: &Case, output: &str, got: &[f64], informational: bool) {
    let want = case.output(output);
    let mismatch = if got.len() != want.data.len() {
        Some(format!(
            "{} values, expected {}",
            got.len(),
            want.data.len()
        ))
    } else {
        got.iter()
            .zip(&want.data)
            .position(|(&g, &w)| {
                if want.dtype == "f32" {
                    g as f32 != w as f32
                } else {
                    (g - w).abs() > 4.5e-16 * w.abs()
                }
            })
            .map(|i| format!("element {i}: got {}, want {}", got[i], want.data[i]))
    };
    if let Some(msg) = mismatch {
        if informational {
            println!("{} [{output}] (informational): {msg}", case.name);
        } else {
            report.fail(case, format!("[{output}] (exact): {msg}"));
        }
    }
}

fn f64_tensor(values: Vec<f64>, shape: &[usize], dtype: &str) -> Tensor {
    let t = Tensor::from_vec(values, shape, &Device::Cpu).expect("tensor");
    if dtype == "f32" {
        t.to_dtype(DType::F32).expect("to f32")
    } else {
        t
    }
}

#[test]
fn ode_golden_cases() {
    let device = Device::Cpu;
    let cases = golden::load("ode");
    assert!(!cases.is_empty());
    let mut report = Report::default();
    for case in &cases {
        if case.op() != "ode" {
            report.fail(case, format!("unknown op {:?}", case.op()));
            continue;
        }
        if let Some((name, _)) = case
            .outputs
            .iter()
            .find(|(name, _)| !KNOWN_OUTPUTS.contains(&name.as_str()))
        {
            report.fail(case, format!("unknown output {name:?}"));
            continue;
        }
        let method = match method_of(case) {
            Ok(method) => method,
            Err(e) => {
                report.fail(case, e);
                continue;
            }
        };
        let grid = match TimeGrid::from_tensor(&case.input("time_grid").tensor(&device)) {
            Ok(grid) => grid,
            Err(e) => {
                report.fail(case, e);
                continue;
            }
        };
        let options = options_of(case, method);
        let (solution, times) = match run_case(case, &device, &grid, &options) {
            Ok(result) => result,
            Err(e) => {
                report.fail(case, e);
                continue;
            }
        };
        let dtype = case.output("x_final").dtype.clone();
        let sensitive = case.params["counts_rounding_sensitive"] == true;
        let default = golden::default_tolerance("ode", &dtype);
        // In f32 the dopri5 error estimate of small steps is rounding noise, and the fields here
        // (sin, tanh, matmul) round differently from torch's kernels, so dt may differ slightly:
        // f32 step sequences are informational, f64 ones exact (README).
        let step_noise = method.is_adaptive() && dtype == "f32";
        for (output, want) in &case.outputs {
            match output.as_str() {
                "x_final" => {
                    let tol = state_tolerance(case, output, method);
                    compare(&mut report, case, output, &solution.final_state, tol, false);
                }
                "sol" => match &solution.intermediates {
                    Some(sol) => {
                        let tol = state_tolerance(case, output, method);
                        compare(&mut report, case, output, sol, tol, false);
                    }
                    None => report.fail(case, "[sol]: no intermediates returned"),
                },
                "nfe" | "n_accepted" | "n_rejected" => {
                    let got = match output.as_str() {
                        "nfe" => solution.stats.nfe,
                        "n_accepted" => solution.stats.n_accepted,
                        _ => solution.stats.n_rejected,
                    } as i64;
                    if sensitive {
                        if want.ints() != [got] {
                            println!(
                                "{} [{output}] (informational): got {got}, want {:?}",
                                case.name,
                                want.ints()
                            );
                        }
                    } else {
                        report.check_ints(case, output, &[got]);
                    }
                }
                "eval_times" => {
                    if method.is_adaptive() {
                        let got = f64_tensor(times.clone(), &[times.len()], &want.dtype);
                        compare(&mut report, case, output, &got, default, step_noise);
                    } else {
                        compare_exact(&mut report, case, output, &times, false);
                    }
                }
                "grid" => match ode::fixed_step_grid(&grid, options.fixed_steps, options.max_steps)
                {
                    Ok(grid) => compare_exact(&mut report, case, output, &grid, false),
                    Err(e) => report.fail(case, format!("[grid]: {e}")),
                },
                "steps" => {
                    let flat: Vec<f64> = solution
                        .steps
                        .iter()
                        .flat_map(|s| [s.s, s.ds, if s.accepted { 1.0 } else { 0.0 }])
                        .collect();
                    let got = f64_tensor(flat, &[solution.steps.len(), 3], "f64");
                    compare(&mut report, case, output, &got, default, step_noise);
                }
                "first_step" => match solution.steps.first() {
                    Some(first) => {
                        let got = f64_tensor(vec![first.ds], &[], "f64");
                        compare(&mut report, case, output, &got, default, step_noise);
                    }
                    None => report.fail(case, "[first_step]: no step taken"),
                },
                other => report.fail(case, format!("unknown output {other:?}")),
            }
        }
        if matches!(options.fixed_steps, FixedSteps::Size(_))
            && !case.outputs.iter().any(|(n, _)| n == "grid")
        {
            report.fail(case, "a step-size case without its grid");
        }
    }
    report.finish("ode");
}

//! flow_matching 1.0.10 golden vectors: schedulers, their inverses, `AffineProbPath::sample`, the
//! converters and `ScheduleTransformedModel` (`tests/golden/paths.json`), plus the CFM loss
//! (`cfm_loss` cases of `tests/golden/losses.json`).

mod common;

use candle_core::{Device, Tensor};
use common::golden::{load, Case, Report};
use flowrun::path::affine::{AffineProbPath, FlowTime};
use flowrun::path::error::PathError;
use flowrun::path::schedule_transform::ScheduleTransformedModel;
use flowrun::path::scheduler::AffineScheduler;
use serde_json::Value as Json;

const DEV: Device = Device::Cpu;

/// The scheduler named by a flow_matching class name and its constructor arguments.
fn scheduler(name: &str, params: &Json) -> Result<AffineScheduler, String> {
    let number = |key: &str, default: Option<f64>| {
        params
            .get(key)
            .and_then(Json::as_f64)
            .or(default)
            .ok_or_else(|| format!("{name}: no number {key:?} in {params}"))
    };
    let built = match name {
        "CondOTScheduler" => Ok(AffineScheduler::CondOt),
        "CosineScheduler" => Ok(AffineScheduler::Cosine),
        "LinearVPScheduler" => Ok(AffineScheduler::LinearVp),
        "VPScheduler" => AffineScheduler::vp(
            number("beta_min", Some(0.1))?,
            number("beta_max", Some(20.0))?,
        ),
        "PolynomialConvexScheduler" => AffineScheduler::polynomial(number("n", None)?),
        other => return Err(format!("unknown scheduler {other:?}")),
    };
    built.map_err(|e| format!("{name}({params}): {e}"))
}

/// The scheduler of a case, from `params.scheduler` and `params.scheduler_params`.
fn case_scheduler(case: &Case) -> Result<AffineScheduler, String> {
    let name = case.params["scheduler"]
        .as_str()
        .ok_or("no params.scheduler")?;
    scheduler(name, &case.params["scheduler_params"])
}

/// The velocity field named in `params.velocity_model`.
fn velocity_model(
    description: &str,
) -> Result<impl Fn(&Tensor, &Tensor) -> Result<Tensor, PathError>, String> {
    if !description.starts_with("nonlinear") {
        return Err(format!("unknown velocity model {description:?}"));
    }
    Ok(|x: &Tensor, t: &Tensor| {
        let gain = t.affine(1.0, 1.0)?;
        Ok(x.affine(3.0, 0.0)?
            .sin()?
            .broadcast_mul(&gain)?
            .sub(&x.affine(0.5, 0.0)?)?)
    })
}

/// Runs one case of paths.json, returning the outputs it computed (by output name).
fn run_paths_case(case: &Case) -> Result<Vec<(String, Tensor)>, String> {
    let e = |err: PathError| format!("error: {err}");
    let input = |name: &str| case.input(name).tensor(&DEV);
    match case.op() {
        "scheduler" => {
            let out = case_scheduler(case)?.at(&input("t")).map_err(e)?;
            Ok(vec![
                ("alpha_t".into(), out.alpha_t),
                ("sigma_t".into(), out.sigma_t),
                ("d_alpha_t".into(), out.d_alpha_t),
                ("d_sigma_t".into(), out.d_sigma_t),
            ])
        }
        "snr_inverse" => Ok(vec![(
            "t".into(),
            case_scheduler(case)?
                .snr_inverse(&input("snr"))
                .map_err(e)?,
        )]),
        "kappa_inverse" => Ok(vec![(
            "t".into(),
            case_scheduler(case)?
                .kappa_inverse(&input("kappa"))
                .map_err(e)?,
        )]),
        "sample" => {
            let path = AffineProbPath::new(case_scheduler(case)?);
            let t = FlowTime::new(input("t")).map_err(e)?;
            let s = path.sample(&input("x_0"), &input("x_1"), &t).map_err(e)?;
            Ok(vec![("x_t".into(), s.x_t), ("dx_t".into(), s.dx_t)])
        }
        "convert" => {
            let p = AffineProbPath::new(case_scheduler(case)?);
            let (x_t, x_1, eps, v, t) = (
                input("x_t"),
                input("x_1"),
                input("epsilon"),
                input("velocity"),
                input("t"),
            );
            Ok(vec![
                (
                    "target_to_velocity".into(),
                    p.target_to_velocity(&x_1, &x_t, &t).map_err(e)?,
                ),
                (
                    "epsilon_to_velocity".into(),
                    p.epsilon_to_velocity(&eps, &x_t, &t).map_err(e)?,
                ),
                (
                    "velocity_to_target".into(),
                    p.velocity_to_target(&v, &x_t, &t).map_err(e)?,
                ),
                (
                    "epsilon_to_target".into(),
                    p.epsilon_to_target(&eps, &x_t, &t).map_err(e)?,
                ),
                (
                    "velocity_to_epsilon".into(),
                    p.velocity_to_epsilon(&v, &x_t, &t).map_err(e)?,
                ),
                (
                    "target_to_epsilon".into(),
                    p.target_to_epsilon(&x_1, &x_t, &t).map_err(e)?,
                ),
            ])
        }
        "schedule_transform" => {
            let name = |key: &str| case.params[key].as_str().ok_or(format!("no params.{key}"));
            let original = scheduler(name("original_scheduler")?, &case.params["original_params"])?;
            let new = scheduler(name("new_scheduler")?, &case.params["new_params"])?;
            let model = velocity_model(name("velocity_model")?)?;
            let transformed = ScheduleTransformedModel::new(model, original, new).map_err(e)?;
            let (x, r) = (input("x"), input("r"));
            let mut u = Vec::new();
            for i in 0..r.dim(0).map_err(|err| err.to_string())? {
                let r_i = r.get(i).map_err(|err| err.to_string())?;
                u.push(transformed.velocity(&x, &r_i).map_err(e)?);
            }
            Ok(vec![(
                "u".into(),
                Tensor::stack(&u, 0).map_err(|err| err.to_string())?,
            )])
        }
        other => Err(format!("unknown op {other:?}")),
    }
}

/// Checks every output present in a case against what was computed; a missing one is a failure.
fn check_all(report: &mut Report, case: &Case, file: &str, computed: Vec<(String, Tensor)>) {
    for (name, _) in &case.outputs {
        match computed.iter().find(|(k, _)| k == name) {
            Some((_, got)) => report.check(case, file, name, got),
            None => report.fail(
                case,
                format!("output {name:?} is not computed by this test"),
            ),
        }
    }
}

#[test]
fn paths_golden() {
    let cases = load("paths");
    assert!(!cases.is_empty(), "paths.json has no cases");
    let mut report = Report::default();
    for case in &cases {
        match run_paths_case(case) {
            Ok(computed) => check_all(&mut report, case, "paths", computed),
            Err(msg) => report.fail(case, msg),
        }
    }
    report.finish("paths");
}

/// The CFM loss with the CondOT path: `mean((model_output - dx_t)^2)`.
fn run_cfm_case(case: &Case) -> Result<Vec<(String, Tensor)>, String> {
    let path = case.params["path"].as_str().unwrap_or("");
    if path != "AffineProbPath(CondOTScheduler())" {
        return Err(format!("unknown path {path:?}"));
    }
    let input = |name: &str| case.input(name).tensor(&DEV);
    let t = FlowTime::new(input("t")).map_err(|err| err.to_string())?;
    let s = AffineProbPath::new(AffineScheduler::CondOt)
        .sample(&input("x_0"), &input("x_1"), &t)
        .map_err(|err| err.to_string())?;
    let loss = input("model_output")
        .sub(&s.dx_t)
        .and_then(|d| d.sqr())
        .and_then(|d| d.mean_all());
    Ok(vec![
        ("x_t".into(), s.x_t),
        ("dx_t".into(), s.dx_t),
        ("loss".into(), loss.map_err(|err| err.to_string())?),
    ])
}

#[test]
fn cfm_loss_golden() {
    let cases: Vec<Case> = load("losses")
        .into_iter()
        .filter(|c| c.op() == "cfm_loss")
        .collect();
    assert!(!cases.is_empty(), "losses.json has no cfm_loss cases");
    let mut report = Report::default();
    for case in &cases {
        match run_cfm_case(case) {
            Ok(computed) => check_all(&mut report, case, "losses", computed),
            Err(msg) => report.fail(case, msg),
        }
    }
    report.finish("cfm_loss");
}

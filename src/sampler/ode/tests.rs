//! Unit tests of the ODE samplers: every bad input, analytic solutions, and failure modes.

use candle_core::{DType, Device, Tensor};

use super::*;

const FIXED: [OdeMethod; 3] = [OdeMethod::Euler, OdeMethod::Midpoint, OdeMethod::Rk4];
const ALL: [OdeMethod; 4] = [
    OdeMethod::Euler,
    OdeMethod::Midpoint,
    OdeMethod::Rk4,
    OdeMethod::Dopri5,
];

/// `dx/dt = 3t^2`, so `x(t) = x(t0) + t^3 - t0^3`.
fn cubic(x: &Tensor, t: &Tensor) -> Result<Tensor, SamplerError> {
    Ok(x.ones_like()?.broadcast_mul(&(t.sqr()? * 3.0)?)?)
}

/// `dx/dt = -x`.
fn decay(x: &Tensor, _t: &Tensor) -> Result<Tensor, SamplerError> {
    Ok(x.neg()?)
}

fn zeros(dtype: DType) -> Tensor {
    Tensor::zeros((2, 3), dtype, &Device::Cpu).unwrap()
}

fn ones(dtype: DType) -> Tensor {
    Tensor::ones((2, 3), dtype, &Device::Cpu).unwrap()
}

fn values(x: &Tensor) -> Vec<f64> {
    x.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn unit(dtype: DType) -> TimeGrid {
    TimeGrid::unit_interval(dtype).unwrap()
}

fn invalid(result: Result<OdeSolution, SamplerError>) -> &'static str {
    match result {
        Err(SamplerError::InvalidParameter { name, .. }) => name,
        other => panic!("expected InvalidParameter, got {other:?}"),
    }
}

#[test]
fn cubic_is_exact_for_rk4_and_dopri5() {
    for method in [OdeMethod::Rk4, OdeMethod::Dopri5] {
        let options = OdeOptions::new(method)
            .with_step_size(0.25)
            .with_tolerances(1e-9, 1e-9);
        let options = if method.is_adaptive() {
            OdeOptions::new(method).with_tolerances(1e-9, 1e-9)
        } else {
            options
        };
        let x = solve(&cubic, &zeros(DType::F64), &unit(DType::F64), &options).unwrap();
        for v in values(&x.final_state) {
            assert!((v - 1.0).abs() < 1e-10, "{method:?}: {v}");
        }
        let back = TimeGrid::new(&[1.0, 0.0], DType::F64).unwrap();
        let x = solve(&cubic, &ones(DType::F64), &back, &options).unwrap();
        for v in values(&x.final_state) {
            assert!(v.abs() < 1e-10, "{method:?} backward: {v}");
        }
    }
}

#[test]
fn decay_converges_for_every_method() {
    let grid = TimeGrid::new(&[0.0, 0.5, 1.0], DType::F32).unwrap();
    for method in ALL {
        let options = match method {
            OdeMethod::Dopri5 => OdeOptions::new(method),
            _ => OdeOptions::new(method).with_step_size(0.01),
        }
        .with_intermediates(true);
        let x = solve(&decay, &ones(DType::F32), &grid, &options).unwrap();
        let sol = x.intermediates.unwrap();
        assert_eq!(sol.dims(), &[3, 2, 3]);
        assert_eq!(values(&sol.get(0).unwrap()), vec![1.0; 6]);
        assert_eq!(values(&sol.get(2).unwrap()), values(&x.final_state));
        let tol = if method == OdeMethod::Euler {
            5e-3
        } else {
            1e-4
        };
        for v in values(&x.final_state) {
            assert!((v - (-1.0f64).exp()).abs() < tol, "{method:?}: {v}");
        }
        assert_eq!(x.stats.n_accepted + x.stats.n_rejected, x.steps.len());
        let per_step = [1, 2, 4][FIXED.iter().position(|m| *m == method).unwrap_or(0)];
        if !method.is_adaptive() {
            assert_eq!(x.stats.nfe, per_step * x.steps.len());
        } else {
            assert_eq!(x.stats.nfe, 2 + 6 * x.steps.len());
        }
    }
}

#[test]
fn time_is_a_scalar_of_the_state_dtype() {
    let check = |x: &Tensor, t: &Tensor| -> Result<Tensor, SamplerError> {
        assert_eq!(t.rank(), 0);
        assert_eq!(t.dtype(), x.dtype());
        Ok(x.zeros_like()?)
    };
    let grid = TimeGrid::new(&[0.0, 1.0], DType::F64).unwrap();
    for method in ALL {
        solve(&check, &ones(DType::F32), &grid, &OdeOptions::new(method)).unwrap();
    }
}

#[test]
fn uniform_steps_builds_the_config_grid() {
    let (grid, options) = uniform_steps(OdeMethod::Midpoint, 7, DType::F32).unwrap();
    assert_eq!(grid.times(), &[0.0, 1.0]);
    let x = solve(&decay, &ones(DType::F32), &grid, &options).unwrap();
    assert_eq!(x.stats.n_accepted, 7);
    assert_eq!(x.stats.nfe, 14);
    for steps in [0, -3] {
        let err = uniform_steps(OdeMethod::Euler, steps, DType::F32).unwrap_err();
        assert!(matches!(
            err,
            SamplerError::InvalidParameter { name: "steps", .. }
        ));
    }
    let err = uniform_steps(OdeMethod::Dopri5, 10, DType::F32).unwrap_err();
    assert!(matches!(
        err,
        SamplerError::InvalidParameter { name: "steps", .. }
    ));
}

#[test]
fn method_names_round_trip() {
    for method in ALL {
        assert_eq!(method.name().parse::<OdeMethod>().unwrap(), method);
    }
    assert!(matches!(
        "rk45".parse::<OdeMethod>(),
        Err(SamplerError::InvalidParameter { name: "method", .. })
    ));
}

#[test]
fn bad_step_sizes_are_rejected() {
    let x = ones(DType::F32);
    for method in FIXED {
        for h in [0.0, -0.1, f64::NAN, 2.0] {
            let options = OdeOptions::new(method).with_step_size(h);
            assert_eq!(
                invalid(solve(&decay, &x, &unit(DType::F32), &options)),
                "step_size"
            );
        }
    }
    let options = OdeOptions::new(OdeMethod::Dopri5).with_step_size(0.1);
    assert_eq!(
        invalid(solve(&decay, &x, &unit(DType::F32), &options)),
        "step_size"
    );
    let options = OdeOptions::new(OdeMethod::Euler)
        .with_step_size(1e-4)
        .with_max_steps(100);
    assert_eq!(
        invalid(solve(&decay, &x, &unit(DType::F32), &options)),
        "step_size"
    );
}

#[test]
fn bad_tolerances_and_limits_are_rejected() {
    let x = ones(DType::F64);
    let grid = unit(DType::F64);
    for method in ALL {
        let options = OdeOptions::new(method).with_tolerances(-1e-5, 1e-5);
        assert_eq!(invalid(solve(&decay, &x, &grid, &options)), "atol");
        let options = OdeOptions::new(method).with_tolerances(1e-5, -1e-5);
        assert_eq!(invalid(solve(&decay, &x, &grid, &options)), "rtol");
        let options = OdeOptions::new(method).with_tolerances(1e-5, f64::NAN);
        assert_eq!(invalid(solve(&decay, &x, &grid, &options)), "rtol");
        let options = OdeOptions::new(method).with_max_steps(0);
        assert_eq!(invalid(solve(&decay, &x, &grid, &options)), "max_steps");
    }
    let options = OdeOptions::new(OdeMethod::Dopri5).with_tolerances(0.0, 0.0);
    assert_eq!(invalid(solve(&decay, &x, &grid, &options)), "atol");
}

#[test]
fn bad_time_grids_are_rejected() {
    let bad = |times: &[f64]| match TimeGrid::new(times, DType::F32) {
        Err(SamplerError::InvalidParameter { name, .. }) => name == "time_grid",
        _ => false,
    };
    assert!(bad(&[]));
    assert!(bad(&[0.0]));
    assert!(bad(&[0.0, 0.0]));
    assert!(bad(&[0.0, 1.0, 0.5]));
    assert!(bad(&[1.0, 0.0, 0.5]));
    assert!(bad(&[0.0, f64::NAN]));
    assert!(bad(&[f64::NEG_INFINITY, 0.0]));
    let two_d = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
    assert!(TimeGrid::from_tensor(&two_d).is_err());
    let ints = Tensor::new(&[0i64, 1], &Device::Cpu).unwrap();
    assert!(TimeGrid::from_tensor(&ints).is_err());
}

#[test]
fn bad_states_are_rejected() {
    let grid = unit(DType::F32);
    let nan = Tensor::new(&[1.0f32, f32::NAN], &Device::Cpu).unwrap();
    let inf = Tensor::new(&[f64::INFINITY, 0.0], &Device::Cpu).unwrap();
    let ints = Tensor::new(&[1i64, 2], &Device::Cpu).unwrap();
    let half = ones(DType::F32).to_dtype(DType::BF16).unwrap();
    for method in ALL {
        let options = OdeOptions::new(method);
        for x in [&nan, &inf, &ints, &half] {
            assert_eq!(invalid(solve(&decay, x, &grid, &options)), "x_init");
        }
    }
}

#[test]
fn mismatched_velocities_are_rejected() {
    let wrong_shape =
        |x: &Tensor, _t: &Tensor| -> Result<Tensor, SamplerError> { Ok(x.flatten_all()?) };
    let wrong_dtype =
        |x: &Tensor, _t: &Tensor| -> Result<Tensor, SamplerError> { Ok(x.to_dtype(DType::F64)?) };
    let x = ones(DType::F32);
    for method in ALL {
        let options = OdeOptions::new(method);
        assert_eq!(
            invalid(solve(&wrong_shape, &x, &unit(DType::F32), &options)),
            "field"
        );
        assert_eq!(
            invalid(solve(&wrong_dtype, &x, &unit(DType::F32), &options)),
            "field"
        );
    }
}

#[test]
fn non_finite_states_stop_every_method() {
    let blows_up = |x: &Tensor, t: &Tensor| -> Result<Tensor, SamplerError> {
        let t = t.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let scale = if t > 0.5 { f64::NAN } else { 1.0 };
        Ok((x * scale)?)
    };
    let x = ones(DType::F32);
    for method in ALL {
        let options = OdeOptions::new(method).with_step_size(0.1);
        let options = if method.is_adaptive() {
            OdeOptions::new(method)
        } else {
            options
        };
        match solve(&blows_up, &x, &unit(DType::F32), &options) {
            Err(SamplerError::NonFinite { t }) => assert!(t > 0.5, "{method:?}: {t}"),
            other => panic!("{method:?}: expected NonFinite, got {other:?}"),
        }
    }
}

#[test]
fn dopri5_stops_at_max_steps() {
    let options = OdeOptions::new(OdeMethod::Dopri5)
        .with_tolerances(1e-12, 1e-12)
        .with_max_steps(3);
    match solve(&decay, &ones(DType::F64), &unit(DType::F64), &options) {
        Err(SamplerError::TooManySteps {
            max_steps,
            reached,
            target,
        }) => {
            assert_eq!(max_steps, 3);
            assert!(reached < 1.0);
            assert_eq!(target, 1.0);
        }
        other => panic!("expected TooManySteps, got {other:?}"),
    }
}

#[test]
fn dopri5_reports_step_size_underflow() {
    let grid = TimeGrid::new(&[1e17, 1e17 + 1024.0], DType::F64).unwrap();
    let options = OdeOptions::new(OdeMethod::Dopri5);
    match solve(&decay, &ones(DType::F64), &grid, &options) {
        Err(SamplerError::StepSizeUnderflow { t, .. }) => assert_eq!(t, 1e17),
        other => panic!("expected StepSizeUnderflow, got {other:?}"),
    }
}

#[test]
fn intermediate_grid_points_are_interpolated_linearly() {
    let grid = TimeGrid::new(&[0.0, 0.25, 1.0], DType::F64).unwrap();
    let options = OdeOptions::new(OdeMethod::Rk4)
        .with_step_size(0.5)
        .with_intermediates(true);
    let x = solve(&cubic, &zeros(DType::F64), &grid, &options).unwrap();
    let sol = x.intermediates.unwrap();
    let mid = values(&sol.get(1).unwrap());
    assert!(
        mid.iter().all(|v| (v - 0.125 * 0.5).abs() < 1e-15),
        "{mid:?}"
    );
    assert_eq!(x.stats.nfe, 8);
}

#[test]
fn step_size_grids_are_exposed_in_user_time() {
    let grid = TimeGrid::new(&[1.0, 0.0], DType::F32).unwrap();
    let g = fixed_step_grid(&grid, FixedSteps::Size(0.1), 100).unwrap();
    assert_eq!(g.len(), 11);
    assert_eq!(g[9], 0.09999996423721313);
    assert_eq!(g[10], 0.0);
    let grid = TimeGrid::new(&[0.0, 0.3, 1.0], DType::F64).unwrap();
    let g = fixed_step_grid(&grid, FixedSteps::GridPoints, 100).unwrap();
    assert_eq!(g, [0.0, 0.3, 1.0]);
}

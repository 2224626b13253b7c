//! Benchmark: the samplers' own arithmetic per step (the network excluded) on a (64,1,64,64) f32
//! state, for every ODE method and for the DDIM / DDPM step.
//!
//! The target compares this with one network evaluation of the CPU_SMALL DiT at batch 64
//! (input 32, patch 4, in 8, out 1, hidden 128, depth 4, heads 4): at most 5%. The ratio printed
//! is a whole step's arithmetic over ONE network evaluation, so rk4 (4 evaluations per step) and
//! dopri5 (6 per attempt) are judged conservatively.
//!
//! Run with `just bench-solvers` (or `cargo bench --bench solver_step`).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use flowrun::model::dit::{Dit, DitConfig};
use flowrun::model::{ModelInput, VelocityModel};
use flowrun::path::diffusion::{BetaSchedule, DiffusionSchedule};
use flowrun::sampler::ddim::{ddim_step, DdimConfig};
use flowrun::sampler::ddpm::{ddpm_step, DdpmConfig};
use flowrun::sampler::error::SamplerError;
use flowrun::sampler::ode::{solve, uniform_steps, OdeMethod, OdeOptions, TimeGrid};
use std::time::Instant;

const SHAPE: (usize, usize, usize, usize) = (64, 1, 64, 64);

/// Median wall time in ms of one CPU_SMALL DiT forward at batch 64.
fn dit_eval_ms() -> Result<f64, Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    let cfg = DitConfig::cpu_small();
    let dit = Dit::init(&cfg, &VarMap::new(), &dev)?;
    let input = ModelInput {
        x: Tensor::randn(
            0f32,
            1.0,
            (64, cfg.in_channels, cfg.input_size, cfg.input_size),
            &dev,
        )?,
        t: Tensor::full(500f32, 64, &dev)?,
    };
    dit.forward(&input)?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        dit.forward(&input)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[2])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dit_ms = dit_eval_ms()?;
    let ratio = |ms: f64| format!("{:.2}% of one DiT evaluation", 100.0 * ms / dit_ms);
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, SHAPE, &dev)?;
    let v = Tensor::randn(0f32, 1.0, SHAPE, &dev)?;
    let field = |_x: &Tensor, _t: &Tensor| -> Result<Tensor, SamplerError> { Ok(v.clone()) };
    println!(
        "sampler arithmetic per step, state {SHAPE:?} f32, network excluded (median of 5 runs)"
    );
    for method in [OdeMethod::Euler, OdeMethod::Midpoint, OdeMethod::Rk4] {
        let (grid, options) = uniform_steps(method, 50, DType::F32)?;
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let sol = solve(&field, &x, &grid, &options)?;
            times.push(t.elapsed().as_secs_f64() * 1e3 / sol.stats.n_accepted as f64);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "  {:<10} {:8.3} ms/step   {}",
            method.name(),
            times[2],
            ratio(times[2])
        );
    }
    let linear =
        |x: &Tensor, t: &Tensor| -> Result<Tensor, SamplerError> { Ok(x.neg()?.broadcast_add(t)?) };
    let grid = TimeGrid::unit_interval(DType::F32)?;
    let options = OdeOptions::new(OdeMethod::Dopri5).with_tolerances(1e-5, 1e-5);
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let sol = solve(&linear, &x, &grid, &options)?;
        let attempts = (sol.stats.n_accepted + sol.stats.n_rejected) as f64;
        times.push(t.elapsed().as_secs_f64() * 1e3 / attempts);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "  {:<10} {:8.3} ms/attempted step (field -x+t included)   {}",
        "dopri5",
        times[2],
        ratio(times[2])
    );
    let schedule = DiffusionSchedule::new(1000, 1e-4, 0.02, BetaSchedule::SquaredcosCapV2)?;
    let noise = Tensor::randn(0f32, 1.0, SHAPE, &dev)?;
    let ddim = DdimConfig {
        eta: 1.0,
        ..DdimConfig::default()
    };
    let ddpm = DdpmConfig::default();
    let mut t_ddim = Vec::new();
    let mut t_ddpm = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..20 {
            ddim_step(&schedule, &ddim, &x, 500, 480, &v, Some(&noise))?;
        }
        t_ddim.push(t.elapsed().as_secs_f64() * 1e3 / 20.0);
        let t = Instant::now();
        for _ in 0..20 {
            ddpm_step(&schedule, &ddpm, &x, 500, 480, &v, Some(&noise))?;
        }
        t_ddpm.push(t.elapsed().as_secs_f64() * 1e3 / 20.0);
    }
    t_ddim.sort_by(f64::total_cmp);
    t_ddpm.sort_by(f64::total_cmp);
    println!(
        "  {:<10} {:8.3} ms/step (eta=1)   {}",
        "ddim",
        t_ddim[2],
        ratio(t_ddim[2])
    );
    println!(
        "  {:<10} {:8.3} ms/step (fixed_small)   {}",
        "ddpm",
        t_ddpm[2],
        ratio(t_ddpm[2])
    );
    println!(
        "one CPU_SMALL DiT evaluation at batch 64: {dit_ms:.1} ms; target: every sampler <= 5%"
    );
    Ok(())
}

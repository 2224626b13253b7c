//! Benchmark: training samples/s (forward, backward, AdamW lr 1e-4 wd 0.01; CondOT flow-matching
//! MSE) and sampling network evaluations/s (20-step Euler at batch 16), for CPU_SMALL and NAMO64,
//! next to the PyTorch 2.15 eager figures (2 threads, same kind of machine) of issue 4.
//!
//! * CPU_SMALL: input 32, patch 4, hidden 128, depth 4, heads 4; training at batch 64.
//! * NAMO64: input 64, patch 4, hidden 256, depth 6, heads 4; training at batch 16.
//!
//! Each measurement is a warm-up then a few timed iterations (the median is reported), so the
//! run stays short; figures taken while other work shares the cores are provisional. The table
//! is printed and written to `<target dir>/train_step.json`.
//!
//! Run with `just bench-train` (or `cargo bench --bench train_step`).

use std::time::Instant;

use candle_core::{Device, Tensor};
use flowrun::model::dit::DitConfig;
use flowrun::model::generative::{GenerativeConfig, GenerativeModule};
use flowrun::rng::Rng;
use flowrun::sampler::ode::OdeMethod;
use flowrun::sampler::plan::SamplerPlan;
use flowrun::train::optim::{AdamW, AdamWConfig};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// One network configuration with its batch sizes and PyTorch reference ranges.
struct Case {
    name: &'static str,
    net: DitConfig,
    train_batch: usize,
    timed_steps: usize,
    timed_solves: usize,
    torch_train: (f64, f64),
    torch_sample: (f64, f64),
}

/// Sampling batch and Euler steps.
const SAMPLE_BATCH: usize = 16;
const EULER_STEPS: usize = 20;

fn batch(net: &DitConfig, b: usize, rng: &mut Rng, dev: &Device) -> Res<(Tensor, Tensor)> {
    let s = net.input_size;
    let context = rng
        .rand((b, 5, s, s), dev)?
        .ge(0.5f32)?
        .to_dtype(candle_core::DType::F32)?
        .affine(2.0, -1.0)?;
    let target = rng
        .rand((b, 1, s, s), dev)?
        .ge(0.5f32)?
        .to_dtype(candle_core::DType::F32)?
        .affine(2.0, -1.0)?;
    Ok((context, target))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median training samples/s over `timed` steps after one warm-up step.
fn train_rate(case: &Case, dev: &Device) -> Res<f64> {
    let mut rng = Rng::new(0);
    let config = GenerativeConfig::flow_matching(case.net.clone());
    let module = GenerativeModule::from_config(config, dev, &mut rng.fork(b"init"))?;
    let mut opt = AdamW::new(
        module.parameters(),
        AdamWConfig {
            lr: 1e-4,
            weight_decay: 0.01,
            ..AdamWConfig::default()
        },
    )?;
    let (context, target) = batch(&case.net, case.train_batch, &mut rng, dev)?;
    let mut times = Vec::new();
    for i in 0..=case.timed_steps {
        let start = Instant::now();
        let terms = module.loss(&context, &target, &mut rng)?;
        opt.step(&terms.total.backward()?)?;
        if i > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(case.train_batch as f64 / median(times))
}

/// Median network evaluations/s of a 20-step Euler solve at batch 16, after one warm-up
/// evaluation; also returns the evaluations per solve.
fn sample_rate(case: &Case, dev: &Device) -> Res<(f64, usize)> {
    let mut rng = Rng::new(1);
    let config = GenerativeConfig::flow_matching(case.net.clone());
    let module = GenerativeModule::from_config(config, dev, &mut rng.fork(b"init"))?;
    let (context, _) = batch(&case.net, SAMPLE_BATCH, &mut rng, dev)?;
    let plan = SamplerPlan::Ode {
        method: OdeMethod::Euler,
        steps: EULER_STEPS,
        atol: 1e-5,
        rtol: 1e-5,
        max_steps: 10_000,
    };
    let warm = SamplerPlan::Ode {
        method: OdeMethod::Euler,
        steps: 1,
        atol: 1e-5,
        rtol: 1e-5,
        max_steps: 10_000,
    };
    module.sample(&context, &warm, 0)?;
    let mut rates = Vec::new();
    let mut nfe = 0;
    for seed in 0..case.timed_solves {
        let start = Instant::now();
        let out = module.sample(&context, &plan, seed as u64)?;
        nfe = out.stats.nfe;
        rates.push(nfe as f64 / start.elapsed().as_secs_f64());
    }
    Ok((median(rates), nfe))
}

fn main() -> Res<()> {
    let dev = Device::Cpu;
    let threads = candle_core::utils::get_num_threads();
    let cases = [
        Case {
            name: "CPU_SMALL",
            net: DitConfig::cpu_small(),
            train_batch: 64,
            timed_steps: 3,
            timed_solves: 2,
            torch_train: (179.0, 263.0),
            torch_sample: (32.0, 38.0),
        },
        Case {
            name: "NAMO64",
            net: DitConfig::namo64(),
            train_batch: 16,
            timed_steps: 2,
            timed_solves: 1,
            torch_train: (10.5, 13.7),
            torch_sample: (1.9, 2.4),
        },
    ];
    println!(
        "training step (forward, backward, AdamW lr 1e-4 wd 0.01; CondOT flow-matching MSE) and \
         20-step Euler sampling at batch {SAMPLE_BATCH}; candle CPU, {threads} threads; \
         PyTorch 2.15 eager, 2 threads. Provisional: the cores may be shared."
    );
    println!(
        "{:<10} {:<24} {:>10} {:>14} {:>10}",
        "config", "measure", "flowrun", "pytorch", "ratio*"
    );
    let mut rows = Vec::new();
    for case in &cases {
        let train = train_rate(case, &dev)?;
        let (sample, nfe) = sample_rate(case, &dev)?;
        for (measure, value, (lo, hi)) in [
            (
                format!("train samples/s (b={})", case.train_batch),
                train,
                case.torch_train,
            ),
            (
                format!("sample evals/s (b={SAMPLE_BATCH})"),
                sample,
                case.torch_sample,
            ),
        ] {
            println!(
                "{:<10} {:<24} {:>10.2} {:>14} {:>9.2}x",
                case.name,
                measure,
                value,
                format!("{lo}-{hi}"),
                value / hi
            );
            rows.push(serde_json::json!({
                "config": case.name,
                "measure": measure,
                "flowrun": value,
                "pytorch_low": lo,
                "pytorch_high": hi,
                "ratio_to_pytorch_high": value / hi,
            }));
        }
        if nfe != EULER_STEPS {
            return Err(format!("{}: Euler took {nfe} evaluations", case.name).into());
        }
    }
    println!("* ratio = flowrun / upper end of the PyTorch range (> 1 is faster than PyTorch)");
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_string());
    std::fs::create_dir_all(&dir)?;
    let file = std::path::Path::new(&dir).join("train_step.json");
    let report = serde_json::json!({
        "benchmark": "train_step",
        "threads": threads,
        "provisional": true,
        "rows": rows,
    });
    std::fs::write(&file, serde_json::to_string_pretty(&report)?)?;
    println!("written to {}", file.display());
    Ok(())
}

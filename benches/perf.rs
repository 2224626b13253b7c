//! The performance harness of issue 9: one run, one table, one JSON file.
//!
//! * `train --cfg job` wall time (process start included; median of 20 runs).
//! * sgemm 2048² through candle's matmul and through the fused kernels' product (OpenBLAS when
//!   the system has it, see `kernels::set_blas`), for the ceiling each path's gemm reaches.
//! * Training samples/s (forward, backward, AdamW lr 1e-4 wd 0.01; CondOT flow-matching MSE)
//!   of CPU_SMALL at batch 64 and NAMO64 at batch 16, and 20-step Euler sampling evaluations/s
//!   at batch 16 (median of 3 solves), each with the fused kernels on and off
//!   (`FLOWRUN_FUSED`), steps interleaved so that both paths see the same machine load.
//! * Achieved GFLOP/s from the FLOP counts, the fraction of the 198 GFLOP/s f32 peak,
//!   the fraction of this run's sgemm rate (which follows the machine's load, unlike the peak),
//!   and the process's peak RSS.
//! * The same training and sampling figures from PyTorch on this machine, in this run
//!   (`benches/torch_reference.py`, run just before and just after flowrun's measurements of
//!   each configuration; the table has the mean of the two, the notes both), when a
//!   Python with torch is found: `TORCH_REFERENCE_PYTHON`, else `target/torch-venv/bin/python`
//!   (`just install-torch-reference`), else `python3`.
//!
//! Ratios are flowrun over the upper end of the PyTorch 2.15 eager range (2 threads, same kind
//! of machine), and over PyTorch measured in this run. The table is printed and written to
//! `<target dir>/bench/perf.json`. Run with `just bench` (or `cargo bench --bench perf`).

use std::process::Command;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use flowrun::model::dit::DitConfig;
use flowrun::model::generative::{GenerativeConfig, GenerativeModule};
use flowrun::model::kernels;
use flowrun::rng::Rng;
use flowrun::sampler::ode::OdeMethod;
use flowrun::sampler::plan::SamplerPlan;
use flowrun::train::optim::{AdamW, AdamWConfig};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// f32 peak of the reference machine: 2 Zen 3 cores × 32 FLOP/cycle × 3.1 GHz.
const PEAK_GFLOPS: f64 = 198.0;
/// Sampling batch and Euler steps.
const SAMPLE_BATCH: usize = 16;
const EULER_STEPS: usize = 20;
/// Timed sampling solves per mode.
const SAMPLE_REPEATS: usize = 3;

/// One network configuration with its batch size, FLOP counts and PyTorch ranges.
struct Case {
    name: &'static str,
    /// Its name for `torch_reference.py`.
    torch_name: &'static str,
    net: DitConfig,
    train_batch: usize,
    timed_steps: usize,
    /// FLOPs per sample of one forward pass and of forward + backward (from the issue).
    flops_fwd: f64,
    flops_train: f64,
    torch_train: (f64, f64),
    torch_sample: (f64, f64),
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn batch(net: &DitConfig, b: usize, rng: &mut Rng, dev: &Device) -> Res<(Tensor, Tensor)> {
    let s = net.input_size;
    let pm1 =
        |t: Tensor| -> Res<Tensor> { Ok(t.ge(0.5f32)?.to_dtype(DType::F32)?.affine(2.0, -1.0)?) };
    Ok((
        pm1(rng.rand((b, 5, s, s), dev)?)?,
        pm1(rng.rand((b, 1, s, s), dev)?)?,
    ))
}

/// The two kernel paths, in the order they are interleaved.
const MODES: [(bool, &str); 2] = [(true, "fused"), (false, "plain")];

/// Median training samples/s per mode, steps of the two modes interleaved after one warm-up
/// step each.
fn train_rates(case: &Case, dev: &Device) -> Res<[f64; 2]> {
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
    let mut times = [Vec::new(), Vec::new()];
    for i in 0..=case.timed_steps {
        for (m, (on, _)) in MODES.iter().enumerate() {
            kernels::set_fused(*on);
            let start = Instant::now();
            let terms = module.loss(&context, &target, &mut rng)?;
            opt.step(&terms.total.backward()?)?;
            if i > 0 {
                times[m].push(start.elapsed().as_secs_f64());
            }
        }
    }
    Ok(times.map(|t| case.train_batch as f64 / median(t)))
}

/// Network evaluations/s of a 20-step Euler solve at batch 16 per mode (median of
/// [`SAMPLE_REPEATS`] solves, the modes interleaved), after a one-step warm-up solve each.
fn sample_rates(case: &Case, dev: &Device) -> Res<[f64; 2]> {
    let mut rng = Rng::new(1);
    let config = GenerativeConfig::flow_matching(case.net.clone());
    let module = GenerativeModule::from_config(config, dev, &mut rng.fork(b"init"))?;
    let (context, _) = batch(&case.net, SAMPLE_BATCH, &mut rng, dev)?;
    let plan = |steps| SamplerPlan::Ode {
        method: OdeMethod::Euler,
        steps,
        atol: 1e-5,
        rtol: 1e-5,
        max_steps: 10_000,
    };
    for (on, _) in MODES {
        kernels::set_fused(on);
        module.sample(&context, &plan(1), 0)?;
    }
    let mut rates = [Vec::new(), Vec::new()];
    for _ in 0..SAMPLE_REPEATS {
        for (m, (on, _)) in MODES.iter().enumerate() {
            kernels::set_fused(*on);
            let start = Instant::now();
            let out = module.sample(&context, &plan(EULER_STEPS), 7)?;
            if out.stats.nfe != EULER_STEPS {
                return Err(
                    format!("{}: Euler took {} evaluations", case.name, out.stats.nfe).into(),
                );
            }
            rates[m].push(out.stats.nfe as f64 / start.elapsed().as_secs_f64());
        }
    }
    Ok(rates.map(median))
}

/// GFLOP/s at 2048² (median of 3 after a warm-up) of candle's f32 matmul and of the fused
/// kernels' product (`kernels::linear` without bias, through OpenBLAS when it is loaded).
fn sgemm_gflops(dev: &Device) -> Res<(f64, f64)> {
    let n = 2048;
    let a = Tensor::randn(0f32, 1.0, (n, n), dev)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), dev)?;
    let bt = b.t()?.contiguous()?;
    let rate = |product: &dyn Fn() -> candle_core::Result<Tensor>| -> Res<f64> {
        product()?;
        let times = (0..3)
            .map(|_| -> Res<f64> {
                let start = Instant::now();
                product()?;
                Ok(start.elapsed().as_secs_f64())
            })
            .collect::<Res<Vec<_>>>()?;
        Ok(2.0 * (n as f64).powi(3) / median(times) / 1e9)
    };
    kernels::set_fused(true);
    Ok((
        rate(&|| a.matmul(&b))?,
        rate(&|| kernels::linear(&a, &bt, None))?,
    ))
}

/// PyTorch's figures for one configuration, measured on this machine now.
struct TorchRates {
    /// Version string torch reports.
    version: String,
    /// Training samples/s and 20-step Euler sampling evaluations/s.
    train: f64,
    sample: f64,
}

/// The Python that runs `torch_reference.py`.
fn torch_python() -> String {
    if let Ok(python) = std::env::var("TORCH_REFERENCE_PYTHON") {
        return python;
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/torch-venv/bin/python");
    if std::path::Path::new(venv).exists() {
        venv.to_string()
    } else {
        "python3".to_string()
    }
}

/// Runs `benches/torch_reference.py` for `config` (`cpu_small` or `namo64`); the error says
/// why it could not (no torch, for one).
fn torch_rates(config: &str) -> Res<TorchRates> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/torch_reference.py");
    let out = Command::new(torch_python())
        .args([script, config])
        .output()?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or("no output").to_string();
        return Err(last.into());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))?;
    let number = |key: &str| -> Res<f64> {
        json[key]
            .as_f64()
            .ok_or_else(|| format!("torch_reference.py printed no '{key}'").into())
    };
    Ok(TorchRates {
        version: json["torch"].as_str().unwrap_or("?").to_string(),
        train: number("train")?,
        sample: number("sample")?,
    })
}

/// Median wall time of `train --cfg job` in ms (20 runs after 3 warm-up runs).
fn cfg_job_ms() -> Res<f64> {
    let exe = env!("CARGO_BIN_EXE_train");
    let dir = std::env::temp_dir();
    let mut times = Vec::new();
    for i in 0..23 {
        let start = Instant::now();
        let out = Command::new(exe)
            .current_dir(&dir)
            .args(["--cfg", "job"])
            .output()?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
        }
        if i >= 3 {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(median(times))
}

/// Peak resident set size of this process in MiB (`VmHWM`).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> Res<()> {
    kernels::tune_allocator();
    let dev = Device::Cpu;
    let threads = candle_core::utils::get_num_threads();
    let cases = [
        Case {
            name: "CPU_SMALL",
            torch_name: "cpu_small",
            net: DitConfig::cpu_small(),
            train_batch: 64,
            timed_steps: 4,
            flops_fwd: 112.4e6,
            flops_train: 334.9e6,
            torch_train: (179.0, 263.0),
            torch_sample: (32.0, 38.0),
        },
        Case {
            name: "NAMO64",
            torch_name: "namo64",
            net: DitConfig::namo64(),
            train_batch: 16,
            timed_steps: 3,
            flops_fwd: 2.843e9,
            flops_train: 8.511e9,
            torch_train: (10.5, 13.7),
            torch_sample: (1.9, 2.4),
        },
    ];
    let cfg_ms = cfg_job_ms()?;
    let (sgemm, sgemm_fused) = sgemm_gflops(&dev)?;
    let blas = kernels::blas_description();
    println!(
        "flowrun perf: candle CPU, {threads} threads; PyTorch 2.15 eager, 2 threads; \
         f32 peak {PEAK_GFLOPS} GFLOP/s"
    );
    println!("fused kernels' sgemm: {blas}");
    println!(
        "sgemm 2048² this run: candle {sgemm:.1} GFLOP/s ({:.0}% of peak), fused kernels \
         {sgemm_fused:.1} GFLOP/s ({:.0}% of peak)",
        100.0 * sgemm / PEAK_GFLOPS,
        100.0 * sgemm_fused / PEAK_GFLOPS
    );
    println!("train --cfg job: {cfg_ms:.2} ms (median of 20 processes)");
    println!(
        "{:<10} {:<22} {:<6} {:>9} {:>12} {:>8} {:>9} {:>8} {:>8} {:>7} {:>7}",
        "config",
        "measure",
        "path",
        "flowrun",
        "pytorch",
        "ratio*",
        "torch now",
        "ratio‡",
        "GFLOP/s",
        "%peak",
        "%sgemm†"
    );
    let mut rows = Vec::new();
    let mut torch_notes = Vec::new();
    for case in &cases {
        let torch_before = torch_rates(case.torch_name);
        let train = train_rates(case, &dev)?;
        let sample = sample_rates(case, &dev)?;
        let torch = torch_before
            .and_then(|before| Ok((before, torch_rates(case.torch_name)?)))
            .map_err(|e| torch_notes.push(format!("{}: not run ({e})", case.name)))
            .ok()
            .map(|(before, after)| {
                torch_notes.push(format!(
                    "{}: torch {}, before/after: train {:.2}/{:.2}, sample {:.2}/{:.2}",
                    case.name,
                    before.version,
                    before.train,
                    after.train,
                    before.sample,
                    after.sample
                ));
                TorchRates {
                    version: before.version,
                    train: (before.train + after.train) / 2.0,
                    sample: (before.sample + after.sample) / 2.0,
                }
            });
        let measures = [
            (
                format!("train samples/s b={}", case.train_batch),
                train,
                case.torch_train,
                torch.as_ref().map(|t| t.train),
                case.flops_train,
            ),
            (
                format!("sample evals/s b={SAMPLE_BATCH}"),
                sample,
                case.torch_sample,
                torch.as_ref().map(|t| t.sample),
                case.flops_fwd * SAMPLE_BATCH as f64,
            ),
        ];
        for (measure, values, (lo, hi), torch_now, flops) in measures {
            for (m, (_, path)) in MODES.iter().enumerate() {
                let value = values[m];
                let gflops = value * flops / 1e9;
                let path_sgemm = if m == 0 { sgemm_fused } else { sgemm };
                let (now, ratio_now) = match torch_now {
                    Some(t) => (format!("{t:.2}"), format!("{:.2}x", value / t)),
                    None => ("-".to_string(), "-".to_string()),
                };
                println!(
                    "{:<10} {:<22} {:<6} {:>9.2} {:>12} {:>7.2}x {:>9} {:>8} {:>8.1} {:>6.1}% {:>6.0}%",
                    case.name,
                    measure,
                    path,
                    value,
                    format!("{lo}-{hi}"),
                    value / hi,
                    now,
                    ratio_now,
                    gflops,
                    100.0 * gflops / PEAK_GFLOPS,
                    100.0 * gflops / path_sgemm
                );
                rows.push(serde_json::json!({
                    "config": case.name,
                    "measure": measure,
                    "path": path,
                    "flowrun": value,
                    "pytorch_low": lo,
                    "pytorch_high": hi,
                    "ratio_to_pytorch_high": value / hi,
                    "pytorch_this_run": torch_now,
                    "ratio_to_pytorch_this_run": torch_now.map(|t| value / t),
                    "gflops": gflops,
                    "fraction_of_peak": gflops / PEAK_GFLOPS,
                    "fraction_of_sgemm": gflops / path_sgemm,
                }));
            }
        }
    }
    let rss = peak_rss_mib();
    println!("* ratio = flowrun / upper end of the PyTorch range (> 1 is faster than PyTorch)");
    println!(
        "† against the sgemm that path uses: the fused kernels' for fused, candle's for plain"
    );
    println!(
        "‡ ratio = flowrun / PyTorch eager (2 threads), mean of runs just before and after flowrun's:"
    );
    println!("  {}", torch_notes.join("\n  "));
    if let Some(rss) = rss {
        println!("peak RSS of this process: {rss:.0} MiB");
    }
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_string());
    let dir = std::path::Path::new(&dir).join("bench");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("perf.json");
    let report = serde_json::json!({
        "benchmark": "perf",
        "threads": threads,
        "peak_gflops": PEAK_GFLOPS,
        "sgemm_2048_gflops": sgemm,
        "sgemm_2048_gflops_fused": sgemm_fused,
        "fused_sgemm": blas,
        "cfg_job_ms": cfg_ms,
        "peak_rss_mib": rss,
        "pytorch_this_run": torch_notes,
        "rows": rows,
    });
    std::fs::write(&file, serde_json::to_string_pretty(&report)?)?;
    println!("written to {}", file.display());
    Ok(())
}

//! The GenerativeModule: network input, loss conventions and components, learning on one fixed
//! batch (flow matching and diffusion), seeded sampling, EMA evaluation and mixed precision.

mod common;

use candle_core::{DType, Device, Tensor};
use common::golden::{self, Case, Report};
use flowrun::config::schema::{
    AffinePathSettings, AffineScheduler, BetaSchedule, DiTSettings, DiffusionPathSettings,
    DiffusionSamplerSettings, DiffusionSamplerType, ModelSettings, OdeMethod, OdeSamplerSettings,
    PathSettings, PredictionType, SamplerSettings, TimeSampling, TimestepSpacing, VarianceType,
};
use flowrun::model::dit::DitConfig;
use flowrun::model::ema::Ema;
use flowrun::model::generative::loss::mse;
use flowrun::model::generative::{GenerativeConfig, GenerativeModule, InputLayout};
use flowrun::path::affine::{AffineProbPath, FlowTime};
use flowrun::path::diffusion::{self, DiffusionSchedule};
use flowrun::path::scheduler::AffineScheduler as Scheduler;
use flowrun::path::settings::ProbPath;
use flowrun::rng::Rng;
use flowrun::sampler::plan::SamplerPlan;
use flowrun::train::optim::{AdamW, AdamWConfig};

type Res = Result<(), Box<dyn std::error::Error>>;

const DEV: Device = Device::Cpu;

/// A 16x16 network: patch 4 (16 tokens), hidden 64, depth 2, 4 heads.
fn tiny_net() -> DitConfig {
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

fn tiny_settings(path: PathSettings, sampler: SamplerSettings, time_scale: f64) -> ModelSettings {
    let n = tiny_net();
    ModelSettings {
        net: DiTSettings {
            input_size: n.input_size,
            patch_size: n.patch_size,
            in_channels: n.in_channels,
            out_channels: n.out_channels,
            hidden_size: n.hidden_size,
            depth: n.depth,
            num_heads: n.num_heads,
            mlp_ratio: n.mlp_ratio,
        },
        path,
        sampler,
        time_scale,
        time_sampling: TimeSampling::LogitNormal,
        logit_normal_mean: 0.0,
        logit_normal_std: 1.0,
        aux_loss_weight: 0.1,
        ema_decay: 0.999,
        ema_warmup: true,
        ema_for_eval: true,
    }
}

fn fm_settings(method: OdeMethod, steps: usize) -> ModelSettings {
    tiny_settings(
        PathSettings::Affine(AffinePathSettings {
            scheduler: AffineScheduler::CondOt,
            beta_min: 0.1,
            beta_max: 20.0,
            exponent: 1.0,
        }),
        SamplerSettings::Ode(OdeSamplerSettings {
            method,
            steps,
            atol: 1e-5,
            rtol: 1e-5,
            max_steps: 1000,
        }),
        1000.0,
    )
}

fn diffusion_settings(
    prediction_type: PredictionType,
    sampler_type: DiffusionSamplerType,
    eta: f64,
) -> ModelSettings {
    tiny_settings(
        PathSettings::Diffusion(DiffusionPathSettings {
            num_train_timesteps: 100,
            beta_schedule: BetaSchedule::Linear,
            beta_start: 1e-4,
            beta_end: 0.02,
            prediction_type,
        }),
        SamplerSettings::Diffusion(DiffusionSamplerSettings {
            sampler_type,
            steps: 10,
            eta,
            timestep_spacing: TimestepSpacing::Leading,
            steps_offset: 0,
            set_alpha_to_one: false,
            clip_sample: true,
            clip_sample_range: 1.0,
            variance_type: VarianceType::FixedSmall,
        }),
        1.0,
    )
}

/// A fixed batch: random binary context masks and a target that is a function of them.
fn batch(b: usize, seed: u64) -> Result<(Tensor, Tensor), candle_core::Error> {
    let mut rng = Rng::new(seed);
    let context = rng
        .rand((b, 5, 16, 16), &DEV)?
        .ge(0.5f32)?
        .to_dtype(DType::F32)?
        .affine(2.0, -1.0)?;
    let target = context
        .narrow(1, 0, 2)?
        .sum_keepdim(1)?
        .ge(0f32)?
        .to_dtype(DType::F32)?
        .affine(2.0, -1.0)?;
    Ok((context, target))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32, candle_core::Error> {
    (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
}

#[test]
fn input_channels_are_built_as_the_golden_dit_inputs() -> Res {
    let io = candle_core::safetensors::load(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/dit/dit_shared_io.safetensors"
        ),
        &DEV,
    )?;
    let x = &io["x"];
    let (_, _, h, _) = x.dims4()?;
    let layout = InputLayout::new(8, 1, h, &DEV)?;
    let rebuilt = layout.assemble(&x.narrow(1, 0, 5)?, &x.narrow(1, 7, 1)?)?;
    // Bit for bit: masks, row then column linspace(-1, 1), noisy target.
    assert_eq!(max_abs_diff(&rebuilt, x)?, 0.0);
    Ok(())
}

/// `mse` against the cfm_loss and ddpm_loss cases of losses.json.
#[test]
fn mse_follows_the_golden_loss_conventions() -> Res {
    let cases: Vec<Case> = golden::load("losses");
    let mut report = Report::default();
    let mut checked = 0;
    for case in &cases {
        let model_output = case.input("model_output").tensor(&DEV);
        let target = match case.op() {
            "cfm_loss" => {
                let path = AffineProbPath::new(Scheduler::CondOt);
                let t = FlowTime::new(case.input("t").tensor(&DEV))?;
                let x_0 = case.input("x_0").tensor(&DEV);
                path.sample(&x_0, &case.input("x_1").tensor(&DEV), &t)?.dx_t
            }
            "ddpm_loss" => {
                let cfg = &case.params["config"];
                let schedule = DiffusionSchedule::new(
                    cfg["num_train_timesteps"].as_u64().ok_or("N")? as usize,
                    cfg["beta_start"].as_f64().ok_or("beta_start")?,
                    cfg["beta_end"].as_f64().ok_or("beta_end")?,
                    cfg["beta_schedule"].as_str().ok_or("schedule")?.parse()?,
                )?;
                let pt: diffusion::PredictionType =
                    case.params["target"].as_str().ok_or("target")?.parse()?;
                schedule.training_target(
                    pt,
                    &case.input("x_0").tensor(&DEV),
                    &case.input("noise").tensor(&DEV),
                    &case.input("timesteps").tensor(&DEV),
                )?
            }
            other => return Err(format!("unknown loss op {other}").into()),
        };
        report.check(case, "losses", "loss", &mse(&model_output, &target)?);
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} loss cases");
    report.finish("losses via generative::loss::mse");
    Ok(())
}

#[test]
fn loss_components_add_up_and_repeat_for_a_seed() -> Res {
    let mut settings = fm_settings(OdeMethod::Euler, 4);
    settings.aux_loss_weight = 0.5;
    let module = GenerativeModule::new(&settings, &DEV, &mut Rng::new(1))?;
    let (context, target) = batch(3, 9)?;
    let terms = module.loss(&context, &target, &mut Rng::new(4))?;
    assert!((terms.train_loss - (terms.mse + 0.5 * terms.aux_dice)).abs() < 1e-6);
    assert_eq!(terms.total.to_scalar::<f32>()? as f64, terms.train_loss);
    assert!(terms.mse > 0.0 && terms.aux_dice > 0.0 && terms.aux_dice < 1.0);
    let names: Vec<&str> = terms.components().iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["train_loss", "mse", "aux_dice"]);
    let again = module.loss(&context, &target, &mut Rng::new(4))?;
    assert_eq!(again.train_loss.to_bits(), terms.train_loss.to_bits());
    let other = module.loss(&context, &target, &mut Rng::new(5))?;
    assert_ne!(other.train_loss, terms.train_loss);
    // Gradients reach every trainable parameter through the total.
    let grads = terms.total.backward()?;
    let with_grad = module
        .parameters()
        .iter()
        .filter(|(_, v)| grads.get(v.as_tensor()).is_some())
        .count();
    assert_eq!(with_grad, module.parameters().len());
    Ok(())
}

#[test]
fn bad_batches_are_errors_naming_the_argument() -> Res {
    let module = GenerativeModule::new(&fm_settings(OdeMethod::Euler, 4), &DEV, &mut Rng::new(1))?;
    let (context, target) = batch(2, 1)?;
    let err = module
        .loss(&context.narrow(1, 0, 4)?, &target, &mut Rng::new(0))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("context") && err.contains("(batch, 5, 16, 16)"),
        "{err}"
    );
    let err = module
        .loss(&context, &target.narrow(0, 0, 1)?, &mut Rng::new(0))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("target") && err.contains("(2, 1, 16, 16)"),
        "{err}"
    );
    let plan = module.default_plan().clone();
    assert!(module.sample(&target, &plan, 0).is_err());
    Ok(())
}

/// Trains on one fixed batch with the same times and noise every step; returns (first, last).
fn overfit(
    module: &GenerativeModule,
    steps: usize,
    lr: f64,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let (context, target) = batch(4, 2)?;
    let mut opt = AdamW::new(
        module.parameters(),
        AdamWConfig {
            lr,
            weight_decay: 0.0,
            ..AdamWConfig::default()
        },
    )?;
    let mut first = None;
    let mut last = f64::NAN;
    for _ in 0..steps {
        let terms = module.loss(&context, &target, &mut Rng::new(11))?;
        first.get_or_insert(terms.mse);
        last = terms.mse;
        opt.step(&terms.total.backward()?)?;
    }
    Ok((first.ok_or("no steps")?, last))
}

#[test]
fn a_tiny_model_overfits_one_batch_with_flow_matching() -> Res {
    let module = GenerativeModule::new(&fm_settings(OdeMethod::Euler, 4), &DEV, &mut Rng::new(3))?;
    let (first, last) = overfit(&module, 150, 3e-3)?;
    assert!(
        last * 10.0 <= first,
        "flow-matching MSE went from {first} to {last} in 150 steps, not down 10x"
    );
    Ok(())
}

#[test]
fn diffusion_loss_runs_and_decreases() -> Res {
    for pt in [
        PredictionType::Epsilon,
        PredictionType::VPrediction,
        PredictionType::Sample,
    ] {
        let settings = diffusion_settings(pt, DiffusionSamplerType::Ddim, 0.0);
        let module = GenerativeModule::new(&settings, &DEV, &mut Rng::new(3))?;
        let (first, last) = overfit(&module, 40, 3e-3)?;
        assert!(
            last < 0.5 * first,
            "{pt:?}: MSE {first} -> {last} in 40 steps"
        );
    }
    Ok(())
}

#[test]
fn sampling_is_seeded_and_reports_its_statistics() -> Res {
    let (context, _) = batch(2, 5)?;
    let settings = fm_settings(OdeMethod::Midpoint, 3);
    let module = GenerativeModule::new(&settings, &DEV, &mut Rng::new(7))?;
    // Move the zero-initialised output layer so the network is not constant.
    let (c2, t2) = batch(4, 2)?;
    let mut opt = AdamW::new(module.parameters(), AdamWConfig::default())?;
    for _ in 0..3 {
        opt.step(&module.loss(&c2, &t2, &mut Rng::new(1))?.total.backward()?)?;
    }
    let plan = module.default_plan().clone();
    let a = module.sample(&context, &plan, 42)?;
    let b = module.sample(&context, &plan, 42)?;
    let c = module.sample(&context, &plan, 43)?;
    assert_eq!(a.masks.dims(), [2, 1, 16, 16]);
    assert_eq!(max_abs_diff(&a.masks, &b.masks)?, 0.0);
    assert!(max_abs_diff(&a.masks, &c.masks)? > 0.0);
    assert_eq!((a.stats.nfe, a.stats.n_accepted), (6, 3));
    let range = a.masks.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    assert!(range <= 1.0);

    let ddpm = diffusion_settings(PredictionType::Epsilon, DiffusionSamplerType::Ddpm, 0.0);
    let module = GenerativeModule::new(&ddpm, &DEV, &mut Rng::new(7))?;
    let plan = module.default_plan().clone();
    let a = module.sample(&context, &plan, 1)?;
    let b = module.sample(&context, &plan, 1)?;
    assert_eq!(max_abs_diff(&a.masks, &b.masks)?, 0.0);
    assert_eq!(a.stats.nfe, 10);
    // An ODE solver on a diffusion path integrates the probability-flow ODE.
    let ode = SamplerPlan::Ode {
        method: flowrun::sampler::ode::OdeMethod::Euler,
        steps: 5,
        atol: 1e-5,
        rtol: 1e-5,
        max_steps: 100,
    };
    assert_eq!(module.sample(&context, &ode, 1)?.stats.nfe, 5);
    // DDIM and DDPM need a diffusion path.
    let fm = GenerativeModule::new(&settings, &DEV, &mut Rng::new(7))?;
    let err = fm.sample(&context, &plan, 1).unwrap_err().to_string();
    assert!(err.contains("diffusion path"), "{err}");
    Ok(())
}

#[test]
fn settings_set_the_time_scale_and_sampler() -> Res {
    let fm = GenerativeConfig::from_settings(&fm_settings(OdeMethod::Rk4, 7))?;
    assert_eq!(fm.time_scale, 1000.0);
    assert!(matches!(fm.path, ProbPath::Affine(_)));
    assert!(matches!(fm.sampler, SamplerPlan::Ode { steps: 7, .. }));
    let dd = GenerativeConfig::from_settings(&diffusion_settings(
        PredictionType::VPrediction,
        DiffusionSamplerType::Ddim,
        0.0,
    ))?;
    assert_eq!(dd.time_scale, 1.0);
    assert!(matches!(dd.sampler, SamplerPlan::Ddim { .. }));
    let module = GenerativeModule::new(&fm_settings(OdeMethod::Rk4, 7), &DEV, &mut Rng::new(0))?;
    let longer = fm_settings(OdeMethod::Midpoint, 30).sampler;
    assert!(matches!(
        module.plan_for(&longer)?,
        SamplerPlan::Ode { steps: 30, .. }
    ));
    let ddim = diffusion_settings(PredictionType::Epsilon, DiffusionSamplerType::Ddim, 0.0);
    assert!(module.plan_for(&ddim.sampler).is_err());
    let mut bad = fm_settings(OdeMethod::Euler, 4);
    bad.net.in_channels = 2;
    let err = GenerativeModule::new(&bad, &DEV, &mut Rng::new(0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.net.in_channels"), "{err}");
    Ok(())
}

#[test]
fn init_is_seeded() -> Res {
    let settings = fm_settings(OdeMethod::Euler, 4);
    let a = GenerativeModule::new(&settings, &DEV, &mut Rng::new(5))?;
    let b = GenerativeModule::new(&settings, &DEV, &mut Rng::new(5))?;
    for ((na, va), (nb, vb)) in a.parameters().iter().zip(&b.parameters()) {
        assert_eq!(na, nb);
        assert_eq!(max_abs_diff(va.as_tensor(), vb.as_tensor())?, 0.0, "{na}");
    }
    Ok(())
}

#[test]
fn evaluation_uses_the_ema_weights_when_configured() -> Res {
    let mut settings = fm_settings(OdeMethod::Euler, 2);
    let module = GenerativeModule::new(&settings, &DEV, &mut Rng::new(2))?;
    let mut ema = Ema::for_module(&module, settings.ema_decay, settings.ema_warmup)?;
    let (context, target) = batch(2, 3)?;
    let mut opt = AdamW::new(module.parameters(), AdamWConfig::default())?;
    for _ in 0..3 {
        opt.step(
            &module
                .loss(&context, &target, &mut Rng::new(1))?
                .total
                .backward()?,
        )?;
        ema.update(&module.parameters())?;
    }
    let loss_of = |m: &GenerativeModule| -> Result<f64, Box<dyn std::error::Error>> {
        Ok(m.loss(&context, &target, &mut Rng::new(8))?.train_loss)
    };
    let raw = loss_of(&module)?;
    let averaged = loss_of(&module.for_evaluation(Some(&ema))?)?;
    assert_ne!(raw, averaged);
    assert_eq!(loss_of(&ema.module(&module)?)?, averaged);
    assert!(module.for_evaluation(Some(&ema))?.parameters().is_empty());
    settings.ema_for_eval = false;
    let plain = GenerativeModule::new(&settings, &DEV, &mut Rng::new(2))?;
    plain.load_tensors(&module.weight_tensors())?;
    assert_eq!(loss_of(&plain.for_evaluation(Some(&ema))?)?, raw);
    Ok(())
}

#[test]
fn bf16_compute_over_f32_weights_tracks_the_f32_loss() -> Res {
    let settings = fm_settings(OdeMethod::Euler, 2);
    let mut module = GenerativeModule::new(&settings, &DEV, &mut Rng::new(2))?;
    let (context, target) = batch(2, 3)?;
    let mut opt = AdamW::new(module.parameters(), AdamWConfig::default())?;
    opt.step(
        &module
            .loss(&context, &target, &mut Rng::new(1))?
            .total
            .backward()?,
    )?;
    let full = module.loss(&context, &target, &mut Rng::new(6))?;
    module.set_compute_dtype(DType::BF16)?;
    let half = module.loss(&context, &target, &mut Rng::new(6))?;
    assert_eq!(half.total.dtype(), DType::F32);
    assert!(
        (half.mse - full.mse).abs() < 0.05 * full.mse,
        "bf16 {} vs f32 {}",
        half.mse,
        full.mse
    );
    let grads = half.total.backward()?;
    for (name, var) in module.parameters() {
        let g = grads
            .get(var.as_tensor())
            .ok_or(format!("no gradient for {name}"))?;
        assert_eq!(g.dtype(), DType::F32, "{name}");
    }
    Ok(())
}

#[test]
fn the_dice_term_stays_finite_at_the_end_of_time() -> Res {
    // sigmoid(-120) is 0 in f32: every time is t = 0, where a polynomial path's velocity-to-data
    // conversion divides 0 by 0.
    let mut settings = fm_settings(OdeMethod::Euler, 2);
    settings.path = PathSettings::Affine(AffinePathSettings {
        scheduler: AffineScheduler::Polynomial,
        beta_min: 0.1,
        beta_max: 20.0,
        exponent: 2.0,
    });
    settings.logit_normal_mean = -120.0;
    let module = GenerativeModule::new(&settings, &DEV, &mut Rng::new(1))?;
    let (context, target) = batch(2, 4)?;
    let terms = module.loss(&context, &target, &mut Rng::new(2))?;
    assert!(
        terms.train_loss.is_finite() && terms.aux_dice.is_finite(),
        "{:?}",
        terms.components()
    );
    Ok(())
}

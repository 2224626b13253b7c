//! Golden checks of the diffusion schedules, timesteps, forward process, DDIM/DDPM steps and the
//! DDPM loss against diffusers 0.42.1 (tests/golden/diffusion.json and losses.json).
//!
//! Every case of diffusion.json is dispatched on `params.op` and `params.scheduler`; an unknown
//! op or scheduler fails, and so does any output of a case that was not checked.

mod common;

use std::collections::BTreeSet;

use candle_core::{DType, Device, Tensor};
use common::golden::{self, Case, Report};
use flowrun::path::diffusion::{BetaSchedule, DiffusionSchedule, PredictionType};
use flowrun::sampler::ddim::{ddim_coefficients, ddim_prev_timestep, ddim_step, DdimConfig};
use flowrun::sampler::ddpm::{
    ddpm_coefficients, ddpm_prev_timestep, ddpm_step, DdpmConfig, VarianceType,
};
use flowrun::sampler::timesteps::{set_timesteps, TimestepSpacing};
use serde_json::Value as Json;

type Res<T> = Result<T, String>;

/// Checks the outputs of one case and remembers which were checked.
struct Checker<'a> {
    case: &'a Case,
    file: &'static str,
    report: &'a mut Report,
    checked: BTreeSet<String>,
}

impl<'a> Checker<'a> {
    fn new(case: &'a Case, file: &'static str, report: &'a mut Report) -> Self {
        Checker {
            case,
            file,
            report,
            checked: BTreeSet::new(),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.case.outputs.iter().any(|(k, _)| k == name)
    }

    fn tensor(&mut self, name: &str, got: &Tensor) {
        self.report.check(self.case, self.file, name, got);
        self.checked.insert(name.to_string());
    }

    fn ints(&mut self, name: &str, got: &[i64]) {
        self.report.check_ints(self.case, name, got);
        self.checked.insert(name.to_string());
    }

    /// Checks an `f32` array within tolerance and also bit for bit (the schedule recipe is exact).
    fn exact_f32(&mut self, name: &str, got: &[f32]) -> Res<()> {
        let t = if self.case.output(name).shape.is_empty() {
            Tensor::new(got.first().copied().ok_or("empty")?, &Device::Cpu)
        } else {
            Tensor::from_slice(got, got.len(), &Device::Cpu)
        };
        self.tensor(name, &t.map_err(|e| e.to_string())?);
        let want = &self.case.output(name).data;
        if let Some(i) = got
            .iter()
            .zip(want)
            .position(|(g, w)| g.to_bits() != (*w as f32).to_bits())
        {
            self.report.fail(
                self.case,
                format!(
                    "[{name}] not bit-exact at {i}: got {:e}, want {:e}",
                    got[i], want[i]
                ),
            );
        }
        Ok(())
    }

    fn scalar(&mut self, name: &str, value: f32) -> Res<()> {
        let t = Tensor::new(value, &Device::Cpu).map_err(|e| e.to_string())?;
        self.tensor(name, &t);
        Ok(())
    }

    fn finish(self) {
        for (name, _) in &self.case.outputs {
            if !self.checked.contains(name) {
                self.report
                    .fail(self.case, format!("output {name} was not checked"));
            }
        }
    }
}

fn field<'a>(json: &'a Json, key: &str) -> Res<&'a Json> {
    json.get(key).ok_or_else(|| format!("missing {key}"))
}

fn u64_of(json: &Json, key: &str) -> Res<u64> {
    field(json, key)?
        .as_u64()
        .ok_or_else(|| format!("{key} is not an unsigned integer"))
}

fn i64_of(json: &Json, key: &str) -> Res<i64> {
    field(json, key)?
        .as_i64()
        .ok_or_else(|| format!("{key} is not an integer"))
}

fn f64_of(json: &Json, key: &str) -> Res<f64> {
    field(json, key)?
        .as_f64()
        .ok_or_else(|| format!("{key} is not a number"))
}

fn bool_of(json: &Json, key: &str) -> Res<bool> {
    field(json, key)?
        .as_bool()
        .ok_or_else(|| format!("{key} is not a bool"))
}

fn str_of<'a>(json: &'a Json, key: &str) -> Res<&'a str> {
    field(json, key)?
        .as_str()
        .ok_or_else(|| format!("{key} is not a string"))
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The schedule of a case's `params.config`.
fn schedule_of(config: &Json) -> Res<DiffusionSchedule> {
    let kind: BetaSchedule = str_of(config, "beta_schedule")?.parse().map_err(err)?;
    DiffusionSchedule::new(
        u64_of(config, "num_train_timesteps")? as usize,
        f64_of(config, "beta_start")?,
        f64_of(config, "beta_end")?,
        kind,
    )
    .map_err(err)
}

fn check_unsupported(config: &Json) -> Res<()> {
    for key in ["thresholding", "rescale_betas_zero_snr"] {
        if bool_of(config, key)? {
            return Err(format!("{key}=true is not supported"));
        }
    }
    Ok(())
}

fn every10(values: &[f32]) -> Vec<f32> {
    values.iter().step_by(10).copied().collect()
}

fn schedule_case(case: &Case, scheduler: &str, report: &mut Report) -> Res<()> {
    let config = field(&case.params, "config")?;
    let schedule = schedule_of(config)?;
    let spacing: TimestepSpacing = str_of(config, "timestep_spacing")?.parse().map_err(err)?;
    let offset = u64_of(config, "steps_offset")? as usize;
    let mut c = Checker::new(case, "diffusion", report);
    c.exact_f32("betas_every10", &every10(schedule.betas()))?;
    c.exact_f32(
        "alphas_cumprod_every10",
        &every10(schedule.alphas_cumprod()),
    )?;
    let sum: f64 = schedule
        .alphas_cumprod()
        .iter()
        .map(|a| f64::from(*a))
        .sum();
    c.tensor(
        "alphas_cumprod_sum",
        &Tensor::new(sum, &Device::Cpu).map_err(err)?,
    );
    if c.has("betas") {
        c.exact_f32("betas", schedule.betas())?;
    }
    if c.has("alphas_cumprod") {
        c.exact_f32("alphas_cumprod", schedule.alphas_cumprod())?;
    }
    if scheduler == "DDIM" {
        let ddim = DdimConfig {
            set_alpha_to_one: bool_of(config, "set_alpha_to_one")?,
            ..DdimConfig::default()
        };
        c.exact_f32(
            "final_alpha_cumprod",
            &[ddim.final_alpha_cumprod(&schedule)],
        )?;
    }
    let counts = field(&case.params, "num_inference_steps")?
        .as_array()
        .ok_or("num_inference_steps is not a list")?;
    for n in counts {
        let n = n.as_u64().ok_or("bad num_inference_steps")? as usize;
        let ts = set_timesteps(schedule.num_train_timesteps(), n, spacing, offset).map_err(err)?;
        c.ints(&format!("timesteps_n{n}"), &ts);
    }
    c.finish();
    Ok(())
}

fn add_noise_case(case: &Case, report: &mut Report) -> Res<()> {
    let schedule = schedule_of(field(&case.params, "config")?)?;
    let dev = Device::Cpu;
    let x0 = case.input("original_samples").tensor(&dev);
    let noise = case.input("noise").tensor(&dev);
    let ts = case.input("timesteps").tensor(&dev);
    let mut c = Checker::new(case, "diffusion", report);
    c.tensor(
        "noisy_samples",
        &schedule.add_noise(&x0, &noise, &ts).map_err(err)?,
    );
    c.tensor(
        "velocity",
        &schedule.get_velocity(&x0, &noise, &ts).map_err(err)?,
    );
    c.finish();
    Ok(())
}

/// The common step inputs: schedule, prediction type, clipping, sample, model output, noise.
struct StepInputs {
    schedule: DiffusionSchedule,
    prediction_type: PredictionType,
    clip_sample: bool,
    clip_sample_range: f64,
    t: i64,
    sample: Tensor,
    model_output: Tensor,
    noise: Option<Tensor>,
}

fn step_inputs(case: &Case) -> Res<StepInputs> {
    let config = field(&case.params, "config")?;
    check_unsupported(config)?;
    let dev = Device::Cpu;
    Ok(StepInputs {
        schedule: schedule_of(config)?,
        prediction_type: str_of(config, "prediction_type")?.parse().map_err(err)?,
        clip_sample: bool_of(config, "clip_sample")?,
        clip_sample_range: f64_of(config, "clip_sample_range")?,
        t: i64_of(&case.params, "timestep")?,
        sample: case.input("sample").tensor(&dev),
        model_output: case.input("model_output").tensor(&dev),
        noise: case
            .inputs
            .iter()
            .find(|(k, _)| k == "variance_noise")
            .map(|(_, a)| a.tensor(&dev)),
    })
}

fn ddim_case(case: &Case, report: &mut Report) -> Res<()> {
    let s = step_inputs(case)?;
    let config = DdimConfig {
        eta: f64_of(&case.params, "eta")?,
        set_alpha_to_one: bool_of(field(&case.params, "config")?, "set_alpha_to_one")?,
        clip_sample: s.clip_sample,
        clip_sample_range: s.clip_sample_range,
        use_clipped_model_output: bool_of(&case.params, "use_clipped_model_output")?,
        prediction_type: s.prediction_type,
    };
    let n = u64_of(&case.params, "num_inference_steps")? as usize;
    let t_prev = ddim_prev_timestep(s.t, s.schedule.num_train_timesteps(), n).map_err(err)?;
    let coeffs = ddim_coefficients(&s.schedule, &config, s.t, t_prev).map_err(err)?;
    let out = ddim_step(
        &s.schedule,
        &config,
        &s.sample,
        s.t,
        t_prev,
        &s.model_output,
        s.noise.as_ref(),
    )
    .map_err(err)?;
    let mut c = Checker::new(case, "diffusion", report);
    c.tensor("prev_sample", &out.prev_sample);
    c.tensor("pred_original_sample", &out.pred_original_sample);
    c.ints("prev_timestep", &[t_prev]);
    c.scalar("alpha_prod_t", coeffs.alpha_prod_t)?;
    c.scalar("alpha_prod_t_prev", coeffs.alpha_prod_t_prev)?;
    c.scalar("std_dev_t", coeffs.std_dev_t)?;
    c.finish();
    Ok(())
}

fn ddpm_case(case: &Case, report: &mut Report) -> Res<()> {
    let s = step_inputs(case)?;
    let config_json = field(&case.params, "config")?;
    let config = DdpmConfig {
        variance_type: str_of(config_json, "variance_type")?
            .parse::<VarianceType>()
            .map_err(err)?,
        clip_sample: s.clip_sample,
        clip_sample_range: s.clip_sample_range,
        prediction_type: s.prediction_type,
    };
    let t_prev = if bool_of(&case.params, "set_timesteps_called")? {
        let n = u64_of(&case.params, "num_inference_steps")? as usize;
        let spacing: TimestepSpacing = str_of(config_json, "timestep_spacing")?
            .parse()
            .map_err(err)?;
        let offset = u64_of(config_json, "steps_offset")? as usize;
        let list =
            set_timesteps(s.schedule.num_train_timesteps(), n, spacing, offset).map_err(err)?;
        ddpm_prev_timestep(s.t, Some(&list)).map_err(err)?
    } else {
        ddpm_prev_timestep(s.t, None).map_err(err)?
    };
    if bool_of(&case.params, "noise_used")? != (s.t > 0) {
        return Err(format!("noise_used disagrees with t={} > 0", s.t));
    }
    let coeffs = ddpm_coefficients(&s.schedule, &config, s.t, t_prev).map_err(err)?;
    let step = |noise: Option<&Tensor>| {
        ddpm_step(
            &s.schedule,
            &config,
            &s.sample,
            s.t,
            t_prev,
            &s.model_output,
            noise,
        )
        .map_err(err)
    };
    let out = step(s.noise.as_ref())?;
    let zeros = s.sample.zeros_like().map_err(err)?;
    let mean = step(Some(&zeros))?.prev_sample;
    let mut c = Checker::new(case, "diffusion", report);
    c.tensor("prev_sample", &out.prev_sample);
    c.tensor("pred_original_sample", &out.pred_original_sample);
    c.tensor("prev_sample_mean", &mean);
    c.ints("prev_timestep", &[t_prev]);
    c.scalar("alpha_prod_t", coeffs.alpha_prod_t)?;
    c.scalar("alpha_prod_t_prev", coeffs.alpha_prod_t_prev)?;
    c.scalar("std_dev_t", coeffs.std_dev_t)?;
    c.finish();
    Ok(())
}

fn run_diffusion_case(case: &Case, report: &mut Report) -> Res<()> {
    let scheduler = str_of(&case.params, "scheduler")?;
    match (case.op(), scheduler) {
        ("schedule", "DDIM" | "DDPM") => schedule_case(case, scheduler, report),
        ("add_noise_get_velocity", "DDIM" | "DDPM") => add_noise_case(case, report),
        ("step", "DDIM") => ddim_case(case, report),
        ("step", "DDPM") => ddpm_case(case, report),
        (op, scheduler) => Err(format!("unknown op {op:?} for scheduler {scheduler:?}")),
    }
}

#[test]
fn diffusion_golden_cases() {
    let cases = golden::load("diffusion");
    assert!(!cases.is_empty(), "no diffusion cases");
    let mut report = Report::default();
    for case in &cases {
        if let Err(msg) = run_diffusion_case(case, &mut report) {
            report.fail(case, msg);
        }
    }
    report.finish("diffusion");
}

fn ddpm_loss_case(case: &Case, report: &mut Report) -> Res<()> {
    let schedule = schedule_of(field(&case.params, "config")?)?;
    let prediction_type: PredictionType = str_of(&case.params, "target")?.parse().map_err(err)?;
    let dev = Device::Cpu;
    let x0 = case.input("x_0").tensor(&dev);
    let noise = case.input("noise").tensor(&dev);
    let ts = case.input("timesteps").tensor(&dev);
    let model_output = case.input("model_output").tensor(&dev);
    let target = schedule
        .training_target(prediction_type, &x0, &noise, &ts)
        .map_err(err)?;
    let loss = (&model_output - &target)
        .and_then(|d| d.sqr())
        .and_then(|d| d.mean_all())
        .map_err(err)?;
    if loss.dtype() != DType::F32 {
        return Err(format!("loss dtype {:?}", loss.dtype()));
    }
    let mut c = Checker::new(case, "losses", report);
    c.tensor(
        "noisy_samples",
        &schedule.add_noise(&x0, &noise, &ts).map_err(err)?,
    );
    c.tensor("target", &target);
    c.tensor("loss", &loss);
    c.finish();
    Ok(())
}

#[test]
fn ddpm_loss_golden_cases() {
    let cases: Vec<Case> = golden::load("losses")
        .into_iter()
        .filter(|c| c.op() == "ddpm_loss")
        .collect();
    assert!(!cases.is_empty(), "no ddpm_loss cases");
    let mut report = Report::default();
    for case in &cases {
        if let Err(msg) = ddpm_loss_case(case, &mut report) {
            report.fail(case, msg);
        }
    }
    report.finish("ddpm_loss");
}

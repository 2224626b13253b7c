//! The shipped conf/ tree composes, resolves and fits the typed schema for every documented
//! command line, in-process (no run directories are created).

use flowrun::cli::args::CommandArgs;
use flowrun::cli::{build_repository, job_part};
use flowrun::config::loader::{parse_overrides, ConfigLoader, RunMode};
use flowrun::config::machine::MachineSettings;
use flowrun::config::node::Value;
use flowrun::config::schema::load_train_settings;
use flowrun::path::settings::ProbPath;
use flowrun::sampler::plan::SamplerPlan;

fn loader() -> ConfigLoader {
    let args = CommandArgs {
        config_path: None,
        config_name: None,
        config_dir: Vec::new(),
        cfg: None,
        resolve: false,
        package: None,
        info: None,
        multirun: false,
        help: false,
        version: false,
        overrides: Vec::new(),
    };
    ConfigLoader::new(
        build_repository(&args).unwrap(),
        MachineSettings::default(),
        "train",
    )
}

/// Composes, resolves and type-checks; returns the resolved job config.
fn check(config: &str, overrides: &[&str]) -> flowrun::config::node::Node {
    let l = loader();
    let args: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let parsed = parse_overrides(&args, RunMode::Run).unwrap();
    let composed = l
        .compose(config, &parsed, RunMode::Run)
        .unwrap_or_else(|e| panic!("{config} {overrides:?}: {e}"));
    let resolved = l
        .resolve(&composed, "")
        .unwrap_or_else(|e| panic!("{config} {overrides:?}: {e}"));
    let job = job_part(&resolved);
    if let Err(e) = load_train_settings(&job) {
        panic!("{config} {overrides:?}: {e}");
    }
    job
}

fn get(job: &flowrun::config::node::Node, key: &str) -> Value {
    job.select(key)
        .unwrap_or_else(|| panic!("no key {key}"))
        .value
        .clone()
}

#[test]
fn flow_matching_defaults() {
    let job = check("train_fb_flow_matching", &[]);
    assert_eq!(get(&job, "seed"), Value::Int(42));
    // CPU-sized by default (see the comment at the top of conf/train_fb_flow_matching.yaml).
    assert_eq!(get(&job, "batch_size"), Value::Int(16));
    assert_eq!(get(&job, "max_epochs"), Value::Int(1000));
    assert_eq!(get(&job, "trainer.max_steps"), Value::Int(1500));
    assert_eq!(get(&job, "base_lr"), Value::Float(1e-4));
    assert_eq!(get(&job, "image_size"), Value::Int(32));
    assert_eq!(
        get(&job, "model.sampler.method"),
        Value::Str("midpoint".into())
    );
    assert_eq!(get(&job, "model.sampler.steps"), Value::Int(20));
    assert_eq!(
        get(&job, "model.path.scheduler"),
        Value::Str("condot".into())
    );
    assert_eq!(get(&job, "model.net.input_size"), Value::Int(32));
    let settings = load_train_settings(&job).unwrap();
    assert_eq!(settings.model.net.hidden_size, 128);
    assert_eq!(settings.ckpt_path, None);
    assert!(!settings.early_stopping.enabled);
    assert_eq!(settings.checkpoint.last_every_n_steps, Some(250));
    assert_eq!(
        settings.trainer.nan_policy,
        flowrun::config::schema::NanPolicy::Skip
    );
    let net = flowrun::model::dit::DitConfig::from(&settings.model.net);
    net.validate().unwrap();
    assert_eq!(
        (
            net.input_size,
            net.patch_size,
            net.in_channels,
            net.out_channels
        ),
        (32, 4, 8, 1)
    );
}

#[test]
fn diffusion_defaults() {
    let job = check("train_hf_diffusion", &[]);
    assert_eq!(
        get(&job, "model.path.num_train_timesteps"),
        Value::Int(1000)
    );
    assert_eq!(
        get(&job, "model.path.beta_schedule"),
        Value::Str("squaredcos_cap_v2".into())
    );
    assert_eq!(
        get(&job, "model.path.prediction_type"),
        Value::Str("epsilon".into())
    );
    assert_eq!(
        get(&job, "model.sampler.sampler_type"),
        Value::Str("ddim".into())
    );
    assert_eq!(get(&job, "model.sampler.eta"), Value::Float(0.0));
    assert_eq!(get(&job, "model.sampler.steps"), Value::Int(50));
}

#[test]
fn documented_overrides_work_as_in_hydra() {
    let job = check(
        "train_fb_flow_matching",
        &[
            "trainer=multi_gpu",
            "batch_size=128",
            "base_lr=5e-5",
            "model.sampler.method=dopri5",
            "model.path.scheduler=cosine",
        ],
    );
    assert_eq!(get(&job, "trainer.strategy"), Value::Str("ddp".into()));
    assert_eq!(get(&job, "optimizer.lr"), Value::Float(5e-5));
    assert_eq!(
        get(&job, "model.sampler.method"),
        Value::Str("dopri5".into())
    );
    let job = check(
        "train_fb_flow_matching",
        &["path=cosine", "sampling_steps=20"],
    );
    assert_eq!(
        get(&job, "model.path.scheduler"),
        Value::Str("cosine".into())
    );
    let job = check(
        "train_fb_flow_matching",
        &["trainer=multi_gpu", "trainer.devices=4"],
    );
    assert_eq!(get(&job, "trainer.devices"), Value::Int(4));
    for path in ["condot", "cosine", "vp", "linear_vp", "polynomial"] {
        for sampler in ["euler", "midpoint", "rk4", "dopri5"] {
            check(
                "train_fb_flow_matching",
                &[&format!("path={path}"), &format!("sampler={sampler}")],
            );
        }
    }
    let job = check(
        "train_hf_diffusion",
        &[
            "model.sampler.sampler_type=ddpm",
            "model.sampler.eta=1.0",
            "model.path.beta_schedule=linear",
        ],
    );
    assert_eq!(
        get(&job, "model.sampler.sampler_type"),
        Value::Str("ddpm".into())
    );
    check("train_hf_diffusion", &["sampler=ddpm"]);
    for sampler in ["euler", "midpoint", "rk4", "dopri5"] {
        check("train_hf_diffusion", &[&format!("sampler={sampler}")]);
    }
    check("train_fb_flow_matching", &["trainer=cpu", "data=namo_npz"]);
}

#[test]
fn experiments() {
    let job = check("train_fb_flow_matching", &["+experiment=baseline"]);
    assert_eq!(get(&job, "trainer.max_steps"), Value::Int(100_000));
    assert_eq!(get(&job, "batch_size"), Value::Int(8));
    assert_eq!(get(&job, "optimizer.weight_decay"), Value::Float(1e-6));
    assert_eq!(get(&job, "trainer.gradient_clip_val"), Value::Float(10.0));
    assert_eq!(get(&job, "checkpoint.every_n_steps"), Value::Int(10_000));
    // The paper-sized model for GPUs.
    assert_eq!(get(&job, "model.net.input_size"), Value::Int(64));
    assert_eq!(get(&job, "model.net.patch_size"), Value::Int(2));
    assert_eq!(get(&job, "model.net.hidden_size"), Value::Int(384));
    assert_eq!(get(&job, "model.net.depth"), Value::Int(12));
    let job = check("train_fb_flow_matching", &["+experiment=improved"]);
    assert_eq!(get(&job, "trainer.max_steps"), Value::Int(250_000));
    assert_eq!(get(&job, "optimizer.lr"), Value::Float(5e-5));
    let job = check("train_fb_flow_matching", &["+experiment=fast"]);
    assert_eq!(get(&job, "model.path.num_train_timesteps"), Value::Int(50));
    assert_eq!(
        get(&job, "model.sampler.sampler_type"),
        Value::Str("ddim".into())
    );
    assert_eq!(get(&job, "model.sampler.steps"), Value::Int(5));
    let job = check("train_fb_flow_matching", &["+experiment=cpu"]);
    assert_eq!(get(&job, "trainer.accelerator"), Value::Str("cpu".into()));
    assert_eq!(get(&job, "data.subset"), Value::Int(5));
}

#[test]
fn a_sampler_that_cannot_sample_the_path_fails_at_compose_time() {
    let l = loader();
    let args = vec!["sampler=ddim".to_string()];
    let parsed = parse_overrides(&args, RunMode::Run).unwrap();
    let composed = l
        .compose("train_fb_flow_matching", &parsed, RunMode::Run)
        .unwrap();
    let job = job_part(&l.resolve(&composed, "").unwrap());
    let err = load_train_settings(&job).unwrap_err();
    assert_eq!(err.key, "model.sampler");
    let hint = err.hint().unwrap_or_default();
    assert!(
        hint.contains("sampler=euler, sampler=midpoint, sampler=rk4, sampler=dopri5"),
        "{err}: {hint}"
    );
}

#[test]
fn every_shipped_path_and_sampler_maps_onto_typed_samplers() {
    for (config, paths) in [
        (
            "train_fb_flow_matching",
            &["condot", "cosine", "vp", "linear_vp", "polynomial"][..],
        ),
        ("train_hf_diffusion", &["ddpm"][..]),
    ] {
        for path in paths {
            for sampler in ["euler", "midpoint", "rk4", "dopri5", "ddim", "ddpm"] {
                if config == "train_fb_flow_matching" && sampler.starts_with("dd") {
                    continue;
                }
                let l = loader();
                let args = vec![format!("path={path}"), format!("sampler={sampler}")];
                let parsed = parse_overrides(&args, RunMode::Run).unwrap();
                let job = job_part(
                    &l.resolve(&l.compose(config, &parsed, RunMode::Run).unwrap(), "")
                        .unwrap(),
                );
                let settings =
                    load_train_settings(&job).unwrap_or_else(|e| panic!("{args:?}: {e}"));
                let prob_path = ProbPath::from_settings(&settings.model.path)
                    .unwrap_or_else(|e| panic!("{args:?}: {e}"));
                let plan = SamplerPlan::from_settings(&settings.model.sampler, &prob_path)
                    .unwrap_or_else(|e| panic!("{args:?}: {e}"));
                let ode = plan.ode_setup(candle_core::DType::F32).unwrap();
                assert_eq!(ode.is_some(), !sampler.starts_with("dd"), "{args:?}");
                if let SamplerPlan::Ddim { steps, .. } | SamplerPlan::Ddpm { steps, .. } = &plan {
                    assert_eq!(steps.timesteps.len(), 50, "{args:?}");
                }
            }
        }
    }
}

#[test]
fn resume_checkpoint_and_safety_keys_take_overrides() {
    let job = check(
        "train_hf_diffusion",
        &[
            "ckpt_path=last",
            "early_stopping.enabled=true",
            "early_stopping.patience=3",
            "trainer.nan_policy=abort",
            "checkpoint.every_n_steps=100",
            "checkpoint.save_total_limit=2",
        ],
    );
    let s = load_train_settings(&job).unwrap();
    assert_eq!(s.ckpt_path.as_deref(), Some("last"));
    assert!(s.early_stopping.enabled);
    assert_eq!(s.early_stopping.patience, 3);
    assert_eq!(
        s.trainer.nan_policy,
        flowrun::config::schema::NanPolicy::Abort
    );
    assert_eq!(
        (s.checkpoint.every_n_steps, s.checkpoint.save_total_limit),
        (Some(100), Some(2))
    );
    for (over, key, words) in [
        (
            "trainer.nan_policy=sikp",
            "trainer.nan_policy",
            "Did you mean 'skip'?",
        ),
        (
            "early_stopping.patience=0",
            "early_stopping.patience",
            "at least 1",
        ),
        (
            "checkpoint.save_total_limit=0",
            "checkpoint.save_total_limit",
            "at least 1",
        ),
    ] {
        let l = loader();
        let parsed = parse_overrides(&[over.to_string()], RunMode::Run).unwrap();
        let composed = l
            .compose("train_fb_flow_matching", &parsed, RunMode::Run)
            .unwrap();
        let job = job_part(&l.resolve(&composed, "").unwrap());
        let err = load_train_settings(&job).unwrap_err();
        assert_eq!(err.key, key, "{over}: {err}");
        assert!(err.message.contains(words), "{over}: {err}");
    }
}

#[test]
fn a_shipped_job_stored_in_a_checkpoint_resumes_under_itself() {
    use flowrun::train::checkpoint::compat::{check_resume_yaml, ResumeError};
    for config in ["train_fb_flow_matching", "train_hf_diffusion"] {
        let job = check(config, &[]);
        let stored = flowrun::config::emit::to_yaml(&job);
        assert_eq!(check_resume_yaml(&stored, &job).unwrap(), [], "{config}");
        let longer = check(config, &["trainer.max_steps=5000", "ckpt_path=last"]);
        let allowed = check_resume_yaml(&stored, &longer).unwrap();
        assert_eq!(allowed.len(), 1, "{allowed:?}");
        let bigger = check(config, &["+experiment=baseline"]);
        let Err(ResumeError::Refused { changes }) = check_resume_yaml(&stored, &bigger) else {
            panic!("{config}: a bigger model must be refused");
        };
        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
        assert!(keys.contains(&"model.net.hidden_size"), "{keys:?}");
        assert!(keys.contains(&"batch_size"), "{keys:?}");
    }
}

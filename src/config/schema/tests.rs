//! End-to-end checks of [`load_train_settings`] on resolved jobs shaped as composing the shipped
//! `conf/` tree gives them (groups `path/` and `sampler/` nested under `model`).

mod fixtures;

use super::*;
use crate::config::node::{Map, Node, Value};
use fixtures::*;

#[test]
fn the_default_flow_matching_job_decodes() {
    let t = load_train_settings(&fm()).unwrap();
    assert_eq!((t.seed, t.batch_size, t.max_epochs), (42, 64, 1000));
    assert_eq!((t.base_lr, t.image_size, t.sampling_steps), (1e-4, 64, 20));
    assert_eq!(t.model.net.hidden_size, 384);
    assert_eq!(t.model.time_sampling, TimeSampling::LogitNormal);
    let PathSettings::Affine(path) = &t.model.path else {
        panic!("{:?}", t.model.path)
    };
    assert_eq!(path.scheduler, AffineScheduler::CondOt);
    let SamplerSettings::Ode(sampler) = &t.model.sampler else {
        panic!("{:?}", t.model.sampler)
    };
    assert_eq!((sampler.method, sampler.steps), (OdeMethod::Midpoint, 20));
    assert_eq!(t.trainer.precision, Precision::Full32);
    assert_eq!(t.trainer.accelerator, Accelerator::Auto);
    assert_eq!(t.trainer.max_steps, None);
    assert_eq!(t.data.on_bad_file, OnBadFile::Error);
    assert!(matches!(
        t.data.source,
        DataSource::SyntheticNamo {
            num_scenes: 512,
            ..
        }
    ));
    assert_eq!(t.optimizer.betas, [0.9, 0.999]);
    assert_eq!(t.scheduler.warmup(), Warmup::Steps(500));
    assert_eq!(t.checkpoint.mode, MonitorMode::Min);
}

#[test]
fn the_default_diffusion_job_decodes() {
    let t = load_train_settings(&diffusion()).unwrap();
    let PathSettings::Diffusion(path) = &t.model.path else {
        panic!("{:?}", t.model.path)
    };
    assert_eq!(path.beta_schedule, BetaSchedule::SquaredcosCapV2);
    assert_eq!(path.prediction_type, PredictionType::Epsilon);
    let SamplerSettings::Diffusion(sampler) = &t.model.sampler else {
        panic!("{:?}", t.model.sampler)
    };
    assert_eq!(sampler.sampler_type, DiffusionSamplerType::Ddim);
    assert_eq!(sampler.timestep_spacing, TimestepSpacing::Leading);
    assert_eq!((sampler.steps, sampler.eta), (50, 0.0));
    assert_eq!(t.model.time_sampling, TimeSampling::Uniform);
}

#[test]
fn documented_overrides_decode() {
    let mut job = fm();
    set(&mut job, "model.path.scheduler=vp", s("vp"));
    set(&mut job, "model.sampler.method=dopri5", s("dopri5"));
    set(&mut job, "trainer.precision=bf16-mixed", s("bf16-mixed"));
    set(
        &mut job,
        "scheduler._target_=flowrun.lr.Linear",
        s("flowrun.lr.Linear"),
    );
    set(&mut job, "base_lr=1", Value::Int(1));
    let t = load_train_settings(&job).unwrap();
    let PathSettings::Affine(path) = &t.model.path else {
        panic!()
    };
    assert_eq!((path.beta_min, path.beta_max), (0.1, 20.0));
    let SamplerSettings::Ode(sampler) = &t.model.sampler else {
        panic!()
    };
    assert_eq!((sampler.atol, sampler.max_steps), (1e-5, 10_000));
    assert_eq!(t.trainer.precision, Precision::MixedBf16);
    assert!(matches!(t.scheduler, LrSchedulerSettings::Linear(_)));
    assert_eq!(t.base_lr, 1.0);

    let mut job = diffusion();
    set(&mut job, "model.sampler.sampler_type=ddpm", s("ddpm"));
    set(&mut job, "model.sampler.eta=1.0", Value::Float(1.0));
    set(&mut job, "model.path.beta_schedule=linear", s("linear"));
    set(&mut job, "trainer.precision=32", Value::Int(32));
    assert!(load_train_settings(&job).is_ok());
}

/// The shipped experiments' values, applied as composition would apply them.
#[test]
fn shipped_experiments_decode() {
    let mut job = fm();
    let cpu_trainer = "_target_: flowrun.train.Trainer\naccelerator: cpu\ndevices: 1\n\
        num_nodes: 1\nstrategy: auto\nprecision: \"32\"\nmax_epochs: 1000\nmax_steps: null\n\
        gradient_clip_val: 1.0\naccumulate_grad_batches: 1\ncheck_val_every_n_epoch: 1\n\
        val_check_interval: null\nlog_every_n_steps: 10\n";
    put(
        &mut job,
        "trainer",
        load(cpu_trainer, "conf/trainer/cpu.yaml"),
    );
    for (text, value) in [
        ("batch_size", Value::Int(16)),
        ("image_size", Value::Int(32)),
        ("model.net.input_size", Value::Int(32)),
        ("data.image_size", Value::Int(32)),
        ("model.net.patch_size", Value::Int(4)),
        ("model.net.hidden_size", Value::Int(64)),
        ("model.net.depth", Value::Int(2)),
        ("model.net.num_heads", Value::Int(2)),
        ("data.subset", Value::Int(5)),
    ] {
        set(&mut job, &format!("{text}=experiment"), value);
    }
    let t = load_train_settings(&job).unwrap();
    assert_eq!(
        (t.trainer.accelerator, t.data.subset),
        (Accelerator::Cpu, Some(5))
    );

    let mut job = diffusion();
    for (text, value) in [
        ("model.net.hidden_size", Value::Int(192)),
        ("model.net.num_heads", Value::Int(3)),
        ("model.path.num_train_timesteps", Value::Int(50)),
        ("model.sampler.steps", Value::Int(5)),
        ("checkpoint.save_top_k", Value::Int(0)),
        ("trainer.max_steps", Value::Int(100_000)),
        ("checkpoint.every_n_steps", Value::Int(10_000)),
    ] {
        set(&mut job, &format!("{text}=experiment"), value);
    }
    let t = load_train_settings(&job).unwrap();
    assert_eq!(t.model.sampler.steps(), 5);
    assert_eq!(t.checkpoint.every_n_steps, Some(10_000));
}

#[test]
fn a_wrong_type_names_key_file_line_expected_and_found() {
    let text = fm_text().replace("batch_size: 64", "batch_size: abc");
    let err = error_of(&load(&text, FM_FILE));
    let line = line_of(&text, "batch_size: abc");
    assert_eq!(
        err.to_string(),
        format!(
            "batch_size: expected an unsigned integer, found the string \"abc\" (at {FM_FILE}:{line}:13)"
        )
    );

    let mut job = fm();
    set(&mut job, "model.net.depth=-3", Value::Int(-3));
    let err = error_of(&job);
    assert_eq!(err.key, "model.net.depth");
    assert_eq!(err.origin, "command-line override 'model.net.depth=-3'");
    assert!(err.message.contains("-3"), "{err}");

    let mut job = fm();
    set(&mut job, "optimizer.betas=[0.9]", Value::List(vec![]));
    assert!(error_of(&job).message.contains("a list of 2 items"));

    let mut job = fm();
    set(&mut job, "trainer.num_nodes='2'", s("2"));
    let err = error_of(&job);
    assert_eq!(err.key, "trainer.num_nodes");
    assert_eq!(
        err.hint(),
        Some("write the number without quotes: trainer.num_nodes=2")
    );

    let mut job = fm();
    set(&mut job, "trainer.devices='2'", s("2"));
    let err = error_of(&job);
    assert_eq!(err.key, "trainer.devices");
    assert!(
        err.message
            .contains("expected an integer number of devices or 'auto'"),
        "{err}"
    );
}

#[test]
fn an_unknown_key_suggests_the_closest_and_lists_the_valid_ones() {
    let text = fm_text().replace("    hidden_size: 384", "    hiden_size: 384");
    let err = error_of(&load(&text, FM_FILE));
    assert_eq!(err.key, "model.net.hiden_size");
    let line = line_of(&text, "hiden_size");
    assert_eq!(err.origin, format!("{FM_FILE}:{line}:17"));
    assert!(err.message.contains("Did you mean 'hidden_size'?"), "{err}");
    assert!(
        err.message.contains("Valid keys: input_size, patch_size"),
        "{err}"
    );
    assert!(
        err.hint().unwrap().contains("model.net.hidden_size=384"),
        "{err:?}"
    );

    let mut job = fm();
    set(&mut job, "+batch_sise=8", Value::Int(8));
    let err = error_of(&job);
    assert!(
        err.to_string().starts_with("batch_sise: unknown key"),
        "{err}"
    );
    assert!(err.message.contains("Did you mean 'batch_size'?"), "{err}");
    let mut job = fm();
    set(&mut job, "checkpoint._target_=x", s("x"));
    assert_eq!(error_of(&job).key, "checkpoint._target_");
}

#[test]
fn an_unknown_target_lists_the_available_ones() {
    let mut job = fm();
    set(
        &mut job,
        "model.path._target_=flowrun.path.AffinePath",
        s("flowrun.path.AffinePath"),
    );
    let err = error_of(&job);
    assert_eq!(err.key, "model.path._target_");
    assert_eq!(
        err.origin,
        "command-line override 'model.path._target_=flowrun.path.AffinePath'"
    );
    assert!(
        err.message
            .contains("Did you mean 'flowrun.path.AffineProbPath'?"),
        "{err}"
    );
    assert!(
        err.message
            .contains("flowrun.path.AffineProbPath, flowrun.path.DiffusionPath"),
        "{err}"
    );

    let text = fm_text().replace("flowrun.lr.WarmupCosine", "flowrun.lr.Cosine");
    let err = error_of(&load(&text, FM_FILE));
    assert_eq!(err.key, "scheduler._target_");
    let line = line_of(&text, "flowrun.lr.Cosine");
    assert_eq!(err.origin, format!("{FM_FILE}:{line}:13"));
    assert!(err
        .message
        .contains("flowrun.lr.WarmupCosine, flowrun.lr.Constant, flowrun.lr.Linear"));

    let mut job = fm();
    remove(&mut job, "trainer._target_");
    let err = error_of(&job);
    assert_eq!(err.key, "trainer._target_");
    assert_eq!(
        err.hint(),
        Some("add it with +trainer._target_=flowrun.train.Trainer")
    );
}

#[test]
fn an_unknown_enum_value_lists_the_valid_ones() {
    let mut job = fm();
    set(&mut job, "model.sampler.method=dopri", s("dopri"));
    let err = error_of(&job);
    assert_eq!(err.key, "model.sampler.method");
    assert_eq!(
        err.message,
        "unknown value 'dopri'. Did you mean 'dopri5'? Valid values: euler, midpoint, rk4, dopri5"
    );
    assert_eq!(
        err.hint(),
        Some("did you mean model.sampler.method=dopri5?")
    );

    let mut job = fm();
    set(&mut job, "trainer.precision=17", Value::Int(17));
    let err = error_of(&job);
    assert_eq!(err.key, "trainer.precision");
    assert!(err.message.contains("16-mixed"), "{err}");

    let mut job = fm();
    set(&mut job, "model.path.scheduler=3", Value::Int(3));
    let err = error_of(&job);
    assert!(
        err.message
            .starts_with("expected one of: condot, cosine, vp"),
        "{err}"
    );
}

#[test]
fn a_missing_key_says_how_to_add_it() {
    let mut job = fm();
    remove(&mut job, "model.net.depth");
    let err = error_of(&job);
    assert_eq!(err.key, "model.net.depth");
    assert_eq!(err.message, "missing required key 'depth'");
    assert!(err.hint().unwrap().contains("+model.net.depth=VALUE"));
    assert!(err.origin.starts_with(FM_FILE), "{err}");

    let mut job = fm();
    remove(&mut job, "seed");
    assert_eq!(error_of(&job).key, "seed");
    let mut job = fm();
    remove(&mut job, "trainer.precision");
    assert_eq!(error_of(&job).key, "trainer.precision");
    let mut job = fm();
    remove(&mut job, "model.sampler");
    let err = error_of(&job);
    assert_eq!(err.key, "model.sampler");
    assert!(err.hint().unwrap().contains("+sampler=midpoint"), "{err:?}");
    let mut job = fm();
    set(&mut job, "data.cache_dir=???", s("???"));
    let err = error_of(&job);
    assert_eq!(err.key, "data.cache_dir");
    assert!(err.message.contains("never given a value"), "{err}");
}

#[test]
fn paths_and_samplers_must_match() {
    let mut job = diffusion();
    let midpoint = load(
        "_target_: flowrun.sampler.OdeSampler\nmethod: midpoint\nsteps: 20\n",
        "conf/sampler/midpoint.yaml",
    );
    put(&mut job, "model.sampler", midpoint);
    assert!(
        load_train_settings(&job).is_ok(),
        "an ODE sampler integrates a diffusion path's probability-flow ODE"
    );

    let mut job = fm();
    let ddim = diffusion().select("model.sampler").unwrap().clone();
    put(&mut job, "model.sampler", ddim);
    let err = error_of(&job);
    assert!(
        err.message
            .contains("the sampler 'ddim' needs a diffusion path"),
        "{err}"
    );
    assert!(
        err.hint()
            .unwrap()
            .contains("sampler=euler, sampler=midpoint, sampler=rk4, sampler=dopri5"),
        "{err:?}"
    );

    let mut job = diffusion();
    set(
        &mut job,
        "model.path.num_train_timesteps=20",
        Value::Int(20),
    );
    let err = error_of(&job);
    assert_eq!(err.key, "model.sampler.steps");
    assert!(err.hint().unwrap().contains("sampling_steps=20"), "{err:?}");
}

#[test]
fn network_shapes_must_divide() {
    let mut job = fm();
    set(&mut job, "model.net.num_heads=5", Value::Int(5));
    let err = error_of(&job);
    assert_eq!(err.key, "model.net.hidden_size");
    assert!(err
        .message
        .contains("hidden_size (384) must be divisible by num_heads (5)"));
    assert!(
        err.hint().unwrap().contains("model.net.hidden_size=385"),
        "{err:?}"
    );

    let mut job = fm();
    set(&mut job, "model.net.patch_size=3", Value::Int(3));
    let err = error_of(&job);
    assert_eq!(err.key, "model.net.input_size");
    assert!(err.message.contains("divisible by patch_size (3)"), "{err}");

    let mut job = fm();
    set(&mut job, "data.image_size=32", Value::Int(32));
    let err = error_of(&job);
    assert_eq!(err.key, "model.net.input_size");
    assert!(err.hint().unwrap().contains("image_size=32"), "{err:?}");
}

#[test]
fn counts_ratios_and_exclusive_keys_are_checked() {
    let cases: &[(&str, Value, &str)] = &[
        ("batch_size=0", Value::Int(0), "batch_size"),
        (
            "model.sampler.steps=0",
            Value::Int(0),
            "model.sampler.steps",
        ),
        (
            "data.val_fraction=1.0",
            Value::Float(1.0),
            "data.val_fraction",
        ),
        (
            "data.val_fraction=-0.1",
            Value::Float(-0.1),
            "data.val_fraction",
        ),
        ("base_lr=0", Value::Int(0), "base_lr"),
        ("optimizer.lr=nan", Value::Float(f64::NAN), "optimizer.lr"),
        ("model.ema_decay=1.5", Value::Float(1.5), "model.ema_decay"),
        ("trainer.max_epochs=0", Value::Int(0), "trainer.max_epochs"),
        (
            "checkpoint.save_top_k=-2",
            Value::Int(-2),
            "checkpoint.save_top_k",
        ),
        ("trainer.strategy=ddp", s("ddp"), "trainer.accelerator"),
        ("trainer.node_rank=1", Value::Int(1), "trainer.node_rank"),
        (
            "trainer.collective_timeout_s=0",
            Value::Int(0),
            "trainer.collective_timeout_s",
        ),
        ("trainer.devices=auto", s("auto"), "trainer.devices"),
    ];
    for (text, value, key) in cases {
        let mut job = fm();
        if text.starts_with("trainer.strategy") {
            set(&mut job, "trainer.accelerator=auto", s("auto"));
        }
        set(&mut job, text, value.clone());
        let err = error_of(&job);
        assert_eq!(&err.key, key, "{text}: {err}");
        assert!(err.hint().is_some(), "{text}: {err}");
    }

    let mut job = fm();
    set(&mut job, "scheduler.warmup_ratio=0.05", Value::Float(0.05));
    let err = error_of(&job);
    assert_eq!(err.key, "scheduler.warmup_ratio");
    assert!(err.message.contains("both set"), "{err}");
    assert!(err.hint().unwrap().contains("scheduler.warmup_steps=null"));
    set(&mut job, "scheduler.warmup_steps=null", Value::Null);
    assert_eq!(
        load_train_settings(&job).unwrap().scheduler.warmup(),
        Warmup::Ratio(0.05)
    );
}

/// Replaces every leaf and every key of the default jobs with odd values: no panics, and every
/// error names a key and an origin.
#[test]
fn never_panics_on_odd_values() {
    let odd = [
        Value::Null,
        Value::Bool(true),
        Value::Int(-1),
        Value::Int(0),
        Value::Int(i64::MAX),
        Value::Int(i64::MIN),
        Value::Float(f64::NAN),
        Value::Float(-f64::INFINITY),
        Value::Float(1e300),
        s(""),
        s("???"),
        s("${image_size}"),
        s("ünïcode ".repeat(30).as_str()),
        Value::List(vec![Node::builtin(Value::Map(Map::new()))]),
        Value::Map(Map::new()),
    ];
    for base in [fm(), diffusion()] {
        let mut keys = Vec::new();
        collect_keys(&base, "", &mut keys);
        for key in &keys {
            let mut job = base.clone();
            remove(&mut job, key);
            check_error_shape(&job);
            for value in &odd {
                let mut job = base.clone();
                set(&mut job, &format!("{key}=odd"), value.clone());
                check_error_shape(&job);
            }
        }
    }
    for root in [
        Value::Null,
        s("x"),
        Value::List(vec![]),
        Value::Map(Map::new()),
    ] {
        check_error_shape(&Node::builtin(root));
    }
}

fn collect_keys(node: &Node, prefix: &str, out: &mut Vec<String>) {
    if let Value::Map(map) = &node.value {
        for (k, child) in map {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            collect_keys(child, &key, out);
            out.push(key);
        }
    }
}

fn check_error_shape(job: &Node) {
    if let Err(e) = load_train_settings(job) {
        assert!(!e.origin.is_empty(), "{e:?}");
        assert!(!e.message.is_empty(), "{e:?}");
    }
}

#[test]
fn ema_switches_default_to_on_and_decode_when_set() {
    let t = load_train_settings(&fm()).unwrap();
    assert!(t.model.ema_warmup && t.model.ema_for_eval);
    let mut job = fm();
    set(&mut job, "+model.ema_warmup=false", Value::Bool(false));
    set(&mut job, "+model.ema_for_eval=false", Value::Bool(false));
    let t = load_train_settings(&job).unwrap();
    assert!(!t.model.ema_warmup && !t.model.ema_for_eval);
    set(&mut job, "model.ema_for_eval=3", Value::Int(3));
    assert_eq!(error_of(&job).key, "model.ema_for_eval");
}

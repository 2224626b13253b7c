//! The job configs of `sample` and `evaluate` (primary configs `conf/sample.yaml` and
//! `conf/evaluate.yaml`): which trained run to load, the scenes, seeds and samplers.

use super::check::{at_least_one, ensure};
use super::de::NodeDe;
use super::sampler::SAMPLER_TARGETS;
use super::target::{decode_target, Section};
use super::{SamplerSettings, SchemaError};
use crate::config::node::Node;

/// The sampler names `evaluate` sweeps over (the options of the `sampler/` group).
pub const SAMPLER_NAMES: &[&str] = &["euler", "midpoint", "rk4", "dopri5", "ddim", "ddpm"];

/// Where a command finds its trained model and scenes.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedSource {
    /// A run directory written by `train` (its `.hydra/config.yaml` and `checkpoints/`).
    pub run_dir: Option<String>,
    /// A checkpoint file (default: the run's best checkpoint, else `last.ckpt`).
    pub ckpt_path: Option<String>,
    /// Sample with the EMA weights (when the checkpoint holds them).
    pub use_ema: bool,
    /// A folder of `.npz` scenes (default: the run's validation split).
    pub data_dir: Option<String>,
    /// How many scenes to use (the first ones, in file order).
    pub num_scenes: usize,
    /// Samples drawn per scene.
    pub num_samples: usize,
    /// Seed of the sampler's noise.
    pub seed: u64,
}

/// Everything `sample` reads from its config.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleSettings {
    /// The trained model and the scenes.
    pub source: TrainedSource,
    /// Inference steps (fed to `model.sampler.steps`).
    pub sampling_steps: usize,
    /// The sampler, from the `sampler/` group (`sampler=rk4`).
    pub sampler: SamplerSettings,
}

/// Everything `evaluate` reads from its config.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluateSettings {
    /// The trained model and the scenes.
    pub source: TrainedSource,
    /// The samplers swept over, by their `sampler/` group names.
    pub samplers: Vec<String>,
    /// The step counts swept over.
    pub steps: Vec<usize>,
}

const SOURCE_FIELDS: &[&str] = &[
    "run_dir",
    "ckpt_path",
    "use_ema",
    "data_dir",
    "num_scenes",
    "num_samples",
    "seed",
];

fn fields(extra: &[&'static str]) -> Vec<&'static str> {
    SOURCE_FIELDS.iter().chain(extra).copied().collect()
}

fn decode_source(s: &Section<'_>) -> Result<TrainedSource, SchemaError> {
    let source = TrainedSource {
        run_dir: s.field("run_dir")?,
        ckpt_path: s.field("ckpt_path")?,
        use_ema: s.field("use_ema")?,
        data_dir: s.field("data_dir")?,
        num_scenes: s.field("num_scenes")?,
        num_samples: s.field("num_samples")?,
        seed: s.field("seed")?,
    };
    at_least_one(s.de(), "num_scenes", source.num_scenes as u64)?;
    at_least_one(s.de(), "num_samples", source.num_samples as u64)?;
    ensure(
        source.run_dir.is_some() || source.ckpt_path.is_some(),
        s.de(),
        "run_dir",
        || "no trained model given: both run_dir and ckpt_path are null".to_string(),
        || {
            "pass run_dir=outputs/<date>/<time> (a run written by train) or ckpt_path=<file.ckpt>"
                .to_string()
        },
    )?;
    Ok(source)
}

/// Decodes and checks the resolved job config of `sample`.
pub fn load_sample_settings(job: &Node) -> Result<SampleSettings, SchemaError> {
    let s = Section::open(NodeDe::root(job), &fields(&["sampling_steps", "model"]))?;
    let source = decode_source(&s)?;
    let sampling_steps: usize = s.field("sampling_steps")?;
    at_least_one(s.de(), "sampling_steps", sampling_steps as u64)?;
    let model = Section::open(s.child("model")?, &["sampler"])?;
    let sampler = decode_target(model.child("sampler")?, SAMPLER_TARGETS)?;
    Ok(SampleSettings {
        source,
        sampling_steps,
        sampler,
    })
}

/// Decodes and checks the resolved job config of `evaluate`.
pub fn load_evaluate_settings(job: &Node) -> Result<EvaluateSettings, SchemaError> {
    let s = Section::open(NodeDe::root(job), &fields(&["samplers", "steps"]))?;
    let source = decode_source(&s)?;
    let samplers: Vec<String> = s.field("samplers")?;
    let steps: Vec<i64> = s.field("steps")?;
    ensure(
        !samplers.is_empty(),
        s.de(),
        "samplers",
        || "the list is empty".to_string(),
        || {
            format!(
                "e.g. samplers=[euler,midpoint]; available options: {}",
                SAMPLER_NAMES.join(", ")
            )
        },
    )?;
    for (i, name) in samplers.iter().enumerate() {
        ensure(
            SAMPLER_NAMES.contains(&name.as_str()),
            s.de(),
            "samplers",
            || format!("samplers[{i}] is '{name}', an unknown sampler"),
            || format!("available options: {}", SAMPLER_NAMES.join(", ")),
        )?;
    }
    ensure(
        !steps.is_empty(),
        s.de(),
        "steps",
        || "the list is empty".to_string(),
        || "e.g. steps=[5,10,20,50]".to_string(),
    )?;
    for (i, &n) in steps.iter().enumerate() {
        ensure(
            n >= 1,
            s.de(),
            "steps",
            || format!("steps[{i}] is {n}; step counts must be at least 1"),
            || "give positive step counts, e.g. steps=[5,10,20,50]".to_string(),
        )?;
    }
    Ok(EvaluateSettings {
        source,
        samplers,
        steps: steps.into_iter().map(|n| n as usize).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::load_str;
    use std::sync::Arc;

    fn node(text: &str) -> Node {
        load_str(text, &Arc::from("test.yaml")).unwrap().unwrap()
    }

    const SOURCE: &str = "run_dir: r\nckpt_path: null\nuse_ema: true\ndata_dir: null\n\
                          num_scenes: 2\nnum_samples: 3\nseed: 0\n";

    #[test]
    fn evaluate_rejects_unknown_samplers_and_bad_steps() {
        let ok = node(&format!("{SOURCE}samplers: [euler, rk4]\nsteps: [5, 10]\n"));
        let s = load_evaluate_settings(&ok).unwrap();
        assert_eq!(s.steps, [5, 10]);
        assert_eq!(s.source.num_samples, 3);
        let bad = node(&format!("{SOURCE}samplers: [euler, heun]\nsteps: [5]\n"));
        let e = load_evaluate_settings(&bad).unwrap_err();
        assert_eq!(e.key, "samplers");
        assert!(e.to_string().contains("samplers[1] is 'heun'"), "{e}");
        assert!(e.hint().unwrap().contains("dopri5, ddim, ddpm"));
        let zero = node(&format!("{SOURCE}samplers: [euler]\nsteps: [5, 0]\n"));
        let e = load_evaluate_settings(&zero).unwrap_err();
        assert!(e.to_string().contains("steps[1] is 0"), "{e}");
        let negative = node(&format!("{SOURCE}samplers: [euler]\nsteps: [-3]\n"));
        let e = load_evaluate_settings(&negative).unwrap_err();
        assert!(e.to_string().contains("steps[0] is -3"), "{e}");
    }

    #[test]
    fn sample_needs_a_run_or_a_checkpoint_and_a_sampler() {
        let text = "run_dir: null\nckpt_path: null\nuse_ema: true\ndata_dir: null\n\
                    num_scenes: 2\nnum_samples: 3\nseed: 0\nsampling_steps: 4\n\
                    model:\n  sampler:\n    _target_: flowrun.sampler.OdeSampler\n    \
                    method: euler\n    steps: 4\n";
        assert_eq!(
            load_sample_settings(&node(text)).unwrap_err().key,
            "run_dir"
        );
        let with_run = text.replacen("run_dir: null", "run_dir: out", 1);
        let s = load_sample_settings(&node(&with_run)).unwrap();
        assert_eq!((s.sampler.name(), s.sampler.steps()), ("euler", 4));
        let zero = with_run.replace("steps: 4", "steps: 0");
        assert!(load_sample_settings(&node(&zero)).is_err());
    }
}

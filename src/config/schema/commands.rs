//! The job configs of `sample`, `evaluate` and `inspect` (primary configs `conf/sample.yaml`,
//! `conf/evaluate.yaml` and `conf/inspect.yaml`): which trained runs to read, the scenes, seeds
//! and samplers, the curves to show.

use super::check::{at_least_one, ensure};
use super::de::NodeDe;
use super::sampler::SAMPLER_TARGETS;
use super::target::{decode_target, Section};
use super::{SamplerSettings, SchemaError};
use crate::config::node::{Node, Value};

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

/// Everything `inspect` reads from its config.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectSettings {
    /// The run directories written by `train`: one is summarised, two or more also compared.
    pub runs: Vec<String>,
    /// The scalar tags shown and plotted; empty: every logged tag.
    pub tags: Vec<String>,
    /// Also draw the curves into `curves.png` in the run directory of `inspect`.
    pub plot: bool,
    /// Width of the terminal sparklines, in characters.
    pub sparkline_width: usize,
}

/// What to type when `runs` is empty.
const RUNS_HINT: &str = "type: inspect runs=[outputs/<date>/<time>] to summarise one run, or \
                         inspect runs=[outputs/<date>/<time>,outputs/<date>/<time>] to compare";

/// Decodes and checks the resolved job config of `inspect`.
pub fn load_inspect_settings(job: &Node) -> Result<InspectSettings, SchemaError> {
    let s = Section::open(
        NodeDe::root(job),
        &["runs", "tags", "plot", "sparkline_width"],
    )?;
    let runs_node = s.child("runs")?;
    let runs: Vec<String> = match &runs_node.node().value {
        Value::Null => Vec::new(),
        Value::Str(_) => vec![s.field("runs")?],
        _ => s.field("runs")?,
    };
    ensure(
        !runs.is_empty(),
        s.de(),
        "runs",
        || "no run to inspect: runs is empty".to_string(),
        || RUNS_HINT.to_string(),
    )?;
    for (i, run) in runs.iter().enumerate() {
        ensure(
            !run.trim().is_empty(),
            s.de(),
            "runs",
            || format!("runs[{i}] is an empty path"),
            || RUNS_HINT.to_string(),
        )?;
    }
    let tags: Vec<String> = match &s.child("tags")?.node().value {
        Value::Null => Vec::new(),
        Value::Str(_) => vec![s.field("tags")?],
        _ => s.field("tags")?,
    };
    let plot: bool = s.field("plot")?;
    let sparkline_width: usize = s.field("sparkline_width")?;
    at_least_one(s.de(), "sparkline_width", sparkline_width as u64)?;
    Ok(InspectSettings {
        runs,
        tags,
        plot,
        sparkline_width,
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

    #[test]
    fn inspect_takes_a_list_or_one_path_and_says_what_to_type_without_one() {
        let s = load_inspect_settings(&node(
            "runs: [outputs/a, outputs/b]\ntags: []\nplot: true\nsparkline_width: 40\n",
        ))
        .unwrap();
        assert_eq!(s.runs, ["outputs/a", "outputs/b"]);
        assert!(s.tags.is_empty() && s.plot);
        let one = load_inspect_settings(&node(
            "runs: outputs/a\ntags: val_loss\nplot: false\nsparkline_width: 8\n",
        ))
        .unwrap();
        assert_eq!(
            (one.runs, one.tags),
            (vec!["outputs/a".to_string()], vec!["val_loss".to_string()])
        );
        for empty in ["runs: []", "runs: null"] {
            let text = format!("{empty}\ntags: []\nplot: false\nsparkline_width: 40\n");
            let e = load_inspect_settings(&node(&text)).unwrap_err();
            assert_eq!(e.key, "runs");
            assert!(e.to_string().contains("no run to inspect"), "{e}");
            assert!(e
                .hint()
                .unwrap()
                .contains("inspect runs=[outputs/<date>/<time>]"));
        }
        let narrow = "runs: [a]\ntags: []\nplot: false\nsparkline_width: 0\n";
        assert_eq!(
            load_inspect_settings(&node(narrow)).unwrap_err().key,
            "sparkline_width"
        );
        let typo = "runs: [a]\ntag: []\nplot: false\nsparkline_width: 4\n";
        assert!(load_inspect_settings(&node(typo)).is_err());
    }
}

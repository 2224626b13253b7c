//! One run summarised: its config diff against the shipped defaults of its primary config, its
//! checkpoints, steps, throughput and validation loss.

use super::run::Run;
use super::sparkline::fmt_value;
use super::table::render_table;
use crate::cli::job_part;
use crate::config::loader::{ConfigLoader, RunMode};
use crate::config::machine::MachineSettings;
use crate::config::node::Node;
use crate::config::repo::ConfigRepository;
use crate::telemetry::event_reader::ScalarPoint;
use crate::train::checkpoint::{config_diff, ConfigChange, SaveReason, LAST_FILE};
use std::path::PathBuf;

/// The scalar tag holding training throughput.
pub const THROUGHPUT_TAG: &str = "samples_per_s";
/// The scalar tag holding the validation loss.
pub const VAL_LOSS_TAG: &str = "val_loss";

/// A checkpoint with the score it was kept for.
#[derive(Debug, Clone, PartialEq)]
pub struct BestCheckpoint {
    /// The file.
    pub path: PathBuf,
    /// The monitored metric (`checkpoint.monitor`).
    pub monitor: String,
    /// Its value when the file was saved.
    pub score: f64,
    /// The step it was saved at.
    pub step: u64,
}

/// Training throughput read from the `samples_per_s` scalars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// The median over the logged steps (robust to the slow first steps).
    pub median: f64,
    /// The mean over the logged steps.
    pub mean: f64,
    /// The last logged value.
    pub last: f64,
    /// How many values were logged.
    pub points: usize,
}

/// A value logged at a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepValue {
    /// The step.
    pub step: i64,
    /// The value.
    pub value: f64,
}

/// What `inspect` reports about one run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run directory.
    pub dir: PathBuf,
    /// The primary config's name, when recorded.
    pub config_name: Option<String>,
    /// The run's command-line overrides.
    pub overrides: Vec<String>,
    /// The keys whose resolved value differs from the shipped defaults (`old`: the default,
    /// `new`: this run), or why the defaults could not be composed.
    pub defaults_diff: Result<Vec<ConfigChange>, String>,
    /// The last step the run reached (checkpoints and logged scalars).
    pub steps: Option<u64>,
    /// The checkpoint files, sorted by name.
    pub checkpoints: Vec<PathBuf>,
    /// The best checkpoint by the monitored metric.
    pub best_checkpoint: Option<BestCheckpoint>,
    /// Training throughput.
    pub throughput: Option<Throughput>,
    /// The last logged validation loss.
    pub last_val_loss: Option<StepValue>,
    /// The lowest logged validation loss.
    pub best_val_loss: Option<StepValue>,
}

/// The shipped primary config `config_name` composed with no overrides and resolved, job part
/// only; the error says why it cannot be composed.
pub fn shipped_defaults(config_name: &str) -> Result<Node, String> {
    let repo = ConfigRepository::shipped();
    let machine = MachineSettings::load().unwrap_or_default();
    let loader = ConfigLoader::new(repo, machine, "train");
    let composed = loader
        .compose(config_name, &[], RunMode::Run)
        .map_err(|e| format!("the shipped config '{config_name}' cannot be composed: {e}"))?;
    let resolved = loader
        .resolve(&composed, "")
        .map_err(|e| format!("the shipped config '{config_name}' cannot be resolved: {e}"))?;
    Ok(job_part(&resolved))
}

/// Summarises `run`.
pub fn summarize(run: &Run) -> RunSummary {
    let defaults_diff = match &run.config_name {
        None => Err("the run's .hydra/hydra.yaml does not record hydra.job.config_name".into()),
        Some(name) => shipped_defaults(name).map(|d| config_diff(&d, &run.config)),
    };
    let metas = || run.checkpoints.iter().filter_map(|c| c.meta.as_ref().ok());
    let ckpt_step = metas().map(|m| m.step).max();
    let scalar_step = run
        .scalars
        .values()
        .filter_map(|p| p.last().map(|p| p.step))
        .max()
        .and_then(|s| u64::try_from(s).ok());
    let steps = ckpt_step.max(scalar_step);
    let val = run.curve(VAL_LOSS_TAG);
    RunSummary {
        dir: run.dir.clone(),
        config_name: run.config_name.clone(),
        overrides: run.overrides.clone(),
        defaults_diff,
        steps,
        checkpoints: run.checkpoints.iter().map(|c| c.path.clone()).collect(),
        best_checkpoint: best_checkpoint(run),
        throughput: throughput(run.curve(THROUGHPUT_TAG)),
        last_val_loss: val
            .iter()
            .rev()
            .find(|p| p.value.is_finite())
            .map(step_value),
        best_val_loss: val
            .iter()
            .filter(|p| p.value.is_finite())
            .min_by(|a, b| a.value.total_cmp(&b.value))
            .map(step_value),
    }
}

fn step_value(p: &ScalarPoint) -> StepValue {
    StepValue {
        step: p.step,
        value: f64::from(p.value),
    }
}

/// The best kept checkpoint: the newest checkpoint's policy state names it (best first); else
/// the best-scored top-k file by `checkpoint.mode`.
fn best_checkpoint(run: &Run) -> Option<BestCheckpoint> {
    let monitor = run
        .config_str("checkpoint.monitor")
        .unwrap_or(VAL_LOSS_TAG)
        .to_string();
    let maximize = run.config_str("checkpoint.mode") == Some("max");
    let newest = run
        .checkpoints
        .iter()
        .filter_map(|c| Some((c, c.meta.as_ref().ok()?)))
        .max_by_key(|(c, m)| (m.step, c.path.ends_with(LAST_FILE)));
    if let Some((ckpt, meta)) = newest {
        let dir = ckpt.path.parent().map(PathBuf::from).unwrap_or_default();
        let kept = meta
            .checkpoint_policy
            .best
            .iter()
            .find(|b| dir.join(&b.file).is_file());
        if let Some(b) = kept {
            return Some(BestCheckpoint {
                path: dir.join(&b.file),
                monitor,
                score: b.score,
                step: b.step,
            });
        }
    }
    run.checkpoints
        .iter()
        .filter_map(|c| match c.meta.as_ref().ok()?.saved_as {
            SaveReason::TopK { score, .. } if score.is_finite() => Some((c, score)),
            _ => None,
        })
        .max_by(|(_, a), (_, b)| {
            if maximize {
                a.total_cmp(b)
            } else {
                b.total_cmp(a)
            }
        })
        .map(|(c, score)| BestCheckpoint {
            path: c.path.clone(),
            monitor: monitor.clone(),
            score,
            step: c.meta.as_ref().map(|m| m.step).unwrap_or_default(),
        })
}

fn throughput(points: &[ScalarPoint]) -> Option<Throughput> {
    let mut values: Vec<f64> = points
        .iter()
        .map(|p| f64::from(p.value))
        .filter(|v| v.is_finite())
        .collect();
    let last = *values.last()?;
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    let median = if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    };
    Some(Throughput {
        median,
        mean,
        last,
        points: values.len(),
    })
}

/// The summary as text for the terminal.
pub fn render_summary(s: &RunSummary) -> String {
    let mut out = format!("run {}\n", s.dir.display());
    let name = s.config_name.as_deref().unwrap_or("(not recorded)");
    out.push_str(&format!("  primary config: {name}\n"));
    if !s.overrides.is_empty() {
        out.push_str(&format!("  overrides: {}\n", s.overrides.join(" ")));
    }
    let steps = s.steps.map_or("-".to_string(), |n| n.to_string());
    out.push_str(&format!(
        "  steps: {steps}    checkpoints: {}\n",
        s.checkpoints.len()
    ));
    match &s.best_checkpoint {
        Some(b) => out.push_str(&format!(
            "  best checkpoint: {} ({} {} at step {})\n",
            b.path.display(),
            b.monitor,
            fmt_value(Some(b.score)),
            b.step
        )),
        None => out.push_str("  best checkpoint: none (no scored checkpoint kept)\n"),
    }
    match &s.throughput {
        Some(t) => out.push_str(&format!(
            "  throughput: {} samples/s median over {} logged steps (mean {}, last {})\n",
            fmt_value(Some(t.median)),
            t.points,
            fmt_value(Some(t.mean)),
            fmt_value(Some(t.last))
        )),
        None => out.push_str("  throughput: - (no samples_per_s logged)\n"),
    }
    let at = |v: &Option<StepValue>| {
        v.map_or("-".to_string(), |v| {
            format!("{} (step {})", fmt_value(Some(v.value)), v.step)
        })
    };
    out.push_str(&format!(
        "  val_loss: last {}, best {}\n",
        at(&s.last_val_loss),
        at(&s.best_val_loss)
    ));
    match &s.defaults_diff {
        Err(why) => out.push_str(&format!(
            "  config diff against the shipped defaults: unavailable ({why})\n"
        )),
        Ok(changes) if changes.is_empty() => out.push_str(&format!(
            "  config: the shipped {name} defaults, unchanged\n"
        )),
        Ok(changes) => {
            out.push_str(&format!(
                "  config diff against the shipped {name} ({} keys):\n",
                changes.len()
            ));
            let header = ["key", "default", "this run"].map(String::from);
            let absent = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
            let rows: Vec<Vec<String>> = changes
                .iter()
                .map(|c| vec![c.key.clone(), absent(&c.old), absent(&c.new)])
                .collect();
            out.push_str(&render_table(&header, &rows, 4));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(values: &[f32]) -> Vec<ScalarPoint> {
        values
            .iter()
            .enumerate()
            .map(|(i, &value)| ScalarPoint {
                step: i as i64,
                value,
                wall_time: 0.0,
            })
            .collect()
    }

    #[test]
    fn throughput_takes_the_median_mean_and_last() {
        let t = throughput(&points(&[10.0, 100.0, 110.0, 120.0])).unwrap();
        assert_eq!(
            (t.median, t.mean, t.last, t.points),
            (105.0, 85.0, 120.0, 4)
        );
        assert!(throughput(&points(&[f32::NAN])).is_none());
    }

    #[test]
    fn a_run_without_checkpoints_or_config_name_still_summarises() {
        let mut scalars = std::collections::BTreeMap::new();
        scalars.insert(VAL_LOSS_TAG.to_string(), points(&[3.0, 2.0, f32::NAN, 2.5]));
        let run = Run {
            dir: PathBuf::from("/runs/a"),
            config: crate::config::yaml::load_str("seed: 1\n", &"t.yaml".into())
                .unwrap()
                .unwrap(),
            config_name: None,
            overrides: Vec::new(),
            checkpoints: Vec::new(),
            scalars,
            truncated_event_files: Vec::new(),
        };
        let s = summarize(&run);
        assert_eq!(
            s.best_val_loss,
            Some(StepValue {
                step: 1,
                value: 2.0
            })
        );
        assert_eq!(
            s.last_val_loss,
            Some(StepValue {
                step: 3,
                value: 2.5
            })
        );
        assert_eq!(s.steps, Some(3));
        assert!(s.best_checkpoint.is_none() && s.throughput.is_none());
        let text = render_summary(&s);
        assert!(text.contains("best checkpoint: none"), "{text}");
        assert!(
            text.contains("unavailable (the run's .hydra/hydra.yaml"),
            "{text}"
        );
        assert!(
            text.contains("val_loss: last 2.50000 (step 3), best 2.00000 (step 1)"),
            "{text}"
        );
    }

    #[test]
    fn the_shipped_defaults_compose_and_an_unknown_name_says_why() {
        let d = shipped_defaults("train_fb_flow_matching").unwrap();
        assert!(d.select("model.net.hidden_size").is_some());
        assert!(d.child("hydra").is_none());
        let err = shipped_defaults("no_such_config").unwrap_err();
        assert!(err.contains("no_such_config"), "{err}");
    }
}

//! Two or more runs side by side: the config keys that differ (one column per run) and their
//! headline numbers.

use super::error::InspectError;
use super::run::Run;
use super::sparkline::fmt_value;
use super::summary::RunSummary;
use super::table::render_table;
use crate::train::checkpoint::config_diff;

/// The config keys on which the runs do not all agree, with each run's value.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigTable {
    /// The runs' labels, in the order given.
    pub runs: Vec<String>,
    /// Each differing key with one value per run (`(absent)` where a run lacks it).
    pub rows: Vec<(String, Vec<String>)>,
}

/// The config diff of `runs` (at least two).
pub fn compare_configs(runs: &[Run]) -> Result<ConfigTable, InspectError> {
    let Some((first, rest)) = runs.split_first().filter(|(_, rest)| !rest.is_empty()) else {
        return Err(InspectError::TooFewRuns { count: runs.len() });
    };
    let diffs: Vec<_> = rest
        .iter()
        .map(|r| config_diff(&first.config, &r.config))
        .collect();
    let mut keys: Vec<String> = Vec::new();
    for change in diffs.iter().flatten() {
        if !keys.contains(&change.key) {
            keys.push(change.key.clone());
        }
    }
    let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
    let rows = keys
        .into_iter()
        .map(|key| {
            let changes: Vec<_> = diffs
                .iter()
                .map(|d| d.iter().find(|c| c.key == key))
                .collect();
            let base = changes
                .iter()
                .flatten()
                .next()
                .map(|c| shown(&c.old))
                .unwrap_or_default();
            let mut values = vec![base.clone()];
            values.extend(
                changes
                    .iter()
                    .map(|c| c.map_or_else(|| base.clone(), |c| shown(&c.new))),
            );
            (key, values)
        })
        .collect();
    Ok(ConfigTable {
        runs: runs.iter().map(Run::label).collect(),
        rows,
    })
}

/// The config table as text.
pub fn render_config_table(table: &ConfigTable) -> String {
    if table.rows.is_empty() {
        return "  the runs' configs are identical\n".into();
    }
    let mut header = vec!["key".to_string()];
    header.extend(table.runs.iter().cloned());
    let rows: Vec<Vec<String>> = table
        .rows
        .iter()
        .map(|(k, vals)| {
            std::iter::once(k.clone())
                .chain(vals.iter().cloned())
                .collect()
        })
        .collect();
    render_table(&header, &rows, 2)
}

/// The runs' headline numbers, one row per run: steps, best and last val_loss, throughput.
pub fn render_headlines(summaries: &[RunSummary]) -> String {
    let header = [
        "run",
        "steps",
        "best val_loss",
        "last val_loss",
        "samples/s",
    ]
    .map(String::from);
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            vec![
                s.dir
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_else(|| s.dir.display().to_string()),
                s.steps.map_or("-".into(), |n| n.to_string()),
                fmt_value(s.best_val_loss.map(|v| v.value)),
                fmt_value(s.last_val_loss.map(|v| v.value)),
                fmt_value(s.throughput.map(|t| t.median)),
            ]
        })
        .collect();
    render_table(&header, &rows, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::load_str;
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::sync::Arc;

    fn run(name: &str, yaml: &str) -> Run {
        Run {
            dir: PathBuf::from(format!("/runs/{name}")),
            config: load_str(yaml, &Arc::from("t.yaml")).unwrap().unwrap(),
            config_name: None,
            overrides: Vec::new(),
            checkpoints: Vec::new(),
            scalars: BTreeMap::new(),
            truncated_event_files: Vec::new(),
        }
    }

    #[test]
    fn keys_that_differ_anywhere_get_one_column_per_run() {
        let a = run("a", "base_lr: 0.001\nseed: 1\nmodel:\n  depth: 2\n");
        let b = run("b", "base_lr: 0.01\nseed: 1\nmodel:\n  depth: 2\n");
        let c = run(
            "c",
            "base_lr: 0.001\nseed: 1\nmodel:\n  depth: 4\n  extra: x\n",
        );
        let t = compare_configs(&[a, b, c]).unwrap();
        assert_eq!(t.runs, ["a", "b", "c"]);
        let row = |k: &str| t.rows.iter().find(|(key, _)| key == k).unwrap().1.clone();
        assert_eq!(row("base_lr"), ["0.001", "0.01", "0.001"]);
        assert_eq!(row("model.depth"), ["2", "2", "4"]);
        assert_eq!(row("model.extra"), ["(absent)", "(absent)", "x"]);
        assert_eq!(t.rows.len(), 3, "seed is equal everywhere");
        let text = render_config_table(&t);
        assert!(text.lines().next().unwrap().contains("key"), "{text}");
    }

    #[test]
    fn one_run_cannot_be_compared() {
        let err = compare_configs(&[run("a", "x: 1\n")]).unwrap_err();
        assert!(
            matches!(err, InspectError::TooFewRuns { count: 1 }),
            "{err}"
        );
    }
}

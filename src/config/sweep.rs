//! Expanding `--multirun` sweeps into jobs, as Hydra's basic sweeper does: the cartesian product
//! of every sweep, the first sweep varying slowest, each job a plain list of overrides.

use super::error::ConfigError;
use super::overrides::{Override, OverrideKind, OverrideValue};
use super::repo::ConfigRepository;

fn prefix(kind: OverrideKind) -> &'static str {
    match kind {
        OverrideKind::Add => "+",
        OverrideKind::ForceAdd => "++",
        OverrideKind::Delete => "~",
        OverrideKind::Change | OverrideKind::ExtendList => "",
    }
}

/// The jobs of a sweep: one list of override strings per job, in launch order.
pub fn expand_sweeps(
    overrides: &[Override],
    repo: &ConfigRepository,
) -> Result<Vec<Vec<String>>, ConfigError> {
    let mut axes: Vec<Vec<String>> = Vec::with_capacity(overrides.len());
    for ov in overrides {
        match &ov.value {
            OverrideValue::Sweep(sweep) => {
                let options = if repo.group_exists(&ov.key) {
                    repo.group_options(&ov.key)
                } else {
                    Vec::new()
                };
                let values = sweep.expand(&options)?;
                if values.is_empty() {
                    return Err(ConfigError::composition_with_hint(
                        format!("the sweep '{}' has no values", ov.input),
                        "check the range bounds or the glob pattern",
                    ));
                }
                axes.push(
                    values
                        .iter()
                        .map(|v| {
                            format!(
                                "{}{}={}",
                                prefix(ov.kind),
                                ov.key_element(),
                                v.to_value_string()
                            )
                        })
                        .collect(),
                );
            }
            _ => axes.push(vec![ov.input.clone()]),
        }
    }
    let mut jobs: Vec<Vec<String>> = vec![Vec::new()];
    for axis in &axes {
        let mut next = Vec::with_capacity(jobs.len() * axis.len());
        for job in &jobs {
            for value in axis {
                let mut j = job.clone();
                j.push(value.clone());
                next.push(j);
            }
        }
        jobs = next;
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Vec<Override> {
        args.iter().map(|a| Override::parse(a).unwrap()).collect()
    }

    #[test]
    fn cartesian_product_first_axis_slowest() {
        let repo = ConfigRepository::new(Vec::new());
        let jobs =
            expand_sweeps(&parse(&["lr=0.1,0.01", "seed=1", "+bs=range(1,3)"]), &repo).unwrap();
        assert_eq!(
            jobs,
            vec![
                vec!["lr=0.1", "seed=1", "+bs=1"],
                vec!["lr=0.1", "seed=1", "+bs=2"],
                vec!["lr=0.01", "seed=1", "+bs=1"],
                vec!["lr=0.01", "seed=1", "+bs=2"],
            ]
        );
    }

    #[test]
    fn no_sweep_is_one_job() {
        let repo = ConfigRepository::new(Vec::new());
        assert_eq!(
            expand_sweeps(&parse(&["a=1"]), &repo).unwrap(),
            vec![vec!["a=1".to_string()]]
        );
    }
}

//! Typed errors of the config engine; each says what went wrong, where, and what to type next.

use super::overrides::OverrideParseError;
use super::yaml::YamlError;

/// An error raised while composing, resolving or checking a config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A YAML file could not be read as YAML (syntax error, duplicate key, ...).
    #[error("{0}")]
    Yaml(#[from] YamlError),
    /// A command-line override does not follow Hydra's override grammar.
    #[error("{0}")]
    OverrideParse(#[from] OverrideParseError),
    /// A config file could not be read from disk.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that could not be read.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The defaults list or an override could not be composed into a config.
    #[error("{message}")]
    Composition {
        /// What went wrong, in Hydra's words where Hydra has them.
        message: String,
        /// What to type instead, when there is a clear fix.
        hint: Option<String>,
    },
    /// A `${...}` interpolation could not be resolved.
    #[error("cannot resolve '{expression}' at '{key}' ({origin}): {message}")]
    Interpolation {
        /// The dotted key holding the interpolation.
        key: String,
        /// Where that key was defined.
        origin: String,
        /// The interpolation text.
        expression: String,
        /// Why it failed.
        message: String,
        /// What to type instead, when there is a clear fix.
        hint: Option<String>,
    },
    /// Mandatory `???` values were left unset; all of them are listed.
    #[error("{} mandatory value(s) are missing (???):\n{}", .0.len(), format_missing(.0))]
    MissingValues(Vec<MissingValue>),
}

/// One mandatory value that was never given.
#[derive(Debug, Clone, PartialEq)]
pub struct MissingValue {
    /// The dotted key.
    pub key: String,
    /// Where the `???` was written.
    pub origin: String,
}

fn format_missing(values: &[MissingValue]) -> String {
    let width = values.iter().map(|m| m.key.len()).max().unwrap_or(0);
    values
        .iter()
        .map(|m| {
            format!(
                "  {:width$}  set it with: {}=<VALUE>   (defined at {})",
                m.key, m.key, m.origin
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// A composition error without a hint.
    pub fn composition(message: impl Into<String>) -> Self {
        ConfigError::Composition {
            message: message.into(),
            hint: None,
        }
    }

    /// A composition error with a hint saying what to type next.
    pub fn composition_with_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        ConfigError::Composition {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// The suggested fix, if the error carries one.
    pub fn hint(&self) -> Option<&str> {
        match self {
            ConfigError::Composition { hint, .. } | ConfigError::Interpolation { hint, .. } => {
                hint.as_deref()
            }
            ConfigError::OverrideParse(e) => e.hint.as_deref(),
            _ => None,
        }
    }
}

pub use super::suggest::did_you_mean;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_values_are_all_listed_with_their_fix() {
        let err = ConfigError::MissingValues(vec![
            MissingValue {
                key: "seed".into(),
                origin: "a.yaml:1:7".into(),
            },
            MissingValue {
                key: "data.root".into(),
                origin: "a.yaml:3:9".into(),
            },
        ]);
        let text = err.to_string();
        assert!(text.starts_with("2 mandatory value(s) are missing"));
        assert!(text.contains("seed=<VALUE>") && text.contains("data.root=<VALUE>"));
    }
}

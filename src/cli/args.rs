//! The command line shared by flowrun's commands: Hydra's flags plus `key=value` overrides.

use clap::{Parser, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;

/// Which part of the config `--cfg` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CfgPart {
    /// The job config (everything but `hydra`).
    Job,
    /// Only the `hydra` node.
    Hydra,
    /// Both.
    All,
}

/// What `--info` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InfoTopic {
    /// Everything below.
    All,
    /// The composed config.
    Config,
    /// The final defaults list.
    Defaults,
    /// The defaults tree.
    DefaultsTree,
    /// The config search path.
    Searchpath,
}

/// Hydra-compatible flags and overrides.
#[derive(Debug, Clone, Parser)]
#[command(version, disable_help_flag = true, disable_version_flag = true)]
pub struct CommandArgs {
    /// Directory of the primary config (replaces the shipped conf/), as Hydra's --config-path/-cp.
    #[arg(long = "config-path", value_name = "DIR")]
    pub config_path: Option<PathBuf>,
    /// Name of the primary config, with or without .yaml (-cn).
    #[arg(long = "config-name", value_name = "NAME")]
    pub config_name: Option<String>,
    /// Extra config directory searched before the shipped configs (-cd); may repeat.
    #[arg(long = "config-dir", value_name = "DIR")]
    pub config_dir: Vec<PathBuf>,
    /// Print the composed config and exit: job, hydra or all.
    #[arg(short = 'c', long = "cfg", value_enum, value_name = "PART")]
    pub cfg: Option<CfgPart>,
    /// With --cfg: resolve interpolations before printing.
    #[arg(long)]
    pub resolve: bool,
    /// With --cfg: print only this package (dotted key), e.g. model.path.
    #[arg(short = 'p', long = "package", value_name = "PKG")]
    pub package: Option<String>,
    /// Print information about the composition and exit.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "all", value_name = "TOPIC")]
    pub info: Option<InfoTopic>,
    /// Run a sweep: every combination of the comma-separated / range() / choice() / glob() values.
    #[arg(short = 'm', long)]
    pub multirun: bool,
    /// Print help: flags, config groups and the composed config.
    #[arg(short = 'h', long)]
    pub help: bool,
    /// Print the version.
    #[arg(long)]
    pub version: bool,
    /// Overrides: key=value, +key=value, ++key=value, ~key, group=option, group@pkg=option.
    #[arg(value_name = "OVERRIDE", allow_hyphen_values = false)]
    pub overrides: Vec<String>,
}

/// Rewrites Hydra's two-letter short flags (`-cn`, `-cp`, `-cd`), which clap cannot express.
pub fn normalize_argv(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|a| {
            let Some(s) = a.to_str() else { return a };
            for (short, long) in [
                ("-cn", "--config-name"),
                ("-cp", "--config-path"),
                ("-cd", "--config-dir"),
            ] {
                if s == short {
                    return OsString::from(long);
                }
                if let Some(rest) = s.strip_prefix(short).and_then(|r| r.strip_prefix('=')) {
                    return OsString::from(format!("{long}={rest}"));
                }
            }
            a
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> CommandArgs {
        let argv = normalize_argv(args.iter().map(OsString::from));
        CommandArgs::try_parse_from(argv).unwrap()
    }

    #[test]
    fn hydra_flags_and_overrides() {
        let a = parse(&[
            "train",
            "-cn",
            "x.yaml",
            "--cfg",
            "job",
            "--resolve",
            "a=1",
            "+b=2",
            "~c",
        ]);
        assert_eq!(a.config_name.as_deref(), Some("x.yaml"));
        assert_eq!(a.cfg, Some(CfgPart::Job));
        assert!(a.resolve);
        assert_eq!(a.overrides, ["a=1", "+b=2", "~c"]);
        let b = parse(&[
            "train",
            "--config-name=y",
            "-cp=/tmp/c",
            "--info",
            "-m",
            "lr=1,2",
        ]);
        assert_eq!(b.info, Some(InfoTopic::All));
        assert!(b.multirun);
        assert_eq!(b.config_path, Some(PathBuf::from("/tmp/c")));
        let c = parse(&["train", "--info", "defaults-tree"]);
        assert_eq!(c.info, Some(InfoTopic::DefaultsTree));
    }
}

//! Machine-level settings (config-rs): a user settings file plus `FLOWRUN_*` environment variables.
//!
//! These describe the machine, not the experiment: where runs and data live. They sit below the
//! command line: `hydra.run.dir=...` or `data.data_dir=...` still win. Composition itself
//! (defaults lists, packages, interpolation) needs Hydra semantics that config-rs lacks, so
//! config-rs is used only for this layer.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where flowrun keeps things on this machine.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct MachineSettings {
    /// Root of single-run directories (`hydra.run.dir` starts here). Env: `FLOWRUN_OUTPUTS_ROOT`.
    pub outputs_root: String,
    /// Root of sweep directories (`hydra.sweep.dir` starts here). Env: `FLOWRUN_MULTIRUN_ROOT`.
    pub multirun_root: String,
    /// Root of datasets, served as `${flowrun:data_root}`. Env: `FLOWRUN_DATA_ROOT`.
    pub data_root: String,
    /// Cache for generated data, served as `${flowrun:cache_dir}`. Env: `FLOWRUN_CACHE_DIR`.
    pub cache_dir: String,
    /// Whether the DiT uses the fused CPU kernels (`crate::model::kernels`). Env: `FLOWRUN_FUSED`.
    pub fused: bool,
    /// Which sgemm the fused kernels call: `auto`, `on`, `off` or a CBLAS library (see
    /// `crate::model::kernels::set_blas`). Env: `FLOWRUN_BLAS`.
    pub blas: String,
}

impl Default for MachineSettings {
    fn default() -> Self {
        MachineSettings {
            outputs_root: "outputs".into(),
            multirun_root: "multirun".into(),
            data_root: "data".into(),
            cache_dir: ".cache/flowrun".into(),
            fused: true,
            blas: "auto".into(),
        }
    }
}

/// The settings file in use: `$FLOWRUN_SETTINGS`, else `$XDG_CONFIG_HOME/flowrun/settings.toml`,
/// else `~/.config/flowrun/settings.toml`.
pub fn settings_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FLOWRUN_SETTINGS") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("flowrun").join("settings.toml"))
}

impl MachineSettings {
    /// Reads the settings file (if any) and `FLOWRUN_*` variables, over the built-in defaults.
    pub fn load() -> Result<Self, String> {
        let mut builder = config::Config::builder();
        if let Some(file) = settings_file() {
            let required = std::env::var_os("FLOWRUN_SETTINGS").is_some();
            builder = builder.add_source(
                config::File::from(file)
                    .format(config::FileFormat::Toml)
                    .required(required),
            );
        }
        let env = config::Environment::with_prefix("FLOWRUN").prefix_separator("_");
        let built = builder
            .add_source(env)
            .build()
            .map_err(|e| format!("cannot read the flowrun settings: {e}"))?;
        let mut table: BTreeMap<String, config::Value> = built
            .try_deserialize()
            .map_err(|e| format!("cannot read the flowrun settings: {e}"))?;
        table.remove("settings");
        let defaults = MachineSettings::default();
        let mut get = |key: &str, default: String| -> Result<String, String> {
            match table.remove(key) {
                Some(v) => v
                    .into_string()
                    .map_err(|e| format!("flowrun setting '{key}': {e}")),
                None => Ok(default),
            }
        };
        let fused = get("fused", defaults.fused.to_string())?;
        let fused = crate::model::kernels::parse_switch(&fused).ok_or_else(|| {
            format!(
                "flowrun setting 'fused': '{fused}' is not a switch (use 0/1, true/false, on/off)"
            )
        })?;
        let settings = MachineSettings {
            outputs_root: get("outputs_root", defaults.outputs_root)?,
            multirun_root: get("multirun_root", defaults.multirun_root)?,
            data_root: get("data_root", defaults.data_root)?,
            cache_dir: get("cache_dir", defaults.cache_dir)?,
            fused,
            blas: get("blas", defaults.blas)?,
        };
        if let Some(unknown) = table.keys().next() {
            return Err(format!(
                "unknown flowrun setting '{unknown}' (from FLOWRUN_{} or the settings file); valid settings: outputs_root, multirun_root, data_root, cache_dir, fused, blas",
                unknown.to_uppercase()
            ));
        }
        Ok(settings)
    }

    /// The values served by the `${flowrun:KEY}` resolver.
    pub fn as_resolver_values(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("outputs_root".to_string(), self.outputs_root.clone()),
            ("multirun_root".to_string(), self.multirun_root.clone()),
            ("data_root".to_string(), self.data_root.clone()),
            ("cache_dir".to_string(), self.cache_dir.clone()),
        ])
    }
}

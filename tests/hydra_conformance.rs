//! Runs every case under tests/hydra_conformance/cases against the `train` binary and compares
//! its `--cfg job` output with what Hydra 1.3.8 printed, as data (strict types, floats by value).

use flowrun::config::node::Value;
use flowrun::config::yaml::load_str;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn same(exp: &Value, got: &Value, path: &str, diffs: &mut Vec<String>) {
    match (exp, got) {
        (Value::Map(e), Value::Map(g)) => {
            for (k, v) in e {
                match g.get(k) {
                    Some(gv) => same(&v.value, &gv.value, &format!("{path}.{k}"), diffs),
                    None => diffs.push(format!("{path}.{k}: missing")),
                }
            }
            for k in g.keys().filter(|k| !e.contains_key(*k)) {
                diffs.push(format!("{path}.{k}: unexpected key"));
            }
        }
        (Value::List(e), Value::List(g)) if e.len() == g.len() => {
            for (i, (a, b)) in e.iter().zip(g).enumerate() {
                same(&a.value, &b.value, &format!("{path}.{i}"), diffs);
            }
        }
        (Value::Float(a), Value::Float(b)) if a.is_nan() && b.is_nan() => {}
        (a, b) if a == b => {}
        (a, b) => diffs.push(format!("{path}: expected {a:?}, got {b:?}")),
    }
}

fn parse(text: &str, what: &str) -> Value {
    match load_str(text, &Arc::from(what)) {
        Ok(Some(n)) => n.value,
        Ok(None) => Value::Map(Default::default()),
        Err(e) => panic!("{what} is not valid YAML: {e}\n{text}"),
    }
}

fn strings(v: &serde_json::Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn run_case(dir: &Path) -> Result<(), String> {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let name = meta["config_name"].as_str().unwrap().to_string();
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_train"));
    cmd.current_dir(cwd.path())
        .arg("--config-path")
        .arg(dir.join("conf"))
        .arg("--config-name")
        .arg(&name)
        .arg("--cfg")
        .arg("job")
        .args(strings(&meta, "flags"))
        .args(strings(&meta, "overrides"));
    if let Some(env) = meta["env"].as_object() {
        for (k, v) in env {
            match v.as_str() {
                Some(s) => cmd.env(k, s),
                None => cmd.env_remove(k),
            };
        }
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("panicked") {
        return Err(format!("panicked: {stderr}"));
    }
    if std::fs::read_dir(cwd.path()).unwrap().next().is_some() {
        return Err("--cfg created files in the working directory".into());
    }
    let expect = meta["expect"].as_str().unwrap_or("ok");
    if expect == "error" {
        return if out.status.success() {
            Err("expected an error, got exit 0".into())
        } else {
            Ok(())
        };
    }
    if !out.status.success() {
        return Err(format!("exit {:?}: {stderr}", out.status.code()));
    }
    let expected = parse(
        &std::fs::read_to_string(dir.join("expected.yaml")).unwrap(),
        "expected.yaml",
    );
    let got = parse(&stdout, "stdout");
    let mut diffs = Vec::new();
    same(&expected, &got, "", &mut diffs);
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; "))
    }
}

#[test]
fn every_hydra_case_matches() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hydra_conformance/cases");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.json").is_file())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 71,
        "expected the 71 shared cases, found {}",
        cases.len()
    );
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            run_case(c)
                .err()
                .map(|e| format!("FAIL {}: {e}", c.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    println!(
        "{} passed, {} failed",
        cases.len() - failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

//! Embeds the shipped `conf/` tree into the binary so that an installed `train` finds it from any directory.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            if let Ok(rel) = path.strip_prefix(root) {
                let rel = rel.to_string_lossy().replace('\\', "/");
                out.push((rel, path.clone()));
            }
        }
    }
}

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let conf = manifest.join("conf");
    println!("cargo:rerun-if-changed=conf");
    let mut files = Vec::new();
    collect(&conf, &conf, &mut files);
    let mut code = String::from("/// The shipped config tree: (path relative to conf/, file text).\npub static EMBEDDED_CONF: &[(&str, &str)] = &[\n");
    for (rel, path) in files {
        let _ = writeln!(
            code,
            "    ({rel:?}, include_str!({:?})),",
            path.to_string_lossy()
        );
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("embedded_conf.rs");
    std::fs::write(out, code).expect("write embedded_conf.rs");
}

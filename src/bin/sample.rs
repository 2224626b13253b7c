//! `sample`: compose a config Hydra-style and run it on a trained run.

fn main() -> std::process::ExitCode {
    flowrun::cli::main_for("sample", std::env::args_os().collect())
}

//! `evaluate`: compose a config Hydra-style and run it on a trained run.

fn main() -> std::process::ExitCode {
    flowrun::cli::main_for("evaluate", std::env::args_os().collect())
}

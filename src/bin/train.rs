//! `train`: compose a config Hydra-style and run it.

fn main() -> std::process::ExitCode {
    flowrun::cli::main_for("train", std::env::args_os().collect())
}

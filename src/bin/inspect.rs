//! `inspect`: compose a config Hydra-style and summarise or compare trained runs.

fn main() -> std::process::ExitCode {
    flowrun::cli::main_for("inspect", std::env::args_os().collect())
}

//! `gen-data`: write synthetic NAMO scenes to a folder as .npz files.

fn main() -> std::process::ExitCode {
    flowrun::cli::gen_data::main_for(std::env::args_os().collect())
}

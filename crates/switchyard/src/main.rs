//! `switchyard`: one binary, three roles (node, director, controller) and the tools around them.
//!
//! This is the edge of the program: argument parsing, logging set-up and `anyhow` errors live here;
//! every decision is made in the library crates.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.log_format);
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! `tms`: the operator's tool for a tms-core store. Exit status: 0 success, 1 a check found a
//! problem (`verify-audit` not ok), 2 a usage error or a store that could not be opened or used.

mod checkpoint;
mod cli;
mod commands;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match commands::run(&args) {
        Ok(commands::Outcome::Ok) => ExitCode::SUCCESS,
        Ok(commands::Outcome::ProblemFound) => ExitCode::from(1),
        Err(e) => {
            // A closed pipe (`tms audit | head`) is the reader's choice, not an error.
            if e.kind() == Some(std::io::ErrorKind::BrokenPipe) {
                return ExitCode::SUCCESS;
            }
            eprintln!("tms: {e}");
            ExitCode::from(2)
        }
    }
}

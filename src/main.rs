//! The `ferry` command: parses its arguments and calls the library.

#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    ferry::sys::prepare_process();
    // SIGPIPE stays ignored (Rust's default): the stream path writes into
    // pipes of ssh processes, and an agent that dies must be an error that
    // names it, not a signal that ends ferry without a word.
    let cli = ferry::cli::Cli::parse();
    ferry::cli::init_logging(cli.verbose);
    match ferry::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ferry: error: {e:#}");
            ExitCode::from(ferry::cli::exit_status(&e))
        }
    }
}

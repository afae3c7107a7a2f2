use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    limit_malloc_arenas();
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

/// One malloc arena per CPU instead of glibc's eight: a run keeps a thread
/// per image in flight, and with many arenas each of them kept freed memory
/// of its own (200 waiting images: 82 MiB → 71 MiB max RSS). An operator's
/// MALLOC_ARENA_MAX still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        // SAFETY: mallopt with a valid parameter, before any thread starts.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, cpus as libc::c_int) };
    }
}

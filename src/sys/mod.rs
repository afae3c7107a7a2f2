//! The system calls std does not wrap, each behind a small safe function:
//! sparse-file maps, hole punching, device zeroing and extended attributes
//! ([`file`]), kernel pipe moves ([`pipe`]), the terminal's width
//! ([`terminal`]), and the process's set-up at start ([`prepare_process`]:
//! malloc arenas, the crash report).
//!
//! With `ceph/`, the only module allowed `unsafe` (the crate root denies it
//! everywhere else). Each `unsafe` block covers one C call and says why it
//! is sound; the functions return `io::Error`s that their callers name with
//! the operation and the file.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod crash;
pub(crate) mod file;
pub(crate) mod pipe;
pub(crate) mod terminal;

/// What the process sets up before anything else runs (before any thread
/// starts): one malloc arena per CPU, and a report of a crash that says
/// what to do. Called first thing by `main`.
pub fn prepare_process() {
    limit_malloc_arenas();
    report_crashes();
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

/// A crash (a fault in ferry or in the Ceph libraries it calls) says what
/// happened and what to do, with a backtrace to report, instead of ending
/// the process with only the shell's "Segmentation fault": the run state
/// is saved after every step, so running again resumes. Then the signal's
/// earlier handler (Rust's, which names a stack overflow) or its default
/// action (a core file) follows as before.
fn report_crashes() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    crash::install();
    // Test builds only: a thread that crashes, to prove the report.
    #[cfg(debug_assertions)]
    if let Some(how) = std::env::var_os("FERRY_TEST_CRASH") {
        let _ = std::thread::Builder::new()
            .name("test-crash".into())
            .spawn(move || {
                if how == "abort" {
                    std::process::abort();
                }
                // SAFETY: raise(3) with a valid signal number.
                unsafe { libc::raise(libc::SIGSEGV) };
            })
            .map(|t| t.join());
    }
}

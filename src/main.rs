use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    limit_malloc_arenas();
    report_crashes();
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

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod crash {
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Faults, and aborts: a failed `ceph_assert`, an uncaught C++
    /// exception (`terminate called after throwing ...`, seen in librbd
    /// 16.2 under many image opens and closes) and a heap check all end in
    /// abort(3).
    const SIGNALS: [(libc::c_int, &str); 5] = [
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGABRT, "SIGABRT"),
    ];

    /// The handlers found before ours, by signal: put back when one fires.
    static mut EARLIER: [libc::sigaction; 5] = [unsafe { std::mem::zeroed() }; 5];
    static REPORTED: AtomicBool = AtomicBool::new(false);

    pub fn install() {
        // backtrace(3) loads libgcc on its first call, which allocates: do
        // it now, not in a handler.
        let mut frames = [std::ptr::null_mut(); 4];
        // SAFETY: a buffer of 4 frame pointers.
        unsafe { libc::backtrace(frames.as_mut_ptr(), frames.len() as libc::c_int) };
        for (k, (signal, _)) in SIGNALS.iter().enumerate() {
            // SAFETY: a zeroed sigaction is valid; the handler has the
            // SA_SIGINFO signature; EARLIER is written here, on the main
            // thread before any other starts, and read only in handlers.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = handler as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                let earlier = std::ptr::addr_of_mut!(EARLIER[k]);
                libc::sigaction(*signal, &action, earlier);
            }
        }
    }

    /// Writes to stderr with write(2) only: nothing here may allocate.
    fn say(bytes: &[u8]) {
        // SAFETY: fd 2, a valid buffer.
        unsafe { libc::write(2, bytes.as_ptr() as *const libc::c_void, bytes.len()) };
    }

    extern "C" fn handler(
        signal: libc::c_int,
        info: *mut libc::siginfo_t,
        context: *mut libc::c_void,
    ) {
        let Some(k) = SIGNALS.iter().position(|(s, _)| *s == signal) else {
            return;
        };
        if !REPORTED.swap(true, Ordering::SeqCst) {
            say(b"\nferry: crashed (");
            say(SIGNALS[k].1.as_bytes());
            say(b") in thread '");
            let mut name = [0u8; 16];
            // SAFETY: PR_GET_NAME writes at most 16 bytes.
            unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
            let len = name.iter().position(|b| *b == 0).unwrap_or(name.len());
            say(&name[..len]);
            say(b"': a fault in ferry or in the Ceph libraries it calls. A run's state is saved after every step: run the same command again to resume. Please report this with the backtrace below and the ferry and Ceph versions.\n");
            let mut frames = [std::ptr::null_mut(); 64];
            // SAFETY: a buffer of 64 frame pointers; backtrace_symbols_fd
            // writes to fd 2 without allocating.
            unsafe {
                let n = libc::backtrace(frames.as_mut_ptr(), frames.len() as libc::c_int);
                libc::backtrace_symbols_fd(frames.as_ptr(), n, 2);
            }
        }
        // The earlier handler takes it from here, as if ours were not
        // there; or, with none, the default action once the fault recurs.
        // SAFETY: EARLIER[k] was filled by sigaction in install().
        unsafe {
            let earlier = std::ptr::addr_of!(EARLIER[k]);
            let handler = (*earlier).sa_sigaction;
            if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
                libc::signal(signal, libc::SIG_DFL);
            } else if (*earlier).sa_flags & libc::SA_SIGINFO != 0 {
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    std::mem::transmute(handler);
                f(signal, info, context);
            } else {
                let f: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
                f(signal);
            }
            // A fault recurs when the handler returns; a signal sent (kill,
            // raise) does not: once the default action is back, send it
            // again, to end as it would have without ferry's report.
            let mut now: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signal, std::ptr::null(), &mut now);
            if (*info).si_code <= 0 && now.sa_sigaction == libc::SIG_DFL {
                libc::raise(signal);
            }
        }
    }
}

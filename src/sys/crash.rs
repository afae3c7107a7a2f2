//! The crash report: handlers of the fault and abort signals that write
//! what happened, what to do and a backtrace to stderr, then hand the
//! signal on as if they were not there.

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
// SAFETY: all-zero bytes are a valid sigaction (the default action).
static mut EARLIER: [libc::sigaction; 5] = [unsafe { std::mem::zeroed() }; 5];
static REPORTED: AtomicBool = AtomicBool::new(false);

/// Installs the handlers; on the main thread, before any other starts.
pub(super) fn install() {
    // backtrace(3) loads libgcc on its first call, which allocates: do
    // it now, not in a handler.
    let mut frames = [std::ptr::null_mut(); 4];
    // SAFETY: a buffer of 4 frame pointers.
    unsafe { libc::backtrace(frames.as_mut_ptr(), frames.len() as libc::c_int) };
    for (k, (signal, _)) in SIGNALS.iter().enumerate() {
        // SAFETY: all-zero bytes are a valid sigaction.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        // The handler has the SA_SIGINFO signature.
        action.sa_sigaction = handler as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: a valid sigset_t to empty.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: a complete action; EARLIER is written here, on the main
        // thread before any other starts, and read only in handlers.
        unsafe { libc::sigaction(*signal, &action, std::ptr::addr_of_mut!(EARLIER[k])) };
    }
}

/// Writes to stderr with write(2) only: nothing here may allocate.
fn say(bytes: &[u8]) {
    // SAFETY: fd 2, a valid buffer.
    unsafe { libc::write(2, bytes.as_ptr() as *const libc::c_void, bytes.len()) };
}

extern "C" fn handler(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
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
        // SAFETY: a buffer of 64 frame pointers.
        let n = unsafe { libc::backtrace(frames.as_mut_ptr(), frames.len() as libc::c_int) };
        // SAFETY: the `n` frames backtrace filled; backtrace_symbols_fd
        // writes to fd 2 without allocating.
        unsafe { libc::backtrace_symbols_fd(frames.as_ptr(), n, 2) };
    }
    // The earlier handler takes it from here, as if ours were not
    // there; or, with none, the default action once the fault recurs.
    // SAFETY: EARLIER[k] was filled by sigaction in install(), before
    // this handler could run, and is not written again.
    let earlier = unsafe { *std::ptr::addr_of!(EARLIER[k]) };
    let handler = earlier.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // SAFETY: signal(2) with the signal being handled and SIG_DFL.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    } else if earlier.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: a handler installed with SA_SIGINFO has this signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(signal, info, context);
    } else {
        // SAFETY: a handler installed without SA_SIGINFO has this signature.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(signal);
    }
    // A fault recurs when the handler returns; a signal sent (kill,
    // raise) does not: once the default action is back, send it
    // again, to end as it would have without ferry's report.
    // SAFETY: all-zero bytes are a valid sigaction.
    let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: no new action; the current one is written to `now`.
    unsafe { libc::sigaction(signal, std::ptr::null(), &mut now) };
    // SAFETY: the kernel hands an SA_SIGINFO handler a valid siginfo.
    let code = unsafe { (*info).si_code };
    if code <= 0 && now.sa_sigaction == libc::SIG_DFL {
        // SAFETY: raise(3) with the signal being handled.
        unsafe { libc::raise(signal) };
    }
}

//! Pipes: a larger kernel buffer, moving bytes from one to another in the
//! kernel (splice(2)), waiting for bytes to read.

use std::io;
use std::os::fd::AsRawFd;

/// Grows the kernel buffer of the pipe `fd` to `bytes` (at most
/// /proc/sys/fs/pipe-max-size for an unprivileged process); not a pipe
/// or refused: nothing changes.
pub fn grow_pipe<F: AsRawFd>(fd: &F, bytes: usize) {
    // SAFETY: F_SETPIPE_SZ takes an open descriptor and an int; on
    // anything but a pipe it fails with EBADF/EINVAL, which is fine.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes as libc::c_int);
    }
}

/// Moves up to `n` bytes from pipe `from` to pipe `to` in the kernel
/// (splice(2)): the bytes moved, 0 at the end of `from`. Blocks while
/// `to` is full, or `from` empty.
pub fn splice<F: AsRawFd, T: AsRawFd>(from: &F, to: &T, n: usize) -> io::Result<usize> {
    // SAFETY: two open descriptors; no offsets (pipes take none).
    let r = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            n,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_MORE,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Waits until `fd` has bytes to read (or its end, or an error).
pub fn wait_readable<F: AsRawFd>(fd: &F) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, for the duration of the call.
        if unsafe { libc::poll(&mut pfd, 1, -1) } >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

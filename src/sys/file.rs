//! Files and block devices: their data-and-hole maps (`lseek` with
//! `SEEK_DATA`/`SEEK_HOLE`), hole punching, device zeroing
//! (`BLKZEROOUT`) and extended attributes.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `_IO(0x12, 127)` from linux/fs.h: zero a byte range of a block
/// device (the libc crate does not export it).
const BLKZEROOUT: libc::c_ulong = 0x127f;

fn seek(file: &File, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let offset = libc::off_t::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: lseek takes an open descriptor, which `file` keeps open.
    let r = unsafe { libc::lseek(file.as_raw_fd(), offset, whence) };
    if r >= 0 {
        return Ok(Some(r as u64));
    }
    let e = io::Error::last_os_error();
    // ENXIO: no data (or hole) at or after the offset.
    if e.raw_os_error() == Some(libc::ENXIO) {
        Ok(None)
    } else {
        Err(e)
    }
}

/// The first byte of data at or after `offset`; None: only holes.
pub fn seek_data(file: &File, offset: u64) -> io::Result<Option<u64>> {
    seek(file, offset, libc::SEEK_DATA)
}

/// The first hole at or after `offset` (the end of the file counts).
pub fn seek_hole(file: &File, offset: u64) -> io::Result<u64> {
    Ok(seek(file, offset, libc::SEEK_HOLE)?.unwrap_or(offset))
}

/// Frees `len` bytes of `file` from `offset` (they read as zeros after),
/// the file's size unchanged.
pub fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (o, l) = (
        libc::off_t::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?,
        libc::off_t::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?,
    );
    // SAFETY: fallocate takes an open descriptor and plain integers.
    let r = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            o,
            l,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The value of extended attribute `name` (NUL-terminated) of `file`;
/// None when it has none by that name.
pub fn get_xattr(file: &File, name: &std::ffi::CStr) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    // SAFETY: an open descriptor, a NUL-terminated name, and a buffer
    // valid for its length.
    let r = unsafe {
        libc::fgetxattr(
            file.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if r >= 0 {
        buf.truncate(r as usize);
        return Ok(Some(buf));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENODATA) => Ok(None),
        _ => Err(e),
    }
}

/// Sets extended attribute `name` (NUL-terminated) of `file`.
pub fn set_xattr(file: &File, name: &std::ffi::CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: an open descriptor, a NUL-terminated name, and a value
    // valid for its length.
    let r = unsafe {
        libc::fsetxattr(
            file.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Zeroes `len` bytes of the block device `file` from `offset`.
pub fn zero_out(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: BLKZEROOUT reads two u64 (start, length) from the pointer,
    // which points at `range` for the duration of the call.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKZEROOUT as _, range.as_ptr()) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

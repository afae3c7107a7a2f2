//! One error type for every librados/librbd call: the operation, the object
//! it was applied to, the errno, and the kind a caller can match on.

use std::fmt;

/// What kind of failure a Ceph call reported, for callers that must tell
/// cases apart (mapped as Ceph's own Python binding maps errno values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// ENOENT: pool, image, snapshot or key file does not exist.
    NotFound,
    /// EEXIST: the object already exists.
    Exists,
    /// EBUSY: the object is in use (watchers, locks, protected snapshot).
    Busy,
    /// EROFS: read-only, e.g. a non-primary mirrored image.
    ReadOnly,
    /// EACCES/EPERM: the cephx key or its caps do not allow the call.
    PermissionDenied,
    /// ETIMEDOUT: no answer in time (monitor unreachable, OSD stuck).
    TimedOut,
    /// EINVAL: an argument Ceph rejected.
    InvalidArgument,
    /// EOPNOTSUPP/ENOSYS: not supported by this cluster or image.
    Unsupported,
    /// ENOSPC/EDQUOT: the cluster or pool is full.
    NoSpace,
    /// Anything else.
    Other,
}

impl ErrorKind {
    fn from_errno(errno: i32) -> Self {
        match errno {
            libc::ENOENT => Self::NotFound,
            libc::EEXIST => Self::Exists,
            libc::EBUSY => Self::Busy,
            libc::EROFS => Self::ReadOnly,
            libc::EACCES | libc::EPERM => Self::PermissionDenied,
            libc::ETIMEDOUT => Self::TimedOut,
            libc::EINVAL => Self::InvalidArgument,
            libc::EOPNOTSUPP | libc::ENOSYS => Self::Unsupported,
            libc::ENOSPC | libc::EDQUOT => Self::NoSpace,
            _ => Self::Other,
        }
    }
}

/// A failed Ceph call, e.g. `rbd_update_features(volumes/volume-1): EINVAL (invalid argument)`.
#[derive(Debug, thiserror::Error)]
pub enum CephError {
    /// A librados/librbd call returned a negative errno.
    #[error("{op}({object}): {}{}", Errno(*errno), detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Call {
        op: &'static str,
        object: String,
        errno: i32,
        kind: ErrorKind,
        /// Text the monitor returned with the error, if any.
        detail: Option<String>,
    },
    /// A name handed to Ceph contains a NUL byte and cannot cross to C.
    #[error("{what} {value:?} contains a NUL byte")]
    InvalidName { what: &'static str, value: String },
    /// Ceph returned data ferry could not understand.
    #[error("{op}({object}): unexpected reply: {message}")]
    BadReply {
        op: &'static str,
        object: String,
        message: String,
    },
}

impl CephError {
    /// The kind of failure, for matching.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CephError::Call { kind, .. } => *kind,
            CephError::InvalidName { .. } => ErrorKind::InvalidArgument,
            CephError::BadReply { .. } => ErrorKind::Other,
        }
    }

    pub(crate) fn call(op: &'static str, object: impl Into<String>, ret: i32) -> Self {
        let errno = -ret;
        CephError::Call {
            op,
            object: object.into(),
            errno,
            kind: ErrorKind::from_errno(errno),
            detail: None,
        }
    }
}

/// Result of a Ceph call.
pub type Result<T, E = CephError> = std::result::Result<T, E>;

/// Turns a C return code into a `Result`: negative is `-errno`, the rest is success.
pub(crate) fn check(ret: i32, op: &'static str, object: impl FnOnce() -> String) -> Result<i32> {
    if ret < 0 {
        Err(CephError::call(op, object(), ret))
    } else {
        Ok(ret)
    }
}

/// Converts a Rust string for C, naming what it is when it cannot be.
pub(crate) fn cstring(what: &'static str, value: &str) -> Result<std::ffi::CString> {
    std::ffi::CString::new(value).map_err(|_| CephError::InvalidName {
        what,
        value: value.to_string(),
    })
}

struct Errno(i32);

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, text) = match self.0 {
            libc::ENOENT => ("ENOENT", "not found"),
            libc::EEXIST => ("EEXIST", "already exists"),
            libc::EBUSY => ("EBUSY", "busy"),
            libc::EROFS => ("EROFS", "read-only (non-primary image?)"),
            libc::EACCES => ("EACCES", "permission denied"),
            libc::EPERM => ("EPERM", "operation not permitted"),
            libc::ETIMEDOUT => ("ETIMEDOUT", "timed out"),
            libc::EINVAL => ("EINVAL", "invalid argument"),
            libc::EOPNOTSUPP => ("EOPNOTSUPP", "not supported"),
            libc::ENOSYS => ("ENOSYS", "not implemented"),
            libc::ENOSPC => ("ENOSPC", "no space left"),
            libc::EDQUOT => ("EDQUOT", "quota exceeded"),
            libc::ERANGE => ("ERANGE", "out of range"),
            libc::EIO => ("EIO", "I/O error"),
            libc::ENOTCONN => ("ENOTCONN", "not connected"),
            libc::ECONNREFUSED => ("ECONNREFUSED", "connection refused"),
            libc::ESHUTDOWN => ("ESHUTDOWN", "shut down (client blocklisted?)"),
            _ => return write!(f, "errno {}", self.0),
        };
        write!(f, "{name} ({text})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_error_names_operation_object_and_errno() {
        let e = CephError::call("rbd_update_features", "volumes/volume-1", -libc::EINVAL);
        assert_eq!(
            e.to_string(),
            "rbd_update_features(volumes/volume-1): EINVAL (invalid argument)"
        );
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn errno_maps_to_kinds_callers_match_on() {
        for (errno, kind) in [
            (libc::ENOENT, ErrorKind::NotFound),
            (libc::EEXIST, ErrorKind::Exists),
            (libc::EBUSY, ErrorKind::Busy),
            (libc::EROFS, ErrorKind::ReadOnly),
            (libc::EPERM, ErrorKind::PermissionDenied),
            (libc::ETIMEDOUT, ErrorKind::TimedOut),
            (libc::EXDEV, ErrorKind::Other),
        ] {
            assert_eq!(CephError::call("op", "obj", -errno).kind(), kind);
        }
    }

    #[test]
    fn check_passes_non_negative_returns_through() {
        assert_eq!(check(7, "op", || unreachable!()).unwrap(), 7);
        assert!(check(-libc::ENOENT, "op", || "x".into()).is_err());
    }

    #[test]
    fn interior_nul_is_an_error_not_a_panic() {
        let e = cstring("image name", "a\0b").unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e}");
    }
}

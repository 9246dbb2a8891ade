// SPDX-License-Identifier: GPL-2.0

//! KMCL results (NTSTATUS) and the Linux errnos kmcl returns for them.
//!
//! kmcl's functions return `0` or a negative errno, like any Linux kernel
//! API; completion routines and `PnpFailure` receive the same. This table is
//! the one place that says which KMCL status each errno stands for, so code
//! ported from Windows can translate, and [`Status::from_errno`] /
//! [`Status::ntstatus`] make the mapping available at run time.

/// A KMCL outcome, with its NTSTATUS value and Linux errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `STATUS_SUCCESS`: done.
    Success,
    /// `STATUS_PENDING`: not done yet, will complete later.
    Pending,
    /// `STATUS_BUFFER_OVERFLOW`: did not fit (a synchronous request with a
    /// zero timeout and a full ring), or partial data with more to come
    /// (SaveContinue).
    BufferOverflow,
    /// `STATUS_MORE_PROCESSING_REQUIRED`: feed the next chunk (Restore).
    MoreProcessingRequired,
    /// `STATUS_BUFFER_TOO_SMALL`: the caller's buffer is too small to make
    /// progress.
    BufferTooSmall,
    /// `STATUS_INVALID_PARAMETER` (and `_1` .. `_3`): a bad argument.
    InvalidParameter,
    /// `STATUS_INVALID_DEVICE_STATE`: not allowed in the channel's current
    /// state (for example an init setter after Enable; KMCL reports
    /// `STATUS_INVALID_PARAMETER_1` there).
    InvalidDeviceState,
    /// `STATUS_INSUFFICIENT_RESOURCES`: out of memory.
    InsufficientResources,
    /// `STATUS_CANCELLED`: the operation was cancelled.
    Cancelled,
    /// `STATUS_IO_TIMEOUT`: a wait timed out (KMCL's synchronous request
    /// reports `STATUS_CANCELLED` after cancelling on timeout; kmcl says
    /// timed out).
    Timeout,
    /// `STATUS_DEVICE_REMOVED`: the channel is closing or was rescinded.
    DeviceRemoved,
    /// `STATUS_DEVICE_NOT_CONNECTED`: the channel is not open.
    DeviceNotConnected,
    /// `STATUS_NOT_FOUND`: no such offer, GPADL or object.
    NotFound,
    /// `STATUS_NOT_SUPPORTED`: not available on this transport.
    NotSupported,
    /// `STATUS_REVISION_MISMATCH`: an interface or structure version or size
    /// the library does not know.
    RevisionMismatch,
    /// `STATUS_DATA_ERROR`: the other endpoint sent malformed data.
    DataError,
    /// `STATUS_DEVICE_BUSY`: in use (for example a mapped GPADL).
    DeviceBusy,
    /// `STATUS_UNSUCCESSFUL`: any other failure.
    Unsuccessful,
}

// Linux errno values (include/uapi/asm-generic/errno-base.h, errno.h);
// the same on every architecture kmcl builds for.
const EIO: i32 = 5;
const EAGAIN: i32 = 11;
const ENOMEM: i32 = 12;
const EBUSY: i32 = 16;
const ENODEV: i32 = 19;
const EINVAL: i32 = 22;
const ENOENT: i32 = 2;
const EPROTO: i32 = 71;
const EOVERFLOW: i32 = 75;
const ENOBUFS: i32 = 105;
const ENOTCONN: i32 = 107;
const ETIMEDOUT: i32 = 110;
const EINPROGRESS: i32 = 115;
const ECANCELED: i32 = 125;
const EOPNOTSUPP: i32 = 95;
const EPROTONOSUPPORT: i32 = 93;

/// Every status with its NTSTATUS and (negative) errno; the single source
/// of the mapping.
pub const TABLE: [(Status, u32, i32); 18] = [
    (Status::Success, 0x0000_0000, 0),
    (Status::Pending, 0x0000_0103, -EINPROGRESS),
    (Status::BufferOverflow, 0x8000_0005, -EOVERFLOW),
    (Status::MoreProcessingRequired, 0xC000_0016, -EAGAIN),
    (Status::BufferTooSmall, 0xC000_0023, -ENOBUFS),
    (Status::InvalidParameter, 0xC000_000D, -EINVAL),
    (Status::InvalidDeviceState, 0xC000_0184, -EBUSY),
    (Status::InsufficientResources, 0xC000_009A, -ENOMEM),
    (Status::Cancelled, 0xC000_0120, -ECANCELED),
    (Status::Timeout, 0xC000_00B5, -ETIMEDOUT),
    (Status::DeviceRemoved, 0xC000_02B6, -ENODEV),
    (Status::DeviceNotConnected, 0xC000_009D, -ENOTCONN),
    (Status::NotFound, 0xC000_0225, -ENOENT),
    (Status::NotSupported, 0xC000_00BB, -EOPNOTSUPP),
    (Status::RevisionMismatch, 0xC000_0059, -EPROTONOSUPPORT),
    (Status::DataError, 0xC000_003E, -EPROTO),
    (Status::DeviceBusy, 0x8000_0011, -EBUSY),
    (Status::Unsuccessful, 0xC000_0001, -EIO),
];

impl Status {
    fn row(self) -> (Status, u32, i32) {
        let mut i = 0;
        while i < TABLE.len() {
            if TABLE[i].0 as u8 == self as u8 {
                return TABLE[i];
            }
            i += 1;
        }
        (Status::Unsuccessful, 0xC000_0001, -EIO)
    }

    /// The NTSTATUS value KMCL uses for this outcome.
    pub fn ntstatus(self) -> u32 {
        self.row().1
    }

    /// The negative errno (or 0) kmcl returns for this outcome.
    pub fn errno(self) -> i32 {
        self.row().2
    }

    /// The outcome an errno returned by kmcl stands for. Several statuses
    /// share `-EBUSY`; the first in [`TABLE`] wins. Unknown errnos are
    /// [`Status::Unsuccessful`].
    pub fn from_errno(errno: i32) -> Self {
        TABLE
            .iter()
            .find(|row| row.2 == errno)
            .map_or(Status::Unsuccessful, |row| row.0)
    }

    /// The outcome an NTSTATUS value stands for; unknown values are
    /// [`Status::Unsuccessful`] (or [`Status::Success`] for any other
    /// success code).
    pub fn from_ntstatus(nt: u32) -> Self {
        match TABLE.iter().find(|row| row.1 == nt) {
            Some(row) => row.0,
            None if nt >> 30 == 0 => Status::Success,
            None => Status::Unsuccessful,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for (i, (s, nt, errno)) in TABLE.iter().enumerate() {
            assert_eq!(s.ntstatus(), *nt);
            assert_eq!(s.errno(), *errno);
            assert_eq!(Status::from_ntstatus(*nt), *s);
            assert!(*errno <= 0);
            for (s2, nt2, _) in &TABLE[i + 1..] {
                assert_ne!(s, s2, "{s:?} listed twice");
                assert_ne!(nt, nt2, "{s:?} and {s2:?} share an NTSTATUS");
            }
        }
    }

    #[test]
    fn errnos_map_back() {
        // Every errno maps back to a status with the same errno; only
        // -EBUSY is shared, and it means "invalid state" first.
        for (s, _, errno) in TABLE {
            assert_eq!(Status::from_errno(errno).errno(), errno);
            if errno != -EBUSY {
                assert_eq!(Status::from_errno(errno), s);
            }
        }
        assert_eq!(Status::from_errno(-EBUSY), Status::InvalidDeviceState);
        assert_eq!(Status::from_errno(-9999), Status::Unsuccessful);
        assert_eq!(Status::from_ntstatus(0x0000_0001), Status::Success);
        assert_eq!(Status::from_ntstatus(0xC0DE_0000), Status::Unsuccessful);
    }

    #[test]
    fn documented_results() {
        // SendSynchronousRequest's outcomes, as the KMCL docs name them.
        assert_eq!(Status::BufferOverflow.ntstatus(), 0x8000_0005);
        assert_eq!(Status::Cancelled.ntstatus(), 0xC000_0120);
        assert_eq!(Status::DeviceRemoved.ntstatus(), 0xC000_02B6);
        assert_eq!(Status::DeviceRemoved.errno(), -ENODEV);
    }
}

// SPDX-License-Identifier: GPL-2.0

//! Transfer-page range lists: the header of a VMBus transfer-page packet
//! (`VM_PKT_DATA_USING_XFER_PAGES`, type 7).
//!
//! A receiver shares a buffer (a GPADL) with the sender and registers it as
//! a *transfer-page set* with an id; the sender then delivers data by
//! naming ranges of that set instead of copying them through the ring.  The
//! header that follows the 16-byte descriptor is
//!
//! ```text
//! u16 set_id; u8 sender_owns_set; u8 reserved; u32 range_count;
//! range_count x { u32 byte_count; u32 byte_offset; }
//! ```
//!
//! (`struct vmtransfer_page_packet_header` and `struct
//! vmtransfer_page_range` in `include/linux/hyperv.h`), followed by the
//! packet's in-band payload.  Everything comes from the other endpoint:
//! [`XferRanges::parse`] checks the set id against the receiver's
//! registered sets, the count against its limit and every range against the
//! set's length before anything uses them.

/// Bytes of the list header (`set_id`, `sender_owns_set`, `reserved`,
/// `range_count`).
pub const LIST_HEADER: usize = 8;
/// Bytes of one range (`byte_count`, `byte_offset`).
pub const RANGE_SIZE: usize = 8;

/// Why a transfer-page range list was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XferError {
    /// The header is shorter than its own counts claim.
    Truncated,
    /// No transfer-page set with this id is registered.
    UnknownSet(u16),
    /// `range_count` is zero or above the receiver's limit.
    BadRangeCount(u32),
    /// A range is empty or ends beyond its set.
    BadRange {
        /// `byte_count` as read.
        len: u32,
        /// `byte_offset` as read.
        offset: u32,
    },
    /// Bytes are left over after the last range (encoding: not 8-aligned).
    TrailingBytes,
    /// The output buffer is too small (encoding only).
    NoSpace,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// One validated range of a transfer-page set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XferRange {
    /// Offset of the first byte in the set.
    pub offset: u32,
    /// Length in bytes; at least 1; `offset + len` is within the set.
    pub len: u32,
}

/// A validated transfer-page range list, borrowed from the packet copy it
/// was parsed from.
///
/// # Invariants
///
/// `ranges` holds exactly `count` ranges, each non-empty and inside the
/// set `set_id`, whose length was `set_len` when parsed.
#[derive(Clone, Copy, Debug)]
pub struct XferRanges<'a> {
    set_id: u16,
    sender_owns_set: bool,
    count: u32,
    total_len: u64,
    ranges: &'a [u8],
}

/// Bytes of the type-specific header of a transfer-page packet whose list
/// has `header[4..8]` ranges, read from the first bytes after the
/// descriptor: what `offset8` must cover.  `None` if `header` is too short
/// to say or the size overflows.
pub fn header_len(header: &[u8]) -> Option<usize> {
    let count = u32_at(header, 4)? as usize;
    LIST_HEADER.checked_add(count.checked_mul(RANGE_SIZE)?)
}

impl<'a> XferRanges<'a> {
    /// Parses and validates the type-specific header of a transfer-page
    /// packet: `header` is exactly the bytes between the descriptor and the
    /// payload (`offset8 * 8 - 16`).  `set_len(id)` is the length in bytes
    /// of the receiver's registered set `id`, or `None` if it has none;
    /// `max_ranges` is the receiver's limit on ranges per packet.
    pub fn parse(
        header: &'a [u8],
        set_len: impl FnOnce(u16) -> Option<u64>,
        max_ranges: u32,
    ) -> Result<Self, XferError> {
        let (id, owns) = match header {
            [lo, hi, owns, _reserved, ..] => (u16::from_le_bytes([*lo, *hi]), *owns != 0),
            _ => return Err(XferError::Truncated),
        };
        let count = u32_at(header, 4).ok_or(XferError::Truncated)?;
        if count == 0 || count > max_ranges {
            return Err(XferError::BadRangeCount(count));
        }
        let len = set_len(id).ok_or(XferError::UnknownSet(id))?;
        let list_len = (count as usize)
            .checked_mul(RANGE_SIZE)
            .and_then(|n| n.checked_add(LIST_HEADER))
            .ok_or(XferError::Truncated)?;
        if header.len() < list_len {
            return Err(XferError::Truncated);
        }
        if header.len() > list_len {
            return Err(XferError::TrailingBytes);
        }
        let ranges = &header[LIST_HEADER..];
        let mut total: u64 = 0;
        for r in ranges.as_chunks::<RANGE_SIZE>().0 {
            let bytes = u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
            let offset = u32::from_le_bytes([r[4], r[5], r[6], r[7]]);
            if bytes == 0 || u64::from(offset) + u64::from(bytes) > len {
                return Err(XferError::BadRange { len: bytes, offset });
            }
            total += u64::from(bytes);
        }
        // INVARIANT: `ranges` holds `count` ranges, each checked above.
        Ok(Self {
            set_id: id,
            sender_owns_set: owns,
            count,
            total_len: total,
            ranges,
        })
    }

    /// The transfer-page set the ranges are in.
    pub fn set_id(&self) -> u16 {
        self.set_id
    }

    /// The `sender_owns_set` byte (Hyper-V's senders set it to 0).
    pub fn sender_owns_set(&self) -> bool {
        self.sender_owns_set
    }

    /// Number of ranges.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Total bytes described by all ranges.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// The ranges, in order.
    pub fn iter(&self) -> impl Iterator<Item = XferRange> + 'a {
        self.ranges
            .as_chunks::<RANGE_SIZE>()
            .0
            .iter()
            .map(|r| XferRange {
                len: u32::from_le_bytes([r[0], r[1], r[2], r[3]]),
                offset: u32::from_le_bytes([r[4], r[5], r[6], r[7]]),
            })
    }
}

/// Encodes the header of a transfer-page packet naming `ranges` of set
/// `set_id` into `out`, returning the bytes used (`LIST_HEADER + 8 *
/// ranges`, always a multiple of 8).  Ranges must be non-empty; whether they
/// fit the receiver's set is the receiver's check.
pub fn encode(
    set_id: u16,
    ranges: impl Iterator<Item = XferRange>,
    out: &mut [u8],
) -> Result<usize, XferError> {
    if out.len() < LIST_HEADER {
        return Err(XferError::NoSpace);
    }
    let mut at = LIST_HEADER;
    let mut count: u32 = 0;
    for r in ranges {
        if r.len == 0 || u64::from(r.offset) + u64::from(r.len) > u64::from(u32::MAX) {
            return Err(XferError::BadRange {
                len: r.len,
                offset: r.offset,
            });
        }
        let dst = out.get_mut(at..at + RANGE_SIZE).ok_or(XferError::NoSpace)?;
        dst[..4].copy_from_slice(&r.len.to_le_bytes());
        dst[4..].copy_from_slice(&r.offset.to_le_bytes());
        at += RANGE_SIZE;
        count = count
            .checked_add(1)
            .ok_or(XferError::BadRangeCount(u32::MAX))?;
    }
    if count == 0 {
        return Err(XferError::BadRangeCount(0));
    }
    out[0..2].copy_from_slice(&set_id.to_le_bytes());
    out[2] = 0;
    out[3] = 0;
    out[4..8].copy_from_slice(&count.to_le_bytes());
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET: u16 = 0xcafe;

    fn sets(id: u16) -> Option<u64> {
        (id == SET).then_some(64 * 1024)
    }

    fn encoded(ranges: &[(u32, u32)]) -> ([u8; 128], usize) {
        let mut buf = [0u8; 128];
        let n = encode(
            SET,
            ranges
                .iter()
                .map(|&(offset, len)| XferRange { offset, len }),
            &mut buf,
        )
        .unwrap();
        (buf, n)
    }

    #[test]
    fn round_trip_three_ranges() {
        let want = [(0, 1514), (4096, 60), (65536 - 100, 100)];
        let (buf, n) = encoded(&want);
        assert_eq!(n, LIST_HEADER + 3 * RANGE_SIZE);
        assert_eq!(header_len(&buf[..n]), Some(n));
        let r = XferRanges::parse(&buf[..n], sets, 16).unwrap();
        assert_eq!(r.set_id(), SET);
        assert!(!r.sender_owns_set());
        assert_eq!(r.count(), 3);
        assert_eq!(r.total_len(), 1514 + 60 + 100);
        let got: Vec<(u32, u32)> = r.iter().map(|x| (x.offset, x.len)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn linux_layout() {
        // struct vmtransfer_page_packet_header after the descriptor:
        // xfer_pageset_id = 1, sender_owns_set = 0, reserved, range_cnt = 1,
        // then { byte_count = 0x5ea, byte_offset = 0x1000 }.
        let wire = [1, 0, 0, 0, 1, 0, 0, 0, 0xea, 0x05, 0, 0, 0x00, 0x10, 0, 0];
        let r = XferRanges::parse(&wire, |id| (id == 1).then_some(0x2000), 1).unwrap();
        assert_eq!(r.set_id(), 1);
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            [XferRange {
                offset: 0x1000,
                len: 0x5ea
            }]
        );
    }

    #[test]
    fn unknown_set_is_refused() {
        let (mut buf, n) = encoded(&[(0, 10)]);
        buf[0] = 0x01;
        assert_eq!(
            XferRanges::parse(&buf[..n], sets, 16).unwrap_err(),
            XferError::UnknownSet(0xca01)
        );
    }

    #[test]
    fn ranges_outside_the_set_are_refused() {
        for (offset, len) in [(65536 - 99, 100), (65536, 1), (u32::MAX, 1), (1, u32::MAX)] {
            // Written by hand: the encoder refuses ranges past 4 GiB.
            let (mut buf, n) = encoded(&[(0, 8), (0, 8)]);
            let r = LIST_HEADER + RANGE_SIZE;
            buf[r..r + 4].copy_from_slice(&len.to_le_bytes());
            buf[r + 4..r + 8].copy_from_slice(&offset.to_le_bytes());
            assert_eq!(
                XferRanges::parse(&buf[..n], sets, 16).unwrap_err(),
                XferError::BadRange { len, offset },
                "{offset}+{len}"
            );
        }
        // The last byte of the set is inside it.
        let (buf, n) = encoded(&[(65535, 1)]);
        assert!(XferRanges::parse(&buf[..n], sets, 16).is_ok());
    }

    #[test]
    fn empty_ranges_and_bad_counts_are_refused() {
        let (mut buf, n) = encoded(&[(0, 8), (8, 8)]);
        assert_eq!(
            XferRanges::parse(&buf[..n], sets, 1).unwrap_err(),
            XferError::BadRangeCount(2)
        );
        buf[LIST_HEADER + RANGE_SIZE..LIST_HEADER + RANGE_SIZE + 4].fill(0);
        assert_eq!(
            XferRanges::parse(&buf[..n], sets, 16).unwrap_err(),
            XferError::BadRange { len: 0, offset: 8 }
        );
        buf[4..8].fill(0);
        assert_eq!(
            XferRanges::parse(&buf[..LIST_HEADER], sets, 16).unwrap_err(),
            XferError::BadRangeCount(0)
        );
        assert!(encode(SET, core::iter::empty(), &mut buf).is_err());
    }

    #[test]
    fn lengths_must_match_the_count() {
        let (buf, n) = encoded(&[(0, 8), (8, 8)]);
        assert_eq!(
            XferRanges::parse(&buf[..n - 1], sets, 16).unwrap_err(),
            XferError::Truncated
        );
        assert_eq!(
            XferRanges::parse(&buf[..n + 8], sets, 16).unwrap_err(),
            XferError::TrailingBytes
        );
        assert_eq!(
            XferRanges::parse(&buf[..3], sets, 16).unwrap_err(),
            XferError::Truncated
        );
        // A count that claims more ranges than any header can hold.
        let mut huge = [0u8; 8];
        huge[..2].copy_from_slice(&SET.to_le_bytes());
        huge[4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            XferRanges::parse(&huge, sets, u32::MAX).unwrap_err(),
            XferError::Truncated
        );
        let mut small = [0u8; 16];
        assert_eq!(
            encode(
                SET,
                [XferRange { offset: 0, len: 1 }; 2].into_iter(),
                &mut small
            ),
            Err(XferError::NoSpace)
        );
    }
}

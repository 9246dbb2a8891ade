// SPDX-License-Identifier: GPL-2.0

//! VMBus packet descriptors as they appear in a ring buffer.
//!
//! A packet in a VMBus ring is an 8-byte aligned record:
//!
//! ```text
//! +--------------------------+-----------------+---------+----------------+
//! | descriptor (16 bytes)    | type-specific   | payload | trailer        |
//! | type offset8 len8 flags  | header (GPA     | (padded | (8 bytes: ring |
//! | transaction_id           |  ranges, ...)   | to 8)   |  offset << 32) |
//! +--------------------------+-----------------+---------+----------------+
//!  <------------ offset8 * 8 ------------------>
//!  <------------------------- len8 * 8 ------------------>
//! ```
//!
//! `offset8` and `len8` count 8-byte units from the start of the descriptor;
//! the trailer is not part of `len8`. This is the layout of Linux's
//! `struct vmpacket_descriptor` (`include/linux/hyperv.h`).

/// Size of the fixed packet descriptor in bytes.
pub const DESCRIPTOR_SIZE: usize = 16;

/// Size of the trailer that follows every packet in a ring.
pub const TRAILER_SIZE: usize = 8;

/// Packets, and every index in a ring, are aligned to this many bytes.
pub const PACKET_ALIGN: usize = 8;

/// Descriptor flag: the sender wants a completion packet for this one.
pub const FLAG_COMPLETION_REQUESTED: u16 = 1;

/// Packet types kmcl sends and accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum PacketType {
    /// Payload carried in the ring (`VM_PKT_DATA_INBAND`).
    InBand = 6,
    /// Payload in the ring plus ranges of a transfer-page set the receiver
    /// registered (`VM_PKT_DATA_USING_XFER_PAGES`; the header is
    /// [`crate::protocol::xfer`]'s range list).
    TransferPages = 7,
    /// Payload in the ring plus a list of guest page ranges
    /// (`VM_PKT_DATA_USING_GPA_DIRECT`).
    GpaDirect = 9,
    /// Completion of an earlier packet (`VM_PKT_COMP`).
    Completion = 0xb,
}

impl PacketType {
    /// Decodes a wire packet type, rejecting types kmcl does not handle.
    #[inline]
    pub fn from_wire(raw: u16) -> Result<Self, DescriptorError> {
        match raw {
            6 => Ok(Self::InBand),
            7 => Ok(Self::TransferPages),
            9 => Ok(Self::GpaDirect),
            0xb => Ok(Self::Completion),
            _ => Err(DescriptorError::UnknownType(raw)),
        }
    }
}

/// Why a descriptor read from a ring was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptorError {
    /// The packet type is not one kmcl understands.
    UnknownType(u16),
    /// Flags other than [`FLAG_COMPLETION_REQUESTED`] were set.
    UnknownFlags(u16),
    /// `offset8` is smaller than the descriptor or larger than `len8`.
    BadOffset {
        /// The `offset8` field as read.
        offset8: u16,
        /// The `len8` field as read.
        len8: u16,
    },
    /// The packet claims more bytes than the ring holds.
    TooLong {
        /// Bytes claimed by `len8` plus the trailer.
        claimed: usize,
        /// Bytes actually available to read.
        available: usize,
    },
}

/// A validated packet descriptor.
///
/// # Invariants
///
/// `2 <= offset8 <= len8`, `flags` has no bits other than
/// [`FLAG_COMPLETION_REQUESTED`], and `ptype` is a type kmcl handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    ptype: PacketType,
    offset8: u16,
    len8: u16,
    flags: u16,
    transaction_id: u64,
}

impl Descriptor {
    /// Builds the descriptor for an outgoing packet with `header_len` bytes
    /// of type-specific header and `payload_len` bytes of payload.
    ///
    /// Returns `None` when the packet would not fit the 16-bit `len8` field.
    #[inline]
    pub fn new(
        ptype: PacketType,
        header_len: usize,
        payload_len: usize,
        completion_requested: bool,
        transaction_id: u64,
    ) -> Option<Self> {
        let offset = DESCRIPTOR_SIZE.checked_add(header_len)?;
        if offset % PACKET_ALIGN != 0 {
            return None;
        }
        let len = align8(offset.checked_add(payload_len)?)?;
        let offset8 = u16::try_from(offset / PACKET_ALIGN).ok()?;
        let len8 = u16::try_from(len / PACKET_ALIGN).ok()?;
        // INVARIANT: offset >= 16 so offset8 >= 2; len >= offset so
        // len8 >= offset8; the only flag set is COMPLETION_REQUESTED.
        Some(Self {
            ptype,
            offset8,
            len8,
            flags: if completion_requested {
                FLAG_COMPLETION_REQUESTED
            } else {
                0
            },
            transaction_id,
        })
    }

    /// Parses and validates a descriptor copied out of a ring.
    ///
    /// `available` is the number of bytes the reader may consume, counted
    /// from the descriptor's first byte; the packet and its trailer must fit.
    #[inline]
    pub fn parse(raw: &[u8; DESCRIPTOR_SIZE], available: usize) -> Result<Self, DescriptorError> {
        let ptype = u16::from_le_bytes([raw[0], raw[1]]);
        let offset8 = u16::from_le_bytes([raw[2], raw[3]]);
        let len8 = u16::from_le_bytes([raw[4], raw[5]]);
        let flags = u16::from_le_bytes([raw[6], raw[7]]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&raw[8..16]);
        let transaction_id = u64::from_le_bytes(id);

        let ptype = PacketType::from_wire(ptype)?;
        if flags & !FLAG_COMPLETION_REQUESTED != 0 {
            return Err(DescriptorError::UnknownFlags(flags));
        }
        if offset8 < 2 || offset8 > len8 {
            return Err(DescriptorError::BadOffset { offset8, len8 });
        }
        let claimed = usize::from(len8) * PACKET_ALIGN + TRAILER_SIZE;
        if claimed > available {
            return Err(DescriptorError::TooLong { claimed, available });
        }
        // INVARIANT: every field was checked above.
        Ok(Self {
            ptype,
            offset8,
            len8,
            flags,
            transaction_id,
        })
    }

    /// Encodes the descriptor in wire format.
    #[inline]
    pub fn to_bytes(self) -> [u8; DESCRIPTOR_SIZE] {
        let mut out = [0u8; DESCRIPTOR_SIZE];
        out[0..2].copy_from_slice(&(self.ptype as u16).to_le_bytes());
        out[2..4].copy_from_slice(&self.offset8.to_le_bytes());
        out[4..6].copy_from_slice(&self.len8.to_le_bytes());
        out[6..8].copy_from_slice(&self.flags.to_le_bytes());
        out[8..16].copy_from_slice(&self.transaction_id.to_le_bytes());
        out
    }

    /// The packet type.
    #[inline]
    pub fn packet_type(&self) -> PacketType {
        self.ptype
    }

    /// Whether the sender asked for a completion packet.
    #[inline]
    pub fn completion_requested(&self) -> bool {
        self.flags & FLAG_COMPLETION_REQUESTED != 0
    }

    /// The transaction id chosen by the sender.
    #[inline]
    pub fn transaction_id(&self) -> u64 {
        self.transaction_id
    }

    /// Byte offset of the payload from the start of the descriptor.
    #[inline]
    pub fn data_offset(&self) -> usize {
        usize::from(self.offset8) * PACKET_ALIGN
    }

    /// Length of the packet in bytes, descriptor and padding included,
    /// trailer excluded.
    #[inline]
    pub fn packet_len(&self) -> usize {
        usize::from(self.len8) * PACKET_ALIGN
    }

    /// Bytes the packet occupies in the ring, trailer included.
    #[inline]
    pub fn ring_len(&self) -> usize {
        self.packet_len() + TRAILER_SIZE
    }

    /// Bytes between the descriptor and the payload (type-specific header).
    #[inline]
    pub fn header_len(&self) -> usize {
        self.data_offset() - DESCRIPTOR_SIZE
    }

    /// Length of the payload area, including the sender's padding.
    #[inline]
    pub fn payload_len(&self) -> usize {
        self.packet_len() - self.data_offset()
    }
}

/// Rounds `n` up to the packet alignment, or `None` on overflow.
pub fn align8(n: usize) -> Option<usize> {
    Some(n.checked_add(PACKET_ALIGN - 1)? & !(PACKET_ALIGN - 1))
}

/// Bytes an in-band packet with `payload_len` bytes of payload occupies in a
/// ring, trailer included.
pub fn inband_ring_len(payload_len: usize) -> Option<usize> {
    align8(DESCRIPTOR_SIZE.checked_add(payload_len)?)?.checked_add(TRAILER_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(ptype: u16, offset8: u16, len8: u16, flags: u16, id: u64) -> [u8; 16] {
        let mut r = [0u8; 16];
        r[0..2].copy_from_slice(&ptype.to_le_bytes());
        r[2..4].copy_from_slice(&offset8.to_le_bytes());
        r[4..6].copy_from_slice(&len8.to_le_bytes());
        r[6..8].copy_from_slice(&flags.to_le_bytes());
        r[8..16].copy_from_slice(&id.to_le_bytes());
        r
    }

    #[test]
    fn inband_round_trip() {
        let d = Descriptor::new(PacketType::InBand, 0, 13, true, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(d.data_offset(), 16);
        assert_eq!(d.packet_len(), 32);
        assert_eq!(d.ring_len(), 40);
        let bytes = d.to_bytes();
        assert_eq!(bytes, raw(6, 2, 4, 1, 0x1122_3344_5566_7788));
        assert_eq!(Descriptor::parse(&bytes, 40), Ok(d));
    }

    #[test]
    fn rejects_each_malformed_field() {
        assert_eq!(
            Descriptor::parse(&raw(8, 2, 2, 0, 0), 64),
            Err(DescriptorError::UnknownType(8))
        );
        assert_eq!(
            Descriptor::parse(&raw(0xa, 2, 2, 0, 0), 64),
            Err(DescriptorError::UnknownType(0xa))
        );
        assert_eq!(
            Descriptor::parse(&raw(6, 2, 2, 2, 0), 64),
            Err(DescriptorError::UnknownFlags(2))
        );
        assert_eq!(
            Descriptor::parse(&raw(6, 1, 2, 0, 0), 64),
            Err(DescriptorError::BadOffset {
                offset8: 1,
                len8: 2
            })
        );
        assert_eq!(
            Descriptor::parse(&raw(6, 3, 2, 0, 0), 64),
            Err(DescriptorError::BadOffset {
                offset8: 3,
                len8: 2
            })
        );
        assert_eq!(
            Descriptor::parse(&raw(6, 2, 8, 0, 0), 64),
            Err(DescriptorError::TooLong {
                claimed: 72,
                available: 64
            })
        );
    }

    #[test]
    fn transfer_page_packets_are_a_known_type() {
        // Hyper-V's network VSP: type 7, the range-list header (8 bytes +
        // one range) then no payload.
        let d = Descriptor::parse(&raw(7, 4, 4, 1, 9), 40).unwrap();
        assert_eq!(d.packet_type(), PacketType::TransferPages);
        assert_eq!(d.header_len(), 16);
        assert_eq!(d.payload_len(), 0);
        assert!(d.completion_requested());
        let out = Descriptor::new(PacketType::TransferPages, 16, 10, true, 9).unwrap();
        assert_eq!(out.to_bytes()[0..2], [7, 0]);
    }

    #[test]
    fn sizes() {
        assert_eq!(inband_ring_len(0), Some(24));
        assert_eq!(inband_ring_len(1), Some(32));
        assert_eq!(inband_ring_len(8), Some(32));
        assert_eq!(inband_ring_len(usize::MAX), None);
        assert!(Descriptor::new(PacketType::InBand, 0, 8 * 65_536, false, 0).is_none());
    }
}

/// The same checks on the kernel build of this file, run by KUnit when
/// the test build of `kmcl.ko` is loaded (`KMCL_KUNIT=y`).
#[cfg(kmcl_kunit)]
#[::kernel::prelude::kunit_tests(kmcl_protocol_packet)]
mod kunit {
    use super::*;

    #[test]
    fn descriptor_round_trip() {
        let d = Descriptor::new(PacketType::GpaDirect, 16, 100, true, 42).unwrap();
        assert_eq!(d.header_len(), 16);
        assert_eq!(d.packet_len(), 136);
        assert_eq!(Descriptor::parse(&d.to_bytes(), d.ring_len()), Ok(d));
    }

    #[test]
    fn rejects_truncated_packet() {
        // 16-byte descriptor + 64-byte payload + 8-byte trailer = 88 bytes.
        let d = Descriptor::new(PacketType::InBand, 0, 64, false, 0).unwrap();
        assert_eq!(d.ring_len(), 88);
        assert_eq!(
            Descriptor::parse(&d.to_bytes(), d.ring_len() - 8),
            Err(DescriptorError::TooLong {
                claimed: 88,
                available: 80
            })
        );
    }
}

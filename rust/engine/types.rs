// SPDX-License-Identifier: GPL-2.0

//! Small types the engine's parts and the transports share.

use core::fmt;

/// A VMBus interface GUID, in wire byte order.
pub(crate) type Guid = [u8; 16];

/// A GUID in its usual text form (Windows/Linux `GUID` layout).
pub(crate) struct GuidText<'a>(pub(crate) &'a Guid);

impl fmt::Display for GuidText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-",
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_le_bytes([b[4], b[5]]),
            u16::from_le_bytes([b[6], b[7]]),
            b[8],
            b[9]
        )?;
        for x in &b[10..] {
            write!(f, "{:02x}", x)?;
        }
        Ok(())
    }
}

// For the kernel's print macros too (log lines name interfaces).
impl kernel::fmt::Display for GuidText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why kmcl closed a channel on its own (the `why` of the
/// `kmcl_channel_failed` trace event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The driver failed an incoming packet (KMCL `VmbChannelPacketFail`).
    PacketFail,
    /// The incoming ring holds something that is not a valid packet.
    CorruptRing,
    /// A completion for a transaction that is not outstanding.
    BadCompletion,
    /// External data that is not what the sender exposed, or over the
    /// receiver's limits.
    BadExternalData,
    /// A transfer-page packet naming a set this endpoint did not register,
    /// a range outside its set, or too many ranges.
    BadTransferPages,
    /// The other endpoint read nothing for the stall time while sends
    /// waited for room.
    PeerNotDraining,
}

impl CloseReason {
    /// The reason as the trace event prints it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::PacketFail => "packet_fail",
            Self::CorruptRing => "corrupt_ring",
            Self::BadCompletion => "bad_completion",
            Self::BadExternalData => "bad_external_data",
            Self::BadTransferPages => "bad_transfer_pages",
            Self::PeerNotDraining => "peer_not_draining",
        }
    }
}

/// What a channel's data path accepts and gives each incoming packet,
/// from the channel's settings when it connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DataPathLimits {
    /// Largest packet payload the driver sends (`MaximumPacketSize`).
    pub(crate) max_packet: usize,
    /// Bytes of zeroed driver context per incoming packet
    /// (`ClientContextSize`).
    pub(crate) context_size: usize,
    /// External data one incoming packet may describe.
    pub(crate) max_external: ExternalLimits,
}

/// External data one packet may describe (`MaximumExternalData`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ExternalLimits {
    /// Most ranges (chain length).
    pub(crate) ranges: u32,
    /// Most bytes in all.
    pub(crate) bytes: u64,
}

/// The sizes of a connection's two rings, in data pages (the client's
/// choice, `VmbClientChannelInitSetRingBufferPageCount`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RingPageCounts {
    /// The ring the client receives on.
    pub(crate) incoming: u32,
    /// The ring the client sends on.
    pub(crate) outgoing: u32,
}

/// A device's MMIO space as the driver sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MmioSpace {
    /// Kernel virtual address.
    pub(crate) address: usize,
    /// Bytes.
    pub(crate) len: usize,
    /// The guest physical address of its start (what a driver tells a
    /// host, e.g. where a synthetic video device's VRAM is); `None` on the
    /// loopback bus, whose space is ordinary (vmalloc) memory.
    pub(crate) physical: Option<u64>,
}

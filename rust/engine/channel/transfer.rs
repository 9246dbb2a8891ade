// SPDX-License-Identifier: GPL-2.0

//! Transfer-page sets (kmcl's extension; Linux netvsc's receive buffer,
//! FreeBSD's `VMBUS_CHANPKT_TYPE_RXBUF`, OpenVMM's `TransferPages`): a
//! client registers one of its GPADLs as a set under an id, and the other
//! endpoint delivers data into it by sending packets that name ranges of
//! the set instead of copying the data through the ring.
//!
//! The client's receive work checks each such packet against the
//! registered sets ([`crate::engine::datapath::TransferSets`]); a packet
//! naming an unknown set, a range outside its set or too many ranges
//! closes the channel (`bad_transfer_pages`), as any corrupt descriptor
//! does. The ranges stay valid while the driver holds the packet: the
//! memory is the client's own, and its GPADL cannot be deleted while it
//! is registered (`-EBUSY`).

use kernel::{
    prelude::*,
    sync::Arc, //
};

use crate::{
    engine::datapath::{
        Routine,
        TransferSets, //
    },
    protocol::{
        lifecycle::Role,
        xfer::XferRange, //
    },
};

use super::Channel;

impl Channel {
    /// The transfer-page sets incoming packets may name: this endpoint's,
    /// or for a client sub-channel its primary's.
    pub(crate) fn transfer_sets(&self) -> Arc<TransferSets> {
        self.transfer.lock().clone()
    }

    /// A client sub-channel uses `primary`'s sets.
    pub(super) fn share_transfer_sets(&self, primary: &Channel) {
        let sets = primary.transfer_sets();
        *self.transfer.lock() = sets;
    }

    /// Registers the client's GPADL `gpadl` as transfer-page set `id`, for
    /// the rest of the connection or until
    /// [`Self::unregister_transfer_set`]. Client, connected, process
    /// context. `-EINVAL` for a server, `-ENOTCONN` when not connected,
    /// `-ENOENT` for an unknown GPADL, `-EEXIST` for an id registered
    /// already, `-ENOSPC` beyond
    /// [`crate::engine::datapath::MAX_TRANSFER_SETS`] sets.
    pub(crate) fn register_transfer_set(&self, id: u16, gpadl: u32) -> Result {
        // A sub-channel uses its primary's sets: register them there.
        if self.role != Role::Client || self.primary().is_some() {
            return Err(EINVAL);
        }
        let peer = {
            let data = self.data.lock();
            data.as_ref().ok_or(ENOTCONN)?.peer().clone()
        };
        let len = match peer.gpadl_host() {
            Some(host) => host.gpadl_len(gpadl),
            None => self.gpadls().len_of(gpadl),
        }
        .ok_or(ENOENT)?;
        self.transfer_sets().register(id, gpadl, len as u64)
    }

    /// Ends transfer-page set `id`. Packets delivered already keep their
    /// ranges (the memory stays the driver's); a packet naming the set
    /// from now on closes the channel. `-ENOENT` if it is not registered.
    pub(crate) fn unregister_transfer_set(&self, id: u16) -> Result {
        if self.role != Role::Client || self.primary().is_some() {
            return Err(EINVAL);
        }
        self.transfer_sets().unregister(id)
    }

    /// Sends `payload` naming `ranges` of the other endpoint's
    /// transfer-page set `set_id`. The other endpoint must have registered
    /// the set, and every range must lie inside it (`-EINVAL`); see
    /// [`crate::engine::datapath::DataPath::send_transfer`]. With
    /// `wait_for_completion`, `completion` runs when the receiver completes
    /// the packet, otherwise once it is in the ring. `-ENOTCONN` when not
    /// connected. Any context.
    pub(crate) fn send_transfer_pages(
        self: &Arc<Self>,
        set_id: u16,
        ranges: &[XferRange],
        payload: &[u8],
        wait_for_completion: bool,
        completion: impl Into<Routine>,
    ) -> Result {
        let completion = completion.into();
        self.send_and_run(|dp| {
            dp.send_transfer(set_id, ranges, payload, completion, wait_for_completion)
        })
    }
}

// SPDX-License-Identifier: GPL-2.0

//! Memory the other endpoint may touch outside the rings: external data
//! this endpoint exposed for a transaction ([`Exposed`]), and the MMIO
//! space of the connection.
//!
//! [`Exposed`]: crate::engine::datapath::Exposed

use kernel::{
    prelude::*,
    sync::Arc, //
};

use crate::engine::types::MmioSpace;

use super::Channel;

impl Channel {
    /// What this endpoint exposed for transaction `tid` (the other
    /// endpoint checks a GPA-direct packet against it).
    pub(crate) fn exposed(&self, tid: u64) -> Option<Arc<crate::shmem::External>> {
        self.exposed.get(tid)
    }

    /// KMCL `VmbChannelGetMmioSpace`: the connection's MMIO space, from
    /// Opened until Closed. `-ENOTCONN` when not connected, `-ENODATA`
    /// when the offer has none. Any context.
    pub(crate) fn mmio_space(&self) -> Result<MmioSpace> {
        let (connected, space) = *self.mmio.lock();
        if !connected {
            return Err(ENOTCONN);
        }
        space.ok_or(ENODATA)
    }

    /// KMCL's `MmioAddress` as its page describes it: the guest physical
    /// range (start, bytes) of the connection's MMIO space, from Opened
    /// until Closed. As [`Self::mmio_space`], and `-EOPNOTSUPP` on the
    /// loopback bus (ordinary memory, no physical range). Any context.
    pub(crate) fn mmio_physical(&self) -> Result<(u64, usize)> {
        let space = self.mmio_space()?;
        Ok((space.physical.ok_or(EOPNOTSUPP)?, space.len))
    }
}

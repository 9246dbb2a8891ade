// SPDX-License-Identifier: GPL-2.0

//! Memory the other endpoint may touch outside the rings: external data
//! exposed for a transaction, and the MMIO space of a loopback device.

use kernel::{
    prelude::*,
    sync::Arc, //
};

use super::Channel;

impl Channel {
    /// Exposes `pages` to the other endpoint for transaction `tid`.
    pub(crate) fn expose(&self, tid: u64, pages: Arc<crate::shmem::GpadlPages>) -> Result {
        self.exposed.lock().push((tid, pages), GFP_ATOMIC)?;
        Ok(())
    }

    /// Ends the exposure for transaction `tid` (its completion came).
    pub(crate) fn unexpose(&self, tid: u64) {
        let gone = {
            let mut e = self.exposed.lock();
            e.iter()
                .position(|(t, _)| *t == tid)
                .and_then(|i| e.remove(i).ok())
        };
        drop(gone);
    }

    /// What this endpoint exposed for transaction `tid` (the other
    /// endpoint checks a GPA-direct packet against it).
    pub(crate) fn exposed(&self, tid: u64) -> Option<Arc<crate::shmem::GpadlPages>> {
        self.exposed
            .lock()
            .iter()
            .find(|(t, _)| *t == tid)
            .map(|(_, p)| p.clone())
    }

    /// KMCL `VmbChannelGetMmioSpace`: (kernel virtual address, bytes) of
    /// the connection's MMIO space, from Opened until Closed. `-ENOTCONN`
    /// when not connected, `-ENODATA` when the offer has none. Any context.
    pub fn mmio_space(&self) -> Result<(usize, usize)> {
        let (connected, space) = *self.mmio.lock();
        if !connected {
            return Err(ENOTCONN);
        }
        space.ok_or(ENODATA)
    }
}

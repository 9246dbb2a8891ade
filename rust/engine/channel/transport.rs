// SPDX-License-Identifier: GPL-2.0

//! What a channel asks of the transport it is on: the traits kmcl's
//! loopback VMBus and its `hv_vmbus` transport implement (both in
//! [`crate::transport`], above the engine). The engine names no transport;
//! it holds a channel's bus and connection as these trait objects (and its
//! other endpoint as a [`crate::engine::datapath::Remote`]).
//!
//! - A [`Bus`] is where servers offer interfaces and clients look for them.
//! - A [`Link`] is one connection between a client and the offer it found;
//!   the lifecycle code opens a data path on it and leaves it.
//!
//! Transports tell channels what happened by posting
//! [`crate::engine::channel::PeerEvent`]s (connected, closed, connect
//! failed) to them; the channel's control work handles them in process
//! context.

use kernel::{
    prelude::*,
    sync::Arc, //
};

use crate::engine::{
    datapath::DataPath,
    types::{
        DataPathLimits,
        Guid,
        MmioSpace, //
    },
};

use super::{
    Channel,
    Settings, //
};

/// A VMBus: the offers of its servers and the clients looking for them.
/// Every method runs in process context.
pub(crate) trait Bus: Send + Sync {
    /// Publishes `server`'s offer of `settings`' interface; `-EEXIST` if it
    /// is offered already. A server restoring save `restored` takes over
    /// the connection its predecessor parked with that save: returns
    /// whether one was taken over.
    /// A sub-channel (`primary` set) is offered as the next sub-channel of
    /// its primary's connection (`-ENOTCONN` without one).
    fn offer(
        self: Arc<Self>,
        server: &Arc<Channel>,
        settings: &Settings,
        restored: Option<u32>,
        primary: Option<&Arc<Channel>>,
    ) -> Result<bool>;

    /// Withdraws `server`'s offer.
    fn rescind(&self, server: &Arc<Channel>);

    /// Connects `client` to a free offer matching `settings` (on the bus
    /// its `transport` setting selects), now or when one appears; the
    /// client hears of it through a `Connected` event, or of a failure
    /// through `ConnectFailed`. A sub-channel (`primary` set) looks for a
    /// free sub-channel offer of its primary's connection (`-ENOTCONN`
    /// while the primary is not connected).
    fn seek(
        self: Arc<Self>,
        client: &Arc<Channel>,
        settings: &Settings,
        primary: Option<&Arc<Channel>>,
    ) -> Result;

    /// Forgets `client` if it is still waiting for an offer.
    fn cancel_seek(&self, client: &Arc<Channel>);
}

/// One connection between a client channel and the offer it found.
pub(crate) trait Link: Send + Sync {
    /// `channel`'s data path on this connection (for a VMBus host's
    /// device: opens its channel). Process context.
    fn data_path(
        self: Arc<Self>,
        channel: &Arc<Channel>,
        limits: DataPathLimits,
    ) -> Result<DataPath>;

    /// `channel` leaves the connection; the other endpoint, if still
    /// there, is told to close. Process context.
    fn detach(self: Arc<Self>, channel: &Arc<Channel>);

    /// The connection's MMIO space, while connected.
    fn mmio_space(&self) -> Option<MmioSpace>;

    /// The instance GUID of the offer connected to.
    fn interface_instance(&self) -> Guid;

    /// The sub-channel index of the connection (0: a primary channel's).
    fn subchannel_index(&self) -> u16 {
        0
    }

    /// `channel` is closing and waits for something of the other
    /// endpoint's (a loopback server's unmapping of its GPADLs, the
    /// completions of packets with its external data): the other
    /// endpoint is told to close now rather than when `channel` leaves.
    /// Only loopback endpoints are told; a VMBus host completes on its
    /// own.
    fn announce_close(self: Arc<Self>, _channel: &Arc<Channel>) {}

    /// The server's Opened callback refused the connection with `e`.
    fn refuse(&self, _e: Error) {}

    /// `channel` stopped waiting for packets the other endpoint's driver
    /// holds: a loopback endpoint's are taken back
    /// ([`Channel::reclaim_held`]); a VMBus host is on its own.
    fn reclaim_peer(&self, _channel: &Arc<Channel>) {}

    /// The server accepted the connection: its client is told.
    fn tell_client(self: Arc<Self>) {}

    /// Waits until the client has left (a server's Disable).
    fn wait_client_detached(&self) {}

    /// A server that saved its state leaves without closing: the
    /// connection waits on `server`'s bus, under `save_id`, for a server
    /// that restores the save; completions of `orphans` (transactions the
    /// leaving server sent) may still come. Returns `false` if this kind
    /// of connection cannot be parked.
    fn park(self: Arc<Self>, _server: &Arc<Channel>, _save_id: u32, _orphans: KVec<u64>) -> bool {
        false
    }

    /// The connection's rings (outgoing of the client, outgoing of the
    /// server), for tests that play a misbehaving endpoint.
    #[cfg(kmcl_kunit)]
    fn rings(&self) -> Option<(Arc<crate::shmem::RingPages>, Arc<crate::shmem::RingPages>)> {
        None
    }
}

/// Whether `a` and `b` are the same connection.
pub(crate) fn same_link(a: &Arc<dyn Link>, b: &Arc<dyn Link>) -> bool {
    core::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

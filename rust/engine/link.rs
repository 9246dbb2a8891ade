// SPDX-License-Identifier: GPL-2.0

//! A channel's connection to its other endpoint: a loopback channel, or a
//! VMBus host's channel through `hv_vmbus`. The lifecycle code treats both
//! alike; what only a loopback server does is a no-op for the host.

use kernel::{prelude::*, sync::Arc};

use super::channel::Channel;
use super::datapath::DataPath;
use super::host::HostLink;
use super::loopback::Connection;
use super::types::{
    DataPathLimits,
    Guid, //
};

/// A channel's connection.
#[derive(Clone)]
pub(crate) enum Link {
    /// To a channel on kmcl's loopback VMBus.
    Loopback(Arc<Connection>),
    /// To a device the VMBus host offers (client channels only).
    Host(Arc<HostLink>),
}

impl Link {
    /// Whether `self` and `other` are the same connection.
    pub(crate) fn same(&self, other: &Link) -> bool {
        match (self, other) {
            (Link::Loopback(a), Link::Loopback(b)) => Arc::ptr_eq(a, b),
            (Link::Host(a), Link::Host(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The loopback connection, if it is one.
    pub(crate) fn loopback(&self) -> Option<&Arc<Connection>> {
        match self {
            Link::Loopback(c) => Some(c),
            Link::Host(_) => None,
        }
    }

    /// `channel`'s data path on this connection (for the host: opens the
    /// device's channel). Process context.
    pub(crate) fn data_path(
        &self,
        channel: &Arc<Channel>,
        limits: DataPathLimits,
    ) -> Result<DataPath> {
        match self {
            Link::Loopback(c) => c.data_path(channel, limits),
            Link::Host(h) => h.data_path(channel, limits),
        }
    }

    /// `channel` leaves the connection.
    pub(crate) fn detach(&self, channel: &Arc<Channel>) {
        match self {
            Link::Loopback(c) => c.detach(channel),
            Link::Host(h) => h.detach(channel.bus().host()),
        }
    }

    /// A loopback client closing with mapped GPADLs tells its server now.
    pub(crate) fn announce_close(&self) {
        if let Link::Loopback(c) = self {
            c.announce_close();
        }
    }

    /// A loopback server's Opened refused the connection with `e`.
    pub(crate) fn refuse(&self, e: Error) {
        if let Link::Loopback(c) = self {
            c.refuse(e);
        }
    }

    /// A loopback server accepted the connection: its client is told.
    pub(crate) fn tell_client(&self) {
        if let Link::Loopback(c) = self {
            c.tell_client();
        }
    }

    /// A loopback server waits until its client has left.
    pub(crate) fn wait_client_detached(&self) {
        if let Link::Loopback(c) = self {
            c.wait_client_detached();
        }
    }

    /// The connection's MMIO space: (kernel virtual address, bytes).
    pub(crate) fn mmio_space(&self) -> Option<(usize, usize)> {
        match self {
            Link::Loopback(c) => c.mmio_space(),
            Link::Host(h) => h.mmio_space(),
        }
    }

    /// The instance GUID of the offer connected to.
    pub(crate) fn interface_instance(&self) -> Guid {
        match self {
            Link::Loopback(c) => c.interface_instance(),
            Link::Host(h) => h.interface_instance(),
        }
    }
}

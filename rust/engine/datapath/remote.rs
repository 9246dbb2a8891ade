// SPDX-License-Identifier: GPL-2.0

//! The other endpoint of a connected channel, as its data path sees it:
//! what a send signals, and where external data and GPADLs live. The
//! transports implement it (a loopback channel, a VMBus host's device).

use kernel::{
    prelude::*,
    sync::Arc, //
};

use crate::shmem::{
    External,
    GpadlPages, //
};

/// External data mapped for the other endpoint for one transaction (the
/// host of an isolated VM: DMA bounce buffers), as the packet names it.
/// Dropping it ends the mapping (the transaction completed: what the
/// other endpoint wrote reaches the pages then).
pub(crate) trait MappedExternal: Send + Sync {
    /// How many ranges: one for each range of the external data.
    fn count(&self) -> usize;

    /// Range `i`: its offset into its first 4-KiB frame, its bytes and its
    /// frames.
    fn range(&self, i: usize) -> Option<(u32, u32, &[u64])>;

    /// The connection ended before the transaction completed: the other
    /// endpoint may reach the memory until its channel is closed, so the
    /// mapping is ended then, not when this is dropped.
    fn retire(&mut self);
}

/// The other endpoint of a data path. Any context unless a method says
/// otherwise.
pub(crate) trait Remote: Send + Sync {
    /// Signals the other endpoint: its rings have something for it.
    /// Consumes the caller's reference (a loopback peer hands it to its
    /// receive work).
    fn signal(self: Arc<Self>);

    /// Whether signals to it may be delayed and merged by the channel
    /// (KMCL's interrupt latency, a loopback peer's).
    fn delays_signals(&self) -> bool {
        false
    }

    /// KMCL's interrupt latency for signals to it is now `latency` (100 ns
    /// units): a VMBus host's channel signals directly for 0
    /// (`low_latency`: the monitor page bypassed) and through its monitor
    /// page otherwise. Any context.
    fn set_signal_latency(&self, _latency: u16) {}

    /// The pages the other endpoint exposed for its transaction `tid`: the
    /// only external data an incoming packet may describe. A VMBus host's
    /// ranges would name guest memory the host chose: never accepted.
    fn exposed(&self, _tid: u64) -> Option<Arc<crate::shmem::External>> {
        None
    }

    /// The length in bytes of the other endpoint's transfer-page set `id`,
    /// if it registered one: the ranges a transfer-page packet to it may
    /// name. `None` for an endpoint kmcl cannot ask (a VMBus host).
    fn transfer_set_len(&self, _id: u16) -> Option<u64> {
        None
    }

    /// Makes external data `pages` reachable by the other endpoint for one
    /// transaction: `None` when it reads them where they are (a loopback
    /// peer, the host of a VM that is not isolated), else their mapping
    /// (the host of an isolated VM: DMA bounce buffers it can reach), whose
    /// frames the packet must name instead. Any context.
    fn map_external(&self, _pages: &External) -> Result<Option<KBox<dyn MappedExternal>>> {
        Ok(None)
    }

    /// The other endpoint keeps its client's GPADLs itself (a VMBus host).
    /// `None`: the client keeps them in its own table, where a loopback
    /// server maps them.
    fn gpadl_host(&self) -> Option<&dyn GpadlHost> {
        None
    }

    /// Server: maps the other endpoint's (the client's) GPADL `handle`.
    /// `-ENOENT` unknown, `-EBUSY` mapped already, `-EACCES` write access
    /// to a read-only GPADL. Process context.
    fn map_gpadl(&self, _handle: u32, _writable: bool) -> Result<Arc<GpadlPages>> {
        Err(ENOTCONN)
    }

    /// Server: ends a mapping made with [`Self::map_gpadl`].
    fn unmap_gpadl(&self, _handle: u32) {}
}

/// An endpoint that keeps the GPADLs its client shares with it (KMCL
/// `CreateGpadl*` and `DeleteGpadl` go to it). Process context.
pub(crate) trait GpadlHost {
    /// Shares `pages`; returns the handle.
    fn create_gpadl(&self, pages: GpadlPages) -> Result<u32>;

    /// Ends the GPADL `handle`.
    fn delete_gpadl(&self, handle: u32) -> Result;

    /// The length in bytes of GPADL `handle`, if it exists.
    fn gpadl_len(&self, handle: u32) -> Option<usize>;
}

// SPDX-License-Identifier: GPL-2.0

//! GPADLs on the loopback VMBus: memory a client shares with the server of
//! its channel.
//!
//! A client creates a GPADL from a buffer or a page array
//! ([`crate::shmem::GpadlPages`], which references the pages) and gets a
//! handle; the server maps it by handle (one mapping at a time; a
//! read-only GPADL cannot be mapped for writing) and gets the pages;
//! DeleteGpadl waits while the server has it mapped. Both tables belong to
//! the channels: the client's holds its GPADLs, the server's its mappings.
//!
//! When a connection ends, the server's mappings are unmapped (after its
//! Closed callback, where KMCL has the driver unmap them) and the client's
//! GPADLs deleted (after its Closed, where KMCL has the driver delete
//! them; this too waits for the server's unmap); whatever a driver forgot
//! is released with one log line. A client closing while the server has
//! a GPADL mapped tells the server at once, so the waits end.
//!
//! The client keeps the memory until DeleteGpadl returns (or until its
//! channel closed): kmcl does not reference the pages, as hv_vmbus does
//! not (see [`GpadlPages`]).

use kernel::{
    new_condvar, new_mutex,
    prelude::*,
    sync::{Arc, CondVar, Mutex},
};

use super::Channel;
use crate::engine::datapath::Peer;
use crate::shmem::GpadlPages;
use crate::{
    protocol::lifecycle::Role, //
};

struct Entry {
    handle: u32,
    pages: Arc<GpadlPages>,
    read_only: bool,
    mapped: bool,
}

/// A server's mapping of a client's GPADL: the client as the server's
/// data path sees it, and the handle.
struct Mapping {
    client: Peer,
    handle: u32,
}

struct Tables {
    /// Client: its GPADLs.
    gpadls: KVec<Entry>,
    next_handle: u32,
    /// Server: its mappings.
    mappings: KVec<Mapping>,
}

/// How many GPADLs a channel has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GpadlCounts {
    /// Client: its GPADLs.
    pub(crate) gpadls: usize,
    /// Client: of them, mapped by the server now.
    pub(crate) mapped_by_server: usize,
    /// Server: its mappings of the client's GPADLs.
    pub(crate) mappings: usize,
}

/// A channel's GPADL state.
#[pin_data]
pub(crate) struct Gpadls {
    #[pin]
    tables: Mutex<Tables>,
    /// Signalled when a GPADL is unmapped.
    #[pin]
    unmapped: CondVar,
}

impl Gpadls {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Gpadls {
            tables <- new_mutex!(Tables {
                gpadls: KVec::new(),
                next_handle: 1,
                mappings: KVec::new(),
            }),
            unmapped <- new_condvar!(),
        })
    }

    /// Client: records a GPADL over `pages`; returns its handle.
    pub(crate) fn create(&self, pages: GpadlPages, read_only: bool) -> Result<u32> {
        let pages = Arc::new(pages, GFP_KERNEL)?;
        let mut t = self.tables.lock();
        let handle = t.next_handle;
        t.gpadls.push(
            Entry {
                handle,
                pages,
                read_only,
                mapped: false,
            },
            GFP_KERNEL,
        )?;
        // Handles are never 0 and not reused while kmcl is loaded (2^32).
        t.next_handle = t.next_handle.wrapping_add(1).max(1);
        Ok(handle)
    }

    /// Client: deletes GPADL `handle`, waiting while the server has it
    /// mapped. `-ENOENT` for an unknown handle.
    pub(crate) fn delete(&self, handle: u32) -> Result {
        let mut t = self.tables.lock();
        loop {
            let i = t
                .gpadls
                .iter()
                .position(|e| e.handle == handle)
                .ok_or(ENOENT)?;
            if !t.gpadls[i].mapped {
                let e = t.gpadls.remove(i).map_err(|_| EINVAL)?;
                drop(t);
                drop(e);
                return Ok(());
            }
            self.unmapped.wait(&mut t);
        }
    }

    /// Client: the length in bytes of GPADL `handle`, if it exists.
    pub(crate) fn len_of(&self, handle: u32) -> Option<usize> {
        let t = self.tables.lock();
        t.gpadls
            .iter()
            .find(|e| e.handle == handle)
            .map(|e| e.pages.len())
    }

    /// How many GPADLs and mappings there are, for debugfs.
    pub(crate) fn counts(&self) -> GpadlCounts {
        let t = self.tables.lock();
        GpadlCounts {
            gpadls: t.gpadls.len(),
            mapped_by_server: t.gpadls.iter().filter(|e| e.mapped).count(),
            mappings: t.mappings.len(),
        }
    }

    /// Client: whether the server has any GPADL mapped.
    pub(crate) fn any_mapped(&self) -> bool {
        self.tables.lock().gpadls.iter().any(|e| e.mapped)
    }

    /// Client: deletes every GPADL left (the connection ended), waiting,
    /// as DeleteGpadl does, until the server has unmapped them (it was told
    /// of the close and unmaps at its own); returns how many there were.
    pub(crate) fn delete_all(&self) -> usize {
        let mut t = self.tables.lock();
        while t.gpadls.iter().any(|e| e.mapped) {
            self.unmapped.wait(&mut t);
        }
        let left = core::mem::take(&mut t.gpadls);
        drop(t);
        left.len()
    }

    /// Client side of a map: marks `handle` mapped and returns its pages.
    pub(crate) fn map_entry(&self, handle: u32, writable: bool) -> Result<Arc<GpadlPages>> {
        let mut t = self.tables.lock();
        let e = t
            .gpadls
            .iter_mut()
            .find(|e| e.handle == handle)
            .ok_or(ENOENT)?;
        if e.mapped {
            return Err(EBUSY);
        }
        if writable && e.read_only {
            return Err(EACCES);
        }
        e.mapped = true;
        Ok(e.pages.clone())
    }

    /// Client side of an unmap.
    pub(crate) fn unmap_entry(&self, handle: u32) {
        let mut t = self.tables.lock();
        if let Some(e) = t.gpadls.iter_mut().find(|e| e.handle == handle) {
            e.mapped = false;
        }
        drop(t);
        self.unmapped.notify_all();
    }

    /// Server: maps `client`'s GPADL `handle`. `-ENOENT` unknown, `-EBUSY`
    /// mapped already, `-EACCES` write access to a read-only GPADL.
    pub(crate) fn map(&self, client: Peer, handle: u32, writable: bool) -> Result<Arc<GpadlPages>> {
        let pages = client.map_gpadl(handle, writable)?;
        let recorded = self.tables.lock().mappings.push(
            Mapping {
                client: client.clone(),
                handle,
            },
            GFP_KERNEL,
        );
        if let Err(e) = recorded {
            client.unmap_gpadl(handle);
            return Err(e.into());
        }
        Ok(pages)
    }

    /// Server: unmaps `handle`. `-ENOENT` if it is not mapped here.
    pub(crate) fn unmap(&self, handle: u32) -> Result {
        let m = {
            let mut t = self.tables.lock();
            let i = t
                .mappings
                .iter()
                .position(|m| m.handle == handle)
                .ok_or(ENOENT)?;
            t.mappings.remove(i).map_err(|_| EINVAL)?
        };
        m.client.unmap_gpadl(m.handle);
        Ok(())
    }

    /// Server: unmaps everything (the connection ended); returns how many
    /// mappings there were.
    pub(crate) fn unmap_all(&self) -> usize {
        let left = core::mem::take(&mut self.tables.lock().mappings);
        for m in left.iter() {
            m.client.unmap_gpadl(m.handle);
        }
        left.len()
    }
}

impl Channel {
    /// The channel's GPADL state.
    pub(crate) fn gpadls(&self) -> &Gpadls {
        &self.gpadl
    }

    /// KMCL `VmbChannelCreateGpadlFromBuffer`/`FromMdl` (client, connected:
    /// from Opened on): shares `pages` with the server; returns the
    /// handle. `-EINVAL` for a server, `-ENOTCONN` when not connected.
    /// Process context.
    pub(crate) fn create_gpadl(
        &self,
        pages: crate::shmem::GpadlPages,
        read_only: bool,
    ) -> Result<u32> {
        if self.role != Role::Client {
            return Err(EINVAL);
        }
        // Not the turn: Opened runs with it held.
        // The other endpoint keeps the GPADL (a VMBus host), or has it
        // kept in this channel's table (a loopback server maps it there).
        let peer = {
            let data = self.data.lock();
            data.as_ref().ok_or(ENOTCONN)?.peer().clone()
        };
        match peer.gpadl_host() {
            Some(host) => host.create_gpadl(pages),
            None => self.gpadl.create(pages, read_only),
        }
    }

    /// KMCL `VmbChannelDeleteGpadl` (client): waits while the server has
    /// the GPADL mapped. `-ENOENT` for an unknown handle, `-EBUSY` while
    /// it is registered as a transfer-page set. Process context.
    pub(crate) fn delete_gpadl(&self, handle: u32) -> Result {
        if self.role != Role::Client {
            return Err(EINVAL);
        }
        if self.transfer_sets().uses_gpadl(handle) {
            return Err(EBUSY);
        }
        let peer = self.data.lock().as_ref().map(|dp| dp.peer().clone());
        match peer.as_ref().and_then(|p| p.gpadl_host()) {
            Some(host) => host.delete_gpadl(handle),
            None => self.gpadl.delete(handle),
        }
    }

    /// KMCL `VmbChannelMapGpadl` (server, connected): the client's pages
    /// behind `handle`, until [`Self::unmap_gpadl`]. One mapping per GPADL
    /// (`-EBUSY`); `writable` on a read-only GPADL fails (`-EACCES`);
    /// `-ENOENT` for an unknown handle. Process context.
    pub(crate) fn map_gpadl(
        &self,
        handle: u32,
        writable: bool,
    ) -> Result<Arc<crate::shmem::GpadlPages>> {
        if self.role != Role::Server {
            return Err(EINVAL);
        }
        let client = self
            .data
            .lock()
            .as_ref()
            .map(|dp| dp.peer().clone())
            .ok_or(ENOTCONN)?;
        self.gpadl.map(client, handle, writable)
    }

    /// KMCL `VmbChannelUnmapGpadl` (server). `-ENOENT` if not mapped.
    pub(crate) fn unmap_gpadl(&self, handle: u32) -> Result {
        if self.role != Role::Server {
            return Err(EINVAL);
        }
        self.gpadl.unmap(handle)
    }
}

// SPDX-License-Identifier: GPL-2.0

//! Scoped forms of a GPADL and of a server's mapping: objects that end
//! what they stand for when dropped, borrowing the channel so that they
//! cannot outlive it. The memory a [`Gpadl`] describes is kept alive by
//! the channel (an `Arc` of it) until the GPADL is deleted, so the GPADL
//! cannot outlive its memory either. For a GPADL or mapping that lives
//! across callbacks, keep its handle instead ([`Gpadl::into_handle`],
//! [`Mapping::into_handle`]): the channel keeps it until it is deleted
//! or unmapped by handle, or the connection ends.
//!
//! Dropping either waits as `VmbChannelDeleteGpadl` or
//! `VmbChannelUnmapGpadl` do, so it belongs in process context (a packet
//! callback running in softirq context should keep handles instead).

use super::{
    ChannelRef,
    SharedPages, //
};
use core::mem::ManuallyDrop;
use kernel::{
    prelude::*,
    sync::Arc, //
};

/// A GPADL of `memory` (client): deleted when dropped
/// (`VmbChannelDeleteGpadl`, waiting while the server has it mapped).
/// Process context.
///
/// ```no_run
/// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
/// let memory = kmcl::SharedPages::new(4)?;
/// let gpadl = channel.share(&memory, false)?;
/// // ... tell the server gpadl.handle(), exchange data ...
/// drop(gpadl); // deleted
/// # Ok(())
/// # }
/// ```
#[doc(alias = "VmbChannelCreateGpadlFromMdl")]
#[doc(alias = "VmbChannelDeleteGpadl")]
pub struct Gpadl<'a> {
    channel: ChannelRef<'a>,
    handle: u32,
}

impl<'a> ChannelRef<'a> {
    /// [`ChannelRef::create_gpadl`] as a [`Gpadl`] that deletes itself
    /// when dropped. Process context.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
    /// let ring = kmcl::SharedPages::new(16)?;
    /// let gpadl = channel.share(&ring, true)?; // read-only for the server
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelCreateGpadlFromMdl")]
    pub fn share(&self, memory: &Arc<SharedPages>, read_only: bool) -> Result<Gpadl<'a>> {
        let handle = self.create_gpadl(memory, read_only)?;
        Ok(Gpadl {
            channel: *self,
            handle,
        })
    }

    /// [`ChannelRef::map_gpadl`] as a [`Mapping`] that unmaps itself when
    /// dropped. Process context.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>, handle: u32) -> Result {
    /// let mapping = channel.map(handle, true)?;
    /// mapping.write(0, b"hello")?;
    /// drop(mapping); // unmapped
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelMapGpadl")]
    pub fn map(&self, handle: u32, writable: bool) -> Result<Mapping<'a>> {
        let len = self.map_gpadl(handle, writable)?;
        Ok(Mapping {
            channel: *self,
            handle,
            len,
        })
    }
}

impl Gpadl<'_> {
    /// The GPADL handle, to tell the server in the driver's protocol.
    ///
    /// ```no_run
    /// # fn example(gpadl: &kmcl::Gpadl<'_>) {
    /// let handle: u32 = gpadl.handle();
    /// # }
    /// ```
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// Keeps the GPADL beyond this object: it is deleted by handle
    /// ([`ChannelRef::delete_gpadl`]) or when the connection ends; the
    /// channel keeps its memory until then.
    ///
    /// ```no_run
    /// # fn example(gpadl: kmcl::Gpadl<'_>) {
    /// let handle = gpadl.into_handle();
    /// # }
    /// ```
    pub fn into_handle(self) -> u32 {
        ManuallyDrop::new(self).handle
    }
}

impl Drop for Gpadl<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.channel.delete_gpadl(self.handle) {
            pr_warn!("GPADL {} not deleted: {:?}\n", self.handle, e);
        }
    }
}

/// A server's mapping of its client's GPADL: read and written by copying,
/// unmapped when dropped (`VmbChannelUnmapGpadl`). Process context.
///
/// ```no_run
/// # fn example(channel: kmcl::ChannelRef<'_>, handle: u32) -> Result {
/// let mapping = channel.map(handle, false)?;
/// let mut header = [0u8; 16];
/// mapping.read(0, &mut header)?;
/// # Ok(())
/// # }
/// ```
#[doc(alias = "VmbChannelMapGpadl")]
#[doc(alias = "VmbChannelUnmapGpadl")]
pub struct Mapping<'a> {
    channel: ChannelRef<'a>,
    handle: u32,
    len: usize,
}

impl Mapping<'_> {
    /// Bytes mapped (the GPADL's length).
    ///
    /// ```no_run
    /// # fn example(mapping: &kmcl::Mapping<'_>) {
    /// let bytes = mapping.len();
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never empty (a GPADL holds at least one page).
    ///
    /// ```no_run
    /// # fn example(mapping: &kmcl::Mapping<'_>) {
    /// assert!(!mapping.is_empty());
    /// # }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// [`ChannelRef::read_gpadl`] of this mapping. Any context.
    ///
    /// ```no_run
    /// # fn example(mapping: &kmcl::Mapping<'_>) -> Result {
    /// let mut buf = [0u8; 64];
    /// mapping.read(4096, &mut buf)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn read(&self, at: usize, buf: &mut [u8]) -> Result {
        self.channel.read_gpadl(self.handle, at, buf)
    }

    /// [`ChannelRef::write_gpadl`] of this mapping (`EACCES` if mapped
    /// read-only). Any context.
    ///
    /// ```no_run
    /// # fn example(mapping: &kmcl::Mapping<'_>) -> Result {
    /// mapping.write(0, b"done")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn write(&self, at: usize, data: &[u8]) -> Result {
        self.channel.write_gpadl(self.handle, at, data)
    }

    /// Keeps the mapping beyond this object: unmapped by handle
    /// ([`ChannelRef::unmap_gpadl`]) or after the connection's `closed`.
    ///
    /// ```no_run
    /// # fn example(mapping: kmcl::Mapping<'_>) {
    /// let handle = mapping.into_handle();
    /// # }
    /// ```
    pub fn into_handle(self) -> u32 {
        ManuallyDrop::new(self).handle
    }
}

impl Drop for Mapping<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.channel.unmap_gpadl(self.handle) {
            pr_warn!("GPADL {} not unmapped: {:?}\n", self.handle, e);
        }
    }
}

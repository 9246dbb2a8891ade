// SPDX-License-Identifier: GPL-2.0

//! Memory shared with the other endpoint, without `unsafe` in the driver:
//! [`SharedPages`] a driver owns and shares (a client's GPADLs, a packet's
//! external data), a server's mappings of its client's GPADLs (kept by the
//! channel, reached by handle), and the external data of an incoming
//! packet ([`ExternalData`], valid while the packet is held).
//!
//! The other endpoint may write shared memory at any time, so it is only
//! ever copied in and out (`read` and `write`), never referenced: a race
//! with the other endpoint gives torn bytes, as with any device memory,
//! never a Rust reference to memory that changes under it.
//!
//! Lifetimes are kept by ownership, not by comments: a GPADL keeps an
//! `Arc` of its memory in the channel until it is deleted (or the
//! connection that had it ended), a packet sent with external data keeps
//! one until its transaction is over, and a server's mapping is only
//! reached through the channel, under its lock, until it is unmapped.

use super::{
    abi,
    abi::KmclMdl,
    result,
    ChannelRef, //
};
use core::ptr::NonNull;
use kernel::{
    alloc::flags::__GFP_ZERO,
    new_spinlock_irq,
    page::{
        BorrowedPage,
        Page,
        PAGE_SIZE, //
    },
    prelude::*,
    sync::{
        Arc,
        SpinLockIrq, //
    },
};

/// Whole pages of zeroed memory a driver shares with the other endpoint:
/// as a GPADL ([`ChannelRef::create_gpadl`]) or as a packet's external data
/// ([`super::Packet::send_with_shared`]). Read and written by copying.
///
/// # Invariants
///
/// `raw[i]` is `pages[i]`'s `struct page`, and the pages stay allocated
/// while `self` lives.
pub struct SharedPages {
    pages: KVec<Page>,
    /// The pages as an MDL's page array.
    raw: KVec<*mut abi::Page>,
}

// SAFETY: the pages are owned; the raw pointers only name them.
unsafe impl Send for SharedPages {}
// SAFETY: shared access only copies bytes in and out of the pages (see
// the module documentation).
unsafe impl Sync for SharedPages {}

impl SharedPages {
    /// `count` zeroed pages. Process context.
    pub fn new(count: usize) -> Result<Arc<Self>> {
        if count == 0 {
            return Err(EINVAL);
        }
        let mut pages = KVec::with_capacity(count, GFP_KERNEL)?;
        let mut raw = KVec::with_capacity(count, GFP_KERNEL)?;
        for _ in 0..count {
            let p = Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?;
            raw.push(p.as_ptr().cast::<abi::Page>(), GFP_KERNEL)?;
            pages.push(p, GFP_KERNEL)?;
        }
        Ok(Arc::new(SharedPages { pages, raw }, GFP_KERNEL)?)
    }

    /// Bytes (whole pages).
    pub fn len(&self) -> usize {
        self.pages.len() * PAGE_SIZE
    }

    /// Never empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Copies `buf.len()` bytes from `at` into `buf`; `EINVAL` beyond the
    /// end. Any context.
    pub fn read(&self, at: usize, buf: &mut [u8]) -> Result {
        let mdl = self.mdl(0, self.len())?;
        copy(&mdl, at, Dir::Out(buf))
    }

    /// Copies `data` in at `at`; `EINVAL` beyond the end. Any context.
    pub fn write(&self, at: usize, data: &[u8]) -> Result {
        let mdl = self.mdl(0, self.len())?;
        copy(&mdl, at, Dir::In(data))
    }

    /// `length` bytes from `offset` as an MDL, valid while `self` is.
    fn mdl(&self, offset: usize, length: usize) -> Result<KmclMdl> {
        let end = offset.checked_add(length).ok_or(EINVAL)?;
        if length == 0 || end > self.len() {
            return Err(EINVAL);
        }
        let first = offset / PAGE_SIZE;
        let offset = offset % PAGE_SIZE;
        let nr = (offset + length).div_ceil(PAGE_SIZE);
        Ok(KmclMdl {
            // kmcl only reads the page array.
            pages: self.raw[first..].as_ptr().cast_mut(),
            nr_pages: u32::try_from(nr)?,
            offset: u32::try_from(offset)?,
            length: u32::try_from(length)?,
            next: core::ptr::null_mut(),
        })
    }
}

/// Which way a copy goes.
enum Dir<'b> {
    /// Out of the shared memory into the buffer.
    Out(&'b mut [u8]),
    /// Into the shared memory from the buffer.
    In(&'b [u8]),
}

/// Copies between `[at, at + len)` of the data an MDL chain describes (its
/// MDLs' data laid end to end) and a buffer; `EINVAL` beyond its end.
///
/// The chain and its pages must be valid for the call: every function
/// here passes only MDLs that are (the callers' invariants).
fn copy(mdl: &KmclMdl, at: usize, dir: Dir<'_>) -> Result {
    let len = match &dir {
        Dir::Out(b) => b.len(),
        Dir::In(b) => b.len(),
    };
    // Checked first: nothing is copied for a range that leaves the data.
    if at.checked_add(len).is_none_or(|end| end > chain_len(mdl)) {
        return Err(EINVAL);
    }
    let (mut skip, mut done) = (at, 0usize);
    let mut cur: *const KmclMdl = mdl;
    while done < len {
        if cur.is_null() {
            return Err(EINVAL);
        }
        // SAFETY: `cur` is the head or a `next` of a valid chain (see
        // above).
        let m = unsafe { &*cur };
        let mlen = m.length as usize;
        if skip >= mlen {
            skip -= mlen;
            cur = m.next;
            continue;
        }
        // Within this MDL: from data byte `skip`.
        let mut pos = m.offset as usize + skip;
        let mut left = (mlen - skip).min(len - done);
        skip = 0;
        while left > 0 {
            let index = pos / PAGE_SIZE;
            let in_page = pos % PAGE_SIZE;
            let n = (PAGE_SIZE - in_page).min(left);
            if index >= m.nr_pages as usize {
                return Err(EINVAL);
            }
            // SAFETY: the page array holds `nr_pages` valid pages (the
            // chain is valid), and `index` is below it.
            let raw = unsafe { *m.pages.add(index) };
            let raw = NonNull::new(raw.cast::<kernel::bindings::page>()).ok_or(EINVAL)?;
            // SAFETY: a valid page, for the call (see above).
            let page = unsafe { BorrowedPage::from_raw(raw) };
            match &dir {
                // SAFETY: `b[done..done + n]` is writable; the page may be
                // written by the other endpoint meanwhile, which only
                // tears the bytes copied (the module documentation).
                Dir::Out(b) => unsafe { page.read_raw(b[done..].as_ptr().cast_mut(), in_page, n) }?,
                // SAFETY: as above, reading `b[done..done + n]`.
                Dir::In(b) => unsafe { page.write_raw(b[done..].as_ptr(), in_page, n) }?,
            }
            pos += n;
            left -= n;
            done += n;
        }
        cur = m.next;
    }
    Ok(())
}

/// The bytes an MDL chain describes.
fn chain_len(mdl: &KmclMdl) -> usize {
    let mut total = 0usize;
    let mut cur: *const KmclMdl = mdl;
    while !cur.is_null() {
        // SAFETY: a valid chain (the callers').
        let m = unsafe { &*cur };
        total += m.length as usize;
        cur = m.next;
    }
    total
}

/// A server's mapping of one of its client's GPADLs.
struct Mapping {
    handle: u32,
    mdl: *const KmclMdl,
    writable: bool,
}

/// What a channel keeps of shared memory: its GPADLs' memory (client) and
/// its mappings (server).
///
/// # Invariants
///
/// Every `Mapping::mdl` is kmcl's mapping of that handle, valid until the
/// channel unmaps it (which removes it from here first).
pub(super) struct Kept {
    gpadls: KVec<(u32, Arc<SharedPages>)>,
    mappings: KVec<Mapping>,
}

// SAFETY: the MDL pointers are kmcl's, valid from any thread while kept.
unsafe impl Send for Kept {}

/// The channel's [`Kept`], behind an IRQ-safe lock (packet callbacks read
/// mappings in softirq context).
pub(super) type KeptLock = SpinLockIrq<Kept>;

/// A new, empty [`KeptLock`].
pub(super) fn new_kept() -> impl PinInit<KeptLock> {
    new_spinlock_irq!(Kept {
        gpadls: KVec::new(),
        mappings: KVec::new(),
    })
}

impl Kept {
    /// A new connection: GPADLs of the last one are gone (kmcl deleted
    /// what its driver left), so is their memory's use.
    pub(super) fn forget_gpadls(&mut self) -> KVec<(u32, Arc<SharedPages>)> {
        core::mem::take(&mut self.gpadls)
    }

    /// Takes every mapping out, to be unmapped.
    fn take_mappings(&mut self) -> KVec<Mapping> {
        core::mem::take(&mut self.mappings)
    }
}

impl ChannelRef<'_> {
    /// `VmbChannelCreateGpadlFromMdl` (client, connected): shares `memory`
    /// with the server as a GPADL and returns its handle (to tell the
    /// server in the driver's protocol). The channel keeps `memory` alive
    /// until [`Self::delete_gpadl`], or until the connection ends (kmcl
    /// deletes the GPADLs a driver left in Closed). `read_only`: the
    /// server may only map it for reading. Process context.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
    /// let memory = kmcl::SharedPages::new(4)?;
    /// let gpadl = channel.create_gpadl(&memory, false)?;
    /// // tell the server `gpadl` in the driver's protocol
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelCreateGpadlFromBuffer")]
    #[doc(alias = "VmbChannelCreateGpadlFromMdl")]
    pub fn create_gpadl(&self, memory: &Arc<SharedPages>, read_only: bool) -> Result<u32> {
        let kept = self.kept()?;
        kept.lock().gpadls.reserve(1, GFP_ATOMIC)?;
        let mdl = memory.mdl(0, memory.len())?;
        let flags = if read_only {
            abi::GPADL_FLAG_READ_ONLY
        } else {
            0
        };
        let mut handle = 0u32;
        // SAFETY: `raw` is live; the MDL and its page array are valid for
        // the call, and the pages until the GPADL is deleted (the channel
        // keeps `memory` until then, below).
        result(unsafe {
            abi::kmcl_channel_create_gpadl_from_mdl(self.raw, flags, &mdl, 0, 0, &mut handle)
        })?;
        let mut k = kept.lock();
        if k.gpadls.push((handle, memory.clone()), GFP_ATOMIC).is_err() {
            drop(k);
            // Not kept: the GPADL must not outlive this call.
            // SAFETY: `raw` is live; the GPADL was just made.
            let _ = unsafe { abi::kmcl_channel_delete_gpadl(self.raw, handle) };
            return Err(ENOMEM);
        }
        Ok(handle)
    }

    /// `VmbChannelDeleteGpadl` (client): waits while the server has the
    /// GPADL mapped, then the channel lets go of its memory. Process
    /// context.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>, gpadl: u32) -> Result {
    /// channel.delete_gpadl(gpadl)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelDeleteGpadl")]
    pub fn delete_gpadl(&self, handle: u32) -> Result {
        let kept = self.kept()?;
        // SAFETY: `raw` is live.
        result(unsafe { abi::kmcl_channel_delete_gpadl(self.raw, handle) })?;
        let gone = {
            let mut k = kept.lock();
            let i = k.gpadls.iter().position(|(h, _)| *h == handle);
            i.and_then(|i| k.gpadls.remove(i).ok())
        };
        drop(gone);
        Ok(())
    }

    /// `VmbChannelMapGpadl` (server, connected): maps the client's GPADL
    /// `handle` (for writing too if `writable`; `EACCES` for a read-only
    /// GPADL) and returns its length. Read and write it with
    /// [`Self::read_gpadl`] and [`Self::write_gpadl`] until
    /// [`Self::unmap_gpadl`]; a mapping left in Closed is unmapped after the
    /// driver's `closed` returns. Process context.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>, gpadl: u32) -> Result {
    /// let bytes = channel.map_gpadl(gpadl, true)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelMapGpadl")]
    pub fn map_gpadl(&self, handle: u32, writable: bool) -> Result<usize> {
        let kept = self.kept()?;
        kept.lock().mappings.reserve(1, GFP_ATOMIC)?;
        let flags = if writable {
            0
        } else {
            abi::GPADL_FLAG_READ_ONLY
        };
        let mut mdl = core::ptr::null_mut();
        // SAFETY: `raw` is live; `mdl` is writable.
        result(unsafe { abi::kmcl_channel_map_gpadl(self.raw, flags, handle, &mut mdl) })?;
        // SAFETY: kmcl's mapping, valid until unmapped.
        let len = chain_len(unsafe { &*mdl });
        let m = Mapping {
            handle,
            mdl,
            writable,
        };
        let mut k = kept.lock();
        if k.mappings.push(m, GFP_ATOMIC).is_err() {
            drop(k);
            // SAFETY: `raw` is live; the mapping was just made.
            let _ = unsafe { abi::kmcl_channel_unmap_gpadl(self.raw, handle) };
            return Err(ENOMEM);
        }
        Ok(len)
    }

    /// Copies `buf.len()` bytes from `at` of the mapped GPADL `handle`
    /// into `buf`: `ENOENT` if not mapped, `EINVAL` beyond its end. Any
    /// context.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>, gpadl: u32) -> Result {
    /// let mut header = [0u8; 16];
    /// channel.read_gpadl(gpadl, 0, &mut header)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn read_gpadl(&self, handle: u32, at: usize, buf: &mut [u8]) -> Result {
        self.with_mapping(handle, |mdl, _| copy(mdl, at, Dir::Out(buf)))
    }

    /// Copies `data` into the mapped GPADL `handle` at `at`: `ENOENT` if
    /// not mapped, `EACCES` if mapped read-only, `EINVAL` beyond its end.
    /// Any context.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>, gpadl: u32) -> Result {
    /// channel.write_gpadl(gpadl, 0, b"ready")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn write_gpadl(&self, handle: u32, at: usize, data: &[u8]) -> Result {
        self.with_mapping(handle, |mdl, writable| {
            if !writable {
                return Err(EACCES);
            }
            copy(mdl, at, Dir::In(data))
        })
    }

    /// Calls `f` with the MDL of the mapped GPADL `handle` and whether it
    /// is mapped for writing, under the channel's lock (`ENOENT` if not
    /// mapped).
    fn with_mapping(&self, handle: u32, f: impl FnOnce(&KmclMdl, bool) -> Result) -> Result {
        let kept = self.kept()?;
        let k = kept.lock();
        let m = k
            .mappings
            .iter()
            .find(|m| m.handle == handle)
            .ok_or(ENOENT)?;
        // SAFETY: kept mappings are valid until unmapped, which takes them
        // out under this lock first (invariant); the lock is held across
        // `f`.
        f(unsafe { &*m.mdl }, m.writable)
    }

    /// `VmbChannelUnmapGpadl` (server): ends the mapping of `handle`
    /// (`ENOENT` if not mapped); the client's DeleteGpadl may then go on.
    /// Process context.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>, gpadl: u32) -> Result {
    /// channel.unmap_gpadl(gpadl)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelUnmapGpadl")]
    pub fn unmap_gpadl(&self, handle: u32) -> Result {
        let kept = self.kept()?;
        let gone = {
            let mut k = kept.lock();
            let i = k.mappings.iter().position(|m| m.handle == handle);
            i.and_then(|i| k.mappings.remove(i).ok())
        };
        if gone.is_none() {
            return Err(ENOENT);
        }
        // SAFETY: `raw` is live; no one reaches the mapping any more.
        result(unsafe { abi::kmcl_channel_unmap_gpadl(self.raw, handle) })
    }

    /// Unmaps every mapping left (the connection closes). Process context.
    pub(super) fn unmap_all(&self) {
        let Ok(kept) = self.kept() else {
            return;
        };
        let left = kept.lock().take_mappings();
        for m in left.iter() {
            // SAFETY: `raw` is live; the mapping is out of the table.
            let _ = unsafe { abi::kmcl_channel_unmap_gpadl(self.raw, m.handle) };
        }
    }
}

/// The external data of an incoming packet
/// (`VmbChannelPacketGetExternalData`): the sender's memory, valid while
/// the packet is held. Read (and, unless the sender exposed it read-only
/// in its own protocol, written) by copying.
pub struct ExternalData<'a> {
    mdl: &'a KmclMdl,
    len: usize,
}

impl ExternalData<'_> {
    /// Bytes (every range of the sender's external data, end to end).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many ranges (an MDL chain's length).
    pub fn ranges(&self) -> usize {
        let mut n = 0;
        let mut cur: *const KmclMdl = self.mdl;
        while !cur.is_null() {
            n += 1;
            // SAFETY: kmcl's chain, valid while the packet is held.
            cur = unsafe { (*cur).next };
        }
        n
    }

    /// Copies `buf.len()` bytes from `at` into `buf`; `EINVAL` beyond the
    /// end. Any context.
    pub fn read(&self, at: usize, buf: &mut [u8]) -> Result {
        copy(self.mdl, at, Dir::Out(buf))
    }

    /// Copies `data` in at `at`; `EINVAL` beyond the end. Any context.
    pub fn write(&self, at: usize, data: &[u8]) -> Result {
        copy(self.mdl, at, Dir::In(data))
    }
}

impl super::Incoming {
    /// `VmbChannelPacketGetExternalData`: the external data the packet
    /// carries (`None` for none), checked by kmcl against what the sender
    /// exposed for this transaction and the channel's maximum external
    /// data; valid while the packet is held.
    ///
    /// ```no_run
    /// # fn example(packet: &kmcl::Incoming) -> Result {
    /// if let Some(data) = packet.external_data() {
    ///     let mut first = [0u8; 64];
    ///     data.read(0, &mut first)?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelPacketGetExternalData")]
    pub fn external_data(&self) -> Option<ExternalData<'_>> {
        let mut mdl = core::ptr::null_mut();
        // SAFETY: the packet is live (held by `self`); `mdl` is writable.
        let rc = unsafe { abi::kmcl_channel_packet_get_external_data(self.raw, 0, &mut mdl) };
        if rc != 0 || mdl.is_null() {
            return None;
        }
        // SAFETY: kmcl's chain, valid until the packet is completed, which
        // takes the packet `self` borrows.
        let mdl = unsafe { &*mdl };
        Some(ExternalData {
            mdl,
            len: chain_len(mdl),
        })
    }
}

impl super::Packet {
    /// `VmbPacketSendWithExternalMdl`: `payload` in the ring, and `length`
    /// bytes from `offset` of `memory` exposed to the other endpoint as
    /// external data until it completes the packet (a completion is always
    /// requested). The packet keeps `memory` alive until then. Any
    /// context. On an error the packet is given back and its routine does
    /// not run.
    ///
    /// ```no_run
    /// # fn example(packet: kmcl::Packet) -> Result {
    /// let memory = kmcl::SharedPages::new(2)?;
    /// memory.write(0, b"payload")?;
    /// packet.send_with_shared(b"hdr", &memory, 0, 8192).map_err(|(_, e)| e)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbPacketSendWithExternalMdl")]
    pub fn send_with_shared(
        mut self,
        payload: &[u8],
        memory: &Arc<SharedPages>,
        offset: usize,
        length: usize,
    ) -> core::result::Result<(), (super::Packet, Error)> {
        let (Ok(len), Ok(mdl)) = (super::len32(payload), memory.mdl(offset, length)) else {
            return Err((self, EINVAL));
        };
        // Kept until the transaction is over (`on_packet_done`), or taken
        // back below on an error.
        self.slot().external = Some(memory.clone());
        // SAFETY: the packet is live and not in flight; the payload and the
        // MDL are read before the call returns; the pages stay while the
        // packet's slot keeps `memory`, until its routine.
        let rc = unsafe {
            abi::kmcl_packet_send_with_external_mdl(
                self.raw,
                payload.as_ptr().cast(),
                len,
                &mdl,
                0,
                0,
                abi::FORMAT_FLAG_WAIT_FOR_COMPLETION,
            )
        };
        match self.handed_over(rc) {
            Ok(()) => Ok(()),
            Err((mut p, e)) => {
                p.slot().external = None;
                Err((p, e))
            }
        }
    }
}

/// The channel's [`Kept`] memory, through its pointer slot.
impl ChannelRef<'_> {
    fn kept(&self) -> Result<&KeptLock> {
        // SAFETY: `raw` is live for the reference's life; a channel made by
        // `Channel::new` keeps its shared state at the slot until dropped.
        let s = unsafe { super::shared_state(self.raw) }.ok_or(EINVAL)?;
        Ok(&s.kept)
    }
}

// SPDX-License-Identifier: GPL-2.0

//! Memory shared with the other endpoint of a channel.
//!
//! One of the few places in kmcl with `unsafe` code: ring memory is written
//! by the other endpoint at any time, so it is reached through raw pointers
//! and only ever accessed with atomics (the control page) or volatile 8-byte
//! copies (the data area) — the Rust counterparts of the `READ_ONCE` /
//! `WRITE_ONCE` accesses hv_vmbus uses on the same memory. Nothing here
//! interprets the bytes; [`crate::protocol::ring`] validates them.

use core::{
    alloc::Layout,
    ptr::NonNull,
    sync::atomic::AtomicU32, //
};

use kernel::{
    alloc::{
        allocator::Vmalloc,
        flags::{
            __GFP_NOWARN,
            __GFP_ZERO, //
        },
        Allocator,
        NumaNode, //
    },
    page::PAGE_SIZE,
    prelude::*,
};

use crate::protocol::ring::{
    RingMemory,
    CONTROL_WORDS, //
};

/// The pages of one ring: a control page followed by `data_pages` pages of
/// data area, laid out exactly like Linux's `struct hv_ring_buffer`.
/// Either owned by kmcl (one zeroed vmalloc allocation: loopback rings) or
/// borrowed (the rings hv_vmbus mapped for a channel it opened).
///
/// # Invariants
///
/// - `base` points to `PAGE_SIZE + data_len` bytes of mapped memory,
///   aligned to `PAGE_SIZE`, that stay mapped while `self` exists: a live
///   `Vmalloc` allocation of `layout` if `layout` is `Some` (owned), else
///   memory the creator of a borrowed ring keeps mapped;
/// - `data_len` is a non-zero multiple of `PAGE_SIZE`;
/// - the memory is accessed only through atomics (the control page) and
///   volatile copies (the data area), never through references to plain
///   data, since the other endpoint may write it at any time.
pub struct RingPages {
    base: NonNull<u8>,
    data_len: usize,
    /// `Some`: owned, allocated with this layout.
    layout: Option<Layout>,
}

// SAFETY: `RingPages` owns its allocation and all accesses to it are
// atomic or volatile (see the type invariants), so it may be moved to and
// used from any thread.
unsafe impl Send for RingPages {}

// SAFETY: Shared access only performs atomic or volatile accesses (see the
// type invariants); concurrent use from several threads is what the ring
// protocol on top of it is designed for.
unsafe impl Sync for RingPages {}

impl RingPages {
    /// Allocates a zeroed ring with `data_pages` pages of data area.
    pub fn new(data_pages: usize) -> Result<Self> {
        if data_pages == 0 {
            return Err(EINVAL);
        }
        let data_len = data_pages.checked_mul(PAGE_SIZE).ok_or(EINVAL)?;
        let total = data_len.checked_add(PAGE_SIZE).ok_or(EINVAL)?;
        let layout = Layout::from_size_align(total, PAGE_SIZE).map_err(|_| EINVAL)?;
        let buf = Vmalloc::alloc(layout, GFP_KERNEL | __GFP_ZERO, NumaNode::NO_NODE)?;
        // INVARIANT: `buf` is a fresh zeroed allocation of `layout`.
        Ok(Self {
            base: buf.cast(),
            data_len,
            layout: Some(layout),
        })
    }

    /// A ring whose memory belongs to someone else: the control page at
    /// `base`, followed by `data_len` bytes of data area. `-EINVAL` if
    /// `base` is not page aligned or `data_len` not a non-zero multiple of
    /// the page size.
    ///
    /// # Safety
    ///
    /// `base` must point to `PAGE_SIZE + data_len` bytes of mapped kernel
    /// memory that stays mapped, and is used as a VMBus ring by no one but
    /// the caller's other endpoint, until the returned value is dropped.
    pub unsafe fn borrowed(base: *mut u8, data_len: usize) -> Result<Self> {
        let base = NonNull::new(base).ok_or(EINVAL)?;
        if base.as_ptr() as usize % PAGE_SIZE != 0 || data_len == 0 || data_len % PAGE_SIZE != 0 {
            return Err(EINVAL);
        }
        // INVARIANT: aligned and sized as checked; mapped for our lifetime
        // by the caller's promise.
        Ok(Self {
            base,
            data_len,
            layout: None,
        })
    }

    /// Number of pages in the data area.
    pub fn data_pages(&self) -> usize {
        self.data_len / PAGE_SIZE
    }

    /// Kernel virtual address of the control page (the start of the ring).
    pub fn base_addr(&self) -> usize {
        self.base.as_ptr() as usize
    }

    /// The data area's first byte.
    #[inline]
    fn data(&self) -> *mut u8 {
        self.base.as_ptr().wrapping_add(PAGE_SIZE)
    }

    /// Whether `[offset, offset + len)` is an 8-aligned range of the data
    /// area.
    #[inline]
    fn in_bounds(&self, offset: usize, len: usize) -> bool {
        offset % 8 == 0
            && len % 8 == 0
            && offset
                .checked_add(len)
                .is_some_and(|end| end <= self.data_len)
    }
}

impl Drop for RingPages {
    fn drop(&mut self) {
        if let Some(layout) = self.layout {
            // SAFETY: By the type invariants `base` is a live `Vmalloc`
            // allocation of `layout` (owned); it is not used again.
            unsafe { Vmalloc::free(self.base, layout) };
        }
    }
}

impl RingMemory for RingPages {
    #[inline]
    fn control(&self) -> &[AtomicU32; CONTROL_WORDS] {
        // SAFETY: The control page is the first `PAGE_SIZE` bytes of the
        // allocation (type invariants), page aligned and larger than
        // `CONTROL_WORDS` words; `AtomicU32` has the size and alignment of
        // `u32` and every bit pattern is valid. The memory lives as long as
        // `self`, and is only accessed atomically.
        unsafe { &*self.base.as_ptr().cast::<[AtomicU32; CONTROL_WORDS]>() }
    }

    #[inline]
    fn data_len(&self) -> usize {
        self.data_len
    }

    #[inline]
    fn read_data(&self, offset: usize, buf: &mut [u8]) {
        // The ring only asks for aligned in-range copies; refuse anything
        // else rather than touch memory outside the ring.
        if !self.in_bounds(offset, buf.len()) {
            return;
        }
        let src = self.data().wrapping_add(offset).cast::<u64>();
        let (chunks, _) = buf.as_chunks_mut::<8>();
        for (i, chunk) in chunks.iter_mut().enumerate() {
            // SAFETY: `offset + 8 * (i + 1) <= data_len` (checked above), so
            // the word is inside the allocation and 8-aligned (page-aligned
            // data area, aligned offset). A volatile read is the only access
            // made to memory the other endpoint may be writing.
            let word = unsafe { src.add(i).read_volatile() };
            *chunk = word.to_ne_bytes();
        }
    }

    #[inline]
    fn write_data(&self, offset: usize, buf: &[u8]) {
        if !self.in_bounds(offset, buf.len()) {
            return;
        }
        let dst = self.data().wrapping_add(offset).cast::<u64>();
        let (chunks, _) = buf.as_chunks::<8>();
        for (i, chunk) in chunks.iter().enumerate() {
            // SAFETY: As in `read_data`: the word is inside the allocation
            // and aligned, and the volatile write is the only access made.
            unsafe { dst.add(i).write_volatile(u64::from_ne_bytes(*chunk)) };
        }
    }
}

/// Memory standing in for a device's MMIO space on the loopback bus: a
/// zeroed vmalloc allocation both endpoints' drivers are given the address
/// of (kmcl itself never reads or writes it).
///
/// # Invariants
///
/// `base` is a live `Vmalloc` allocation of `layout`, owned.
pub struct MmioMemory {
    base: NonNull<u8>,
    layout: Layout,
}

// SAFETY: `MmioMemory` owns its allocation and kmcl never accesses it; it
// only hands out the address.
unsafe impl Send for MmioMemory {}

// SAFETY: As for `Send`: shared references give only the address.
unsafe impl Sync for MmioMemory {}

impl MmioMemory {
    /// `bytes` (a non-zero multiple of the page size) of zeroed memory;
    /// `-ENOMEM` quietly when there is not that much.
    pub fn new(bytes: usize) -> Result<Self> {
        if bytes == 0 || bytes % PAGE_SIZE != 0 {
            return Err(EINVAL);
        }
        let layout = Layout::from_size_align(bytes, PAGE_SIZE).map_err(|_| EINVAL)?;
        let base = Vmalloc::alloc(
            layout,
            GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN,
            NumaNode::NO_NODE,
        )?;
        // INVARIANT: a fresh allocation of `layout`.
        Ok(Self {
            base: base.cast(),
            layout,
        })
    }

    /// (kernel virtual address, bytes).
    pub fn space(&self) -> (usize, usize) {
        (self.base.as_ptr() as usize, self.layout.size())
    }
}

impl Drop for MmioMemory {
    fn drop(&mut self) {
        // SAFETY: owned allocation of `layout` (type invariants), not used
        // again.
        unsafe { Vmalloc::free(self.base, self.layout) };
    }
}

/// A `struct page`, opaque to Rust.
#[repr(C)]
pub struct Page {
    _private: [u8; 0],
}

mod glue {
    use super::Page as page;

    extern "C" {
        pub(super) fn kmcl_pages_lookup(
            buf: *const core::ffi::c_void,
            n: u32,
            pages: *mut *mut page,
        ) -> i32;
        pub(super) fn kmcl_page_pfn(page: *mut page) -> u64;
        pub(super) fn kmcl_pages_of_pfns(pfns: *const u64, n: u32, pages: *mut *mut page) -> i32;
        pub(super) fn kmcl_page_read(page: *mut page, offset: u32, dst: *mut u8, len: u32);
        pub(super) fn kmcl_page_write(page: *mut page, offset: u32, src: *const u8, len: u32);
    }
}

/// Memory a client shares through a GPADL: its pages, and where the data
/// starts and ends in them.
///
/// Like hv_vmbus's GPADLs, the pages are recorded without references
/// (kmalloc and high-order pages cannot be referenced page by page): the
/// client keeps the memory until DeleteGpadl returns, and DeleteGpadl
/// waits until the server has unmapped it, so the server only reaches the
/// pages while the client must keep them.
///
/// # Invariants
///
/// `pages` holds `pages.len()` `struct page` pointers of memory that stays
/// allocated while the GPADL exists (the constructors' safety contract);
/// `offset < PAGE_SIZE` and `offset + len <= pages.len() * PAGE_SIZE`;
/// `len > 0`.
pub struct GpadlPages {
    pages: KVec<*mut Page>,
    offset: usize,
    len: usize,
    /// The same, laid out as C's `struct kmcl_mdl` (for the C API), with
    /// `pages` pointing into `self.pages`' buffer (which does not move).
    view: MdlView,
}

/// A memory description laid out as C's `struct kmcl_mdl`.
#[repr(C)]
pub struct MdlView {
    /// The pages.
    pub pages: *mut *mut Page,
    /// How many.
    pub nr_pages: u32,
    /// Offset of the data in the first page.
    pub offset: u32,
    /// Bytes of data.
    pub length: u32,
}

// SAFETY: the object only holds page pointers; the pages' contents are
// only reached through `kmcl_page_read` / `kmcl_page_write` (memcpy
// through a temporary mapping), from any thread.
unsafe impl Send for GpadlPages {}
// SAFETY: see `Send`; shared access only copies bytes in or out.
unsafe impl Sync for GpadlPages {}

impl GpadlPages {
    /// The pages under the kernel buffer `[addr, addr + len)` (vmalloc or
    /// linear-map memory; `-EINVAL` otherwise, or for `len == 0`).
    ///
    /// # Safety
    ///
    /// The buffer stays allocated until the GPADL made from it is deleted.
    pub unsafe fn from_buffer(addr: usize, len: usize) -> Result<Self> {
        if len == 0 {
            return Err(EINVAL);
        }
        let offset = addr & (PAGE_SIZE - 1);
        let n = crate::protocol::gpa::pages_spanned(offset, len)
            .filter(|n| *n > 0)
            .ok_or(EINVAL)?;
        let count = u32::try_from(n)?;
        let mut pages = KVec::with_capacity(n, GFP_KERNEL)?;
        // SAFETY: `pages` has room for `n` pointers; the glue only looks
        // up the pages of the given addresses (refusing addresses that are
        // neither vmalloc nor linear-map memory).
        let rc = unsafe {
            glue::kmcl_pages_lookup(addr as *const core::ffi::c_void, count, pages.as_mut_ptr())
        };
        kernel::error::to_result(rc)?;
        // SAFETY: the glue initialised all `n` entries.
        unsafe { pages.inc_len(n) };
        // INVARIANT: `n` pages span `offset + len`; the memory stays (the
        // caller's promise).
        Self::new(pages, offset, len)
    }

    /// `len` bytes from `offset` (`< PAGE_SIZE`) of `pages`.
    ///
    /// # Safety
    ///
    /// Every entry of `pages` is a valid `struct page` pointer, and the
    /// pages stay allocated until the GPADL made from them is deleted.
    pub unsafe fn from_pages(pages: &[*mut Page], offset: usize, len: usize) -> Result<Self> {
        if len == 0 || offset >= PAGE_SIZE {
            return Err(EINVAL);
        }
        let n = crate::protocol::gpa::pages_spanned(offset, len).ok_or(EINVAL)?;
        let used = pages.get(..n).ok_or(EINVAL)?;
        if used.iter().any(|p| p.is_null()) {
            return Err(EINVAL);
        }
        // Any context: external data may be sent from softirq context.
        let mut own = KVec::with_capacity(n, GFP_ATOMIC)?;
        own.extend_from_slice(used, GFP_ATOMIC)?;
        // INVARIANT: `n` pages span `offset + len`; they stay (the caller's
        // promise).
        Self::new(own, offset, len)
    }

    /// The whole pages of the page frames `pfns` (memory a driver
    /// described by PFN; `-EINVAL` for an invalid frame or none).
    ///
    /// # Safety
    ///
    /// The pages stay allocated until the transaction that carries them
    /// is over.
    pub unsafe fn from_pfns(pfns: &[u64]) -> Result<Self> {
        if pfns.is_empty() {
            return Err(EINVAL);
        }
        let n = pfns.len();
        let mut pages = KVec::with_capacity(n, GFP_ATOMIC)?;
        // SAFETY: `pfns` holds `n` numbers and `pages` room for `n`
        // pointers; the glue checks each frame before looking it up.
        let rc = unsafe {
            glue::kmcl_pages_of_pfns(pfns.as_ptr(), u32::try_from(n)?, pages.as_mut_ptr())
        };
        kernel::error::to_result(rc)?;
        // SAFETY: the glue initialised all `n` entries.
        unsafe { pages.inc_len(n) };
        let len = n.checked_mul(PAGE_SIZE).ok_or(EINVAL)?;
        Self::new(pages, 0, len)
    }

    fn new(mut pages: KVec<*mut Page>, offset: usize, len: usize) -> Result<Self> {
        let view = MdlView {
            pages: pages.as_mut_ptr(),
            nr_pages: u32::try_from(pages.len())?,
            offset: u32::try_from(offset)?,
            length: u32::try_from(len)?,
        };
        Ok(Self {
            pages,
            offset,
            len,
            view,
        })
    }

    /// The description as C's `struct kmcl_mdl`, valid while `self` is.
    pub fn mdl_view(&self) -> &MdlView {
        &self.view
    }

    /// The page frame numbers of the pages, in order.
    pub fn pfns(&self) -> impl Iterator<Item = u64> + '_ {
        self.pages.iter().map(|p| {
            // SAFETY: `p` is a valid page (invariant).
            unsafe { glue::kmcl_page_pfn(*p) }
        })
    }

    /// Bytes of data.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no data (never: a GPADL is at least one byte).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offset of the data in the first page.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Calls `f(page, offset in page, start in the caller's buffer, len)`
    /// for each piece of `[at, at + len)` of the data.
    fn pieces(
        &self,
        at: usize,
        len: usize,
        mut f: impl FnMut(*mut Page, u32, usize, u32),
    ) -> Result {
        let end = at.checked_add(len).ok_or(EINVAL)?;
        if end > self.len {
            return Err(EINVAL);
        }
        let mut pos = self.offset + at;
        let mut done = 0;
        while done < len {
            let index = pos >> kernel::page::PAGE_SHIFT;
            let in_page = pos & (PAGE_SIZE - 1);
            let n = (PAGE_SIZE - in_page).min(len - done);
            let page = *self.pages.get(index).ok_or(EINVAL)?;
            f(page, in_page as u32, done, n as u32);
            pos += n;
            done += n;
        }
        Ok(())
    }

    /// Copies `buf.len()` bytes of the data, from `at`, into `buf`.
    pub fn read(&self, at: usize, buf: &mut [u8]) -> Result {
        let ptr = buf.as_mut_ptr();
        self.pieces(at, buf.len(), |page, off, start, n| {
            // SAFETY: `page` is allocated memory (invariant); `off + n` is
            // within the page and `start + n` within `buf`.
            unsafe { glue::kmcl_page_read(page, off, ptr.add(start), n) }
        })
    }

    /// Copies `data` into the data, from `at`.
    pub fn write(&self, at: usize, data: &[u8]) -> Result {
        let ptr = data.as_ptr();
        self.pieces(at, data.len(), |page, off, start, n| {
            // SAFETY: as in `read`, with `data` as the source.
            unsafe { glue::kmcl_page_write(page, off, ptr.add(start), n) }
        })
    }
}

/// Copies `buf.len()` bytes at `offset` of `page` (within the page) into
/// `buf`, through a temporary mapping; any context.
///
/// # Safety
///
/// `page` is a valid page, and `offset + buf.len() <= PAGE_SIZE`.
pub unsafe fn page_read(page: *mut Page, offset: usize, buf: &mut [u8]) {
    // SAFETY: the caller's promise; `buf` is writable for its length.
    unsafe { glue::kmcl_page_read(page, offset as u32, buf.as_mut_ptr(), buf.len() as u32) }
}

#[kunit_tests(kmcl_shmem)]
mod tests {
    use super::*;
    use crate::protocol::packet::PacketType;
    use crate::protocol::ring::{IncomingRing, OutgoingRing};

    #[test]
    fn ring_pages_layout() -> Result {
        let ring = RingPages::new(2)?;
        assert_eq!(ring.base_addr() % PAGE_SIZE, 0);
        assert_eq!(ring.data_len(), 2 * PAGE_SIZE);
        assert_eq!(ring.data_pages(), 2);
        let mut w = OutgoingRing::new(&ring).map_err(|_| EINVAL)?;
        w.write(PacketType::InBand, &[], &[0xab; 5], false, 9)
            .map_err(|_| EINVAL)?;
        w.commit().map_err(|_| EINVAL)?;
        // The write index is the first word of the control page, the data
        // area starts one page later: read both back as raw bytes.
        let mut first = [0u8; 8];
        ring.read_data(0, &mut first);
        // In-band, offset8 2, len8 3 (16 + 5 bytes padded to 24), no flags.
        assert_eq!(first, [6, 0, 2, 0, 3, 0, 0, 0]);
        assert_eq!(
            ring.control()[0].load(core::sync::atomic::Ordering::SeqCst),
            32
        );
        Ok(())
    }

    #[test]
    fn out_of_range_copies_are_refused() -> Result {
        let ring = RingPages::new(1)?;
        ring.write_data(0, &[0x5a; 16]);
        let mut buf = [0u8; 16];
        ring.read_data(PAGE_SIZE - 8, &mut buf);
        assert_eq!(buf, [0u8; 16]);
        ring.read_data(4, &mut buf);
        assert_eq!(buf, [0u8; 16]);
        ring.read_data(0, &mut buf);
        assert_eq!(buf, [0x5a; 16]);
        assert!(RingPages::new(0).is_err());
        Ok(())
    }

    #[test]
    fn wraps_on_real_pages() -> Result {
        let ring = RingPages::new(1)?;
        let mut w = OutgoingRing::new(&ring).map_err(|_| EINVAL)?;
        let mut r = IncomingRing::new(&ring).map_err(|_| EINVAL)?;
        let mut buf = KVec::from_elem(0u8, PAGE_SIZE, GFP_KERNEL)?;
        let mut payload = KVec::from_elem(0u8, 1000, GFP_KERNEL)?;
        // 1000-byte packets in a 4 KiB ring: every few packets wrap.
        for i in 0..50u8 {
            for (j, b) in payload.iter_mut().enumerate() {
                *b = i.wrapping_mul(7) ^ (j as u8);
            }
            w.write(PacketType::InBand, &[], &payload, true, u64::from(i))
                .map_err(|_| EINVAL)?;
            w.commit().map_err(|_| EINVAL)?;
            let pkt = r.read(&mut buf).map_err(|_| EINVAL)?.ok_or(EINVAL)?;
            assert_eq!(pkt.descriptor.transaction_id(), u64::from(i));
            assert_eq!(&pkt.payload(&buf)[..1000], &payload[..]);
            r.commit();
        }
        Ok(())
    }
}

// SPDX-License-Identifier: GPL-2.0

//! Memory shared through a GPADL, and external data, by page.

use kernel::{
    page::{
        PAGE_SHIFT,
        PAGE_SIZE, //
    },
    prelude::*, //
};

/// A `struct page`, opaque to Rust.
#[repr(C)]
pub(crate) struct Page {
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
        #[cfg(kmcl_kunit)]
        pub(super) fn kmcl_page_read(page: *mut page, offset: u32, dst: *mut u8, len: u32);
        #[cfg(kmcl_kunit)]
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
pub(crate) struct GpadlPages {
    pages: KVec<*mut Page>,
    offset: usize,
    len: usize,
    /// The same, laid out as C's `struct kmcl_mdl` (for the C API), with
    /// `pages` pointing into `self.pages`' buffer (which does not move).
    view: MdlView,
}

/// A memory description laid out as C's `struct kmcl_mdl`.
#[repr(C)]
pub(crate) struct MdlView {
    /// The pages.
    pub(crate) pages: *mut *mut Page,
    /// How many.
    pub(crate) nr_pages: u32,
    /// Offset of the data in the first page.
    pub(crate) offset: u32,
    /// Bytes of data.
    pub(crate) length: u32,
    /// The next description of a chain (an MDL chain's `Next`), or NULL.
    pub(crate) next: *const MdlView,
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
    pub(crate) unsafe fn from_buffer(addr: usize, len: usize) -> Result<Self> {
        if len == 0 {
            return Err(EINVAL);
        }
        let offset = addr & (PAGE_SIZE - 1);
        let n = crate::protocol::gpa::pages_spanned_of(offset, len, PAGE_SIZE)
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
    pub(crate) unsafe fn from_pages(
        pages: &[*mut Page],
        offset: usize,
        len: usize,
    ) -> Result<Self> {
        if len == 0 || offset >= PAGE_SIZE {
            return Err(EINVAL);
        }
        let n = crate::protocol::gpa::pages_spanned_of(offset, len, PAGE_SIZE).ok_or(EINVAL)?;
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
    pub(crate) unsafe fn from_pfns(pfns: &[u64]) -> Result<Self> {
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

    /// `len` bytes from `offset` of the page with frame number `pfn` (a
    /// page buffer; `-EINVAL` for an invalid frame, `len == 0` or a range
    /// leaving the page).
    ///
    /// # Safety
    ///
    /// The page stays allocated until the transaction that carries it is
    /// over.
    pub(crate) unsafe fn from_pfn(pfn: u64, offset: usize, len: usize) -> Result<Self> {
        if len == 0 || offset.checked_add(len).is_none_or(|end| end > PAGE_SIZE) {
            return Err(EINVAL);
        }
        // SAFETY: the caller's promise.
        let whole = unsafe { Self::from_pfns(&[pfn]) }?;
        Self::new(whole.pages, offset, len)
    }

    fn new(mut pages: KVec<*mut Page>, offset: usize, len: usize) -> Result<Self> {
        let view = MdlView {
            pages: pages.as_mut_ptr(),
            nr_pages: u32::try_from(pages.len())?,
            offset: u32::try_from(offset)?,
            length: u32::try_from(len)?,
            next: core::ptr::null(),
        };
        Ok(Self {
            pages,
            offset,
            len,
            view,
        })
    }

    /// The description as C's `struct kmcl_mdl`, valid while `self` is.
    pub(crate) fn mdl_view(&self) -> &MdlView {
        &self.view
    }

    /// The page frame numbers of the pages, in order.
    pub(crate) fn pfns(&self) -> impl Iterator<Item = u64> + '_ {
        self.pages.iter().map(|p| {
            // SAFETY: `p` is a valid page (invariant).
            unsafe { glue::kmcl_page_pfn(*p) }
        })
    }

    /// The data as a VMBus GPA range names it: the offset into its first
    /// 4-KiB frame and those frames (Hyper-V's page numbers; the kernel's
    /// own with 4-KiB pages). `None` only for kernel pages smaller than
    /// 4 KiB or larger than 1 MiB.
    pub(crate) fn hv_range(&self) -> Option<(u32, impl Iterator<Item = u64> + '_)> {
        let shift = u32::try_from(PAGE_SHIFT).ok()?;
        crate::protocol::gpa::hv_frames(self.offset, self.len, shift, self.pfns())
    }

    /// The data split at every 4-KiB frame boundary: (page, offset in the
    /// page, bytes) of each piece, in order (what a DMA mapping for VMBus
    /// maps one by one; [`crate::protocol::gpa::frame_pieces`]).
    pub(crate) fn frame_pieces(&self) -> impl Iterator<Item = (*mut Page, u32, u32)> + '_ {
        crate::protocol::gpa::frame_pieces(self.offset, self.len).filter_map(|(at, n)| {
            // The pieces lie within the pages (invariant: `offset + len`
            // fits them); `get` keeps that checked.
            let page = *self.pages.get(at >> PAGE_SHIFT)?;
            Some((page, (at & (PAGE_SIZE - 1)) as u32, n as u32))
        })
    }

    /// Bytes of data.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Offset of the data in the first page.
    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    #[cfg(kmcl_kunit)]
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

    #[cfg(kmcl_kunit)]
    /// Copies `buf.len()` bytes of the data, from `at`, into `buf`.
    pub(crate) fn read(&self, at: usize, buf: &mut [u8]) -> Result {
        let ptr = buf.as_mut_ptr();
        self.pieces(at, buf.len(), |page, off, start, n| {
            // SAFETY: `page` is allocated memory (invariant); `off + n` is
            // within the page and `start + n` within `buf`.
            unsafe { glue::kmcl_page_read(page, off, ptr.add(start), n) }
        })
    }

    #[cfg(kmcl_kunit)]
    /// Copies `data` into the data, from `at`.
    pub(crate) fn write(&self, at: usize, data: &[u8]) -> Result {
        let ptr = data.as_ptr();
        self.pieces(at, data.len(), |page, off, start, n| {
            // SAFETY: as in `read`, with `data` as the source.
            unsafe { glue::kmcl_page_write(page, off, ptr.add(start), n) }
        })
    }
}

/// Most ranges (MDLs of a chain, page buffers) one packet's external data
/// may have when kmcl sends it.
pub(crate) const MAX_EXTERNAL_RANGES: usize = 256;

/// External data of one packet: one or more ranges, each a [`GpadlPages`]
/// (one GPA range on the wire). The C descriptions of the ranges are
/// chained through their `next` fields, the first one heading the chain.
///
/// # Invariants
///
/// `ranges` holds 1 to [`MAX_EXTERNAL_RANGES`] ranges; each one's view's
/// `next` points at the following one's view (NULL for the last), and
/// `ranges` is never resized, so those pointers stay valid while `self`
/// exists.
pub(crate) struct External {
    ranges: KVec<GpadlPages>,
}

impl External {
    /// External data of `ranges`, in order. `-EINVAL` for none or more
    /// than [`MAX_EXTERNAL_RANGES`].
    pub(crate) fn new(mut ranges: KVec<GpadlPages>) -> Result<Self> {
        if ranges.is_empty() || ranges.len() > MAX_EXTERNAL_RANGES {
            return Err(EINVAL);
        }
        for i in 1..ranges.len() {
            let next: *const MdlView = &ranges[i].view;
            ranges[i - 1].view.next = next;
        }
        // INVARIANT: linked above; `ranges` is not resized from here on.
        Ok(Self { ranges })
    }

    /// External data of one range. Any context.
    pub(crate) fn one(pages: GpadlPages) -> Result<Self> {
        let mut ranges = KVec::with_capacity(1, GFP_ATOMIC)?;
        ranges.push(pages, GFP_ATOMIC)?;
        Self::new(ranges)
    }

    /// The ranges, in order.
    pub(crate) fn ranges(&self) -> &[GpadlPages] {
        &self.ranges
    }

    /// The first range, whose C description heads the chain.
    pub(crate) fn first(&self) -> &GpadlPages {
        // The invariant: never empty.
        &self.ranges[0]
    }

    #[cfg(kmcl_kunit)]
    /// Bytes of all ranges.
    pub(crate) fn len(&self) -> usize {
        self.ranges.iter().map(|r| r.len()).sum()
    }

    #[cfg(kmcl_kunit)]
    /// Calls `f(range, offset in it, start in the caller's buffer, len)`
    /// for each piece of `[at, at + len)` of the ranges laid end to end.
    fn pieces(
        &self,
        at: usize,
        len: usize,
        mut f: impl FnMut(&GpadlPages, usize, usize, usize) -> Result,
    ) -> Result {
        let end = at.checked_add(len).ok_or(EINVAL)?;
        if end > self.len() {
            return Err(EINVAL);
        }
        let (mut start, mut done) = (0, 0);
        for r in self.ranges.iter() {
            let (from, to) = (at + done, end.min(start + r.len()));
            if from < to {
                f(r, from - start, done, to - from)?;
                done += to - from;
            }
            start += r.len();
        }
        Ok(())
    }

    #[cfg(kmcl_kunit)]
    /// Copies `buf.len()` bytes of the ranges laid end to end, from `at`.
    pub(crate) fn read(&self, at: usize, buf: &mut [u8]) -> Result {
        self.pieces(at, buf.len(), |r, off, start, n| {
            r.read(off, &mut buf[start..start + n])
        })
    }

    #[cfg(kmcl_kunit)]
    /// Copies `data` into the ranges laid end to end, from `at`.
    pub(crate) fn write(&self, at: usize, data: &[u8]) -> Result {
        self.pieces(at, data.len(), |r, off, start, n| {
            r.write(off, &data[start..start + n])
        })
    }
}

#[cfg(kmcl_kunit)]
/// Copies `data` to `offset` of `page` (within the page), through a
/// temporary mapping; any context.
///
/// # Safety
///
/// `page` is a valid page, and `offset + data.len() <= PAGE_SIZE`.
pub(crate) unsafe fn page_write(page: *mut Page, offset: usize, data: &[u8]) {
    // SAFETY: the caller's promise; `data` is readable for its length.
    unsafe { glue::kmcl_page_write(page, offset as u32, data.as_ptr(), data.len() as u32) }
}

#[cfg(kmcl_kunit)]
/// Copies `buf.len()` bytes at `offset` of `page` (within the page) into
/// `buf`, through a temporary mapping; any context.
///
/// # Safety
///
/// `page` is a valid page, and `offset + buf.len() <= PAGE_SIZE`.
pub(crate) unsafe fn page_read(page: *mut Page, offset: usize, buf: &mut [u8]) {
    // SAFETY: the caller's promise; `buf` is writable for its length.
    unsafe { glue::kmcl_page_read(page, offset as u32, buf.as_mut_ptr(), buf.len() as u32) }
}

// SPDX-License-Identifier: GPL-2.0

//! The pages of one ring, shared with the other endpoint.

use core::{
    alloc::Layout,
    ptr::NonNull,
    sync::atomic::AtomicU32, //
};

use kernel::{
    alloc::{
        allocator::Vmalloc,
        flags::{
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
    BULK_COPY_MIN,
    CONTROL_WORDS, //
};

mod glue {
    extern "C" {
        /// `memcpy(dst, src, len)` in C (`rust/glue/pages.c`).
        pub(super) fn kmcl_ring_copy(dst: *mut u8, src: *const u8, len: usize);
    }
}

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
///   volatile or C `memcpy` copies (the data area), never through
///   references to plain data, since the other endpoint may write it at
///   any time.
pub(crate) struct RingPages {
    base: NonNull<u8>,
    data_len: usize,
    /// `Some`: owned, allocated with this layout.
    layout: Option<Layout>,
}

// SAFETY: `RingPages` owns its allocation and all accesses to it are
// atomic, volatile or C copies (see the type invariants), so it may be moved to and
// used from any thread.
unsafe impl Send for RingPages {}

// SAFETY: Shared access only performs atomic, volatile or C-copy accesses (see the
// type invariants); concurrent use from several threads is what the ring
// protocol on top of it is designed for.
unsafe impl Sync for RingPages {}

impl RingPages {
    /// Allocates a zeroed ring with `data_pages` pages of data area.
    pub(crate) fn new(data_pages: usize) -> Result<Self> {
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
    pub(crate) unsafe fn borrowed(base: *mut u8, data_len: usize) -> Result<Self> {
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

    #[cfg(any(kmcl_kunit, kmcl_bench))]
    /// Number of pages in the data area.
    pub(crate) fn data_pages(&self) -> usize {
        self.data_len / PAGE_SIZE
    }

    #[cfg(any(kmcl_kunit, kmcl_bench))]
    /// Kernel virtual address of the control page (the start of the ring).
    pub(crate) fn base_addr(&self) -> usize {
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

    // Always inlined: each piece of a packet is a copy, and a call and
    // its return are two translated blocks more under TCG.
    #[inline(always)]
    fn read_data(&self, offset: usize, buf: &mut [u8]) {
        // The ring only asks for aligned in-range copies; refuse anything
        // else rather than touch memory outside the ring.
        if !self.in_bounds(offset, buf.len()) {
            return;
        }
        if buf.len() >= BULK_COPY_MIN {
            // SAFETY: `[offset, offset + len)` lies within the data area
            // (checked above), which stays mapped while `self` lives; `buf`
            // is kmcl's own memory, distinct from the ring. The copy is
            // made in C: the other endpoint may write these bytes
            // meanwhile, and the ring parses only `buf`, never the ring.
            unsafe {
                glue::kmcl_ring_copy(
                    buf.as_mut_ptr(),
                    self.data().wrapping_add(offset),
                    buf.len(),
                )
            };
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

    // Always inlined: each piece of a packet is a copy, and a call and
    // its return are two translated blocks more under TCG.
    #[inline(always)]
    fn write_data(&self, offset: usize, buf: &[u8]) {
        if !self.in_bounds(offset, buf.len()) {
            return;
        }
        if buf.len() >= BULK_COPY_MIN {
            // SAFETY: As in `read_data`: within the mapped data area, and
            // not overlapping `buf`; the other endpoint does not read free
            // space, and the bytes are published only after the copy.
            unsafe {
                glue::kmcl_ring_copy(self.data().wrapping_add(offset), buf.as_ptr(), buf.len())
            };
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

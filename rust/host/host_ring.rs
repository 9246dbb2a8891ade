// SPDX-License-Identifier: GPL-2.0

//! Ring memory for the host build whose data area is copied with the
//! platform's `memcpy`, as `kmcl.ko` copies ring payload with the kernel's.
//!
//! [`WordRingMemory`](crate::ring::WordRingMemory) is safe for any use
//! because every access is an atomic word; that also makes its copies a
//! word at a time. [`HostRing`] copies whole runs with
//! [`core::ptr::copy_nonoverlapping`] (a vector copy), which is sound only
//! while no other thread writes the bytes being copied: true of every pair
//! of ends that follow the ring protocol (a byte is written only in free
//! space and read only once published), and of any use from one thread.
//! The hostile peers of the fuzz targets run in the reader's thread for
//! that reason.

extern crate alloc;

use alloc::boxed::Box;
use core::cell::UnsafeCell;
use core::sync::atomic::AtomicU32;

use crate::ring::{
    init_control,
    RingMemory,
    BULK_COPY_MIN,
    CONTROL_WORDS, //
};

/// One ring's control words and data area, copied by `memcpy`.
///
/// # Invariants
///
/// Bytes of `data` are only accessed by `read_data`/`write_data`, whose
/// callers never copy a byte while another thread writes it (the safety
/// contract of [`HostRing::new`]).
pub struct HostRing {
    control: [AtomicU32; CONTROL_WORDS],
    data: Box<[UnsafeCell<u64>]>,
}

// SAFETY: The control words are atomics; the data area is only copied in
// and out, and the contract of `new` rules out concurrent copies of the
// same bytes, so sharing the ring between threads makes no data race.
unsafe impl Sync for HostRing {}

impl HostRing {
    /// A zeroed ring with a data area of `bytes` (rounded down to whole
    /// 8-byte words) and initialised control words.
    ///
    /// # Safety
    ///
    /// While the ring is shared between threads, no byte of its data area
    /// may be written by one thread while another copies it: at most one
    /// [`OutgoingRing`](crate::ring::OutgoingRing) and one
    /// [`IncomingRing`](crate::ring::IncomingRing) use it at a time, or
    /// every user is on one thread.
    pub unsafe fn new(bytes: usize) -> Self {
        let ring = Self {
            control: core::array::from_fn(|_| AtomicU32::new(0)),
            data: (0..bytes / 8).map(|_| UnsafeCell::new(0)).collect(),
        };
        init_control(&ring.control);
        ring
    }

    /// The address of byte `offset` of the data area. Panics unless
    /// `[offset, offset + len)` lies within the data area.
    #[inline]
    fn range(&self, offset: usize, len: usize) -> *mut u8 {
        let end = offset.checked_add(len).expect("ring copy overflows");
        assert!(end <= self.data.len() * 8, "ring copy past the data area");
        // `UnsafeCell<u64>` has the layout of `u64`: the cells are one
        // contiguous run of bytes.
        UnsafeCell::raw_get(self.data.as_ptr())
            .cast::<u8>()
            .wrapping_add(offset)
    }
}

impl RingMemory for HostRing {
    #[inline]
    fn control(&self) -> &[AtomicU32; CONTROL_WORDS] {
        &self.control
    }

    #[inline]
    fn data_len(&self) -> usize {
        self.data.len() * 8
    }

    #[inline]
    fn read_data(&self, offset: usize, buf: &mut [u8]) {
        let src = self.range(offset, buf.len());
        if buf.len() < BULK_COPY_MIN {
            let (words, _) = buf.as_chunks_mut::<8>();
            for (i, word) in words.iter_mut().enumerate() {
                // SAFETY: As below; the ring copies whole words.
                *word = unsafe { src.add(8 * i).cast::<[u8; 8]>().read() };
            }
            return;
        }
        // SAFETY: `range` checked that the bytes lie within the data area;
        // `buf` is a distinct exclusive borrow (the data area is never
        // lent out as a slice), and no other thread writes these bytes
        // now (the contract of `new`).
        unsafe { core::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
    }

    #[inline]
    fn write_data(&self, offset: usize, buf: &[u8]) {
        let dst = self.range(offset, buf.len());
        if buf.len() < BULK_COPY_MIN {
            let (words, _) = buf.as_chunks::<8>();
            for (i, word) in words.iter().enumerate() {
                // SAFETY: As below; the ring copies whole words.
                unsafe { dst.add(8 * i).cast::<[u8; 8]>().write(*word) };
            }
            return;
        }
        // SAFETY: As in `read_data`: in bounds, not overlapping `buf`, and
        // not copied by another thread meanwhile.
        unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), dst, buf.len()) };
    }
}

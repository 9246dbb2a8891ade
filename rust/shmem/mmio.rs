// SPDX-License-Identifier: GPL-2.0

//! A loopback device's MMIO space.

use core::{
    alloc::Layout,
    ptr::NonNull, //
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

/// Memory standing in for a device's MMIO space on the loopback bus: a
/// zeroed vmalloc allocation both endpoints' drivers are given the address
/// of (kmcl itself never reads or writes it).
///
/// # Invariants
///
/// `base` is a live `Vmalloc` allocation of `layout`, owned.
pub(crate) struct MmioMemory {
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
    pub(crate) fn new(bytes: usize) -> Result<Self> {
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
    pub(crate) fn space(&self) -> (usize, usize) {
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

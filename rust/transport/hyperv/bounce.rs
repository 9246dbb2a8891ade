// SPDX-License-Identifier: GPL-2.0

//! External data for the host of an isolated (confidential) VM.
//!
//! The host of an SNP, TDX or VBS-isolated guest cannot read the guest's
//! private memory, so a GPA-direct packet may not name the driver's pages.
//! As storvsc and netvsc do, kmcl maps each piece of external data through
//! the DMA API on the device (`dma_map_page()`, both ways): swiotlb copies
//! it into a bounce buffer the host can reach, the packet names the bounce
//! buffer's frames, and when the transaction completes the mapping ends
//! and swiotlb copies what the host wrote back into the driver's pages.
//! The device's `min_align_mask` (4 KiB - 1, set at probe) keeps each
//! byte's place in its 4-KiB frame, so that the mapped pieces still make
//! one GPA range each ([`gpa::mapped_range`]).
//!
//! A connection that ends before a transaction's completion leaves its
//! mapping to the link ([`Bounces`]): the host may still write into the
//! bounce buffer until the channel is closed, so it is unmapped only then.
//!
//! A confidential VMBus channel whose host may read private memory
//! (`co_external_memory`), or a VM that is not isolated, maps nothing: the
//! packet names the pages themselves, at no cost.

use kernel::{
    new_spinlock_irq,
    prelude::*,
    sync::{
        Arc,
        SpinLockIrq, //
    },
};

use crate::{
    engine::datapath::MappedExternal,
    protocol::gpa,
    shmem::External, //
};

use super::{
    Device,
    HostOps, //
};

/// One piece mapped for the host: bus address, bytes.
#[derive(Clone, Copy)]
struct Piece {
    addr: u64,
    len: u32,
}

/// The DMA mappings of one link's external data that outlived their
/// transactions (retired), until the host can no longer reach them.
///
/// # Invariants
///
/// Every piece in `retired` was mapped by `ops` for `dev` and not
/// unmapped yet.
#[pin_data(PinnedDrop)]
pub(super) struct Bounces {
    ops: Arc<dyn HostOps>,
    dev: Device,
    #[pin]
    retired: SpinLockIrq<KVec<KVec<Piece>>>,
}

impl Bounces {
    /// For external data on a channel of `dev`.
    pub(super) fn new(ops: Arc<dyn HostOps>, dev: Device) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Bounces {
                ops,
                dev,
                retired <- new_spinlock_irq!(KVec::new()),
            }),
            GFP_KERNEL,
        )
    }

    /// Maps every range of `pages` for the host, 4-KiB piece by piece.
    /// `-EIO` if the mapped pieces of a range do not line up as one GPA
    /// range (a device without a 4-KiB `min_align_mask`); nothing stays
    /// mapped on failure. Any context.
    pub(super) fn map(self: &Arc<Self>, pages: &External) -> Result<HostMapped> {
        let mut mapped = HostMapped {
            bounces: self.clone(),
            pieces: KVec::new(),
            frames: KVec::new(),
            ranges: KVec::with_capacity(pages.ranges().len(), GFP_ATOMIC)?,
        };
        let mut range = KVec::new();
        for r in pages.ranges() {
            range.clear();
            for piece in r.frame_pieces() {
                mapped.pieces.reserve(1, GFP_ATOMIC)?;
                range.reserve(1, GFP_ATOMIC)?;
                // SAFETY: `External` holds valid pages that stay until the
                // transaction is over; `mapped` unmaps each piece once,
                // when dropped (or, retired, after the channel closed).
                let addr = unsafe { self.ops.dma_map(self.dev, piece) }?;
                let p = Piece { addr, len: piece.2 };
                // Room was reserved above.
                let _ = mapped.pieces.push_within_capacity(p);
                let _ = range.push_within_capacity((addr, piece.2 as usize));
            }
            let (offset, frames) = gpa::mapped_range(&range).ok_or_else(|| {
                pr_err!("external data: a DMA mapping moved bytes within their 4-KiB frames\n");
                EIO
            })?;
            let at = mapped.frames.len();
            for f in frames {
                mapped.frames.push(f, GFP_ATOMIC)?;
            }
            let len = u32::try_from(r.len())?;
            mapped
                .ranges
                .push((offset, len, at..mapped.frames.len()), GFP_ATOMIC)?;
        }
        Ok(mapped)
    }

    /// Unmaps `pieces`.
    ///
    /// # Safety
    ///
    /// Each was mapped by `self.ops` for `self.dev`, not unmapped yet, and
    /// the host no longer uses it.
    unsafe fn unmap(&self, pieces: &[Piece]) {
        for p in pieces {
            // SAFETY: the caller's promise.
            unsafe { self.ops.dma_unmap(self.dev, p.addr, p.len) };
        }
    }

    /// Ends the retired mappings: the link's channel is closed, the host
    /// reaches them no more. Any context.
    pub(super) fn release_retired(&self) {
        let all = core::mem::take(&mut *self.retired.lock());
        for pieces in all.iter() {
            // SAFETY: retired pieces are mapped and not unmapped
            // (invariant), and taken out once; the channel is closed (the
            // caller's promise, or the link is gone with it).
            unsafe { self.unmap(pieces) };
        }
    }
}

#[pinned_drop]
impl PinnedDrop for Bounces {
    fn drop(self: Pin<&mut Self>) {
        // The last link and mapping of the channel are gone: it is closed.
        self.release_retired();
    }
}

/// One transaction's external data mapped for the host.
///
/// # Invariants
///
/// Every piece in `pieces` was mapped by `bounces.ops` for `bounces.dev`
/// and not unmapped yet.
pub(super) struct HostMapped {
    bounces: Arc<Bounces>,
    pieces: KVec<Piece>,
    frames: KVec<u64>,
    /// Each range: offset into its first frame, bytes, its frames.
    ranges: KVec<(u32, u32, core::ops::Range<usize>)>,
}

impl MappedExternal for HostMapped {
    fn count(&self) -> usize {
        self.ranges.len()
    }

    fn range(&self, i: usize) -> Option<(u32, u32, &[u64])> {
        let (offset, len, at) = self.ranges.get(i)?;
        Some((*offset, *len, self.frames.get(at.clone())?))
    }

    fn retire(&mut self) {
        let pieces = core::mem::take(&mut self.pieces);
        if pieces.is_empty() {
            return;
        }
        let mut retired = self.bounces.retired.lock();
        if retired.reserve(1, GFP_ATOMIC).is_ok() {
            if let Err(e) = retired.push_within_capacity(pieces) {
                // Not expected: room was reserved.
                core::mem::forget(e.0);
            }
            return;
        }
        drop(retired);
        // Unmapping now could hand a buffer the host still writes into to
        // someone else: it stays mapped for good.
        pr_err!(
            "external data: no memory to keep {} mapping(s) until the channel closes; they stay mapped\n",
            pieces.len()
        );
        core::mem::forget(pieces);
    }
}

impl Drop for HostMapped {
    fn drop(&mut self) {
        // SAFETY: the pieces are mapped (invariant) and dropped with
        // `self`; the transaction completed or its packet was never
        // written (a retired mapping has no pieces left).
        unsafe { self.bounces.unmap(&self.pieces) };
    }
}

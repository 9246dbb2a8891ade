// SPDX-License-Identifier: GPL-2.0

//! Transfer-page sets: receive buffers a client shared as GPADLs and
//! registered under a set id, into which the other endpoint delivers data
//! by naming ranges (`VM_PKT_DATA_USING_XFER_PAGES`, as Hyper-V's network
//! VSP delivers received frames).
//!
//! The table is the receiver's: its receive work checks every incoming
//! transfer-page packet against it ([`crate::protocol::xfer::XferRanges`]:
//! set known, every range inside it, count bounded); a loopback sender
//! checks its ranges against its receiver's table before it writes them,
//! so a driver's mistake is an error code on its own side, not a failed
//! channel on the other.

use kernel::{
    new_spinlock_irq,
    prelude::*,
    sync::SpinLockIrq, //
};

/// Most transfer-page sets one channel registers.
pub(crate) const MAX_TRANSFER_SETS: usize = 64;

/// Most ranges one transfer-page packet may name. Hyper-V's network VSP
/// sends up to 562 per packet (receive segment coalescing, Linux's
/// `NVSP_RSC_MAX`).
pub(crate) const MAX_TRANSFER_RANGES: u32 = 1024;

/// One registered set.
#[derive(Clone, Copy, Debug)]
struct TransferSet {
    id: u16,
    gpadl: u32,
    len: u64,
}

/// A channel's registered transfer-page sets. Taken in any context (the
/// receive work under the `data` lock; a loopback sender under its own
/// `data` lock); a leaf lock.
#[pin_data]
pub(crate) struct TransferSets {
    #[pin]
    table: SpinLockIrq<KVec<TransferSet>>,
}

impl TransferSets {
    /// No set.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(TransferSets {
            table <- new_spinlock_irq!(KVec::new()),
        })
    }

    /// Registers GPADL `gpadl` of `len` bytes as set `id`. `-EEXIST` if
    /// `id` is registered, `-ENOSPC` beyond [`MAX_TRANSFER_SETS`].
    pub(crate) fn register(&self, id: u16, gpadl: u32, len: u64) -> Result {
        let mut t = self.table.lock();
        if t.iter().any(|s| s.id == id) {
            return Err(EEXIST);
        }
        if t.len() >= MAX_TRANSFER_SETS {
            return Err(ENOSPC);
        }
        t.push(TransferSet { id, gpadl, len }, GFP_ATOMIC)?;
        Ok(())
    }

    /// Ends set `id`. `-ENOENT` if it is not registered.
    pub(crate) fn unregister(&self, id: u16) -> Result {
        let mut t = self.table.lock();
        let i = t.iter().position(|s| s.id == id).ok_or(ENOENT)?;
        t.remove(i).map_err(|_| EINVAL)?;
        Ok(())
    }

    /// The length in bytes of set `id`, if registered.
    pub(crate) fn len_of(&self, id: u16) -> Option<u64> {
        self.table.lock().iter().find(|s| s.id == id).map(|s| s.len)
    }

    /// Whether GPADL `gpadl` is registered as a set.
    pub(crate) fn uses_gpadl(&self, gpadl: u32) -> bool {
        self.table.lock().iter().any(|s| s.gpadl == gpadl)
    }

    /// How many sets are registered.
    pub(crate) fn count(&self) -> usize {
        self.table.lock().len()
    }

    /// Ends every set (the connection ended).
    pub(crate) fn clear(&self) {
        let all = core::mem::take(&mut *self.table.lock());
        drop(all);
    }
}

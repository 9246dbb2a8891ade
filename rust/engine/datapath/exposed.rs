// SPDX-License-Identifier: GPL-2.0

//! External data: what an endpoint exposes to the other endpoint for a
//! transaction (until its completion), and the check of an incoming
//! packet's range list against what its sender exposed.

use core::sync::atomic::{
    AtomicUsize,
    Ordering, //
};

use kernel::{
    new_condvar,
    prelude::*,
    sync::{
        Arc,
        CondVar, //
    },
};

use crate::{
    protocol::gpa::GpaRanges,
    shmem::External,
    sys::lock::{
        new_irq_spinlock,
        IrqSpinLock, //
    },
};

use crate::engine::types::ExternalLimits;

use super::{
    MappedExternal,
    Peer, //
};

/// One transaction's external data: the pages, and their mapping for the
/// other endpoint if it needs one ([`super::Remote::map_external`]).
type Exposure = (u64, Arc<External>, Option<KBox<dyn MappedExternal>>);

/// The external data `peer` exposed for transaction `tid`, if `header` (a
/// GPA range list read from the ring) describes exactly its ranges, in
/// order, within `limits` (ranges: the chain length; bytes: all ranges
/// together). A host's GPA ranges would name guest memory the host chose:
/// never accepted.
pub(super) fn check_external(
    peer: &Peer,
    header: &[u8],
    tid: u64,
    limits: ExternalLimits,
) -> Option<Arc<External>> {
    let ranges = GpaRanges::parse(header, limits.ranges, limits.bytes).ok()?;
    let exposed = peer.exposed(tid)?;
    let same = ranges.count() as usize == exposed.ranges().len()
        && ranges.iter().zip(exposed.ranges()).all(|(r, pages)| {
            pages.hv_range().is_some_and(|(offset, frames)| {
                r.offset == offset && r.len as usize == pages.len() && r.pfns().eq(frames)
            })
        });
    same.then_some(exposed)
}

/// External data one endpoint exposes, by transaction id, until the
/// transaction's completion: all the other endpoint may access.
/// Taken in any context (the other endpoint's receive work looks up its
/// sender's table under its own `data` lock); a leaf lock.
#[pin_data]
pub(crate) struct Exposed {
    #[pin]
    table: IrqSpinLock<KVec<Exposure>>,
    /// `table`'s length, stored under its lock: a completion of a packet
    /// without external data (when nothing is exposed) takes no lock.
    entries: AtomicUsize,
    /// Signalled when the table becomes empty.
    #[pin]
    drained: CondVar,
}

impl Exposed {
    /// Nothing exposed.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Exposed {
            table <- new_irq_spinlock!(KVec::new()),
            entries: AtomicUsize::new(0),
            drained <- new_condvar!(),
        })
    }

    /// Exposes `pages` (mapped as `mapped` for the other endpoint) for
    /// transaction `tid`. On failure (no memory) `mapped` is given back.
    pub(crate) fn add(
        &self,
        tid: u64,
        pages: Arc<External>,
        mapped: Option<KBox<dyn MappedExternal>>,
    ) -> Result<(), Option<KBox<dyn MappedExternal>>> {
        let mut t = self.table.lock();
        if t.reserve(1, GFP_ATOMIC).is_err() {
            return Err(mapped);
        }
        // Room was reserved.
        let _ = t.push_within_capacity((tid, pages, mapped));
        self.entries.store(t.len(), Ordering::Release);
        Ok(())
    }

    /// Ends the exposure for transaction `tid` (its completion came, or
    /// its packet was never written): its mapping ends (outside the lock).
    pub(crate) fn remove(&self, tid: u64) {
        // Nothing exposed: `tid` has no entry. An entry is added before
        // its packet is written, so before its completion can be read.
        if self.entries.load(Ordering::Acquire) == 0 {
            return;
        }
        let (gone, empty) = {
            let mut t = self.table.lock();
            let gone = t
                .iter()
                .position(|(id, _, _)| *id == tid)
                .and_then(|i| t.remove(i).ok());
            self.entries.store(t.len(), Ordering::Release);
            (gone, t.is_empty())
        };
        if gone.is_some() && empty {
            self.drained.notify_all();
        }
        drop(gone);
    }

    /// Waits until nothing is exposed, for `ms` milliseconds at most;
    /// whether nothing is. Process context.
    pub(crate) fn wait_drained(&self, ms: u32) -> bool {
        let mut t = self.table.lock();
        crate::sys::wait::wait_bounded(&self.drained, &mut t, ms, |t| t.is_empty())
    }

    /// What is exposed for transaction `tid`.
    pub(crate) fn get(&self, tid: u64) -> Option<Arc<External>> {
        self.table
            .lock()
            .iter()
            .find(|(id, _, _)| *id == tid)
            .map(|(_, p, _)| p.clone())
    }

    /// Ends every exposure (the connection ended, or the other endpoint
    /// left) without their completions: mappings are retired, to end when
    /// the other endpoint's channel is closed
    /// ([`MappedExternal::retire`]).
    pub(crate) fn clear(&self) {
        let mut all = {
            let mut t = self.table.lock();
            self.entries.store(0, Ordering::Release);
            core::mem::take(&mut *t)
        };
        self.drained.notify_all();
        for (_, _, mapped) in all.iter_mut() {
            if let Some(m) = mapped {
                m.retire();
            }
        }
        drop(all);
    }

    /// Transactions with external data exposed now.
    pub(crate) fn len(&self) -> usize {
        self.table.lock().len()
    }
}

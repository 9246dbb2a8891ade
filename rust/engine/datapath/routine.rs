// SPDX-License-Identifier: GPL-2.0

//! What runs when a sent packet's transaction is over (KMCL's completion
//! routine), and the transaction table's memory.

use kernel::prelude::*;

use crate::protocol::transactions::{
    Slot,
    SlotStore,
    Transactions, //
};

/// Called once when a sent packet's transaction is over (KMCL
/// `EvtVmbPacketCompletionRoutine`), in softirq or process context.
pub(crate) trait SendCompletion: Send {
    /// `status` is `Ok` when the other endpoint completed the packet (or,
    /// without a completion request, when the packet was written to the
    /// ring) and `Err(ENODEV)` when the connection ended first; `data` is
    /// the completion payload.
    fn complete(&mut self, status: Result, data: &[u8]);
}

/// What runs once when a sent packet's transaction is over.
pub(crate) enum Routine {
    /// A completion object.
    Boxed(KBox<dyn SendCompletion>),
    /// A function and a word for it: sending allocates nothing (the C API
    /// passes its packet objects this way).
    Function(fn(usize, Result, &[u8]), usize),
}

impl Routine {
    /// Runs the routine (once: it is consumed).
    pub(crate) fn run(self, status: Result, data: &[u8]) {
        match self {
            Routine::Boxed(mut b) => b.complete(status, data),
            Routine::Function(f, word) => f(word, status, data),
        }
    }
}

impl<T: SendCompletion + 'static> From<KBox<T>> for Routine {
    fn from(b: KBox<T>) -> Self {
        Routine::Boxed(b)
    }
}

/// The memory of a channel's transaction table.
pub(crate) struct RoutineSlots(KVec<Slot<Routine>>);

impl SlotStore<Routine> for RoutineSlots {
    fn slots(&self) -> usize {
        self.0.len()
    }

    fn slot(&mut self, i: usize) -> &mut Slot<Routine> {
        &mut self.0[i]
    }

    fn push(&mut self, slot: Slot<Routine>) -> core::result::Result<(), Slot<Routine>> {
        // Sends may come from softirq context.
        self.0.push_within_capacity(slot).or_else(|e| {
            let slot = e.0;
            if self.0.reserve(1, GFP_ATOMIC).is_err() {
                return Err(slot);
            }
            self.0.push_within_capacity(slot).map_err(|e| e.0)
        })
    }
}

pub(super) fn no_transactions() -> Transactions<Routine, RoutineSlots> {
    Transactions::new(RoutineSlots(KVec::new()))
}

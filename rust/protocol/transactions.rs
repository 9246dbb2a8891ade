// SPDX-License-Identifier: GPL-2.0

//! Transaction ids: matching completions to the packets they complete.
//!
//! A packet sent with a completion request gets a transaction id; the other
//! endpoint echoes it in its completion. The id is the only thing tying a
//! completion to its packet, and the other endpoint chooses what it writes
//! there, so a completion's id is untrusted: it may be forged, repeated, or
//! belong to a packet never sent. [`Transactions`] hands out ids that can
//! be checked in O(1) without trusting them:
//!
//! - an id is `generation << SLOT_BITS | slot`, where `slot` indexes the
//!   table and `generation` counts every id handed out (never 0);
//! - a completion is accepted only if its slot is in the table and holds a
//!   transaction with exactly that id; the slot is then freed, so a second
//!   completion with the same id is rejected;
//! - a transaction the sender stopped waiting for (a synchronous request
//!   that timed out) is *cancelled*: its slot remembers the id, so its late
//!   completion is recognised and dropped quietly rather than taken for a
//!   forgery; the last [`MAX_CANCELLED`] are remembered so.
//!
//! The table's memory belongs to the caller ([`SlotStore`]): the kernel
//! grows a `KVec` with atomic allocations, the host a `Vec`.

/// Bits of an id that name the slot.
pub const SLOT_BITS: u32 = 24;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
/// Most transactions outstanding (and cancelled) at once.
pub const MAX_SLOTS: usize = 1 << SLOT_BITS;
/// Most cancelled transactions remembered: beyond this many the oldest is
/// forgotten, and its completion, should it still come, is
/// [`Matched::Unknown`] (the other endpoint is that late only if broken).
/// Without a bound a driver retrying against an endpoint that never
/// answers would grow the table until sends fail.
pub const MAX_CANCELLED: usize = 256;
/// End of the free list.
const NONE: u32 = u32::MAX;

/// One slot of the table.
#[derive(Debug)]
pub enum Slot<T> {
    /// Unused; `next` is the next free slot ([`u32::MAX`]: none).
    Free {
        /// The next free slot.
        next: u32,
    },
    /// A transaction waiting for its completion.
    Busy {
        /// Its id.
        id: u64,
        /// What the sender keeps with it (its completion routine).
        value: T,
    },
    /// A transaction the sender stopped waiting for.
    Cancelled {
        /// Its id.
        id: u64,
    },
}

/// The memory of a [`Transactions`] table: a growable array of slots.
pub trait SlotStore<T> {
    /// Slots in the store.
    fn slots(&self) -> usize;
    /// Slot `i` (`i < slots()`).
    fn slot(&mut self, i: usize) -> &mut Slot<T>;
    /// Appends `slot`; `Err` gives it back when out of memory.
    fn push(&mut self, slot: Slot<T>) -> Result<(), Slot<T>>;
}

/// Why a transaction could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// No memory for another slot.
    NoMemory,
    /// [`MAX_SLOTS`] transactions are outstanding.
    Full,
}

/// What a completion's id matched.
#[derive(Debug, PartialEq, Eq)]
pub enum Matched<T> {
    /// The outstanding transaction with this id: it is over.
    Done(T),
    /// A transaction that was cancelled: drop the completion.
    Late,
    /// Nothing: a forged, repeated or stale id.
    Unknown,
}

/// The transactions of one endpoint.
pub struct Transactions<T, S: SlotStore<T>> {
    store: S,
    /// First free slot ([`NONE`]: none; grow the store).
    free: u32,
    /// Generation of the next id (never 0, so no id is 0).
    generation: u64,
    busy: usize,
    cancelled: usize,
    /// Cancelled transactions forgotten ([`MAX_CANCELLED`]).
    expired: u64,
    _value: core::marker::PhantomData<T>,
}

impl<T, S: SlotStore<T>> Transactions<T, S> {
    /// A table over `store`, which must be empty.
    pub fn new(store: S) -> Self {
        Self {
            store,
            free: NONE,
            generation: 1,
            busy: 0,
            cancelled: 0,
            expired: 0,
            _value: core::marker::PhantomData,
        }
    }

    /// Transactions waiting for their completion.
    pub fn outstanding(&self) -> usize {
        self.busy
    }

    /// Cancelled transactions whose completion has not come (yet).
    pub fn cancelled(&self) -> usize {
        self.cancelled
    }

    /// Cancelled transactions forgotten so far ([`MAX_CANCELLED`]).
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// Starts a transaction keeping `value`; returns its id (never 0). On
    /// error `value` is given back.
    pub fn insert(&mut self, value: T) -> Result<u64, (InsertError, T)> {
        let slot = if self.free != NONE {
            let i = self.free;
            self.free = match self.store.slot(i as usize) {
                Slot::Free { next } => *next,
                // Only free slots are on the free list.
                _ => NONE,
            };
            i
        } else {
            let i = self.store.slots();
            if i >= MAX_SLOTS {
                return Err((InsertError::Full, value));
            }
            if self.store.push(Slot::Free { next: NONE }).is_err() {
                return Err((InsertError::NoMemory, value));
            }
            i as u32
        };
        let id = (self.generation << SLOT_BITS) | u64::from(slot);
        // 2^40 ids before the generation wraps; skip 0 if it ever does.
        self.generation = (self.generation + 1) & (u64::MAX >> SLOT_BITS);
        if self.generation == 0 {
            self.generation = 1;
        }
        *self.store.slot(slot as usize) = Slot::Busy { id, value };
        self.busy += 1;
        Ok(id)
    }

    /// The slot an untrusted `id` names, if it is in the table.
    fn slot_of(&self, id: u64) -> Option<usize> {
        let i = (id & SLOT_MASK) as usize;
        (i < self.store.slots()).then_some(i)
    }

    fn release(&mut self, i: usize) -> Slot<T> {
        let old = core::mem::replace(self.store.slot(i), Slot::Free { next: self.free });
        self.free = i as u32;
        old
    }

    /// Matches a completion's (untrusted) `id`.
    pub fn complete(&mut self, id: u64) -> Matched<T> {
        let Some(i) = self.slot_of(id) else {
            return Matched::Unknown;
        };
        let hit = match self.store.slot(i) {
            Slot::Busy { id: have, .. } => *have == id,
            Slot::Cancelled { id: have } => *have == id,
            Slot::Free { .. } => false,
        };
        if !hit {
            return Matched::Unknown;
        }
        match self.release(i) {
            Slot::Busy { value, .. } => {
                self.busy -= 1;
                Matched::Done(value)
            }
            _ => {
                self.cancelled -= 1;
                Matched::Late
            }
        }
    }

    /// Stops waiting for transaction `id` (our own id): returns its value
    /// if it was still outstanding. Its completion, if it ever comes, is
    /// [`Matched::Late`].
    pub fn cancel(&mut self, id: u64) -> Option<T> {
        let i = self.slot_of(id)?;
        if !matches!(self.store.slot(i), Slot::Busy { id: have, .. } if *have == id) {
            return None;
        }
        let value = match core::mem::replace(self.store.slot(i), Slot::Cancelled { id }) {
            Slot::Busy { value, .. } => value,
            // Checked above.
            _ => return None,
        };
        self.busy -= 1;
        self.cancelled += 1;
        if self.cancelled > MAX_CANCELLED {
            self.forget_oldest_cancelled();
        }
        Some(value)
    }

    /// Frees the slot of the oldest cancelled transaction (the smallest
    /// generation; cancelling is rare, so a scan will do).
    fn forget_oldest_cancelled(&mut self) {
        let mut oldest: Option<(u64, usize)> = None;
        for i in 0..self.store.slots() {
            if let Slot::Cancelled { id } = self.store.slot(i) {
                let generation = *id >> SLOT_BITS;
                if oldest.is_none_or(|(g, _)| generation < g) {
                    oldest = Some((generation, i));
                }
            }
        }
        if let Some((_, i)) = oldest {
            self.release(i);
            self.cancelled -= 1;
            self.expired += 1;
        }
    }

    /// Ends transaction `id` (our own id) without a completion: its packet
    /// was never sent. Returns its value.
    pub fn forget(&mut self, id: u64) -> Option<T> {
        let i = self.slot_of(id)?;
        if !matches!(self.store.slot(i), Slot::Busy { id: have, .. } if *have == id) {
            return None;
        }
        match self.release(i) {
            Slot::Busy { value, .. } => {
                self.busy -= 1;
                Some(value)
            }
            _ => None,
        }
    }

    /// Ends every transaction (the connection is over), calling `f` with
    /// each outstanding one's id and value (in slot order: no order is
    /// promised). Cancelled ones are forgotten. The table is empty after.
    pub fn drain(&mut self, mut f: impl FnMut(u64, T)) {
        // Every slot is put on a new free list.
        self.free = NONE;
        for i in 0..self.store.slots() {
            match self.release(i) {
                Slot::Busy { id, value } => {
                    self.busy -= 1;
                    f(id, value);
                }
                Slot::Cancelled { .. } => self.cancelled -= 1,
                Slot::Free { .. } => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    impl<T> SlotStore<T> for Vec<Slot<T>> {
        fn slots(&self) -> usize {
            Vec::len(self)
        }
        fn slot(&mut self, i: usize) -> &mut Slot<T> {
            &mut self[i]
        }
        fn push(&mut self, slot: Slot<T>) -> Result<(), Slot<T>> {
            Vec::push(self, slot);
            Ok(())
        }
    }

    fn table() -> Transactions<u32, Vec<Slot<u32>>> {
        Transactions::new(Vec::new())
    }

    #[test]
    fn a_completion_matches_its_transaction_once() {
        let mut t = table();
        let a = t.insert(10).unwrap();
        let b = t.insert(20).unwrap();
        assert_ne!(a, 0);
        assert_ne!(a, b);
        assert_eq!(t.outstanding(), 2);
        assert_eq!(t.complete(b), Matched::Done(20));
        assert_eq!(t.complete(b), Matched::Unknown);
        assert_eq!(t.complete(a), Matched::Done(10));
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn a_reused_slot_does_not_accept_the_old_id() {
        let mut t = table();
        let a = t.insert(1).unwrap();
        assert_eq!(t.complete(a), Matched::Done(1));
        let b = t.insert(2).unwrap();
        // Same slot, new generation.
        assert_eq!(a & SLOT_MASK, b & SLOT_MASK);
        assert_eq!(t.complete(a), Matched::Unknown);
        assert_eq!(t.complete(b), Matched::Done(2));
    }

    #[test]
    fn forged_ids_are_unknown() {
        let mut t = table();
        let a = t.insert(1).unwrap();
        for id in [0, 1, u64::MAX, a + 1, a ^ (1 << 40), a + (1 << SLOT_BITS)] {
            assert_eq!(t.complete(id), Matched::Unknown, "{id:#x}");
        }
        assert_eq!(t.outstanding(), 1);
    }

    #[test]
    fn a_cancelled_transaction_completes_late_once() {
        let mut t = table();
        let a = t.insert(7).unwrap();
        assert_eq!(t.cancel(a), Some(7));
        assert_eq!(t.cancel(a), None);
        assert_eq!((t.outstanding(), t.cancelled()), (0, 1));
        assert_eq!(t.complete(a), Matched::Late);
        assert_eq!(t.complete(a), Matched::Unknown);
        assert_eq!(t.cancelled(), 0);
    }

    #[test]
    fn cancelled_transactions_are_remembered_up_to_a_bound() {
        // A driver retrying against an endpoint that never answers: every
        // request times out and is cancelled.
        let mut t = table();
        let ids: Vec<u64> = (0..1000)
            .map(|v| {
                let id = t.insert(v).unwrap();
                assert_eq!(t.cancel(id), Some(v));
                id
            })
            .collect();
        // The table does not grow with them: the oldest are forgotten.
        assert_eq!(t.cancelled(), MAX_CANCELLED);
        assert!(
            t.store.len() <= MAX_CANCELLED + 1,
            "{} slots",
            t.store.len()
        );
        assert_eq!(t.expired(), (1000 - MAX_CANCELLED) as u64);
        // The most recent are still recognised as late, the oldest not.
        assert_eq!(t.complete(ids[999]), Matched::Late);
        assert_eq!(t.complete(ids[1000 - MAX_CANCELLED]), Matched::Late);
        assert_eq!(t.complete(ids[0]), Matched::Unknown);
        // Transactions still work.
        let a = t.insert(5).unwrap();
        assert_eq!(t.complete(a), Matched::Done(5));
    }

    #[test]
    fn drain_returns_every_outstanding_transaction_once() {
        let mut t = table();
        let ids: Vec<u64> = (0..5).map(|v| t.insert(v).unwrap()).collect();
        assert_eq!(t.complete(ids[1]), Matched::Done(1));
        t.cancel(ids[3]);
        let again = t.insert(9).unwrap();
        let mut got = Vec::new();
        t.drain(|id, v| got.push((id, v)));
        got.sort();
        let mut want = [(ids[0], 0), (ids[2], 2), (ids[4], 4), (again, 9)];
        want.sort();
        assert_eq!(got, want);
        assert_eq!((t.outstanding(), t.cancelled()), (0, 0));
        assert_eq!(t.complete(ids[3]), Matched::Unknown);
        // The slots are reused, each once, before the store grows.
        let len = 5;
        let again: Vec<u64> = (0..len + 1).map(|v| t.insert(v).unwrap()).collect();
        let mut slots: Vec<u64> = again.iter().map(|id| id & SLOT_MASK).collect();
        slots.sort();
        slots.dedup();
        assert_eq!(slots.len(), again.len());
        for (v, id) in again.iter().enumerate() {
            assert_eq!(t.complete(*id), Matched::Done(v as u32));
        }
    }

    #[test]
    fn out_of_memory_gives_the_value_back() {
        struct NoRoom;
        impl SlotStore<u8> for NoRoom {
            fn slots(&self) -> usize {
                0
            }
            fn slot(&mut self, _: usize) -> &mut Slot<u8> {
                unreachable!()
            }
            fn push(&mut self, slot: Slot<u8>) -> Result<(), Slot<u8>> {
                Err(slot)
            }
        }
        let mut t = Transactions::new(NoRoom);
        assert_eq!(t.insert(5), Err((InsertError::NoMemory, 5)));
    }
}

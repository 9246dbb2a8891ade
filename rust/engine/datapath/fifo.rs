// SPDX-License-Identifier: GPL-2.0

//! The first-in first-out queue of the outgoing side.

use kernel::prelude::*;

/// A first-in first-out queue: a vector read from `head`, so that taking
/// the oldest item does not move the others; compacted once half of it is
/// taken. Its capacity is kept, so room can be reserved ahead.
pub(super) struct Fifo<T> {
    items: KVec<Option<T>>,
    head: usize,
}

impl<T> Fifo<T> {
    pub(super) const fn new() -> Self {
        Self {
            items: KVec::new(),
            head: 0,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.head >= self.items.len()
    }

    pub(super) fn len(&self) -> usize {
        self.items.len() - self.head
    }

    pub(super) fn front(&self) -> Option<&T> {
        self.items.get(self.head).and_then(|q| q.as_ref())
    }

    pub(super) fn restart_if_empty(&mut self) {
        if self.is_empty() {
            self.items.clear();
            self.head = 0;
        }
    }

    pub(super) fn push(&mut self, item: T) -> Result {
        self.restart_if_empty();
        self.items.push(Some(item), GFP_ATOMIC)?;
        Ok(())
    }

    /// Makes room for `n` more items without allocating.
    pub(super) fn reserve(&mut self, n: usize) -> Result {
        self.restart_if_empty();
        self.items.reserve(n, GFP_ATOMIC)?;
        Ok(())
    }

    /// Appends `item` in reserved room; gives it back if there is none.
    pub(super) fn push_reserved(&mut self, item: T) -> core::result::Result<(), T> {
        self.restart_if_empty();
        self.items.push_within_capacity(Some(item)).map_err(|e| {
            // Only `Some` is ever pushed.
            e.0.unwrap_or_else(|| unreachable!())
        })
    }

    pub(super) fn pop_front(&mut self) -> Option<T> {
        let item = self.items.get_mut(self.head)?.take();
        self.head += 1;
        if self.is_empty() {
            self.items.clear();
            self.head = 0;
        } else if self.head >= 64 && self.head * 2 >= self.items.len() {
            self.items.retain(|q| q.is_some());
            self.head = 0;
        }
        item
    }

    /// Everything still queued, oldest first.
    pub(super) fn take_all(&mut self) -> KVec<Option<T>> {
        self.head = 0;
        core::mem::take(&mut self.items)
    }
}

// SPDX-License-Identifier: GPL-2.0

//! Incoming packets lent to C drivers.
//!
//! A C driver gets each incoming packet as a raw handle and gives it back
//! once, through complete, defer or fail. kmcl records every handle it
//! lends, with the module it was lent to, so that
//!
//! - a handle given back is checked before it is turned into a packet
//!   again: a handle never lent, or given back twice (a driver completing
//!   a packet twice), is refused with a log line instead of freeing memory
//!   twice;
//! - the packets a module still held when it was unloaded are taken back
//!   and completed, so its channels can close (Disable waits for every
//!   delivered packet to be completed).
//!
//! A handle is an address: one completed twice *after* kmcl lent the same
//! memory again (packet objects are reused) is not detected.
//!
//! The record is split into shards by address, each under its own lock, so
//! that channels on different CPUs rarely meet on one lock.

use kernel::prelude::*;

/// One lent handle: (its address, the owner module's address).
type Entry = (usize, usize);

macro_rules! shards {
    ($($name:ident),*) => {
        $(
            kernel::sync::global_lock! {
                // SAFETY: `init` runs in kmcl's module initialiser, before
                // any packet can be lent.
                unsafe(uninit) static $name: SpinLockIrq<KVec<Entry>> = KVec::new();
            }
        )*

        /// Initialises the shards (module init, once).
        pub(super) fn init() {
            // SAFETY: called once, from the module initialiser, before use.
            $(unsafe { $name.init() };)*
        }

        /// Runs `f` on shard `i` (`i < SHARDS`) with its lock held.
        fn with_shard<R>(i: usize, f: impl FnOnce(&mut KVec<Entry>) -> R) -> R {
            let mut n = 0usize;
            $(
                if n == i {
                    return f(&mut $name.lock());
                }
                n += 1;
            )*
            let _ = n;
            // Only reached for `i >= SHARDS`: use the last shard.
            f(&mut LENT7.lock())
        }
    };
}

shards!(LENT0, LENT1, LENT2, LENT3, LENT4, LENT5, LENT6, LENT7);

const SHARDS: usize = 8;

fn shard_of(handle: usize) -> usize {
    ((handle >> 6) ^ (handle >> 12)) & (SHARDS - 1)
}

/// Records `handle` as lent to `owner`. `Err`: out of memory (the packet
/// must not be handed out).
pub(super) fn lend(handle: usize, owner: usize) -> Result {
    with_shard(shard_of(handle), |v| v.push((handle, owner), GFP_ATOMIC))?;
    Ok(())
}

/// Takes `handle` back: `true` if it was lent and not yet given back.
pub(super) fn give_back(handle: usize) -> bool {
    with_shard(shard_of(handle), |v| {
        let Some(i) = v.iter().rposition(|e| e.0 == handle) else {
            return false;
        };
        // Swap-remove: the order does not matter.
        let last = v.pop();
        if let (Some(last), Some(slot)) = (last, v.get_mut(i)) {
            *slot = last;
        }
        true
    })
}

/// Whether `handle` is lent right now (the caller is its driver).
pub(super) fn is_lent(handle: usize) -> bool {
    with_shard(shard_of(handle), |v| v.iter().any(|e| e.0 == handle))
}

/// Takes back one handle still lent to `owner`, if any.
pub(super) fn take_one_of(owner: usize) -> Option<usize> {
    take_one_where(|_, o| o == owner).map(|(handle, _)| handle)
}

/// Takes back one lent handle for which `pred(handle, owner)` (called
/// under the table's lock, while the handle is still lent) is true:
/// (handle, owner).
pub(super) fn take_one_where(pred: impl Fn(usize, usize) -> bool) -> Option<(usize, usize)> {
    for i in 0..SHARDS {
        let found = with_shard(i, |v| {
            let j = v.iter().position(|e| pred(e.0, e.1))?;
            let entry = v[j];
            let last = v.pop();
            if let (Some(last), Some(slot)) = (last, v.get_mut(j)) {
                *slot = last;
            }
            Some(entry)
        });
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Handles lent and not given back (for tests and the unload check).
pub(super) fn count() -> usize {
    (0..SHARDS).map(|i| with_shard(i, |v| v.len())).sum()
}

/// Frees the shards' memory (module exit; nothing is lent any more).
pub(super) fn exit() {
    let left = count();
    if left > 0 {
        pr_err!("{} incoming packet(s) still lent at unload\n", left);
    }
    for i in 0..SHARDS {
        let v = with_shard(i, core::mem::take);
        drop(v);
    }
}

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
//! A server's save (`kmcl_channel_save_begin`) marks the packets it takes
//! rather than taking them out: while it asks the driver for their state,
//! a completion of one is *recorded* (it counts, and the packet is
//! completed for real when the save ends, instead of going into it); once
//! the save is sealed a completion is refused, the packet being the
//! save's; if the save fails the marks go and the packets are the
//! driver's again, with nothing to allocate.
//!
//! The record is split into shards by address, each under its own lock, so
//! that channels on different CPUs rarely meet on one lock.
//!
//! Most drivers complete a packet inside their ProcessPacket callback, which
//! runs in softirq context. Such a packet is recorded without a lock: in
//! its CPU's "delivering" slot (softirq work does not nest on a CPU, so the
//! slot is the callback's alone), and given back by clearing the slot.
//! Only a packet the driver keeps past the callback goes into the table,
//! before it leaves the slot, so a lent handle is always in a slot or the
//! table and a give-back that looks at the slots first, then the table,
//! finds it wherever it is. The table keeps room for every CPU's kept
//! packet at once ([`HEADROOM`]), so that recording one after the driver
//! already has it cannot fail; without that room delivery records the
//! handle in the table first, as before.

use core::sync::atomic::{
    AtomicUsize,
    Ordering, //
};
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

        /// Initialises the shards and gives them their headroom (module
        /// init, once).
        pub(super) fn init() {
            // SAFETY: called once, from the module initialiser, before use.
            $(unsafe { $name.init() };)*
            // SAFETY: as above.
            unsafe { RECORDED.init() };
            reserve();
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

/// CPUs with a delivering slot (CPUs beyond use the table).
const SLOTS: usize = 64;

/// Free entries a shard keeps for packets kept past their callback: one
/// per slot.
const HEADROOM: usize = SLOTS;

/// The handle a softirq ProcessPacket callback on CPU `i` was given, until
/// the driver gives it back or the callback returns (0: none).
static DELIVERING: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];

/// Each shard's free capacity, as of its last change (read without the
/// shard's lock to decide whether a delivery may use its slot).
static SPARE: [AtomicUsize; SHARDS] = [const { AtomicUsize::new(0) }; SHARDS];

/// Runs `f` on shard `i` with its lock held, then notes its free capacity.
fn with_table<R>(i: usize, f: impl FnOnce(&mut KVec<Entry>) -> R) -> R {
    with_shard(i, |v| {
        let r = f(v);
        SPARE[i % SHARDS].store(v.capacity() - v.len(), Ordering::Relaxed);
        r
    })
}

/// Gives the shards their headroom (from [`init`]; atomic allocations: the
/// shards' locks disable interrupts). Without memory for it deliveries
/// record every handle in the table.
fn reserve() {
    for i in 0..SHARDS {
        let _ = with_table(i, |v| v.reserve(HEADROOM, GFP_ATOMIC));
    }
}

/// Removes `handle`'s entry from table vector `v`, if there.
fn remove(v: &mut KVec<Entry>, handle: usize) -> bool {
    let Some(i) = v.iter().rposition(|e| e.0 == handle) else {
        return false;
    };
    // Swap-remove: the order does not matter.
    let last = v.pop();
    if let (Some(last), Some(slot)) = (last, v.get_mut(i)) {
        *slot = last;
    }
    true
}

/// The delivering slots of the CPUs this kernel can have.
fn slots() -> impl Iterator<Item = &'static AtomicUsize> {
    DELIVERING
        .iter()
        .take((kernel::cpu::nr_cpu_ids() as usize).min(SLOTS))
}

/// Clears the delivering slot holding `handle`: `true` if one did.
fn take_from_slots(handle: usize) -> bool {
    let here = kernel::cpu::CpuId::current().as_u32() as usize;
    // This CPU's first: a packet completed inside its callback.
    let first = DELIVERING.get(here).into_iter();
    Iterator::chain(first, slots()).any(|slot| {
        slot.compare_exchange(handle, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

/// Lends `handle` to `owner` for `deliver` (the driver's ProcessPacket
/// callback) and calls it. `Err`: out of memory recording it; `deliver`
/// was not called and the packet must not be handed out.
pub(super) fn lend_for(handle: usize, owner: usize, deliver: impl FnOnce()) -> Result {
    let i = shard_of(handle);
    // In process context (a deferred delivery) the task could move to
    // another CPU inside the callback: the table records it.
    let slot = crate::sys::context::interrupt_cpu().filter(|&cpu| {
        cpu < SLOTS
            && SPARE[i].load(Ordering::Relaxed) >= HEADROOM
            && DELIVERING[cpu].load(Ordering::Relaxed) == 0
    });
    let Some(cpu) = slot else {
        lend(handle, owner)?;
        deliver();
        return Ok(());
    };
    // Softirq: no other delivery runs on this CPU until `deliver` returns.
    DELIVERING[cpu].store(handle, Ordering::Release);
    deliver();
    if DELIVERING[cpu].load(Ordering::Acquire) != handle {
        // Given back inside the callback.
        return Ok(());
    }
    // Kept: into the table (the headroom has room for it), then off the
    // slot. A give-back in between finds it in one or the other.
    let recorded = with_table(i, |v| {
        let pushed = match v.push_within_capacity((handle, owner)) {
            Ok(()) => true,
            // Not expected (see HEADROOM).
            Err(e) => v.push(e.0, GFP_ATOMIC).is_ok(),
        };
        let _ = v.reserve(HEADROOM, GFP_ATOMIC);
        pushed
    });
    if !recorded {
        // The slot keeps recording it (this CPU's deliveries use the table
        // until it is given back).
        pr_err!("no room to record a kept incoming packet; its CPU's slot holds it\n");
        return Ok(());
    }
    if DELIVERING[cpu]
        .compare_exchange(handle, 0, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        // Given back through the slot meanwhile (on another CPU): the
        // record goes again.
        with_table(i, |v| remove(v, handle));
    }
    Ok(())
}

fn shard_of(handle: usize) -> usize {
    ((handle >> 6) ^ (handle >> 12)) & (SHARDS - 1)
}

/// Marks in an entry's owner word (owners are module addresses, aligned:
/// the low bits are free).
/// Taken into a save under way: a completion is recorded.
const SAVING: usize = 1;
/// ... and the driver completed it meanwhile.
const COMPLETED: usize = 2;
/// In a sealed save: a completion is refused.
const SAVED: usize = 4;
const MARKS: usize = SAVING | COMPLETED | SAVED;

/// What giving a handle back found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum GiveBack {
    /// Lent: it is the caller's now.
    Taken,
    /// Marked for a save under way: the completion is recorded (the
    /// caller keeps its payload with [`record`]); the packet stays.
    Recorded,
    /// Not lent, given back already, or in a sealed save: refused.
    Refused,
}

/// Payloads of completions recorded during a save, by handle.
type Recorded = KVec<(usize, KVec<u8>)>;

kernel::sync::global_lock! {
    // SAFETY: `init` runs in kmcl's module initialiser, before any packet
    // can be lent.
    unsafe(uninit) static RECORDED: SpinLockIrq<Recorded> = KVec::new();
}

/// Runs `f` on the entry of `handle` in the table, if any: its index and
/// the shard's vector, under the shard's lock.
fn with_entry<R>(handle: usize, f: impl FnOnce(&mut KVec<Entry>, Option<usize>) -> R) -> R {
    with_table(shard_of(handle), |v| {
        let i = v.iter().rposition(|e| e.0 == handle);
        f(v, i)
    })
}

/// Swap-removes entry `i` of `v`.
fn remove_at(v: &mut KVec<Entry>, i: usize) {
    let last = v.pop();
    if let (Some(last), Some(slot)) = (last, v.get_mut(i)) {
        *slot = last;
    }
}

/// Marks one lent handle, not marked yet, for which `pred(handle, owner)`
/// holds as taken into a save: (handle, owner). Its completions are
/// recorded from now on.
pub(super) fn mark_for_save(pred: impl Fn(usize, usize) -> bool) -> Option<(usize, usize)> {
    for i in 0..SHARDS {
        let found = with_table(i, |v| {
            let e = v.iter_mut().find(|e| e.1 & MARKS == 0 && pred(e.0, e.1))?;
            e.1 |= SAVING;
            Some((e.0, e.1 & !MARKS))
        });
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Keeps the payload of a completion [`give_back`] recorded. `Err` (out
/// of memory): the completion is not recorded after all.
pub(super) fn record(handle: usize, payload: &[u8]) -> Result {
    let kept = (|| -> Result {
        let mut copy = KVec::new();
        copy.extend_from_slice(payload, GFP_ATOMIC)?;
        RECORDED.lock().push((handle, copy), GFP_ATOMIC)?;
        Ok(())
    })();
    if kept.is_err() {
        with_entry(handle, |v, i| {
            if let Some(i) = i {
                v[i].1 &= !COMPLETED;
            }
        });
    }
    kept
}

/// The end of a save's hold on `handle`, marked by [`mark_for_save`]:
/// `Ok(None)` if the driver did not complete it meanwhile, else the
/// entry is gone and `Ok(Some(payload))` is the completion to send. With
/// `seal`, a handle not completed stays marked as the save's (completions
/// refused) until [`unseal`] or [`drop_sealed`]; without, it is the
/// driver's again.
pub(super) fn end_saving(handle: usize, seal: bool) -> Option<KVec<u8>> {
    let completed = with_entry(handle, |v, i| {
        let i = i?;
        if v[i].1 & COMPLETED != 0 {
            remove_at(v, i);
            return Some(());
        }
        v[i].1 &= !MARKS;
        if seal {
            v[i].1 |= SAVED;
        }
        None
    });
    completed?;
    let mut recorded = RECORDED.lock();
    let at = recorded.iter().position(|r| r.0 == handle)?;
    recorded.remove(at).ok().map(|r| r.1)
}

/// The index in `v` of `handle`'s entry sealed into a save.
fn sealed_at(v: &KVec<Entry>, handle: usize) -> Option<usize> {
    v.iter().position(|e| e.0 == handle && e.1 & SAVED != 0)
}

/// A sealed save failed: `handle` is the driver's again.
pub(super) fn unseal(handle: usize) {
    with_table(shard_of(handle), |v| {
        if let Some(i) = sealed_at(v, handle) {
            v[i].1 &= !MARKS;
        }
    });
}

/// A sealed save succeeded: `handle` is the save's; its entry goes (the
/// sealed one: the address may already be a new packet's).
pub(super) fn drop_sealed(handle: usize) {
    with_table(shard_of(handle), |v| {
        if let Some(i) = sealed_at(v, handle) {
            remove_at(v, i);
        }
    });
}

/// Records `handle` as lent to `owner`. `Err`: out of memory (the packet
/// must not be handed out).
pub(super) fn lend(handle: usize, owner: usize) -> Result {
    with_table(shard_of(handle), |v| {
        // Never into the headroom kept packets rely on.
        if v.capacity() - v.len() <= HEADROOM {
            v.reserve(HEADROOM + 1, GFP_ATOMIC)?;
        }
        v.push((handle, owner), GFP_ATOMIC)
    })?;
    Ok(())
}

/// Takes `handle` back (see [`GiveBack`]).
pub(super) fn give_back(handle: usize) -> GiveBack {
    // The slots first, then the table: a kept packet enters the table
    // before it leaves its slot.
    if take_from_slots(handle) {
        return GiveBack::Taken;
    }
    with_entry(handle, |v, i| {
        let Some(i) = i else {
            return GiveBack::Refused;
        };
        match v[i].1 & MARKS {
            0 => {
                remove_at(v, i);
                GiveBack::Taken
            }
            SAVING => {
                v[i].1 |= COMPLETED;
                GiveBack::Recorded
            }
            _ => GiveBack::Refused,
        }
    })
}

/// Whether `handle` is lent right now (the caller is its driver).
pub(super) fn is_lent(handle: usize) -> bool {
    slots().any(|slot| slot.load(Ordering::Acquire) == handle)
        || with_shard(shard_of(handle), |v| v.iter().any(|e| e.0 == handle))
}

/// Takes back one handle still lent to `owner`, if any.
pub(super) fn take_one_of(owner: usize) -> Option<usize> {
    take_one_where(|_, o| o & !MARKS == owner).map(|(handle, _)| handle)
}

/// Takes back one lent handle for which `pred(handle, owner)` (called
/// under the table's lock, while the handle is still lent) is true:
/// (handle, owner).
pub(super) fn take_one_where(pred: impl Fn(usize, usize) -> bool) -> Option<(usize, usize)> {
    for i in 0..SHARDS {
        let found = with_table(i, |v| {
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
    let in_slots = slots()
        .filter(|slot| slot.load(Ordering::Acquire) != 0)
        .count();
    in_slots
        + (0..SHARDS)
            .map(|i| with_shard(i, |v| v.len()))
            .sum::<usize>()
}

/// Frees the shards' memory (module exit; nothing is lent any more).
pub(super) fn exit() {
    let left = count();
    if left > 0 {
        pr_err!("{} incoming packet(s) still lent at unload\n", left);
    }
    for i in 0..SHARDS {
        let v = with_table(i, core::mem::take);
        drop(v);
    }
    let recorded = core::mem::take(&mut *RECORDED.lock());
    drop(recorded);
}

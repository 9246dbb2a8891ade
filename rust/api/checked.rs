// SPDX-License-Identifier: GPL-2.0

//! Checked handles: every channel handle and outgoing packet object kmcl
//! hands out is recorded here with its kind and, for packets, whether it
//! is in flight. A handle that is not recorded as what the call expects
//! (cleaned up or freed already, made up, a packet passed as a channel,
//! a packet sent twice or freed while in flight) is refused with
//! `-EINVAL` and one rate-limited log line, instead of being dereferenced.
//!
//! The record is a lock-free open-addressing table of words: a handle's
//! address with its kind in the low bits (handles are 8-byte aligned).
//! Any context. It catches misuse in sequence (use after cleanup, double
//! free); it cannot make a race between a call and the handle's free in
//! another thread safe, nor tell a stale handle from a new object kmcl
//! placed at the same address.
//!
//! On by default; `kmcl.checked_handles=0` turns it off (the cost is
//! measured in `make bench`: Documentation/performance.rst).

use core::sync::atomic::{
    AtomicBool,
    AtomicUsize,
    Ordering, //
};

/// Slots in the table.
const SLOTS: usize = 1 << 15;
const MASK: usize = SLOTS - 1;
/// Most slots looked at for one handle.
const PROBES: usize = 64;
/// A slot never used.
const EMPTY: usize = 0;
/// A slot whose handle went (reusable; lookups go on past it).
const GONE: usize = 1;
/// The kind bits of an entry.
const KIND_MASK: usize = 7;

/// What a recorded handle is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(usize)]
pub(super) enum Kind {
    /// A channel handle (`kmcl_channel_allocate`).
    Channel = 2,
    /// An outgoing packet object the driver holds.
    Packet = 4,
    /// An outgoing packet object in flight (sent, routine not run yet).
    PacketInFlight = 5,
}

static TABLE: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(EMPTY) }; SLOTS];

/// Whether handles are checked (module parameter `checked_handles`).
static ON: AtomicBool = AtomicBool::new(true);

/// Turns checking on or off (module init, before any handle exists).
pub(super) fn set_enabled(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

/// Whether handles are checked.
pub(super) fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

fn start(addr: usize) -> usize {
    // Fibonacci hashing of the address without its alignment bits.
    (((addr as u64 >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize) & MASK
}

fn entry(addr: usize, kind: Kind) -> usize {
    addr | kind as usize
}

/// The slots `addr` may be in, in probe order.
fn probe(addr: usize) -> impl Iterator<Item = &'static AtomicUsize> {
    let first = start(addr);
    (0..PROBES).map(move |i| &TABLE[(first + i) & MASK])
}

/// Records `addr` as `kind`. `-ENOMEM` if its slots are all taken.
pub(super) fn insert(addr: usize, kind: Kind) -> kernel::error::Result {
    if !enabled() {
        return Ok(());
    }
    if addr == 0 || addr & KIND_MASK != 0 {
        return Err(kernel::error::code::EINVAL);
    }
    for slot in probe(addr) {
        let mut seen = slot.load(Ordering::Acquire);
        while seen == EMPTY || seen == GONE {
            match slot.compare_exchange(
                seen,
                entry(addr, kind),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => seen = now,
            }
        }
    }
    Err(kernel::error::code::ENOMEM)
}

/// The slot holding `addr`, if recorded.
fn find(addr: usize) -> Option<(&'static AtomicUsize, usize)> {
    for slot in probe(addr) {
        let v = slot.load(Ordering::Acquire);
        if v == EMPTY {
            return None;
        }
        if v != GONE && v & !KIND_MASK == addr {
            return Some((slot, v));
        }
    }
    None
}

/// Whether `addr` is recorded as `kind` (always, when not checking).
#[inline]
pub(super) fn is(addr: usize, kind: Kind) -> bool {
    // The usual case first, inline: the handle in the first slot it may be
    // in (an aligned address only: `entry` of a misaligned one could equal
    // another handle's entry).
    if addr & KIND_MASK == 0 && TABLE[start(addr)].load(Ordering::Acquire) == entry(addr, kind) {
        return true;
    }
    !enabled() || find(addr).is_some_and(|(_, v)| v == entry(addr, kind))
}

/// Whether `addr` is a packet object (in flight or not).
pub(super) fn is_packet(addr: usize) -> bool {
    !enabled()
        || find(addr).is_some_and(|(_, v)| {
            v == entry(addr, Kind::Packet) || v == entry(addr, Kind::PacketInFlight)
        })
}

/// Changes `addr` from `from` to `to`: `false` (nothing changed) if it is
/// not recorded as `from` (always `true` when not checking).
pub(super) fn change(addr: usize, from: Kind, to: Kind) -> bool {
    if !enabled() {
        return true;
    }
    let Some((slot, _)) = find(addr) else {
        return false;
    };
    slot.compare_exchange(
        entry(addr, from),
        entry(addr, to),
        Ordering::AcqRel,
        Ordering::Acquire,
    )
    .is_ok()
}

/// Forgets `addr`, which must be recorded as `kind`: `false` (nothing
/// changed) if it is not (always `true` when not checking).
pub(super) fn remove(addr: usize, kind: Kind) -> bool {
    if !enabled() {
        return true;
    }
    let Some((slot, _)) = find(addr) else {
        return false;
    };
    slot.compare_exchange(entry(addr, kind), GONE, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

/// Handles recorded now (tests).
#[cfg(kmcl_kunit)]
pub(super) fn count() -> usize {
    TABLE
        .iter()
        .filter(|s| {
            let v = s.load(Ordering::Relaxed);
            v != EMPTY && v != GONE
        })
        .count()
}

// SPDX-License-Identifier: GPL-2.0

//! Outgoing packets (`struct kmcl_packet`): allocate, initialize, free,
//! send with and without external data, synchronous requests.

use core::{
    ffi::{
        c_int,
        c_void, //
    },
    sync::atomic::{
        AtomicPtr,
        AtomicUsize,
        Ordering, //
    },
};

use kernel::{
    prelude::*,
    sync::Arc, //
};

use crate::{
    engine::datapath::Routine,
    shmem::{
        External,
        GpadlPages,
        MAX_EXTERNAL_RANGES, //
    },
};

use super::{
    abi,
    abi::{
        EvtPacketCompletion,
        KmclChannel,
        KmclMdl,
        KmclPacket, //
    },
    bytes, checked,
    checked::Kind,
    errno, gfp, handle, with_channel_sleeping, Handle,
};

/// An outgoing packet object (`VMBPACKET`).
pub struct CPacket {
    pub(super) handle: Arc<Handle>,
    pub(super) pointer: AtomicUsize,
    pub(super) routine: EvtPacketCompletion,
    /// In the driver's memory (`kmcl_packet_initialize`), not kmalloc'ed.
    pub(super) in_caller_memory: bool,
    /// The incoming packet `kmcl_packet_restore` made (its handle, 0:
    /// none), until `kmcl_packet_restored` hands it out.
    pub(super) restored: AtomicUsize,
}

/// The packet object a channel freed last, kept without a lock: an
/// allocation after a free (a driver sending one packet after another)
/// takes it back with one atomic instead of the lookaside list's lock.
///
/// # Invariants
///
/// The pointer is null (empty), [`LastFreed::CLOSED`] (the channel is
/// being released: nothing is kept any more), or a packet object made by
/// `KBox::into_raw` that the slot alone owns.
pub(super) struct LastFreed(AtomicPtr<CPacket>);

impl LastFreed {
    /// The value of a closed slot: never a live packet object's address
    /// (a dangling, well-aligned pointer).
    const CLOSED: *mut CPacket = core::ptr::dangling_mut::<CPacket>();

    pub(super) const fn new() -> Self {
        // INVARIANT: empty.
        Self(AtomicPtr::new(core::ptr::null_mut()))
    }

    /// Takes the kept packet object, if there is one.
    fn take(&self) -> Option<KBox<CPacket>> {
        let p = self.0.load(Ordering::Acquire);
        if p.is_null() || p == Self::CLOSED {
            return None;
        }
        // Another taker (or `close`) may have emptied the slot since: the
        // exchange tells, and only the winner owns `p`.
        self.0
            .compare_exchange(
                p,
                core::ptr::null_mut(),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .ok()?;
        // SAFETY: the slot owned `p`, a `KBox::into_raw` packet object
        // (invariants), and gave it to this caller alone.
        Some(unsafe { KBox::from_raw(p) })
    }

    /// Keeps `b` if the slot is empty; gives it back otherwise.
    fn put(&self, b: KBox<CPacket>) -> core::result::Result<(), KBox<CPacket>> {
        let p = KBox::into_raw(b);
        match self.0.compare_exchange(
            core::ptr::null_mut(),
            p,
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            // INVARIANT: the slot owns `p` now.
            Ok(_) => Ok(()),
            // SAFETY: `p` was not stored: it is still this caller's box.
            Err(_) => Err(unsafe { KBox::from_raw(p) }),
        }
    }

    /// Closes the slot (the channel is released): returns what it kept;
    /// nothing is kept from now on.
    pub(super) fn close(&self) -> Option<KBox<CPacket>> {
        let p = self.0.swap(Self::CLOSED, Ordering::AcqRel);
        if p.is_null() || p == Self::CLOSED {
            return None;
        }
        // SAFETY: the slot owned `p` (invariants) and let go of it.
        Some(unsafe { KBox::from_raw(p) })
    }
}

/// Frees a packet object (its record, if handles are checked, is gone
/// already).
///
/// # Safety
///
/// `p` is a live packet object, not used again.
pub(super) unsafe fn free_packet(p: *mut CPacket) {
    // SAFETY: `p` is live; `in_caller_memory` tells how it was made.
    unsafe {
        if (*p).in_caller_memory {
            core::ptr::drop_in_place(p);
            return;
        }
    }
    // SAFETY: a kmalloc'ed packet object is `KBox::into_raw` of its box.
    let b = unsafe { KBox::from_raw(p) };
    let handle = b.handle.clone();
    let Err(b) = handle.last_freed.put(b) else {
        return;
    };
    let rejected = match &mut *handle.lookaside.lock() {
        Some(kept) => kept.push_within_capacity(b).err().map(|e| e.0),
        None => Some(b),
    };
    // Freed without the lock.
    drop(rejected);
}

/// The routine of a C packet object's send: `word` is the packet object.
/// A plain function, so that a send allocates nothing.
pub(super) fn packet_done(word: usize, status: Result, data: &[u8]) {
    let p = word as *mut CPacket;
    // The driver's again (or freed below).
    checked::change(word, Kind::PacketInFlight, Kind::Packet);
    // SAFETY: `word` is the packet object of the send (see
    // `kmcl_packet_send`), which belongs to kmcl until this runs, once.
    let (routine, alive) = unsafe { ((*p).routine, (*p).handle.alive()) };
    match (routine, alive) {
        // SAFETY: the driver's routine gets its packet back, with the
        // completion payload for the duration of the call.
        (Some(f), true) => unsafe {
            f(
                p.cast(),
                errno(status),
                data.as_ptr().cast(),
                data.len() as u32,
            )
        },
        // KMCL's default: a packet without a routine is freed once its
        // transaction is over; so is every packet of a module gone.
        _ => {
            checked::remove(word, Kind::Packet);
            // SAFETY: nobody else uses it any more.
            unsafe { free_packet(p) }
        }
    }
}

/// The packet object behind a handle.
///
/// # Safety
///
/// `packet` is NULL or a live packet handle, used by one thread at a time
/// while not in flight.
pub(super) unsafe fn packet_ref<'a>(packet: *mut KmclPacket) -> Option<&'a CPacket> {
    if packet.is_null() {
        return None;
    }
    if !checked::is_packet(packet as usize) {
        crate::sys::context::refuse_handle(
            c"a kmcl packet function",
            packet as usize,
            c"a stale, unknown or wrong-kind packet",
        );
        return None;
    }
    // SAFETY: the caller's promise (and, checking handles, the record).
    unsafe { packet.cast::<CPacket>().as_ref() }
}

/// Whether `function` refuses `packet`, which is not a packet object its
/// driver holds (`ok` false: the checked-handle record says so); logs it.
fn refused(ok: bool, function: &'static kernel::str::CStr, packet: *mut KmclPacket) -> bool {
    if !ok {
        crate::sys::context::refuse_handle(
            function,
            packet as usize,
            c"a stale (freed already), unknown or in-flight packet",
        );
    }
    !ok
}

/// Takes `packet` for `function`'s send: it must be a packet object its
/// driver holds, not one in flight, which it then is. `None` (and one
/// rate-limited line) otherwise.
///
/// # Safety
///
/// As [`packet_ref`].
unsafe fn take_for_send<'a>(
    packet: *mut KmclPacket,
    function: &'static kernel::str::CStr,
) -> Option<&'a CPacket> {
    if packet.is_null() {
        return None;
    }
    if refused(
        checked::change(packet as usize, Kind::Packet, Kind::PacketInFlight),
        function,
        packet,
    ) {
        return None;
    }
    // SAFETY: as `packet_ref`.
    unsafe { packet_ref(packet) }
}

/// The end of a send of `packet` with `result`: a failed send leaves the
/// packet with its driver (no routine will run).
fn end_send(packet: *mut KmclPacket, result: Result) -> c_int {
    if result.is_err() {
        checked::change(packet as usize, Kind::PacketInFlight, Kind::Packet);
    }
    errno(result)
}

/// `VmbChannelSizeofPacket`: the bytes `kmcl_packet_initialize` needs.
///
/// # Safety
///
/// None beyond the C signature: the channel is not used.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_sizeof_packet(_channel: *mut KmclChannel) -> u32 {
    core::mem::size_of::<CPacket>() as u32
}

/// `VmbPacketAllocate`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_allocate(channel: *mut KmclChannel) -> *mut KmclPacket {
    // SAFETY: the caller's promise.
    let Some(h) = (unsafe { handle(channel) }) else {
        return core::ptr::null_mut();
    };
    let kept = h
        .last_freed
        .take()
        .or_else(|| Option::as_mut(&mut *h.lookaside.lock()).and_then(|k| k.pop()));
    let b = match kept {
        Some(mut b) => {
            b.pointer.store(0, Ordering::Relaxed);
            b.routine = None;
            b.restored.store(0, Ordering::Relaxed);
            b
        }
        None => {
            let p = CPacket {
                handle: h.into(),
                pointer: AtomicUsize::new(0),
                routine: None,
                in_caller_memory: false,
                restored: AtomicUsize::new(0),
            };
            match KBox::new(p, gfp()) {
                Ok(b) => b,
                Err(_) => return core::ptr::null_mut(),
            }
        }
    };
    let raw = KBox::into_raw(b);
    if checked::insert(raw as usize, Kind::Packet).is_err() {
        // SAFETY: made above, never handed out.
        unsafe { free_packet(raw) };
        return core::ptr::null_mut();
    }
    raw.cast()
}

/// `VmbPacketInitialize`: makes a packet object in `buffer`, which must be
/// at least `kmcl_channel_sizeof_packet()` bytes and pointer-aligned.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `buffer` is NULL or `size` writable
/// bytes that stay allocated until the packet is freed; `packet` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_initialize(
    channel: *mut KmclChannel,
    buffer: *mut c_void,
    size: u32,
    packet: *mut *mut KmclPacket,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(h) = (unsafe { handle(channel) }) else {
        return EINVAL.to_errno();
    };
    let fits = (size as usize) >= core::mem::size_of::<CPacket>();
    let aligned = (buffer as usize) & (core::mem::align_of::<CPacket>() - 1) == 0;
    if buffer.is_null() || packet.is_null() || !fits || !aligned {
        return EINVAL.to_errno();
    }
    let p = buffer.cast::<CPacket>();
    if checked::insert(p as usize, Kind::Packet).is_err() {
        return ENOMEM.to_errno();
    }
    // SAFETY: checked: large enough and aligned; writable (caller).
    unsafe {
        p.write(CPacket {
            handle: h.into(),
            pointer: AtomicUsize::new(0),
            routine: None,
            in_caller_memory: true,
            restored: AtomicUsize::new(0),
        });
        *packet = p.cast();
    }
    0
}

/// `VmbPacketFree`: also ends a packet made by `kmcl_packet_initialize`
/// (its memory stays the driver's).
///
/// # Safety
///
/// `packet` is NULL or a live packet handle, not in flight, not used again.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_free(packet: *mut KmclPacket) {
    if packet.is_null() {
        return;
    }
    if refused(
        checked::remove(packet as usize, Kind::Packet),
        c"kmcl_packet_free",
        packet,
    ) {
        return;
    }
    // SAFETY: the caller's promise (and, checking handles, the record).
    unsafe { free_packet(packet.cast()) };
}

/// `VmbPacketGetChannel`.
///
/// # Safety
///
/// `packet` is NULL or a live packet handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_get_channel(packet: *mut KmclPacket) -> *mut KmclChannel {
    // SAFETY: the caller's promise.
    match unsafe { packet_ref(packet) } {
        Some(p) => p.handle.as_raw(),
        None => core::ptr::null_mut(),
    }
}

/// `VmbPacketGetPointer`.
///
/// # Safety
///
/// `packet` is NULL or a live packet handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_get_pointer(packet: *mut KmclPacket) -> *mut c_void {
    // SAFETY: the caller's promise.
    match unsafe { packet_ref(packet) } {
        Some(p) => p.pointer.load(Ordering::Relaxed) as *mut c_void,
        None => core::ptr::null_mut(),
    }
}

/// `VmbPacketSetPointer`.
///
/// # Safety
///
/// `packet` is NULL or a live packet handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_set_pointer(packet: *mut KmclPacket, pointer: *mut c_void) {
    // SAFETY: the caller's promise.
    if let Some(p) = unsafe { packet_ref(packet) } {
        p.pointer.store(pointer as usize, Ordering::Relaxed);
    }
}

/// `VmbPacketSetCompletionRoutine`.
///
/// # Safety
///
/// `packet` is NULL or a live packet handle, not in flight.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_set_completion_routine(
    packet: *mut KmclPacket,
    routine: EvtPacketCompletion,
) {
    if packet.is_null() {
        return;
    }
    if refused(
        checked::is(packet as usize, Kind::Packet),
        c"kmcl_packet_set_completion_routine",
        packet,
    ) {
        return;
    }
    // SAFETY: the caller's promise: not in flight, so kmcl does not read
    // the packet concurrently.
    if let Some(p) = unsafe { packet.cast::<CPacket>().as_mut() } {
        p.routine = routine;
    }
}

/// Flags `kmcl_packet_send` knows.
pub(super) const FORMAT_FLAGS: u32 = abi::FORMAT_FLAG_WAIT_FOR_COMPLETION
    | abi::FORMAT_FLAG_FORCE_MDL_LENGTH
    | abi::FORMAT_FLAG_PAGED_BUFFER;

/// `VmbPacketSend` (in-band, or GPA-direct with an MDL). On an
/// error the routine does not run and the packet is the driver's again.
///
/// # Safety
///
/// `packet` is NULL or a live packet handle, not in flight; `buffer` holds
/// `length` bytes.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_send(
    packet: *mut KmclPacket,
    buffer: *const c_void,
    length: u32,
    mdl: *const KmclMdl,
    flags: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(p) = (unsafe { take_for_send(packet, c"kmcl_packet_send") }) else {
        return EINVAL.to_errno();
    };
    let sent = (|| -> Result {
        if flags & !FORMAT_FLAGS != 0 {
            return Err(EINVAL);
        }
        // SAFETY: the caller's promise; the bytes are copied into the ring
        // (or the send queue) before this returns.
        let payload = unsafe { bytes(buffer, length) }?;
        let wait = flags & abi::FORMAT_FLAG_WAIT_FOR_COMPLETION != 0;
        let routine = Routine::Function(packet_done, packet as usize);
        if !mdl.is_null() {
            needs_wait(flags)?;
            // SAFETY: the caller's promise (a readable MDL whose pages stay
            // valid until the routine runs).
            let pages = unsafe { mdl_external(mdl, 0, 0, false) }?;
            return p.handle.channel.send_external(payload, pages, routine);
        }
        p.handle.channel.send(payload, wait, routine)
    })();
    end_send(packet, sent)
}

/// `kmcl_channel_post` (kmcl's own): an in-band packet without a packet
/// object, a completion request or a routine; written to the ring or
/// queued as `kmcl_packet_send` queues. Any context.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `buffer` holds `length` bytes.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_post(
    channel: *mut KmclChannel,
    buffer: *const c_void,
    length: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(h) = (unsafe { handle(channel) }) else {
        return EINVAL.to_errno();
    };
    // SAFETY: the caller's promise; the bytes are copied into the ring (or
    // the send queue) before this returns.
    let sent = unsafe { bytes(buffer, length) }.and_then(|payload| h.channel.post_packet(payload));
    errno(sent)
}

/// External data must be sent with a completion request (KMCL: its pages
/// are the sender's again only once the other endpoint completed it).
pub(super) fn needs_wait(flags: u32) -> Result {
    if flags & abi::FORMAT_FLAG_WAIT_FOR_COMPLETION == 0 {
        return Err(EINVAL);
    }
    Ok(())
}

/// The external data of `length` bytes (0: to the end) from `offset` of
/// the data the MDL chain at `mdl` describes, laid end to end: one range
/// per MDL it touches. `force` (`VMBUS_CHANNEL_FORMAT_FLAG_FORCE_MDL_
/// LENGTH`): only the first MDL, as KMCL says, see [`mdl_pages`]. A chain
/// longer than [`MAX_EXTERNAL_RANGES`] (or a loop), or an MDL without
/// data in it, is `-EINVAL`.
///
/// # Safety
///
/// Every MDL of the chain is as [`mdl_pages`] requires.
pub(super) unsafe fn mdl_external(
    mdl: *const KmclMdl,
    offset: u32,
    length: u32,
    force: bool,
) -> Result<External> {
    // SAFETY: readable (the caller's promise).
    if force || unsafe { (*mdl).next }.is_null() {
        // SAFETY: the caller's promise.
        return External::one(unsafe { mdl_pages(mdl, offset, length, force) }?);
    }
    let mut chain = KVec::new();
    let mut total = 0u64;
    let mut m = mdl;
    while !m.is_null() {
        if chain.len() == MAX_EXTERNAL_RANGES {
            return Err(EINVAL);
        }
        // SAFETY: an MDL of the chain (the caller's promise).
        let (len, next) = unsafe { ((*m).length, (*m).next) };
        if len == 0 {
            return Err(EINVAL);
        }
        total += u64::from(len);
        chain.push((m, u64::from(len)), GFP_ATOMIC)?;
        m = next;
    }
    let from = u64::from(offset);
    let to = if length == 0 {
        total
    } else {
        from + u64::from(length)
    };
    if from >= total || to > total {
        return Err(EINVAL);
    }
    let mut ranges = KVec::with_capacity(chain.len(), GFP_ATOMIC)?;
    let mut start = 0u64;
    for (m, len) in chain {
        let (a, b) = (from.max(start), to.min(start + len));
        if a < b {
            // SAFETY: an MDL of the chain; the piece is inside its data.
            let pages = unsafe { mdl_pages(m, (a - start) as u32, (b - a) as u32, false) }?;
            ranges.push(pages, GFP_ATOMIC)?;
        }
        start += len;
    }
    External::new(ranges)
}

/// The pages of `length` bytes (0: to the end) from `offset` of the data
/// one MDL (`mdl`, its `next` ignored) describes.  `force` (`VMBUS_CHANNEL_FORMAT_FLAG_FORCE_MDL_LENGTH`):
/// `length` may go past the MDL's byte count up to the end of its last
/// page (KMCL: "only rounding up to a page boundary").
///
/// # Safety
///
/// `mdl` is a readable `struct kmcl_mdl` whose `pages` holds `nr_pages`
/// valid page pointers, and those pages stay allocated as long as the
/// result is used.
pub(super) unsafe fn mdl_pages(
    mdl: *const KmclMdl,
    offset: u32,
    length: u32,
    force: bool,
) -> Result<GpadlPages> {
    // SAFETY: readable (the caller's promise).
    let m = unsafe { &*mdl };
    if m.pages.is_null() || m.length == 0 || offset >= m.length {
        return Err(EINVAL);
    }
    let length = if length == 0 {
        m.length - offset
    } else {
        length
    };
    let page = kernel::page::PAGE_SIZE as u64;
    let limit = if force {
        // The MDL's end rounded up to its page, counted from its start.
        (u64::from(m.offset) + u64::from(m.length)).div_ceil(page) * page - u64::from(m.offset)
    } else {
        u64::from(m.length)
    };
    if u64::from(offset) + u64::from(length) > limit {
        return Err(EINVAL);
    }
    let start = m.offset as usize + offset as usize;
    let first = start >> kernel::page::PAGE_SHIFT;
    let in_page = start & (kernel::page::PAGE_SIZE - 1);
    // SAFETY: `pages` holds `nr_pages` pointers (the caller's promise).
    let all = unsafe {
        core::slice::from_raw_parts(
            m.pages.cast::<*mut crate::shmem::Page>(),
            m.nr_pages as usize,
        )
    };
    let from_first = all.get(first..).ok_or(EINVAL)?;
    // SAFETY: valid pages that stay (the caller's promise); the range is
    // checked against the slice.
    unsafe { GpadlPages::from_pages(from_first, in_page, length as usize) }
}

/// `VmbChannelSendSynchronousRequest` (in-band). `timeout_ms` NULL waits
/// for ever; `*reply_length` is the reply buffer's size on entry and the
/// reply's on return. Process context only.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `buffer` holds `length` bytes;
/// `reply` holds `*reply_length` writable bytes; `reply_length` and
/// `timeout_ms` are NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_send_synchronous_request(
    channel: *mut KmclChannel,
    buffer: *const c_void,
    length: u32,
    mdl: *const KmclMdl,
    flags: u32,
    reply: *mut c_void,
    reply_length: *mut u32,
    timeout_ms: *const u32,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(c"kmcl_channel_send_synchronous_request", channel, |h| {
            if flags & !FORMAT_FLAGS != 0 {
                return Err(EINVAL);
            }
            let ext = if mdl.is_null() {
                None
            } else {
                // SAFETY: the caller's promise (a readable MDL whose pages
                // stay valid until this returns).
                Some(mdl_external(mdl, 0, 0, false)?)
            };
            let payload = bytes(buffer, length)?;
            let cap = if reply_length.is_null() {
                0
            } else {
                *reply_length
            };
            let out: &mut [u8] = if cap == 0 {
                &mut []
            } else if reply.is_null() {
                return Err(EINVAL);
            } else {
                core::slice::from_raw_parts_mut(reply.cast::<u8>(), cap as usize)
            };
            let timeout = timeout_ms.as_ref().copied();
            let n = match ext {
                Some(pages) => h.channel.send_sync_external(payload, pages, out, timeout)?,
                None => h.channel.send_sync(payload, out, timeout)?,
            };
            if !reply_length.is_null() {
                *reply_length = n as u32;
            }
            Ok(())
        })
    }
}

/// `VmbPacketSendWithExternalMdl`: `mdl_length` bytes (0: to the end)
/// from `mdl_offset` of `mdl` as external data. A completion must be
/// requested.
///
/// # Safety
///
/// As [`kmcl_packet_send`]; `mdl` is NULL or a readable `struct kmcl_mdl`
/// whose pages stay valid until the routine runs.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_send_with_external_mdl(
    packet: *mut KmclPacket,
    buffer: *const c_void,
    length: u32,
    mdl: *const KmclMdl,
    mdl_offset: u32,
    mdl_length: u32,
    flags: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(p) = (unsafe { take_for_send(packet, c"kmcl_packet_send_with_external_mdl") }) else {
        return EINVAL.to_errno();
    };
    let sent = (|| -> Result {
        if flags & !FORMAT_FLAGS != 0 || mdl.is_null() {
            return Err(EINVAL);
        }
        needs_wait(flags)?;
        // SAFETY: the caller's promise.
        let payload = unsafe { bytes(buffer, length) }?;
        let force = flags & abi::FORMAT_FLAG_FORCE_MDL_LENGTH != 0;
        // SAFETY: the caller's promise.
        let pages = unsafe { mdl_external(mdl, mdl_offset, mdl_length, force) }?;
        let routine = Routine::Function(packet_done, packet as usize);
        p.handle.channel.send_external(payload, pages, routine)
    })();
    end_send(packet, sent)
}

/// kmcl's `kmcl_packet_send_with_page_buffers`: `payload` in the ring and
/// one GPA range per entry of `pb`. On an error the routine does not run
/// and the packet is the driver's again.
///
/// # Safety
///
/// `packet` is NULL or a live packet handle, not in flight; `pb` holds
/// `count` entries whose pages stay allocated until the routine runs;
/// `buffer` holds `length` bytes.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_send_with_page_buffers(
    packet: *mut KmclPacket,
    buffer: *const c_void,
    length: u32,
    pb: *const abi::KmclPageBuffer,
    count: u32,
    flags: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(p) = (unsafe { take_for_send(packet, c"kmcl_packet_send_with_page_buffers") }) else {
        return EINVAL.to_errno();
    };
    let sent = (|| -> Result {
        if flags & !FORMAT_FLAGS != 0 || pb.is_null() || count == 0 {
            return Err(EINVAL);
        }
        if count as usize > MAX_EXTERNAL_RANGES {
            return Err(EINVAL);
        }
        needs_wait(flags)?;
        // SAFETY: the caller's promise.
        let payload = unsafe { bytes(buffer, length) }?;
        // SAFETY: `pb` holds `count` entries (the caller's promise).
        let list = unsafe { core::slice::from_raw_parts(pb, count as usize) };
        let mut ranges = KVec::with_capacity(list.len(), GFP_ATOMIC)?;
        for b in list {
            // SAFETY: the page stays until the routine runs (the caller's
            // promise); the glue checks the frame.
            let pages = unsafe { GpadlPages::from_pfn(b.pfn, b.offset as usize, b.len as usize) }?;
            ranges.push(pages, GFP_ATOMIC)?;
        }
        let routine = Routine::Function(packet_done, packet as usize);
        p.handle
            .channel
            .send_external(payload, External::new(ranges)?, routine)
    })();
    end_send(packet, sent)
}

/// kmcl's `kmcl_packet_send_with_transfer_pages`: `payload` in the ring,
/// naming `ranges` of the other endpoint's transfer-page set `set_id`. On
/// an error the routine does not run and the packet is the driver's again.
///
/// # Safety
///
/// `packet` is NULL or a live packet handle, not in flight; `ranges` holds
/// `count` ranges; `buffer` holds `length` bytes.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_send_with_transfer_pages(
    packet: *mut KmclPacket,
    set_id: u16,
    ranges: *const abi::KmclTransferRange,
    count: u32,
    buffer: *const c_void,
    length: u32,
    flags: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(p) = (unsafe { take_for_send(packet, c"kmcl_packet_send_with_transfer_pages") })
    else {
        return EINVAL.to_errno();
    };
    let sent = (|| -> Result {
        if flags & !abi::FORMAT_FLAG_WAIT_FOR_COMPLETION != 0
            || ranges.is_null()
            || count == 0
            || count > crate::engine::datapath::MAX_TRANSFER_RANGES
        {
            return Err(EINVAL);
        }
        // SAFETY: the caller's promise.
        let payload = unsafe { bytes(buffer, length) }?;
        // SAFETY: `ranges` holds `count` ranges (the caller's promise),
        // read once here into kmcl's own list.
        let given = unsafe { core::slice::from_raw_parts(ranges, count as usize) };
        let mut list = KVec::with_capacity(given.len(), GFP_ATOMIC)?;
        for r in given {
            list.push(
                crate::protocol::xfer::XferRange {
                    offset: r.byte_offset,
                    len: r.byte_count,
                },
                GFP_ATOMIC,
            )?;
        }
        let wait = flags & abi::FORMAT_FLAG_WAIT_FOR_COMPLETION != 0;
        let routine = Routine::Function(packet_done, packet as usize);
        p.handle
            .channel
            .send_transfer_pages(set_id, &list, payload, wait, routine)
    })();
    end_send(packet, sent)
}

/// `VmbPacketSendWithExternalPfns`: the whole pages `pfns` as external
/// data. A completion must be requested.
///
/// # Safety
///
/// As [`kmcl_packet_send`]; `pfns` holds `pfn_count` page frame numbers of
/// memory that stays allocated until the routine runs.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_send_with_external_pfns(
    packet: *mut KmclPacket,
    buffer: *const c_void,
    length: u32,
    pfns: *const u64,
    pfn_count: u32,
    flags: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(p) = (unsafe { take_for_send(packet, c"kmcl_packet_send_with_external_pfns") }) else {
        return EINVAL.to_errno();
    };
    let sent = (|| -> Result {
        if flags & !FORMAT_FLAGS != 0 || pfns.is_null() || pfn_count == 0 {
            return Err(EINVAL);
        }
        needs_wait(flags)?;
        // SAFETY: the caller's promise.
        let payload = unsafe { bytes(buffer, length) }?;
        // SAFETY: `pfns` holds `pfn_count` numbers (the caller's promise).
        let list = unsafe { core::slice::from_raw_parts(pfns, pfn_count as usize) };
        // SAFETY: the memory stays until the routine runs (the caller's
        // promise); the glue checks each frame.
        let pages = External::one(unsafe { GpadlPages::from_pfns(list) }?)?;
        let routine = Routine::Function(packet_done, packet as usize);
        p.handle.channel.send_external(payload, pages, routine)
    })();
    end_send(packet, sent)
}

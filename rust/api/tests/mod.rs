// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of the exported C ABI, called as another module would: by
//! the exported functions and through the interface tables. Each file is a
//! suite; what they share is here.

mod bad_input;
mod connect;
mod context;
mod external;
mod layout;
mod liveupdate;
mod memory;
mod packets;
mod states;
mod subchannels;
mod teardown;
mod transfer;
mod wrapper;

use core::{
    ffi::{
        c_int,
        c_void, //
    },
    sync::atomic::{
        AtomicI32,
        AtomicU32,
        AtomicU64,
        AtomicUsize,
        Ordering, //
    },
};

use kernel::{
    prelude::*,
    time::{
        delay::fsleep,
        Delta, //
    },
};

use super::{
    abi::{
        ClientInterfaceV1,
        Guid,
        KmclChannel,
        KmclIncoming,
        KmclMdl,
        KmclPacket,
        KmclPageBuffer,
        KmclTransferRange,
        Module,
        ServerInterfaceV1,
        ServerOnlyMethods,
        StateCallbacks,
        CLIENT_INTERFACE,
        FORMAT_FLAG_WAIT_FOR_COMPLETION,
        GPADL_FLAG_READ_ONLY,
        PROCESS_PACKET_FLAG_EXTERNAL_DATA,
        PROCESS_PACKET_FLAG_TRANSFER_PAGES,
        SERVER_INTERFACE,
        STATE_CALLBACKS_VERSION,
        TARGET_PROCESSOR_NONE,
        TRANSPORT_AUTO,
        TRANSPORT_HOST, //
    },
    channels::*,
    gpadl::*,
    handles::*,
    incoming::*,
    lifecycle::*,
    outgoing::*,
    save::*,
    settings::*,
    tables::*,
    *,
};

/// Polls `what` every 10 ms for up to 30 seconds (C-ABI tests wait for
/// whole pairs of modules' worth of work).
fn wait_until(what: impl FnMut() -> bool) -> bool {
    crate::engine::testing::wait_for(30, what)
}

/// Allocates a channel with no owner.
fn allocate(server: bool) -> *mut KmclChannel {
    let mut ch = core::ptr::null_mut();
    // SAFETY: `ch` is writable.
    let rc = unsafe { kmcl_channel_allocate(core::ptr::null_mut(), server, &mut ch) };
    assert_eq!(rc, 0);
    assert!(!ch.is_null());
    ch
}

// The echo pair below talks through these (one test at a time).
static SERVER_PACKETS: AtomicU32 = AtomicU32::new(0);

static CLOSED: AtomicU32 = AtomicU32::new(0);

/// Server: echoes each packet back as its completion payload.
///
/// # Safety
///
/// Called by kmcl as `EvtVmbChannelProcessPacket`.
unsafe extern "C" fn echo(
    _ch: *mut KmclChannel,
    packet: *mut KmclIncoming,
    buffer: *const c_void,
    length: u32,
    _flags: u32,
) {
    SERVER_PACKETS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the packet and its payload are live until completed.
    unsafe { kmcl_channel_packet_complete(packet, buffer, length) };
}

const TYPE: Guid = Guid { b: [0x6c; 16] };

const INSTANCE: Guid = Guid { b: [0x17; 16] };

/// Counts `EvtChannelClosed`.
///
/// # Safety
///
/// Called by kmcl.
unsafe extern "C" fn closed(_ch: *mut KmclChannel) {
    CLOSED.fetch_add(1, Ordering::SeqCst);
}

/// A C-API server and client on `TYPE`/`INSTANCE`, connected.
fn echo_pair(owner: *mut Module) -> (*mut KmclChannel, *mut KmclChannel) {
    pair_owned(owner, owner, echo)
}

/// The C type of a process-packet callback.
type Process = unsafe extern "C" fn(*mut KmclChannel, *mut KmclIncoming, *const c_void, u32, u32);

/// A C-API server (of module `server_owner`, delivering to `process`)
/// and client (of `client_owner`), connected.
fn pair_owned(
    server_owner: *mut Module,
    client_owner: *mut Module,
    process: Process,
) -> (*mut KmclChannel, *mut KmclChannel) {
    let (mut server, mut client) = (core::ptr::null_mut(), core::ptr::null_mut());
    let mut cb = StateCallbacks::new();
    cb.closed = Some(closed);
    // SAFETY: all handles are live; structures readable.
    unsafe {
        assert_eq!(kmcl_channel_allocate(server_owner, true, &mut server), 0);
        assert_eq!(kmcl_channel_allocate(client_owner, false, &mut client), 0);
        assert_eq!(
            kmcl_server_channel_init_set_target_interface_id(server, &TYPE, &INSTANCE),
            0
        );
        assert_eq!(
            kmcl_channel_init_set_process_packet_callbacks(server, Some(process), None),
            0
        );
        assert_eq!(
            kmcl_channel_init_set_maximum_external_data(server, 1 << 20, 1),
            0
        );
        assert_eq!(
            kmcl_client_channel_init_set_target_pnp(client, &TYPE, &INSTANCE, None),
            0
        );
        assert_eq!(kmcl_channel_init_set_state_change_callbacks(client, &cb), 0);
        assert_eq!(
            kmcl_channel_init_set_friendly_name(client, c"abi-test".as_char_ptr()),
            0
        );
        assert_eq!(kmcl_channel_enable(server), 0);
        assert_eq!(kmcl_channel_start(server), 0);
        assert_eq!(kmcl_channel_enable(client), 0);
        let c = handle(client).map(|h| h.channel.clone());
        let s = handle(server).map(|h| h.channel.clone());
        let (c, s) = (c.unwrap(), s.unwrap());
        assert!(wait_until(|| c.is_running() && s.is_running()));
        // A second enable is refused; init setters too once enabled.
        assert_eq!(kmcl_channel_enable(client), -16);
        assert_eq!(kmcl_channel_init_set_maximum_packet_size(client, 64), -16);
    }
    (server, client)
}

/// Incoming packet handles the `hold` server keeps.
static HELD: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];

static HELD_COUNT: AtomicUsize = AtomicUsize::new(0);

static DONE_OK: AtomicU32 = AtomicU32::new(0);

static DONE_ERR: AtomicU32 = AtomicU32::new(0);

/// Server: keeps the first eight packets uncompleted.
///
/// # Safety
///
/// Called by kmcl as `EvtVmbChannelProcessPacket`.
unsafe extern "C" fn hold(
    _ch: *mut KmclChannel,
    packet: *mut KmclIncoming,
    _buffer: *const c_void,
    _length: u32,
    _flags: u32,
) {
    let n = HELD_COUNT.fetch_add(1, Ordering::SeqCst);
    match HELD.get(n) {
        Some(slot) => slot.store(packet as usize, Ordering::SeqCst),
        // SAFETY: a live handle.
        None => unsafe {
            kmcl_channel_packet_complete(packet, core::ptr::null(), 0);
        },
    }
}

/// Client: counts its packets' outcomes and frees them.
///
/// # Safety
///
/// Called by kmcl as `EvtVmbPacketCompletionRoutine`.
unsafe extern "C" fn count_done(
    packet: *mut KmclPacket,
    status: c_int,
    _buffer: *const c_void,
    _length: u32,
) {
    let c = if status == 0 { &DONE_OK } else { &DONE_ERR };
    c.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the packet is ours again.
    unsafe { kmcl_packet_free(packet) };
}

/// Sends `n` packets from `client` with a completion request and waits
/// until the `hold` server has them.
fn send_held(client: *mut KmclChannel, n: usize) {
    HELD_COUNT.store(0, Ordering::SeqCst);
    send_counted(client, n, b"hold");
    assert!(wait_until(|| HELD_COUNT.load(Ordering::SeqCst) == n));
}

/// Sends `n` packets of `payload` from `client` with a completion
/// request, their outcomes counted by `count_done` (counts reset).
fn send_counted(client: *mut KmclChannel, n: usize, payload: &[u8]) {
    DONE_OK.store(0, Ordering::SeqCst);
    DONE_ERR.store(0, Ordering::SeqCst);
    for _ in 0..n {
        // SAFETY: a live channel; the payload is copied.
        unsafe {
            let p = kmcl_packet_allocate(client);
            assert!(!p.is_null());
            kmcl_packet_set_completion_routine(p, Some(count_done));
            let wait = FORMAT_FLAG_WAIT_FOR_COMPLETION;
            let len = payload.len() as u32;
            assert_eq!(
                kmcl_packet_send(p, payload.as_ptr().cast(), len, core::ptr::null(), wait),
                0
            );
        }
    }
}

/// Disables (the client first) and cleans up a pair of live handles.
fn close_pair(server: *mut KmclChannel, client: *mut KmclChannel) {
    // SAFETY: live handles (the caller's), cleaned up once here.
    unsafe {
        assert_eq!(kmcl_channel_disable(client), 0);
        assert_eq!(kmcl_channel_disable(server), 0);
        kmcl_channel_cleanup(client);
        kmcl_channel_cleanup(server);
    }
}

/// Whether `ch` is running (connected and started).
fn running(ch: *mut KmclChannel) -> bool {
    // SAFETY: `ch` is a live handle.
    unsafe {
        with_channel(ch, |h| {
            if h.channel.is_running() {
                Ok(())
            } else {
                Err(EAGAIN)
            }
        }) == 0
    }
}

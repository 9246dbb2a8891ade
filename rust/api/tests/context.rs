// SPDX-License-Identifier: GPL-2.0

//! Calling context: functions that may sleep refuse atomic callers, a
//! channel's own state callbacks get an error instead of a deadlock, and a
//! synchronous request completes from the state callbacks KMCL meant for
//! it and on a paused channel.

use kernel::prelude::*;

#[kunit_tests(kmcl_abi_context)]
mod cases {
    use super::super::*;
    use crate::sys::context::with_bh_disabled;

    const EINVAL: c_int = -22;
    const EDEADLK: c_int = -35;

    #[test]
    fn every_sleeping_function_refuses_atomic_callers() {
        let client = allocate(false);
        let server = allocate(true);
        let mut reply = [0u8; 8];
        let mut reply_len = 8u32;
        let mut gpadl = 0u32;
        let mut buf = [0u8; 64];
        let mut mdl_out: *mut KmclMdl = core::ptr::null_mut();
        let (mut filled, mut required) = (0u32, 0u32);
        let mut kernel_handle: *mut c_void = core::ptr::null_mut();
        let mut bus = 0u64;
        let mut len = 0u32;
        let mut allocated: *mut KmclChannel = core::ptr::null_mut();
        let key = Guid { b: [0x5a; 16] };
        let cb = StateCallbacks::new();
        let page = buf.as_mut_ptr();
        let mdl = KmclMdl {
            pages: core::ptr::null_mut(),
            nr_pages: 0,
            offset: 0,
            length: 0,
            next: core::ptr::null_mut(),
        };
        // SAFETY: both channels are live; every pointer is valid for the
        // call (none is used: each call is refused before).
        let got = with_bh_disabled(|| unsafe {
            [
                // Lifecycle and cleanup-time calls.
                kmcl_channel_allocate(core::ptr::null_mut(), false, &mut allocated),
                kmcl_channel_enable(client),
                kmcl_channel_pause(client),
                kmcl_channel_start(client),
                kmcl_channel_disable(client),
                // Init-time settings.
                kmcl_channel_init_set_client_context_size(client, 8),
                kmcl_channel_init_set_flags(client, 0),
                kmcl_channel_init_set_friendly_name(client, c"atomic".as_char_ptr()),
                kmcl_channel_init_set_maximum_external_data(client, 4096, 1),
                kmcl_channel_init_set_maximum_packet_size(client, 128),
                kmcl_channel_init_set_process_packet_callbacks(client, Some(echo), None),
                kmcl_channel_init_set_state_change_callbacks(client, &cb),
                kmcl_channel_init_set_target_processor(client, 0),
                kmcl_channel_set_incoming_processing_at_passive(client, true),
                kmcl_client_channel_init_set_ring_buffer_page_count(client, 4, 4),
                kmcl_client_channel_init_set_target_pnp(client, &TYPE, &INSTANCE, None),
                kmcl_client_channel_init_set_transport(client, TRANSPORT_AUTO),
                kmcl_server_channel_init_set_flags(server, 0),
                kmcl_server_channel_init_set_mmio_megabytes(server, 1, 0),
                kmcl_server_channel_init_set_target_interface_id(server, &TYPE, &INSTANCE),
                kmcl_server_channel_init_set_target_vtl(server, 0),
                kmcl_server_channel_init_set_vmbus_handle(server, core::ptr::null_mut()),
                kmcl_server_channel_init_set_save_restore_packet_callbacks(server, None, None),
                // Packets, GPADLs, save and restore.
                kmcl_channel_send_synchronous_request(
                    client,
                    buf.as_ptr().cast(),
                    8,
                    core::ptr::null(),
                    0,
                    reply.as_mut_ptr().cast(),
                    &mut reply_len,
                    core::ptr::null(),
                ),
                kmcl_channel_create_gpadl_from_buffer(client, 0, page.cast(), 64, &mut gpadl),
                kmcl_channel_create_gpadl_from_mdl(client, 0, &mdl, 0, 0, &mut gpadl),
                kmcl_channel_delete_gpadl(client, 1),
                kmcl_channel_map_gpadl(server, 0, 1, &mut mdl_out),
                kmcl_channel_unmap_gpadl(server, 1),
                kmcl_channel_restore_from_buffer(server, buf.as_ptr().cast(), 64),
                kmcl_channel_save_begin(server),
                kmcl_channel_save_continue(server, page.cast(), 64, &mut filled, &mut required),
                // kmcl's registry.
                kmcl_loopback_vmbus_create(&mut bus),
                kmcl_loopback_vmbus_destroy(1),
                kmcl_convert_vmbus_handle_to_kernel_handle(1, &mut kernel_handle),
                kmcl_stash_put(&key, buf.as_ptr().cast(), 8),
                kmcl_stash_take(&key, page.cast(), 64, &mut len),
            ]
        });
        for (i, rc) in got.iter().enumerate() {
            assert_eq!((i, *rc), (i, EINVAL));
        }
        assert!(allocated.is_null());
        // The two that return nothing: refused too, the channel stays.
        // SAFETY: `server` is live until its cleanup below.
        with_bh_disabled(|| unsafe {
            kmcl_channel_save_end(server);
            kmcl_channel_cleanup(server);
        });
        // Nothing was done: both channels are still disabled and accept
        // their settings.
        // SAFETY: both channels are live; cleaned up once.
        unsafe {
            assert_eq!(kmcl_channel_init_set_maximum_packet_size(client, 128), 0);
            assert_eq!(kmcl_server_channel_init_set_target_vtl(server, 0), 0);
            kmcl_channel_cleanup(client);
            kmcl_channel_cleanup(server);
        }
    }

    // What the client's Opened callback got (one test at a time).
    static OPENED_PAUSE: AtomicI32 = AtomicI32::new(0);
    static OPENED_SETTER: AtomicI32 = AtomicI32::new(0);
    static OPENED_INSTANCE: AtomicU32 = AtomicU32::new(0);
    static OPENED_CALLS: AtomicU32 = AtomicU32::new(0);

    /// Client: calls back into its own channel from Opened.
    ///
    /// # Safety
    ///
    /// Called by kmcl as `EvtChannelOpened`.
    unsafe extern "C" fn opened_calls_back(ch: *mut KmclChannel) -> c_int {
        let mut g = Guid { b: [0; 16] };
        // SAFETY: `ch` is the channel the callback is for; `g` writable.
        unsafe {
            OPENED_PAUSE.store(kmcl_channel_pause(ch), Ordering::SeqCst);
            OPENED_SETTER.store(
                kmcl_channel_init_set_maximum_packet_size(ch, 256),
                Ordering::SeqCst,
            );
            kmcl_channel_get_interface_instance(ch, &mut g);
        }
        OPENED_INSTANCE.store(u32::from(g.b == INSTANCE.b), Ordering::SeqCst);
        OPENED_CALLS.fetch_add(1, Ordering::SeqCst);
        0
    }

    #[test]
    fn a_state_callback_calling_into_its_channel_gets_edeadlk_not_a_deadlock() {
        OPENED_CALLS.store(0, Ordering::SeqCst);
        let (server, _) = echo_pair_server_only();
        let client = allocate(false);
        let mut cb = StateCallbacks::new();
        cb.opened = Some(opened_calls_back);
        // SAFETY: all handles are live; structures readable.
        unsafe {
            assert_eq!(
                kmcl_client_channel_init_set_target_pnp(client, &TYPE, &INSTANCE, None),
                0
            );
            assert_eq!(kmcl_channel_init_set_state_change_callbacks(client, &cb), 0);
            assert_eq!(kmcl_channel_enable(client), 0);
        }
        assert!(wait_until(
            || OPENED_CALLS.load(Ordering::SeqCst) == 1 && running(client)
        ));
        assert_eq!(OPENED_PAUSE.load(Ordering::SeqCst), EDEADLK);
        assert_eq!(OPENED_SETTER.load(Ordering::SeqCst), EDEADLK);
        assert_eq!(OPENED_INSTANCE.load(Ordering::SeqCst), 1);
        close_pair(server, client);
    }

    static PACKET_INSTANCE: AtomicU32 = AtomicU32::new(0);

    /// Server: reads its channel's instance in softirq context, completes.
    ///
    /// # Safety
    ///
    /// Called by kmcl as `EvtVmbChannelProcessPacket`.
    unsafe extern "C" fn instance_in_packet_callback(
        ch: *mut KmclChannel,
        packet: *mut KmclIncoming,
        _buffer: *const c_void,
        _length: u32,
        _flags: u32,
    ) {
        let mut g = Guid { b: [0; 16] };
        // SAFETY: `ch` and `packet` are the live objects of the call.
        unsafe {
            kmcl_channel_get_interface_instance(ch, &mut g);
            kmcl_channel_packet_complete(packet, core::ptr::null(), 0);
        }
        if g.b == INSTANCE.b {
            PACKET_INSTANCE.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_interface_instance_is_read_in_a_packet_callback() {
        PACKET_INSTANCE.store(0, Ordering::SeqCst);
        let (server, client) = pair_owned(
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            instance_in_packet_callback,
        );
        send_counted(client, 4, b"instance");
        assert!(wait_until(|| PACKET_INSTANCE.load(Ordering::SeqCst) == 4));
        close_pair(server, client);
    }

    // What the client's synchronous requests from Opened and Started got:
    // the return code, and whether the reply was the echo.
    static SYNC_OPENED: AtomicI32 = AtomicI32::new(1);
    static SYNC_STARTED: AtomicI32 = AtomicI32::new(1);
    static SYNC_ECHOED: AtomicU32 = AtomicU32::new(0);

    /// A synchronous request of 8 bytes, waiting up to 5 s; the return
    /// code, and whether the reply echoed the request.
    ///
    /// # Safety
    ///
    /// `ch` is a live handle.
    unsafe fn sync_request(ch: *mut KmclChannel, tag: u8) -> (c_int, bool) {
        let request = [tag; 8];
        let mut reply = [0u8; 16];
        let mut len = reply.len() as u32;
        let timeout = 5000u32;
        // SAFETY: `ch` is live (the caller's promise); buffers valid.
        let rc = unsafe {
            kmcl_channel_send_synchronous_request(
                ch,
                request.as_ptr().cast(),
                8,
                core::ptr::null(),
                0,
                reply.as_mut_ptr().cast(),
                &mut len,
                &timeout,
            )
        };
        (rc, len == 8 && reply[..8] == request)
    }

    /// Client: a synchronous request from Opened (protocol negotiation).
    ///
    /// # Safety
    ///
    /// Called by kmcl as `EvtChannelOpened`.
    unsafe extern "C" fn opened_requests(ch: *mut KmclChannel) -> c_int {
        // SAFETY: `ch` is the channel the callback is for.
        let (rc, echoed) = unsafe { sync_request(ch, 0x0e) };
        SYNC_OPENED.store(rc, Ordering::SeqCst);
        SYNC_ECHOED.fetch_add(u32::from(echoed), Ordering::SeqCst);
        0
    }

    /// Client: a synchronous request from Started.
    ///
    /// # Safety
    ///
    /// Called by kmcl as `EvtChannelStarted`.
    unsafe extern "C" fn started_requests(ch: *mut KmclChannel) {
        // SAFETY: `ch` is the channel the callback is for.
        let (rc, echoed) = unsafe { sync_request(ch, 0x57) };
        SYNC_STARTED.store(rc, Ordering::SeqCst);
        SYNC_ECHOED.fetch_add(u32::from(echoed), Ordering::SeqCst);
    }

    #[test]
    fn synchronous_requests_from_opened_and_started_complete() {
        SYNC_OPENED.store(1, Ordering::SeqCst);
        SYNC_STARTED.store(1, Ordering::SeqCst);
        SYNC_ECHOED.store(0, Ordering::SeqCst);
        let (server, _) = echo_pair_server_only();
        let client = allocate(false);
        let mut cb = StateCallbacks::new();
        cb.opened = Some(opened_requests);
        cb.started = Some(started_requests);
        // SAFETY: all handles are live; structures readable.
        unsafe {
            assert_eq!(
                kmcl_client_channel_init_set_target_pnp(client, &TYPE, &INSTANCE, None),
                0
            );
            assert_eq!(kmcl_channel_init_set_state_change_callbacks(client, &cb), 0);
            assert_eq!(kmcl_channel_enable(client), 0);
        }
        // The channel runs before its Started callback returns (the
        // callback's request needs the data path): wait for the callback's
        // result, not only for the state.
        assert!(wait_until(
            || running(client) && SYNC_STARTED.load(Ordering::SeqCst) != 1
        ));
        assert_eq!(SYNC_OPENED.load(Ordering::SeqCst), 0);
        assert_eq!(SYNC_STARTED.load(Ordering::SeqCst), 0);
        assert_eq!(SYNC_ECHOED.load(Ordering::SeqCst), 2);
        close_pair(server, client);
    }

    #[test]
    fn a_synchronous_request_on_a_paused_channel_completes() {
        let (server, client) = echo_pair(core::ptr::null_mut());
        // SAFETY: live handles; cleaned up once.
        unsafe {
            assert_eq!(kmcl_channel_pause(client), 0);
            assert_eq!(sync_request(client, 0x9a), (0, true));
            assert_eq!(kmcl_channel_start(client), 0);
        }
        close_pair(server, client);
    }

    /// An echo server on `TYPE`/`INSTANCE`, enabled and started, with no
    /// client yet: (server, null).
    fn echo_pair_server_only() -> (*mut KmclChannel, *mut KmclChannel) {
        let server = allocate(true);
        // SAFETY: `server` is live.
        unsafe {
            assert_eq!(
                kmcl_server_channel_init_set_target_interface_id(server, &TYPE, &INSTANCE),
                0
            );
            assert_eq!(
                kmcl_channel_init_set_process_packet_callbacks(server, Some(echo), None),
                0
            );
            assert_eq!(kmcl_channel_enable(server), 0);
            assert_eq!(kmcl_channel_start(server), 0);
        }
        (server, core::ptr::null_mut())
    }
}

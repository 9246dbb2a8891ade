// SPDX-License-Identifier: GPL-2.0

//! Packets through the C ABI: both kinds of packet object, completions,
//! external data.

use kernel::prelude::*;

#[kunit_tests(kmcl_abi_packets)]
mod cases {
    use super::super::*;

    static ROUTINE_OK: AtomicU32 = AtomicU32::new(0);

    static ROUTINE_BAD: AtomicU32 = AtomicU32::new(0);

    static LAST_POINTER: AtomicUsize = AtomicUsize::new(0);

    /// Client: checks that the echo matches the pattern for the packet's
    /// pointer (its tag).
    ///
    /// # Safety
    ///
    /// Called by kmcl as `EvtVmbPacketCompletionRoutine`.
    unsafe extern "C" fn routine(
        packet: *mut KmclPacket,
        status: c_int,
        buffer: *const c_void,
        length: u32,
    ) {
        // SAFETY: the packet is ours again; the payload lives for the call.
        let (tag, data) = unsafe {
            (
                kmcl_packet_get_pointer(packet) as usize,
                bytes(buffer, length).unwrap_or(&[]),
            )
        };
        LAST_POINTER.store(tag, Ordering::SeqCst);
        let good = status == 0
            && data.len() == tag.max(8).next_multiple_of(8)
            && data
                .iter()
                .take(tag)
                .enumerate()
                .all(|(i, b)| *b == (i + tag) as u8);
        if good {
            ROUTINE_OK.fetch_add(1, Ordering::SeqCst);
        } else {
            ROUTINE_BAD.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn echo_through_the_c_abi_with_both_kinds_of_packet_object() {
        SERVER_PACKETS.store(0, Ordering::SeqCst);
        ROUTINE_OK.store(0, Ordering::SeqCst);
        ROUTINE_BAD.store(0, Ordering::SeqCst);
        CLOSED.store(0, Ordering::SeqCst);
        let (server, client) = echo_pair(core::ptr::null_mut());
        // SAFETY: the handles are live; buffers sized as passed.
        unsafe {
            let mut instance = Guid::default();
            kmcl_channel_get_interface_instance(client, &mut instance);
            assert_eq!(instance, INSTANCE);
            kmcl_channel_set_pointer(client, 0x1234 as *mut c_void);
            assert_eq!(kmcl_channel_get_pointer(client) as usize, 0x1234);

            // A packet in our own memory, reused for every send.
            let need = kmcl_channel_sizeof_packet(client) as usize;
            let mut slot = KVec::<u64>::from_elem(0, need.div_ceil(8), GFP_KERNEL).unwrap();
            let mut mine = core::ptr::null_mut();
            assert_eq!(
                kmcl_packet_initialize(
                    client,
                    slot.as_mut_ptr().cast(),
                    need as u32 - 1,
                    &mut mine
                ),
                -22
            );
            assert_eq!(
                kmcl_packet_initialize(client, slot.as_mut_ptr().cast(), need as u32, &mut mine),
                0
            );
            assert!(kmcl_packet_get_channel(mine) == client);
            kmcl_packet_set_completion_routine(mine, Some(routine));

            let mut payload = [0u8; 300];
            let wait = FORMAT_FLAG_WAIT_FOR_COMPLETION;
            for tag in 1..=200usize {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b = (i + tag) as u8;
                }
                if tag % 2 == 0 {
                    // Reuse our packet once its previous send completed.
                    assert!(wait_until(|| LAST_POINTER.load(Ordering::SeqCst) == tag - 1));
                    kmcl_packet_set_pointer(mine, tag as *mut c_void);
                    assert_eq!(
                        kmcl_packet_send(
                            mine,
                            payload.as_ptr().cast(),
                            tag as u32,
                            core::ptr::null(),
                            wait
                        ),
                        0
                    );
                } else {
                    let p = kmcl_packet_allocate(client);
                    assert!(!p.is_null());
                    kmcl_packet_set_pointer(p, tag as *mut c_void);
                    kmcl_packet_set_completion_routine(p, Some(routine));
                    assert_eq!(
                        kmcl_packet_send(
                            p,
                            payload.as_ptr().cast(),
                            tag as u32,
                            core::ptr::null(),
                            wait
                        ),
                        0
                    );
                    // Wait for it, so that LAST_POINTER steps in order.
                    assert!(wait_until(|| LAST_POINTER.load(Ordering::SeqCst) == tag));
                    kmcl_packet_free(p);
                }
            }
            assert!(wait_until(|| ROUTINE_OK.load(Ordering::SeqCst)
                + ROUTINE_BAD.load(Ordering::SeqCst)
                == 200));
            assert_eq!(ROUTINE_BAD.load(Ordering::SeqCst), 0);
            assert_eq!(SERVER_PACKETS.load(Ordering::SeqCst), 200);

            // Bad sends give the packet back and never run the routine.
            assert_eq!(
                kmcl_packet_send(mine, payload.as_ptr().cast(), 8, core::ptr::null(), 0x100),
                -22
            );
            assert_eq!(
                kmcl_packet_send(mine, core::ptr::null(), 8, core::ptr::null(), 0),
                -22
            );
            assert_eq!(
                // External data without a completion request (refused
                // before the MDL is looked at).
                kmcl_packet_send(
                    mine,
                    payload.as_ptr().cast(),
                    8,
                    core::ptr::dangling::<KmclMdl>(),
                    0
                ),
                -22
            );
            kmcl_packet_free(mine);

            // A synchronous request gets the echo back.
            let mut reply = [0u8; 64];
            let mut len = reply.len() as u32;
            let timeout = 5000u32;
            assert_eq!(
                kmcl_channel_send_synchronous_request(
                    client,
                    payload.as_ptr().cast(),
                    24,
                    core::ptr::null(),
                    0,
                    reply.as_mut_ptr().cast(),
                    &mut len,
                    &timeout
                ),
                0
            );
            assert_eq!(len, 24);
            assert_eq!(&reply[..24], &payload[..24]);
            let mut small = 8u32;
            assert_eq!(
                kmcl_channel_send_synchronous_request(
                    client,
                    payload.as_ptr().cast(),
                    24,
                    core::ptr::null(),
                    0,
                    reply.as_mut_ptr().cast(),
                    &mut small,
                    &timeout
                ),
                -75
            );

            assert_eq!(kmcl_channel_disable(client), 0);
            assert_eq!(CLOSED.load(Ordering::SeqCst), 1);
            assert_eq!(kmcl_channel_disable(client), -16);
            kmcl_channel_cleanup(client);
            // The server is still enabled: cleanup disables it first.
            kmcl_channel_cleanup(server);
        }
        assert_eq!(ROUTINE_OK.load(Ordering::SeqCst), 200);
    }

    #[test]
    fn a_packet_completed_twice_is_refused_not_freed_twice() {
        let (server, client) = pair_owned(core::ptr::null_mut(), core::ptr::null_mut(), hold);
        send_held(client, 2);
        let first = HELD[0].load(Ordering::SeqCst) as *mut KmclIncoming;
        // SAFETY: `first` was delivered to `hold`; the repeated calls and
        // the made-up handle are what the test is about (kmcl checks them).
        unsafe {
            assert_eq!(kmcl_channel_packet_complete(first, core::ptr::null(), 0), 0);
            assert_eq!(
                kmcl_channel_packet_complete(first, core::ptr::null(), 0),
                -22
            );
            kmcl_channel_packet_fail(first);
            kmcl_channel_packet_defer_to_passive(first);
            let forged = 0x1000 as *mut KmclIncoming;
            assert_eq!(
                kmcl_channel_packet_complete(forged, core::ptr::null(), 0),
                -22
            );
        }
        assert!(wait_until(|| DONE_OK.load(Ordering::SeqCst) == 1));
        let second = HELD[1].load(Ordering::SeqCst) as *mut KmclIncoming;
        // SAFETY: live handles.
        unsafe {
            assert_eq!(
                kmcl_channel_packet_complete(second, core::ptr::null(), 0),
                0
            );
            assert!(wait_until(|| DONE_OK.load(Ordering::SeqCst) == 2));
            assert_eq!(DONE_ERR.load(Ordering::SeqCst), 0);
            // Still running: the refused calls changed nothing.
            assert!(handle(client).is_some_and(|h| h.channel.is_running()));
            assert_eq!(kmcl_channel_disable(client), 0);
            assert_eq!(kmcl_channel_disable(server), 0);
            kmcl_channel_cleanup(client);
            kmcl_channel_cleanup(server);
        }
        assert_eq!(lent::count(), 0);
    }

    /// Return codes of the second completion, and of the external-data
    /// query before the first, inside the callback.
    static TWICE_SECOND: AtomicI32 = AtomicI32::new(0);

    static TWICE_QUERY: AtomicI32 = AtomicI32::new(0);

    /// Server: asks for external data, then completes each packet twice,
    /// inside the callback (the second must be refused).
    ///
    /// # Safety
    ///
    /// Called by kmcl as `EvtVmbChannelProcessPacket`.
    unsafe extern "C" fn complete_twice(
        _ch: *mut KmclChannel,
        packet: *mut KmclIncoming,
        _buffer: *const c_void,
        _length: u32,
        _flags: u32,
    ) {
        let mut mdl = core::ptr::null_mut();
        // SAFETY: `packet` is live until the first completion; the second
        // is what the test is about (kmcl checks it).
        unsafe {
            TWICE_QUERY.store(
                kmcl_channel_packet_get_external_data(packet, 0, &mut mdl),
                Ordering::SeqCst,
            );
            kmcl_channel_packet_complete(packet, core::ptr::null(), 0);
            TWICE_SECOND.store(
                kmcl_channel_packet_complete(packet, core::ptr::null(), 0),
                Ordering::SeqCst,
            );
        }
    }

    #[test]
    fn a_packet_completed_twice_inside_its_callback_is_refused() {
        let (server, client) =
            pair_owned(core::ptr::null_mut(), core::ptr::null_mut(), complete_twice);
        send_counted(client, 3, b"twice");
        assert!(wait_until(|| DONE_OK.load(Ordering::SeqCst) == 3));
        // Lent while in the callback (an in-band packet: no external data).
        assert_eq!(TWICE_QUERY.load(Ordering::SeqCst), -61);
        assert_eq!(TWICE_SECOND.load(Ordering::SeqCst), -22);
        assert_eq!(DONE_ERR.load(Ordering::SeqCst), 0);
        assert_eq!(lent::count(), 0);
        // SAFETY: live handles.
        unsafe {
            assert!(handle(client).is_some_and(|h| h.channel.is_running()));
            assert_eq!(kmcl_channel_disable(client), 0);
            assert_eq!(kmcl_channel_disable(server), 0);
            kmcl_channel_cleanup(client);
            kmcl_channel_cleanup(server);
        }
    }

    static EXT_SEEN: AtomicU32 = AtomicU32::new(0);

    static EXT_GOOD: AtomicU32 = AtomicU32::new(0);

    static EXT_LEN: AtomicU32 = AtomicU32::new(0);

    /// Server: checks a packet's external data (its first 16 bytes against
    /// the pattern the payload names) through the C API, then completes.
    ///
    /// # Safety
    ///
    /// Called by kmcl as `EvtVmbChannelProcessPacket`.
    unsafe extern "C" fn ext_check(
        _ch: *mut KmclChannel,
        packet: *mut KmclIncoming,
        buffer: *const c_void,
        length: u32,
        flags: u32,
    ) {
        EXT_SEEN.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the packet and its payload are live until completed; the
        // MDL kmcl gives lives as long.
        unsafe {
            let start = bytes(buffer, length).ok().and_then(|b| b.first().copied());
            let mut mdl = core::ptr::null_mut();
            let rc = kmcl_channel_packet_get_external_data(packet, 0, &mut mdl);
            if rc == 0 && flags & PROCESS_PACKET_FLAG_EXTERNAL_DATA != 0 {
                let m = &*mdl;
                EXT_LEN.store(m.length, Ordering::SeqCst);
                // Softirq context: read the first page directly (no
                // allocation); the tests keep the data's start within it.
                let first_page = *m.pages.cast::<*mut crate::shmem::Page>();
                let mut b = [0u8; 16];
                let ok = m.offset as usize + 16 <= 4096;
                if ok {
                    crate::shmem::page_read(first_page, m.offset as usize, &mut b);
                }
                let first = start.unwrap_or(0) as usize;
                if ok && (0..16).all(|i| b[i] == ((first + i) % 251) as u8) {
                    EXT_GOOD.fetch_add(1, Ordering::SeqCst);
                }
            }
            kmcl_channel_packet_complete(packet, core::ptr::null(), 0);
        }
    }

    #[test]
    fn external_data_through_the_c_abi_by_mdl_and_by_pfn() {
        EXT_SEEN.store(0, Ordering::SeqCst);
        EXT_GOOD.store(0, Ordering::SeqCst);
        DONE_OK.store(0, Ordering::SeqCst);
        DONE_ERR.store(0, Ordering::SeqCst);
        let (server, client) = pair_owned(core::ptr::null_mut(), core::ptr::null_mut(), ext_check);
        // Page-aligned vmalloc memory with a pattern; it outlives the sends.
        let mut buf = kernel::alloc::VVec::<u8>::with_capacity(8192, GFP_KERNEL).unwrap();
        for i in 0..8192u32 {
            buf.push((i % 251) as u8, GFP_KERNEL).unwrap();
        }
        // SAFETY: `buf` outlives the transactions (waited for below).
        let pages = unsafe { GpadlPages::from_buffer(buf.as_ptr() as usize, 8192) }.unwrap();
        // The buffer's description (page aligned, 8192 bytes).
        let mdl: *const KmclMdl = core::ptr::from_ref(pages.mdl_view()).cast();
        let pfns: KVec<u64> = {
            let mut v = KVec::new();
            for p in pages.pfns() {
                v.push(p, GFP_KERNEL).unwrap();
            }
            v
        };
        let wait = FORMAT_FLAG_WAIT_FOR_COMPLETION;
        // SAFETY: live handles; `buf`, `mdl` and `pfns` outlive the sends.
        unsafe {
            let p = kmcl_packet_allocate(client);
            kmcl_packet_set_completion_routine(p, Some(count_done));
            // 5000 bytes from offset 100: the server sees pattern 100.. .
            assert_eq!(
                kmcl_packet_send_with_external_mdl(
                    p,
                    [100u8].as_ptr().cast(),
                    1,
                    mdl,
                    100,
                    5000,
                    wait
                ),
                0
            );
            assert!(wait_until(|| DONE_OK.load(Ordering::SeqCst) == 1));
            assert_eq!(EXT_LEN.load(Ordering::SeqCst), 5000);
            // The second page by its frame number: pattern 4096 % 251 = 80.
            let p = kmcl_packet_allocate(client);
            kmcl_packet_set_completion_routine(p, Some(count_done));
            assert_eq!(
                kmcl_packet_send_with_external_pfns(
                    p,
                    [80u8].as_ptr().cast(),
                    1,
                    &pfns[1],
                    1,
                    wait
                ),
                0
            );
            assert!(wait_until(|| DONE_OK.load(Ordering::SeqCst) == 2));
            assert_eq!(EXT_LEN.load(Ordering::SeqCst), 4096);
            // A completion is required for external data; a range outside
            // the MDL is refused; the packet is the caller's again.
            let p = kmcl_packet_allocate(client);
            kmcl_packet_set_completion_routine(p, Some(count_done));
            assert_eq!(
                kmcl_packet_send_with_external_mdl(p, [0u8].as_ptr().cast(), 1, mdl, 0, 10, 0),
                -22
            );
            assert_eq!(
                kmcl_packet_send_with_external_mdl(
                    p,
                    [0u8].as_ptr().cast(),
                    1,
                    mdl,
                    8000,
                    500,
                    wait
                ),
                -22
            );
            // FORCE_MDL_LENGTH: an MDL of 100 bytes sent as its whole
            // first page (KMCL: MdlLength may exceed the MDL's byte count,
            // rounded up to a page boundary, no further).
            let small = KmclMdl {
                length: 100,
                ..*mdl
            };
            let force = wait | crate::api::abi::FORMAT_FLAG_FORCE_MDL_LENGTH;
            assert_eq!(
                kmcl_packet_send_with_external_mdl(
                    p,
                    [0u8].as_ptr().cast(),
                    1,
                    &small,
                    0,
                    4096,
                    wait
                ),
                -22
            );
            assert_eq!(
                kmcl_packet_send_with_external_mdl(
                    p,
                    [0u8].as_ptr().cast(),
                    1,
                    &small,
                    0,
                    4097,
                    force
                ),
                -22
            );
            assert_eq!(
                kmcl_packet_send_with_external_mdl(
                    p,
                    [0u8].as_ptr().cast(),
                    1,
                    &small,
                    0,
                    4096,
                    force
                ),
                0
            );
            assert!(wait_until(|| DONE_OK.load(Ordering::SeqCst) == 3));
            assert_eq!(EXT_LEN.load(Ordering::SeqCst), 4096);
            // A synchronous request with the whole MDL as external data.
            let mut reply = [0u8; 8];
            let mut len = reply.len() as u32;
            assert_eq!(
                kmcl_channel_send_synchronous_request(
                    client,
                    [0u8].as_ptr().cast(),
                    1,
                    mdl,
                    0,
                    reply.as_mut_ptr().cast(),
                    &mut len,
                    &5000,
                ),
                0
            );
            assert_eq!(EXT_LEN.load(Ordering::SeqCst), 8192);
            assert_eq!(EXT_SEEN.load(Ordering::SeqCst), 4);
            assert_eq!(EXT_GOOD.load(Ordering::SeqCst), 4);
            assert_eq!(DONE_ERR.load(Ordering::SeqCst), 0);
            assert_eq!(kmcl_channel_disable(client), 0);
            assert_eq!(kmcl_channel_disable(server), 0);
            kmcl_channel_cleanup(client);
            kmcl_channel_cleanup(server);
        }
        drop(pages);
    }

    static RESEND_LEFT: AtomicU32 = AtomicU32::new(0);

    static RESEND_SEEN: AtomicU32 = AtomicU32::new(0);

    static RESEND_INTACT: AtomicU32 = AtomicU32::new(0);

    static RESEND_FREED: AtomicU32 = AtomicU32::new(0);

    /// Re-sends its packet from its own completion routine until
    /// `RESEND_LEFT` runs out, checking each echo, then frees it.
    ///
    /// # Safety
    ///
    /// Called by kmcl as `EvtVmbPacketCompletionRoutine`.
    unsafe extern "C" fn resend(
        packet: *mut KmclPacket,
        status: c_int,
        buffer: *const c_void,
        length: u32,
    ) {
        RESEND_SEEN.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the packet is ours again; the payload lives for the call.
        unsafe {
            let data = bytes(buffer, length).unwrap_or(&[]);
            let tag = kmcl_packet_get_pointer(packet) as usize;
            if status == 0 && data.get(..4) == Some(&b"ping"[..]) && tag == 0xabc {
                RESEND_INTACT.fetch_add(1, Ordering::SeqCst);
            }
            let left = RESEND_LEFT.load(Ordering::SeqCst);
            if left > 0 {
                RESEND_LEFT.store(left - 1, Ordering::SeqCst);
                let wait = FORMAT_FLAG_WAIT_FOR_COMPLETION;
                if kmcl_packet_send(packet, b"ping".as_ptr().cast(), 4, core::ptr::null(), wait)
                    == 0
                {
                    return;
                }
            }
            kmcl_packet_free(packet);
            RESEND_FREED.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn packet_objects_are_reused_from_their_routine_and_returned_on_error() {
        RESEND_SEEN.store(0, Ordering::SeqCst);
        RESEND_INTACT.store(0, Ordering::SeqCst);
        RESEND_FREED.store(0, Ordering::SeqCst);
        let (mut server, mut client) = (core::ptr::null_mut(), core::ptr::null_mut());
        let wait = FORMAT_FLAG_WAIT_FOR_COMPLETION;
        // SAFETY: all handles are live; buffers sized as passed.
        unsafe {
            assert_eq!(
                kmcl_channel_allocate(core::ptr::null_mut(), true, &mut server),
                0
            );
            assert_eq!(
                kmcl_channel_allocate(core::ptr::null_mut(), false, &mut client),
                0
            );
            assert_eq!(
                kmcl_server_channel_init_set_target_interface_id(server, &TYPE, &INSTANCE),
                0
            );
            assert_eq!(
                kmcl_channel_init_set_process_packet_callbacks(server, Some(echo), None),
                0
            );
            assert_eq!(
                kmcl_client_channel_init_set_target_pnp(client, &TYPE, core::ptr::null(), None),
                0
            );
            assert_eq!(kmcl_channel_init_set_maximum_packet_size(client, 64), 0);
            // Not connected yet: the send fails and the packet is ours.
            let p = kmcl_packet_allocate(client);
            assert!(!p.is_null());
            kmcl_packet_set_pointer(p, 0xabc as *mut c_void);
            kmcl_packet_set_completion_routine(p, Some(resend));
            assert_eq!(
                kmcl_packet_send(p, b"early".as_ptr().cast(), 5, core::ptr::null(), wait),
                -107
            );
            assert_eq!(kmcl_channel_post(client, b"early".as_ptr().cast(), 5), -107);
            assert_eq!(kmcl_channel_enable(server), 0);
            assert_eq!(kmcl_channel_start(server), 0);
            assert_eq!(kmcl_channel_enable(client), 0);
            let c = handle(client).map(|h| h.channel.clone()).unwrap();
            let s = handle(server).map(|h| h.channel.clone()).unwrap();
            assert!(wait_until(|| c.is_running() && s.is_running()));
            // Over the maximum packet size: refused, nothing sent.
            let big = [0u8; 65];
            assert_eq!(
                kmcl_packet_send(p, big.as_ptr().cast(), 65, core::ptr::null(), wait),
                -22
            );
            assert_eq!(RESEND_SEEN.load(Ordering::SeqCst), 0);
            // One object, sent 25 times: 24 times again from its routine.
            RESEND_LEFT.store(24, Ordering::SeqCst);
            assert_eq!(
                kmcl_packet_send(p, b"ping".as_ptr().cast(), 4, core::ptr::null(), wait),
                0
            );
            assert!(wait_until(|| RESEND_FREED.load(Ordering::SeqCst) == 1));
            assert_eq!(RESEND_SEEN.load(Ordering::SeqCst), 25);
            assert_eq!(RESEND_INTACT.load(Ordering::SeqCst), 25);
            // No routine: kmcl frees it when its transaction is over
            // (kmemleak checks).
            let plain = kmcl_packet_allocate(client);
            assert_eq!(
                kmcl_packet_send(plain, b"ping".as_ptr().cast(), 4, core::ptr::null(), 0),
                0
            );
            assert!(wait_until(|| s.counters().packets_in == 26));
            // Freed objects are kept per channel (the lookaside list): the
            // next allocation reuses it, reset.
            let again = kmcl_packet_allocate(client);
            assert!(again == plain);
            assert!(kmcl_packet_get_pointer(again).is_null());
            kmcl_packet_free(again);
            // kmcl_channel_post: a packet without a packet object.
            let before = s.counters().packets_in;
            for _ in 0..3 {
                assert_eq!(kmcl_channel_post(client, b"post".as_ptr().cast(), 4), 0);
            }
            assert!(wait_until(|| s.counters().packets_in == before + 3));
            assert_eq!(kmcl_channel_post(client, big.as_ptr().cast(), 65), -22);
            assert_eq!(
                kmcl_channel_post(core::ptr::null_mut(), b"post".as_ptr().cast(), 4),
                -22
            );
            assert_eq!(kmcl_channel_post(client, core::ptr::null(), 4), -22);
            assert_eq!(kmcl_channel_disable(client), 0);
            assert_eq!(kmcl_channel_post(client, b"late".as_ptr().cast(), 4), -107);
            kmcl_channel_cleanup(client);
            kmcl_channel_cleanup(server);
        }
    }

    // What the server saw of its packets' context areas.
    static CONTEXT_FIRST_ZEROED: AtomicU32 = AtomicU32::new(0);
    static CONTEXT_KEPT: AtomicU32 = AtomicU32::new(0);
    static CONTEXT_BAD: AtomicU32 = AtomicU32::new(0);

    const CONTEXT_SIZE: u32 = 24;

    /// Server: on a packet's first delivery its context area must be
    /// `CONTEXT_SIZE` zeroed bytes; it writes a mark from the payload and
    /// defers the packet; on the second delivery (at passive) the mark must
    /// still be there, and the packet is completed.
    ///
    /// # Safety
    ///
    /// Called by kmcl as `EvtVmbChannelProcessPacket`.
    unsafe extern "C" fn context_check(
        _ch: *mut KmclChannel,
        packet: *mut KmclIncoming,
        buffer: *const c_void,
        _length: u32,
        _flags: u32,
    ) {
        let mut size = 0u32;
        // SAFETY: the packet is lent to this callback; `size` writable.
        let area = unsafe { kmcl_channel_packet_get_client_context(packet, &mut size) };
        if area.is_null() || size != CONTEXT_SIZE {
            CONTEXT_BAD.fetch_add(1, Ordering::SeqCst);
            // SAFETY: as above; given back here.
            unsafe { kmcl_channel_packet_complete(packet, core::ptr::null(), 0) };
            return;
        }
        // SAFETY: kmcl gives `size` bytes at `area` while the packet is
        // lent; the payload has at least one byte.
        let (ctx, tag) = unsafe {
            (
                core::slice::from_raw_parts_mut(area.cast::<u8>(), size as usize),
                *buffer.cast::<u8>(),
            )
        };
        if ctx[0] == 0 {
            if ctx.iter().all(|&b| b == 0) {
                CONTEXT_FIRST_ZEROED.fetch_add(1, Ordering::SeqCst);
            }
            ctx.fill(tag ^ 0xa5);
            ctx[0] = 1;
            // SAFETY: lent; delivered again later.
            unsafe { kmcl_channel_packet_defer_to_passive(packet) };
        } else {
            if ctx[1..].iter().all(|&b| b == tag ^ 0xa5) {
                CONTEXT_KEPT.fetch_add(1, Ordering::SeqCst);
            }
            // SAFETY: lent; given back here.
            unsafe { kmcl_channel_packet_complete(packet, core::ptr::null(), 0) };
        }
    }

    #[test]
    fn the_client_context_is_zeroed_per_packet_and_kept_across_a_deferral() {
        CONTEXT_FIRST_ZEROED.store(0, Ordering::SeqCst);
        CONTEXT_KEPT.store(0, Ordering::SeqCst);
        CONTEXT_BAD.store(0, Ordering::SeqCst);
        let server = allocate(true);
        let client = allocate(false);
        // SAFETY: live handles; structures readable.
        unsafe {
            assert_eq!(
                kmcl_server_channel_init_set_target_interface_id(server, &TYPE, &INSTANCE),
                0
            );
            assert_eq!(
                kmcl_channel_init_set_client_context_size(server, CONTEXT_SIZE),
                0
            );
            assert_eq!(
                kmcl_channel_init_set_process_packet_callbacks(server, Some(context_check), None),
                0
            );
            assert_eq!(kmcl_channel_enable(server), 0);
            assert_eq!(kmcl_channel_start(server), 0);
            assert_eq!(
                kmcl_client_channel_init_set_target_pnp(client, &TYPE, &INSTANCE, None),
                0
            );
            assert_eq!(kmcl_channel_enable(client), 0);
        }
        assert!(wait_until(|| running(client) && running(server)));
        // Packet objects are reused: each delivery must find its area
        // zeroed again, whatever the packet before left in it.
        for tag in 1..=20u8 {
            send_counted(client, 1, &[tag; 8]);
            assert!(wait_until(|| DONE_OK.load(Ordering::SeqCst) == 1));
        }
        assert_eq!(CONTEXT_BAD.load(Ordering::SeqCst), 0);
        assert_eq!(CONTEXT_FIRST_ZEROED.load(Ordering::SeqCst), 20);
        assert_eq!(CONTEXT_KEPT.load(Ordering::SeqCst), 20);
        // A NULL packet: NULL, size 0.
        let mut size = 7u32;
        // SAFETY: NULL is refused; `size` is writable.
        let area =
            unsafe { kmcl_channel_packet_get_client_context(core::ptr::null_mut(), &mut size) };
        assert!(area.is_null());
        assert_eq!(size, 0);
        close_pair(server, client);
    }
}

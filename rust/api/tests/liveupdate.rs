// SPDX-License-Identifier: GPL-2.0

//! A server replaced (save, unload, load, restore) while its client has
//! transactions in flight.

use kernel::prelude::*;

#[kunit_tests(kmcl_abi_liveupdate)]
mod cases {
    use super::super::*;

    // The live-update test's driver: a server that holds packets, saves 8
    // bytes of each (the payload's first 8), and restores them.
    static LU_HELD: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];

    static LU_HELD_N: AtomicUsize = AtomicUsize::new(0);

    static LU_RESTORED: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];

    static LU_STATES: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

    static LU_RESTORED_N: AtomicUsize = AtomicUsize::new(0);

    static LU_REPLIES: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];

    static LU_DONE: AtomicU32 = AtomicU32::new(0);

    static LU_CLIENT_CLOSED: AtomicU32 = AtomicU32::new(0);

    /// The server's own request, held by the client across the switch.
    static LU_CLIENT_HELD: AtomicUsize = AtomicUsize::new(0);

    static LU_S1_STATUS: AtomicI32 = AtomicI32::new(1);

    /// The client's process-packet callback: holds the server's request.
    ///
    /// # Safety
    ///
    /// Called by kmcl as `EvtVmbChannelProcessPacket`.
    unsafe extern "C" fn lu_client_hold(
        _ch: *mut KmclChannel,
        packet: *mut KmclIncoming,
        _buffer: *const c_void,
        _length: u32,
        _flags: u32,
    ) {
        LU_CLIENT_HELD.store(packet as usize, Ordering::SeqCst);
    }

    /// The first server's routine for its own request.
    ///
    /// # Safety
    ///
    /// Called by kmcl as a completion routine.
    unsafe extern "C" fn lu_s1_done(
        packet: *mut KmclPacket,
        status: c_int,
        _b: *const c_void,
        _l: u32,
    ) {
        LU_S1_STATUS.store(status, Ordering::SeqCst);
        // SAFETY: the packet object is ours again.
        unsafe { kmcl_packet_free(packet) };
    }

    /// Holds every packet (the "in flight" transactions).
    ///
    /// # Safety
    ///
    /// Called by kmcl as `EvtVmbChannelProcessPacket`.
    unsafe extern "C" fn lu_hold(
        _ch: *mut KmclChannel,
        packet: *mut KmclIncoming,
        _buffer: *const c_void,
        _length: u32,
        _flags: u32,
    ) {
        let n = LU_HELD_N.fetch_add(1, Ordering::SeqCst);
        if let Some(slot) = LU_HELD.get(n) {
            slot.store(packet as usize, Ordering::SeqCst);
        }
    }

    /// `EvtVmbChannelSavePacket`: 8 bytes, the payload's first 8 (read
    /// from kmcl's packet, as a driver would from its own records).
    ///
    /// # Safety
    ///
    /// Called by kmcl as `EvtVmbChannelSavePacket`.
    unsafe extern "C" fn lu_save(
        _ch: *mut KmclChannel,
        packet: *mut KmclIncoming,
        buffer: *mut c_void,
        size: u32,
        needed: *mut u32,
    ) -> c_int {
        // SAFETY: kmcl passes a writable `needed` and a live packet.
        unsafe { *needed = 8 };
        if size < 8 {
            return -105;
        }
        // SAFETY: a live packet of this test (kmcl's incoming object).
        let data = unsafe { (*packet.cast::<crate::engine::datapath::PacketObject>()).data() };
        let mut state = [0u8; 8];
        state[..data.len().min(8)].copy_from_slice(&data[..data.len().min(8)]);
        // SAFETY: `buffer` holds `size >= 8` writable bytes.
        unsafe { core::ptr::copy_nonoverlapping(state.as_ptr(), buffer.cast(), 8) };
        0
    }

    /// `EvtVmbChannelRestorePacket`: a packet object made the incoming
    /// packet again, kept with the driver's state.
    ///
    /// # Safety
    ///
    /// Called by kmcl as `EvtVmbChannelRestorePacket`.
    unsafe extern "C" fn lu_restore(
        ch: *mut KmclChannel,
        lib: *const c_void,
        lib_size: u32,
        state: *const c_void,
        state_size: u32,
    ) -> c_int {
        // SAFETY: kmcl's contract: live channel, readable buffers.
        unsafe {
            let pkt = kmcl_packet_allocate(ch);
            if pkt.is_null() {
                return -12;
            }
            let rc = kmcl_packet_restore(pkt, lib, lib_size);
            let incoming = kmcl_packet_restored(pkt);
            kmcl_packet_free(pkt);
            if rc != 0 || incoming.is_null() || state_size != 8 {
                return -22;
            }
            let mut st = [0u8; 8];
            core::ptr::copy_nonoverlapping(state.cast::<u8>(), st.as_mut_ptr(), 8);
            let n = LU_RESTORED_N.fetch_add(1, Ordering::SeqCst);
            if let (Some(slot), Some(s)) = (LU_RESTORED.get(n), LU_STATES.get(n)) {
                slot.store(incoming as usize, Ordering::SeqCst);
                s.store(u64::from_le_bytes(st), Ordering::SeqCst);
            }
        }
        0
    }

    /// Client completion: records the reply's first 8 bytes by tag.
    ///
    /// # Safety
    ///
    /// Called by kmcl as the client's completion routine.
    unsafe extern "C" fn lu_done(
        packet: *mut KmclPacket,
        status: c_int,
        buffer: *const c_void,
        length: u32,
    ) {
        // SAFETY: the packet is ours again; the reply lives for the call.
        unsafe {
            let tag = kmcl_packet_get_pointer(packet) as usize;
            let data = bytes(buffer, length).unwrap_or(&[]);
            let mut first = [0u8; 8];
            first[..data.len().min(8)].copy_from_slice(&data[..data.len().min(8)]);
            if let Some(r) = LU_REPLIES.get(tag) {
                r.store(
                    if status == 0 {
                        u64::from_le_bytes(first)
                    } else {
                        u64::MAX
                    },
                    Ordering::SeqCst,
                );
            }
            kmcl_packet_free(packet);
        }
        LU_DONE.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts the client's Suspend and Closed.
    ///
    /// # Safety
    ///
    /// Called by kmcl as a client state callback.
    unsafe extern "C" fn lu_client_closed(_ch: *mut KmclChannel) {
        LU_CLIENT_CLOSED.fetch_add(1, Ordering::SeqCst);
    }

    /// Sends packet `tag` (payload "pkt-<tag>..." of 40 bytes) from `client`.
    fn lu_send(client: *mut KmclChannel, tag: usize) {
        let mut payload = [b'.'; 40];
        payload[..4].copy_from_slice(b"pkt-");
        payload[4] = b'a' + tag as u8;
        // SAFETY: a live client; the payload is copied by the send.
        unsafe {
            let pkt = kmcl_packet_allocate(client);
            assert!(!pkt.is_null());
            kmcl_packet_set_pointer(pkt, tag as *mut c_void);
            kmcl_packet_set_completion_routine(pkt, Some(lu_done));
            assert_eq!(
                kmcl_packet_send(
                    pkt,
                    payload.as_ptr().cast(),
                    40,
                    core::ptr::null(),
                    FORMAT_FLAG_WAIT_FOR_COMPLETION
                ),
                0
            );
        }
    }

    /// The first 8 bytes of packet `tag`'s payload.
    fn lu_head(tag: usize) -> u64 {
        let mut head = *b"pkt-x...";
        head[4] = b'a' + tag as u8;
        u64::from_le_bytes(head)
    }

    #[test]
    fn a_server_is_replaced_while_its_client_has_transactions_in_flight() {
        for a in LU_HELD.iter() {
            a.store(0, Ordering::SeqCst);
        }
        for a in LU_RESTORED.iter() {
            a.store(0, Ordering::SeqCst);
        }
        for r in LU_REPLIES.iter() {
            r.store(0, Ordering::SeqCst);
        }
        LU_HELD_N.store(0, Ordering::SeqCst);
        LU_RESTORED_N.store(0, Ordering::SeqCst);
        LU_DONE.store(0, Ordering::SeqCst);
        LU_CLIENT_CLOSED.store(0, Ordering::SeqCst);
        LU_CLIENT_HELD.store(0, Ordering::SeqCst);
        LU_S1_STATUS.store(1, Ordering::SeqCst);
        let ty = Guid { b: [0x1f; 16] };
        let key = Guid { b: [0x2e; 16] };
        let (s1, client) = (allocate(true), allocate(false));
        let mut ccb = StateCallbacks::new();
        ccb.closed = Some(lu_client_closed);
        ccb.suspend = Some(lu_client_closed);
        // SAFETY: live handles; readable/writable buffers of the sizes given.
        unsafe {
            assert_eq!(
                kmcl_server_channel_init_set_target_interface_id(s1, &ty, &INSTANCE),
                0
            );
            assert_eq!(
                kmcl_channel_init_set_process_packet_callbacks(s1, Some(lu_hold), None),
                0
            );
            assert_eq!(
                kmcl_server_channel_init_set_save_restore_packet_callbacks(
                    s1,
                    Some(lu_save),
                    Some(lu_restore)
                ),
                0
            );
            assert_eq!(
                kmcl_client_channel_init_set_target_pnp(client, &ty, &INSTANCE, None),
                0
            );
            assert_eq!(
                kmcl_channel_init_set_state_change_callbacks(client, &ccb),
                0
            );
            assert_eq!(
                kmcl_channel_init_set_process_packet_callbacks(client, Some(lu_client_hold), None),
                0
            );
            assert_eq!(kmcl_channel_enable(s1), 0);
            assert_eq!(kmcl_channel_start(s1), 0);
            assert_eq!(kmcl_channel_enable(client), 0);
            assert!(wait_until(|| running(client)));
            // Five transactions in flight, held by the server.
            for tag in 0..5 {
                lu_send(client, tag);
            }
            assert!(wait_until(|| LU_HELD_N.load(Ordering::SeqCst) == 5));
            // The server's own request, which the client holds.
            let req = kmcl_packet_allocate(s1);
            assert!(!req.is_null());
            kmcl_packet_set_completion_routine(req, Some(lu_s1_done));
            assert_eq!(
                kmcl_packet_send(
                    req,
                    b"server request".as_ptr().cast(),
                    14,
                    core::ptr::null(),
                    FORMAT_FLAG_WAIT_FOR_COMPLETION
                ),
                0
            );
            assert!(wait_until(|| LU_CLIENT_HELD.load(Ordering::SeqCst) != 0));

            // Save: the held packets go into the save.
            assert_eq!(kmcl_channel_save_begin(s1), 0);
            assert_eq!(kmcl_channel_save_begin(s1), -16);
            let first = LU_HELD[0].load(Ordering::SeqCst) as *mut KmclIncoming;
            assert_eq!(
                kmcl_channel_packet_complete(first, core::ptr::null(), 0),
                -22
            );
            let (mut filled, mut required) = (0u32, 0u32);
            assert_eq!(
                kmcl_channel_save_continue(
                    s1,
                    core::ptr::null_mut(),
                    0,
                    &mut filled,
                    &mut required
                ),
                -105
            );
            assert!(required > 0 && filled == 0);
            // In pieces of at most 150 bytes: whole chunks each time.
            let mut stream = KVec::new();
            let mut piece = [0u8; 150];
            let mut calls = 0;
            loop {
                let rc = kmcl_channel_save_continue(
                    s1,
                    piece.as_mut_ptr().cast(),
                    150,
                    &mut filled,
                    &mut required,
                );
                stream
                    .extend_from_slice(&piece[..filled as usize], GFP_KERNEL)
                    .unwrap();
                calls += 1;
                match rc {
                    0 => break,
                    -75 => continue,
                    other => panic!("save_continue: {}", other),
                }
            }
            assert!(calls > 1);
            kmcl_channel_save_end(s1);
            assert_eq!(
                kmcl_stash_put(&key, stream.as_ptr().cast(), stream.len() as u32),
                0
            );
            // The old server goes (its module would unload here); its own
            // request ends with -ECANCELED.
            kmcl_channel_cleanup(s1);
            assert_eq!(LU_S1_STATUS.load(Ordering::SeqCst), -125);
            // The client noticed nothing, and keeps sending.
            fsleep(Delta::from_millis(50));
            assert!(running(client));
            assert_eq!(LU_CLIENT_CLOSED.load(Ordering::SeqCst), 0);
            assert_eq!(LU_DONE.load(Ordering::SeqCst), 0);
            for tag in 5..8 {
                lu_send(client, tag);
            }

            // The new server: restored from the stash, then enabled.
            let s2 = allocate(true);
            assert_eq!(
                kmcl_server_channel_init_set_target_interface_id(s2, &ty, &INSTANCE),
                0
            );
            assert_eq!(
                kmcl_channel_init_set_process_packet_callbacks(s2, Some(echo), None),
                0
            );
            assert_eq!(
                kmcl_server_channel_init_set_save_restore_packet_callbacks(
                    s2,
                    Some(lu_save),
                    Some(lu_restore)
                ),
                0
            );
            let mut len = 0u32;
            assert_eq!(
                kmcl_stash_take(&key, core::ptr::null_mut(), 0, &mut len),
                -105
            );
            assert_eq!(len as usize, stream.len());
            let mut saved = KVec::from_elem(0u8, len as usize, GFP_KERNEL).unwrap();
            assert_eq!(
                kmcl_stash_take(&key, saved.as_mut_ptr().cast(), len, &mut len),
                0
            );
            assert_eq!(
                kmcl_stash_take(&key, saved.as_mut_ptr().cast(), len, &mut len),
                -2
            );
            assert_eq!(saved, stream);
            // A corrupted copy is refused and changes nothing.
            let mut bad = KVec::new();
            bad.extend_from_slice(&saved, GFP_KERNEL).unwrap();
            let last = bad.len() - 1;
            bad[last] ^= 0x40;
            assert_eq!(
                kmcl_channel_restore_from_buffer(s2, bad.as_ptr().cast(), bad.len() as u32),
                -74
            );
            // The first chunk alone: more to come.
            let first_len = crate::protocol::save::chunk_len_at(&saved).unwrap();
            assert_eq!(
                kmcl_channel_restore_from_buffer(s2, saved.as_ptr().cast(), first_len as u32),
                -11
            );
            assert_eq!(
                kmcl_channel_restore_from_buffer(
                    s2,
                    saved[first_len..].as_ptr().cast(),
                    (saved.len() - first_len) as u32
                ),
                0
            );
            assert_eq!(kmcl_channel_enable(s2), 0);
            assert!(wait_until(|| LU_RESTORED_N.load(Ordering::SeqCst) == 5));
            // The driver's state came back with each packet: each of the
            // five exactly once (kmcl saves them in no particular order).
            let mut seen = [false; 5];
            for st in LU_STATES.iter().take(5) {
                let v = st.load(Ordering::SeqCst);
                let tag = (0..5).find(|t| lu_head(*t) == v);
                assert!(tag.is_some());
                if let Some(t) = tag {
                    assert!(!seen[t]);
                    seen[t] = true;
                }
            }
            assert_eq!(kmcl_channel_start(s2), 0);
            // The restored transactions complete (reply: the saved state).
            for (i, slot) in LU_RESTORED.iter().take(5).enumerate() {
                let incoming = slot.load(Ordering::SeqCst) as *mut KmclIncoming;
                let reply = LU_STATES[i].load(Ordering::SeqCst).to_le_bytes();
                assert_eq!(
                    kmcl_channel_packet_complete(incoming, reply.as_ptr().cast(), 8),
                    0
                );
            }
            // Every transaction completed: the five restored with their
            // state, the three sent meanwhile echoed by the new server.
            assert!(wait_until(|| LU_DONE.load(Ordering::SeqCst) == 8));
            for (tag, r) in LU_REPLIES.iter().take(8).enumerate() {
                assert_eq!(r.load(Ordering::SeqCst), lu_head(tag));
            }
            // The client completes the old server's request now: the new
            // server drops that completion as late; the channel stays.
            let held = LU_CLIENT_HELD.load(Ordering::SeqCst) as *mut KmclIncoming;
            assert_eq!(
                kmcl_channel_packet_complete(held, b"late".as_ptr().cast(), 4),
                0
            );
            lu_send(client, 8);
            assert!(wait_until(|| LU_DONE.load(Ordering::SeqCst) == 9));
            assert_eq!(LU_REPLIES[8].load(Ordering::SeqCst), lu_head(8));
            assert_eq!(LU_CLIENT_CLOSED.load(Ordering::SeqCst), 0);
            assert!(running(client) && running(s2));
            kmcl_channel_cleanup(client);
            kmcl_channel_cleanup(s2);
        }
    }

    /// A server of `ty` holding every packet (`lu_hold`) and saving with
    /// `save`, and its client, connected, with three packets in flight
    /// held by the server: (server, client). The records start empty.
    fn lu_three_held(ty: Guid, save: EvtSavePacket) -> (*mut KmclChannel, *mut KmclChannel) {
        for a in LU_HELD.iter() {
            a.store(0, Ordering::SeqCst);
        }
        for r in LU_REPLIES.iter() {
            r.store(0, Ordering::SeqCst);
        }
        LU_HELD_N.store(0, Ordering::SeqCst);
        LU_DONE.store(0, Ordering::SeqCst);
        let (server, client) = (allocate(true), allocate(false));
        // SAFETY: live handles.
        unsafe {
            assert_eq!(
                kmcl_server_channel_init_set_target_interface_id(server, &ty, &INSTANCE),
                0
            );
            assert_eq!(
                kmcl_channel_init_set_process_packet_callbacks(server, Some(lu_hold), None),
                0
            );
            assert_eq!(
                kmcl_server_channel_init_set_save_restore_packet_callbacks(
                    server,
                    save,
                    Some(lu_restore)
                ),
                0
            );
            assert_eq!(
                kmcl_client_channel_init_set_target_pnp(client, &ty, &INSTANCE, None),
                0
            );
            assert_eq!(kmcl_channel_enable(server), 0);
            assert_eq!(kmcl_channel_start(server), 0);
            assert_eq!(kmcl_channel_enable(client), 0);
        }
        assert!(wait_until(|| running(client)));
        for tag in 0..3 {
            lu_send(client, tag);
        }
        assert!(wait_until(|| LU_HELD_N.load(Ordering::SeqCst) == 3));
        (server, client)
    }

    #[test]
    fn a_failed_save_gives_every_packet_back_and_delivery_resumes() {
        let (server, client) = lu_three_held(Guid { b: [0x3d; 16] }, Some(lu_save));
        // SAFETY: live handles; the packets completed are the server's,
        // held by its callback.
        unsafe {
            // The save fails after the packets were taken for it.
            crate::engine::channel::fail_next_save();
            assert_eq!(kmcl_channel_save_begin(server), -12);
            // Every packet is the driver's again, as it was: completing
            // each works and reaches its sender.
            for slot in LU_HELD.iter().take(3) {
                let p = slot.load(Ordering::SeqCst) as *mut KmclIncoming;
                assert_eq!(
                    kmcl_channel_packet_complete(p, b"answered".as_ptr().cast(), 8),
                    0
                );
            }
            assert!(wait_until(|| LU_DONE.load(Ordering::SeqCst) == 3));
            for r in LU_REPLIES.iter().take(3) {
                assert_eq!(r.load(Ordering::SeqCst), u64::from_le_bytes(*b"answered"));
            }
            // Delivery resumed.
            lu_send(client, 3);
            assert!(wait_until(|| LU_HELD_N.load(Ordering::SeqCst) == 4));
            let p = LU_HELD[3].load(Ordering::SeqCst) as *mut KmclIncoming;
            assert_eq!(kmcl_channel_packet_complete(p, core::ptr::null(), 0), 0);
            assert!(wait_until(|| LU_DONE.load(Ordering::SeqCst) == 4));
        }
        close_pair(server, client);
    }

    /// What completing a held packet from inside the save callback
    /// returned (1: not yet).
    static LU_IN_SAVE: AtomicI32 = AtomicI32::new(1);

    /// `EvtVmbChannelSavePacket` of a driver whose I/O completes while
    /// the save runs: the first call completes the third packet held.
    ///
    /// # Safety
    ///
    /// Called by kmcl as `EvtVmbChannelSavePacket`.
    unsafe extern "C" fn lu_save_racing(
        ch: *mut KmclChannel,
        packet: *mut KmclIncoming,
        buffer: *mut c_void,
        size: u32,
        needed: *mut u32,
    ) -> c_int {
        if LU_IN_SAVE.load(Ordering::SeqCst) == 1 {
            let third = LU_HELD[2].load(Ordering::SeqCst) as *mut KmclIncoming;
            // SAFETY: a packet this driver holds.
            let rc = unsafe { kmcl_channel_packet_complete(third, b"in-save!".as_ptr().cast(), 8) };
            LU_IN_SAVE.store(rc, Ordering::SeqCst);
        }
        // SAFETY: forwarded as kmcl called us.
        unsafe { lu_save(ch, packet, buffer, size, needed) }
    }

    #[test]
    fn a_completion_while_a_save_runs_is_not_lost() {
        LU_IN_SAVE.store(1, Ordering::SeqCst);
        let (server, client) = lu_three_held(Guid { b: [0x3e; 16] }, Some(lu_save_racing));
        // SAFETY: live handles; the packets completed are the server's,
        // held by its callback.
        unsafe {
            // The save fails in the end; meanwhile the driver completed
            // the third packet: that completion counts (0), reaches the
            // client, and the packet is not given back.
            crate::engine::channel::fail_next_save();
            assert_eq!(kmcl_channel_save_begin(server), -12);
            assert_eq!(LU_IN_SAVE.load(Ordering::SeqCst), 0);
            assert!(wait_until(|| LU_DONE.load(Ordering::SeqCst) == 1));
            assert_eq!(
                LU_REPLIES[2].load(Ordering::SeqCst),
                u64::from_le_bytes(*b"in-save!")
            );
            let third = LU_HELD[2].load(Ordering::SeqCst) as *mut KmclIncoming;
            assert_eq!(
                kmcl_channel_packet_complete(third, core::ptr::null(), 0),
                -22
            );
            // The other two are the driver's again.
            for slot in LU_HELD.iter().take(2) {
                let p = slot.load(Ordering::SeqCst) as *mut KmclIncoming;
                assert_eq!(
                    kmcl_channel_packet_complete(p, b"answered".as_ptr().cast(), 8),
                    0
                );
            }
            assert!(wait_until(|| LU_DONE.load(Ordering::SeqCst) == 3));
            for r in LU_REPLIES.iter().take(2) {
                assert_eq!(r.load(Ordering::SeqCst), u64::from_le_bytes(*b"answered"));
            }
        }
        close_pair(server, client);
    }
}

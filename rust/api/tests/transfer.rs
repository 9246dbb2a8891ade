// SPDX-License-Identifier: GPL-2.0

//! Transfer-page sets through the C ABI: a client registers its receive
//! buffer, the server writes frames into it through its mapping and sends
//! their ranges, the client reads them through the accessor.

use kernel::prelude::*;

#[kunit_tests(kmcl_abi_transfer)]
mod cases {
    use super::super::*;

    const SET: u16 = 0x1234;
    const SET_LEN: usize = 3 * 4096;

    /// The client's receive buffer (the set's memory), for its callback.
    static XFER_BUF: AtomicUsize = AtomicUsize::new(0);
    static XFER_GOOD: AtomicU32 = AtomicU32::new(0);
    static XFER_BAD: AtomicU32 = AtomicU32::new(0);

    fn pattern(tag: u8, at: usize) -> u8 {
        ((at % 251) as u8) ^ tag
    }

    /// Client: checks a transfer-page packet's ranges against the pattern
    /// its one-byte payload names, reading its own buffer, and completes
    /// it with that byte.
    ///
    /// # Safety
    ///
    /// Called by kmcl as `EvtVmbChannelProcessPacket`.
    unsafe extern "C" fn xfer_check(
        _ch: *mut KmclChannel,
        packet: *mut KmclIncoming,
        buffer: *const c_void,
        length: u32,
        flags: u32,
    ) {
        // SAFETY: the packet and its payload are live until completed;
        // the ranges kmcl gives live as long; the buffer is the test's,
        // alive while the channel is.
        unsafe {
            let tag = bytes(buffer, length).ok().and_then(|b| b.first().copied());
            let (mut set, mut ranges, mut count) = (0u16, core::ptr::null(), 0u32);
            let rc =
                kmcl_channel_packet_get_transfer_pages(packet, &mut set, &mut ranges, &mut count);
            let mut ok = rc == 0
                && flags == PROCESS_PACKET_FLAG_TRANSFER_PAGES
                && set == SET
                && count > 0
                && tag.is_some();
            if ok {
                let base = XFER_BUF.load(Ordering::SeqCst) as *const u8;
                let list: &[KmclTransferRange] =
                    core::slice::from_raw_parts(ranges, count as usize);
                for r in list {
                    let at = r.byte_offset as usize;
                    let data = core::slice::from_raw_parts(base.add(at), r.byte_count as usize);
                    let tag = tag.unwrap_or(0);
                    ok &= data
                        .iter()
                        .enumerate()
                        .all(|(i, b)| *b == pattern(tag, at + i));
                }
            }
            // An in-band packet has no ranges.
            if flags == 0 && rc == -61 {
                ok = true;
            }
            let c = if ok { &XFER_GOOD } else { &XFER_BAD };
            c.fetch_add(1, Ordering::SeqCst);
            let reply = [tag.unwrap_or(0)];
            kmcl_channel_packet_complete(packet, reply.as_ptr().cast(), 1);
        }
    }

    /// Server: completes every packet empty.
    ///
    /// # Safety
    ///
    /// Called by kmcl as `EvtVmbChannelProcessPacket`.
    unsafe extern "C" fn complete_empty(
        _ch: *mut KmclChannel,
        packet: *mut KmclIncoming,
        _buffer: *const c_void,
        _length: u32,
        _flags: u32,
    ) {
        // SAFETY: a lent handle.
        unsafe { kmcl_channel_packet_complete(packet, core::ptr::null(), 0) };
    }

    /// Writes frame `tag`'s pattern into `ranges` of the client's set
    /// through the server's mapping `mdl`.
    ///
    /// # Safety
    ///
    /// `mdl` is a live mapping of the whole set.
    unsafe fn fill(mdl: &KmclMdl, tag: u8, ranges: &[KmclTransferRange]) {
        for r in ranges {
            for i in 0..r.byte_count as usize {
                let at = r.byte_offset as usize + i;
                let pos = mdl.offset as usize + at;
                // SAFETY: `pos` is inside the mapping (the caller's
                // promise and the ranges' bounds).
                unsafe {
                    let page = *mdl.pages.add(pos / 4096);
                    crate::shmem::page_write(page.cast(), pos % 4096, &[pattern(tag, at)]);
                }
            }
        }
    }

    #[test]
    fn frames_reach_the_clients_set_through_the_c_abi() {
        XFER_GOOD.store(0, Ordering::SeqCst);
        XFER_BAD.store(0, Ordering::SeqCst);
        DONE_OK.store(0, Ordering::SeqCst);
        DONE_ERR.store(0, Ordering::SeqCst);
        let mut buf = kernel::alloc::VVec::<u8>::with_capacity(SET_LEN, GFP_KERNEL).unwrap();
        buf.resize(SET_LEN, 0, GFP_KERNEL).unwrap();
        XFER_BUF.store(buf.as_ptr() as usize, Ordering::SeqCst);
        let (mut server, mut client) = (core::ptr::null_mut(), core::ptr::null_mut());
        let wait = FORMAT_FLAG_WAIT_FOR_COMPLETION;
        // SAFETY: live handles; `buf` outlives the channels; every buffer
        // passed holds the length given.
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
                kmcl_channel_init_set_process_packet_callbacks(server, Some(complete_empty), None),
                0
            );
            assert_eq!(
                kmcl_client_channel_init_set_target_pnp(client, &TYPE, &INSTANCE, None),
                0
            );
            assert_eq!(
                kmcl_channel_init_set_process_packet_callbacks(client, Some(xfer_check), None),
                0
            );
            assert_eq!(kmcl_channel_enable(server), 0);
            assert_eq!(kmcl_channel_start(server), 0);
            assert_eq!(kmcl_channel_enable(client), 0);
            assert!(wait_until(|| running(client) && running(server)));

            let mut gpadl = 0u32;
            assert_eq!(
                kmcl_channel_create_gpadl_from_buffer(
                    client,
                    0,
                    buf.as_mut_ptr().cast(),
                    SET_LEN as u32,
                    &mut gpadl
                ),
                0
            );
            assert_eq!(
                kmcl_channel_register_transfer_page_set(client, gpadl + 1, SET),
                -2
            );
            assert_eq!(
                kmcl_channel_register_transfer_page_set(client, gpadl, SET),
                0
            );
            assert_eq!(
                kmcl_channel_register_transfer_page_set(client, gpadl, SET),
                -17
            );
            assert_eq!(kmcl_channel_delete_gpadl(client, gpadl), -16);
            let mut mdl = core::ptr::null_mut();
            assert_eq!(kmcl_channel_map_gpadl(server, 0, gpadl, &mut mdl), 0);
            let mdl = &*mdl;
            assert_eq!(mdl.length as usize, SET_LEN);

            // Twenty frames of two ranges each, one crossing a page.
            for tag in 1..=20u8 {
                let t = u32::from(tag);
                let ranges = [
                    KmclTransferRange {
                        byte_count: 100 + t,
                        byte_offset: t * 7,
                    },
                    KmclTransferRange {
                        byte_count: 500 + 13 * t,
                        byte_offset: 4096 - 250 + t * 33,
                    },
                ];
                fill(mdl, tag, &ranges);
                let p = kmcl_packet_allocate(server);
                kmcl_packet_set_completion_routine(p, Some(count_done));
                assert_eq!(
                    kmcl_packet_send_with_transfer_pages(
                        p,
                        SET,
                        ranges.as_ptr(),
                        2,
                        [tag].as_ptr().cast(),
                        1,
                        wait
                    ),
                    0
                );
                assert!(wait_until(|| DONE_OK.load(Ordering::SeqCst) == t));
            }
            assert_eq!(XFER_GOOD.load(Ordering::SeqCst), 20);
            assert_eq!(XFER_BAD.load(Ordering::SeqCst), 0);

            // Refused sends leave the packet with its driver.
            let p = kmcl_packet_allocate(server);
            kmcl_packet_set_completion_routine(p, Some(count_done));
            let one = [KmclTransferRange {
                byte_count: 1,
                byte_offset: 0,
            }];
            let outside = [KmclTransferRange {
                byte_count: 2,
                byte_offset: SET_LEN as u32 - 1,
            }];
            let none = core::ptr::null();
            for (set, ranges, count, flags) in [
                (SET + 1, one.as_ptr(), 1, wait),
                (SET, outside.as_ptr(), 1, wait),
                (SET, one.as_ptr(), 0, wait),
                (SET, one.as_ptr(), 1025, wait),
                (SET, none, 1, wait),
                (SET, one.as_ptr(), 1, 0x2),
            ] {
                assert_eq!(
                    kmcl_packet_send_with_transfer_pages(
                        p,
                        set,
                        ranges,
                        count,
                        core::ptr::null(),
                        0,
                        flags
                    ),
                    -22
                );
            }
            // The same packet, now right.
            assert_eq!(
                kmcl_packet_send_with_transfer_pages(
                    p,
                    SET,
                    one.as_ptr(),
                    1,
                    [0u8].as_ptr().cast(),
                    1,
                    0
                ),
                0
            );
            assert!(wait_until(|| XFER_GOOD.load(Ordering::SeqCst) == 21));
            // An in-band packet to the client: no ranges (-ENODATA).
            send_counted(server, 1, b"in-band");
            assert!(wait_until(|| DONE_OK.load(Ordering::SeqCst) == 1));
            assert_eq!(XFER_GOOD.load(Ordering::SeqCst), 22);
            assert_eq!(DONE_ERR.load(Ordering::SeqCst), 0);

            assert_eq!(kmcl_channel_unmap_gpadl(server, gpadl), 0);
            assert_eq!(kmcl_channel_unregister_transfer_page_set(client, SET), 0);
            assert_eq!(kmcl_channel_unregister_transfer_page_set(client, SET), -2);
            assert_eq!(kmcl_channel_delete_gpadl(client, gpadl), 0);
        }
        close_pair(server, client);
        XFER_BUF.store(0, Ordering::SeqCst);
        drop(buf);
    }
}

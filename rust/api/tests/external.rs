// SPDX-License-Identifier: GPL-2.0

//! Multi-range external data through the C ABI: MDL chains (with an offset
//! and length across the chain) and page-buffer arrays go out as one GPA
//! range per piece and arrive as a chain of `struct kmcl_mdl`; a receiver's
//! maximum chain length is enforced.

use kernel::prelude::*;

#[kunit_tests(kmcl_abi_external)]
mod cases {
    use super::super::*;
    use crate::engine::types::CloseReason;

    /// Ranges the server saw in the last packet: (length, first byte);
    /// `CHAIN_BAD` counts ranges whose bytes did not run on consecutively.
    static CHAIN: [AtomicU32; 16] = [const { AtomicU32::new(0) }; 16];
    static CHAIN_LEN: AtomicU32 = AtomicU32::new(0);
    static CHAIN_BAD: AtomicU32 = AtomicU32::new(0);
    static SEEN: AtomicU32 = AtomicU32::new(0);

    /// The buffer's pattern: the byte at offset `at` is `at % 251`.
    fn pattern(at: usize) -> u8 {
        (at % 251) as u8
    }

    /// Server: walks the packet's MDL chain, records each range's length
    /// and first byte, checks that its bytes run on as the buffer's
    /// pattern does, then completes it.
    ///
    /// # Safety
    ///
    /// Called by kmcl as `EvtVmbChannelProcessPacket`.
    unsafe extern "C" fn chain_check(
        _ch: *mut KmclChannel,
        packet: *mut KmclIncoming,
        _buffer: *const c_void,
        _length: u32,
        flags: u32,
    ) {
        // SAFETY: the packet is live until completed; the chain kmcl gives
        // lives as long.
        unsafe {
            let mut mdl = core::ptr::null_mut();
            let rc = kmcl_channel_packet_get_external_data(packet, 0, &mut mdl);
            let mut n = 0usize;
            if rc == 0 && flags & PROCESS_PACKET_FLAG_EXTERNAL_DATA != 0 {
                while !mdl.is_null() && n < CHAIN.len() {
                    let m = &*mdl;
                    let pages = m.pages.cast::<*mut crate::shmem::Page>();
                    let mut prev = None;
                    for k in 0..m.length as usize {
                        let pos = m.offset as usize + k;
                        let mut b = [0u8];
                        crate::shmem::page_read(*pages.add(pos / 4096), pos % 4096, &mut b);
                        if let Some(p) = prev {
                            if b[0] != (p + 1) % 251 {
                                CHAIN_BAD.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                        }
                        prev = Some(b[0]);
                    }
                    let first = u32::from(prev.map_or(0, |_| {
                        let mut b = [0u8];
                        crate::shmem::page_read(
                            *pages.add(m.offset as usize / 4096),
                            m.offset as usize % 4096,
                            &mut b,
                        );
                        b[0]
                    }));
                    CHAIN[n].store(m.length << 8 | first, Ordering::SeqCst);
                    n += 1;
                    mdl = m.next;
                }
            }
            CHAIN_LEN.store(n as u32, Ordering::SeqCst);
            SEEN.fetch_add(1, Ordering::SeqCst);
            kmcl_channel_packet_complete(packet, core::ptr::null(), 0);
        }
    }

    /// The ranges of the last packet: (length, first byte).
    fn seen() -> KVec<(u32, u8)> {
        let mut v = KVec::new();
        for c in CHAIN.iter().take(CHAIN_LEN.load(Ordering::SeqCst) as usize) {
            let w = c.load(Ordering::SeqCst);
            let _ = v.push((w >> 8, w as u8), GFP_KERNEL);
        }
        v
    }

    /// Sends with `send` on a fresh packet of `client` and waits for the
    /// server's `n`-th packet.
    fn sent(client: *mut KmclChannel, n: u32, send: impl FnOnce(*mut KmclPacket) -> c_int) {
        // SAFETY: a live channel.
        let p = unsafe { kmcl_packet_allocate(client) };
        // SAFETY: a new packet.
        unsafe { kmcl_packet_set_completion_routine(p, Some(count_done)) };
        assert_eq!(send(p), 0);
        assert!(wait_until(
            || SEEN.load(Ordering::SeqCst) == n && DONE_OK.load(Ordering::SeqCst) == n
        ));
    }

    #[test]
    fn mdl_chains_and_page_buffers_arrive_as_chains() {
        SEEN.store(0, Ordering::SeqCst);
        CHAIN_BAD.store(0, Ordering::SeqCst);
        DONE_OK.store(0, Ordering::SeqCst);
        DONE_ERR.store(0, Ordering::SeqCst);
        let (server, client) =
            pair_owned(core::ptr::null_mut(), core::ptr::null_mut(), chain_check);
        // SAFETY: a live server handle, disabled and enabled again with a
        // longer chain allowed (the pair allows one range).
        unsafe {
            assert_eq!(kmcl_channel_disable(client), 0);
            assert_eq!(kmcl_channel_disable(server), 0);
            assert_eq!(
                kmcl_channel_init_set_maximum_external_data(server, 1 << 20, 8),
                0
            );
            assert_eq!(kmcl_channel_enable(server), 0);
            assert_eq!(kmcl_channel_start(server), 0);
            assert_eq!(kmcl_channel_enable(client), 0);
        }
        assert!(wait_until(|| running(client) && running(server)));
        // Five pages of vmalloc memory with the pattern.
        let mut buf = kernel::alloc::VVec::<u8>::with_capacity(5 * 4096, GFP_KERNEL).unwrap();
        for i in 0..5 * 4096 {
            buf.push(pattern(i), GFP_KERNEL).unwrap();
        }
        let base = buf.as_ptr() as usize;
        // SAFETY: `buf` outlives every send (each waited for).
        let whole = unsafe { GpadlPages::from_buffer(base, 5 * 4096) }.unwrap();
        let v = whole.mdl_view();
        // SAFETY: the view's page array holds five pages.
        let page = |i: usize| unsafe { *v.pages.add(i) };
        let pfn = |i: usize| whole.pfns().nth(i).unwrap_or(0);
        let mut pages = [page(0), page(1), page(2), page(3), page(4)];
        let pp = pages.as_mut_ptr().cast::<*mut crate::api::abi::Page>();
        // A: 3000 bytes from 100 (page 0); B: page 2 whole; C: 5000 bytes
        // from 50 of page 3 (into page 4).
        let mut c = KmclMdl {
            // SAFETY: inside `pages`.
            pages: unsafe { pp.add(3) },
            nr_pages: 2,
            offset: 50,
            length: 5000,
            next: core::ptr::null_mut(),
        };
        let mut b = KmclMdl {
            // SAFETY: inside `pages`.
            pages: unsafe { pp.add(2) },
            nr_pages: 1,
            offset: 0,
            length: 4096,
            next: &mut c,
        };
        let a = KmclMdl {
            pages: pp,
            nr_pages: 1,
            offset: 100,
            length: 3000,
            next: &mut b,
        };
        let wait = FORMAT_FLAG_WAIT_FOR_COMPLETION;
        // SAFETY: live handles; the MDLs, page buffers and `buf` outlive
        // the send, which is waited for.
        sent(client, 1, |p| unsafe {
            kmcl_packet_send_with_external_mdl(p, [1u8].as_ptr().cast(), 1, &a, 0, 0, wait)
        });
        let want = [
            (3000, pattern(100)),
            (4096, pattern(2 * 4096)),
            (5000, pattern(3 * 4096 + 50)),
        ];
        assert!(seen()[..] == want[..]);
        // 4000 bytes from offset 2000 of the chain: the end of A, most of B.
        // SAFETY: live handles; the MDLs, page buffers and `buf` outlive
        // the send, which is waited for.
        sent(client, 2, |p| unsafe {
            kmcl_packet_send_with_external_mdl(p, [2u8].as_ptr().cast(), 1, &a, 2000, 4000, wait)
        });
        assert!(seen()[..] == [(1000, pattern(2100)), (3000, pattern(2 * 4096))][..]);
        // The chain through VmbPacketSend, and FORCE_MDL_LENGTH (the first
        // MDL only, up to the end of its page).
        // SAFETY: live handles; the MDLs, page buffers and `buf` outlive
        // the send, which is waited for.
        sent(client, 3, |p| unsafe {
            kmcl_packet_send(p, [3u8].as_ptr().cast(), 1, &b, wait)
        });
        assert!(seen()[..] == [want[1], want[2]][..]);
        let force = wait | crate::api::abi::FORMAT_FLAG_FORCE_MDL_LENGTH;
        // SAFETY: live handles; the MDLs, page buffers and `buf` outlive
        // the send, which is waited for.
        sent(client, 4, |p| unsafe {
            kmcl_packet_send_with_external_mdl(p, [4u8].as_ptr().cast(), 1, &a, 0, 3996, force)
        });
        assert!(seen()[..] == [(3996, pattern(100))][..]);
        // Page buffers: three pieces of three pages, in the order given.
        let pb = [
            KmclPageBuffer {
                len: 20,
                offset: 10,
                pfn: pfn(1),
            },
            KmclPageBuffer {
                len: 96,
                offset: 4000,
                pfn: pfn(3),
            },
            KmclPageBuffer {
                len: 4096,
                offset: 0,
                pfn: pfn(0),
            },
        ];
        // SAFETY: live handles; the MDLs, page buffers and `buf` outlive
        // the send, which is waited for.
        sent(client, 5, |p| unsafe {
            kmcl_packet_send_with_page_buffers(p, [5u8].as_ptr().cast(), 1, pb.as_ptr(), 3, wait)
        });
        let want_pb = [
            (20, pattern(4096 + 10)),
            (96, pattern(3 * 4096 + 4000)),
            (4096, pattern(0)),
        ];
        assert!(seen()[..] == want_pb[..]);
        // A synchronous request with the chain.
        let mut reply = [0u8; 8];
        let mut len = reply.len() as u32;
        // SAFETY: as above.
        unsafe {
            assert_eq!(
                kmcl_channel_send_synchronous_request(
                    client,
                    [6u8].as_ptr().cast(),
                    1,
                    &a,
                    wait,
                    reply.as_mut_ptr().cast(),
                    &mut len,
                    &5000,
                ),
                0
            );
        }
        assert!(seen()[..] == want[..]);
        assert_eq!(CHAIN_BAD.load(Ordering::SeqCst), 0);

        // Refused: the packet is the caller's again.
        // SAFETY: as above; every call is refused before anything is sent.
        unsafe {
            let p = kmcl_packet_allocate(client);
            let mut empty = KmclMdl { length: 0, ..c };
            let with_empty = KmclMdl {
                next: &mut empty,
                ..c
            };
            let bad_pb = [KmclPageBuffer {
                len: 97,
                offset: 4000,
                pfn: pfn(3),
            }];
            let many = [pb[0]; 257];
            let none = KmclPageBuffer {
                len: 0,
                offset: 0,
                pfn: pfn(0),
            };
            let one = [0u8].as_ptr().cast();
            for rc in [
                kmcl_packet_send_with_external_mdl(p, one, 1, &with_empty, 0, 0, wait),
                kmcl_packet_send_with_external_mdl(p, one, 1, &a, 12096, 1, wait),
                kmcl_packet_send_with_external_mdl(p, one, 1, &a, 12000, 97, wait),
                kmcl_packet_send_with_page_buffers(p, one, 1, bad_pb.as_ptr(), 1, wait),
                kmcl_packet_send_with_page_buffers(p, one, 1, many.as_ptr(), 257, wait),
                kmcl_packet_send_with_page_buffers(p, one, 1, &none, 1, wait),
                kmcl_packet_send_with_page_buffers(p, one, 1, pb.as_ptr(), 0, wait),
                kmcl_packet_send_with_page_buffers(p, one, 1, pb.as_ptr(), 3, 0),
            ] {
                assert_eq!(rc, -22);
            }
            kmcl_packet_free(p);
            // A GPADL is one buffer: no chain.
            let mut handle = 0u32;
            assert_eq!(
                kmcl_channel_create_gpadl_from_mdl(client, 0, &a, 0, 0, &mut handle),
                -22
            );
        }
        assert_eq!(SEEN.load(Ordering::SeqCst), 6);

        // Nine ranges to a server that takes eight: its reader refuses the
        // packet and the channel closes.
        let nine = [pb[0]; 9];
        // SAFETY: as above.
        unsafe {
            let p = kmcl_packet_allocate(client);
            kmcl_packet_set_completion_routine(p, Some(count_done));
            assert_eq!(
                kmcl_packet_send_with_page_buffers(
                    p,
                    [9u8].as_ptr().cast(),
                    1,
                    nine.as_ptr(),
                    9,
                    wait
                ),
                0
            );
        }
        // SAFETY: a live handle.
        let s = unsafe { handle(server) }
            .map(|h| h.channel.clone())
            .unwrap();
        assert!(wait_until(|| s.snapshot().failures == 1 && !running(client)));
        assert_eq!(
            s.snapshot().last_failure,
            Some(CloseReason::BadExternalData)
        );
        assert!(wait_until(|| DONE_ERR.load(Ordering::SeqCst) == 1));
        assert_eq!(SEEN.load(Ordering::SeqCst), 6);
        // SAFETY: live handles, cleaned up once.
        unsafe {
            kmcl_channel_disable(client);
            kmcl_channel_disable(server);
            kmcl_channel_cleanup(client);
            kmcl_channel_cleanup(server);
        }
        drop(whole);
        drop(buf);
    }
}

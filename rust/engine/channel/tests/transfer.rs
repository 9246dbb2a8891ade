// SPDX-License-Identifier: GPL-2.0

//! Transfer-page sets: a client registers a GPADL as a set, its server
//! delivers data into it by range (type-7 packets), and packets that name
//! what the client did not register close the channel.

use kernel::prelude::*;

#[kunit_tests(kmcl_channel_transfer)]
mod cases {
    use super::super::*;
    use crate::engine::datapath::{
        Routine,
        MAX_TRANSFER_SETS, //
    };
    use crate::engine::types::CloseReason;
    use crate::protocol::ring::RingMemory;
    use crate::protocol::xfer::XferRange;
    use crate::shmem::GpadlPages;
    use kernel::alloc::VVec;

    const SET: u16 = 0xcafe;
    const SET_LEN: usize = 64 * 1024;

    /// The byte at `at` of frame `frame`'s data.
    fn byte(frame: u32, at: usize) -> u8 {
        (at as u32)
            .wrapping_mul(31)
            .wrapping_add(frame.wrapping_mul(7)) as u8
    }

    /// The ranges of frame `frame`: one to three pieces at offsets that
    /// move through the set, some crossing page boundaries. No allocation
    /// (the client's callback runs in softirq context).
    fn ranges_of(frame: u32) -> ([XferRange; 3], usize) {
        let mut v = [XferRange { offset: 0, len: 0 }; 3];
        let n = 1 + frame % 3;
        for k in 0..n {
            let len = 1 + frame.wrapping_mul(977).wrapping_add(k * 331) % 3000;
            let offset = frame.wrapping_mul(4099).wrapping_add(k * 9001) % (SET_LEN as u32 - len);
            v[k as usize] = XferRange { offset, len };
        }
        (v, n as usize)
    }

    /// Client side: checks every range of a transfer-page packet against
    /// the frame its payload names, reading the client's own buffer, then
    /// completes it.
    struct Frames {
        /// The client's view of its set's memory.
        set: GpadlPages,
        good: AtomicU32,
        bad: AtomicU32,
    }

    impl Frames {
        /// A client reading the set in `buf`.
        fn over(buf: &VVec<u8>) -> Result<Arc<Self>> {
            Ok(Arc::new(
                Frames {
                    set: pages_of(buf)?,
                    good: AtomicU32::new(0),
                    bad: AtomicU32::new(0),
                },
                GFP_KERNEL,
            )?)
        }
    }

    impl PacketCallbacks for Frames {
        fn process_packet(&self, _channel: &Arc<Channel>, packet: IncomingPacket) {
            let frame = match packet.data() {
                [a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]),
                _ => u32::MAX,
            };
            let (all, n) = ranges_of(frame);
            let want = &all[..n];
            let ok = match packet.object().transfer_pages() {
                Some((set, list, n)) if set == SET && n as usize == want.len() => {
                    list.chunks(8).zip(want.iter()).all(|(raw, w)| {
                        let len = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
                        let offset = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
                        let mut got = [0u8; 3000];
                        let Some(got) = got.get_mut(..len as usize) else {
                            return false;
                        };
                        len == w.len
                            && offset == w.offset
                            && self.set.read(offset as usize, got).is_ok()
                            && got
                                .iter()
                                .enumerate()
                                .all(|(i, b)| *b == byte(frame, offset as usize + i))
                    })
                }
                _ => false,
            };
            if ok {
                self.good.fetch_add(1, Ordering::SeqCst);
            } else {
                self.bad.fetch_add(1, Ordering::SeqCst);
            }
            let _ = packet.complete(&frame.to_le_bytes());
        }
    }

    /// A sender's routine: counts completions.
    struct Count(Arc<AtomicU32>);

    impl SendCompletion for Count {
        fn complete(&mut self, status: Result, _data: &[u8]) {
            if status.is_ok() {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    fn counting(n: &Arc<AtomicU32>) -> Result<Routine> {
        Ok(KBox::new(Count(n.clone()), GFP_KERNEL)?.into())
    }

    /// A server and a client delivering to `client_callbacks`, connected.
    fn pair_to(
        bus: &Arc<LoopbackBus>,
        client_callbacks: Arc<dyn PacketCallbacks>,
    ) -> Result<(Arc<Channel>, Arc<Channel>)> {
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        server.set_packet_callbacks(Arc::new(Echo, GFP_KERNEL)?)?;
        let client = Channel::new(Role::Client, bus.clone())?;
        client.configure(|s| s.interface_type = TYPE)?;
        client.set_packet_callbacks(client_callbacks)?;
        open(&server, &client)?;
        Ok((server, client))
    }

    /// A zeroed vmalloc buffer of the set's size.
    fn set_buffer() -> Result<VVec<u8>> {
        let mut buf = VVec::<u8>::with_capacity(SET_LEN, GFP_KERNEL)?;
        buf.resize(SET_LEN, 0, GFP_KERNEL)?;
        Ok(buf)
    }

    fn pages_of(buf: &VVec<u8>) -> Result<GpadlPages> {
        // SAFETY: every test's buffer outlives its GPADL (deleted, or
        // released by kmcl at the close, before the buffer is dropped).
        unsafe { GpadlPages::from_buffer(buf.as_ptr() as usize, buf.len()) }
    }

    #[test]
    fn frames_cross_a_transfer_page_set_byte_exact() -> Result {
        let bus = LoopbackBus::new()?;
        let buf = set_buffer()?;
        let frames = Frames::over(&buf)?;
        let (server, client) = pair_to(&bus, frames.clone())?;
        let gpadl = client.create_gpadl(pages_of(&buf)?, false)?;
        client.register_transfer_set(SET, gpadl)?;
        assert_eq!(client.snapshot().transfer_sets, 1);
        let set = server.map_gpadl(gpadl, true)?;
        assert_eq!(set.len(), SET_LEN);
        let done = Arc::new(AtomicU32::new(0), GFP_KERNEL)?;
        const FRAMES: u32 = 300;
        for frame in 0..FRAMES {
            let (all, n) = ranges_of(frame);
            let ranges = &all[..n];
            for r in ranges.iter() {
                let mut data = KVec::with_capacity(r.len as usize, GFP_KERNEL)?;
                for i in 0..r.len as usize {
                    data.push(byte(frame, r.offset as usize + i), GFP_KERNEL)?;
                }
                set.write(r.offset as usize, &data)?;
            }
            let routine = counting(&done)?;
            server.send_transfer_pages(SET, ranges, &frame.to_le_bytes(), true, routine)?;
            // The ranges are free again once the client completed them.
            assert!(wait_until(|| done.load(Ordering::SeqCst) == frame + 1));
        }
        assert_eq!(frames.good.load(Ordering::SeqCst), FRAMES);
        assert_eq!(frames.bad.load(Ordering::SeqCst), 0);
        // Without a completion request the routine runs once written.
        let routine = counting(&done)?;
        let one = [XferRange { offset: 0, len: 8 }];
        server.send_transfer_pages(SET, &one, &u32::MAX.to_le_bytes(), false, routine)?;
        assert!(wait_until(|| frames.bad.load(Ordering::SeqCst) == 1));
        assert_eq!(done.load(Ordering::SeqCst), FRAMES + 1);
        assert_eq!(client.counters().packets_in, u64::from(FRAMES) + 1);
        assert_eq!(client.snapshot().failures, 0);
        server.unmap_gpadl(gpadl)?;
        client.unregister_transfer_set(SET)?;
        client.delete_gpadl(gpadl)?;
        close(client, server)
    }

    #[test]
    fn sends_and_registrations_that_cannot_be_are_refused() -> Result {
        let bus = LoopbackBus::new()?;
        let buf = set_buffer()?;
        let frames = Frames::over(&buf)?;
        let (server, client) = pair_to(&bus, frames.clone())?;
        let gpadl = client.create_gpadl(pages_of(&buf)?, false)?;
        let done = Arc::new(AtomicU32::new(0), GFP_KERNEL)?;
        let one = [XferRange { offset: 0, len: 1 }];
        // Not registered yet: nothing to send into.
        assert_eq!(
            server.send_transfer_pages(SET, &one, &[], true, counting(&done)?),
            Err(EINVAL)
        );
        assert_eq!(client.register_transfer_set(SET, gpadl + 100), Err(ENOENT));
        assert_eq!(server.register_transfer_set(SET, gpadl), Err(EINVAL));
        client.register_transfer_set(SET, gpadl)?;
        assert_eq!(client.register_transfer_set(SET, gpadl), Err(EEXIST));
        // A set stays until unregistered: its GPADL cannot go meanwhile.
        assert_eq!(client.delete_gpadl(gpadl), Err(EBUSY));
        // Ranges past the set, empty ranges, no ranges, too many ranges,
        // an unknown set, and the client sending into the server (which
        // registers none).
        let bad: [&[XferRange]; 4] = [
            &[XferRange {
                offset: SET_LEN as u32 - 10,
                len: 11,
            }],
            &[XferRange { offset: 0, len: 0 }],
            &[],
            &[XferRange { offset: 0, len: 1 }; 1025],
        ];
        for ranges in bad {
            assert_eq!(
                server.send_transfer_pages(SET, ranges, &[], true, counting(&done)?),
                Err(EINVAL)
            );
        }
        assert_eq!(
            server.send_transfer_pages(SET + 1, &one, &[], true, counting(&done)?),
            Err(EINVAL)
        );
        assert_eq!(
            client.send_transfer_pages(SET, &one, &[], true, counting(&done)?),
            Err(EINVAL)
        );
        // The whole set, and 1024 ranges, are fine.
        let whole = [XferRange {
            offset: 0,
            len: SET_LEN as u32,
        }];
        server.send_transfer_pages(SET, &whole, &[], true, counting(&done)?)?;
        let mut many = KVec::new();
        for i in 0..1024u32 {
            many.push(
                XferRange {
                    offset: i * 8,
                    len: 8,
                },
                GFP_KERNEL,
            )?;
        }
        server.send_transfer_pages(SET, &many, &[], true, counting(&done)?)?;
        assert!(wait_until(|| done.load(Ordering::SeqCst) == 2));
        assert_eq!(client.snapshot().failures, 0);
        // Up to 64 sets (the GPADL may back several).
        for id in 1..MAX_TRANSFER_SETS as u16 {
            client.register_transfer_set(id, gpadl)?;
        }
        assert_eq!(client.register_transfer_set(999, gpadl), Err(ENOSPC));
        for id in 1..MAX_TRANSFER_SETS as u16 {
            client.unregister_transfer_set(id)?;
        }
        client.unregister_transfer_set(SET)?;
        assert_eq!(client.unregister_transfer_set(SET), Err(ENOENT));
        assert_eq!(
            server.send_transfer_pages(SET, &one, &[], true, counting(&done)?),
            Err(EINVAL)
        );
        client.delete_gpadl(gpadl)?;
        // Sets end with the connection.
        let again = client.create_gpadl(pages_of(&buf)?, false)?;
        client.register_transfer_set(SET, again)?;
        client.disable()?;
        assert_eq!(client.snapshot().transfer_sets, 0);
        server.disable()?;
        client.cleanup()?;
        server.cleanup()
    }

    /// (set id, claimed range count, ranges as (byte count, byte offset)).
    type Forged<'a> = (u16, u32, &'a [(u32, u32)]);

    /// A transfer-page packet written straight into the client's incoming
    /// ring: `ranges` as (byte count, byte offset) of set `set`, with
    /// `count` as the claimed number of ranges.
    fn forge(client: &Arc<Channel>, set: u16, count: u32, ranges: &[(u32, u32)]) -> Result {
        let s2c = client.connection_rings().ok_or(EINVAL)?.1;
        let w = s2c.control()[0].load(Ordering::SeqCst);
        let header = 8 + 8 * ranges.len();
        let len = 16 + header;
        let mut p = KVec::from_elem(0u8, len + 8, GFP_KERNEL)?;
        p[0..2].copy_from_slice(&7u16.to_le_bytes());
        p[2..4].copy_from_slice(&((len / 8) as u16).to_le_bytes());
        p[4..6].copy_from_slice(&((len / 8) as u16).to_le_bytes());
        // No completion requested: the client's completion would be a
        // forged one to the server.
        p[16..18].copy_from_slice(&set.to_le_bytes());
        p[20..24].copy_from_slice(&count.to_le_bytes());
        for (i, (bytes, offset)) in ranges.iter().enumerate() {
            let at = 24 + 8 * i;
            p[at..at + 4].copy_from_slice(&bytes.to_le_bytes());
            p[at + 4..at + 8].copy_from_slice(&offset.to_le_bytes());
        }
        p[len + 4..].copy_from_slice(&w.to_le_bytes());
        s2c.write_data(w as usize, &p);
        s2c.control()[0].store(w + p.len() as u32, Ordering::SeqCst);
        client.kick_rx();
        Ok(())
    }

    /// A sender naming a set the client did not register, a range outside
    /// its set, too many ranges, an empty range or a count the header
    /// does not hold: the client's reader refuses the packet and closes
    /// the channel, saying why; a valid packet first goes through.
    #[test]
    fn bad_transfer_page_packets_close_the_channel_with_their_reason() -> Result {
        let too_many = KVec::from_elem((8u32, 0u32), 1025, GFP_KERNEL)?;
        let cases: [Forged<'_>; 6] = [
            (SET, 1, &[(8, 0)]),
            (SET + 1, 1, &[(8, 0)]),
            (SET, 1, &[(11, SET_LEN as u32 - 10)]),
            (SET, 1025, &too_many),
            (SET, 1, &[(0, 0)]),
            (SET, 3, &[(8, 0)]),
        ];
        for (i, (set, count, ranges)) in cases.into_iter().enumerate() {
            let bus = LoopbackBus::new()?;
            let buf = set_buffer()?;
            let frames = Frames::over(&buf)?;
            let (server, client) = pair_to(&bus, frames.clone())?;
            let gpadl = client.create_gpadl(pages_of(&buf)?, false)?;
            client.register_transfer_set(SET, gpadl)?;
            forge(&client, set, count, ranges)?;
            if i == 0 {
                // Valid: delivered (its payload names no frame).
                assert!(wait_until(|| frames.bad.load(Ordering::SeqCst) == 1));
                assert_eq!(client.snapshot().failures, 0);
                assert!(client.is_running());
            } else {
                assert!(wait_until(
                    || !client.is_enabled() && !server.snapshot().connected
                ));
                let s = client.snapshot();
                assert_eq!(s.failures, 1);
                assert_eq!(s.last_failure, Some(CloseReason::BadTransferPages));
                assert_eq!(frames.bad.load(Ordering::SeqCst), 0);
                assert_eq!(frames.good.load(Ordering::SeqCst), 0);
            }
            if client.is_enabled() {
                client.disable()?;
            }
            server.disable()?;
            client.cleanup()?;
            server.cleanup()?;
            drop(buf);
        }
        Ok(())
    }
}

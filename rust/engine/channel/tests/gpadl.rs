// SPDX-License-Identifier: GPL-2.0

//! GPADLs and external data between a loopback client and server.

use kernel::prelude::*;

#[kunit_tests(kmcl_channel_gpadl)]
mod cases {
    use crate::engine::channel::{
        Channel,
        GpadlCounts, //
    };
    use crate::protocol::lifecycle::Role;
    use crate::shmem::{
        External,
        GpadlPages, //
    };
    use crate::transport::loopback::LoopbackBus;
    use core::sync::atomic::{
        AtomicBool,
        Ordering, //
    };
    use kernel::alloc::VVec;
    use kernel::time::{
        delay::fsleep,
        Delta, //
    };
    use kernel::{
        prelude::*,
        sync::Arc, //
    };

    use crate::engine::testing::{
        channel_pair,
        close_pair,
        connect,
        wait_until as wait, //
    };

    const TYPE: [u8; 16] = [0x6d; 16];

    // The tests' GPADLs are made from buffers that outlive them: each is
    // deleted (by the test, or by kmcl when the channel closes) before its
    // buffer is dropped, which is what `GpadlPages::from_buffer` requires.

    /// A GPADL's pages from `len` bytes at `addr`.
    fn pages_of(addr: usize, len: usize) -> Result<GpadlPages> {
        // SAFETY: the tests' buffers outlive their GPADLs (see above).
        unsafe { GpadlPages::from_buffer(addr, len) }
    }

    /// A connected (server, client) pair on a private bus.
    fn pair() -> Result<(Arc<Channel>, Arc<Channel>)> {
        channel_pair(&LoopbackBus::new()?, TYPE, None)
    }

    fn close(server: Arc<Channel>, client: Arc<Channel>) -> Result {
        close_pair(client, server)
    }

    fn byte(i: usize, salt: u8) -> u8 {
        (i ^ (i >> 9)) as u8 ^ salt
    }

    #[test]
    fn data_crosses_a_gpadl_byte_exact_both_ways() -> Result {
        let (server, client) = pair()?;
        // 1 byte to 3 MiB, starting at unaligned offsets of vmalloc memory.
        for (len, off) in [
            (1usize, 0usize),
            (100, 3),
            (4096, 0),
            (4097, 4095),
            (3 << 20, 123),
        ] {
            let mut buf = VVec::<u8>::with_capacity(len + off, GFP_KERNEL)?;
            for i in 0..len + off {
                buf.push(byte(i, 0), GFP_KERNEL)?;
            }
            let addr = buf.as_ptr() as usize + off;
            let h = client.create_gpadl(pages_of(addr, len)?, false)?;
            let pages = server.map_gpadl(h, true)?;
            assert_eq!(pages.len(), len);
            // The server reads what the client wrote...
            let mut seen = VVec::<u8>::from_elem(0, len, GFP_KERNEL)?;
            pages.read(0, &mut seen)?;
            assert!((0..len).all(|i| seen[i] == byte(i + off, 0)));
            // ...and writes back, the client reads it in its own buffer.
            for (i, b) in seen.iter_mut().enumerate() {
                *b = byte(i + off, 0x5a);
            }
            pages.write(0, &seen)?;
            let base = buf.as_ptr();
            let changed = (0..len).all(|i| {
                // SAFETY: `i + off` is within `buf`; read volatile since
                // the server wrote it through another mapping.
                unsafe { core::ptr::read_volatile(base.add(i + off)) == byte(i + off, 0x5a) }
            });
            assert!(changed);
            // Out of range is refused.
            assert_eq!(pages.read(len, &mut [0u8; 1]), Err(EINVAL));
            server.unmap_gpadl(h)?;
            client.delete_gpadl(h)?;
        }
        close(server, client)
    }

    #[test]
    fn the_rules_of_mapping() -> Result {
        let (server, client) = pair()?;
        let buf = KVec::from_elem(7u8, 64, GFP_KERNEL)?;
        let addr = buf.as_ptr() as usize;
        let ro = client.create_gpadl(pages_of(addr, 64)?, true)?;
        let rw = client.create_gpadl(pages_of(addr, 64)?, false)?;
        assert_ne!(ro, rw);
        // A read-only GPADL is not mapped for writing, but for reading.
        assert_eq!(server.map_gpadl(ro, true).err(), Some(EACCES));
        let m = server.map_gpadl(ro, false)?;
        let mut b = [0u8; 64];
        m.read(0, &mut b)?;
        assert!(b.iter().all(|x| *x == 7));
        // One mapping at a time.
        assert_eq!(server.map_gpadl(ro, false).err(), Some(EBUSY));
        // Unknown handles; the wrong role.
        assert_eq!(server.map_gpadl(0x7777, false).err(), Some(ENOENT));
        assert_eq!(server.unmap_gpadl(rw), Err(ENOENT));
        assert_eq!(client.delete_gpadl(0x7777), Err(ENOENT));
        assert_eq!(client.map_gpadl(rw, false).err(), Some(EINVAL));
        assert_eq!(
            server.create_gpadl(pages_of(addr, 64)?, false).err(),
            Some(EINVAL)
        );
        // Not memory kmcl can reference.
        assert_eq!(pages_of(0x1000, 64).err(), Some(EINVAL));
        assert_eq!(pages_of(addr, 0).err(), Some(EINVAL));
        server.unmap_gpadl(ro)?;
        client.delete_gpadl(ro)?;
        client.delete_gpadl(rw)?;
        close(server, client)?;
        // Not connected.
        let (server, client) = pair()?;
        client.disable()?;
        assert_eq!(
            client.create_gpadl(pages_of(addr, 64)?, false).err(),
            Some(ENOTCONN)
        );
        server.disable()?;
        client.cleanup()?;
        server.cleanup()
    }

    #[test]
    fn delete_waits_while_the_server_has_it_mapped() -> Result {
        let (server, client) = pair()?;
        let buf = KVec::from_elem(1u8, 8192, GFP_KERNEL)?;
        let h = client.create_gpadl(pages_of(buf.as_ptr() as usize, 8192)?, false)?;
        let _m = server.map_gpadl(h, true)?;
        let deleted = Arc::new(AtomicBool::new(false), GFP_KERNEL)?;
        let (c, d) = (client.clone(), deleted.clone());
        kernel::workqueue::system().try_spawn(GFP_KERNEL, move || {
            if c.delete_gpadl(h).is_ok() {
                d.store(true, Ordering::SeqCst);
            }
        })?;
        fsleep(Delta::from_millis(200));
        assert!(!deleted.load(Ordering::SeqCst));
        server.unmap_gpadl(h)?;
        assert!(wait(|| deleted.load(Ordering::SeqCst)));
        close(server, client)
    }

    #[test]
    fn closing_releases_what_the_drivers_left() -> Result {
        let (server, client) = pair()?;
        let buf = KVec::from_elem(2u8, 4096, GFP_KERNEL)?;
        let addr = buf.as_ptr() as usize;
        let a = client.create_gpadl(pages_of(addr, 4096)?, false)?;
        let _b = client.create_gpadl(pages_of(addr, 100)?, true)?;
        let m = server.map_gpadl(a, true)?;
        // debugfs shows them.
        let counts = |gpadls, mapped_by_server, mappings| GpadlCounts {
            gpadls,
            mapped_by_server,
            mappings,
        };
        assert_eq!(client.snapshot().gpadls, counts(2, 1, 0));
        assert_eq!(server.snapshot().gpadls, counts(0, 0, 1));
        // The client closes with both GPADLs and a mapping left: the
        // server is told at once and unmaps at its close; then the client
        // deletes both. Nothing waits for ever.
        client.disable()?;
        assert!(wait(|| !server.is_running()));
        assert!(!client.gpadls().any_mapped());
        assert_eq!(client.delete_gpadl(a), Err(ENOENT));
        assert_eq!(server.unmap_gpadl(a), Err(ENOENT));
        // The server's pages stay valid while it holds them.
        let mut x = [0u8; 4];
        m.read(0, &mut x)?;
        assert_eq!(x, [2; 4]);
        drop(m);
        server.disable()?;
        client.cleanup()?;
        server.cleanup()
    }

    use crate::engine::channel::PacketCallbacks;
    use crate::engine::datapath::{
        IncomingPacket,
        SendCompletion, //
    };
    use core::sync::atomic::AtomicU32;

    /// Server: checks each packet's external data against the pattern of
    /// its tag (the payload's first byte), writes the answer pattern back
    /// into it, and completes it.
    #[derive(Default)]
    struct ExternalCheck {
        good: AtomicU32,
        bad: AtomicU32,
    }

    impl PacketCallbacks for ExternalCheck {
        fn process_packet(&self, _channel: &Arc<Channel>, packet: IncomingPacket) {
            let tag = packet.data().first().copied().unwrap_or(0);
            let ok = packet.external_data().is_some_and(|ext| {
                let mut chunk = [0u8; 256];
                let mut at = 0;
                let mut same = true;
                while at < ext.len() {
                    let n = chunk.len().min(ext.len() - at);
                    if ext.read(at, &mut chunk[..n]).is_err() {
                        return false;
                    }
                    same &= (0..n).all(|i| chunk[i] == byte(at + i, tag));
                    for (i, b) in chunk[..n].iter_mut().enumerate() {
                        *b = byte(at + i, tag ^ 0xff);
                    }
                    if ext.write(at, &chunk[..n]).is_err() {
                        return false;
                    }
                    at += n;
                }
                same
            });
            let c = if ok { &self.good } else { &self.bad };
            c.fetch_add(1, Ordering::SeqCst);
            let _ = packet.complete(&[]);
        }
    }

    /// Client: counts its sends' outcomes.
    struct Outcome(Arc<[AtomicU32; 2]>);

    impl SendCompletion for Outcome {
        fn complete(&mut self, status: Result, _data: &[u8]) {
            self.0[usize::from(status.is_err())].fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A pair whose server checks external data, allowing `max` bytes
    /// (0: none).
    fn external_pair(max: u32) -> Result<(Arc<Channel>, Arc<Channel>, Arc<ExternalCheck>)> {
        let bus = LoopbackBus::new()?;
        let check = Arc::new(ExternalCheck::default(), GFP_KERNEL)?;
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        if max > 0 {
            server.set_maximum_external_data(max, 1)?;
        }
        server.set_packet_callbacks(check.clone())?;
        let client = Channel::new(Role::Client, bus)?;
        client.configure(|s| s.interface_type = TYPE)?;
        connect(&server, &client)?;
        Ok((server, client, check))
    }

    #[test]
    fn external_data_reaches_the_server_byte_exact_and_back() -> Result {
        let (server, client, check) = external_pair(4 << 20)?;
        let outcome = Arc::new([AtomicU32::new(0), AtomicU32::new(0)], GFP_KERNEL)?;
        let cases = [
            (1usize, 5usize, 1u8),
            (10_000, 100, 2),
            (1 << 20, 0, 3),
            (4096, 4095, 4),
        ];
        let mut bufs = KVec::new();
        for &(len, off, tag) in &cases {
            let mut buf = VVec::<u8>::with_capacity(len + off, GFP_KERNEL)?;
            for i in 0..len + off {
                buf.push(if i < off { 0 } else { byte(i - off, tag) }, GFP_KERNEL)?;
            }
            let pages = pages_of(buf.as_ptr() as usize + off, len)?;
            client.send_external(
                &[tag, 0, 0, 0],
                External::one(pages)?,
                KBox::new(Outcome(outcome.clone()), GFP_KERNEL)?,
            )?;
            bufs.push((buf, len, off, tag), GFP_KERNEL)?;
        }
        assert!(wait(
            || outcome[0].load(Ordering::SeqCst) == cases.len() as u32
        ));
        assert_eq!(check.good.load(Ordering::SeqCst), cases.len() as u32);
        assert_eq!(check.bad.load(Ordering::SeqCst), 0);
        // The server's writes are in the client's buffers.
        for (buf, len, off, tag) in bufs.iter() {
            let base = buf.as_ptr();
            let back = (0..*len).all(|i| {
                // SAFETY: within `buf`; volatile: written through another
                // mapping.
                unsafe { core::ptr::read_volatile(base.add(off + i)) == byte(i, tag ^ 0xff) }
            });
            assert!(back);
        }
        close(server, client)
    }

    #[test]
    fn external_data_over_the_receivers_limit_closes_the_channel() -> Result {
        for max in [0u32, 4096] {
            let (server, client, check) = external_pair(max)?;
            let outcome = Arc::new([AtomicU32::new(0), AtomicU32::new(0)], GFP_KERNEL)?;
            let buf = VVec::<u8>::from_elem(9, 8192, GFP_KERNEL)?;
            let pages = pages_of(buf.as_ptr() as usize, 8192)?;
            client.send_external(
                &[1],
                External::one(pages)?,
                KBox::new(Outcome(outcome.clone()), GFP_KERNEL)?,
            )?;
            // The server refuses the packet (it never reaches its driver)
            // and the channel closes; the send ends with -ENODEV.
            assert!(wait(|| outcome[1].load(Ordering::SeqCst) == 1));
            assert!(wait(|| !server.is_running()));
            assert_eq!(
                check.good.load(Ordering::SeqCst) + check.bad.load(Ordering::SeqCst),
                0
            );
            assert_eq!(server.snapshot().failures, 1);
            server.disable()?;
            let _ = client.disable();
            client.cleanup()?;
            server.cleanup()?;
            drop(buf);
        }
        Ok(())
    }

    /// State callbacks of a driver that completes every packet it keeps
    /// when packets stop (Suspend), as KMCL drivers must.
    struct CompleteOnSuspend(Arc<crate::engine::testing::Keeper>);

    impl crate::engine::channel::StateCallbacks for CompleteOnSuspend {
        fn suspend(&self, _channel: &Arc<Channel>) {
            self.0.complete_all();
        }
    }

    /// A channel of `role` for `TYPE` accepting external data, whose
    /// driver keeps packets (completing them in Suspend if `on_suspend`).
    fn keeping(
        bus: &Arc<LoopbackBus>,
        role: Role,
        on_suspend: bool,
    ) -> Result<(Arc<Channel>, Arc<crate::engine::testing::Keeper>)> {
        let keeper = crate::engine::testing::Keeper::new()?;
        let ch = Channel::new(role, bus.clone())?;
        ch.configure(|s| s.interface_type = TYPE)?;
        ch.set_maximum_external_data(1 << 20, 1)?;
        ch.set_packet_callbacks(keeper.clone())?;
        if on_suspend {
            ch.set_state_callbacks(Arc::new(CompleteOnSuspend(keeper.clone()), GFP_KERNEL)?)?;
        }
        Ok((ch, keeper))
    }

    #[test]
    fn external_data_stays_the_receivers_until_it_completes_either_way() -> Result {
        // Each endpoint in turn sends external data that the other keeps,
        // then disables: the sender's routine runs with the receiver's
        // real completion (its Suspend completes what it kept), never
        // while the receiver still holds the pages.
        for server_sends in [false, true] {
            let bus = LoopbackBus::new()?;
            let (server, server_keeper) = keeping(&bus, Role::Server, true)?;
            let (client, client_keeper) = keeping(&bus, Role::Client, true)?;
            connect(&server, &client)?;
            let (sender, receiver_keeper) = if server_sends {
                (server.clone(), client_keeper.clone())
            } else {
                (client.clone(), server_keeper.clone())
            };
            let outcome = Arc::new([AtomicU32::new(0), AtomicU32::new(0)], GFP_KERNEL)?;
            let buf = VVec::<u8>::from_elem(5, 8192, GFP_KERNEL)?;
            sender.send_external(
                &[1],
                External::one(pages_of(buf.as_ptr() as usize, 8192)?)?,
                KBox::new(Outcome(outcome.clone()), GFP_KERNEL)?,
            )?;
            assert!(wait(|| receiver_keeper.held() == 1));
            sender.disable()?;
            // When Disable returns the receiver has given the pages back.
            assert_eq!(receiver_keeper.held(), 0);
            assert_eq!(outcome[0].load(Ordering::SeqCst), 1);
            assert_eq!(outcome[1].load(Ordering::SeqCst), 0);
            let other = if server_sends { &client } else { &server };
            assert!(wait(|| !other.is_running()));
            if server_sends {
                client.cleanup()?;
                server.cleanup()?;
            } else {
                server.disable()?;
                client.cleanup()?;
                server.cleanup()?;
            }
            drop(buf);
        }
        Ok(())
    }

    #[test]
    fn a_receiver_that_keeps_external_data_is_waited_for_only_so_long() -> Result {
        use crate::engine::datapath::PEER_STALL_MS;
        let bus = LoopbackBus::new()?;
        // The server's driver keeps the packet through its Suspend and
        // completes it only 4 s later.
        let (server, keeper) = keeping(&bus, Role::Server, false)?;
        let client = Channel::new(Role::Client, bus.clone())?;
        client.configure(|s| s.interface_type = TYPE)?;
        connect(&server, &client)?;
        let outcome = Arc::new([AtomicU32::new(0), AtomicU32::new(0)], GFP_KERNEL)?;
        let buf = VVec::<u8>::from_elem(5, 8192, GFP_KERNEL)?;
        client.send_external(
            &[1],
            External::one(pages_of(buf.as_ptr() as usize, 8192)?)?,
            KBox::new(Outcome(outcome.clone()), GFP_KERNEL)?,
        )?;
        assert!(wait(|| keeper.held() == 1));
        keeper.complete_all_after(4000);
        let start = kernel::time::Instant::<kernel::time::Monotonic>::now();
        client.disable()?;
        let took = start.elapsed().as_millis();
        pr_info!("client Disable took {} ms\n", took);
        // kmcl waited the bounded time, then ended the send, and took the
        // packet back from the server's driver, whose close then went on.
        assert!((PEER_STALL_MS - 100..PEER_STALL_MS + 1000).contains(&took));
        assert_eq!(outcome[1].load(Ordering::SeqCst), 1);
        assert!(crate::engine::testing::wait_for(1, || server
            .snapshot()
            .held
            == 0));
        assert_eq!(keeper.held(), 1);
        assert!(crate::engine::testing::wait_for(5, || keeper.held() == 0));
        server.disable()?;
        client.cleanup()?;
        server.cleanup()?;
        drop(buf);
        Ok(())
    }
}

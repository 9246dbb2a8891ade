// SPDX-License-Identifier: GPL-2.0

//! The safe Rust wrapper (`include/kmcl/rust/kmcl.rs`), compiled into the
//! test build exactly as a Rust driver includes it, and driven as one: a
//! server and a client made with `kmcl::Channel`, packets sent with
//! `Channel::send` and echoed by a `kmcl::Driver`, the per-packet context
//! area through `Incoming::client_context`, transfer pages through
//! `Packet::send_with_transfer_pages` and `Incoming::transfer_pages`,
//! GPADLs, a server's mappings and external data through `SharedPages`,
//! `ChannelRef::{create,delete,map,unmap}_gpadl` and
//! `Incoming::external_data`, all without `unsafe`.  The wrapper's
//! `extern "C"` declarations resolve to kmcl's own exports.

use kernel::prelude::*;

#[allow(
    clashing_extern_declarations,
    clippy::duplicate_mod,
    reason = "the wrapper's ABI module is a second copy of api::abi, as in a driver crate"
)]
#[path = "../../../include/kmcl/rust/kmcl.rs"]
mod kmcl;

#[kunit_tests(kmcl_rust_wrapper)]
mod cases {
    use super::kmcl;
    use core::sync::atomic::{
        AtomicBool,
        AtomicU32,
        Ordering, //
    };
    use kernel::prelude::*;
    use kernel::sync::Arc;

    const TYPE: kmcl::Guid = kmcl::Guid { b: [0x72; 16] };
    const INSTANCE: kmcl::Guid = kmcl::Guid { b: [0x73; 16] };
    const CONTEXT_SIZE: usize = 32;

    /// The server: echoes every packet whose context area arrived as
    /// `CONTEXT_SIZE` zeroed bytes, then marks the area.
    struct Server {
        echoed: AtomicU32,
        bad_context: AtomicU32,
    }

    impl kmcl::Driver for Server {
        fn process_packet(&self, _channel: kmcl::ChannelRef<'_>, mut packet: kmcl::Incoming) {
            let ctx = packet.client_context();
            let fresh = ctx.len() == CONTEXT_SIZE && ctx.iter().all(|&b| b == 0);
            ctx.fill(0x5a);
            if !fresh {
                self.bad_context.fetch_add(1, Ordering::SeqCst);
            }
            if packet.echo().is_ok() {
                self.echoed.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// The client: knows when it runs.
    struct Client {
        running: AtomicBool,
    }

    impl kmcl::Driver for Client {
        fn started(&self, _channel: kmcl::ChannelRef<'_>) {
            self.running.store(true, Ordering::SeqCst);
        }
    }

    static REPLIES_OK: AtomicU32 = AtomicU32::new(0);

    /// A send's routine: the echo must be the payload (`[tag; 24]`).
    struct Echo(u8);

    impl kmcl::SendDone for Echo {
        fn done(&mut self, status: Result, reply: &[u8]) {
            if status.is_ok() && reply.len() == 24 && reply.iter().all(|&b| b == self.0) {
                REPLIES_OK.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    #[test]
    fn a_wrapper_pair_echoes_with_context_areas() {
        REPLIES_OK.store(0, Ordering::SeqCst);
        let module: &'static ThisModule = &<crate::Kmcl as kernel::ModuleMetadata>::THIS_MODULE;
        let server_driver = Arc::new(
            Server {
                echoed: AtomicU32::new(0),
                bad_context: AtomicU32::new(0),
            },
            GFP_KERNEL,
        )
        .unwrap();
        let client_driver = Arc::new(
            Client {
                running: AtomicBool::new(false),
            },
            GFP_KERNEL,
        )
        .unwrap();
        let mut server =
            kmcl::Channel::new(module, kmcl::Role::Server, server_driver.clone()).unwrap();
        assert_eq!(server.set_offer(&TYPE, &INSTANCE), Ok(()));
        assert_eq!(server.set_client_context_size(CONTEXT_SIZE as u32), Ok(()));
        assert_eq!(server.set_client_context_size(4097), Err(EINVAL));
        assert_eq!(server.enable(), Ok(()));
        assert_eq!(server.start(), Ok(()));
        let mut client =
            kmcl::Channel::new(module, kmcl::Role::Client, client_driver.clone()).unwrap();
        assert_eq!(client.set_target(&TYPE, Some(&INSTANCE)), Ok(()));
        assert_eq!(client.enable(), Ok(()));
        assert!(crate::engine::testing::wait_until(|| client_driver
            .running
            .load(Ordering::SeqCst)));
        assert_eq!(client.interface_instance(), INSTANCE);
        for tag in 1..=50u8 {
            let done = KBox::new(Echo(tag), GFP_KERNEL).unwrap();
            assert_eq!(client.send(&[tag; 24], true, done), Ok(()));
        }
        assert!(crate::engine::testing::wait_until(|| REPLIES_OK
            .load(Ordering::SeqCst)
            == 50));
        assert_eq!(server_driver.echoed.load(Ordering::SeqCst), 50);
        assert_eq!(server_driver.bad_context.load(Ordering::SeqCst), 0);
        // Dropping the channels disables and frees them (client first).
        drop(client);
        drop(server);
    }

    const SET: u16 = 3;

    /// A client that checks every transfer-page packet's ranges against
    /// the pattern its payload's byte names, in its receive buffer.
    struct Receiver {
        running: AtomicBool,
        /// The receive buffer (the set's memory).
        mem: Arc<kmcl::SharedPages>,
        good: AtomicU32,
        bad: AtomicU32,
    }

    impl kmcl::Driver for Receiver {
        fn started(&self, _channel: kmcl::ChannelRef<'_>) {
            self.running.store(true, Ordering::SeqCst);
        }

        fn process_packet(&self, _channel: kmcl::ChannelRef<'_>, packet: kmcl::Incoming) {
            let tag = packet.data().first().copied().unwrap_or(0);
            let ok = match packet.transfer_pages() {
                Some((SET, ranges)) if !ranges.is_empty() => ranges.iter().all(|r| {
                    let at = r.byte_offset as usize;
                    let mut data = [0u8; 512];
                    let Some(data) = data.get_mut(..r.byte_count as usize) else {
                        return false;
                    };
                    self.mem.read(at, data).is_ok()
                        && data
                            .iter()
                            .enumerate()
                            .all(|(i, b)| *b == ((at + i) as u8 ^ tag))
                }),
                _ => false,
            };
            let c = if ok { &self.good } else { &self.bad };
            c.fetch_add(1, Ordering::SeqCst);
            let _ = packet.complete(&[tag]);
        }
    }

    /// A server that never gets a packet.
    struct Quiet;

    impl kmcl::Driver for Quiet {}

    static SENT_DONE: AtomicU32 = AtomicU32::new(0);

    struct Sent;

    impl kmcl::PacketDone for Sent {
        fn done(&self, packet: kmcl::Packet, status: Result, _reply: &[u8]) {
            if status.is_ok() {
                SENT_DONE.fetch_add(1, Ordering::SeqCst);
            }
            drop(packet);
        }
    }

    #[test]
    fn transfer_pages_through_the_wrapper() {
        SENT_DONE.store(0, Ordering::SeqCst);
        let module: &'static ThisModule = &<crate::Kmcl as kernel::ModuleMetadata>::THIS_MODULE;
        let mem = kmcl::SharedPages::new(2).unwrap();
        let receiver = Arc::new(
            Receiver {
                running: AtomicBool::new(false),
                mem: mem.clone(),
                good: AtomicU32::new(0),
                bad: AtomicU32::new(0),
            },
            GFP_KERNEL,
        )
        .unwrap();
        let ty = kmcl::Guid { b: [0x74; 16] };
        let mut server = kmcl::Channel::new(
            module,
            kmcl::Role::Server,
            Arc::new(Quiet, GFP_KERNEL).unwrap(),
        )
        .unwrap();
        assert_eq!(server.set_offer(&ty, &INSTANCE), Ok(()));
        assert_eq!(server.enable(), Ok(()));
        assert_eq!(server.start(), Ok(()));
        let mut client = kmcl::Channel::new(module, kmcl::Role::Client, receiver.clone()).unwrap();
        assert_eq!(client.set_target(&ty, Some(&INSTANCE)), Ok(()));
        assert_eq!(client.enable(), Ok(()));
        assert!(crate::engine::testing::wait_until(|| receiver
            .running
            .load(Ordering::SeqCst)));
        let gpadl = client.as_ref().create_gpadl(&mem, false).unwrap();
        assert_eq!(server.as_ref().map_gpadl(gpadl, true), Ok(8192));
        assert_eq!(
            client.as_ref().register_transfer_page_set(gpadl, SET),
            Ok(())
        );
        assert_eq!(
            client.as_ref().register_transfer_page_set(gpadl, SET),
            Err(EEXIST)
        );
        let done: Arc<dyn kmcl::PacketDone> = Arc::new(Sent, GFP_KERNEL).unwrap();
        for tag in 1..=10u8 {
            let ranges = [
                kmcl::TransferRange {
                    byte_count: 64,
                    byte_offset: u32::from(tag) * 100,
                },
                kmcl::TransferRange {
                    byte_count: 300,
                    byte_offset: 4000 + u32::from(tag),
                },
            ];
            for r in ranges {
                let at = r.byte_offset as usize;
                let mut data = [0u8; 300];
                let data = &mut data[..r.byte_count as usize];
                for (i, b) in data.iter_mut().enumerate() {
                    *b = (at + i) as u8 ^ tag;
                }
                assert_eq!(server.as_ref().write_gpadl(gpadl, at, data), Ok(()));
            }
            let p = kmcl::Packet::new(server.as_ref(), done.clone()).unwrap();
            assert!(p
                .send_with_transfer_pages(SET, &ranges, &[tag], true)
                .is_ok());
            assert!(crate::engine::testing::wait_until(|| SENT_DONE
                .load(Ordering::SeqCst)
                == u32::from(tag)));
        }
        // A set the client never registered: refused, the packet back.
        let p = kmcl::Packet::new(server.as_ref(), done.clone()).unwrap();
        let one = [kmcl::TransferRange {
            byte_count: 1,
            byte_offset: 0,
        }];
        let (p, e) = p
            .send_with_transfer_pages(SET + 1, &one, &[0], true)
            .unwrap_err();
        assert_eq!(e, EINVAL);
        drop(p);
        assert_eq!(receiver.good.load(Ordering::SeqCst), 10);
        assert_eq!(receiver.bad.load(Ordering::SeqCst), 0);
        assert_eq!(client.as_ref().unregister_transfer_page_set(SET), Ok(()));
        assert_eq!(
            client.as_ref().unregister_transfer_page_set(SET),
            Err(ENOENT)
        );
        assert_eq!(server.as_ref().unmap_gpadl(gpadl), Ok(()));
        assert_eq!(client.as_ref().delete_gpadl(gpadl), Ok(()));
        drop(client);
        drop(server);
    }

    /// A server that takes every packet's external data: records it,
    /// writes `VSP!` over its first bytes and completes the packet with
    /// the external data's length.
    #[pin_data]
    struct Vsp {
        #[pin]
        seen: kernel::sync::SpinLockIrq<KVec<u8>>,
        ranges: AtomicU32,
        without: AtomicU32,
    }

    impl kmcl::Driver for Vsp {
        fn process_packet(&self, _channel: kmcl::ChannelRef<'_>, packet: kmcl::Incoming) {
            let Some(ext) = packet.external_data() else {
                self.without.fetch_add(1, Ordering::SeqCst);
                return;
            };
            let Ok(mut copy) = KVec::from_elem(0u8, ext.len(), GFP_ATOMIC) else {
                return;
            };
            if ext.read(0, &mut copy).is_ok() && ext.write(0, b"VSP!").is_ok() {
                self.ranges.store(ext.ranges() as u32, Ordering::SeqCst);
                *self.seen.lock() = copy;
            }
            let len = (ext.len() as u32).to_le_bytes();
            let _ = packet.complete(&len);
        }
    }

    static EXT_DONE: AtomicU32 = AtomicU32::new(0);
    static EXT_REPLY: AtomicU32 = AtomicU32::new(0);

    struct ExtDone;

    impl kmcl::PacketDone for ExtDone {
        fn done(&self, packet: kmcl::Packet, status: Result, reply: &[u8]) {
            if status.is_ok() {
                if let Some(r) = reply.first_chunk::<4>() {
                    EXT_REPLY.store(u32::from_le_bytes(*r), Ordering::SeqCst);
                }
                EXT_DONE.fetch_add(1, Ordering::SeqCst);
            }
            drop(packet);
        }
    }

    /// A running `Vsp` server of `ty`/`INSTANCE` taking up to `max_external`
    /// bytes of external data in one range.
    fn vsp_server(
        module: &'static ThisModule,
        ty: &kmcl::Guid,
        max_external: u32,
    ) -> (Arc<Vsp>, kmcl::Channel) {
        let vsp = Arc::pin_init(
            pin_init!(Vsp {
                seen <- kernel::new_spinlock_irq!(KVec::new()),
                ranges: AtomicU32::new(0),
                without: AtomicU32::new(0),
            }),
            GFP_KERNEL,
        )
        .unwrap();
        let mut server = kmcl::Channel::new(module, kmcl::Role::Server, vsp.clone()).unwrap();
        assert_eq!(server.set_offer(ty, &INSTANCE), Ok(()));
        assert_eq!(server.set_maximum_external_data(max_external, 1), Ok(()));
        assert_eq!(server.enable(), Ok(()));
        assert_eq!(server.start(), Ok(()));
        (vsp, server)
    }

    /// GPADLs, a server's mappings and external data through the wrapper,
    /// without `unsafe`: the memory a driver shares is `SharedPages`, kept
    /// alive by the channel (GPADLs) and the packet (external data).
    #[test]
    fn gpadls_and_external_data_through_the_wrapper() {
        EXT_DONE.store(0, Ordering::SeqCst);
        EXT_REPLY.store(0, Ordering::SeqCst);
        let module: &'static ThisModule = &<crate::Kmcl as kernel::ModuleMetadata>::THIS_MODULE;
        let ty = kmcl::Guid { b: [0x79; 16] };
        let (vsp, server) = vsp_server(module, &ty, 8192);
        let client = running_client(module, &ty);
        let (c, s) = (client.as_ref(), server.as_ref());

        // Three pages, each byte telling its place.
        assert_eq!(kmcl::SharedPages::new(0).err(), Some(EINVAL));
        let mem = kmcl::SharedPages::new(3).unwrap();
        assert_eq!(mem.len(), 3 * 4096);
        let mut pattern = KVec::from_elem(0u8, 3 * 4096, GFP_KERNEL).unwrap();
        for (i, b) in pattern.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        assert_eq!(mem.write(0, &pattern), Ok(()));
        assert_eq!(mem.write(3 * 4096 - 1, b"xy"), Err(EINVAL));
        let ro_mem = kmcl::SharedPages::new(1).unwrap();
        assert_eq!(ro_mem.write(10, b"read only"), Ok(()));

        let g = c.create_gpadl(&mem, false).unwrap();
        let ro = c.create_gpadl(&ro_mem, true).unwrap();
        assert_ne!(g, ro);
        // The server maps them: the read-only one only for reading.
        assert_eq!(s.map_gpadl(g, true), Ok(3 * 4096));
        assert_eq!(s.map_gpadl(ro, true), Err(EACCES));
        assert_eq!(s.map_gpadl(ro, false), Ok(4096));
        let mut buf = [0u8; 300];
        assert_eq!(s.read_gpadl(g, 4000, &mut buf), Ok(()));
        assert!(buf[..] == pattern[4000..4300]);
        assert_eq!(s.write_gpadl(g, 8190, b"abcd"), Ok(()));
        let mut back = [0u8; 4];
        assert_eq!(mem.read(8190, &mut back), Ok(()));
        assert_eq!(&back, b"abcd");
        assert_eq!(s.write_gpadl(g, 3 * 4096 - 2, b"abcd"), Err(EINVAL));
        assert_eq!(s.write_gpadl(ro, 0, b"no"), Err(EACCES));
        let mut nine = [0u8; 9];
        assert_eq!(s.read_gpadl(ro, 10, &mut nine), Ok(()));
        assert_eq!(&nine, b"read only");
        assert_eq!(s.read_gpadl(0x7777, 0, &mut nine), Err(ENOENT));
        // Unmapped: gone from the server; the client may delete it.
        assert_eq!(s.unmap_gpadl(g), Ok(()));
        assert_eq!(s.read_gpadl(g, 0, &mut nine), Err(ENOENT));
        assert_eq!(s.unmap_gpadl(g), Err(ENOENT));
        assert_eq!(c.delete_gpadl(g), Ok(()));
        assert_eq!(c.delete_gpadl(g), Err(ENOENT));

        // External data: 5000 bytes from 100 of `mem`, kept alive by the
        // packet; the server reads them and writes its answer over them.
        assert_eq!(mem.write(0, &pattern), Ok(()));
        let done: Arc<dyn kmcl::PacketDone> = Arc::new(ExtDone, GFP_KERNEL).unwrap();
        let p = kmcl::Packet::new(c, done.clone()).unwrap();
        let (p, e) = p.send_with_shared(b"ext", &mem, 12000, 1000).unwrap_err();
        assert_eq!(e, EINVAL);
        assert!(p.send_with_shared(b"ext", &mem, 100, 5000).is_ok());
        assert!(crate::engine::testing::wait_until(|| EXT_DONE
            .load(Ordering::SeqCst)
            == 1));
        assert_eq!(EXT_REPLY.load(Ordering::SeqCst), 5000);
        assert_eq!(vsp.ranges.load(Ordering::SeqCst), 1);
        assert!(vsp.seen.lock()[..] == pattern[100..5100]);
        assert_eq!(mem.read(100, &mut back), Ok(()));
        assert_eq!(&back, b"VSP!");
        assert_eq!(vsp.without.load(Ordering::SeqCst), 0);

        // `ro` is left mapped and not deleted: the server's Closed unmaps
        // it, kmcl deletes it, and the channel lets go of its memory.
        drop(client);
        drop(server);
        assert_eq!(ro_mem.read(10, &mut nine), Ok(()));
        assert_eq!(&nine, b"read only");
    }

    /// A protocol message: a request...
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Ping {
        seq: u32,
        op: u32,
        value: u64,
    }

    /// ...and its reply.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Pong {
        seq: u32,
        status: u32,
        doubled: u64,
        echo: [u8; 8],
    }

    // SAFETY: `repr(C)` integers only, no padding; any bytes are a value.
    unsafe impl kernel::transmute::FromBytes for Ping {}
    // SAFETY: as above.
    unsafe impl kernel::transmute::AsBytes for Ping {}
    // SAFETY: as above.
    unsafe impl kernel::transmute::FromBytes for Pong {}
    // SAFETY: as above.
    unsafe impl kernel::transmute::AsBytes for Pong {}

    /// A server answering `Ping`s with `Pong`s (op 1), with four bytes
    /// (op 2, a reply too short for a `Pong`), and counting payloads too
    /// short for a `Ping`.
    struct Responder {
        short: AtomicU32,
    }

    impl kmcl::Driver for Responder {
        fn process_packet(&self, _channel: kmcl::ChannelRef<'_>, packet: kmcl::Incoming) {
            let Some(ping) = packet.message::<Ping>() else {
                self.short.fetch_add(1, Ordering::SeqCst);
                let _ = packet.complete(&[]);
                return;
            };
            let _ = match ping.op {
                1 => packet.complete_with(&Pong {
                    seq: ping.seq,
                    status: 0,
                    doubled: ping.value * 2,
                    echo: *b"pong!!!!",
                }),
                _ => packet.complete(&[1, 2, 3, 4]),
            };
        }
    }

    /// A client of `ty`/`INSTANCE`, enabled, once it runs.
    fn running_client(module: &'static ThisModule, ty: &kmcl::Guid) -> kmcl::Channel {
        let driver = Arc::new(
            Client {
                running: AtomicBool::new(false),
            },
            GFP_KERNEL,
        )
        .unwrap();
        let mut client = kmcl::Channel::new(module, kmcl::Role::Client, driver.clone()).unwrap();
        assert_eq!(client.set_target(ty, Some(&INSTANCE)), Ok(()));
        assert_eq!(client.enable(), Ok(()));
        assert!(crate::engine::testing::wait_until(|| driver
            .running
            .load(Ordering::SeqCst)));
        client
    }

    /// Typed messages both ways: `request` (a synchronous request whose
    /// reply is read as a type), `message` and `complete_with` on the
    /// server, `send_message`.
    #[test]
    fn typed_messages_through_the_wrapper() {
        let module: &'static ThisModule = &<crate::Kmcl as kernel::ModuleMetadata>::THIS_MODULE;
        let ty = kmcl::Guid { b: [0x76; 16] };
        let responder = Arc::new(
            Responder {
                short: AtomicU32::new(0),
            },
            GFP_KERNEL,
        )
        .unwrap();
        let mut server = kmcl::Channel::new(module, kmcl::Role::Server, responder.clone()).unwrap();
        assert_eq!(server.set_offer(&ty, &INSTANCE), Ok(()));
        assert_eq!(server.enable(), Ok(()));
        assert_eq!(server.start(), Ok(()));
        let client = running_client(module, &ty);
        let c = client.as_ref();
        for seq in 1..=20u32 {
            let ping = Ping {
                seq,
                op: 1,
                value: u64::from(seq) << 33,
            };
            let pong: Pong = c.request(&ping, Some(5000)).unwrap();
            assert_eq!(
                pong,
                Pong {
                    seq,
                    status: 0,
                    doubled: u64::from(seq) << 34,
                    echo: *b"pong!!!!",
                }
            );
        }
        // A reply shorter than the reply type.
        let short = Ping {
            seq: 0,
            op: 2,
            value: 0,
        };
        assert_eq!(c.request::<Ping, Pong>(&short, Some(5000)), Err(EPROTO));
        // A payload shorter than the server's message type.
        assert_eq!(c.send_sync(&[9, 9, 9, 9], &mut [0u8; 8], Some(5000)), Ok(0));
        assert_eq!(responder.short.load(Ordering::SeqCst), 1);
        // One-way, without a completion.
        REPLIES_OK.store(0, Ordering::SeqCst);
        let done = KBox::new(Echo(0), GFP_KERNEL).unwrap();
        assert_eq!(c.send_message(&short, false, done), Ok(()));
        drop(client);
        drop(server);
    }

    /// Init flags, VTL, a loopback bus of its own and the stash, through
    /// the wrapper.
    #[test]
    fn buses_flags_and_the_stash_through_the_wrapper() {
        let module: &'static ThisModule = &<crate::Kmcl as kernel::ModuleMetadata>::THIS_MODULE;
        let ty = kmcl::Guid { b: [0x7a; 16] };
        let bus = kmcl::LoopbackBus::new().unwrap();
        let other = kmcl::LoopbackBus::new().unwrap();
        assert_ne!(bus.handle(), other.handle());
        let quiet = Arc::new(Quiet, GFP_KERNEL).unwrap();
        let mut server = kmcl::Channel::new(module, kmcl::Role::Server, quiet).unwrap();
        assert_eq!(server.set_flags(kmcl::INIT_FLAG_IS_PIPE), Err(EOPNOTSUPP));
        assert_eq!(server.set_flags(0x80), Err(EINVAL));
        assert_eq!(server.set_flags(0), Ok(()));
        assert_eq!(
            server.set_server_flags(kmcl::SERVER_FLAG_LOOPBACK_OFFER),
            Ok(())
        );
        assert_eq!(server.set_server_flags(0x2), Err(EOPNOTSUPP));
        assert_eq!(server.set_target_vtl(16), Err(EINVAL));
        assert_eq!(server.set_target_vtl(0), Ok(()));
        assert_eq!(server.set_bus(&bus), Ok(()));
        assert_eq!(server.set_offer(&ty, &INSTANCE), Ok(()));
        assert_eq!(server.enable(), Ok(()));
        assert_eq!(server.start(), Ok(()));
        // A client on another bus does not see the offer; one on its bus
        // does.
        let lost = Arc::new(
            Client {
                running: AtomicBool::new(false),
            },
            GFP_KERNEL,
        )
        .unwrap();
        let mut elsewhere = kmcl::Channel::new(module, kmcl::Role::Client, lost.clone()).unwrap();
        assert_eq!(elsewhere.set_bus(&other), Ok(()));
        assert_eq!(elsewhere.set_target(&ty, Some(&INSTANCE)), Ok(()));
        assert_eq!(elsewhere.enable(), Ok(()));
        let found = Arc::new(
            Client {
                running: AtomicBool::new(false),
            },
            GFP_KERNEL,
        )
        .unwrap();
        let mut client = kmcl::Channel::new(module, kmcl::Role::Client, found.clone()).unwrap();
        assert_eq!(client.set_bus(&bus), Ok(()));
        assert_eq!(client.set_target(&ty, Some(&INSTANCE)), Ok(()));
        assert_eq!(client.enable(), Ok(()));
        assert!(crate::engine::testing::wait_until(|| found
            .running
            .load(Ordering::SeqCst)));
        assert!(!lost.running.load(Ordering::SeqCst));
        // The buses may go before their channels.
        drop(bus);
        drop(other);
        drop(client);
        drop(elsewhere);
        drop(server);

        // The stash.
        let key = kmcl::Guid { b: [0x7b; 16] };
        assert_eq!(kmcl::stash_take(&key).err(), Some(ENOENT));
        assert_eq!(kmcl::stash_put(&key, b"first"), Ok(()));
        assert_eq!(kmcl::stash_put(&key, b"the saved state"), Ok(()));
        assert_eq!(kmcl::stash_put(&key, b""), Err(EINVAL));
        let got = kmcl::stash_take(&key).unwrap();
        assert_eq!(&got[..], b"the saved state");
        assert_eq!(kmcl::stash_take(&key).err(), Some(ENOENT));
    }

    /// A client primary channel that opens every sub-channel offered to it
    /// from its callback, keeping the channel.
    #[pin_data]
    struct Primary {
        running: AtomicBool,
        sub_driver: Arc<Client>,
        #[pin]
        sub: kernel::sync::Mutex<Option<kmcl::Channel>>,
        offered: AtomicU32,
    }

    impl kmcl::Driver for Primary {
        fn started(&self, _channel: kmcl::ChannelRef<'_>) {
            self.running.store(true, Ordering::SeqCst);
        }

        fn subchannel_offered(&self, primary: kmcl::ChannelRef<'_>, index: u16) {
            self.offered.store(u32::from(index), Ordering::SeqCst);
            let module: &'static ThisModule = &<crate::Kmcl as kernel::ModuleMetadata>::THIS_MODULE;
            let Ok(mut sub) =
                kmcl::Channel::new(module, kmcl::Role::Client, self.sub_driver.clone())
            else {
                return;
            };
            if sub.set_primary(primary).is_ok() && sub.enable().is_ok() {
                *self.sub.lock() = Some(sub);
            }
        }
    }

    #[test]
    fn subchannels_through_the_wrapper() {
        REPLIES_OK.store(0, Ordering::SeqCst);
        let module: &'static ThisModule = &<crate::Kmcl as kernel::ModuleMetadata>::THIS_MODULE;
        let ty = kmcl::Guid { b: [0x75; 16] };
        let echo = Arc::new(
            Server {
                echoed: AtomicU32::new(0),
                bad_context: AtomicU32::new(0),
            },
            GFP_KERNEL,
        )
        .unwrap();
        let sub_echo = Arc::new(
            Server {
                echoed: AtomicU32::new(0),
                bad_context: AtomicU32::new(0),
            },
            GFP_KERNEL,
        )
        .unwrap();
        let sub_client = Arc::new(
            Client {
                running: AtomicBool::new(false),
            },
            GFP_KERNEL,
        )
        .unwrap();
        let sub_driver = sub_client.clone();
        let primary = Arc::pin_init(
            pin_init!(Primary {
                running: AtomicBool::new(false),
                sub_driver,
                sub <- kernel::new_mutex!(None),
                offered: AtomicU32::new(0),
            }),
            GFP_KERNEL,
        )
        .unwrap();
        let mut server = kmcl::Channel::new(module, kmcl::Role::Server, echo.clone()).unwrap();
        assert_eq!(server.set_offer(&ty, &INSTANCE), Ok(()));
        assert_eq!(server.set_client_context_size(CONTEXT_SIZE as u32), Ok(()));
        assert_eq!(server.enable(), Ok(()));
        assert_eq!(server.start(), Ok(()));
        let mut client = kmcl::Channel::new(module, kmcl::Role::Client, primary.clone()).unwrap();
        assert_eq!(client.set_target(&ty, Some(&INSTANCE)), Ok(()));
        assert_eq!(client.enable(), Ok(()));
        assert!(crate::engine::testing::wait_until(|| primary
            .running
            .load(Ordering::SeqCst)));
        assert_eq!(client.as_ref().subchannel_index(), Ok(0));
        assert_eq!(client.as_ref().set_interrupt_latency(30), Ok(0));
        assert_eq!(client.as_ref().set_interrupt_latency(0), Ok(30));
        // Through a borrowed reference, as a callback would.
        assert_eq!(client.as_ref().set_transaction_quota(0), Err(EINVAL));
        assert_eq!(client.as_ref().set_transaction_quota(u32::MAX), Ok(()));
        // The server's sub-channel; the client's callback opens its own.
        let mut s_sub = kmcl::Channel::new(module, kmcl::Role::Server, sub_echo.clone()).unwrap();
        assert_eq!(s_sub.set_primary(client.as_ref()), Err(EINVAL));
        assert_eq!(s_sub.set_primary(server.as_ref()), Ok(()));
        assert_eq!(s_sub.set_client_context_size(CONTEXT_SIZE as u32), Ok(()));
        assert_eq!(s_sub.enable(), Ok(()));
        assert_eq!(s_sub.start(), Ok(()));
        // The callback keeps the sub-channel once its Enable returned,
        // which may be after the sub-channel started.
        assert!(crate::engine::testing::wait_until(|| sub_client
            .running
            .load(Ordering::SeqCst)
            && primary.sub.lock().is_some()));
        assert_eq!(primary.offered.load(Ordering::SeqCst), 1);
        assert_eq!(s_sub.as_ref().subchannel_index(), Ok(1));
        {
            let sub = primary.sub.lock();
            let c_sub = sub.as_ref().unwrap();
            assert_eq!(c_sub.as_ref().subchannel_index(), Ok(1));
            for tag in 1..=10u8 {
                let done = KBox::new(Echo(tag), GFP_KERNEL).unwrap();
                assert_eq!(c_sub.send(&[tag; 24], true, done), Ok(()));
            }
        }
        assert!(crate::engine::testing::wait_until(|| REPLIES_OK
            .load(Ordering::SeqCst)
            == 10));
        assert_eq!(sub_echo.echoed.load(Ordering::SeqCst), 10);
        assert_eq!(echo.echoed.load(Ordering::SeqCst), 0);
        // The client sub-channel first, then the primaries.
        let c_sub = primary.sub.lock().take();
        drop(c_sub);
        drop(s_sub);
        drop(client);
        drop(server);
    }

    /// A held packet: its identity, its payload and (until it is let go)
    /// the packet.
    type HeldPacket = (kmcl::IncomingId, KVec<u8>, Option<kmcl::Incoming>);

    /// A server that holds every packet (its transactions in flight), saves
    /// each one's payload as its state, and, restored, completes each with
    /// the saved state; counts what its client-facing callbacks see.
    #[pin_data]
    struct Holder {
        #[pin]
        held: kernel::sync::SpinLockIrq<KVec<HeldPacket>>,
        saved: AtomicU32,
        restored: AtomicU32,
        restored_bad: AtomicU32,
        flags_seen: AtomicU32,
    }

    impl kmcl::Driver for Holder {
        fn process_packet(&self, _channel: kmcl::ChannelRef<'_>, packet: kmcl::Incoming) {
            self.flags_seen.fetch_or(packet.flags(), Ordering::SeqCst);
            let Ok(mut copy) = KVec::with_capacity(packet.data().len(), GFP_ATOMIC) else {
                return;
            };
            let _ = copy.extend_from_slice(packet.data(), GFP_ATOMIC);
            let mut held = self.held.lock();
            if held.reserve(1, GFP_ATOMIC).is_ok() {
                let _ = held.push_within_capacity((packet.id(), copy, Some(packet)));
            }
        }

        fn save_packet(
            &self,
            _channel: kmcl::ChannelRef<'_>,
            id: kmcl::IncomingId,
        ) -> Result<KVec<u8>> {
            let held = self.held.lock();
            let (_, data, _) = held.iter().find(|(i, _, _)| *i == id).ok_or(ENOENT)?;
            let mut state = KVec::with_capacity(data.len(), GFP_ATOMIC)?;
            state.extend_from_slice(data, GFP_ATOMIC)?;
            self.saved.fetch_add(1, Ordering::SeqCst);
            Ok(state)
        }

        fn restore_packet(
            &self,
            _channel: kmcl::ChannelRef<'_>,
            packet: kmcl::Incoming,
            state: &[u8],
        ) {
            // A restored packet's payload is not delivered again.
            if !packet.data().is_empty() || state.len() != 24 {
                self.restored_bad.fetch_add(1, Ordering::SeqCst);
            }
            if packet.complete(state).is_ok() {
                self.restored.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    fn holder() -> Arc<Holder> {
        Arc::pin_init(
            pin_init!(Holder {
                held <- kernel::new_spinlock_irq!(KVec::new()),
                saved: AtomicU32::new(0),
                restored: AtomicU32::new(0),
                restored_bad: AtomicU32::new(0),
                flags_seen: AtomicU32::new(0),
            }),
            GFP_KERNEL,
        )
        .unwrap()
    }

    /// A client that counts Suspend and Closed.
    struct Watcher {
        running: AtomicBool,
        suspended: AtomicU32,
        closed: AtomicU32,
    }

    impl kmcl::Driver for Watcher {
        fn started(&self, _channel: kmcl::ChannelRef<'_>) {
            self.running.store(true, Ordering::SeqCst);
        }
        fn suspend(&self, _channel: kmcl::ChannelRef<'_>) {
            self.suspended.fetch_add(1, Ordering::SeqCst);
        }
        fn closed(&self, _channel: kmcl::ChannelRef<'_>) {
            self.closed.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn watcher() -> Arc<Watcher> {
        Arc::new(
            Watcher {
                running: AtomicBool::new(false),
                suspended: AtomicU32::new(0),
                closed: AtomicU32::new(0),
            },
            GFP_KERNEL,
        )
        .unwrap()
    }

    /// A live update through the wrapper: a server holding the client's
    /// transactions saves them (`save_begin`, `Driver::save_packet`,
    /// `save_continue`, `save_rest`), is dropped (the connection parks),
    /// and a new server restores the save (`restore_from_buffer`) and
    /// completes every packet from `Driver::restore_packet`; the client
    /// gets every reply byte-exact and sees neither Suspend nor Closed.
    #[test]
    fn a_live_update_through_the_wrapper() {
        REPLIES_OK.store(0, Ordering::SeqCst);
        let module: &'static ThisModule = &<crate::Kmcl as kernel::ModuleMetadata>::THIS_MODULE;
        let ty = kmcl::Guid { b: [0x7a; 16] };
        let first = holder();
        let mut server = kmcl::Channel::new(module, kmcl::Role::Server, first.clone()).unwrap();
        assert_eq!(server.set_offer(&ty, &INSTANCE), Ok(()));
        // Nothing to save before a client connects.
        assert_eq!(server.save_begin(), Err(ENOTCONN));
        assert_eq!(server.enable(), Ok(()));
        assert_eq!(server.start(), Ok(()));
        let watcher = watcher();
        let mut client = kmcl::Channel::new(module, kmcl::Role::Client, watcher.clone()).unwrap();
        assert_eq!(client.set_target(&ty, Some(&INSTANCE)), Ok(()));
        assert_eq!(client.enable(), Ok(()));
        assert!(crate::engine::testing::wait_until(|| watcher
            .running
            .load(Ordering::SeqCst)));
        // Client channels have no save.
        assert_eq!(client.save_begin(), Err(EINVAL));
        assert_eq!(client.restore_from_buffer(b"not a save"), Err(EINVAL));
        for tag in 1..=8u8 {
            let done = KBox::new(Echo(tag), GFP_KERNEL).unwrap();
            assert_eq!(client.send(&[tag; 24], true, done), Ok(()));
        }
        assert!(crate::engine::testing::wait_until(|| first
            .held
            .lock()
            .len()
            == 8));
        assert_eq!(first.flags_seen.load(Ordering::SeqCst), 0);
        assert_eq!(REPLIES_OK.load(Ordering::SeqCst), 0);

        assert_eq!(server.save_begin(), Ok(()));
        assert_eq!(server.save_begin(), Err(EBUSY));
        assert_eq!(first.saved.load(Ordering::SeqCst), 8);
        for (_, _, p) in first.held.lock().iter_mut() {
            p.take().unwrap().into_save();
        }
        // A buffer too small for the first chunk: nothing written.
        let mut tiny = [0u8; 8];
        let need = match server.save_continue(&mut tiny) {
            Ok(kmcl::SaveChunk::TooSmall(n)) => n,
            other => panic!("save_continue into 8 bytes: {:?}", other),
        };
        assert!(need > 8);
        let save = server.save_rest().unwrap();
        assert!(save.len() > 8 * 24);
        // The save is over: the connection parks when the server goes.
        drop(server);
        assert_eq!(watcher.suspended.load(Ordering::SeqCst), 0);
        assert_eq!(watcher.closed.load(Ordering::SeqCst), 0);

        let second = holder();
        let mut server = kmcl::Channel::new(module, kmcl::Role::Server, second.clone()).unwrap();
        assert_eq!(server.set_offer(&ty, &INSTANCE), Ok(()));
        // A damaged save is refused whole and changes nothing.
        let mut bad = KVec::with_capacity(save.len(), GFP_KERNEL).unwrap();
        bad.extend_from_slice(&save, GFP_KERNEL).unwrap();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        assert_eq!(server.restore_from_buffer(&bad), Err(EBADMSG));
        assert_eq!(server.restore_from_buffer(&save), Ok(true));
        assert_eq!(server.enable(), Ok(()));
        assert_eq!(server.start(), Ok(()));
        assert!(crate::engine::testing::wait_until(|| REPLIES_OK
            .load(Ordering::SeqCst)
            == 8));
        assert_eq!(second.restored.load(Ordering::SeqCst), 8);
        assert_eq!(second.restored_bad.load(Ordering::SeqCst), 0);
        // The restored server serves new packets as any other.
        let done = KBox::new(Echo(9), GFP_KERNEL).unwrap();
        assert_eq!(client.send(&[9; 24], true, done), Ok(()));
        assert!(crate::engine::testing::wait_until(|| second
            .held
            .lock()
            .len()
            == 1));
        let p = second.held.lock()[0].2.take().unwrap();
        assert_eq!(p.echo(), Ok(()));
        assert!(crate::engine::testing::wait_until(|| REPLIES_OK
            .load(Ordering::SeqCst)
            == 9));
        assert_eq!(watcher.suspended.load(Ordering::SeqCst), 0);
        assert_eq!(watcher.closed.load(Ordering::SeqCst), 0);
        drop(client);
        drop(server);
    }

    static POOL_DONE: AtomicU32 = AtomicU32::new(0);

    /// Keeps the packet its routine gets back, to be ended by the test.
    #[pin_data]
    struct Keep {
        #[pin]
        back: kernel::sync::SpinLockIrq<Option<kmcl::Packet>>,
    }

    impl kmcl::PacketDone for Keep {
        fn done(&self, packet: kmcl::Packet, status: Result, reply: &[u8]) {
            // The server (`Vsp`) completes packets without external data
            // with no payload.
            if status.is_ok() && reply.is_empty() {
                POOL_DONE.fetch_add(1, Ordering::SeqCst);
            }
            *self.back.lock() = Some(packet);
        }
    }

    /// Packet objects in the driver's memory (`VmbChannelSizeofPacket`,
    /// `VmbPacketInitialize`), the packet's channel (`VmbPacketGetChannel`)
    /// and whole pages by frame number (`VmbPacketSendWithExternalPfns`).
    #[test]
    fn packet_objects_in_driver_memory_and_pfns_through_the_wrapper() {
        POOL_DONE.store(0, Ordering::SeqCst);
        EXT_DONE.store(0, Ordering::SeqCst);
        EXT_REPLY.store(0, Ordering::SeqCst);
        let module: &'static ThisModule = &<crate::Kmcl as kernel::ModuleMetadata>::THIS_MODULE;
        let ty = kmcl::Guid { b: [0x7b; 16] };
        let (vsp, server) = vsp_server(module, &ty, 3 * 4096);
        let client = running_client(module, &ty);
        let (c, s) = (client.as_ref(), server.as_ref());

        let size = c.sizeof_packet();
        assert!(size >= 16);
        assert_eq!(s.sizeof_packet(), size);
        let keep = Arc::pin_init(
            pin_init!(Keep {
                back <- kernel::new_spinlock_irq!(None),
            }),
            GFP_KERNEL,
        )
        .unwrap();
        let memory = kmcl::PacketMemory::new(c, GFP_KERNEL).unwrap();
        let mut p = kmcl::Packet::initialize(c, memory, keep.clone()).unwrap();
        assert!(p.is_for(c));
        assert!(!p.is_for(s));
        assert_eq!(p.channel_raw(), c.as_raw());
        p.set_tag(7);
        // Sent, back, sent again: the object lives in the driver's memory.
        for round in 1..=3u32 {
            assert!(p.send(&[0x33; 24], true).is_ok());
            assert!(crate::engine::testing::wait_until(|| keep
                .back
                .lock()
                .is_some()));
            assert_eq!(POOL_DONE.load(Ordering::SeqCst), round);
            p = keep.back.lock().take().unwrap();
            assert_eq!(p.tag(), 7);
        }
        assert_eq!(vsp.without.load(Ordering::SeqCst), 3);
        // Ended, its memory makes another packet object.
        let memory = p.into_memory().unwrap();
        let p = kmcl::Packet::initialize(s, memory, keep.clone()).unwrap();
        assert!(p.is_for(s));
        assert!(p.into_memory().is_some());
        let done: Arc<dyn kmcl::PacketDone> = Arc::new(ExtDone, GFP_KERNEL).unwrap();
        assert!(kmcl::Packet::new(c, done.clone())
            .unwrap()
            .into_memory()
            .is_none());

        // Two whole pages of vmalloc memory by frame number.
        let mut buf = kernel::alloc::VVec::<u8>::with_capacity(2 * 4096, GFP_KERNEL).unwrap();
        for i in 0..2 * 4096 {
            buf.push((i % 249) as u8, GFP_KERNEL).unwrap();
        }
        // SAFETY: `buf` outlives the send (waited for below).
        let pages =
            unsafe { crate::shmem::GpadlPages::from_buffer(buf.as_ptr() as usize, 2 * 4096) }
                .unwrap();
        let mut pfns = KVec::new();
        for f in pages.pfns() {
            pfns.push(f, GFP_KERNEL).unwrap();
        }
        let p = kmcl::Packet::new(c, done.clone()).unwrap();
        // SAFETY: no frames: refused before anything is exposed.
        let (p, e) = unsafe { p.send_with_external_pfns(b"pfns", &[]) }.unwrap_err();
        assert_eq!(e, EINVAL);
        // SAFETY: `buf` stays allocated until the routine ran (waited for).
        assert!(unsafe { p.send_with_external_pfns(b"pfns", &pfns) }.is_ok());
        assert!(crate::engine::testing::wait_until(|| EXT_DONE
            .load(Ordering::SeqCst)
            == 1));
        assert_eq!(EXT_REPLY.load(Ordering::SeqCst), 2 * 4096);
        // The server read the pattern and wrote its mark over it.
        let seen = vsp.seen.lock();
        assert_eq!(seen.len(), 2 * 4096);
        assert!(seen.iter().enumerate().all(|(i, &b)| b == (i % 249) as u8));
        drop(seen);
        assert_eq!(&buf[..4], b"VSP!");
        assert_eq!(vsp.ranges.load(Ordering::SeqCst), 1);
        drop(client);
        drop(server);
    }

    /// A server that records the context each delivery ran in, defers a
    /// packet whose first byte is 1 once (its context area remembers),
    /// fails one whose first byte is 0xff, and echoes the rest.
    struct Contexts {
        softirq: AtomicU32,
        process: AtomicU32,
        deferred: AtomicU32,
        echoed: AtomicU32,
    }

    impl kmcl::Driver for Contexts {
        fn process_packet(&self, _channel: kmcl::ChannelRef<'_>, mut packet: kmcl::Incoming) {
            if crate::sys::context::may_sleep() {
                self.process.fetch_add(1, Ordering::SeqCst);
            } else {
                self.softirq.fetch_add(1, Ordering::SeqCst);
            }
            let first = packet.data().first().copied();
            match first {
                Some(0xff) => packet.fail(),
                Some(1) if packet.client_context()[0] == 0 => {
                    packet.client_context()[0] = 1;
                    self.deferred.fetch_add(1, Ordering::SeqCst);
                    packet.defer_to_passive();
                }
                _ => {
                    if packet.echo().is_ok() {
                        self.echoed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
    }

    fn contexts() -> Arc<Contexts> {
        Arc::new(
            Contexts {
                softirq: AtomicU32::new(0),
                process: AtomicU32::new(0),
                deferred: AtomicU32::new(0),
                echoed: AtomicU32::new(0),
            },
            GFP_KERNEL,
        )
        .unwrap()
    }

    /// The init setters, MMIO space, delivery contexts (softirq, deferral
    /// to passive, processing at passive), pause and start, disable and
    /// enable again, and PacketFail, through the wrapper.
    #[test]
    fn settings_contexts_and_flow_control_through_the_wrapper() {
        REPLIES_OK.store(0, Ordering::SeqCst);
        let module: &'static ThisModule = &<crate::Kmcl as kernel::ModuleMetadata>::THIS_MODULE;
        let ty = kmcl::Guid { b: [0x7c; 16] };
        let vsp = contexts();
        let mut server = kmcl::Channel::new(module, kmcl::Role::Server, vsp.clone()).unwrap();
        assert_eq!(server.set_offer(&ty, &INSTANCE), Ok(()));
        assert_eq!(server.set_friendly_name(c"kmcl_wrapper_settings"), Ok(()));
        assert_eq!(server.set_mmio_megabytes(1, 1), Ok(()));
        assert_eq!(server.set_client_context_size(8), Ok(()));
        assert_eq!(server.set_target_processor(Some(0)), Ok(()));
        assert_eq!(server.set_ring_pages(8, 8), Err(EINVAL)); // client only
        assert_eq!(server.enable(), Ok(()));
        // Init setters refuse an enabled channel.
        assert_eq!(server.set_maximum_packet_size(512), Err(EBUSY));
        assert_eq!(server.start(), Ok(()));
        let watcher = watcher();
        let mut client = kmcl::Channel::new(module, kmcl::Role::Client, watcher.clone()).unwrap();
        assert_eq!(client.set_target(&ty, Some(&INSTANCE)), Ok(()));
        assert_eq!(client.set_transport(kmcl::abi::TRANSPORT_LOOPBACK), Ok(()));
        assert_eq!(client.set_transport(7), Err(EINVAL));
        assert_eq!(client.set_ring_pages(8, 8), Ok(()));
        assert_eq!(client.set_maximum_packet_size(64), Ok(()));
        assert_eq!(client.set_friendly_name(c"kmcl_wrapper_settings_c"), Ok(()));
        assert_eq!(client.as_ref().mmio_space().err(), Some(ENOTCONN));
        assert_eq!(client.enable(), Ok(()));
        assert!(crate::engine::testing::wait_until(|| watcher
            .running
            .load(Ordering::SeqCst)));
        // The server's MMIO space, as the client sees it: 1 + 1 MiB here.
        let (va, size) = client.as_ref().mmio_space().unwrap();
        assert_ne!(va, 0);
        assert_eq!(size, 2 << 20);
        assert_eq!(client.as_ref().mmio_physical().err(), Some(EOPNOTSUPP));
        // The maximum packet size: a longer payload is refused.
        let done = KBox::new(Echo(2), GFP_KERNEL).unwrap();
        assert_eq!(client.send(&[2; 72], true, done), Err(EINVAL));
        assert_eq!(client.as_ref().post(&[2; 72]), Err(EINVAL));
        // Posted packets (no routine): delivered and echoed; nobody waits.
        for _ in 0..5 {
            assert_eq!(client.as_ref().post(&[6; 24]), Ok(()));
        }
        assert!(crate::engine::testing::wait_until(|| vsp
            .echoed
            .load(Ordering::SeqCst)
            == 5));
        assert_eq!(REPLIES_OK.load(Ordering::SeqCst), 0);
        vsp.echoed.store(0, Ordering::SeqCst);
        vsp.softirq.store(0, Ordering::SeqCst);

        // Softirq delivery; a deferred packet comes again in process
        // context (the same packet: its context area says so).
        for (n, first) in [(1u32, 2u8), (2, 1)] {
            let done = KBox::new(Echo(first), GFP_KERNEL).unwrap();
            assert_eq!(client.send(&[first; 24], true, done), Ok(()));
            assert!(crate::engine::testing::wait_until(|| REPLIES_OK
                .load(Ordering::SeqCst)
                == n));
        }
        assert_eq!(vsp.deferred.load(Ordering::SeqCst), 1);
        assert_eq!(vsp.softirq.load(Ordering::SeqCst), 2);
        assert_eq!(vsp.process.load(Ordering::SeqCst), 1);

        // Paused, the server gets nothing; started, it gets the packet.
        assert_eq!(server.pause(), Ok(()));
        let done = KBox::new(Echo(3), GFP_KERNEL).unwrap();
        assert_eq!(client.send(&[3; 24], true, done), Ok(()));
        assert!(!crate::engine::testing::wait_for(1, || REPLIES_OK
            .load(Ordering::SeqCst)
            == 3));
        assert_eq!(vsp.echoed.load(Ordering::SeqCst), 2);
        assert_eq!(server.start(), Ok(()));
        assert!(crate::engine::testing::wait_until(|| REPLIES_OK
            .load(Ordering::SeqCst)
            == 3));

        // The client closes and opens again.
        assert_eq!(client.disable(), Ok(()));
        assert_eq!(watcher.closed.load(Ordering::SeqCst), 1);
        watcher.running.store(false, Ordering::SeqCst);
        assert_eq!(client.enable(), Ok(()));
        assert!(crate::engine::testing::wait_until(|| watcher
            .running
            .load(Ordering::SeqCst)));
        let done = KBox::new(Echo(4), GFP_KERNEL).unwrap();
        assert_eq!(client.send(&[4; 24], true, done), Ok(()));
        assert!(crate::engine::testing::wait_until(|| REPLIES_OK
            .load(Ordering::SeqCst)
            == 4));

        // PacketFail: the connection closes; the client is told.
        let done = KBox::new(Echo(0xff), GFP_KERNEL).unwrap();
        assert_eq!(client.send(&[0xff; 24], true, done), Ok(()));
        assert!(crate::engine::testing::wait_until(|| watcher
            .closed
            .load(Ordering::SeqCst)
            == 2));
        assert_eq!(REPLIES_OK.load(Ordering::SeqCst), 4);
        drop(client);
        drop(server);

        // Processing at passive: every delivery in process context.
        let vsp = contexts();
        let mut server = kmcl::Channel::new(module, kmcl::Role::Server, vsp.clone()).unwrap();
        assert_eq!(server.set_offer(&ty, &INSTANCE), Ok(()));
        assert_eq!(server.set_incoming_processing_at_passive(true), Ok(()));
        assert_eq!(server.enable(), Ok(()));
        assert_eq!(server.start(), Ok(()));
        let client = running_client(module, &ty);
        for n in 5..=7u8 {
            let done = KBox::new(Echo(n), GFP_KERNEL).unwrap();
            assert_eq!(client.send(&[n; 24], true, done), Ok(()));
        }
        assert!(crate::engine::testing::wait_until(|| REPLIES_OK
            .load(Ordering::SeqCst)
            == 7));
        assert_eq!(vsp.process.load(Ordering::SeqCst), 3);
        assert_eq!(vsp.softirq.load(Ordering::SeqCst), 0);
        drop(client);
        drop(server);
    }

    /// External data from one page (`send_with_page`) and from page ranges
    /// (`send_with_page_buffers`), through the wrapper.
    #[test]
    fn page_sends_through_the_wrapper() {
        EXT_DONE.store(0, Ordering::SeqCst);
        EXT_REPLY.store(0, Ordering::SeqCst);
        let module: &'static ThisModule = &<crate::Kmcl as kernel::ModuleMetadata>::THIS_MODULE;
        let ty = kmcl::Guid { b: [0x7d; 16] };
        let (vsp, server) = vsp_server(module, &ty, 3 * 4096);
        // Not connected yet: no sub-channel index.
        assert_eq!(server.as_ref().subchannel_index(), Err(ENOTCONN));
        let client = running_client(module, &ty);
        let c = client.as_ref();
        let done: Arc<dyn kmcl::PacketDone> = Arc::new(ExtDone, GFP_KERNEL).unwrap();

        let page = kernel::page::Page::alloc_page(GFP_KERNEL).unwrap();
        let mut pattern = KVec::with_capacity(4096, GFP_KERNEL).unwrap();
        for i in 0..4096 {
            pattern.push((i % 253) as u8, GFP_KERNEL).unwrap();
        }
        // SAFETY: `pattern` holds 4096 readable bytes.
        unsafe { page.write_raw(pattern.as_ptr(), 0, 4096) }.unwrap();
        let p = kmcl::Packet::new(c, done.clone()).unwrap();
        // SAFETY: `page` outlives the transaction (waited for below).
        assert!(unsafe { p.send_with_page(b"page", &page, 100, 1000) }.is_ok());
        assert!(crate::engine::testing::wait_until(|| EXT_DONE
            .load(Ordering::SeqCst)
            == 1));
        assert_eq!(EXT_REPLY.load(Ordering::SeqCst), 1000);
        assert!(vsp.seen.lock()[..] == pattern[100..1100]);
        let mut mark = [0u8; 4];
        // SAFETY: `mark` holds 4 writable bytes.
        unsafe { page.read_raw(mark.as_mut_ptr(), 100, 4) }.unwrap();
        assert_eq!(&mark, b"VSP!");

        // Page ranges of vmalloc memory: one range (the server takes one).
        let mut buf = kernel::alloc::VVec::<u8>::with_capacity(4096, GFP_KERNEL).unwrap();
        for i in 0..4096 {
            buf.push((i % 241) as u8, GFP_KERNEL).unwrap();
        }
        // SAFETY: `buf` outlives the sends (waited for).
        let pages =
            unsafe { crate::shmem::GpadlPages::from_buffer(buf.as_ptr() as usize, 4096) }.unwrap();
        let pfn = pages.pfns().next().unwrap();
        let one = [kmcl::PageBuffer {
            len: 300,
            offset: 40,
            pfn,
        }];
        let p = kmcl::Packet::new(c, done.clone()).unwrap();
        // SAFETY: no range: refused before anything is exposed.
        let (p, e) = unsafe { p.send_with_page_buffers(b"pb", &[]) }.unwrap_err();
        assert_eq!(e, EINVAL);
        // SAFETY: `buf` stays allocated until the routine ran.
        assert!(unsafe { p.send_with_page_buffers(b"pb", &one) }.is_ok());
        assert!(crate::engine::testing::wait_until(|| EXT_DONE
            .load(Ordering::SeqCst)
            == 2));
        assert_eq!(EXT_REPLY.load(Ordering::SeqCst), 300);
        // What the server read (before it wrote its mark over it).
        let seen = vsp.seen.lock();
        assert_eq!(seen.len(), 300);
        assert!(seen
            .iter()
            .enumerate()
            .all(|(i, &b)| b == ((i + 40) % 241) as u8));
        drop(seen);
        assert_eq!(&buf[40..44], b"VSP!");
        drop(client);
        drop(server);
    }

    /// The scoped forms: a `Gpadl` deleted when dropped, a server's
    /// `Mapping` unmapped when dropped, and both kept by handle with
    /// `into_handle`.
    #[test]
    fn gpadl_and_mapping_guards_through_the_wrapper() {
        let module: &'static ThisModule = &<crate::Kmcl as kernel::ModuleMetadata>::THIS_MODULE;
        let ty = kmcl::Guid { b: [0x7e; 16] };
        let (_vsp, server) = vsp_server(module, &ty, 4096);
        let client = running_client(module, &ty);
        let (c, s) = (client.as_ref(), server.as_ref());
        let mem = kmcl::SharedPages::new(2).unwrap();
        assert_eq!(mem.write(100, b"from the client"), Ok(()));
        let gpadl = c.share(&mem, false).unwrap();
        let handle = gpadl.handle();
        {
            let mapping = s.map(handle, true).unwrap();
            assert_eq!(mapping.len(), 2 * 4096);
            assert!(!mapping.is_empty());
            let mut buf = [0u8; 15];
            assert_eq!(mapping.read(100, &mut buf), Ok(()));
            assert_eq!(&buf, b"from the client");
            assert_eq!(mapping.write(5000, b"from the server"), Ok(()));
            assert_eq!(mapping.write(2 * 4096 - 1, b"xx"), Err(EINVAL));
            // Dropped here: unmapped.
        }
        let mut back = [0u8; 15];
        assert_eq!(mem.read(5000, &mut back), Ok(()));
        assert_eq!(&back, b"from the server");
        assert_eq!(s.read_gpadl(handle, 0, &mut back), Err(ENOENT));
        // A read-only mapping kept by handle, then unmapped by handle.
        let kept = s.map(handle, false).unwrap();
        assert_eq!(kept.write(0, b"no"), Err(EACCES));
        let kept = kept.into_handle();
        assert_eq!(kept, handle);
        assert_eq!(s.read_gpadl(handle, 100, &mut back), Ok(()));
        assert_eq!(s.unmap_gpadl(handle), Ok(()));
        // Dropped: deleted (deleting it again finds nothing).
        drop(gpadl);
        assert_eq!(c.delete_gpadl(handle), Err(ENOENT));
        // Kept by handle beyond the object, deleted by handle.
        let other = c.share(&mem, true).unwrap().into_handle();
        assert_eq!(s.map(other, true).err(), Some(EACCES));
        assert_eq!(c.delete_gpadl(other), Ok(()));
        drop(client);
        drop(server);
    }
}

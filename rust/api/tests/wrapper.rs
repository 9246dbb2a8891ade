// SPDX-License-Identifier: GPL-2.0

//! The safe Rust wrapper (`include/kmcl/rust/kmcl.rs`), compiled into the
//! test build exactly as a Rust driver includes it, and driven as one: a
//! server and a client made with `kmcl::Channel`, packets sent with
//! `Channel::send` and echoed by a `kmcl::Driver`, the per-packet context
//! area through `Incoming::client_context`.  The wrapper's `extern "C"`
//! declarations resolve to kmcl's own exports.

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
}

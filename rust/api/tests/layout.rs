// SPDX-License-Identifier: GPL-2.0

//! The ABI's layouts and versioned tables, as C sees them.

use kernel::prelude::*;

#[kunit_tests(kmcl_abi_layout)]
mod cases {
    use super::super::*;

    #[test]
    fn c_and_rust_layouts_agree() {
        use core::mem::{offset_of, size_of};
        let mut n = 0u32;
        // SAFETY: returns a static array and writes its length.
        let c = unsafe { glue::kmcl_glue_c_layout(&mut n) };
        // SAFETY: `c` has `n` entries.
        let c = unsafe { core::slice::from_raw_parts(c, n as usize) };
        let rust = [
            size_of::<StateCallbacks>(),
            size_of::<KmclMdl>(),
            size_of::<ClientInterfaceV1>(),
            size_of::<ServerOnlyMethods>(),
            size_of::<ServerInterfaceV1>(),
            size_of::<KmclTransferRange>(),
            size_of::<KmclPageBuffer>(),
            size_of::<abi::ClientInterfaceV2>(),
            size_of::<abi::ServerInterfaceV2>(),
            offset_of!(StateCallbacks, version),
            offset_of!(StateCallbacks, size),
            offset_of!(StateCallbacks, opened),
            offset_of!(StateCallbacks, closed),
            offset_of!(StateCallbacks, suspend),
            offset_of!(StateCallbacks, started),
            offset_of!(StateCallbacks, post_started),
            offset_of!(KmclMdl, pages),
            offset_of!(KmclMdl, nr_pages),
            offset_of!(KmclMdl, offset),
            offset_of!(KmclMdl, length),
            offset_of!(KmclMdl, next),
            offset_of!(ClientInterfaceV1, version),
            offset_of!(ClientInterfaceV1, channel_allocate),
            offset_of!(ClientInterfaceV1, channel_init_set_state_change_callbacks),
            offset_of!(ClientInterfaceV1, channel_start),
            offset_of!(ClientInterfaceV1, packet_set_pointer),
            offset_of!(ServerOnlyMethods, server_channel_init_set_vmbus_handle),
            offset_of!(ServerInterfaceV1, server),
            offset_of!(KmclTransferRange, byte_count),
            offset_of!(KmclTransferRange, byte_offset),
            offset_of!(KmclPageBuffer, len),
            offset_of!(KmclPageBuffer, offset),
            offset_of!(KmclPageBuffer, pfn),
            offset_of!(abi::ClientInterfaceV2, v2),
            offset_of!(abi::ClientInterfaceV2, v2.loopback_vmbus_destroy),
            offset_of!(abi::ClientInterfaceV2, v2.channel_get_mmio_physical),
            offset_of!(abi::ServerInterfaceV2, v2),
            offset_of!(
                abi::ServerInterfaceV2,
                v2.channel_register_transfer_page_set
            ),
            offset_of!(abi::ServerInterfaceV2, packet_restored),
        ];
        assert_eq!(c.len(), rust.len());
        for (i, (c, r)) in c.iter().zip(rust.iter()).enumerate() {
            if *c as usize != *r {
                pr_err!("ABI layout entry {}: C {} Rust {}\n", i, c, r);
            }
            assert_eq!(*c as usize, *r);
        }
        // 41 client functions and 14 server-only ones, as in KMCL.
        assert_eq!(size_of::<ClientInterfaceV1>(), 8 + 41 * 8);
        assert_eq!(size_of::<ServerOnlyMethods>(), 14 * 8);
    }

    #[test]
    fn interface_query_checks_kind_size_and_version() {
        let mut client = core::mem::MaybeUninit::<ClientInterfaceV1>::zeroed();
        let mut server = core::mem::MaybeUninit::<ServerInterfaceV1>::zeroed();
        let csize = core::mem::size_of::<ClientInterfaceV1>() as u32;
        let ssize = core::mem::size_of::<ServerInterfaceV1>() as u32;
        let cptr = client.as_mut_ptr().cast::<c_void>();
        let sptr = server.as_mut_ptr().cast::<c_void>();
        // SAFETY: each call gets a buffer of at least `size` bytes.
        unsafe {
            assert_eq!(
                kmcl_query_interface(CLIENT_INTERFACE, csize - 8, 1, cptr),
                -22
            );
            assert_eq!(kmcl_query_interface(CLIENT_INTERFACE, csize, 3, cptr), -95);
            // Version 2's tables are larger.
            assert_eq!(kmcl_query_interface(CLIENT_INTERFACE, csize, 2, cptr), -22);
            assert_eq!(kmcl_query_interface(CLIENT_INTERFACE, csize, 0, cptr), -95);
            assert_eq!(kmcl_query_interface(7, csize, 1, cptr), -22);
            assert_eq!(
                kmcl_query_interface(CLIENT_INTERFACE, csize, 1, core::ptr::null_mut()),
                -22
            );
            // The server table is larger: a client-sized buffer is refused.
            assert_eq!(kmcl_query_interface(SERVER_INTERFACE, csize, 1, cptr), -22);
            assert_eq!(kmcl_query_interface(CLIENT_INTERFACE, csize, 1, cptr), 0);
            assert_eq!(kmcl_query_interface(SERVER_INTERFACE, ssize, 1, sptr), 0);
        }
        // SAFETY: filled by the successful queries.
        let (client, server) = unsafe { (client.assume_init(), server.assume_init()) };
        assert_eq!((client.size, client.version), (csize, 1));
        assert_eq!((server.client.size, server.client.version), (ssize, 1));
        let enable: abi::FnChannelEnable = kmcl_channel_enable;
        let set_pointer: abi::FnPacketSetPointer = kmcl_packet_set_pointer;
        let allocate: abi::FnChannelAllocate = kmcl_channel_allocate;
        let target: abi::FnServerChannelInitSetTargetInterfaceId =
            kmcl_server_channel_init_set_target_interface_id;
        assert!(client.channel_enable as usize == enable as usize);
        assert!(client.packet_set_pointer as usize == set_pointer as usize);
        assert!(server.client.channel_allocate as usize == allocate as usize);
        assert!(
            server.server.server_channel_init_set_target_interface_id as usize == target as usize
        );
    }

    /// Version 2: version 1's tables unchanged as the prefix, then the
    /// later KMCL functions and kmcl's own.
    #[test]
    fn version_2_tables_keep_version_1_as_their_prefix() {
        use abi::{ClientInterfaceV2, ServerInterfaceV2};
        use core::mem::{size_of, MaybeUninit};
        let mut c1 = MaybeUninit::<ClientInterfaceV1>::zeroed();
        let mut c2 = MaybeUninit::<ClientInterfaceV2>::zeroed();
        let mut s1 = MaybeUninit::<ServerInterfaceV1>::zeroed();
        let mut s2 = MaybeUninit::<ServerInterfaceV2>::zeroed();
        let (c1n, c2n) = (
            size_of::<ClientInterfaceV1>(),
            size_of::<ClientInterfaceV2>(),
        );
        let (s1n, s2n) = (
            size_of::<ServerInterfaceV1>(),
            size_of::<ServerInterfaceV2>(),
        );
        // 16 additions, and kmcl_packet_restored for servers.
        assert_eq!(c2n, c1n + 16 * 8);
        assert_eq!(s2n, s1n + 17 * 8);
        // SAFETY: each buffer has the size passed.
        unsafe {
            assert_eq!(
                kmcl_query_interface(CLIENT_INTERFACE, c1n as u32, 1, c1.as_mut_ptr().cast()),
                0
            );
            assert_eq!(
                kmcl_query_interface(CLIENT_INTERFACE, c2n as u32, 2, c2.as_mut_ptr().cast()),
                0
            );
            assert_eq!(
                kmcl_query_interface(SERVER_INTERFACE, s1n as u32, 1, s1.as_mut_ptr().cast()),
                0
            );
            assert_eq!(
                kmcl_query_interface(SERVER_INTERFACE, s2n as u32, 2, s2.as_mut_ptr().cast()),
                0
            );
            assert_eq!(
                kmcl_query_interface(SERVER_INTERFACE, c2n as u32, 2, s2.as_mut_ptr().cast()),
                -22
            );
        }
        // SAFETY: filled by the queries.
        let (c1, c2, s1, s2) = unsafe {
            (
                c1.assume_init(),
                c2.assume_init(),
                s1.assume_init(),
                s2.assume_init(),
            )
        };
        assert_eq!((c2.v1.size, c2.v1.version), (c2n as u32, 2));
        assert_eq!((s2.v1.client.size, s2.v1.client.version), (s2n as u32, 2));
        // The V1 prefix is the V1 table, function for function (all but
        // the size and version words).
        let words = |p: *const u8, n: usize| {
            // SAFETY: `p` points to a filled table of at least `n` bytes.
            unsafe { core::slice::from_raw_parts(p.add(8), n - 8) }
        };
        let p1 = core::ptr::from_ref(&c1).cast::<u8>();
        let p2 = core::ptr::from_ref(&c2).cast::<u8>();
        assert!(words(p1, c1n) == words(p2, c1n));
        let q1 = core::ptr::from_ref(&s1).cast::<u8>();
        let q2 = core::ptr::from_ref(&s2).cast::<u8>();
        assert!(words(q1, s1n) == words(q2, s1n));
        let register: abi::FnChannelRegisterTransferPageSet =
            kmcl_channel_register_transfer_page_set;
        let primary: abi::FnChannelInitSetPrimaryChannel = kmcl_channel_init_set_primary_channel;
        let context: abi::FnChannelPacketGetClientContext = kmcl_channel_packet_get_client_context;
        let destroy: abi::FnLoopbackVmbusDestroy = kmcl_loopback_vmbus_destroy;
        let restored: abi::FnPacketRestored = kmcl_packet_restored;
        let physical: abi::FnChannelGetMmioPhysical = kmcl_channel_get_mmio_physical;
        assert!(c2.v2.channel_get_mmio_physical as usize == physical as usize);
        assert!(c2.v2.channel_register_transfer_page_set as usize == register as usize);
        assert!(c2.v2.channel_init_set_primary_channel as usize == primary as usize);
        assert!(c2.v2.channel_packet_get_client_context as usize == context as usize);
        assert!(s2.v2.loopback_vmbus_destroy as usize == destroy as usize);
        assert!(s2.packet_restored as usize == restored as usize);
    }

    #[test]
    fn state_callbacks_are_checked_for_version_and_size() {
        let ch = allocate(false);
        let mut cb = StateCallbacks::new();
        // SAFETY: `ch` is live; `cb` is a readable structure.
        unsafe {
            cb.version = 2;
            assert_eq!(kmcl_channel_init_set_state_change_callbacks(ch, &cb), -22);
            cb.version = STATE_CALLBACKS_VERSION;
            cb.size -= 8;
            assert_eq!(kmcl_channel_init_set_state_change_callbacks(ch, &cb), -22);
            cb.size += 16;
            assert_eq!(kmcl_channel_init_set_state_change_callbacks(ch, &cb), -22);
            assert_eq!(
                kmcl_channel_init_set_state_change_callbacks(ch, core::ptr::null()),
                -22
            );
            cb = StateCallbacks::new();
            assert_eq!(kmcl_channel_init_set_state_change_callbacks(ch, &cb), 0);
            // NULL handles are refused, role-specific setters check the role.
            assert_eq!(kmcl_channel_enable(core::ptr::null_mut()), -22);
            let ty = Guid { b: [1; 16] };
            assert_eq!(
                kmcl_server_channel_init_set_target_interface_id(ch, &ty, &ty),
                -22
            );
            assert_eq!(
                kmcl_client_channel_init_set_ring_buffer_page_count(ch, 0, 4),
                -22
            );
            assert_eq!(kmcl_channel_init_set_maximum_packet_size(ch, 0), -22);
            assert_eq!(kmcl_channel_init_set_client_context_size(ch, 4097), -22);
            kmcl_channel_cleanup(ch);
        }
    }
}

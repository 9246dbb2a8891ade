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
            assert_eq!(kmcl_query_interface(CLIENT_INTERFACE, csize, 2, cptr), -95);
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

// SPDX-License-Identifier: GPL-2.0

//! GPADLs and MMIO space through the C ABI.

use kernel::prelude::*;

#[kunit_tests(kmcl_abi_memory)]
mod cases {
    use super::super::*;

    #[test]
    fn gpadls_through_the_c_abi_from_a_buffer_and_from_an_mdl() {
        let (server, client) = echo_pair(core::ptr::null_mut());
        // 10,000 bytes of vmalloc memory with a pattern; both GPADLs live
        // (deleted below) for less long than `buf`.
        let mut buf = kernel::alloc::VVec::<u8>::with_capacity(10_000, GFP_KERNEL).unwrap();
        for i in 0..10_000u32 {
            buf.push((i % 251) as u8, GFP_KERNEL).unwrap();
        }
        // SAFETY: as above: `buf` outlives the pages' use.
        let pages = unsafe { GpadlPages::from_buffer(buf.as_ptr() as usize, 10_000) }.unwrap();
        // The buffer's description, as `struct kmcl_mdl`.
        let mdl: *const KmclMdl = core::ptr::from_ref(pages.mdl_view()).cast();
        let n = pages.mdl_view().nr_pages;
        let (mut whole, mut tail) = (0u32, 0u32);
        // SAFETY: live handles; `buf` and `mdl` outlive the GPADLs.
        unsafe {
            assert_eq!(
                kmcl_channel_create_gpadl_from_buffer(
                    client,
                    GPADL_FLAG_READ_ONLY,
                    buf.as_mut_ptr().cast(),
                    10_000,
                    &mut whole
                ),
                0
            );
            // From byte 5000 of the MDL to its end (length 0).
            assert_eq!(
                kmcl_channel_create_gpadl_from_mdl(client, 0, mdl, 5000, 0, &mut tail),
                0
            );
            assert_eq!(
                kmcl_channel_create_gpadl_from_mdl(client, 0, mdl, 9000, 2000, &mut tail),
                -22
            );
            let mut m = core::ptr::null_mut();
            // Read-only: no write mapping.
            assert_eq!(kmcl_channel_map_gpadl(server, 0, whole, &mut m), -13);
            assert_eq!(
                kmcl_channel_map_gpadl(server, GPADL_FLAG_READ_ONLY, whole, &mut m),
                0
            );
            let got = &*m;
            assert_eq!((got.length, got.nr_pages), (10_000, n));
            let mut t = core::ptr::null_mut();
            assert_eq!(kmcl_channel_map_gpadl(server, 0, tail, &mut t), 0);
            let got = &*t;
            assert_eq!(got.length, 5000);
            // The server reads the client's bytes through the MDL it got.
            let slice = core::slice::from_raw_parts(
                got.pages.cast::<*mut crate::shmem::Page>(),
                got.nr_pages as usize,
            );
            let view =
                GpadlPages::from_pages(slice, got.offset as usize, got.length as usize).unwrap();
            let mut b = [0u8; 16];
            view.read(0, &mut b).unwrap();
            assert!((0..16).all(|i| b[i] == ((5000 + i) % 251) as u8));
            view.read(4984, &mut b).unwrap();
            assert!((0..16).all(|i| b[i] == ((9984 + i) % 251) as u8));
            assert_eq!(kmcl_channel_unmap_gpadl(server, whole), 0);
            assert_eq!(kmcl_channel_unmap_gpadl(server, tail), 0);
            assert_eq!(kmcl_channel_unmap_gpadl(server, tail), -2);
            assert_eq!(kmcl_channel_delete_gpadl(client, whole), 0);
            assert_eq!(kmcl_channel_delete_gpadl(client, tail), 0);
            assert_eq!(kmcl_channel_delete_gpadl(client, tail), -2);
            assert_eq!(kmcl_channel_disable(client), 0);
            assert_eq!(kmcl_channel_disable(server), 0);
            kmcl_channel_cleanup(client);
            kmcl_channel_cleanup(server);
        }
        drop(pages);
    }

    #[test]
    fn mmio_space_is_memory_both_endpoints_share_while_connected() {
        let (server, client, plain) = (allocate(true), allocate(false), allocate(true));
        let ty = Guid { b: [0x4d; 16] };
        let (mut cva, mut sva) = (core::ptr::null_mut(), core::ptr::null_mut());
        let (mut csize, mut ssize) = (0u64, 0u64);
        // SAFETY: the handles are live; outputs writable; the MMIO space
        // is used only while the channels are connected, within its size.
        unsafe {
            assert_eq!(
                kmcl_server_channel_init_set_target_interface_id(server, &ty, &INSTANCE),
                0
            );
            // 2 MiB required, 1 MiB optional: 3 MiB when memory allows.
            assert_eq!(kmcl_server_channel_init_set_mmio_megabytes(server, 2, 1), 0);
            assert_eq!(
                kmcl_client_channel_init_set_target_pnp(client, &ty, &INSTANCE, None),
                0
            );
            assert_eq!(kmcl_channel_enable(server), 0);
            assert_eq!(kmcl_channel_enable(client), 0);
            assert!(wait_until(|| kmcl_channel_get_mmio_space(
                client, &mut cva, &mut csize
            ) == 0));
            assert_eq!(kmcl_channel_get_mmio_space(server, &mut sva, &mut ssize), 0);
            assert_eq!(csize, 3 << 20);
            assert_eq!((sva, ssize), (cva, csize));
            // Ordinary memory: no physical range to tell a host.
            let (mut start, mut bytes) = (0u64, 0u64);
            assert_eq!(
                kmcl_channel_get_mmio_physical(client, &mut start, &mut bytes),
                -95
            );
            assert_eq!(
                kmcl_channel_get_mmio_physical(client, core::ptr::null_mut(), &mut bytes),
                -22
            );
            let space = core::slice::from_raw_parts_mut(cva.cast::<u8>(), csize as usize);
            assert!(space.iter().all(|b| *b == 0));
            space[0] = 0x11;
            space[(3 << 20) - 1] = 0x22;
            let seen = core::slice::from_raw_parts(sva.cast::<u8>(), ssize as usize);
            assert_eq!((seen[0], seen[(3 << 20) - 1]), (0x11, 0x22));
            // Gone with the connection.
            assert_eq!(kmcl_channel_disable(client), 0);
            assert_eq!(
                kmcl_channel_get_mmio_space(client, &mut cva, &mut csize),
                -107
            );
            assert_eq!(
                kmcl_channel_get_mmio_physical(client, &mut start, &mut bytes),
                -107
            );
            assert_eq!(kmcl_channel_disable(server), 0);
            assert_eq!(
                kmcl_channel_get_mmio_space(server, &mut sva, &mut ssize),
                -107
            );
            // An offer without MMIO space.
            let ty2 = Guid { b: [0x4e; 16] };
            assert_eq!(
                kmcl_server_channel_init_set_target_interface_id(plain, &ty2, &INSTANCE),
                0
            );
            assert_eq!(
                kmcl_client_channel_init_set_target_pnp(client, &ty2, &INSTANCE, None),
                0
            );
            assert_eq!(kmcl_channel_enable(plain), 0);
            assert_eq!(kmcl_channel_enable(client), 0);
            assert!(wait_until(|| kmcl_channel_get_mmio_space(
                client, &mut cva, &mut csize
            ) != -107));
            assert_eq!(
                kmcl_channel_get_mmio_space(client, &mut cva, &mut csize),
                -61
            );
            // Init-time only.
            assert_eq!(
                kmcl_server_channel_init_set_mmio_megabytes(plain, 1, 0),
                -16
            );
            assert_eq!(kmcl_channel_disable(client), 0);
            assert_eq!(kmcl_channel_disable(plain), 0);
            kmcl_channel_cleanup(client);
            kmcl_channel_cleanup(server);
            kmcl_channel_cleanup(plain);
        }
    }
}

// SPDX-License-Identifier: GPL-2.0

//! Connecting: PnP failures, the VMBus host, target processors, VMBus
//! handles and VTLs.

use kernel::prelude::*;

#[kunit_tests(kmcl_abi_connect)]
mod cases {
    use super::super::*;

    static PNP_STATUS: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(0);

    /// Refuses every connection.
    ///
    /// # Safety
    ///
    /// Called by kmcl as `EvtChannelOpened`.
    unsafe extern "C" fn refuse(_ch: *mut KmclChannel) -> c_int {
        -111
    }

    /// Records the PnpFailure status.
    ///
    /// # Safety
    ///
    /// Called by kmcl as `EvtChannelPnpFailure`.
    unsafe extern "C" fn pnp_failed(_ch: *mut KmclChannel, status: c_int) {
        PNP_STATUS.store(status, Ordering::SeqCst);
    }

    #[test]
    fn pnp_failure_reaches_the_c_callback_set_with_the_target() {
        PNP_STATUS.store(0, Ordering::SeqCst);
        let (server, client) = (allocate(true), allocate(false));
        let mut cb = StateCallbacks::new();
        cb.opened = Some(refuse);
        // SAFETY: the handles are live; structures readable.
        unsafe {
            assert_eq!(
                kmcl_server_channel_init_set_target_interface_id(server, &TYPE, &INSTANCE),
                0
            );
            assert_eq!(
                kmcl_channel_init_set_process_packet_callbacks(server, Some(echo), None),
                0
            );
            assert_eq!(kmcl_channel_init_set_state_change_callbacks(server, &cb), 0);
            // No state callbacks on the client: PnpFailure still arrives.
            assert_eq!(
                kmcl_client_channel_init_set_target_pnp(client, &TYPE, &INSTANCE, Some(pnp_failed)),
                0
            );
            assert_eq!(kmcl_channel_enable(server), 0);
            assert_eq!(kmcl_channel_enable(client), 0);
            assert!(wait_until(|| PNP_STATUS.load(Ordering::SeqCst) != 0));
            assert_eq!(PNP_STATUS.load(Ordering::SeqCst), -111);
            // The client is disabled again.
            assert_eq!(kmcl_channel_disable(client), -16);
            kmcl_channel_cleanup(client);
            kmcl_channel_cleanup(server);
        }
    }

    #[test]
    fn a_client_set_to_the_vmbus_host_gets_pnp_failure_without_one() {
        PNP_STATUS.store(0, Ordering::SeqCst);
        let (server, client) = (allocate(true), allocate(false));
        // SAFETY: the handles are live; structures readable.
        unsafe {
            assert_eq!(kmcl_client_channel_init_set_transport(client, 7), -22);
            assert_eq!(
                kmcl_client_channel_init_set_transport(server, TRANSPORT_HOST),
                -22
            );
            assert_eq!(
                kmcl_client_channel_init_set_transport(core::ptr::null_mut(), 0),
                -22
            );
            assert_eq!(
                kmcl_client_channel_init_set_target_pnp(client, &TYPE, &INSTANCE, Some(pnp_failed)),
                0
            );
            assert_eq!(
                kmcl_client_channel_init_set_transport(client, TRANSPORT_HOST),
                0
            );
            // Even with a loopback server offering the interface.
            assert_eq!(
                kmcl_server_channel_init_set_target_interface_id(server, &TYPE, &INSTANCE),
                0
            );
            assert_eq!(kmcl_channel_enable(server), 0);
            assert_eq!(kmcl_channel_enable(client), 0);
            if crate::transport::hyperv::vmbus::vmbus_host_present() {
                // A real host: the client waits for a device of TYPE.
                fsleep(Delta::from_millis(100));
                assert_eq!(PNP_STATUS.load(Ordering::SeqCst), 0);
                assert_eq!(kmcl_channel_disable(client), 0);
            } else {
                assert!(wait_until(|| PNP_STATUS.load(Ordering::SeqCst) != 0));
                assert_eq!(PNP_STATUS.load(Ordering::SeqCst), -19);
                assert_eq!(kmcl_channel_disable(client), -16);
                // Set back to auto (the default), it finds the server.
                assert_eq!(
                    kmcl_client_channel_init_set_transport(client, TRANSPORT_AUTO),
                    0
                );
                assert_eq!(kmcl_channel_enable(client), 0);
                assert!(wait_until(|| with_channel(client, |h| {
                    if h.channel.is_running() {
                        Ok(())
                    } else {
                        Err(EAGAIN)
                    }
                }) == 0));
                assert_eq!(kmcl_channel_disable(client), 0);
            }
            assert_eq!(kmcl_channel_disable(server), 0);
            kmcl_channel_cleanup(client);
            kmcl_channel_cleanup(server);
        }
    }

    #[test]
    fn the_target_processor_is_checked_and_set_while_disabled() {
        let (server, client) = (allocate(true), allocate(false));
        let ty = Guid { b: [0x54; 16] };
        let cpus = kernel::cpu::nr_cpu_ids();
        // SAFETY: the handles are live.
        unsafe {
            assert_eq!(
                kmcl_channel_init_set_target_processor(core::ptr::null_mut(), 0),
                -22
            );
            assert_eq!(kmcl_channel_init_set_target_processor(client, cpus), -22);
            assert_eq!(kmcl_channel_init_set_target_processor(client, 0), 0);
            assert_eq!(
                kmcl_channel_init_set_target_processor(client, TARGET_PROCESSOR_NONE),
                0
            );
            assert_eq!(kmcl_channel_init_set_target_processor(server, cpus - 1), 0);
            assert_eq!(
                kmcl_server_channel_init_set_target_interface_id(server, &ty, &INSTANCE),
                0
            );
            assert_eq!(kmcl_channel_enable(server), 0);
            assert_eq!(kmcl_channel_init_set_target_processor(server, 0), -16);
            assert_eq!(kmcl_channel_disable(server), 0);
            kmcl_channel_cleanup(client);
            kmcl_channel_cleanup(server);
        }
    }

    /// Allocates a channel on bus `kh` (NULL: kmcl's own) offering or
    /// targeting `ty`.
    fn on_bus(server: bool, kh: *mut c_void, ty: &Guid, vtl: u8) -> *mut KmclChannel {
        let ch = allocate(server);
        // SAFETY: `ch` is live; the GUIDs are readable.
        unsafe {
            if !kh.is_null() {
                assert_eq!(kmcl_server_channel_init_set_vmbus_handle(ch, kh), 0);
            }
            if server {
                assert_eq!(
                    kmcl_server_channel_init_set_target_interface_id(ch, ty, &INSTANCE),
                    0
                );
                assert_eq!(kmcl_server_channel_init_set_target_vtl(ch, vtl), 0);
            } else {
                assert_eq!(
                    kmcl_client_channel_init_set_target_pnp(ch, ty, &INSTANCE, None),
                    0
                );
            }
        }
        ch
    }

    #[test]
    fn vmbus_handles_name_independent_buses_and_vtls_hide_offers() {
        let ty = Guid { b: [0x3c; 16] };
        let (mut a, mut b) = (0u64, 0u64);
        let (mut ka, mut kb) = (core::ptr::null_mut(), core::ptr::null_mut());
        // SAFETY: outputs writable; handles live until cleaned up.
        unsafe {
            assert_eq!(kmcl_loopback_vmbus_create(&mut a), 0);
            assert_eq!(kmcl_loopback_vmbus_create(&mut b), 0);
            assert_ne!(a, b);
            assert_eq!(kmcl_convert_vmbus_handle_to_kernel_handle(a, &mut ka), 0);
            assert_eq!(kmcl_convert_vmbus_handle_to_kernel_handle(b, &mut kb), 0);
            assert_ne!(ka, kb);
            // The same interface offered on bus A and on kmcl's own bus:
            // no clash (each bus has its own offers).
            let sa = on_bus(true, ka, &ty, 0);
            let s0 = on_bus(true, core::ptr::null_mut(), &ty, 0);
            assert_eq!(kmcl_channel_enable(sa), 0);
            assert_eq!(kmcl_channel_enable(s0), 0);
            assert_eq!(kmcl_channel_start(sa), 0);
            // A client on bus B sees neither.
            let cb = on_bus(false, kb, &ty, 0);
            assert_eq!(kmcl_channel_enable(cb), 0);
            fsleep(Delta::from_millis(100));
            assert!(!running(cb));
            // A client on bus A gets A's server (started), not kmcl's own
            // (never started).
            let ca = on_bus(false, ka, &ty, 0);
            assert_eq!(kmcl_channel_enable(ca), 0);
            assert!(wait_until(|| running(ca)));
            // An offer for VTL 2 on bus B stays invisible to B's client.
            let sb = on_bus(true, kb, &ty, 2);
            assert_eq!(kmcl_channel_enable(sb), 0);
            assert_eq!(kmcl_channel_start(sb), 0);
            fsleep(Delta::from_millis(100));
            assert!(!running(cb));
            // Destroying a bus leaves its channels working until cleanup,
            // and the handle is gone.
            assert_eq!(kmcl_loopback_vmbus_destroy(a), 0);
            assert_eq!(kmcl_loopback_vmbus_destroy(a), -2);
            assert_eq!(kmcl_convert_vmbus_handle_to_kernel_handle(a, &mut ka), -2);
            assert!(running(ca));
            for ch in [ca, cb, sa, sb, s0] {
                kmcl_channel_cleanup(ch);
            }
            assert_eq!(kmcl_loopback_vmbus_destroy(b), 0);
        }
    }
}

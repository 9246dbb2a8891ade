// SPDX-License-Identifier: GPL-2.0

//! Sub-channels through the C ABI, the way a storage or network VSC uses
//! them: the client primary's sub-channel callback opens each offered
//! sub-channel right there, packets flow on it, and it closes with the
//! primary.

use kernel::prelude::*;

#[kunit_tests(kmcl_abi_subchannels)]
mod cases {
    use super::super::*;

    /// The client sub-channel the callback opened, and the index offered.
    static SUB: AtomicUsize = AtomicUsize::new(0);
    static OFFERED: AtomicU32 = AtomicU32::new(0);

    /// Client primary: opens the offered sub-channel with its own channel.
    ///
    /// # Safety
    ///
    /// Called by kmcl as the sub-channel callback.
    unsafe extern "C" fn opened_sub(primary: *mut KmclChannel, index: u16) {
        OFFERED.store(u32::from(index), Ordering::SeqCst);
        let mut sub = core::ptr::null_mut();
        // SAFETY: process context; `primary` is live during the call.
        unsafe {
            if kmcl_channel_allocate(core::ptr::null_mut(), false, &mut sub) != 0 {
                return;
            }
            if kmcl_channel_init_set_primary_channel(sub, primary) == 0
                && kmcl_channel_enable(sub) == 0
            {
                SUB.store(sub as usize, Ordering::SeqCst);
            } else {
                kmcl_channel_cleanup(sub);
            }
        }
    }

    #[test]
    fn the_subchannel_callback_opens_each_offered_subchannel() {
        SUB.store(0, Ordering::SeqCst);
        OFFERED.store(0, Ordering::SeqCst);
        let (server, client) = (allocate(true), allocate(false));
        let s_sub = allocate(true);
        // SAFETY: live handles; the structures are readable.
        unsafe {
            assert_eq!(
                kmcl_server_channel_init_set_target_interface_id(server, &TYPE, &INSTANCE),
                0
            );
            assert_eq!(
                kmcl_channel_init_set_process_packet_callbacks(server, Some(echo), None),
                0
            );
            assert_eq!(
                kmcl_client_channel_init_set_target_pnp(client, &TYPE, &INSTANCE, None),
                0
            );
            assert_eq!(kmcl_channel_init_set_subchannel_callback(client, None), -22);
            assert_eq!(
                kmcl_channel_init_set_subchannel_callback(server, Some(opened_sub)),
                -22
            );
            assert_eq!(
                kmcl_channel_init_set_subchannel_callback(client, Some(opened_sub)),
                0
            );
            assert_eq!(kmcl_channel_init_set_primary_channel(s_sub, client), -22);
            assert_eq!(kmcl_channel_init_set_primary_channel(s_sub, server), 0);
            assert_eq!(
                kmcl_channel_init_set_process_packet_callbacks(s_sub, Some(echo), None),
                0
            );
            assert_eq!(kmcl_channel_get_subchannel_index(server), -107);
            assert_eq!(kmcl_channel_enable(server), 0);
            assert_eq!(kmcl_channel_start(server), 0);
            // No client yet: no sub-channel either.
            assert_eq!(kmcl_channel_enable(s_sub), -107);
            assert_eq!(kmcl_channel_enable(client), 0);
            assert!(wait_until(|| running(client) && running(server)));
            assert_eq!(kmcl_channel_get_subchannel_index(client), 0);
            // The server makes its sub-channel (as a VSP does when its
            // client asks); the client's callback opens it.
            assert_eq!(kmcl_channel_enable(s_sub), 0);
            assert_eq!(kmcl_channel_start(s_sub), 0);
            assert!(wait_until(|| SUB.load(Ordering::SeqCst) != 0));
            assert_eq!(OFFERED.load(Ordering::SeqCst), 1);
            let c_sub = SUB.load(Ordering::SeqCst) as *mut KmclChannel;
            assert!(wait_until(|| running(c_sub) && running(s_sub)));
            assert_eq!(kmcl_channel_get_subchannel_index(c_sub), 1);
            assert_eq!(kmcl_channel_get_subchannel_index(s_sub), 1);
            // Packets on the sub-channel come back on it.
            let before = SERVER_PACKETS.load(Ordering::SeqCst);
            send_counted(c_sub, 10, b"on the sub-channel");
            assert!(wait_until(|| DONE_OK.load(Ordering::SeqCst) == 10));
            assert_eq!(SERVER_PACKETS.load(Ordering::SeqCst), before + 10);
            // The primary closes: the sub-channel's connection ends too.
            assert_eq!(kmcl_channel_disable(client), 0);
            // (It stops running at Suspend and leaves the connection after
            // Closed: wait for that, not just the first.)
            assert!(wait_until(|| !running(c_sub)));
            assert!(wait_until(
                || kmcl_channel_get_subchannel_index(c_sub) == -107
            ));
            kmcl_channel_cleanup(c_sub);
            assert_eq!(kmcl_channel_disable(s_sub), 0);
            kmcl_channel_cleanup(s_sub);
            assert_eq!(kmcl_channel_disable(server), 0);
            kmcl_channel_cleanup(client);
            kmcl_channel_cleanup(server);
        }
    }
}

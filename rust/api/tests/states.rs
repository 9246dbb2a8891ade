// SPDX-License-Identifier: GPL-2.0

//! What Pause, Start and the transaction quota return in each state, as
//! KMCL defines them (VmbChannelPause/Start return nothing: a pause of a
//! paused channel and a start of a running one are no-ops; a pause of a
//! disabled channel takes effect when it is enabled; a quota must be
//! greater than 0).

use kernel::prelude::*;

#[kunit_tests(kmcl_abi_states)]
mod cases {
    use super::super::*;

    const EINVAL: c_int = -22;
    const EBUSY: c_int = -16;

    #[test]
    fn pause_and_start_in_every_state() {
        let (server, client) = echo_pair(core::ptr::null_mut());
        // SAFETY: live handles; cleaned up once.
        unsafe {
            // Running: a start is a no-op; pausing twice too.
            assert_eq!(kmcl_channel_start(client), 0);
            assert!(running(client));
            assert_eq!(kmcl_channel_pause(client), 0);
            assert!(!running(client));
            assert_eq!(kmcl_channel_pause(client), 0);
            assert_eq!(kmcl_channel_start(client), 0);
            assert!(running(client));
            // Disabled: a start is refused, a pause is remembered.
            assert_eq!(kmcl_channel_disable(client), 0);
            assert_eq!(kmcl_channel_start(client), EBUSY);
            assert_eq!(kmcl_channel_pause(client), 0);
            assert_eq!(kmcl_channel_enable(client), 0);
            // Connected again, but paused until started.
            let c = handle(client).map(|h| h.channel.clone()).unwrap();
            assert!(wait_until(|| {
                let s = c.snapshot();
                s.connected
            }));
            assert!(!running(client));
            assert_eq!(kmcl_channel_start(client), 0);
            assert!(wait_until(|| running(client)));
        }
        close_pair(server, client);
    }

    #[test]
    fn a_transaction_quota_is_greater_than_zero() {
        let (server, client) = echo_pair(core::ptr::null_mut());
        // SAFETY: live handles; cleaned up once.
        unsafe {
            assert_eq!(kmcl_channel_set_transaction_quota(server, 0), EINVAL);
            assert_eq!(kmcl_channel_set_transaction_quota(server, 1), 0);
            // The largest quota is as good as none: packets flow.
            assert_eq!(kmcl_channel_set_transaction_quota(server, u32::MAX), 0);
        }
        send_counted(client, 16, b"quota");
        assert!(wait_until(|| DONE_OK.load(Ordering::SeqCst) == 16));
        close_pair(server, client);
    }
}

// SPDX-License-Identifier: GPL-2.0

//! Modules that go away with channels or packets still held.

use kernel::prelude::*;

#[kunit_tests(kmcl_abi_teardown)]
mod cases {
    use super::super::*;

    #[test]
    fn a_module_going_away_takes_its_channels_without_calls_into_it() {
        static FAKE_MODULE: u8 = 0;
        let owner = core::ptr::from_ref(&FAKE_MODULE)
            .cast_mut()
            .cast::<Module>();
        CLOSED.store(0, Ordering::SeqCst);
        let (_server, client) = echo_pair(owner);
        // SAFETY: the client handle is live until the module goes.
        let engine = unsafe { handle(client) }
            .map(|h| h.channel.clone())
            .unwrap();
        let count = || {
            let r = REGISTRY.lock();
            r.handles
                .iter()
                .filter(|h| h.owner == owner as usize)
                .count()
        };
        assert_eq!(count(), 2);
        // SAFETY: a NUL-terminated name.
        unsafe { kmcl_ffi_module_going(owner, c"fake_vsc".as_char_ptr()) };
        assert_eq!(count(), 0);
        assert!(!engine.is_enabled());
        // The client was closed, but its (gone) Closed callback not called.
        assert_eq!(CLOSED.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_module_unloaded_holding_packets_has_them_completed() {
        static FAKE_VSP: u8 = 0;
        let vsp = core::ptr::from_ref(&FAKE_VSP).cast_mut().cast::<Module>();
        let (_server, client) = pair_owned(vsp, core::ptr::null_mut(), hold);
        send_held(client, 5);
        assert_eq!(lent::count(), 5);
        // The server's module goes without completing them: kmcl completes
        // them (empty), so the server's channel can close; every send of
        // the client ends and its connection closes.
        // SAFETY: a NUL-terminated name.
        unsafe { kmcl_ffi_module_going(vsp, c"fake_vsp".as_char_ptr()) };
        assert_eq!(lent::count(), 0);
        assert!(wait_until(|| {
            DONE_OK.load(Ordering::SeqCst) + DONE_ERR.load(Ordering::SeqCst) == 5
        }));
        // SAFETY: the client handle is live.
        unsafe {
            let engine = handle(client).map(|h| h.channel.clone()).unwrap();
            assert!(wait_until(|| !engine.is_running()));
            // Disabled already or not, depending on how the close went.
            let _ = kmcl_channel_disable(client);
            kmcl_channel_cleanup(client);
        }
    }
}

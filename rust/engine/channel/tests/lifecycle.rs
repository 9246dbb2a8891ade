// SPDX-License-Identifier: GPL-2.0

//! The lifecycle of loopback channel pairs: KMCL's order of state
//! callbacks, offers, VTLs and refused connections.

use kernel::prelude::*;

#[kunit_tests(kmcl_channel_lifecycle)]
mod cases {
    use crate::engine::{
        channel::Channel,
        types::Guid, //
    };
    use crate::protocol::lifecycle::Role;
    use crate::transport::loopback::LoopbackBus;
    use kernel::time::{
        delay::fsleep,
        Delta, //
    };
    use kernel::{
        prelude::*,
        sync::Arc, //
    };

    use crate::engine::testing::Letters as Recorder;

    const TYPE: Guid = [0x11; 16];
    const INSTANCE: Guid = [0x22; 16];

    fn channel(bus: &Arc<LoopbackBus>, role: Role, rec: &Arc<Recorder>) -> Result<Arc<Channel>> {
        let ch = Channel::new(role, bus.clone())?;
        ch.configure(|s| {
            s.interface_type = TYPE;
            s.interface_instance = INSTANCE;
        })?;
        ch.set_state_callbacks(rec.clone())?;
        Ok(ch)
    }

    #[test]
    fn open_and_close_in_kmcl_order() -> Result {
        let bus = LoopbackBus::new()?;
        let (sr, cr) = (Recorder::new(false)?, Recorder::new(false)?);
        let server = channel(&bus, Role::Server, &sr)?;
        let client = channel(&bus, Role::Client, &cr)?;
        server.enable()?;
        client.enable()?;
        // The server is opened but stays paused until it starts.
        assert!(sr.wait_for(b"O"));
        assert!(cr.wait_for(b"OTP"));
        assert!(!server.is_running());
        server.start()?;
        assert!(sr.is(b"OTP"));
        assert!(server.is_running() && client.is_running());
        // The client closes: Suspend and Closed on both sides; the client
        // is disabled, the server keeps its offer up.
        client.disable()?;
        assert!(cr.is(b"OTPSC"));
        assert!(sr.wait_for(b"OTPSC"));
        assert!(!client.is_enabled() && server.is_enabled());
        server.disable()?;
        assert!(sr.is(b"OTPSC"));
        server.cleanup()?;
        client.cleanup()?;
        Ok(())
    }

    #[test]
    fn client_enabled_before_the_offer_waits() -> Result {
        let bus = LoopbackBus::new()?;
        let (sr, cr) = (Recorder::new(false)?, Recorder::new(false)?);
        let client = channel(&bus, Role::Client, &cr)?;
        client.enable()?;
        fsleep(Delta::from_millis(50));
        assert!(cr.is(b""));
        let server = channel(&bus, Role::Server, &sr)?;
        server.enable()?;
        server.start()?;
        assert!(cr.wait_for(b"OTP"));
        assert!(sr.wait_for(b"OTP"));
        // Pause and start the client mid-stream.
        client.pause()?;
        assert!(cr.is(b"OTPS"));
        client.start()?;
        assert!(cr.is(b"OTPSTP"));
        // The server disables while the client is open: it rescinds, and
        // Disable returns once the client has received Suspend and Closed.
        server.disable()?;
        assert!(sr.is(b"OTPSC"));
        assert!(cr.is(b"OTPSTPSC"));
        assert!(!client.is_enabled());
        client.cleanup()?;
        server.cleanup()?;
        Ok(())
    }

    #[test]
    fn failed_open_and_bad_calls() -> Result {
        let bus = LoopbackBus::new()?;
        let (sr, cr) = (Recorder::new(false)?, Recorder::new(true)?);
        let server = channel(&bus, Role::Server, &sr)?;
        let client = channel(&bus, Role::Client, &cr)?;
        // Nothing to disable or start yet.
        assert_eq!(client.disable(), Err(EBUSY));
        assert_eq!(client.start(), Err(EBUSY));
        server.enable()?;
        assert_eq!(server.enable(), Err(EBUSY));
        // Init settings are frozen once enabled.
        assert_eq!(server.configure(|s| s.max_packet_size = 1), Err(EBUSY));
        // A second offer of the same interface is refused.
        let dup = channel(&bus, Role::Server, &sr)?;
        assert_eq!(dup.enable(), Err(EEXIST));
        assert!(!dup.is_enabled());
        dup.cleanup()?;
        // The client's Opened fails: it is disabled again without Closed,
        // and the server sees the connection close.
        server.start()?;
        client.enable()?;
        assert!(cr.wait_for(b"O"));
        assert!(sr.wait_for(b"OTPSC"));
        assert!(!client.is_enabled());
        // An enabled channel cannot be cleaned up.
        assert_eq!(server.clone().cleanup(), Err(EBUSY));
        server.disable()?;
        server.cleanup()?;
        client.cleanup()?;
        Ok(())
    }

    #[test]
    fn an_offer_is_seen_only_by_clients_in_its_vtl() -> Result {
        let bus = LoopbackBus::new()?;
        let (s0, s1, c1) = (
            Recorder::new(false)?,
            Recorder::new(false)?,
            Recorder::new(false)?,
        );
        // Two offers of the same interface, for VTL 0 and VTL 1.
        let server0 = channel(&bus, Role::Server, &s0)?;
        let server1 = Channel::new(Role::Server, bus.clone())?;
        server1.configure(|s| {
            s.interface_type = TYPE;
            s.interface_instance = [0x33; 16];
        })?;
        server1.set_target_vtl(1)?;
        assert_eq!(server1.set_target_vtl(16), Err(EINVAL));
        server1.set_state_callbacks(s1.clone())?;
        server1.enable()?;
        server1.start()?;
        server0.enable()?;
        server0.start()?;
        // A client in VTL 1 asking for any instance gets the VTL 1 offer.
        let client = Channel::new(Role::Client, bus.clone())?;
        client.configure(|s| {
            s.interface_type = TYPE;
            s.vtl = 1;
        })?;
        assert_eq!(client.set_target_vtl(1), Err(EINVAL));
        client.set_state_callbacks(c1.clone())?;
        client.enable()?;
        assert!(c1.wait_for(b"OTP"));
        assert_eq!(client.interface_instance(), [0x33; 16]);
        assert!(s0.is(b"") && s1.wait_for(b"OTP"));
        client.disable()?;
        // Back in VTL 0 it gets the other one.
        client.configure(|s| s.vtl = 0)?;
        client.enable()?;
        assert!(c1.wait_for(b"OTPSCOTP"));
        assert_eq!(client.interface_instance(), INSTANCE);
        client.disable()?;
        for ch in [server0, server1] {
            ch.disable()?;
            ch.cleanup()?;
        }
        client.cleanup()?;
        Ok(())
    }

    #[test]
    fn a_server_refusing_the_connection_is_the_clients_pnp_failure() -> Result {
        let bus = LoopbackBus::new()?;
        let (sr, cr, cr2) = (
            Recorder::new(true)?,
            Recorder::new(false)?,
            Recorder::new(false)?,
        );
        let server = channel(&bus, Role::Server, &sr)?;
        let client = channel(&bus, Role::Client, &cr)?;
        server.enable()?;
        server.start()?;
        client.enable()?;
        // The server's Opened refuses: the client never opens; it gets
        // PnpFailure with the server's error and is disabled again.
        assert!(sr.wait_for(b"O"));
        assert!(cr.wait_for(b"F"));
        assert_eq!(
            cr.pnp_status.load(core::sync::atomic::Ordering::SeqCst),
            EIO.to_errno()
        );
        assert!(!client.is_enabled() && server.is_enabled());
        assert_eq!(client.disable(), Err(EBUSY));
        // The offer stays up and is free: the next client gets in.
        sr.fail_open
            .store(false, core::sync::atomic::Ordering::SeqCst);
        let client2 = channel(&bus, Role::Client, &cr2)?;
        client2.enable()?;
        assert!(cr2.wait_for(b"OTP"));
        assert!(sr.wait_for(b"OOTP"));
        // And the first client can try again after it.
        client2.disable()?;
        assert!(sr.wait_for(b"OOTPSC"));
        client.enable()?;
        assert!(cr.wait_for(b"FOTP"));
        client.disable()?;
        server.disable()?;
        client.cleanup()?;
        client2.cleanup()?;
        server.cleanup()?;
        Ok(())
    }
}

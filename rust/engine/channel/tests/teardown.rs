// SPDX-License-Identifier: GPL-2.0

//! Teardown while a driver is busy: synchronous requests made from state
//! callbacks when the other endpoint goes, and completion routines still
//! running when Disable is called.

use kernel::prelude::*;

#[kunit_tests(kmcl_channel_teardown)]
mod cases {
    use super::super::*;
    use crate::engine::{
        datapath::SendCompletion,
        testing::{
            wait_for,
            Keeper,
            Negotiator, //
        },
    };
    use core::sync::atomic::{
        AtomicBool,
        AtomicI32, //
    };

    fn elapsed_ms(start: kernel::time::Instant<kernel::time::Monotonic>) -> i64 {
        start.elapsed().as_millis()
    }

    fn now() -> kernel::time::Instant<kernel::time::Monotonic> {
        kernel::time::Instant::<kernel::time::Monotonic>::now()
    }

    /// A server of `TYPE` completing with `packets`, and a client of it
    /// whose state callbacks are `client_states`; neither enabled.
    fn endpoints(
        bus: &Arc<LoopbackBus>,
        packets: Arc<dyn PacketCallbacks>,
        client_states: Arc<Negotiator>,
    ) -> Result<(Arc<Channel>, Arc<Channel>)> {
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        server.set_packet_callbacks(packets)?;
        let client = Channel::new(Role::Client, bus.clone())?;
        client.configure(|s| s.interface_type = TYPE)?;
        client.set_state_callbacks(client_states)?;
        Ok((server, client))
    }

    /// A client whose PostStarted waits (3 s at most) for the reply to a
    /// request its server, open but never started, does not deliver:
    /// (server, client, its driver), the request under way.
    fn negotiating(
        bus: &Arc<LoopbackBus>,
    ) -> Result<(Arc<Channel>, Arc<Channel>, Arc<Negotiator>)> {
        let neg = Negotiator::new(Some(3000))?;
        let (server, client) = endpoints(bus, Arc::new(Echo, GFP_KERNEL)?, neg.clone())?;
        server.enable()?;
        client.enable()?;
        assert!(wait_until(|| neg.entered.load(Ordering::SeqCst)));
        fsleep(Delta::from_millis(50));
        Ok((server, client, neg))
    }

    /// Disables `ch`; whether that took well under a second.
    fn disabled_at_once(ch: &Arc<Channel>) -> Result<bool> {
        let start = now();
        ch.disable()?;
        let took = elapsed_ms(start);
        pr_info!("Disable took {} ms\n", took);
        Ok(took < 1000)
    }

    #[test]
    fn a_request_from_post_started_ends_when_the_server_disables() -> Result {
        let bus = LoopbackBus::new()?;
        let (server, client, neg) = negotiating(&bus)?;
        // The request ends (-ENODEV) before the server's Disable, which
        // waits for the client to leave, returns.
        assert!(disabled_at_once(&server)?);
        assert_eq!(neg.wait_result(0), Some(ENODEV.to_errno()));
        assert!(wait_until(|| !client.is_enabled()));
        client.cleanup()?;
        server.cleanup()
    }

    #[test]
    fn a_request_from_post_started_ends_when_its_channel_is_disabled() -> Result {
        let bus = LoopbackBus::new()?;
        let (server, client, neg) = negotiating(&bus)?;
        // The client's driver gives up from another thread while its
        // PostStarted waits.
        assert!(disabled_at_once(&client)?);
        assert_eq!(neg.wait_result(0), Some(ENODEV.to_errno()));
        assert!(!client.is_enabled());
        server.disable()?;
        client.cleanup()?;
        server.cleanup()
    }

    #[test]
    fn a_server_request_from_post_started_reaches_its_client() -> Result {
        let bus = LoopbackBus::new()?;
        let neg = Negotiator::new(Some(3000))?;
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        server.set_state_callbacks(neg.clone())?;
        let client = Channel::new(Role::Client, bus.clone())?;
        client.configure(|s| s.interface_type = TYPE)?;
        client.set_packet_callbacks(Arc::new(Echo, GFP_KERNEL)?)?;
        // Started before the client comes: the server's PostStarted runs
        // when the client connects, and its request must reach it.
        server.enable()?;
        server.start()?;
        client.enable()?;
        // "negotiate" echoed, padded to 8 bytes.
        assert_eq!(neg.wait_result(5), Some(16));
        assert!(neg.took_ms.load(Ordering::SeqCst) < 1000);
        close(client, server)
    }

    struct SlowState {
        entered: AtomicBool,
        finished: AtomicBool,
    }

    /// A completion routine that takes 300 ms (the channel processes at
    /// passive, so it may sleep).
    struct Slow(Arc<SlowState>);

    impl SendCompletion for Slow {
        fn complete(&mut self, _status: Result, _data: &[u8]) {
            self.0.entered.store(true, Ordering::SeqCst);
            fsleep(Delta::from_millis(300));
            self.0.finished.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn no_routine_runs_after_disable_returns() -> Result {
        let bus = LoopbackBus::new()?;
        let holder = Holder::new(false)?;
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        server.set_packet_callbacks(holder.clone())?;
        let client = Channel::new(Role::Client, bus.clone())?;
        client.configure(|s| s.interface_type = TYPE)?;
        client.set_incoming_processing_at_passive(true)?;
        open(&server, &client)?;
        let st = Arc::new(
            SlowState {
                entered: AtomicBool::new(false),
                finished: AtomicBool::new(false),
            },
            GFP_KERNEL,
        )?;
        client.send(b"slow", true, KBox::new(Slow(st.clone()), GFP_KERNEL)?)?;
        assert!(holder.wait(|h| h.held() == 1));
        // Paused, the client still reads completions: the routine starts,
        // and Disable comes while it runs.
        client.pause()?;
        holder.complete(1);
        assert!(wait_for(5, || st.entered.load(Ordering::SeqCst)));
        client.disable()?;
        // No routine of the channel runs after Disable returned.
        assert!(st.finished.load(Ordering::SeqCst));
        client.cleanup()?;
        server.disable()?;
        server.cleanup()
    }

    #[test]
    fn a_server_disable_waits_for_its_clients_driver_only_so_long() -> Result {
        let bus = LoopbackBus::new()?;
        let keeper = Keeper::new()?;
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        let client = Channel::new(Role::Client, bus.clone())?;
        client.configure(|s| s.interface_type = TYPE)?;
        client.set_packet_callbacks(keeper.clone())?;
        let letters = crate::engine::testing::Letters::new(false)?;
        client.set_state_callbacks(letters.clone())?;
        open(&server, &client)?;
        // The server sends; the client's driver keeps the packet, and
        // completes it only 4 s later.
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        send_counted(&server, &tally, b"keep", true)?;
        assert!(wait_until(|| keeper.held() == 1));
        keeper.complete_all_after(4000);
        let start = now();
        server.disable()?;
        let took = elapsed_ms(start);
        pr_info!("server Disable took {} ms\n", took);
        // Bounded by the wait on the other endpoint, not by its driver.
        assert!((PEER_STALL_MS - 100..PEER_STALL_MS + 1000).contains(&took));
        assert_eq!(tally.removed.load(Ordering::SeqCst), 1);
        // kmcl took the packet back from the client's driver, so the
        // client closed (Suspend, Closed) at once, its driver still
        // holding it.
        assert!(wait_for(1, || letters.is(b"OTPSC")));
        assert_eq!(client.snapshot().held, 0);
        assert_eq!(keeper.held(), 1);
        // The driver's late completion does nothing, and breaks nothing.
        assert!(wait_for(5, || keeper.held() == 0));
        assert_eq!(tally.total(), 1);
        assert_eq!(client.snapshot().held, 0);
        client.cleanup()?;
        server.cleanup()
    }

    /// Packet callbacks (at passive) that call back into their channel:
    /// what Disable, Pause and a synchronous request returned there.
    struct Reentrant {
        disable: AtomicI32,
        pause: AtomicI32,
        sync: AtomicI32,
        calls: AtomicU32,
    }

    fn errno(r: Result<impl Sized>) -> i32 {
        r.err().map_or(0, |e| e.to_errno())
    }

    impl PacketCallbacks for Reentrant {
        fn process_packet(&self, channel: &Arc<Channel>, packet: IncomingPacket) {
            self.disable
                .store(errno(channel.disable()), Ordering::SeqCst);
            self.pause.store(errno(channel.pause()), Ordering::SeqCst);
            let mut reply = [0u8; 16];
            let sync = channel.send_sync(b"x", &mut reply, Some(100));
            self.sync.store(errno(sync), Ordering::SeqCst);
            self.calls.fetch_add(1, Ordering::SeqCst);
            drop(packet);
        }
    }

    #[test]
    fn calls_that_would_wait_for_the_receive_work_it_runs_in_get_edeadlk() -> Result {
        let bus = LoopbackBus::new()?;
        let cb = Arc::new(
            Reentrant {
                disable: AtomicI32::new(1),
                pause: AtomicI32::new(1),
                sync: AtomicI32::new(1),
                calls: AtomicU32::new(0),
            },
            GFP_KERNEL,
        )?;
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        server.set_incoming_processing_at_passive(true)?;
        server.set_packet_callbacks(cb.clone())?;
        let client = Channel::new(Role::Client, bus.clone())?;
        client.configure(|s| s.interface_type = TYPE)?;
        open(&server, &client)?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        send_counted(&client, &tally, b"hello", true)?;
        assert!(wait_until(|| cb.calls.load(Ordering::SeqCst) == 1));
        // Disable and Pause wait for the receive work, and only it could
        // read the request's completion: refused, nothing changed.
        assert_eq!(cb.disable.load(Ordering::SeqCst), EDEADLK.to_errno());
        assert_eq!(cb.pause.load(Ordering::SeqCst), EDEADLK.to_errno());
        assert_eq!(cb.sync.load(Ordering::SeqCst), EDEADLK.to_errno());
        assert!(server.is_running());
        assert!(tally.wait_total(1));
        close(client, server)
    }

    #[test]
    fn a_synchronous_request_at_the_quota_completes() -> Result {
        let bus = LoopbackBus::new()?;
        let keeper = Keeper::new()?;
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        server.set_packet_callbacks(Arc::new(Echo, GFP_KERNEL)?)?;
        let client = Channel::new(Role::Client, bus.clone())?;
        client.configure(|s| s.interface_type = TYPE)?;
        client.set_packet_callbacks(keeper.clone())?;
        client.set_transaction_quota(1)?;
        open(&server, &client)?;
        // The client's driver keeps the server's packet: its delivery
        // stops at the quota.
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        send_counted(&server, &tally, b"keep", true)?;
        assert!(wait_until(|| keeper.held() == 1));
        // Its synchronous request still gets its reply.
        let mut reply = [0u8; 16];
        assert_eq!(client.send_sync(b"at quota", &mut reply, Some(3000)), Ok(8));
        assert_eq!(&reply[..8], b"at quota");
        keeper.complete_all();
        assert!(tally.wait_total(1));
        close(client, server)
    }

    // Where the probe below was dropped: 0 not yet, 1 process context,
    // 2 atomic context.
    static PROBE_DROPPED: AtomicI32 = AtomicI32::new(0);

    /// State callbacks that record the context their drop runs in: the
    /// channel owns the only reference, so that is where the channel is
    /// dropped.
    struct DropProbe;

    impl crate::engine::channel::StateCallbacks for DropProbe {}

    impl Drop for DropProbe {
        fn drop(&mut self) {
            let ctx = if crate::sys::context::may_sleep() {
                1
            } else {
                2
            };
            PROBE_DROPPED.store(ctx, Ordering::SeqCst);
        }
    }

    /// The receive work (softirq) may hold a channel's last reference when
    /// the channel was cleaned up while it ran; dropping the channel there
    /// would free what it owns in atomic context (seen: a stand-in host's
    /// vunmap() hit BUG_ON(in_interrupt())).  `Channel::release`, which the
    /// receive work ends with, hands the last reference to process
    /// context instead; other references just go.
    #[test]
    fn a_last_reference_dropped_in_softirq_context_is_released_in_process_context() -> Result {
        PROBE_DROPPED.store(0, Ordering::SeqCst);
        let bus = LoopbackBus::new()?;
        let ch = Channel::new(Role::Client, bus)?;
        ch.set_state_callbacks(Arc::new(DropProbe, GFP_KERNEL)?)?;
        // Not the last reference: released at once, the channel lives on.
        let other = ch.clone();
        crate::sys::context::with_bh_disabled(|| Channel::release(other));
        assert_eq!(PROBE_DROPPED.load(Ordering::SeqCst), 0);
        // The last one, in atomic context (as in the BH receive work).
        crate::sys::context::with_bh_disabled(|| Channel::release(ch));
        assert!(wait_for(5, || PROBE_DROPPED.load(Ordering::SeqCst) != 0));
        assert_eq!(PROBE_DROPPED.load(Ordering::SeqCst), 1);
        Ok(())
    }
}

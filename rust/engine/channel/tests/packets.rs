// SPDX-License-Identifier: GPL-2.0

//! Packets over a loopback channel pair, byte for byte, through start,
//! pause and disable.

use kernel::prelude::*;

#[kunit_tests(kmcl_channel_packets)]
mod cases {
    use super::super::*;
    use core::sync::atomic::AtomicI32;

    /// Deterministic pseudo-random sizes in `1..=max`.
    fn sizes(seed: &mut u32, max: u32) -> usize {
        *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        ((*seed >> 8) % max + 1) as usize
    }

    /// Sends 20 packets 1 ms apart without completion requests; returns
    /// the signals the client made and the ones merged.
    fn spaced_sends(client: &Arc<Channel>, server: &Arc<Channel>) -> Result<(u64, u64)> {
        let (sent0, merged0) = (client.signals().sent, client.signals_coalesced());
        let done = Arc::new(Tally::default(), GFP_KERNEL)?;
        let before = server.counters().packets_in;
        for i in 0..20u32 {
            let routine = Expect::new(KVec::new(), &done)?;
            client.send(&pattern(64, i)?, false, routine)?;
            fsleep(Delta::from_millis(1));
        }
        for _ in 0..500 {
            if server.counters().packets_in == before + 20 {
                break;
            }
            fsleep(Delta::from_millis(10));
        }
        assert_eq!(server.counters().packets_in, before + 20);
        assert_eq!(done.ok.load(Ordering::SeqCst), 20);
        Ok((
            client.signals().sent - sent0,
            client.signals_coalesced() - merged0,
        ))
    }

    #[test]
    fn an_interrupt_latency_merges_signals_and_loses_nothing() -> Result {
        let bus = LoopbackBus::new()?;
        let lone = Channel::new(Role::Client, bus.clone())?;
        // Only while connected (Opened..Closed).
        assert_eq!(lone.set_interrupt_latency(10), Err(ENOTCONN));
        lone.cleanup()?;
        let (server, client) = pair(&bus)?;
        // No latency: the server drains each packet before the next, so
        // (nearly) every send signals.
        let (signals, merged) = spaced_sends(&client, &server)?;
        assert_eq!(merged, 0);
        if signals < 12 {
            pr_err!("{} signals without latency\n", signals);
        }
        assert!(signals >= 12);
        // 6.5 ms: each signal waits that long and takes the sends made
        // meanwhile with it.
        assert_eq!(client.set_interrupt_latency(u16::MAX), Ok(0));
        let (signals, merged) = spaced_sends(&client, &server)?;
        if signals > 8 {
            pr_err!("{} signals with latency\n", signals);
        }
        assert!(signals <= 8);
        // (Sends made while a delayed signal is armed find the ring not
        // empty and ask for no signal: `merged` counts only the rest.)
        let _ = merged;
        assert_eq!(client.set_interrupt_latency(0), Ok(u16::MAX));
        // Disabled with a delayed signal armed: disarmed, nothing leaks.
        client.set_interrupt_latency(u16::MAX)?;
        client.send(
            b"last",
            false,
            Expect::new(KVec::new(), &Arc::new(Tally::default(), GFP_KERNEL)?)?,
        )?;
        close(client, server)
    }

    #[test]
    fn echo_round_trips_byte_for_byte_in_both_directions() -> Result {
        const N: u32 = 1500;
        let bus = LoopbackBus::new()?;
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        server.set_packet_callbacks(Arc::new(Echo, GFP_KERNEL)?)?;
        let client = Channel::new(Role::Client, bus.clone())?;
        client.configure(|s| s.interface_type = TYPE)?;
        client.set_packet_callbacks(Arc::new(Echo, GFP_KERNEL)?)?;
        open(&server, &client)?;
        let (to_server, to_client) = (
            Arc::new(Tally::default(), GFP_KERNEL)?,
            Arc::new(Tally::default(), GFP_KERNEL)?,
        );
        // Sizes from 1 byte to 3000 (of a 4096-byte maximum) through
        // 16 KiB rings: the rings fill and sends queue.
        let mut seed = 1;
        for i in 0..N {
            send_one(&client, &to_server, sizes(&mut seed, 3000), i)?;
            send_one(&server, &to_client, sizes(&mut seed, 3000), i + N)?;
        }
        assert!(to_server.wait_total(N));
        assert!(to_client.wait_total(N));
        assert_eq!(to_server.ok.load(Ordering::SeqCst), N);
        assert_eq!(to_client.ok.load(Ordering::SeqCst), N);
        assert_eq!(to_server.mismatched.load(Ordering::SeqCst), 0);
        assert_eq!(to_client.mismatched.load(Ordering::SeqCst), 0);
        let (c, s) = (client.counters(), server.counters());
        // Each side wrote N data packets and N completions.
        assert_eq!(c.packets_out, 2 * u64::from(N));
        assert_eq!(s.packets_out, 2 * u64::from(N));
        assert_eq!(c.packets_in, u64::from(N));
        assert_eq!(s.packets_in, u64::from(N));
        assert_eq!(c.completions_in, u64::from(N));
        assert_eq!(s.completions_in, u64::from(N));
        assert_eq!(c.bad_completions + s.bad_completions, 0);
        assert_eq!(c.ring_errors + s.ring_errors, 0);
        // Each side completed every packet inside its callback: each went
        // straight back to the receive work, and none is left counted.
        let settled = || server.snapshot().held == 0 && client.snapshot().held == 0;
        assert!(crate::engine::testing::wait_until(settled));
        assert_eq!(server.snapshot().handed_back, u64::from(N));
        assert_eq!(client.snapshot().handed_back, u64::from(N));
        pr_info!("echo both ways: client {:?}, server {:?}\n", c, s);
        close(client, server)
    }

    /// Sends 500 packets, then disables one side while they are in
    /// flight: every completion routine must run exactly once, echoed or
    /// with -ENODEV, and the client must end up closed.
    fn disable_under_traffic(server_side: bool, mut seed: u32) -> Result {
        const N: u32 = 500;
        let bus = LoopbackBus::new()?;
        let (server, client) = pair(&bus)?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        for i in 0..N {
            send_one(&client, &tally, sizes(&mut seed, 3000), i)?;
        }
        if server_side {
            // The server rescinds: the client gets Suspend and Closed.
            server.disable()?;
        } else {
            client.disable()?;
        }
        assert!(!client.is_enabled());
        assert!(tally.wait_total(N));
        fsleep(Delta::from_millis(50));
        assert_eq!(tally.total(), N);
        assert_eq!(tally.mismatched.load(Ordering::SeqCst), 0);
        assert_eq!(tally.other.load(Ordering::SeqCst), 0);
        let late = Expect::new(KVec::new(), &tally)?;
        assert_eq!(client.send(&[1], false, late), Err(ENOTCONN));
        if !server_side {
            server.disable()?;
        }
        client.cleanup()?;
        server.cleanup()
    }

    #[test]
    fn disable_under_traffic_accounts_for_every_packet() -> Result {
        disable_under_traffic(false, 7)
    }

    /// Checks the per-packet context area, then dirties it.
    #[derive(Default)]
    struct ContextCheck {
        clean: AtomicU32,
        dirty: AtomicU32,
    }

    impl PacketCallbacks for ContextCheck {
        fn process_packet(&self, _channel: &Arc<Channel>, mut packet: IncomingPacket) {
            let ctx = packet.context_mut();
            let counter = if ctx.len() == 24 && ctx.iter().all(|&b| b == 0) {
                &self.clean
            } else {
                &self.dirty
            };
            counter.fetch_add(1, Ordering::SeqCst);
            ctx.fill(0xaa);
            let _ = packet.complete(&[]);
        }
    }

    #[test]
    fn init_settings_and_channel_information() -> Result {
        use crate::engine::channel::settings::CHANNEL_FLAG_IS_PIPE;
        let bus = LoopbackBus::new()?;
        let check = Arc::new(ContextCheck::default(), GFP_KERNEL)?;
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| {
            s.interface_type = TYPE;
            s.interface_instance = [0x44; 16];
            s.client_context_size = 24;
        })?;
        server.set_packet_callbacks(check.clone())?;
        assert_eq!(server.set_friendly_name(&[b'x'; 65]), Err(EINVAL));
        server.set_friendly_name(b"echo-server")?;
        assert!(server.with_friendly_name(|n| n == b"echo-server"));
        assert_eq!(server.set_flags(CHANNEL_FLAG_IS_PIPE), Err(EOPNOTSUPP));
        assert_eq!(server.set_flags(0x2), Err(EINVAL));
        server.set_flags(0)?;
        assert_eq!(server.set_server_flags(0x20), Err(EINVAL));
        // Pipe offers, device interfaces, forced new channels and TLNPI
        // provider offers are refused, never recorded without effect.
        for flag in [0x2, 0x4, 0x8, 0x10, 0x1f] {
            assert_eq!(server.set_server_flags(flag), Err(EOPNOTSUPP));
        }
        // A loopback offer is what every kmcl server makes.
        server.set_server_flags(0x1)?;
        assert_eq!(server.set_maximum_external_data(0, 4), Err(EINVAL));
        assert_eq!(server.set_maximum_external_data(4096, 0), Err(EINVAL));
        server.set_maximum_external_data(1 << 20, 16)?;
        assert_eq!(server.settings().max_external_bytes, 1 << 20);
        assert_eq!(server.settings().max_external_ranges, 16);
        let client = Channel::new(Role::Client, bus.clone())?;
        assert_eq!(client.set_server_flags(0x1), Err(EINVAL));
        // Any instance, at most 100 bytes per packet.
        client.configure(|s| {
            s.interface_type = TYPE;
            s.max_packet_size = 100;
        })?;
        assert_eq!(client.interface_instance(), [0; 16]);
        client.set_pointer(0xfeed);
        assert_eq!(client.pointer(), 0xfeed);
        open(&server, &client)?;
        assert_eq!(server.set_maximum_external_data(1, 1), Err(EBUSY));
        // The client learns the instance of the offer it opened.
        assert_eq!(client.interface_instance(), [0x44; 16]);
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        assert_eq!(send_one(&client, &tally, 101, 0), Err(EINVAL));
        for i in 0..10 {
            send_one(&client, &tally, 100, i)?;
        }
        assert!(tally.wait_total(10));
        assert_eq!(check.clean.load(Ordering::SeqCst), 10);
        assert_eq!(check.dirty.load(Ordering::SeqCst), 0);
        close(client, server)
    }

    #[test]
    fn pause_and_start_mid_stream_lose_nothing() -> Result {
        const N: u32 = 600;
        let bus = LoopbackBus::new()?;
        let (server, client) = pair(&bus)?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        let mut seed = 3;
        for i in 0..N {
            send_one(&client, &tally, sizes(&mut seed, 2000), i)?;
            if i == N / 3 {
                // Delivery stops (Suspend after every delivered packet was
                // completed); sends keep queueing; Start resumes.
                server.pause()?;
                assert!(!server.is_running());
            }
            if i == 2 * N / 3 {
                server.start()?;
            }
        }
        assert!(tally.wait_total(N));
        assert_eq!(tally.ok.load(Ordering::SeqCst), N);
        assert_eq!(server.counters().packets_in, u64::from(N));
        // While the server was paused ~200 packets went into a 16 KiB ring:
        // it filled and the rest were queued, then written after Start.
        assert!(client.counters().ring_full > 0);
        close(client, server)
    }

    #[test]
    fn server_disable_under_traffic_accounts_for_every_packet() -> Result {
        disable_under_traffic(true, 11)
    }

    /// Sends again from its routine, once: the routine of a packet that
    /// waited in the queue runs without the data lock.
    struct SendAgain {
        client: Arc<Channel>,
        tally: Arc<Tally>,
        again: bool,
    }

    impl SendCompletion for SendAgain {
        fn complete(&mut self, status: Result, _data: &[u8]) {
            let counter = if status.is_ok() {
                &self.tally.ok
            } else {
                &self.tally.other
            };
            counter.fetch_add(1, Ordering::SeqCst);
            if self.again && status.is_ok() {
                let next = KBox::new(
                    SendAgain {
                        client: self.client.clone(),
                        tally: self.tally.clone(),
                        again: false,
                    },
                    GFP_ATOMIC,
                );
                let sent = next
                    .map_err(|_| ENOMEM)
                    .and_then(|r| self.client.send(&[0x33; 200], false, r));
                if sent.is_err() {
                    self.tally.mismatched.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    #[test]
    fn routines_of_queued_packets_may_send_again() -> Result {
        const N: u32 = 200;
        let bus = LoopbackBus::new()?;
        let (server, client) = pair(&bus)?;
        // The server reads nothing for now: most packets wait in the queue
        // and are written later, from the client's receive work.
        server.pause()?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        for _ in 0..N {
            let r = KBox::new(
                SendAgain {
                    client: client.clone(),
                    tally: tally.clone(),
                    again: true,
                },
                GFP_KERNEL,
            )?;
            client.send(&[0x11; 200], false, r)?;
        }
        assert!(client.counters().ring_full > 0);
        server.start()?;
        // Every packet and every packet sent from a routine was written.
        assert!(tally.wait_total(2 * N));
        assert_eq!(tally.ok.load(Ordering::SeqCst), 2 * N);
        assert_eq!(tally.mismatched.load(Ordering::SeqCst), 0);
        assert!(holder_wait(
            || server.counters().packets_in == u64::from(2 * N)
        ));
        close(client, server)
    }

    /// Server: completes each packet with 8 KiB, more than its client's
    /// one-page ring can ever hold; records what `complete` returned.
    struct BigReply(AtomicI32);

    impl PacketCallbacks for BigReply {
        fn process_packet(&self, _channel: &Arc<Channel>, packet: IncomingPacket) {
            let reply = [0x5au8; 8192];
            let rc = packet
                .complete(&reply)
                .map_or_else(|e| e.to_errno(), |()| 0);
            self.0.store(rc, Ordering::SeqCst);
        }
    }

    /// The client's routine: the status and the completion's length.
    struct Outcome(Arc<AtomicI32>);

    impl SendCompletion for Outcome {
        fn complete(&mut self, status: Result, data: &[u8]) {
            let v = match status {
                Ok(()) => data.len() as i32,
                Err(e) => e.to_errno(),
            };
            self.0.store(v, Ordering::SeqCst);
        }
    }

    /// A completion too large for the ring it must cross still completes
    /// the sender's packet (empty), and the completer gets `-EOVERFLOW`.
    #[test]
    fn a_completion_too_large_for_the_ring_completes_empty() -> Result {
        let bus = LoopbackBus::new()?;
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        let big = Arc::new(BigReply(AtomicI32::new(1)), GFP_KERNEL)?;
        server.set_packet_callbacks(big.clone())?;
        let client = Channel::new(Role::Client, bus)?;
        client.configure(|s| {
            s.interface_type = TYPE;
            s.incoming_pages = 1;
        })?;
        open(&server, &client)?;
        let outcome = Arc::new(AtomicI32::new(1), GFP_KERNEL)?;
        client.send(
            b"request!",
            true,
            KBox::new(Outcome(outcome.clone()), GFP_KERNEL)?,
        )?;
        assert!(wait_until(|| outcome.load(Ordering::SeqCst) != 1));
        assert_eq!(outcome.load(Ordering::SeqCst), 0);
        assert_eq!(big.0.load(Ordering::SeqCst), EOVERFLOW.to_errno());
        close(client, server)
    }

    /// What the client saw, in order: the routine of its packet `i` logs
    /// `2i`, the server's data packet `i` logs `2i + 1`.
    static ORDER: [AtomicU32; 16] = [const { AtomicU32::new(u32::MAX) }; 16];
    static ORDER_AT: AtomicU32 = AtomicU32::new(0);

    fn note_order(event: u32) {
        let at = ORDER_AT.fetch_add(1, Ordering::SeqCst) as usize;
        if let Some(slot) = ORDER.get(at) {
            slot.store(event, Ordering::SeqCst);
        }
    }

    /// Server: completes each packet, then sends a data packet with the
    /// same tag (its first byte): the client's ring holds completion 0,
    /// data 0, completion 1, data 1, ...
    struct CompleteThenSend;

    impl PacketCallbacks for CompleteThenSend {
        fn process_packet(&self, channel: &Arc<Channel>, packet: IncomingPacket) {
            let tag = packet.data().first().copied().unwrap_or(0xff);
            let _ = packet.complete(&[]);
            if let Ok(r) = KBox::new(Logged(None), GFP_ATOMIC) {
                let _ = channel.send(&[tag], false, r);
            }
        }
    }

    /// Client: logs each data packet's tag.
    struct LogData;

    impl PacketCallbacks for LogData {
        fn process_packet(&self, _channel: &Arc<Channel>, packet: IncomingPacket) {
            let tag = packet.data().first().copied().unwrap_or(0xff);
            note_order(2 * u32::from(tag) + 1);
            let _ = packet.complete(&[]);
        }
    }

    /// A routine that logs its event (`None`: nothing) when it runs.
    struct Logged(Option<u32>);

    impl SendCompletion for Logged {
        fn complete(&mut self, _status: Result, _data: &[u8]) {
            if let Some(event) = self.0 {
                note_order(event);
            }
        }
    }

    /// Completions and data packets read in one batch of the receive work
    /// reach the driver in ring order: each routine runs before the data
    /// packet the other endpoint sent after completing.
    #[test]
    fn completions_and_data_packets_run_in_ring_order() -> Result {
        ORDER_AT.store(0, Ordering::SeqCst);
        for slot in &ORDER {
            slot.store(u32::MAX, Ordering::SeqCst);
        }
        let bus = LoopbackBus::new()?;
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        server.set_packet_callbacks(Arc::new(CompleteThenSend, GFP_KERNEL)?)?;
        let client = Channel::new(Role::Client, bus)?;
        client.configure(|s| s.interface_type = TYPE)?;
        client.set_packet_callbacks(Arc::new(LogData, GFP_KERNEL)?)?;
        open(&server, &client)?;
        for i in 0..8u8 {
            let routine = KBox::new(Logged(Some(2 * u32::from(i))), GFP_KERNEL)?;
            client.send(&[i], true, routine)?;
        }
        assert!(wait_until(|| ORDER_AT.load(Ordering::SeqCst) == 16));
        for (i, slot) in ORDER.iter().enumerate() {
            assert_eq!(slot.load(Ordering::SeqCst), i as u32);
        }
        assert_eq!(client.counters().completions_in, 8);
        close(client, server)
    }
}

// SPDX-License-Identifier: GPL-2.0

//! Where packets are delivered: softirq, process context, deferral, the
//! target processor.

use kernel::prelude::*;

#[kunit_tests(kmcl_channel_context)]
mod cases {
    use super::super::*;

    /// Records the context of each delivery; echoes, or defers packets
    /// first seen in softirq context.
    #[derive(Default)]
    struct ContextProbe {
        defer_from_softirq: bool,
        in_softirq: AtomicU32,
        in_task: AtomicU32,
        deferred: AtomicU32,
    }

    impl PacketCallbacks for ContextProbe {
        fn process_packet(&self, _channel: &Arc<Channel>, packet: IncomingPacket) {
            if crate::sys::context::interrupt_cpu().is_none() {
                self.in_task.fetch_add(1, Ordering::SeqCst);
            } else {
                self.in_softirq.fetch_add(1, Ordering::SeqCst);
                if self.defer_from_softirq {
                    self.deferred.fetch_add(1, Ordering::SeqCst);
                    packet.defer_to_passive();
                    return;
                }
            }
            let _ = packet.complete(b"done");
        }
    }

    /// `n` synchronous requests (completed with "done") from a client to a
    /// server with `callbacks`: `setup` configures the server before it is
    /// enabled and `connected` checks it while it is.
    fn requests_to(
        callbacks: Arc<dyn PacketCallbacks>,
        n: u32,
        setup: impl FnOnce(&Arc<Channel>) -> Result,
        connected: impl FnOnce(&Arc<Channel>),
    ) -> Result {
        let bus = LoopbackBus::new()?;
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        server.set_packet_callbacks(callbacks)?;
        setup(&server)?;
        let client = Channel::new(Role::Client, bus.clone())?;
        client.configure(|s| s.interface_type = TYPE)?;
        open(&server, &client)?;
        connected(&server);
        let mut reply = [0u8; 8];
        for _ in 0..n {
            let len = client.send_sync(&[1, 2, 3], &mut reply, Some(5000))?;
            assert_eq!(&reply[..4], b"done");
            assert_eq!(len, 8);
        }
        close(client, server)
    }

    fn probe_run(passive: bool, defer: bool) -> Result<Arc<ContextProbe>> {
        let probe = Arc::new(
            ContextProbe {
                defer_from_softirq: defer,
                ..Default::default()
            },
            GFP_KERNEL,
        )?;
        requests_to(
            probe.clone(),
            50,
            |server| server.set_incoming_processing_at_passive(passive),
            |server| {
                assert_eq!(
                    server.set_incoming_processing_at_passive(!passive),
                    Err(EBUSY)
                )
            },
        )?;
        Ok(probe)
    }

    #[test]
    fn delivery_runs_in_softirq_by_default() -> Result {
        let p = probe_run(false, false)?;
        assert_eq!(p.in_softirq.load(Ordering::SeqCst), 50);
        assert_eq!(p.in_task.load(Ordering::SeqCst), 0);
        Ok(())
    }

    #[test]
    fn incoming_processing_at_passive_runs_in_process_context() -> Result {
        let p = probe_run(true, false)?;
        assert_eq!(p.in_task.load(Ordering::SeqCst), 50);
        assert_eq!(p.in_softirq.load(Ordering::SeqCst), 0);
        Ok(())
    }

    #[test]
    fn deferred_packets_are_redelivered_in_process_context() -> Result {
        let p = probe_run(false, true)?;
        assert_eq!(p.deferred.load(Ordering::SeqCst), 50);
        assert_eq!(p.in_softirq.load(Ordering::SeqCst), 50);
        assert_eq!(p.in_task.load(Ordering::SeqCst), 50);
        Ok(())
    }

    /// Counts the packets delivered on CPU `cpu` and elsewhere.
    #[derive(Default)]
    struct CpuProbe {
        cpu: AtomicU32,
        on_cpu: AtomicU32,
        elsewhere: AtomicU32,
    }

    impl PacketCallbacks for CpuProbe {
        fn process_packet(&self, _channel: &Arc<Channel>, packet: IncomingPacket) {
            let here = kernel::cpu::CpuId::current().as_u32();
            if here == self.cpu.load(Ordering::SeqCst) {
                self.on_cpu.fetch_add(1, Ordering::SeqCst);
            } else {
                self.elsewhere.fetch_add(1, Ordering::SeqCst);
            }
            let _ = packet.complete(b"done");
        }
    }

    /// 40 requests from a sender pinned to CPU 0 to a server with target
    /// processor `target`: counts of those delivered on `expect`.
    fn deliveries_on(target: Option<u32>, expect: u32) -> Result<(u32, u32)> {
        crate::sys::context::pin_current(0)?;
        let probe = Arc::new(CpuProbe::default(), GFP_KERNEL)?;
        probe.cpu.store(expect, Ordering::SeqCst);
        requests_to(
            probe.clone(),
            40,
            |server| {
                assert_eq!(
                    server.set_target_processor(Some(kernel::cpu::nr_cpu_ids())),
                    Err(EINVAL)
                );
                server.set_target_processor(target)?;
                assert_eq!(server.target_processor(), target);
                Ok(())
            },
            |server| assert_eq!(server.set_target_processor(None), Err(EBUSY)),
        )?;
        Ok((
            probe.on_cpu.load(Ordering::SeqCst),
            probe.elsewhere.load(Ordering::SeqCst),
        ))
    }

    #[test]
    fn packets_are_delivered_on_the_target_processor() -> Result {
        // The test VM has two CPUs: the server's packets go to CPU 1 while
        // the client sends from CPU 0.
        let last = kernel::cpu::nr_cpu_ids() - 1;
        assert_eq!(deliveries_on(Some(last), last)?, (40, 0));
        // Without a target: on the CPU the client signalled from.
        assert_eq!(deliveries_on(None, 0)?, (40, 0));
        Ok(())
    }
}

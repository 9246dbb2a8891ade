// SPDX-License-Identifier: GPL-2.0

//! Flow control: the transaction quota, the receive budget, and other
//! endpoints that stop reading or completing.

use kernel::prelude::*;

#[kunit_tests(kmcl_channel_flow)]
mod cases {
    use super::super::*;

    #[test]
    fn transaction_quota_limits_outstanding_packets() -> Result {
        const N: u32 = 20;
        let bus = LoopbackBus::new()?;
        let holder = Holder::new(false)?;
        let (server, client) = pair_with(&bus, holder.clone())?;
        assert_eq!(server.set_transaction_quota(0), Err(EINVAL));
        server.set_transaction_quota(4)?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        for i in 0..N {
            send_one(&client, &tally, 16, i)?;
        }
        assert!(holder.wait(|h| h.held() == 4));
        fsleep(Delta::from_millis(100));
        assert_eq!(holder.delivered.load(Ordering::SeqCst), 4);
        assert!(server.quota_hits() >= 1);
        // Each completion lets exactly one more packet in.
        holder.complete(1);
        assert!(holder.wait(|h| h.delivered.load(Ordering::SeqCst) == 5));
        while holder.delivered.load(Ordering::SeqCst) < N {
            holder.complete(4);
            fsleep(Delta::from_millis(10));
        }
        holder.complete(4);
        assert!(tally.wait_total(N));
        assert_eq!(tally.total(), N);
        assert!(holder.most_held.load(Ordering::SeqCst) <= 4);
        // Completed after their callbacks: none went back during delivery.
        assert!(crate::engine::testing::wait_until(|| server
            .snapshot()
            .held
            == 0));
        assert_eq!(server.snapshot().handed_back, 0);
        close(client, server)
    }

    #[test]
    fn the_receive_work_yields_after_its_budget_and_loses_nothing() -> Result {
        use crate::engine::channel::RX_BUDGET;
        const N: u32 = RX_BUDGET + 22;
        let bus = LoopbackBus::new()?;
        let (server, client) = pair(&bus)?;
        // Paused: the packets wait in the ring (N * 40 bytes fit in it).
        server.pause()?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        for i in 0..N {
            send_one(&client, &tally, 16, i)?;
        }
        assert_eq!(client.counters().ring_full, 0);
        assert_eq!(server.snapshot().budget_hits, 0);
        server.start()?;
        assert!(tally.wait_total(N));
        assert_eq!(tally.ok.load(Ordering::SeqCst), N);
        // One run read RX_BUDGET packets and queued the work again.
        assert!(server.snapshot().budget_hits >= 1);
        assert_eq!(server.counters().packets_in, u64::from(N));
        assert_eq!(server.counters().completions_out, u64::from(N));
        assert_eq!(client.counters().completions_in, u64::from(N));
        close(client, server)
    }

    #[test]
    fn queued_sends_reuse_the_buffers_written_out_until_the_queue_idles() -> Result {
        use crate::engine::{
            channel::RX_BUDGET,
            datapath::RECYCLED_IDLE_MS, //
        };
        let bus = LoopbackBus::new()?;
        let holder = Holder::new(false)?;
        let (server, client) = pair_with(&bus, holder.clone())?;
        // The server's driver holds what it gets: delivery stops at the
        // quota, after one receive run.
        server.set_transaction_quota(RX_BUDGET)?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        let payload = pattern(4096, 7)?;
        let mut sent = 0u32;
        // Sends until `n` more than now were queued (the server paused,
        // its ring full); the buffers they allocated.
        let queue = |n: u64, sent: &mut u32| -> Result<u64> {
            let (full, allocated) = (
                client.counters().ring_full,
                client.counters().queue_allocations,
            );
            while client.counters().ring_full < full + n {
                send_counted(&client, &tally, &payload, false)?;
                *sent += 1;
            }
            Ok(client.counters().queue_allocations - allocated)
        };
        server.pause()?;
        assert_eq!(queue(200, &mut sent)?, 200);
        server.start()?;
        // One run: RX_BUDGET packets read, the queue written into the
        // room they made; packets are still queued.
        assert!(holder.wait(|h| h.held() == RX_BUDGET));
        fsleep(Delta::from_millis(100));
        let queued = client.snapshot().queued;
        assert!(queued > 0 && queued < 200);
        // The sender keeps queueing: each send takes a buffer a written
        // packet left, none allocates.
        assert_eq!(queue(100, &mut sent)?, 0);
        // Everything delivered (and completed by the driver).
        let drain = |sent: u32| {
            while holder.delivered.load(Ordering::SeqCst) < sent {
                holder.complete(RX_BUDGET as usize);
                fsleep(Delta::from_millis(10));
            }
            holder.complete(RX_BUDGET as usize);
            assert!(holder.wait(|h| h.held() == 0));
        };
        drain(sent);
        // A queue right after the last one reuses its buffers too.
        server.pause()?;
        assert_eq!(queue(150, &mut sent)?, 0);
        server.start()?;
        drain(sent);
        // After RECYCLED_IDLE_MS without a queue, the next starts with at
        // most one ring's bytes of them: it allocates, but not for all.
        server.pause()?;
        fsleep(Delta::from_millis(RECYCLED_IDLE_MS + 200));
        let allocated = queue(200, &mut sent)?;
        assert!(allocated > 0 && allocated < 200);
        server.start()?;
        drain(sent);
        assert!(tally.wait_total(sent));
        assert_eq!(tally.ok.load(Ordering::SeqCst), sent);
        assert_eq!(server.counters().packets_in, u64::from(sent));
        assert_eq!(client.counters().ring_full, 650);
        close(client, server)
    }

    #[test]
    fn kept_send_queue_buffers_are_freed_once_the_queue_idles() -> Result {
        use crate::engine::datapath::RECYCLED_IDLE_MS;
        let bus = LoopbackBus::new()?;
        let (server, client) = pair(&bus)?;
        let ring = client
            .snapshot()
            .rings
            .map_or(0, |r| r.outgoing.size as usize);
        assert!(ring > 0);
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        let payload = pattern(4096, 3)?;
        // A burst into a paused server: three rings' bytes queued.
        server.pause()?;
        let mut sent = 0u32;
        while client.snapshot().queued * 4096 < 3 * ring {
            send_counted(&client, &tally, &payload, false)?;
            sent += 1;
        }
        server.start()?;
        assert!(tally.wait_total(sent));
        assert_eq!(tally.ok.load(Ordering::SeqCst), sent);
        // Written out: their buffers are kept for the next burst.
        let s = client.snapshot();
        assert_eq!(s.queued, 0);
        assert!(s.kept_send_bytes > ring);
        // Nothing is sent any more: after the idle time an idle channel
        // holds at most one ring's bytes of them.
        fsleep(Delta::from_millis(RECYCLED_IDLE_MS + 500));
        let kept = client.snapshot().kept_send_bytes;
        assert!(kept <= ring);
        assert!(kept > 0);
        close(client, server)
    }

    #[test]
    fn a_peer_that_never_reads_is_closed_after_the_stall_time() -> Result {
        let bus = LoopbackBus::new()?;
        let (server, client) = pair(&bus)?;
        // A paused server reads nothing: the client's ring fills, then its
        // queue, until the limit refuses more.
        server.pause()?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        let payload = pattern(4096, 1)?;
        let mut accepted = 0u32;
        let refused = loop {
            match send_counted(&client, &tally, &payload, false) {
                Ok(()) => accepted += 1,
                Err(e) => break e,
            }
            assert!(accepted < 1000);
        };
        assert_eq!(refused, ENOBUFS);
        let queued = client.snapshot().queued as u32;
        assert!(queued >= (QUEUE_LIMIT_MIN / 4096 - 1) as u32);
        assert!(client.is_running());
        // Still nothing read after the stall time: the next send closes
        // the channel.
        fsleep(Delta::from_millis(PEER_STALL_MS + 200));
        assert_eq!(send_counted(&client, &tally, &payload, false), Err(ENODEV));
        // Every accepted send's routine ran once: written ones with
        // success, queued ones with -ENODEV.
        assert!(tally.wait_total(accepted));
        assert_eq!(tally.removed.load(Ordering::SeqCst), queued);
        assert_eq!(tally.ok.load(Ordering::SeqCst), accepted - queued);
        assert!(holder_wait(|| !client.is_enabled()));
        assert_eq!(client.snapshot().failures, 1);
        server.disable()?;
        client.cleanup()?;
        server.cleanup()
    }

    #[test]
    fn a_peer_that_never_completes_does_not_hold_up_disable() -> Result {
        const N: u32 = 100;
        let bus = LoopbackBus::new()?;
        let holder = Holder::new(false)?;
        let (server, client) = pair_with(&bus, holder.clone())?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        for i in 0..N {
            send_counted(&client, &tally, &[i as u8; 64], true)?;
        }
        assert!(holder.wait(|h| h.held() == N));
        assert_eq!(tally.total(), 0);
        // The client gives up: Disable ends every open transaction with
        // -ENODEV at once, whatever the server's driver does.
        let start = kernel::time::Instant::<kernel::time::Monotonic>::now();
        client.disable()?;
        assert!(start.elapsed().as_millis() < 2000);
        assert_eq!(tally.removed.load(Ordering::SeqCst), N);
        // The server's driver completes late: nobody waits, nothing breaks.
        holder.complete(N as usize);
        assert!(holder.wait(|_| !server.is_running()));
        server.disable()?;
        client.cleanup()?;
        server.cleanup()
    }
}

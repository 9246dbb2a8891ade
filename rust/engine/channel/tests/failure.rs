// SPDX-License-Identifier: GPL-2.0

//! Failures that close a channel: PacketFail, corrupt rings, forged and
//! repeated completions; and one that must not: running out of memory
//! while receiving.

use kernel::prelude::*;

#[kunit_tests(kmcl_channel_failure)]
mod cases {
    use super::super::*;

    #[test]
    fn packet_fail_closes_the_channel() -> Result {
        let bus = LoopbackBus::new()?;
        let holder = Holder::new(true)?;
        let (server, client) = pair_with(&bus, holder.clone())?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        let routine = Expect::new(KVec::new(), &tally)?;
        client.send(&[0xff, 1, 2], true, routine)?;
        // The server fails the packet: both sides close, and the sender's
        // routine runs with -ENODEV.
        assert!(tally.wait_total(1));
        assert_eq!(tally.removed.load(Ordering::SeqCst), 1);
        assert!(holder.wait(|_| !client.is_enabled() && !server.is_running()));
        assert!(server.is_enabled());
        server.disable()?;
        client.cleanup()?;
        server.cleanup()?;
        Ok(())
    }

    /// The server's ring to the client turned corrupt in one of several
    /// ways: the client's reader refuses it, and both sides close (Suspend
    /// and Closed, as after PacketFail); every send is accounted for.
    #[test]
    fn a_corrupt_ring_closes_the_channel_on_both_sides() -> Result {
        use crate::protocol::ring::RingMemory;
        // (type, offset8, len8, flags) of a descriptor the server never
        // wrote: too long, unknown type, data offset inside the
        // descriptor, unknown flags.
        let bad = [
            (6u16, 2u16, 0xffffu16, 0u16),
            (8, 2, 3, 0),
            (6, 1, 3, 0),
            (6, 2, 3, 0x8000),
        ];
        for case in 0..=bad.len() {
            let bus = LoopbackBus::new()?;
            let (server, client) = pair(&bus)?;
            let s2c = client.connection_rings().ok_or(EINVAL)?.1;
            let w = s2c.control()[0].load(Ordering::SeqCst);
            let size = s2c.data_len() as u32;
            match bad.get(case) {
                // A write index outside the ring.
                None => s2c.control()[0].store(size + 8, Ordering::SeqCst),
                Some(&(ptype, off8, len8, flags)) => {
                    let mut d = [0u8; 24];
                    d[0..2].copy_from_slice(&ptype.to_le_bytes());
                    d[2..4].copy_from_slice(&off8.to_le_bytes());
                    d[4..6].copy_from_slice(&len8.to_le_bytes());
                    d[6..8].copy_from_slice(&flags.to_le_bytes());
                    s2c.write_data(w as usize, &d);
                    s2c.control()[0].store(w + 24, Ordering::SeqCst);
                }
            }
            client.kick_rx();
            let closed = (0..500).any(|_| {
                let done = !client.is_enabled() && !server.snapshot().connected;
                if !done {
                    fsleep(Delta::from_millis(10));
                }
                done
            });
            assert!(closed);
            assert_eq!(client.snapshot().failures, 1);
            // The server keeps its offer up, as after any close.
            assert!(server.is_enabled());
            server.disable()?;
            server.cleanup()?;
            client.cleanup()?;
        }
        Ok(())
    }

    /// A completion for a packet never sent (a forged transaction id)
    /// closes the channel; pending sends end with `-ENODEV`.
    #[test]
    fn a_forged_completion_closes_the_channel() -> Result {
        let bus = LoopbackBus::new()?;
        let holder = Holder::new(false)?;
        let (server, client) = pair_with(&bus, holder.clone())?;
        // Two transactions in flight, held by the server's driver.
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        send_one(&client, &tally, 40, 1)?;
        send_one(&client, &tally, 40, 2)?;
        assert!(holder.wait(|h| h.held() == 2));
        // The server's own writer sends a completion for an id the client
        // never used (as a confused or hostile peer would).
        server.complete_incoming(true, 0xdead, b"forged")?;
        // The client closes (as after PacketFail): both sends end with the
        // defined failure status.
        assert!(tally.wait_total(2));
        assert_eq!(tally.removed.load(Ordering::SeqCst), 2);
        assert!(holder.wait(|_| !client.is_enabled()));
        assert_eq!(client.snapshot().failures, 1);
        // The server lost its client; its Suspend waits for its driver,
        // whose completions now go nowhere.
        holder.complete(2);
        assert!(holder.wait(|_| !server.is_running()));
        server.disable()?;
        client.cleanup()?;
        server.cleanup()
    }

    #[test]
    fn a_completion_repeated_by_the_peer_closes_the_channel() -> Result {
        let bus = LoopbackBus::new()?;
        let holder = Holder::new(false)?;
        let (server, client) = pair_with(&bus, holder.clone())?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        send_one(&client, &tally, 40, 1)?;
        assert!(holder.wait(|h| h.held() == 1));
        let id = holder.first_id();
        holder.complete(1);
        assert!(tally.wait_total(1));
        // Completed (with the holder's empty payload), not failed.
        assert_eq!(tally.mismatched.load(Ordering::SeqCst), 1);
        // The same id again: a duplicate.
        server.complete_incoming(true, id, b"again")?;
        assert!(holder.wait(|_| !client.is_enabled() && !server.is_running()));
        assert_eq!(client.snapshot().failures, 1);
        server.disable()?;
        client.cleanup()?;
        server.cleanup()
    }

    /// The other endpoint writes a read index outside our outgoing ring:
    /// the next send that needs the read index fails with `-ENODEV` and
    /// the channel closes on both sides, as for any corrupt ring.
    #[test]
    fn a_corrupt_read_index_on_the_outgoing_ring_closes_the_channel() -> Result {
        use crate::protocol::ring::RingMemory;
        let bus = LoopbackBus::new()?;
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        server.set_packet_callbacks(Arc::new(Echo, GFP_KERNEL)?)?;
        // One page to send on: the second 3000-byte packet needs the
        // reader's index (the writer keeps the last one it read).
        let client = Channel::new(Role::Client, bus)?;
        client.configure(|s| {
            s.interface_type = TYPE;
            s.outgoing_pages = 1;
        })?;
        open(&server, &client)?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        send_one(&client, &tally, 3000, 1)?;
        assert!(wait_until(|| tally.total() == 1));
        let c2s = client.connection_rings().ok_or(EINVAL)?.0;
        let size = c2s.data_len() as u32;
        c2s.control()[1].store(size + 8, Ordering::SeqCst);
        assert_eq!(send_one(&client, &tally, 3000, 2), Err(ENODEV));
        assert!(wait_until(
            || !client.is_enabled() && !server.snapshot().connected
        ));
        assert_eq!(client.snapshot().failures, 1);
        server.disable()?;
        server.cleanup()?;
        client.cleanup()
    }

    #[test]
    fn receive_goes_on_after_an_atomic_allocation_fails() -> Result {
        use crate::engine::{
            datapath::fail_rx_allocations,
            testing::wait_for, //
        };
        let bus = LoopbackBus::new()?;
        let holder = Holder::new(false)?;
        let (server, client) = pair_with(&bus, holder.clone())?;
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        // The server's receive work cannot allocate the packet's object:
        // the packet waits in the ring, and arrives without another
        // signal once memory was found in process context.
        fail_rx_allocations(1);
        send_counted(&client, &tally, &[7; 200], true)?;
        assert!(wait_for(2, || holder.held() == 1));
        // The client's receive work cannot copy the completion: the
        // routine still runs, with the completion's payload.
        fail_rx_allocations(1);
        holder.complete(1);
        assert!(wait_for(2, || tally.total() == 1));
        assert_eq!(tally.ok.load(Ordering::SeqCst), 1);
        assert!(server.snapshot().no_memory >= 1 && client.snapshot().no_memory >= 1);
        assert!(server.is_running() && client.is_running());
        close(client, server)
    }
}

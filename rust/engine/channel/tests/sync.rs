// SPDX-License-Identifier: GPL-2.0

//! Synchronous requests (KMCL `VmbChannelSendSynchronousRequest`).

use kernel::prelude::*;

#[kunit_tests(kmcl_channel_sync)]
mod cases {
    use super::super::*;

    #[test]
    fn synchronous_request_round_trip() -> Result {
        let bus = LoopbackBus::new()?;
        let (server, client) = pair(&bus)?;
        let mut reply = [0u8; 64];
        // VMBus carries payloads in 8-byte units: 11 bytes come back as 16,
        // zero-padded (as with hv_vmbus's hv_pkt_datalen()).
        let n = client.send_sync(b"hello, kmcl", &mut reply, Some(2000))?;
        assert_eq!(n, 16);
        assert_eq!(&reply[..11], b"hello, kmcl");
        assert_eq!(&reply[11..16], &[0; 5]);
        let n = client.send_sync(&[7; 40], &mut reply, None)?;
        assert_eq!(&reply[..n], &[7; 40]);
        // The completion payload does not fit the caller's buffer.
        let mut small = [0u8; 4];
        assert_eq!(client.send_sync(&[1; 16], &mut small, None), Err(EOVERFLOW));
        client.disable()?;
        // Not connected any more.
        assert_eq!(client.send_sync(&[1], &mut reply, None), Err(ENODEV));
        server.disable()?;
        client.cleanup()?;
        server.cleanup()?;
        Ok(())
    }

    #[test]
    fn synchronous_request_times_out_and_late_completion_is_dropped() -> Result {
        let bus = LoopbackBus::new()?;
        let holder = Holder::new(false)?;
        let (server, client) = pair_with(&bus, holder.clone())?;
        let mut reply = [0u8; 16];
        assert_eq!(
            client.send_sync(&[1, 2, 3], &mut reply, Some(100)),
            Err(ETIMEDOUT)
        );
        assert_eq!(holder.held(), 1);
        // The server completes it after all: the request was cancelled, so
        // the completion is recognised as late and dropped, and the channel
        // carries on (it is not a forgery).
        holder.complete(1);
        let mut dropped = false;
        for _ in 0..300 {
            if client.counters().late_completions == 1 {
                dropped = true;
                break;
            }
            fsleep(Delta::from_millis(10));
        }
        assert!(dropped);
        assert_eq!(client.counters().completions_in, 0);
        assert_eq!(client.counters().bad_completions, 0);
        assert!(client.is_running());
        // And a new transaction completes normally.
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        send_counted(&client, &tally, &[4], true)?;
        assert!(holder.wait(|h| h.held() == 1));
        holder.complete(1);
        assert!(tally.wait_total(1));
        assert_eq!(tally.ok.load(Ordering::SeqCst), 1);
        close(client, server)
    }

    #[test]
    fn synchronous_request_sees_the_device_removed_while_waiting() -> Result {
        let bus = LoopbackBus::new()?;
        let holder = Holder::new(true)?;
        let (server, client) = pair_with(&bus, holder.clone())?;
        let mut reply = [0u8; 16];
        // The server fails the request, which closes the connection while
        // the client waits: the request ends with -ENODEV, not a timeout.
        assert_eq!(
            client.send_sync(&[0xff], &mut reply, Some(10_000)),
            Err(ENODEV)
        );
        assert!(holder.wait(|_| !client.is_enabled()));
        server.disable()?;
        client.cleanup()?;
        server.cleanup()?;
        Ok(())
    }
}

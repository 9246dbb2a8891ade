// SPDX-License-Identifier: GPL-2.0

//! Sub-channels on the loopback bus: a server offers sub-channels of its
//! primary's connection, the client hears of each and opens it with its
//! own channel; each carries its own packets; a server withdrawing one
//! closes only it; the primary's connection ending closes them all.

use kernel::prelude::*;

#[kunit_tests(kmcl_channel_subchannels)]
mod cases {
    use super::super::*;
    use crate::engine::channel::StateCallbacks;
    use crate::engine::testing::Letters;
    use kernel::{
        new_mutex,
        sync::Mutex,
        workqueue::{impl_has_work, new_work, Work, WorkItem}, //
    };

    /// A client primary channel's callbacks: records the sub-channel
    /// indexes offered (the callback runs in process context).
    #[pin_data]
    struct Offered {
        #[pin]
        indexes: Mutex<KVec<u16>>,
    }

    impl Offered {
        fn new() -> Result<Arc<Self>> {
            Arc::pin_init(
                pin_init!(Offered {
                    indexes <- new_mutex!(KVec::new()),
                }),
                GFP_KERNEL,
            )
        }

        fn seen(&self) -> KVec<u16> {
            let mut v = KVec::new();
            let _ = v.extend_from_slice(&self.indexes.lock(), GFP_KERNEL);
            v
        }
    }

    impl StateCallbacks for Offered {
        fn subchannel_offered(&self, primary: &Arc<Channel>, index: u16) {
            // Called while the primary is connected.
            if primary.is_connected() {
                let _ = self.indexes.lock().push(index, GFP_KERNEL);
            }
        }
    }

    /// A server sub-channel of `primary` that echoes, enabled and started.
    fn server_sub(bus: &Arc<LoopbackBus>, primary: &Arc<Channel>) -> Result<Arc<Channel>> {
        let s = Channel::new(Role::Server, bus.clone())?;
        s.set_packet_callbacks(Arc::new(Echo, GFP_KERNEL)?)?;
        s.set_primary(primary)?;
        s.enable()?;
        s.start()?;
        Ok(s)
    }

    /// A client sub-channel of `primary` recording its state callbacks in
    /// `letters`, enabled.
    fn client_sub(
        bus: &Arc<LoopbackBus>,
        primary: &Arc<Channel>,
        letters: &Arc<Letters>,
    ) -> Result<Arc<Channel>> {
        let c = Channel::new(Role::Client, bus.clone())?;
        c.set_state_callbacks(letters.clone())?;
        c.set_primary(primary)?;
        c.enable()?;
        Ok(c)
    }

    /// A connected primary pair whose client records sub-channel offers.
    fn primaries(bus: &Arc<LoopbackBus>) -> Result<(Arc<Channel>, Arc<Channel>, Arc<Offered>)> {
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        server.set_packet_callbacks(Arc::new(Echo, GFP_KERNEL)?)?;
        let client = Channel::new(Role::Client, bus.clone())?;
        client.configure(|s| s.interface_type = TYPE)?;
        let offered = Offered::new()?;
        client.set_state_callbacks(offered.clone())?;
        open(&server, &client)?;
        Ok((server, client, offered))
    }

    #[test]
    fn subchannels_are_offered_opened_and_carry_their_own_packets() -> Result {
        let bus = LoopbackBus::new()?;
        let (server, client, offered) = primaries(&bus)?;
        let mut s_subs = KVec::new();
        for _ in 0..3 {
            s_subs.push(server_sub(&bus, &server)?, GFP_KERNEL)?;
        }
        assert!(wait_until(|| offered.seen().len() == 3));
        assert!(offered.seen()[..] == [1, 2, 3][..]);
        let mut c_subs = KVec::new();
        let mut letters = KVec::new();
        for _ in 0..3 {
            let l = Letters::new(false)?;
            c_subs.push(client_sub(&bus, &client, &l)?, GFP_KERNEL)?;
            letters.push(l, GFP_KERNEL)?;
        }
        assert!(wait_until(
            || c_subs.iter().all(|c| c.is_running()) && s_subs.iter().all(|s| s.is_running())
        ));
        // Each client sub-channel took one offer; server index k is the
        // k-th offered.
        let mut idx: KVec<u16> = KVec::new();
        for c in c_subs.iter() {
            idx.push(c.subchannel_index(), GFP_KERNEL)?;
        }
        idx.sort_unstable();
        assert!(idx[..] == [1, 2, 3][..]);
        for (k, s) in s_subs.iter().enumerate() {
            assert_eq!(usize::from(s.subchannel_index()), k + 1);
        }
        assert_eq!(client.subchannel_index(), 0);
        assert_eq!(
            c_subs[0].snapshot().subchannel,
            Some((client.id(), idx_of(&c_subs[0])))
        );
        // 20 echoes on each, every one back on its own sub-channel.
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        for (k, c) in c_subs.iter().enumerate() {
            for i in 0..20 {
                send_one(c, &tally, 16 + k * 8, i)?;
            }
        }
        assert!(tally.wait_total(60));
        assert_eq!(tally.ok.load(Ordering::SeqCst), 60);
        for s in s_subs.iter() {
            assert_eq!(s.counters().packets_in, 20);
        }
        assert_eq!(server.counters().packets_in, 0);

        // The server withdraws sub-channel 2: only that one closes.
        let two = c_subs
            .iter()
            .position(|c| c.subchannel_index() == 2)
            .ok_or(EINVAL)?;
        s_subs[1].disable()?;
        assert!(letters[two].wait_for(b"OTPSC"));
        assert!(!c_subs[two].is_enabled());
        for (k, c) in c_subs.iter().enumerate() {
            if k != two {
                assert!(c.is_running());
                send_one(c, &tally, 8, 99)?;
            }
        }
        assert!(tally.wait_total(62));
        assert_eq!(tally.ok.load(Ordering::SeqCst), 62);

        // The primary closes: so do the other sub-channels, on both sides.
        client.disable()?;
        for (k, l) in letters.iter().enumerate() {
            if k != two {
                assert!(l.wait_for(b"OTPSC"));
            }
        }
        assert!(wait_until(|| s_subs
            .iter()
            .all(|s| !s.snapshot().connected)));
        assert!(c_subs.iter().all(|c| !c.is_enabled()));
        // A server sub-channel cannot be offered again without its
        // primary's connection.
        assert_eq!(s_subs[1].enable(), Err(ENOTCONN));
        for s in s_subs {
            if s.is_enabled() {
                s.disable()?;
            }
            s.cleanup()?;
        }
        for c in c_subs {
            c.cleanup()?;
        }
        server.disable()?;
        client.cleanup()?;
        server.cleanup()
    }

    fn idx_of(c: &Arc<Channel>) -> u16 {
        c.subchannel_index()
    }

    #[test]
    fn a_subchannel_needs_a_connected_primary_of_its_role() -> Result {
        let bus = LoopbackBus::new()?;
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        let client = Channel::new(Role::Client, bus.clone())?;
        client.configure(|s| s.interface_type = TYPE)?;
        let s_sub = Channel::new(Role::Server, bus.clone())?;
        let c_sub = Channel::new(Role::Client, bus.clone())?;
        assert_eq!(s_sub.set_primary(&s_sub), Err(EINVAL));
        assert_eq!(s_sub.set_primary(&client), Err(EINVAL));
        assert_eq!(c_sub.set_primary(&server), Err(EINVAL));
        s_sub.set_primary(&server)?;
        c_sub.set_primary(&client)?;
        // A sub-channel's sub-channel.
        let third = Channel::new(Role::Server, bus.clone())?;
        assert_eq!(third.set_primary(&s_sub), Err(EINVAL));
        // The server offers, nobody connected: no sub-channel yet.
        server.enable()?;
        server.start()?;
        assert_eq!(s_sub.enable(), Err(ENOTCONN));
        assert!(!s_sub.is_enabled());
        assert_eq!(c_sub.enable(), Err(ENOTCONN));
        // Connected: the client's sub-channel waits for an offer, which
        // comes once the server enables its sub-channel.
        client.enable()?;
        assert!(wait_until(|| client.is_running() && server.is_running()));
        c_sub.enable()?;
        assert!(!c_sub.is_connected());
        s_sub.enable()?;
        s_sub.start()?;
        assert!(wait_until(|| c_sub.is_running() && s_sub.is_running()));
        assert_eq!(c_sub.subchannel_index(), 1);
        assert_eq!(c_sub.set_primary(&client), Err(EBUSY));
        // The server's primary goes: its sub-channel's connection too.
        server.disable()?;
        assert!(wait_until(
            || !c_sub.is_enabled() && !s_sub.snapshot().connected
        ));
        s_sub.disable()?;
        for c in [c_sub, s_sub, third, client, server] {
            c.cleanup()?;
        }
        Ok(())
    }

    /// A client's receive buffer serves its sub-channels too (netvsc
    /// shares one per device): a set registered on the primary takes
    /// transfer-page packets on every sub-channel; a sub-channel registers
    /// none itself.
    #[test]
    fn subchannels_share_their_primarys_transfer_page_sets() -> Result {
        use crate::protocol::xfer::XferRange;
        let bus = LoopbackBus::new()?;
        let (server, client, _offered) = primaries(&bus)?;
        let s_sub = server_sub(&bus, &server)?;
        let keeper = crate::engine::testing::Keeper::new()?;
        let c_sub = Channel::new(Role::Client, bus.clone())?;
        c_sub.set_packet_callbacks(keeper.clone())?;
        c_sub.set_primary(&client)?;
        c_sub.enable()?;
        assert!(wait_until(|| c_sub.is_running() && s_sub.is_running()));
        let mut buf = kernel::alloc::VVec::<u8>::with_capacity(8192, GFP_KERNEL)?;
        buf.resize(8192, 0, GFP_KERNEL)?;
        // SAFETY: `buf` outlives the GPADL (deleted below, or by the close).
        let pages = unsafe { crate::shmem::GpadlPages::from_buffer(buf.as_ptr() as usize, 8192) }?;
        let gpadl = client.create_gpadl(pages, false)?;
        assert_eq!(c_sub.register_transfer_set(9, gpadl), Err(EINVAL));
        client.register_transfer_set(9, gpadl)?;
        let r = [XferRange {
            offset: 4000,
            len: 200,
        }];
        let tally = Arc::new(Tally::default(), GFP_KERNEL)?;
        s_sub.send_transfer_pages(9, &r, b"x", true, Expect::new(KVec::new(), &tally)?)?;
        assert!(wait_until(|| keeper.held() == 1));
        assert_eq!(c_sub.snapshot().failures, 0);
        assert_eq!(c_sub.snapshot().transfer_sets, 1);
        keeper.complete_all();
        assert!(tally.wait_total(1));
        assert_eq!(tally.ok.load(Ordering::SeqCst), 1);
        client.unregister_transfer_set(9)?;
        assert_eq!(
            s_sub.send_transfer_pages(9, &r, b"x", true, Expect::new(KVec::new(), &tally)?),
            Err(EINVAL)
        );
        client.delete_gpadl(gpadl)?;
        client.disable()?;
        assert!(wait_until(|| !c_sub.is_enabled()));
        for c in [c_sub, s_sub] {
            if c.is_enabled() {
                c.disable()?;
            }
            c.cleanup()?;
        }
        server.disable()?;
        client.cleanup()?;
        server.cleanup()?;
        drop(buf);
        Ok(())
    }

    /// A task holding a sub-channel's turn (one of its state callbacks)
    /// calling a turn-taking function of its primary would deadlock with
    /// the primary's callback waiting for the sub-channel's turn: refused
    /// with `-EDEADLK` whether or not that is under way.
    #[test]
    fn a_subchannels_turn_holder_is_refused_its_primarys_turn() -> Result {
        let bus = LoopbackBus::new()?;
        let (server, client, _offered) = primaries(&bus)?;
        let s_sub = server_sub(&bus, &server)?;
        let letters = Letters::new(false)?;
        let c_sub = client_sub(&bus, &client, &letters)?;
        assert!(wait_until(|| c_sub.is_running() && s_sub.is_running()));
        {
            // What a state callback of the client sub-channel runs under.
            let _turn = c_sub.take_turn()?;
            assert!(matches!(client.take_turn(), Err(e) if e == EDEADLK));
            assert_eq!(client.pause(), Err(EDEADLK));
            assert!(client.is_running());
            // The sub-channel's own turn-taking calls are refused as
            // ever, the sibling direction (the server's) is not involved.
            assert_eq!(c_sub.pause(), Err(EDEADLK));
            drop(server.take_turn()?);
        }
        // The turn released: the primary's calls go through again.
        drop(client.take_turn()?);
        client.disable()?;
        assert!(wait_until(|| !c_sub.is_enabled()));
        if s_sub.is_enabled() {
            s_sub.disable()?;
        }
        s_sub.cleanup()?;
        c_sub.cleanup()?;
        server.disable()?;
        client.cleanup()?;
        server.cleanup()
    }

    /// Holds a channel's turn from a work item for `ms` milliseconds, as
    /// the engine's own work does while it ends a sub-channel's connection.
    #[pin_data]
    struct TurnHolder {
        channel: Arc<Channel>,
        ms: u32,
        held: core::sync::atomic::AtomicBool,
        done: core::sync::atomic::AtomicBool,
        #[pin]
        work: Work<TurnHolder>,
    }

    impl_has_work! {
        impl HasWork<Self> for TurnHolder { self.work }
    }

    impl WorkItem for TurnHolder {
        type Pointer = Arc<TurnHolder>;

        fn run(this: Arc<TurnHolder>) {
            let turn = this.channel.take_turn();
            this.held.store(true, Ordering::SeqCst);
            fsleep(Delta::from_millis(this.ms.into()));
            drop(turn);
            this.done.store(true, Ordering::SeqCst);
        }
    }

    /// A VSP's primary: when its client leaves, its `closed` callback
    /// disables and frees the sub-channels it offered (what
    /// `kmcl_net_vsp` does), counting the calls that succeeded.
    #[pin_data]
    struct EndsSubs {
        #[pin]
        subs: Mutex<KVec<Arc<Channel>>>,
        freed: core::sync::atomic::AtomicU32,
    }

    impl StateCallbacks for EndsSubs {
        fn closed(&self, _primary: &Arc<Channel>) {
            let subs = core::mem::take(&mut *self.subs.lock());
            for s in subs {
                let disabled = !s.is_enabled() || s.disable().is_ok();
                if disabled && s.cleanup().is_ok() {
                    self.freed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    /// A primary's state callback may wait for its sub-channel's turn
    /// while another task holds it: the two turns nest (primary, then
    /// sub-channel), which lockdep must know is not recursion on one lock.
    #[test]
    fn a_primarys_callback_waits_for_its_subchannels_turn() -> Result {
        let bus = LoopbackBus::new()?;
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        server.set_packet_callbacks(Arc::new(Echo, GFP_KERNEL)?)?;
        let ends = Arc::pin_init(
            pin_init!(EndsSubs {
                subs <- new_mutex!(KVec::new()),
                freed: core::sync::atomic::AtomicU32::new(0),
            }),
            GFP_KERNEL,
        )?;
        server.set_state_callbacks(ends.clone())?;
        let client = Channel::new(Role::Client, bus.clone())?;
        client.configure(|s| s.interface_type = TYPE)?;
        open(&server, &client)?;
        let s_sub = server_sub(&bus, &server)?;
        let letters = Letters::new(false)?;
        let c_sub = client_sub(&bus, &client, &letters)?;
        assert!(wait_until(|| c_sub.is_running() && s_sub.is_running()));
        ends.subs.lock().push(s_sub.clone(), GFP_KERNEL)?;
        let held = s_sub.clone();
        let holder = Arc::pin_init(
            pin_init!(TurnHolder {
                channel: held,
                ms: 300,
                held: core::sync::atomic::AtomicBool::new(false),
                done: core::sync::atomic::AtomicBool::new(false),
                work <- new_work!("kmcl::tests::TurnHolder::work"),
            }),
            GFP_KERNEL,
        )?;
        let _ = crate::sys::queues::process().enqueue(holder.clone());
        assert!(wait_until(|| holder.held.load(Ordering::SeqCst)));
        // The client leaves: the server primary's `closed` callback (in
        // the primary's turn) waits for the sub-channel's turn.
        client.disable()?;
        assert!(wait_until(|| ends.freed.load(Ordering::SeqCst) == 1));
        assert!(holder.done.load(Ordering::SeqCst));
        assert!(!s_sub.is_enabled());
        assert!(wait_until(|| !c_sub.is_enabled()));
        c_sub.cleanup()?;
        server.disable()?;
        client.cleanup()?;
        server.cleanup()
    }
}

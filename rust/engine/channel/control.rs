// SPDX-License-Identifier: GPL-2.0

//! A channel's lifecycle: Enable, Disable, Pause, Start and Cleanup, the
//! events the bus and the other endpoint post, and the state callbacks
//! ([`StateCallbacks`]) the transitions deliver.
//!
//! Transitions are decided by the pure state machine in
//! [`crate::protocol::lifecycle`]; this file carries out its actions.

use kernel::{
    prelude::*,
    sync::Arc, //
};

use crate::{
    engine::datapath::IncomingPacket,
    protocol::lifecycle::{
        Action,
        Event,
        Role, //
    },
    sys::trace, //
};

use crate::engine::datapath::PEER_STALL_MS;
use crate::engine::types::{
    CloseReason,
    DataPathLimits,
    ExternalLimits, //
};

use super::{
    same_link,
    Link, //
};
use super::{
    Channel,
    Turn, //
};

/// State-change callbacks (KMCL `VMB_CHANNEL_STATE_CHANGE_CALLBACKS`).
///
/// All run in process context, one at a time per channel, holding the
/// channel's turn and no lock; see the module documentation for what they
/// must not call.
pub(crate) trait StateCallbacks: Send + Sync {
    /// `EvtChannelOpened`: the connection was made. An error abandons it.
    fn opened(&self, _channel: &Arc<Channel>) -> Result {
        Ok(())
    }
    /// `EvtChannelClosed`: the connection ended.
    fn closed(&self, _channel: &Arc<Channel>) {}
    /// `EvtChannelSuspend`: packets stop flowing.
    fn suspend(&self, _channel: &Arc<Channel>) {}
    /// `EvtChannelStarted`: packets are about to flow.
    fn started(&self, _channel: &Arc<Channel>) {}
    /// `EvtChannelPostStarted`: packets flow.
    fn post_started(&self, _channel: &Arc<Channel>) {}
    /// `EvtChannelPnpFailure` (client): the target was found but the
    /// connection failed with `status`; the channel is disabled again.
    fn pnp_failure(&self, _channel: &Arc<Channel>, _status: Error) {}
    /// Client primary channel (kmcl's own; Linux's sc-create callback):
    /// the server offered sub-channel `index` of this connection; open it
    /// with a client channel whose primary is this one. Process context.
    fn subchannel_offered(&self, _primary: &Arc<Channel>, _index: u16) {}
}

/// An event for a channel, from the bus or the other endpoint.
pub(crate) enum PeerEvent {
    /// A connection to the other endpoint was made.
    Connected(Arc<dyn Link>),
    /// The other endpoint left this connection.
    Closed(Arc<dyn Link>),
    /// Client: the other endpoint left this connection for now and will
    /// offer it again (a VMBus host's device across hibernation): the
    /// client closes and looks for the offer again.
    Suspended(Arc<dyn Link>),
    /// The driver failed an incoming packet: close the connection.
    Failed,
    /// Client: the offer was found but the connection failed (the server
    /// refused it): KMCL's PnpFailure.
    ConnectFailed(Error),
    /// Client primary channel: the server offered sub-channel `index` of
    /// this connection.
    SubchannelOffered(Arc<dyn Link>, u16),
}

impl Channel {
    /// The Disconnect of a saved server: the connection is parked (the
    /// client is told nothing), what the server had sent and not seen
    /// completed ends with `-ECANCELED`.
    pub(super) fn park(self: &Arc<Self>) {
        // `saved` stays until the Rescind that follows (the offer stays).
        let (save_id, conn) = {
            let mut ctl = self.control.lock();
            let (Some(save_id), Some(conn)) = (ctl.saved, ctl.connection.take()) else {
                return;
            };
            self.forget_link();
            self.note_instance(&ctl);
            (save_id, conn)
        };
        // What this server sent and did not see completed ends here; the
        // client's completions of it may still come, to the successor.
        let orphans = self
            .end_data_path()
            .map_or_else(KVec::new, |u| u.complete_all_ids(Err(ECANCELED)));
        // A server's connection is a loopback one: it parks.
        if conn.park(self, save_id, orphans) {
            trace::state_change(self.id, "disable", "park");
        }
    }

    /// The Disconnect of a connection: every packet still waiting for its
    /// completion is completed, with a defined failure status, and the
    /// channel leaves the connection.
    fn disconnect(self: &Arc<Self>) {
        if let Some(u) = self.end_data_path() {
            u.complete_all(Err(ENODEV));
        }
        let conn = {
            let mut ctl = self.control.lock();
            let conn = ctl.connection.take();
            self.forget_link();
            self.note_instance(&ctl);
            conn
        };
        if let Some(conn) = conn {
            conn.detach(self);
        }
    }

    /// Before a Disable ends the data path: external data this channel
    /// sent stays the other endpoint's until it completes the packet, so
    /// the other endpoint is told to close and its completions are
    /// awaited (the receive work reads them; data packets that can no
    /// longer be delivered are completed empty meanwhile), for
    /// [`PEER_STALL_MS`] at most. Then kmcl stops waiting: the
    /// transactions end with `-ENODEV` and the exposure is revoked
    /// (logged). Process context.
    fn await_exposed(self: &Arc<Self>) {
        let left = self.exposed.len();
        if left == 0 {
            return;
        }
        let conn = self.control.lock().connection.clone();
        let Some(conn) = conn else {
            return;
        };
        if let Some(dp) = Option::as_mut(&mut *self.data.lock()) {
            dp.begin_close();
        }
        conn.clone().announce_close(self);
        self.kick_rx();
        if !self.exposed.wait_drained(PEER_STALL_MS as u32) {
            conn.reclaim_peer(self);
            pr_warn!(
                "channel {}: the other endpoint still holds {} packet(s) with this channel's external data after {} ms; kmcl revokes its access and ends them with -ENODEV\n",
                self.id,
                self.exposed.len(),
                PEER_STALL_MS
            );
        }
    }

    /// The connection's data path ends (Disconnect, or a saved server
    /// parking it): its MMIO space, delayed signal, exposed external data
    /// and the GPADLs and mappings the driver's Closed left go; reads are
    /// committed (a successor reads on from there). A receive run that
    /// began before is waited for: no routine or packet callback of the
    /// connection runs after this returns, except those of what it returns
    /// (still in flight), which the caller completes. Process context.
    pub(super) fn end_data_path(&self) -> Option<crate::engine::datapath::Unfinished> {
        *self.mmio.lock() = (false, None);
        self.signal_timer.disarm();
        let unfinished = self.data.lock().take().map(|mut dp| {
            // The interrupt latency is the connection's.
            self.latency.store(0, core::sync::atomic::Ordering::Relaxed);
            dp.commit_reads();
            dp.take_unfinished()
        });
        self.wait_rx_idle();
        // The trim of the send queue's kept buffers, which go with the data
        // path (after the receive work, which may arm it).
        self.trim_timer.disarm();
        // Packet objects completed from now on are freed.
        let spare = {
            let mut rx = self.rx.lock();
            (core::mem::take(&mut rx.pool), rx.reserve.take())
        };
        drop(spare);
        // Nothing is exposed any more, and no transfer-page set stays.
        self.exposed.clear();
        if self.control.lock().primary.is_none() {
            self.transfer_sets().clear();
        }
        let (left, what) = match self.role {
            Role::Client => (self.gpadl.delete_all(), "GPADL(s) not deleted"),
            Role::Server => (self.gpadl.unmap_all(), "GPADL mapping(s) not unmapped"),
        };
        if left > 0 {
            pr_warn!(
                "channel {}: {} {} in Closed; kmcl released them\n",
                self.id,
                left,
                what
            );
        }
        unfinished
    }

    /// Records `conn` as the connection the data path runs over.
    fn note_link(&self, conn: &Arc<dyn Link>) {
        let addr = Arc::as_ptr(conn).cast::<()>() as usize;
        self.link.store(addr, core::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the channel has a connection now. Any context, no lock.
    pub(crate) fn is_connected(&self) -> bool {
        self.link.load(core::sync::atomic::Ordering::Relaxed) != 0
    }

    /// No connection any more.
    fn forget_link(&self) {
        self.link.store(0, core::sync::atomic::Ordering::Relaxed);
        self.subchannel_index
            .store(0, core::sync::atomic::Ordering::Relaxed);
    }

    /// Whether `conn` is the connection the data path runs over. Any
    /// context.
    fn is_current_link(&self, conn: &Arc<dyn Link>) -> bool {
        let addr = Arc::as_ptr(conn).cast::<()>() as usize;
        self.link.load(core::sync::atomic::Ordering::Relaxed) == addr
    }

    /// Severs the data path: the other endpoint left, or the channel is
    /// closing while a state callback holds the turn. New packets are
    /// refused with `-ENODEV`; the receive work reads what the ring still
    /// holds (completions written before the other endpoint left keep
    /// their data), then completes every transaction left with `-ENODEV`,
    /// so that a synchronous request waiting in a state callback returns.
    /// Needs no turn. Any context.
    pub(crate) fn sever(self: &Arc<Self>) {
        let severed = match Option::as_mut(&mut *self.data.lock()) {
            Some(dp) if !dp.is_severed() => {
                dp.sever();
                true
            }
            _ => false,
        };
        if severed {
            trace::state_change(self.id, "sever", "sever");
            self.kick_rx();
        }
    }

    /// The transport closes the connection without waiting any longer (a
    /// bounded wait on the driver expired): the data path ends now and
    /// every transaction left ends with `-ENODEV`; the control work
    /// delivers Suspend and Closed when the driver lets it. Process
    /// context.
    pub(crate) fn abandon_data_path(self: &Arc<Self>) {
        if let Some(u) = self.end_data_path() {
            u.complete_all(Err(ENODEV));
        }
    }

    /// After a restored server's Opened: hands each saved packet to the
    /// driver (`EvtVmbChannelRestorePacket`); one it does not take is
    /// completed with an empty payload.
    pub(super) fn hand_over_restored(self: &Arc<Self>) {
        let Some(restoring) = self.control.lock().restoring.take() else {
            return;
        };
        let callbacks = self.rx.lock().callbacks.clone();
        for lib in restoring.packets.iter() {
            let driver_state = super::save::packet_of(lib)
                .map(|r| r.driver_state)
                .unwrap_or(&[]);
            let taken = callbacks.as_ref().map_or(Err(EOPNOTSUPP), |cb| {
                cb.restore_packet(self, lib, driver_state)
            });
            if taken.is_err() {
                // Completed (empty) when dropped.
                match self.restore_incoming(lib) {
                    Ok(b) => drop(IncomingPacket::from_box(b)),
                    Err(e) => pr_err!("channel {}: a saved packet is lost: {:?}\n", self.id, e),
                }
            }
        }
    }

    /// A client closing with GPADLs the server has mapped tells the server
    /// at once, so that the server's Closed can unmap them while the
    /// client's Closed deletes them (DeleteGpadl waits for the unmap).
    pub(super) fn announce_close_if_mapped(self: &Arc<Self>) {
        if self.role == Role::Client && self.gpadl.any_mapped() {
            let conn = self.control.lock().connection.clone();
            if let Some(conn) = conn {
                conn.announce_close(self);
            }
        }
    }

    /// Whether the channel is enabled.
    pub(crate) fn is_enabled(&self) -> bool {
        self.control.lock().lifecycle.is_enabled()
    }

    #[cfg(kmcl_kunit)]
    /// Whether packets flow (enabled, connected, not paused).
    pub(crate) fn is_running(&self) -> bool {
        self.control.lock().lifecycle.is_running()
    }

    /// KMCL `VmbChannelEnable`: a server offers the channel, a client looks
    /// for its target offer and opens it when it exists. Returns without
    /// waiting for the other endpoint.
    pub(crate) fn enable(self: &Arc<Self>) -> Result {
        self.transition(Event::Enable)
    }

    /// KMCL `VmbChannelDisable`: closes (client) or rescinds (server), and
    /// returns when the channel is torn down.
    pub(crate) fn disable(self: &Arc<Self>) -> Result {
        self.transition(Event::Disable)
    }

    /// KMCL `VmbChannelPause`.
    pub(crate) fn pause(self: &Arc<Self>) -> Result {
        self.transition(Event::Pause)
    }

    /// KMCL `VmbChannelStart`.
    pub(crate) fn start(self: &Arc<Self>) -> Result {
        self.transition(Event::Start)
    }

    /// KMCL `VmbChannelCleanup`: releases a disabled channel, and with it
    /// the driver's callbacks (which may hold references back to it).
    pub(crate) fn cleanup(self: Arc<Self>) -> Result {
        let callbacks = {
            let mut ctl = self.lock_control()?;
            if !ctl.lifecycle.accepts_init() {
                return Err(EBUSY);
            }
            ctl.callbacks.take()
        };
        let packet_callbacks = self.rx.lock().callbacks.take();
        // A signal (or trim) armed by a send that raced with the
        // disconnect.
        self.signal_timer.disarm();
        self.trim_timer.disarm();
        // Dropped without locks: their drop may drop the last reference.
        drop((callbacks, packet_callbacks));
        Ok(())
    }

    /// Queues an event for this channel's control work.
    pub(crate) fn post(self: &Arc<Self>, event: PeerEvent) -> Result {
        self.reserve_event()?;
        self.post_reserved(event);
        Ok(())
    }

    /// Makes room for one more event, so that [`Self::post_reserved`]
    /// cannot fail. Any context.
    pub(crate) fn reserve_event(&self) -> Result {
        self.events.lock().reserve(1, GFP_ATOMIC)?;
        Ok(())
    }

    /// Queues an event after [`Self::reserve_event`]. The other endpoint
    /// leaving this channel's connection severs the data path at once
    /// ([`Self::sever`]); the rest waits for the control work.
    pub(crate) fn post_reserved(self: &Arc<Self>, event: PeerEvent) {
        if let PeerEvent::Closed(conn) | PeerEvent::Suspended(conn) = &event {
            if self.is_current_link(conn) {
                self.sever();
            }
        }
        if self.events.lock().push_within_capacity(event).is_err() {
            pr_err!("channel event lost: no room reserved\n");
        }
        // Fails only when the work is already queued, and then it will
        // drain this event too.
        let _ = crate::sys::queues::process()
            .enqueue::<Arc<Self>, { super::CONTROL_WORK }>(self.clone());
    }

    /// Stops delivery and closes the connection (Suspend and Closed on both
    /// sides, through the control work): after PacketFail, or when the
    /// incoming ring is corrupt.
    pub(super) fn stop_and_close(self: &Arc<Self>, why: CloseReason) {
        trace::channel_failed(self.id, why.name());
        self.halted
            .store(true, core::sync::atomic::Ordering::Relaxed);
        {
            let mut rx = self.rx.lock();
            rx.enabled = false;
            rx.failures += 1;
            rx.last_failure = Some(why);
        }
        self.sever();
        if self.post(PeerEvent::Failed).is_err() {
            pr_err!("out of memory closing a failed channel\n");
        }
    }

    pub(super) fn handle_events(self: &Arc<Self>) {
        loop {
            let event = {
                let mut events = self.events.lock();
                if events.is_empty() {
                    return;
                }
                events.remove(0)
            };
            let Ok(event) = event else { return };
            // The control work is never one of the channel's callbacks.
            let Ok(turn) = self.take_turn() else {
                return;
            };
            match event {
                PeerEvent::Connected(conn) => self.connected(&turn, conn),
                PeerEvent::Failed => {
                    self.announce_close_if_mapped();
                    let actions = self.control.lock().lifecycle.apply(Event::PeerClosed);
                    if let Ok(actions) = actions {
                        self.execute(&turn, Event::PeerClosed, actions.as_slice());
                    }
                }
                PeerEvent::ConnectFailed(e) => {
                    let disabled = {
                        let mut ctl = self.control.lock();
                        // Still waiting for this connection: give up on it.
                        let waiting = ctl.lifecycle.is_enabled() && !ctl.lifecycle.is_connected();
                        if waiting {
                            ctl.lifecycle.apply(Event::Disable).ok()
                        } else {
                            None
                        }
                    };
                    let Some(actions) = disabled else {
                        continue;
                    };
                    self.execute(&turn, Event::Disable, actions.as_slice());
                    trace::state_change(self.id, "connect_failed", "pnp_failure");
                    let callbacks = self.control.lock().callbacks.clone();
                    if let Some(cb) = callbacks {
                        cb.pnp_failure(self, e);
                    }
                }
                PeerEvent::SubchannelOffered(conn, index) => {
                    // Only while connected over the connection it was
                    // offered on.
                    let callbacks = {
                        let ctl = self.control.lock();
                        let current = ctl.connection.as_ref().is_some_and(|c| same_link(c, &conn));
                        ctl.callbacks.clone().filter(|_| current)
                    };
                    if let Some(cb) = callbacks {
                        trace::state_change(self.id, "connected", "subchannel_offered");
                        cb.subchannel_offered(self, index);
                    }
                }
                PeerEvent::Closed(conn) => self.peer_left(&turn, &conn, Event::PeerClosed),
                PeerEvent::Suspended(conn) => self.peer_left(&turn, &conn, Event::PeerSuspended),
            }
        }
    }

    /// A connection to the other endpoint was made: the data path is set
    /// up and `Opened` (then, if the channel runs, `Started` and
    /// `PostStarted`) delivered.
    fn connected(self: &Arc<Self>, turn: &Turn<'_>, conn: Arc<dyn Link>) {
        let limits = {
            let ctl = self.control.lock();
            let mut next = ctl.lifecycle;
            next.apply(Event::Connected).ok().map(|_| DataPathLimits {
                max_packet: ctl.settings.max_packet_size as usize,
                context_size: ctl.settings.client_context_size as usize,
                max_external: ExternalLimits {
                    ranges: ctl.settings.max_external_ranges,
                    bytes: u64::from(ctl.settings.max_external_bytes),
                },
            })
        };
        let Some(limits) = limits else {
            // Disabled meanwhile: leave the connection at once.
            conn.detach(self);
            return;
        };
        // The rings are usable from Opened on (Started may already queue
        // sends). For the host, this opens the device's channel.
        match conn.clone().data_path(self, limits) {
            Ok(dp) => {
                // Without memory for it, packet objects are freed instead
                // of kept.
                let pool = KVec::with_capacity(crate::engine::datapath::POOL_SIZE, GFP_KERNEL)
                    .unwrap_or_default();
                self.rx.lock().pool = pool;
                *self.data.lock() = Some(dp);
                *self.mmio.lock() = (true, conn.mmio_space());
            }
            Err(e) => {
                pr_err!("channel {}: cannot open the connection: {:?}\n", self.id, e);
                conn.detach(self);
                // A client gives up (PnpFailure); a server keeps its offer
                // up for the next client.
                if self.role == Role::Client && self.post(PeerEvent::ConnectFailed(e)).is_err() {
                    pr_err!(
                        "channel {}: out of memory reporting a failed open\n",
                        self.id
                    );
                }
                return;
            }
        }
        let actions = {
            let mut ctl = self.control.lock();
            // Cannot fail: nothing changed the lifecycle (the turn is ours).
            let Ok(actions) = ctl.lifecycle.apply(Event::Connected) else {
                return;
            };
            ctl.connection = Some(conn.clone());
            self.note_link(&conn);
            self.subchannel_index.store(
                u32::from(conn.subchannel_index()),
                core::sync::atomic::Ordering::Relaxed,
            );
            self.note_instance(&ctl);
            actions
        };
        self.execute(turn, Event::Connected, actions.as_slice());
        if self.role == Role::Server && self.control.lock().lifecycle.is_connected() {
            self.hand_over_restored();
        }
    }

    pub(super) fn transition(self: &Arc<Self>, event: Event) -> Result {
        // Disable while another task has the turn: a state callback may be
        // waiting on the other endpoint (a synchronous request); severing
        // the data path makes it return.
        let turn = self.take_turn_or(|| {
            if event == Event::Disable {
                self.sever();
            }
        })?;
        let (actions, waited_for) = {
            let mut ctl = self.control.lock();
            let before = ctl.lifecycle;
            let actions = ctl.lifecycle.apply(event).map_err(|_| EBUSY)?;
            // Offer and Connect can fail (duplicate offer, no memory); they
            // come first, so a failure leaves nothing half done.
            for action in actions.as_slice() {
                let res = match action {
                    Action::Offer => {
                        let restored = ctl.restoring.as_ref().and_then(|r| r.complete_save());
                        match self
                            .bus()
                            .offer(self, &ctl.settings, restored, ctl.primary.as_ref())
                        {
                            Ok(adopted) => {
                                if restored.is_some() && !adopted {
                                    pr_warn!(
                                        "channel {}: no parked connection for the restored save; its packets are dropped\n",
                                        self.id
                                    );
                                    ctl.restoring = None;
                                }
                                Ok(())
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Action::Connect => self.bus().seek(self, &ctl.settings, ctl.primary.as_ref()),
                    _ => continue,
                };
                if let Err(e) = res {
                    ctl.lifecycle = before;
                    return Err(e);
                }
            }
            let waited_for =
                if event == Event::Disable && self.role == Role::Server && ctl.saved.is_none() {
                    ctl.connection.clone()
                } else {
                    None
                };
            (actions, waited_for)
        };
        if event == Event::Disable {
            self.announce_close_if_mapped();
        }
        self.execute(&turn, event, actions.as_slice());
        if event == Event::Disable && self.role == Role::Client {
            self.bus().cancel_seek(self);
        }
        // A server's Disable returns once its client has left the
        // connection (KMCL: Disable waits until torn down).
        if let Some(conn) = waited_for {
            conn.wait_client_detached();
        }
        Ok(())
    }

    /// The other endpoint left connection `conn` (`event`: for good, or
    /// for now): if it is still the channel's, the channel closes.
    fn peer_left(self: &Arc<Self>, turn: &Turn<'_>, conn: &Arc<dyn Link>, event: Event) {
        let actions = {
            let mut ctl = self.control.lock();
            let current = ctl.connection.as_ref().is_some_and(|c| same_link(c, conn));
            if current {
                ctl.lifecycle.apply(event).ok()
            } else {
                None
            }
        };
        if let Some(actions) = actions {
            self.execute(turn, event, actions.as_slice());
        }
    }

    /// A client closed by a suspended connection looks for its offer
    /// again (the `Connect` after its Disconnect); if it cannot, it is
    /// disabled with PnpFailure, as a failed connect.
    fn seek_again(self: &Arc<Self>) {
        let res = {
            let ctl = self.control.lock();
            self.bus().seek(self, &ctl.settings, ctl.primary.as_ref())
        };
        if let Err(e) = res {
            pr_warn!(
                "channel {}: cannot look for its offer again: {:?}\n",
                self.id,
                e
            );
            if self.post(PeerEvent::ConnectFailed(e)).is_err() {
                pr_err!("channel {}: left enabled without an offer\n", self.id);
            }
        }
    }

    /// Carries out `actions`, which `event` caused, holding the turn (its
    /// guard is the witness) and no lock: state callbacks are called here.
    pub(super) fn execute(self: &Arc<Self>, _turn: &Turn<'_>, event: Event, actions: &[Action]) {
        let callbacks = self.control.lock().callbacks.clone();
        for action in actions {
            trace::state_change(self.id, event.name(), action.name());
            match action {
                // Done when the driver's call was applied, except after a
                // suspended connection.
                Action::Connect if event == Event::PeerSuspended => self.seek_again(),
                Action::Offer | Action::Connect => {}
                Action::Rescind => {
                    // A saved server's offer stays, with its parked
                    // connection.
                    let saved = self.control.lock().saved.take();
                    if saved.is_none() {
                        self.bus().rescind(self);
                    }
                }
                Action::Disconnect => {
                    let saved = self.control.lock().saved.is_some();
                    if saved {
                        self.park();
                    } else {
                        // The driver's Disable: the other endpoint is
                        // still there and may be using our external data.
                        if event == Event::Disable {
                            self.await_exposed();
                        }
                        self.disconnect();
                    }
                }
                Action::Opened => {
                    // The lifecycle awaits the result before anything else.
                    let ok = callbacks.as_ref().map_or(Ok(()), |cb| cb.opened(self));
                    let conn = self.control.lock().connection.clone();
                    let result = match ok {
                        Ok(()) => Event::OpenedOk,
                        Err(e) => {
                            if let Some(conn) = &conn {
                                conn.refuse(e);
                            }
                            Event::OpenedFailed
                        }
                    };
                    let next = self.control.lock().lifecycle.apply(result);
                    if let Ok(next) = next {
                        // A server that accepted the connection lets the
                        // client in before its own Started and PostStarted,
                        // which may wait for the client's answers.
                        if result == Event::OpenedOk && self.role == Role::Server {
                            if let Some(conn) = conn {
                                conn.tell_client();
                            }
                        }
                        self.execute(_turn, result, next.as_slice());
                    }
                }
                Action::Started => {
                    if let Some(cb) = &callbacks {
                        cb.started(self);
                    }
                }
                Action::PostStarted => {
                    if let Some(cb) = &callbacks {
                        cb.post_started(self);
                    }
                }
                Action::Suspend => {
                    if let Some(cb) = &callbacks {
                        cb.suspend(self);
                    }
                }
                Action::Closed => {
                    if let Some(cb) = &callbacks {
                        cb.closed(self);
                    }
                }
                Action::EnableIncoming => {
                    self.halted
                        .store(false, core::sync::atomic::Ordering::Relaxed);
                    self.rx.lock().enabled = true;
                    self.kick_rx();
                }
                Action::StopIncoming => self.stop_incoming(),
                Action::DrainIncoming => {
                    // KMCL blocks until the driver completed every packet.
                    let mut rx = self.rx.lock();
                    rx.waiters += 1;
                    while rx.outstanding > 0 {
                        self.rx_changed.wait(&mut rx);
                    }
                    rx.waiters -= 1;
                }
            }
        }
    }
}

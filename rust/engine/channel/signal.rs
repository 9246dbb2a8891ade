// SPDX-License-Identifier: GPL-2.0

//! Signalling the other endpoint (with KMCL's interrupt latency), and
//! being signalled: queueing the receive work on the right CPU.

use kernel::{
    prelude::*,
    sync::Arc, //
};

use crate::engine::datapath::Peer;

use super::Channel;

/// How often a channel signalled the other endpoint and was signalled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SignalCounts {
    pub(crate) sent: u64,
    pub(crate) received: u64,
}

impl Channel {
    /// Signals `peer` (VMBus's interrupt to the other endpoint): its
    /// receive work looks at the rings. Takes the caller's reference of
    /// the peer, which a loopback peer hands on to its receive work.
    #[inline]
    pub(crate) fn signal(self: &Arc<Self>, peer: Peer) {
        use core::sync::atomic::Ordering::Relaxed;
        let latency = self.latency.load(Relaxed);
        if latency > 0 && peer.delays_signals() {
            // 100 ns units to microseconds, rounded up. (Refused only
            // while the connection ends: its disarm cancels the timer.)
            let arming = self.signal_timer.arm(self, latency.div_ceil(10));
            if arming == crate::sys::queues::Arming::AlreadyArmed {
                self.signals_coalesced.fetch_add(1, Relaxed);
            }
            return;
        }
        self.signal_now(peer);
    }

    #[inline]
    pub(super) fn signal_now(&self, peer: Peer) {
        self.signals_sent
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        peer.signal();
    }

    /// KMCL `VmbChannelSetInterruptLatency`, for the current connection
    /// (between Opened and Closed; `-ENOTCONN` otherwise): from now on,
    /// signals to a loopback endpoint are delayed by `latency` (100 ns
    /// units, rounded up to the timer tick) and the ones made meanwhile
    /// merged into one, 0 signalling at once; a VMBus host's channel
    /// signals directly for 0 and through its monitor page (at the host's
    /// latency) otherwise. Returns the latency set before on this
    /// connection (0 at first). Any context.
    pub(crate) fn set_interrupt_latency(&self, latency: u16) -> Result<u16> {
        let data = self.data.lock();
        let dp = data.as_ref().ok_or(ENOTCONN)?;
        dp.peer().set_signal_latency(latency);
        let old = self
            .latency
            .swap(u32::from(latency), core::sync::atomic::Ordering::Relaxed);
        Ok(u16::try_from(old).unwrap_or(u16::MAX))
    }

    /// Signals merged by the interrupt latency so far.
    pub(crate) fn signals_coalesced(&self) -> u64 {
        self.signals_coalesced
            .load(core::sync::atomic::Ordering::Relaxed)
    }

    /// The other endpoint signalled this channel (`self` is the
    /// signaller's reference, handed on to the receive work).
    #[inline]
    pub(crate) fn signalled(self: Arc<Self>) {
        self.signals_received
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        self.kick();
    }

    /// How often this channel signalled and was signalled.
    pub(crate) fn signals(&self) -> SignalCounts {
        use core::sync::atomic::Ordering::Relaxed;
        SignalCounts {
            sent: self.signals_sent.load(Relaxed),
            received: self.signals_received.load(Relaxed),
        }
    }

    /// Makes the receive work look at the rings.
    pub(crate) fn kick_rx(self: &Arc<Self>) {
        self.clone().kick();
    }

    /// [`Self::kick_rx`] with a reference of the caller's, which the
    /// queued work takes.
    #[inline]
    fn kick(self: Arc<Self>) {
        // Fails only when the work is already queued.
        use core::sync::atomic::Ordering::Relaxed;
        if self.at_passive.load(Relaxed) {
            let _ = crate::sys::queues::process()
                .enqueue::<Arc<Self>, { super::RECEIVE_TASK_WORK }>(self);
        } else {
            let cpu = self.target_cpu.load(Relaxed);
            let _ =
                crate::sys::queues::enqueue_bh_on::<Arc<Self>, { super::RECEIVE_WORK }>(cpu, self);
        }
    }
}

/// The delayed signal of a channel with an interrupt latency.
impl crate::sys::queues::TimerFired<{ super::SIGNAL_TIMER }> for Channel {
    fn timer(&self) -> &crate::sys::queues::Timer<Self, { super::SIGNAL_TIMER }> {
        &self.signal_timer
    }

    fn fired(this: Arc<Self>) {
        let peer = this.data.lock().as_ref().map(|dp| dp.peer().clone());
        if let Some(peer) = peer {
            this.signal_now(peer);
        }
    }
}

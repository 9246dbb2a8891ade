// SPDX-License-Identifier: GPL-2.0

//! A channel's state at one moment, for people debugging drivers (kmcl's
//! debugfs files print it).
//!
//! Taking a snapshot holds each of the channel's locks only long enough to
//! copy numbers out; nothing on the data path waits for the reader.

use core::fmt;

use kernel::sync::Arc;

use super::{
    Channel,
    Settings,
    FRIENDLY_NAME_MAX, //
};
use super::{
    GpadlCounts,
    SignalCounts, //
};
use crate::engine::datapath::Counters;
use crate::engine::datapath::RingStates;
use crate::engine::types::{
    Guid,
    GuidText, //
};
use crate::protocol::{
    lifecycle::Role,
    ring::RingState, //
};

/// What [`Channel::snapshot`] copies out.
pub(crate) struct Snapshot {
    pub(crate) id: u32,
    pub(crate) role: Role,
    pub(crate) name: [u8; FRIENDLY_NAME_MAX],
    pub(crate) name_len: usize,
    pub(crate) enabled: bool,
    pub(crate) connected: bool,
    pub(crate) running: bool,
    pub(crate) settings: Settings,
    pub(crate) instance: Guid,
    pub(crate) counters: Counters,
    /// Sends waiting for their completion.
    pub(crate) awaiting_completion: usize,
    /// Sends queued for room in the outgoing ring.
    pub(crate) queued: usize,
    /// Bytes of send-queue buffers kept for reuse.
    pub(crate) kept_send_bytes: usize,
    /// Incoming packets the driver holds uncompleted.
    pub(crate) held: u32,
    pub(crate) quota: u32,
    pub(crate) quota_hits: u64,
    /// Times the receive work used its budget and yielded.
    pub(crate) budget_hits: u64,
    /// Packets deferred to process context, in total.
    pub(crate) deferrals: u64,
    /// Packets completed during their delivery, in total.
    pub(crate) handed_back: u64,
    /// Times kmcl closed the channel because of a failure.
    pub(crate) failures: u64,
    /// Why kmcl last closed the channel because of a failure.
    pub(crate) last_failure: Option<crate::engine::types::CloseReason>,
    /// Transfer-page sets this endpoint registered.
    pub(crate) transfer_sets: usize,
    /// Times an atomic allocation failed while receiving (the packet
    /// waited for the replenish work).
    pub(crate) no_memory: u64,
    pub(crate) deferred: usize,
    /// GPADLs: (created by this client, of them mapped by the server,
    /// mapped by this server).
    pub(crate) gpadls: GpadlCounts,
    /// Transactions whose external data this endpoint exposes.
    pub(crate) exposed: usize,
    pub(crate) at_passive: bool,
    /// A sub-channel's primary channel (its id) and index (0 while not
    /// connected).
    pub(crate) subchannel: Option<(u32, u16)>,
    /// Signals (sent, received).
    pub(crate) signals: SignalCounts,
    /// Signals merged by the interrupt latency (0 when none is set).
    pub(crate) signals_merged: u64,
    /// (outgoing, incoming) ring control values, when connected.
    pub(crate) rings: Option<RingStates>,
}

fn ring_line(f: &mut fmt::Formatter<'_>, which: &str, r: &RingState) -> fmt::Result {
    writeln!(
        f,
        "{} ring: size {} write_index {} read_index {} used {} interrupt_mask {} pending_send_sz {}",
        which, r.size, r.write_index, r.read_index, r.used, r.interrupt_mask, r.pending_send_size
    )
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?");
        writeln!(f, "id: {}", self.id)?;
        writeln!(f, "name: {}", name)?;
        let role = match self.role {
            Role::Client => "client",
            Role::Server => "server",
        };
        writeln!(f, "role: {}", role)?;
        writeln!(f, "transport: loopback")?;
        let state = match (self.enabled, self.connected, self.running) {
            (false, false, _) => "disabled",
            (true, false, _) => "enabled, not connected",
            (_, true, true) => "connected, running",
            (_, true, false) => "connected, paused",
        };
        writeln!(f, "state: {}", state)?;
        writeln!(
            f,
            "interface type: {}",
            GuidText(&self.settings.interface_type)
        )?;
        writeln!(f, "interface instance: {}", GuidText(&self.instance))?;
        writeln!(
            f,
            "max packet size: {}\nring pages: incoming {} outgoing {}",
            self.settings.max_packet_size,
            self.settings.incoming_pages,
            self.settings.outgoing_pages
        )?;
        writeln!(
            f,
            "incoming at passive: {}",
            if self.at_passive { "yes" } else { "no" }
        )?;
        let c = &self.counters;
        writeln!(
            f,
            "packets in: {}\npackets out: {}",
            c.packets_in, c.packets_out
        )?;
        writeln!(f, "bytes in: {}\nbytes out: {}", c.bytes_in, c.bytes_out)?;
        writeln!(
            f,
            "signals sent: {}\nsignals received: {}",
            self.signals.sent, self.signals.received
        )?;
        if self.signals_merged > 0 {
            writeln!(f, "signals merged: {}", self.signals_merged)?;
        }
        writeln!(f, "completions in: {}", c.completions_in)?;
        writeln!(f, "completions out: {}", c.completions_out)?;
        writeln!(f, "bad completions: {}", c.bad_completions)?;
        writeln!(
            f,
            "late completions (cancelled requests): {}",
            c.late_completions
        )?;
        writeln!(f, "ring full (sends queued): {}", c.ring_full)?;
        writeln!(
            f,
            "queued sends that allocated a buffer: {}",
            c.queue_allocations
        )?;
        writeln!(f, "ring errors: {}", c.ring_errors)?;
        writeln!(f, "sends awaiting completion: {}", self.awaiting_completion)?;
        writeln!(f, "sends queued now: {}", self.queued)?;
        writeln!(f, "send queue buffers kept: {} bytes", self.kept_send_bytes)?;
        writeln!(f, "incoming held by the driver: {}", self.held)?;
        writeln!(
            f,
            "transaction quota: {} (hits: {})",
            self.quota, self.quota_hits
        )?;
        writeln!(
            f,
            "receive budget hits: {} (budget {} packets)",
            self.budget_hits,
            super::RX_BUDGET
        )?;
        writeln!(
            f,
            "deferred to passive: {} (now: {})",
            self.deferrals, self.deferred
        )?;
        writeln!(f, "completed during delivery: {}", self.handed_back)?;
        writeln!(
            f,
            "failures (channel closed): {} (last: {})",
            self.failures,
            self.last_failure.map_or("none", |r| r.name())
        )?;
        writeln!(f, "transfer-page sets: {}", self.transfer_sets)?;
        if let Some((primary, index)) = self.subchannel {
            writeln!(f, "sub-channel {} of channel {}", index, primary)?;
        }
        writeln!(f, "receive out of memory (retried): {}", self.no_memory)?;
        writeln!(
            f,
            "gpadls: {} (mapped by the server: {}); mapped here: {}",
            self.gpadls.gpadls, self.gpadls.mapped_by_server, self.gpadls.mappings
        )?;
        writeln!(
            f,
            "transactions with external data exposed: {}",
            self.exposed
        )?;
        match &self.rings {
            Some(rings) => {
                ring_line(f, "outgoing", &rings.outgoing)?;
                ring_line(f, "incoming", &rings.incoming)
            }
            None => writeln!(f, "rings: none (not connected)"),
        }
    }
}

impl Channel {
    /// The channel's state and counters now.
    pub(crate) fn snapshot(self: &Arc<Self>) -> Snapshot {
        let mut s = self.snapshot_control();
        self.snapshot_data(&mut s);
        s
    }
}

impl Channel {
    /// The control-side part of a [`Snapshot`].
    pub(crate) fn snapshot_control(self: &Arc<Self>) -> Snapshot {
        let (settings, name, name_len, enabled, connected, running) = {
            let ctl = self.control.lock();
            (
                ctl.settings,
                ctl.friendly_name,
                ctl.friendly_name_len,
                ctl.lifecycle.is_enabled(),
                ctl.lifecycle.is_connected(),
                ctl.lifecycle.is_running(),
            )
        };
        let (
            held,
            quota,
            quota_hits,
            budget_hits,
            (deferrals, handed_back),
            (failures, no_memory),
            last_failure,
        ) = {
            let rx = self.rx.lock();
            (
                rx.outstanding,
                rx.quota,
                rx.quota_hits,
                rx.budget_hits,
                (rx.deferrals, rx.handed_back),
                (rx.failures, rx.no_memory),
                rx.last_failure,
            )
        };
        // Each lock on its own: a guard inside the struct expression would
        // be held to its end (the GPADL table's is a mutex).
        let gpadls = self.gpadl.counts();
        let deferred = self.deferred.lock().len();
        let exposed = self.exposed.len();
        Snapshot {
            id: self.id,
            role: self.role,
            name,
            name_len,
            enabled,
            connected,
            running,
            settings,
            instance: self.interface_instance(),
            counters: Counters::default(),
            awaiting_completion: 0,
            queued: 0,
            kept_send_bytes: 0,
            held,
            quota,
            quota_hits,
            budget_hits,
            deferrals,
            handed_back,
            failures,
            last_failure,
            transfer_sets: self.transfer_sets().count(),
            no_memory,
            deferred,
            gpadls,
            exposed,
            at_passive: self.at_passive.load(core::sync::atomic::Ordering::Relaxed),
            subchannel: self.primary().map(|p| (p.id(), self.subchannel_index())),
            signals: self.signals(),
            signals_merged: self.signals_coalesced(),
            rings: None,
        }
    }

    /// Fills in the data-path part of a snapshot.
    pub(crate) fn snapshot_data(&self, s: &mut Snapshot) {
        if let Some(dp) = self.data.lock().as_ref() {
            s.counters = dp.counters;
            let state = dp.snapshot();
            s.awaiting_completion = state.awaiting_completion;
            s.queued = state.queued;
            s.kept_send_bytes = state.kept_send_bytes;
            s.rings = Some(state.rings);
        }
    }

    #[cfg(kmcl_kunit)]
    /// The data path's counters (zero when not connected).
    pub(crate) fn counters(&self) -> Counters {
        self.data
            .lock()
            .as_ref()
            .map_or(Counters::default(), |dp| dp.counters)
    }
}

// SPDX-License-Identifier: GPL-2.0

//! KMCL channel objects and their lifecycle.
//!
//! # Locking
//!
//! - `control` (a mutex) serialises lifecycle transitions and is held while
//!   a transition delivers state callbacks. Callbacks therefore must not call
//!   [`Channel::enable`], [`Channel::disable`], [`Channel::pause`],
//!   [`Channel::start`] or the init setters of the same channel (KMCL forbids
//!   Start and Pause from state callbacks too).
//! - `events` (an IRQ-safe spinlock, so that any context can post) holds
//!   events from the loopback bus, the other endpoint and PacketFail; the
//!   channel's control work drains it in process context.
//! - Lock order: a channel's `control`, then the bus, then a connection's
//!   state, then any channel's `events`. Nothing takes a second channel's
//!   `control` while holding one: the other endpoint is only ever told
//!   things through its `events`.

use kernel::{
    prelude::*,
    sync::{
        new_condvar,
        new_mutex,
        new_spinlock,
        new_spinlock_irq,
        Arc,
        CondVar,
        CondVarTimeoutResult,
        Mutex,
        SpinLock,
        SpinLockIrq, //
    },
    workqueue::{
        impl_has_work,
        new_work,
        Work,
        WorkItem, //
    },
};

use super::datapath::{
    Counters,
    DataPath,
    Incoming,
    IncomingPacket,
    PacketCallbacks,
    Peer,
    Received,
    Routine,
    SendCompletion, //
};
use super::link::Link;
use super::loopback::{
    Connection,
    LoopbackBus, //
};
use crate::protocol::{
    lifecycle::{
        Action,
        Event,
        Lifecycle,
        Role, //
    },
    packet::PacketType,
};
use crate::trace;

/// A VMBus interface GUID, in wire byte order.
pub type Guid = [u8; 16];

/// State-change callbacks (KMCL `VMB_CHANNEL_STATE_CHANGE_CALLBACKS`).
///
/// All run in process context with the channel's control lock held; see the
/// module documentation for what they must not call.
pub trait StateCallbacks: Send + Sync {
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
}

/// Init-time settings (KMCL's `VmbChannelInitSet*`), changeable only while
/// the channel is disabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Interface type GUID: offered (server) or looked for (client).
    pub interface_type: Guid,
    /// Interface instance GUID; for a client all zeroes means "any".
    pub interface_instance: Guid,
    /// Largest packet payload the driver will send (`MaximumPacketSize`).
    pub max_packet_size: u32,
    /// Client: pages of the ring the client receives on.
    pub incoming_pages: u32,
    /// Client: pages of the ring the client sends on.
    pub outgoing_pages: u32,
    /// Bytes of zeroed driver context given with each incoming packet
    /// (`ClientContextSize`).
    pub client_context_size: u32,
    /// Most bytes of external data one packet may describe
    /// (`MaximumExternalData`; 0: none).
    pub max_external_bytes: u32,
    /// Most ranges (chain length) one packet may describe.
    pub max_external_ranges: u32,
    /// Client: which VMBus the offer is looked for on.
    pub transport: Transport,
    /// Server: MMIO space for the device, in MiB (required, optional).
    pub mmio_megabytes: (u16, u16),
    /// Server: the VTL whose clients see the offer (KMCL target VTL).
    /// Client: the VTL it runs in (the kernel's; 0 unless a test says
    /// otherwise).
    pub vtl: u8,
}

/// Where a client channel looks for its offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// On the loopback bus if a server offers the interface there when the
    /// client is enabled, or if no VMBus host exists; else on the host.
    Auto,
    /// On kmcl's loopback VMBus only.
    Loopback,
    /// On the VMBus host (Hyper-V) only, through hv_vmbus.
    Host,
}

/// The highest VTL (Hyper-V's VTLs are numbered 0 to 15).
pub const MAX_VTL: u8 = 15;

/// Longest friendly name, in bytes.
pub const FRIENDLY_NAME_MAX: usize = 64;

/// `VMBUS_CHANNEL_INIT_FLAG_IS_PIPE`: pipe mode (not supported).
pub const CHANNEL_FLAG_IS_PIPE: u32 = 0x1;
/// All server flags KMCL defines (`VMBUS_SERVER_CHANNEL_INIT_FLAG_*`);
/// kmcl records them, none changes loopback behaviour.
pub const SERVER_FLAGS_KNOWN: u32 = 0x1f;

impl Settings {
    const fn new() -> Self {
        Self {
            interface_type: [0; 16],
            interface_instance: [0; 16],
            max_packet_size: 4096,
            incoming_pages: 4,
            outgoing_pages: 4,
            client_context_size: 0,
            max_external_bytes: 0,
            max_external_ranges: 0,
            transport: Transport::Auto,
            mmio_megabytes: (0, 0),
            vtl: 0,
        }
    }
}

/// What the control lock protects.
struct Control {
    lifecycle: Lifecycle,
    settings: Settings,
    friendly_name: [u8; FRIENDLY_NAME_MAX],
    friendly_name_len: usize,
    server_flags: u32,
    callbacks: Option<Arc<dyn StateCallbacks>>,
    connection: Option<Link>,
    /// A save being handed out (between SaveBegin and SaveEnd).
    saving: Option<super::save::Saving>,
    /// Saved (SaveEnd done): Disable parks the connection under this id.
    saved: Option<u32>,
    /// A restore being fed (server, before Enable).
    restoring: Option<super::save::Restoring>,
}

/// An event for a channel, from the bus or the other endpoint.
pub(crate) enum PeerEvent {
    /// A connection to the other endpoint was made.
    Connected(Link),
    /// The other endpoint left this connection.
    Closed(Link),
    /// The driver failed an incoming packet: close the connection.
    Failed,
    /// Client: the offer was found but the connection failed (the server
    /// refused it): KMCL's PnpFailure.
    ConnectFailed(Error),
}

/// Receive-side state, shared by the receive work (softirq) and the
/// control path (process context).
struct RxState {
    /// The lifecycle allows delivering packets.
    enabled: bool,
    /// The receive work is delivering packets right now.
    active: bool,
    /// Packets given to the driver and not completed yet.
    outstanding: u32,
    /// Most packets the driver may hold uncompleted (0: no limit).
    quota: u32,
    /// Delivery stopped at the quota; the next completion resumes it.
    quota_blocked: bool,
    /// Times delivery stopped at the quota.
    quota_hits: u64,
    /// Times the receive work used its budget and yielded.
    budget_hits: u64,
    /// Packets the driver deferred to process context.
    deferrals: u64,
    /// Packets completed during their delivery, whose objects went
    /// straight back to the receive work ([`super::handoff`]).
    handed_back: u64,
    /// Times kmcl closed the channel because of a failure (PacketFail, a
    /// corrupt incoming ring).
    failures: u64,
    /// The deferral work is delivering packets right now.
    passive_active: bool,
    /// Threads waiting on `rx_changed` (nobody is woken when 0).
    waiters: u32,
    /// Completed incoming packet objects kept for reuse while connected
    /// (no capacity otherwise: they are freed). Their buffers stay
    /// allocated, so a warm data path allocates nothing per packet.
    pool: KVec<KBox<Incoming>>,
    callbacks: Option<Arc<dyn PacketCallbacks>>,
}

impl RxState {
    /// Settles what the receive work counted outstanding and the driver
    /// does not hold: `unused` objects reserved for a batch, and `caught`
    /// packets completed during their delivery.
    fn settle(&mut self, unused: u32, caught: u32) {
        self.outstanding = self.outstanding.saturating_sub(unused + caught);
        self.handed_back += u64::from(caught);
    }
}

/// A KMCL channel (`VMBCHANNEL`): one endpoint, client or server.
#[pin_data]
pub struct Channel {
    /// Names the channel in trace events and debugfs.
    id: u32,
    role: Role,
    /// The loopback bus (with its VMBus host) the channel is on; changed
    /// only while disabled ([`Self::set_bus`]).
    #[pin]
    bus: SpinLock<Arc<LoopbackBus>>,
    #[pin]
    control: Mutex<Control>,
    /// Posted from any context (PacketFail runs in softirq).
    #[pin]
    events: SpinLockIrq<KVec<PeerEvent>>,
    #[pin]
    work: Work<Channel, 0>,
    #[pin]
    data: SpinLockIrq<Option<DataPath>>,
    #[pin]
    rx: SpinLockIrq<RxState>,
    /// Signalled when the receive work stops or a packet is completed.
    #[pin]
    rx_changed: CondVar,
    #[pin]
    rx_work: Work<Channel, 1>,
    /// The receive work for channels that process incoming packets at
    /// passive: the same function on the system workqueue. A separate work
    /// item, so that each has one context (lockdep tracks work items).
    #[pin]
    rx_task_work: Work<Channel, 3>,
    /// Packets deferred to process context, oldest first.
    #[pin]
    deferred: SpinLockIrq<KVec<IncomingPacket>>,
    #[pin]
    passive_work: Work<Channel, 2>,
    /// The driver's pointer (KMCL `VmbChannelSetPointer`).
    pointer: core::sync::atomic::AtomicUsize,
    /// Deliver in process context (KMCL `PASSIVE_LEVEL`) instead of
    /// softirq; set only while disabled, read without a lock.
    at_passive: core::sync::atomic::AtomicBool,
    /// The CPU the receive work runs on when the channel is signalled
    /// ([`NO_TARGET_CPU`]: the signalling CPU); set only while disabled.
    target_cpu: core::sync::atomic::AtomicU32,
    /// Delivery stopped because the channel failed (PacketFail, a corrupt
    /// ring): packets of a batch already read are not delivered. Read
    /// without a lock; cleared when delivery is enabled again.
    halted: core::sync::atomic::AtomicBool,
    /// Times this channel signalled the other endpoint, and was signalled.
    signals_sent: core::sync::atomic::AtomicU64,
    signals_received: core::sync::atomic::AtomicU64,
    /// KMCL interrupt latency, in 100 ns: signals to a loopback endpoint
    /// are delayed by it, and those made meanwhile are merged (0: none).
    latency: core::sync::atomic::AtomicU32,
    /// A delayed signal is armed.
    signal_armed: core::sync::atomic::AtomicBool,
    /// Signals merged into an armed one.
    signals_coalesced: core::sync::atomic::AtomicU64,
    /// Fires the delayed signal.
    signal_timer: crate::queues::Timer<Channel>,
    /// GPADLs (client) and mappings of them (server).
    #[pin]
    gpadl: super::gpadl::Gpadls,
    /// Someone is running the routines of written queued packets.
    running_written: core::sync::atomic::AtomicBool,
    /// The packet the receive work is delivering, which a completion
    /// during the delivery gives straight back to it (no lock).
    pub(crate) catch: super::handoff::Catch<super::datapath::Incoming>,
    /// (connected, MMIO space): set before Opened, cleared at disconnect.
    #[pin]
    mmio: SpinLockIrq<(bool, Option<(usize, usize)>)>,
    /// External data this endpoint exposes, by transaction id, until the
    /// transaction's completion: what the other endpoint may access.
    #[pin]
    exposed: SpinLockIrq<KVec<(u64, Arc<crate::shmem::GpadlPages>)>>,
}

impl_has_work! {
    impl HasWork<Self, 0> for Channel { self.work }
    impl HasWork<Self, 1> for Channel { self.rx_work }
    impl HasWork<Self, 2> for Channel { self.passive_work }
    impl HasWork<Self, 3> for Channel { self.rx_task_work }
}

/// The control work: lifecycle events from the bus and the other endpoint.
impl WorkItem<0> for Channel {
    type Pointer = Arc<Channel>;

    fn run(this: Arc<Channel>) {
        this.handle_events();
    }
}

/// The receive work, on the BH workqueue (softirq context); channels that
/// process incoming packets at passive use work item 3 instead.
impl WorkItem<1> for Channel {
    type Pointer = Arc<Channel>;

    fn run(this: Arc<Channel>) {
        this.receive();
    }
}

/// The receive work in process context, for channels set to process
/// incoming packets at passive.
impl WorkItem<3> for Channel {
    type Pointer = Arc<Channel>;

    fn run(this: Arc<Channel>) {
        this.receive();
    }
}

/// The deferral work (process context): redelivers deferred packets.
impl WorkItem<2> for Channel {
    type Pointer = Arc<Channel>;

    fn run(this: Arc<Channel>) {
        this.deliver_deferred();
    }
}

/// Channel ids, from 1 on.
static NEXT_ID: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(1);

/// Packets (data and completions) the receive work reads per run before it
/// yields to other work and is queued again (KMCL's DPC cycle limit).
pub const RX_BUDGET: u32 = 128;

/// No target processor: the receive work runs on the CPU that signalled.
pub const NO_TARGET_CPU: u32 = u32::MAX;

/// Most packets the receive work reads under one hold of the data lock.
const RX_BATCH: usize = 16;

impl Channel {
    /// The channel's id: unique while kmcl is loaded; names the channel in
    /// trace events and in its debugfs directory.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Allocates a disabled channel on `bus` (KMCL `VmbChannelAllocate`).
    pub fn new(role: Role, bus: Arc<LoopbackBus>) -> Result<Arc<Self>> {
        let lifecycle = Lifecycle::new(role);
        Arc::pin_init(
            try_pin_init!(Channel {
                id: NEXT_ID.fetch_add(1, core::sync::atomic::Ordering::Relaxed),
                role,
                bus <- new_spinlock!(bus),
                control <- new_mutex!(Control {
                    lifecycle,
                    settings: Settings::new(),
                    friendly_name: [0; FRIENDLY_NAME_MAX],
                    friendly_name_len: 0,
                    server_flags: 0,
                    callbacks: None,
                    connection: None,
                    saving: None,
                    saved: None,
                    restoring: None,
                }),
                events <- new_spinlock_irq!(KVec::new()),
                work <- new_work!("kmcl::Channel::work"),
                data <- new_spinlock_irq!(None),
                rx <- new_spinlock_irq!(RxState {
                    enabled: false,
                    active: false,
                    outstanding: 0,
                    quota: 0,
                    quota_blocked: false,
                    quota_hits: 0,
                    budget_hits: 0,
                    deferrals: 0,
                    handed_back: 0,
                    failures: 0,
                    passive_active: false,
                    waiters: 0,
                    pool: KVec::new(),
                    callbacks: None,
                }),
                rx_task_work <- new_work!("kmcl::Channel::rx_task_work"),
                deferred <- new_spinlock_irq!(KVec::new()),
                passive_work <- new_work!("kmcl::Channel::passive_work"),
                pointer: core::sync::atomic::AtomicUsize::new(0),
                at_passive: core::sync::atomic::AtomicBool::new(false),
                halted: core::sync::atomic::AtomicBool::new(false),
                target_cpu: core::sync::atomic::AtomicU32::new(NO_TARGET_CPU),
                signals_sent: core::sync::atomic::AtomicU64::new(0),
                signals_received: core::sync::atomic::AtomicU64::new(0),
                latency: core::sync::atomic::AtomicU32::new(0),
                signal_armed: core::sync::atomic::AtomicBool::new(false),
                signals_coalesced: core::sync::atomic::AtomicU64::new(0),
                signal_timer: crate::queues::Timer::new()?,
                rx_changed <- new_condvar!(),
                rx_work <- new_work!("kmcl::Channel::rx_work"),
                gpadl <- super::gpadl::Gpadls::new(),
                exposed <- new_spinlock_irq!(KVec::new()),
                mmio <- new_spinlock_irq!((false, None)),
                running_written: core::sync::atomic::AtomicBool::new(false),
                catch: super::handoff::Catch::new(),
            }),
            GFP_KERNEL,
        )
    }

    /// The current connection, if any.
    pub(crate) fn connection(&self) -> Option<Arc<Connection>> {
        self.control
            .lock()
            .connection
            .as_ref()
            .and_then(|l| l.loopback().cloned())
    }

    /// Exposes `pages` to the other endpoint for transaction `tid`.
    pub(crate) fn expose(&self, tid: u64, pages: Arc<crate::shmem::GpadlPages>) -> Result {
        self.exposed.lock().push((tid, pages), GFP_ATOMIC)?;
        Ok(())
    }

    /// Ends the exposure for transaction `tid` (its completion came).
    pub(crate) fn unexpose(&self, tid: u64) {
        let gone = {
            let mut e = self.exposed.lock();
            e.iter()
                .position(|(t, _)| *t == tid)
                .and_then(|i| e.remove(i).ok())
        };
        drop(gone);
    }

    /// What this endpoint exposed for transaction `tid` (the other
    /// endpoint checks a GPA-direct packet against it).
    pub(crate) fn exposed(&self, tid: u64) -> Option<Arc<crate::shmem::GpadlPages>> {
        self.exposed
            .lock()
            .iter()
            .find(|(t, _)| *t == tid)
            .map(|(_, p)| p.clone())
    }

    /// KMCL `VmbPacketSend` with external data (`SendWithExternalMdl`,
    /// `SendWithExternalPfns`): `payload` in the ring and `pages` described
    /// by a GPA range list; the other endpoint gets the pages with the
    /// packet. A completion is always requested; `pages` must stay valid
    /// until `completion` runs.
    pub fn send_external(
        self: &Arc<Self>,
        payload: &[u8],
        pages: crate::shmem::GpadlPages,
        completion: impl Into<Routine>,
    ) -> Result {
        let pages = Arc::new(pages, GFP_ATOMIC)?;
        let kick = {
            let mut data = self.data.lock();
            let dp = Option::as_mut(&mut *data).ok_or(ENOTCONN)?;
            let sent = dp.send_external(self, payload, pages, completion.into(), true);
            let written = dp.has_written();
            drop(data);
            if written {
                self.run_written();
            }
            self.close_if_stalled(sent)?.kick
        };
        if let Some(peer) = kick {
            self.signal(&peer);
        }
        Ok(())
    }

    /// The channel's GPADL state.
    pub(crate) fn gpadls(&self) -> &super::gpadl::Gpadls {
        &self.gpadl
    }

    /// KMCL `VmbChannelCreateGpadlFromBuffer`/`FromMdl` (client, connected:
    /// from Opened on): shares `pages` with the server; returns the
    /// handle. `-EINVAL` for a server, `-ENOTCONN` when not connected.
    /// Process context.
    pub fn create_gpadl(&self, pages: crate::shmem::GpadlPages, read_only: bool) -> Result<u32> {
        if self.role != Role::Client {
            return Err(EINVAL);
        }
        // Not the control lock: Opened runs with it held.
        let host = {
            let data = self.data.lock();
            let dp = data.as_ref().ok_or(ENOTCONN)?;
            self.host_link(dp)
        };
        match host {
            Some(link) => link.create_gpadl(pages),
            None => self.gpadl.create(pages, read_only),
        }
    }

    /// The host link of a data path to the VMBus host.
    fn host_link(&self, dp: &DataPath) -> Option<Arc<super::host::HostLink>> {
        match dp.peer() {
            Peer::Host(link) => Some(link.clone()),
            Peer::Loopback(_) => None,
        }
    }

    /// KMCL `VmbChannelDeleteGpadl` (client): waits while the server has
    /// the GPADL mapped. `-ENOENT` for an unknown handle. Process context.
    pub fn delete_gpadl(&self, handle: u32) -> Result {
        if self.role != Role::Client {
            return Err(EINVAL);
        }
        let host = self.data.lock().as_ref().and_then(|dp| self.host_link(dp));
        match host {
            Some(link) => link.delete_gpadl(handle),
            None => self.gpadl.delete(handle),
        }
    }

    /// KMCL `VmbChannelMapGpadl` (server, connected): the client's pages
    /// behind `handle`, until [`Self::unmap_gpadl`]. One mapping per GPADL
    /// (`-EBUSY`); `writable` on a read-only GPADL fails (`-EACCES`);
    /// `-ENOENT` for an unknown handle. Process context.
    pub fn map_gpadl(&self, handle: u32, writable: bool) -> Result<Arc<crate::shmem::GpadlPages>> {
        if self.role != Role::Server {
            return Err(EINVAL);
        }
        let client = self
            .data
            .lock()
            .as_ref()
            .and_then(|dp| dp.peer().channel().cloned())
            .ok_or(ENOTCONN)?;
        self.gpadl.map(client, handle, writable)
    }

    /// KMCL `VmbChannelUnmapGpadl` (server). `-ENOENT` if not mapped.
    pub fn unmap_gpadl(&self, handle: u32) -> Result {
        if self.role != Role::Server {
            return Err(EINVAL);
        }
        self.gpadl.unmap(handle)
    }

    /// KMCL `VmbChannelSaveBegin`, first half: stops delivery (no packet
    /// reaches the driver after this returns). `-EINVAL` for a client,
    /// `-ENOTCONN` when not connected, `-EBUSY` when a save is under way
    /// or done. Process context, not from the channel's callbacks.
    pub(crate) fn stop_for_save(&self) -> Result {
        if self.role != Role::Server {
            return Err(EINVAL);
        }
        let ctl = self.control.lock();
        if ctl.saving.is_some() || ctl.saved.is_some() {
            return Err(EBUSY);
        }
        if !matches!(ctl.connection, Some(Link::Loopback(_))) {
            return Err(ENOTCONN);
        }
        self.stop_incoming();
        Ok(())
    }

    /// Stops delivery: no packet reaches the driver after this returns
    /// (KMCL's Suspend rule); packets already deferred are delivered
    /// first. Process context.
    fn stop_incoming(&self) {
        let mut rx = self.rx.lock();
        rx.enabled = false;
        rx.waiters += 1;
        while rx.active || rx.passive_active || !self.deferred.lock().is_empty() {
            self.rx_changed.wait(&mut rx);
        }
        rx.waiters -= 1;
    }

    /// KMCL `VmbChannelSaveBegin`, second half: `packets` (taken from the
    /// driver, with its state for each) go into the save, which
    /// [`Self::save_continue`] hands out. They are released without a
    /// completion: the restored server completes them.
    pub(crate) fn save(self: &Arc<Self>, packets: KVec<super::save::SavedPacket>) -> Result {
        let mut ctl = self.control.lock();
        if ctl.saving.is_some() || ctl.saved.is_some() {
            return Err(EBUSY);
        }
        let interface = (ctl.settings.interface_type, ctl.settings.interface_instance);
        let saving = super::save::write_stream((&interface.0, &interface.1), &packets)?;
        ctl.saving = Some(saving);
        drop(ctl);
        for p in packets {
            p.packet.saved();
            self.release_incoming(None);
        }
        Ok(())
    }

    /// KMCL `VmbChannelSaveContinue`: as many whole chunks of the save as
    /// fit in `out`. `-EINVAL` without a save under way.
    pub(crate) fn save_continue(&self, out: &mut [u8]) -> Result<super::save::Continue> {
        let mut ctl = self.control.lock();
        let saving = ctl.saving.as_mut().ok_or(EINVAL)?;
        Ok(saving.next(out))
    }

    /// KMCL `VmbChannelSaveEnd`: the save is over; the channel's Disable
    /// now parks its connection for the server that restores the save.
    pub(crate) fn save_end(&self) {
        let mut ctl = self.control.lock();
        if let Some(saving) = ctl.saving.take() {
            ctl.saved = Some(saving.save_id());
        }
    }

    /// KMCL `VmbChannelRestoreFromBuffer` (server, disabled, its interface
    /// set): feeds whole chunks of a save; `Ok(true)` once complete,
    /// `Ok(false)` for more (`STATUS_MORE_PROCESSING_REQUIRED`). A buffer
    /// that is not valid changes nothing (`-EBADMSG`); a save of another
    /// interface `-EINVAL`.
    pub(crate) fn restore_from(&self, buf: &[u8]) -> Result<bool> {
        if self.role != Role::Server {
            return Err(EINVAL);
        }
        let mut ctl = self.control.lock();
        if !ctl.lifecycle.accepts_init() {
            return Err(EBUSY);
        }
        let interface = (ctl.settings.interface_type, ctl.settings.interface_instance);
        let restoring = ctl
            .restoring
            .get_or_insert_with(super::save::Restoring::new);
        restoring.feed((&interface.0, &interface.1), buf)
    }

    /// The other endpoint is now `peer` (a restored server took the
    /// connection over).
    pub(crate) fn repoint_peer(&self, peer: Peer) {
        if let Some(dp) = Option::as_mut(&mut *self.data.lock()) {
            dp.set_peer(peer);
        }
    }

    /// A save failed after delivery stopped: delivery resumes if the
    /// channel is running.
    pub(crate) fn resume_after_save(self: &Arc<Self>) {
        let running = self.control.lock().lifecycle.is_running();
        if running {
            self.rx.lock().enabled = true;
            self.kick_rx();
        }
    }

    /// Bytes of driver context per incoming packet, while connected.
    pub(crate) fn incoming_context_size(&self) -> Option<usize> {
        self.data.lock().as_ref().map(|dp| dp.context_size())
    }

    /// One restored packet is delivered to the driver.
    pub(crate) fn count_restored(&self) {
        self.rx.lock().outstanding += 1;
    }

    /// The Disconnect of a saved server: the connection is parked (the
    /// client is told nothing), what the server had sent and not seen
    /// completed ends with `-ECANCELED`.
    fn park(self: &Arc<Self>, ctl: &mut Control) {
        // `saved` stays until the Rescind that follows (the offer stays).
        let (Some(save_id), Some(Link::Loopback(conn))) = (ctl.saved, ctl.connection.take()) else {
            return;
        };
        // What this server sent and did not see completed ends here; the
        // client's completions of it may still come, to the successor.
        let orphans = self
            .end_data_path()
            .map_or_else(KVec::new, |u| u.complete_all_ids(Err(ECANCELED)));
        conn.park(orphans);
        self.bus().park(self, save_id, conn);
        trace::state_change(self.id, "disable", "park");
    }

    /// The connection's data path ends (Disconnect, or a saved server
    /// parking it): its MMIO space, delayed signal, exposed external data
    /// and the GPADLs and mappings the driver's Closed left go; reads are
    /// committed (a successor reads on from there). Returns what was
    /// still in flight, for the caller to complete.
    fn end_data_path(&self) -> Option<super::datapath::Unfinished> {
        *self.mmio.lock() = (false, None);
        self.disarm_signal();
        let unfinished = self.data.lock().take().map(|mut dp| {
            dp.commit_reads();
            dp.take_unfinished()
        });
        // Packet objects completed from now on are freed.
        let pool = core::mem::take(&mut self.rx.lock().pool);
        drop(pool);
        // Nothing is exposed any more.
        let exposed = core::mem::take(&mut *self.exposed.lock());
        drop(exposed);
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

    /// After a restored server's Opened: hands each saved packet to the
    /// driver (`EvtVmbChannelRestorePacket`); one it does not take is
    /// completed with an empty payload.
    fn hand_over_restored(self: &Arc<Self>, ctl: &mut Control) {
        let Some(restoring) = ctl.restoring.take() else {
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
    fn announce_close_if_mapped(&self, ctl: &Control) {
        if self.role == Role::Client && self.gpadl.any_mapped() {
            if let Some(conn) = &ctl.connection {
                conn.announce_close();
            }
        }
    }

    /// The channel's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Runs `f` on the control state if init-time settings may change
    /// (KMCL: only while disabled), else fails with `-EBUSY`.
    fn init_time(&self, f: impl FnOnce(&mut Control) -> Result) -> Result {
        let mut ctl = self.control.lock();
        if !ctl.lifecycle.accepts_init() {
            return Err(EBUSY);
        }
        f(&mut ctl)
    }

    /// Changes init-time settings; `-EBUSY` unless the channel is disabled.
    pub fn configure(&self, f: impl FnOnce(&mut Settings)) -> Result {
        self.init_time(|ctl| {
            f(&mut ctl.settings);
            Ok(())
        })
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        self.control.lock().settings
    }

    /// KMCL `VmbChannelInitSetFriendlyName`: a name for debugging (at most
    /// [`FRIENDLY_NAME_MAX`] bytes, else `-EINVAL`).
    pub fn set_friendly_name(&self, name: &[u8]) -> Result {
        self.init_time(|ctl| {
            let dst = ctl.friendly_name.get_mut(..name.len()).ok_or(EINVAL)?;
            dst.copy_from_slice(name);
            ctl.friendly_name_len = name.len();
            Ok(())
        })
    }

    /// Calls `f` with the friendly name.
    pub fn with_friendly_name<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        let ctl = self.control.lock();
        f(&ctl.friendly_name[..ctl.friendly_name_len])
    }

    /// KMCL `VmbChannelInitSetFlags`: `-EINVAL` for unknown bits,
    /// `-EOPNOTSUPP` for pipe mode, which kmcl does not implement.
    pub fn set_flags(&self, flags: u32) -> Result {
        self.init_time(|_| {
            if flags & !CHANNEL_FLAG_IS_PIPE != 0 {
                return Err(EINVAL);
            }
            if flags & CHANNEL_FLAG_IS_PIPE != 0 {
                return Err(EOPNOTSUPP);
            }
            Ok(())
        })
    }

    /// KMCL `VmbServerChannelInitSetTargetVtl`: only clients running in
    /// `vtl` see the offer. `-EINVAL` for a VTL above 15 or a client.
    pub fn set_target_vtl(&self, vtl: u8) -> Result {
        self.init_time(|ctl| {
            if self.role != Role::Server || vtl > MAX_VTL {
                return Err(EINVAL);
            }
            ctl.settings.vtl = vtl;
            Ok(())
        })
    }

    /// KMCL `VmbServerChannelInitSetMmioMegabytes`: MMIO space for the
    /// device, `megabytes` required and `optional` more if available (on
    /// the loopback bus: memory both endpoints are given). `-EINVAL` on a
    /// client channel.
    pub fn set_mmio_megabytes(&self, megabytes: u16, optional: u16) -> Result {
        self.init_time(|ctl| {
            if self.role != Role::Server {
                return Err(EINVAL);
            }
            ctl.settings.mmio_megabytes = (megabytes, optional);
            Ok(())
        })
    }

    /// KMCL `VmbChannelGetMmioSpace`: (kernel virtual address, bytes) of
    /// the connection's MMIO space, from Opened until Closed. `-ENOTCONN`
    /// when not connected, `-ENODATA` when the offer has none. Any context.
    pub fn mmio_space(&self) -> Result<(usize, usize)> {
        let (connected, space) = *self.mmio.lock();
        if !connected {
            return Err(ENOTCONN);
        }
        space.ok_or(ENODATA)
    }

    /// KMCL `VmbServerChannelInitSetFlags`: `-EINVAL` for unknown bits or
    /// on a client channel.
    pub fn set_server_flags(&self, flags: u32) -> Result {
        self.init_time(|ctl| {
            if self.role != Role::Server || flags & !SERVER_FLAGS_KNOWN != 0 {
                return Err(EINVAL);
            }
            ctl.server_flags = flags;
            Ok(())
        })
    }

    /// KMCL `VmbChannelInitSetMaximumExternalData`: the most external data
    /// (bytes and chain length) one packet may describe; both must be
    /// non-zero (`-EINVAL`). Incoming GPA-direct range lists beyond these
    /// limits are rejected.
    pub fn set_maximum_external_data(&self, bytes: u32, ranges: u32) -> Result {
        if bytes == 0 || ranges == 0 {
            return Err(EINVAL);
        }
        self.configure(|s| {
            s.max_external_bytes = bytes;
            s.max_external_ranges = ranges;
        })
    }

    /// KMCL `VmbChannelSetPointer`.
    pub fn set_pointer(&self, pointer: usize) {
        self.pointer
            .store(pointer, core::sync::atomic::Ordering::Release);
    }

    /// KMCL `VmbChannelGetPointer`.
    pub fn pointer(&self) -> usize {
        self.pointer.load(core::sync::atomic::Ordering::Acquire)
    }

    /// KMCL `VmbChannelGetInterfaceInstance`: the instance GUID of the
    /// offer the channel is connected to (a client that accepted any
    /// instance learns which), else the configured one.
    pub fn interface_instance(&self) -> Guid {
        let ctl = self.control.lock();
        ctl.connection
            .as_ref()
            .map_or(ctl.settings.interface_instance, |c| c.interface_instance())
    }

    /// Sets the state callbacks; `-EBUSY` unless the channel is disabled.
    pub fn set_state_callbacks(&self, callbacks: Arc<dyn StateCallbacks>) -> Result {
        self.init_time(|ctl| {
            ctl.callbacks = Some(callbacks);
            Ok(())
        })
    }

    /// Whether the channel is enabled.
    pub fn is_enabled(&self) -> bool {
        self.control.lock().lifecycle.is_enabled()
    }

    /// Whether packets flow (enabled, connected, not paused).
    pub fn is_running(&self) -> bool {
        self.control.lock().lifecycle.is_running()
    }

    /// KMCL `VmbChannelEnable`: a server offers the channel, a client looks
    /// for its target offer and opens it when it exists. Returns without
    /// waiting for the other endpoint.
    pub fn enable(self: &Arc<Self>) -> Result {
        self.transition(Event::Enable)
    }

    /// KMCL `VmbChannelDisable`: closes (client) or rescinds (server), and
    /// returns when the channel is torn down.
    pub fn disable(self: &Arc<Self>) -> Result {
        self.transition(Event::Disable)
    }

    /// KMCL `VmbChannelPause`.
    pub fn pause(self: &Arc<Self>) -> Result {
        self.transition(Event::Pause)
    }

    /// KMCL `VmbChannelStart`.
    pub fn start(self: &Arc<Self>) -> Result {
        self.transition(Event::Start)
    }

    /// KMCL `VmbChannelCleanup`: releases a disabled channel, and with it
    /// the driver's callbacks (which may hold references back to it).
    pub fn cleanup(self: Arc<Self>) -> Result {
        let callbacks = {
            let mut ctl = self.control.lock();
            if !ctl.lifecycle.accepts_init() {
                return Err(EBUSY);
            }
            ctl.callbacks.take()
        };
        let packet_callbacks = self.rx.lock().callbacks.take();
        // A signal armed by a send that raced with the disconnect.
        self.disarm_signal();
        // Dropped without locks: their drop may drop the last reference.
        drop((callbacks, packet_callbacks));
        Ok(())
    }

    /// The bus the channel belongs to.
    pub(crate) fn bus(&self) -> Arc<LoopbackBus> {
        self.bus.lock().clone()
    }

    /// KMCL `VmbServerChannelInitSetVmbusHandle`: puts the channel on
    /// `bus` (kmcl: clients too). Only while disabled (`-EBUSY`).
    pub fn set_bus(&self, bus: Arc<LoopbackBus>) -> Result {
        self.init_time(|_| {
            *self.bus.lock() = bus;
            Ok(())
        })
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

    /// Queues an event after [`Self::reserve_event`].
    pub(crate) fn post_reserved(self: &Arc<Self>, event: PeerEvent) {
        if self.events.lock().push_within_capacity(event).is_err() {
            pr_err!("channel event lost: no room reserved\n");
        }
        // Fails only when the work is already queued, and then it will
        // drain this event too.
        let _ = crate::queues::process().enqueue::<Arc<Self>, 0>(self.clone());
    }

    /// Sets the packet callbacks; `-EBUSY` unless the channel is disabled.
    pub fn set_packet_callbacks(&self, callbacks: Arc<dyn PacketCallbacks>) -> Result {
        self.init_time(|_| {
            self.rx.lock().callbacks = Some(callbacks);
            Ok(())
        })
    }

    /// KMCL `VmbPacketSend` of an in-band packet. With
    /// `wait_for_completion`, `completion` runs when the other endpoint
    /// completes the packet, with its completion payload; otherwise when the
    /// packet is in the ring. A full ring queues the packet. `-ENOTCONN` if
    /// the channel is not connected (then `completion` does not run).
    pub fn send(
        self: &Arc<Self>,
        payload: &[u8],
        wait_for_completion: bool,
        completion: impl Into<Routine>,
    ) -> Result {
        let (kick, now) = {
            let mut data = self.data.lock();
            let dp = Option::as_mut(&mut *data).ok_or(ENOTCONN)?;
            let sent = dp.send(
                PacketType::InBand,
                payload,
                completion.into(),
                wait_for_completion,
            );
            let written = dp.has_written();
            drop(data);
            if written {
                self.run_written();
            }
            let sent = self.close_if_stalled(sent)?;
            (sent.kick, sent.run_now)
        };
        if let Some(peer) = kick {
            self.signal(&peer);
        }
        if let Some(routine) = now {
            routine.run(Ok(()), &[]);
        }
        Ok(())
    }

    /// The control-side part of a [`super::snapshot::Snapshot`].
    pub(crate) fn snapshot_control(self: &Arc<Self>) -> super::snapshot::Snapshot {
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
        let (held, quota, quota_hits, budget_hits, (deferrals, handed_back), failures) = {
            let rx = self.rx.lock();
            (
                rx.outstanding,
                rx.quota,
                rx.quota_hits,
                rx.budget_hits,
                (rx.deferrals, rx.handed_back),
                rx.failures,
            )
        };
        // Each lock on its own: a guard inside the struct expression would
        // be held to its end (the GPADL table's is a mutex).
        let gpadls = self.gpadl.counts();
        let deferred = self.deferred.lock().len();
        let exposed = self.exposed.lock().len();
        super::snapshot::Snapshot {
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
            held,
            quota,
            quota_hits,
            budget_hits,
            deferrals,
            handed_back,
            failures,
            deferred,
            gpadls,
            exposed,
            at_passive: self.at_passive.load(core::sync::atomic::Ordering::Relaxed),
            signals: self.signals(),
            signals_merged: self.signals_coalesced(),
            rings: None,
        }
    }

    /// Fills in the data-path part of a snapshot.
    pub(crate) fn snapshot_data(&self, s: &mut super::snapshot::Snapshot) {
        if let Some(dp) = self.data.lock().as_ref() {
            s.counters = dp.counters;
            let (awaiting, queued, rings) = dp.snapshot();
            s.awaiting_completion = awaiting;
            s.queued = queued;
            s.rings = Some(rings);
        }
    }

    /// The data path's counters (zero when not connected).
    pub fn counters(&self) -> Counters {
        self.data
            .lock()
            .as_ref()
            .map_or(Counters::default(), |dp| dp.counters)
    }

    /// Completes an incoming packet whose object is gone (dropped by the
    /// driver; see [`IncomingPacket::complete`] for the usual way).
    pub(crate) fn complete_incoming(
        self: &Arc<Self>,
        completion_requested: bool,
        id: u64,
        payload: &[u8],
    ) -> Result {
        let result = if completion_requested {
            self.send_completion(id, payload)
        } else {
            Ok(())
        };
        self.release_incoming(None);
        result
    }

    /// Sends the completion of incoming transaction `id` with `payload`.
    pub(crate) fn send_completion(self: &Arc<Self>, id: u64, payload: &[u8]) -> Result {
        let (sent, written) = {
            let mut data = self.data.lock();
            match Option::as_mut(&mut *data) {
                Some(dp) => (
                    dp.send_completion(id, payload)
                        .map(|kick| (kick, dp.peer().clone())),
                    dp.has_written(),
                ),
                // The connection is gone; nobody waits for this.
                None => (Err(ENOTCONN), false),
            }
        };
        if written {
            self.run_written();
        }
        let (kick, peer) = self.close_if_stalled(sent)?;
        if kick {
            self.signal(&peer);
        }
        Ok(())
    }

    /// Runs the routines of queued packets that were written meanwhile
    /// (never under the data lock: a routine may send again). One runner
    /// at a time: a routine whose send writes more queued packets leaves
    /// their routines to the loop already running rather than nesting
    /// (which would recurse as deep as the queue is long).
    fn run_written(&self) {
        use core::sync::atomic::Ordering::{Acquire, Release};
        loop {
            if self.running_written.swap(true, Acquire) {
                return;
            }
            loop {
                let next = Option::as_mut(&mut *self.data.lock()).and_then(|dp| dp.pop_written());
                match next {
                    Some(r) => r.run(Ok(()), &[]),
                    None => break,
                }
            }
            self.running_written.store(false, Release);
            // A routine written after our last look but before the flag
            // was cleared would wait for the next runner: look again.
            let more = self.data.lock().as_ref().is_some_and(|dp| dp.has_written());
            if !more {
                return;
            }
        }
    }

    /// A send's result; `-EPIPE` from the data path means the other
    /// endpoint stopped reading: the channel is closed and the send fails
    /// with `-ENODEV`, as sends do once a channel is closed.
    fn close_if_stalled<T>(self: &Arc<Self>, r: Result<T>) -> Result<T> {
        match r {
            Err(e) if e == EPIPE => {
                self.stop_and_close("peer_not_draining");
                Err(ENODEV)
            }
            r => r,
        }
    }

    /// A completed incoming packet's object: given back to the receive
    /// work if it is delivering that packet right now, else released.
    pub(crate) fn release_completed(b: KBox<Incoming>) {
        if let Err(b) = super::handoff::Catch::give(b, |o| &o.channel().catch) {
            let channel = b.channel().clone();
            channel.release_incoming(Some(b));
        }
    }

    /// One delivered packet is done with; resumes delivery stopped at the
    /// quota (KMCL: only a completion restarts it). `reuse` is its object,
    /// kept for the next packet while connected (one lock for both).
    fn release_incoming(self: &Arc<Self>, reuse: Option<KBox<Incoming>>) {
        let (resume, wake, rejected) = {
            let mut rx = self.rx.lock();
            rx.outstanding = rx.outstanding.saturating_sub(1);
            let resume = rx.quota_blocked && rx.outstanding < rx.quota;
            if resume {
                rx.quota_blocked = false;
            }
            let rejected = reuse.and_then(|b| super::datapath::recycle(&mut rx.pool, b));
            // Only Pause and Disable wait, for the last completion.
            (resume, rx.outstanding == 0 && rx.waiters > 0, rejected)
        };
        // Freed without the lock (it holds a reference to this channel).
        drop(rejected);
        if wake {
            self.rx_changed.notify_all();
        }
        if resume {
            self.kick_rx();
        }
    }

    /// A packet read in a batch is not delivered after all (the channel
    /// failed meanwhile): released without a completion.
    pub(crate) fn discard_incoming(self: &Arc<Self>, b: KBox<Incoming>) {
        self.release_incoming(Some(b));
    }

    /// KMCL `VmbChannelPacketFail`: the driver found a packet it cannot
    /// handle. Delivery stops, and the connection is closed (Suspend and
    /// Closed on both sides).
    pub(crate) fn fail_incoming(self: &Arc<Self>) {
        pr_warn!(
            "channel {}: a driver failed an incoming packet; closing the channel\n",
            self.id
        );
        // Delivery stops before the failed packet is released, so that a
        // quota resume cannot deliver another one.
        self.stop_and_close("packet_fail");
        self.release_incoming(None);
    }

    /// Stops delivery and closes the connection (Suspend and Closed on both
    /// sides, through the control work): after PacketFail, or when the
    /// incoming ring is corrupt.
    fn stop_and_close(self: &Arc<Self>, why: &str) {
        trace::channel_failed(self.id, why);
        self.halted
            .store(true, core::sync::atomic::Ordering::Relaxed);
        {
            let mut rx = self.rx.lock();
            rx.enabled = false;
            rx.failures += 1;
        }
        if self.post(PeerEvent::Failed).is_err() {
            pr_err!("out of memory closing a failed channel\n");
        }
    }

    /// KMCL `VmbChannelSetTransactionQuota`: at most `quota` delivered
    /// packets may be uncompleted; delivery stops there and resumes on a
    /// completion. `-EINVAL` for 0.
    pub fn set_transaction_quota(&self, quota: u32) -> Result {
        if quota == 0 {
            return Err(EINVAL);
        }
        self.rx.lock().quota = quota;
        Ok(())
    }

    /// Times delivery stopped at the transaction quota.
    pub fn quota_hits(&self) -> u64 {
        self.rx.lock().quota_hits
    }

    /// KMCL `VmbChannelSendSynchronousRequest`: sends `payload` and waits
    /// for the other endpoint to complete it, copying the completion
    /// payload into `reply` and returning its length. Process context only.
    ///
    /// `timeout_ms`: `None` waits for ever; `Some(0)` does not queue, so a
    /// full ring gives `-EOVERFLOW`. Errors: `-ETIMEDOUT` (the request is
    /// cancelled; a late completion is dropped), `-ENODEV` (not connected,
    /// or the connection ended), `-EOVERFLOW` (`reply` too small; nothing
    /// copied), `-EINTR` (a signal while waiting with a timeout).
    pub fn send_sync(
        self: &Arc<Self>,
        payload: &[u8],
        reply: &mut [u8],
        timeout_ms: Option<u32>,
    ) -> Result<usize> {
        self.send_sync_with(payload, None, reply, timeout_ms)
    }

    /// [`Self::send_sync`] with external data `pages` (valid until this
    /// returns).
    pub fn send_sync_external(
        self: &Arc<Self>,
        payload: &[u8],
        pages: crate::shmem::GpadlPages,
        reply: &mut [u8],
        timeout_ms: Option<u32>,
    ) -> Result<usize> {
        self.send_sync_with(payload, Some(pages), reply, timeout_ms)
    }

    fn send_sync_with(
        self: &Arc<Self>,
        payload: &[u8],
        external: Option<crate::shmem::GpadlPages>,
        reply: &mut [u8],
        timeout_ms: Option<u32>,
    ) -> Result<usize> {
        let external = match external {
            Some(p) => Some(Arc::new(p, GFP_KERNEL)?),
            None => None,
        };
        let wait = Arc::pin_init(
            pin_init!(SyncWait {
                state <- new_spinlock_irq!(SyncState {
                    status: None,
                    reply: KVec::new(),
                }),
                done <- new_condvar!(),
            }),
            GFP_KERNEL,
        )?;
        let routine = KBox::new(SyncCompletion(wait.clone()), GFP_KERNEL)?;
        let may_queue = timeout_ms != Some(0);
        let (kick, id) = {
            let mut data = self.data.lock();
            let dp = Option::as_mut(&mut *data).ok_or(ENODEV)?;
            let sent = match external {
                Some(pages) => dp.send_external(self, payload, pages, routine.into(), may_queue),
                None => {
                    dp.send_with_id(PacketType::InBand, payload, routine.into(), true, may_queue)
                }
            };
            let written = dp.has_written();
            drop(data);
            if written {
                self.run_written();
            }
            let sent = self.close_if_stalled(sent)?;
            (sent.kick, sent.id)
        };
        if let Some(peer) = kick {
            self.signal(&peer);
        }

        let mut st = wait.state.lock();
        let mut left = timeout_ms.map(|ms| kernel::time::msecs_to_jiffies(ms.max(1)));
        let mut gave_up = None;
        while st.status.is_none() {
            match left {
                None => wait.done.wait(&mut st),
                Some(j) => match wait.done.wait_interruptible_timeout(&mut st, j) {
                    CondVarTimeoutResult::Woken { jiffies } => left = Some(jiffies),
                    CondVarTimeoutResult::Timeout => {
                        gave_up = Some(ETIMEDOUT);
                        break;
                    }
                    CondVarTimeoutResult::Signal { .. } => {
                        gave_up = Some(EINTR);
                        break;
                    }
                },
            }
        }
        if let Some(e) = gave_up {
            drop(st);
            let cancelled = Option::as_mut(&mut *self.data.lock()).and_then(|dp| dp.cancel(id));
            if cancelled.is_some() {
                return Err(e);
            }
            // The completion won the race: wait for it to be recorded.
            st = wait.state.lock();
            while st.status.is_none() {
                wait.done.wait(&mut st);
            }
        }
        st.status.unwrap_or(Err(ENODEV))?;
        let n = st.reply.len();
        let dst = reply.get_mut(..n).ok_or(EOVERFLOW)?;
        dst.copy_from_slice(&st.reply);
        Ok(n)
    }

    /// Signals `peer` (VMBus's interrupt to the other endpoint): its
    /// receive work looks at the rings.
    pub(crate) fn signal(self: &Arc<Self>, peer: &Peer) {
        use core::sync::atomic::Ordering::{AcqRel, Relaxed};
        let latency = self.latency.load(Relaxed);
        if latency > 0 && matches!(peer, Peer::Loopback(_)) {
            if self.signal_armed.swap(true, AcqRel) {
                self.signals_coalesced.fetch_add(1, Relaxed);
            } else {
                // 100 ns units to microseconds, rounded up.
                self.signal_timer.arm(self, latency.div_ceil(10));
            }
            return;
        }
        self.signal_now(peer);
    }

    fn signal_now(&self, peer: &Peer) {
        self.signals_sent
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        match peer {
            Peer::Loopback(c) => c.signalled(),
            Peer::Host(h) => h.signal(),
        }
    }

    /// KMCL `VmbChannelSetInterruptLatency`: from now on, signals to the
    /// other (loopback) endpoint are delayed by `latency` (100 ns units,
    /// rounded up to the timer tick) and the ones made meanwhile merged
    /// into one; 0 signals at once. Returns the previous latency.
    /// `-EOPNOTSUPP` on a channel connected to a VMBus host (Linux's
    /// hv_vmbus offers no way to change a channel's monitor latency).
    /// Any context.
    pub fn set_interrupt_latency(&self, latency: u16) -> Result<u16> {
        let on_host = self
            .data
            .lock()
            .as_ref()
            .is_some_and(|dp| matches!(dp.peer(), Peer::Host(_)));
        if on_host {
            return Err(EOPNOTSUPP);
        }
        let old = self
            .latency
            .swap(u32::from(latency), core::sync::atomic::Ordering::Relaxed);
        Ok(u16::try_from(old).unwrap_or(u16::MAX))
    }

    /// Signals merged by the interrupt latency so far.
    pub fn signals_coalesced(&self) -> u64 {
        self.signals_coalesced
            .load(core::sync::atomic::Ordering::Relaxed)
    }

    /// Drops an armed delayed signal (the connection ends). Process
    /// context.
    fn disarm_signal(&self) {
        if self.signal_timer.disarm() {
            self.signal_armed
                .store(false, core::sync::atomic::Ordering::Release);
        }
    }

    /// The other endpoint signalled this channel.
    pub(crate) fn signalled(self: &Arc<Self>) {
        self.signals_received
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        self.kick_rx();
    }

    /// The (sent, received) signal counts.
    pub(crate) fn signals(&self) -> (u64, u64) {
        use core::sync::atomic::Ordering::Relaxed;
        (
            self.signals_sent.load(Relaxed),
            self.signals_received.load(Relaxed),
        )
    }

    /// Makes the receive work look at the rings.
    pub(crate) fn kick_rx(self: &Arc<Self>) {
        // Fails only when the work is already queued.
        use core::sync::atomic::Ordering::Relaxed;
        if self.at_passive.load(Relaxed) {
            let _ = crate::queues::process().enqueue::<Arc<Self>, 3>(self.clone());
        } else {
            let cpu = self.target_cpu.load(Relaxed);
            let _ = crate::queues::enqueue_bh_on::<Arc<Self>, 1>(cpu, self.clone());
        }
    }

    /// KMCL `VmbChannelSetIncomingProcessingAtPassive`: deliver incoming
    /// packets in process context (a workqueue) rather than softirq. Only
    /// while disabled (`-EBUSY` otherwise), so that a channel's receive
    /// work always runs in one context.
    pub fn set_incoming_processing_at_passive(&self, at_passive: bool) -> Result {
        self.init_time(|_| {
            self.at_passive
                .store(at_passive, core::sync::atomic::Ordering::Relaxed);
            Ok(())
        })
    }

    /// KMCL `VmbClientChannelInitSetTargetProcessorIndex` (kmcl: servers
    /// too): the CPU whose softirq delivers the channel's incoming packets,
    /// as VMBus interrupts a channel's target processor. `None` (the
    /// default): the CPU the other endpoint signalled from. An offline
    /// target is replaced by the signalling CPU while it is offline.
    /// Processing at passive level runs in a worker anywhere. `-EINVAL`
    /// for a CPU number the kernel cannot have; `-EBUSY` unless disabled.
    pub fn set_target_processor(&self, cpu: Option<u32>) -> Result {
        if cpu.is_some_and(|c| c >= kernel::cpu::nr_cpu_ids()) {
            return Err(EINVAL);
        }
        self.init_time(|_| {
            self.target_cpu.store(
                cpu.unwrap_or(NO_TARGET_CPU),
                core::sync::atomic::Ordering::Relaxed,
            );
            Ok(())
        })
    }

    /// The target processor ([`Self::set_target_processor`]).
    pub fn target_processor(&self) -> Option<u32> {
        let cpu = self.target_cpu.load(core::sync::atomic::Ordering::Relaxed);
        (cpu != NO_TARGET_CPU).then_some(cpu)
    }

    /// KMCL `VmbChannelPacketDeferToPassive`: `packet` will be delivered
    /// again, in process context. It stays outstanding until completed.
    pub(crate) fn defer(self: &Arc<Self>, packet: IncomingPacket) {
        self.rx.lock().deferrals += 1;
        if self.deferred.lock().push(packet, GFP_ATOMIC).is_err() {
            // The packet was dropped, which completed it empty.
            pr_err!("out of memory deferring a packet; it was completed empty\n");
            return;
        }
        let _ = crate::queues::process().enqueue::<Arc<Self>, 2>(self.clone());
    }

    fn deliver_deferred(self: &Arc<Self>) {
        let callbacks = {
            let mut rx = self.rx.lock();
            rx.passive_active = true;
            rx.callbacks.clone()
        };
        loop {
            let next = {
                let mut deferred = self.deferred.lock();
                if deferred.is_empty() {
                    None
                } else {
                    deferred.remove(0).ok()
                }
            };
            let Some(packet) = next else { break };
            match &callbacks {
                Some(cb) => cb.process_packet(self, packet),
                None => drop(packet),
            }
        }
        self.rx.lock().passive_active = false;
        self.rx_changed.notify_all();
    }

    /// The receive work: writes queued sends the other endpoint made room
    /// for, then delivers incoming packets while the lifecycle allows.
    fn receive(self: &Arc<Self>) {
        let callbacks = {
            let mut rx = self.rx.lock();
            if rx.active {
                return;
            }
            rx.active = true;
            rx.callbacks.clone()
        };
        let mut delivered = 0u32;
        let mut fetched = 0u32;
        let mut yielded = false;
        // Counted outstanding but not with the driver: objects reserved for
        // a batch and not filled, and packets given back during their
        // delivery. Settled in the next critical section.
        let (mut unused, mut caught) = (0u32, 0u32);
        // Packet objects from the pool for the next batch, and the batch.
        let mut objects: [Option<KBox<Incoming>>; RX_BATCH] = Default::default();
        let mut batch: [Option<IncomingPacket>; RX_BATCH] = Default::default();
        loop {
            if fetched >= RX_BUDGET {
                // Let other channels' work run; this one is queued again.
                self.rx.lock().budget_hits += 1;
                trace::budget_hit(self.id, fetched);
                yielded = true;
                break;
            }
            // How many packets the driver may get now (the quota), with
            // objects for them.
            let allowed = {
                let mut rx = self.rx.lock();
                rx.settle(core::mem::take(&mut unused), core::mem::take(&mut caught));
                let blocked = rx.quota > 0 && rx.outstanding >= rx.quota;
                if rx.enabled && blocked && !rx.quota_blocked {
                    rx.quota_blocked = true;
                    rx.quota_hits += 1;
                    trace::quota_hit(self.id, rx.outstanding, rx.quota);
                }
                let allowed = if !rx.enabled || blocked {
                    0
                } else if rx.quota > 0 {
                    ((rx.quota - rx.outstanding) as usize).min(RX_BATCH)
                } else {
                    RX_BATCH
                };
                let allowed = allowed.min((RX_BUDGET - fetched) as usize);
                // Counted before the driver can complete one.
                rx.outstanding += allowed as u32;
                for slot in objects.iter_mut().take(allowed) {
                    if slot.is_none() {
                        *slot = rx.pool.pop();
                    }
                }
                allowed
            };
            // Up to `allowed` data packets under one hold of the data lock,
            // ending early at a completion (its routine runs without the
            // lock) or an empty ring.
            let (n, last, peer, written) = {
                let mut data = self.data.lock();
                let Some(dp) = Option::as_mut(&mut *data) else {
                    break;
                };
                let (mut kick, _) = dp.flush_queue().unwrap_or((false, 0));
                let mut n = 0;
                let mut last = Received::Empty;
                while n < allowed {
                    let (step, made_room) = dp.receive(self, &mut objects[n]);
                    kick |= made_room;
                    match step {
                        Received::Data(packet) => {
                            batch[n] = Some(packet);
                            n += 1;
                        }
                        other => {
                            last = other;
                            break;
                        }
                    }
                }
                let peer = if kick { Some(dp.peer().clone()) } else { None };
                (n, last, peer, dp.has_written())
            };
            if let Some(peer) = peer {
                self.signal(&peer);
            }
            if written {
                self.run_written();
            }
            unused += (allowed - n) as u32;
            fetched += n as u32;
            for (slot, object) in batch.iter_mut().zip(objects.iter_mut()).take(n) {
                let Some(packet) = slot.take() else {
                    continue;
                };
                if self.halted.load(core::sync::atomic::Ordering::Relaxed) {
                    // The channel failed (PacketFail) during the batch:
                    // the rest are dropped as if never read, without a
                    // completion (the connection is closing).
                    packet.discard();
                    continue;
                }
                delivered += 1;
                match &callbacks {
                    Some(cb) => {
                        let delivering = self.catch.expect(packet.object());
                        cb.process_packet(self, packet);
                        // Completed meanwhile: its object is ours again, for
                        // a later packet of this run.
                        if let Some(b) = self.catch.settle(delivering) {
                            *object = Some(super::datapath::scrub(b));
                            caught += 1;
                        }
                    }
                    // No driver callback: completed (empty) on drop.
                    None => drop(packet),
                }
            }
            match last {
                // A full batch: there may be more.
                Received::Empty | Received::Data(_) if n > 0 && n == allowed => {}
                // The ring is empty, or delivery is stopped.
                Received::Empty | Received::Data(_) => break,
                Received::Broken(why) => {
                    // As PacketFail: delivery stops, both sides close.
                    self.stop_and_close(why);
                    break;
                }
                Received::Completion(routine, data) => {
                    fetched += 1;
                    routine.run(Ok(()), &data);
                    if let Some(dp) = Option::as_mut(&mut *self.data.lock()) {
                        dp.return_spare(data);
                    }
                }
            }
        }
        // Objects not used go back to the pool (freed if it is gone).
        let rejected = {
            let mut rx = self.rx.lock();
            rx.settle(unused, caught);
            let mut rejected: [Option<KBox<Incoming>>; RX_BATCH] = Default::default();
            for (slot, out) in objects.iter_mut().zip(rejected.iter_mut()) {
                if let Some(b) = slot.take() {
                    *out = super::datapath::recycle(&mut rx.pool, b);
                }
            }
            rejected
        };
        drop(rejected);
        if delivered > 0 {
            if let Some(cb) = &callbacks {
                cb.processing_complete(self, delivered);
            }
        }
        trace::batch_done(self.id, fetched, RX_BUDGET);
        let wake = {
            let mut rx = self.rx.lock();
            rx.active = false;
            rx.waiters > 0
        };
        if wake {
            self.rx_changed.notify_all();
        }
        if yielded {
            self.kick_rx();
        }
    }

    fn handle_events(self: &Arc<Self>) {
        loop {
            let event = {
                let mut events = self.events.lock();
                if events.is_empty() {
                    return;
                }
                events.remove(0)
            };
            let Ok(event) = event else { return };
            let mut ctl = self.control.lock();
            match event {
                PeerEvent::Connected(conn) => {
                    let mut next = ctl.lifecycle;
                    if next.apply(Event::Connected).is_err() {
                        // Disabled meanwhile: leave the connection at once.
                        drop(ctl);
                        conn.detach(self);
                        continue;
                    }
                    // The rings are usable from Opened on (Started may
                    // already queue sends). For the host, this opens the
                    // device's channel.
                    let limits = (
                        ctl.settings.max_packet_size as usize,
                        ctl.settings.client_context_size as usize,
                        (
                            ctl.settings.max_external_ranges,
                            u64::from(ctl.settings.max_external_bytes),
                        ),
                    );
                    match conn.data_path(self, limits) {
                        Ok(dp) => {
                            // Without memory for it, packet objects are
                            // freed instead of kept.
                            let pool = KVec::with_capacity(super::datapath::POOL_SIZE, GFP_KERNEL)
                                .unwrap_or_default();
                            self.rx.lock().pool = pool;
                            *self.data.lock() = Some(dp);
                            *self.mmio.lock() = (true, conn.mmio_space());
                        }
                        Err(e) => {
                            pr_err!("channel {}: cannot open the connection: {:?}\n", self.id, e);
                            drop(ctl);
                            conn.detach(self);
                            // A client gives up (PnpFailure); a server
                            // keeps its offer up for the next client.
                            if self.role == Role::Client
                                && self.post(PeerEvent::ConnectFailed(e)).is_err()
                            {
                                pr_err!(
                                    "channel {}: out of memory reporting a failed open\n",
                                    self.id
                                );
                            }
                            continue;
                        }
                    }
                    let Ok(actions) = ctl.lifecycle.apply(Event::Connected) else {
                        continue;
                    };
                    ctl.connection = Some(conn.clone());
                    self.execute(&mut ctl, Event::Connected, actions.as_slice());
                    if self.role == Role::Server && ctl.lifecycle.is_connected() {
                        self.hand_over_restored(&mut ctl);
                    }
                    // A server that accepted the connection lets the
                    // client in.
                    if self.role == Role::Server && ctl.lifecycle.is_connected() {
                        conn.tell_client();
                    }
                }
                PeerEvent::Failed => {
                    self.announce_close_if_mapped(&ctl);
                    if let Ok(actions) = ctl.lifecycle.apply(Event::PeerClosed) {
                        self.execute(&mut ctl, Event::PeerClosed, actions.as_slice());
                    }
                }
                PeerEvent::ConnectFailed(e) => {
                    // Still waiting for this connection: give up on it.
                    let waiting = ctl.lifecycle.is_enabled() && !ctl.lifecycle.is_connected();
                    if !waiting {
                        continue;
                    }
                    if let Ok(actions) = ctl.lifecycle.apply(Event::Disable) {
                        self.execute(&mut ctl, Event::Disable, actions.as_slice());
                    }
                    trace::state_change(self.id, "connect_failed", "pnp_failure");
                    if let Some(cb) = ctl.callbacks.clone() {
                        cb.pnp_failure(self, e);
                    }
                }
                PeerEvent::Closed(conn) => {
                    let current = ctl.connection.as_ref().is_some_and(|c| c.same(&conn));
                    if !current {
                        continue;
                    }
                    if let Ok(actions) = ctl.lifecycle.apply(Event::PeerClosed) {
                        self.execute(&mut ctl, Event::PeerClosed, actions.as_slice());
                    }
                }
            }
        }
    }

    /// A client looks for its offer (see [`Transport`]).
    fn seek(self: &Arc<Self>, settings: &Settings) -> Result {
        let host = match settings.transport {
            Transport::Loopback => false,
            Transport::Host => true,
            Transport::Auto => !self.bus().offered(settings) && self.bus().host().present(),
        };
        if host {
            self.bus().host().seek(self, settings)
        } else {
            self.bus().seek(self, settings)
        }
    }

    fn transition(self: &Arc<Self>, event: Event) -> Result {
        let mut ctl = self.control.lock();
        let before = ctl.lifecycle;
        let actions = ctl.lifecycle.apply(event).map_err(|_| EBUSY)?;
        // Offer and Connect can fail (duplicate offer, no memory); they come
        // first, so a failure leaves nothing half done.
        for action in actions.as_slice() {
            let res = match action {
                Action::Offer => {
                    let restored = ctl.restoring.as_ref().and_then(|r| r.complete_save());
                    match self.bus().offer(self, &ctl.settings, restored) {
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
                Action::Connect => self.seek(&ctl.settings),
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
        if event == Event::Disable {
            self.announce_close_if_mapped(&ctl);
        }
        self.execute(&mut ctl, event, actions.as_slice());
        if event == Event::Disable && self.role == Role::Client {
            let bus = self.bus();
            bus.cancel_seek(self);
            bus.host().cancel_seek(self);
        }
        // A server's Disable returns once its client has left the
        // connection (KMCL: Disable waits until torn down).
        if let Some(conn) = waited_for {
            conn.wait_client_detached();
        }
        Ok(())
    }

    /// Carries out `actions`, which `event` caused.
    fn execute(self: &Arc<Self>, ctl: &mut Control, event: Event, actions: &[Action]) {
        let callbacks = ctl.callbacks.clone();
        for action in actions {
            trace::state_change(self.id, event.name(), action.name());
            match action {
                Action::Offer | Action::Connect => {}
                // A saved server's offer stays, with its parked connection.
                Action::Rescind if ctl.saved.is_some() => ctl.saved = None,
                Action::Rescind => self.bus().rescind(self),
                Action::Disconnect if ctl.saved.is_some() => self.park(ctl),
                Action::Disconnect => {
                    // Every packet still waiting for its completion is
                    // completed, with a defined failure status.
                    if let Some(u) = self.end_data_path() {
                        u.complete_all(Err(ENODEV));
                    }
                    if let Some(conn) = ctl.connection.take() {
                        conn.detach(self);
                    }
                }
                Action::Opened => {
                    // The lifecycle awaits the result before anything else.
                    let ok = callbacks.as_ref().map_or(Ok(()), |cb| cb.opened(self));
                    let result = match ok {
                        Ok(()) => Event::OpenedOk,
                        Err(e) => {
                            if let Some(conn) = &ctl.connection {
                                conn.refuse(e);
                            }
                            Event::OpenedFailed
                        }
                    };
                    if let Ok(next) = ctl.lifecycle.apply(result) {
                        self.execute(ctl, result, next.as_slice());
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

/// The delayed signal of a channel with an interrupt latency.
impl crate::queues::TimerFired for Channel {
    fn fired(this: Arc<Self>) {
        this.signal_armed
            .store(false, core::sync::atomic::Ordering::Release);
        let peer = this.data.lock().as_ref().map(|dp| dp.peer().clone());
        if let Some(peer) = peer {
            this.signal_now(&peer);
        }
    }
}

/// A synchronous request's rendezvous.
#[pin_data]
struct SyncWait {
    #[pin]
    state: SpinLockIrq<SyncState>,
    #[pin]
    done: CondVar,
}

struct SyncState {
    status: Option<Result>,
    reply: KVec<u8>,
}

/// The completion routine of a synchronous request.
struct SyncCompletion(Arc<SyncWait>);

impl SendCompletion for SyncCompletion {
    fn complete(&mut self, status: Result, data: &[u8]) {
        let mut st = self.0.state.lock();
        let copied = st.reply.extend_from_slice(data, GFP_ATOMIC);
        st.status = Some(match (status, copied) {
            (Ok(()), Err(_)) => Err(ENOMEM),
            (s, _) => s,
        });
        drop(st);
        self.0.done.notify_all();
    }
}

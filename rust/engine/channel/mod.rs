// SPDX-License-Identifier: GPL-2.0

//! KMCL channel objects (`VMBCHANNEL`): one [`Channel`] type whose methods
//! are split by concern, one file each:
//!
//! | file | concern |
//! |---|---|
//! | [`settings`] | init-time settings (`VmbChannelInitSet*`), driver pointer |
//! | [`control`] | lifecycle: Enable/Disable/Pause/Start/Cleanup, bus and peer events, state callbacks |
//! | [`send`] | packets, external data, completions, synchronous requests |
//! | [`receive`] | the receive work, delivery, deferral, quota, completing and failing packets |
//! | [`signal`] | signalling the other endpoint, interrupt latency, being signalled |
//! | [`memory`] | external data exposed to the other endpoint, MMIO space |
//! | [`gpadl`] | GPADL tables: a client's GPADLs, a server's mappings |
//! | [`transfer`] | transfer-page sets: registering a client's GPADL as one, sending into one |
//! | [`save`] | server save/restore and live update |
//! | [`snapshot`] | the state debugfs prints |
//!
//! # Locks
//!
//! | lock | kind | protects | taken in | order |
//! |---|---|---|---|---|
//! | `turn` | `Mutex<()>` | the right to change [`Control`]: one transition (and its state callbacks), setter or save step at a time | process context only; held across the state callbacks | 1: first of a channel's locks |
//! | `sub_turn` | `Mutex<()>` | the same, for a sub-channel (its turn from [`Channel::set_primary`] on; a lock class of its own) | as `turn` | 1: as `turn`; after its primary's `turn` when a primary's state callback calls into its sub-channel |
//! | `sub_turns` | `Mutex` | the tasks holding the turn of one of this channel's sub-channels | process context only | leaf; taken with a sub-channel's `sub_turn` held, and alone before `turn` |
//! | `control` | `Mutex` | [`Control`]: lifecycle state, settings, state callbacks, the connection, save/restore | process context only; held briefly, never across a driver callback or a wait on the other endpoint; changed only by the holder of `turn` | 2: after `turn` |
//! | `instance` | `SpinLockIrq` | the interface instance the driver reads | any context | leaf |
//! | `bus` | `SpinLock` | which loopback bus the channel is on | process context | 3: after `control`; held only to clone the `Arc` |
//! | `gpadl` | `Mutex` (inside [`Gpadls`]) | the GPADL and mapping tables | process context | 3: after `turn` or `control`; a server's mapping takes the client's table alone |
//! | `events` | `SpinLockIrq` | [`PeerEvent`]s not yet handled | posted from any context, drained by the control work | last: after any other lock, of any channel |
//! | `rx` | `IrqSpinLock` | [`RxState`]: delivery on/off, packets held by the driver, quota, pool of packet objects | softirq (receive work) and process context | 4: before `deferred` |
//! | `deferred` | `IrqSpinLock` | packets deferred to process context | softirq and process context | 5: after `rx` |
//! | `data` | `IrqSpinLock` | the [`DataPath`]: rings, send queue, transactions, counters | softirq and process context; never held across a driver callback or routine | 4: alone (not nested with `rx`) |
//! | `mmio` | `SpinLockIrq` | whether connected, and the MMIO space | any context | leaf |
//! | `exposed` | `IrqSpinLock` | external data exposed to the other endpoint, by transaction id | any context | leaf; taken by the *other* endpoint's receive work under its `data` lock |
//! | `transfer` | `SpinLockIrq` | which [`TransferSets`] the channel uses (its own, or its primary's) | any context | leaf; held only to clone the `Arc` |
//! | (the sets) | `SpinLockIrq` (inside [`TransferSets`]) | the transfer-page sets registered | any context | leaf; taken under a `data` lock: the channel's (receive) and the *other* endpoint's (its sends check their ranges) |
//!
//! `SpinLockIrq` is the kernel crate's; `IrqSpinLock` ([`crate::sys::lock`])
//! is `spin_lock_irqsave()`, cheaper per acquisition, for the locks the data
//! path takes per packet. Both may be taken in any context.
//!
//! Rules that follow from the table:
//!
//! - State callbacks run with `turn` held and no other lock: what they
//!   may need (sending, synchronous requests, completions, reading the
//!   channel's state) takes no `turn`. A call that takes `turn` from the
//!   task that holds it (Enable, Disable, Pause, Start, Cleanup, the init
//!   setters, save and restore from a state callback) is refused with
//!   `-EDEADLK`; so is one from the receive or deferral work of the same
//!   channel (packet callbacks and routines at passive), which Disable
//!   and Pause wait for.
//! - The other endpoint leaving needs no `turn`: it severs the data path
//!   at once ([`Channel::sever`]; synchronous requests end with
//!   `-ENODEV`), and the control work carries out the rest when the turn
//!   is free.
//! - The engine never takes a second channel's `turn` or `control` while
//!   holding one: the other endpoint is only ever told things through its
//!   `events`. A driver's state callback may call into another channel,
//!   so turns nest in one order: a primary's state callback may Disable or
//!   Cleanup its sub-channels (the primary's `turn`, then the
//!   sub-channel's `sub_turn`, which lockdep tells apart); a sub-channel's
//!   state callback calling a turn-taking function of its primary (the
//!   reverse order: it would deadlock with the former) is refused with
//!   `-EDEADLK` (`sub_turns`).
//! - Driver callbacks (ProcessPacket, completion routines) are called with
//!   none of these locks held.
//!
//! # Work items
//!
//! [`CONTROL_WORK`] drains `events`; [`RECEIVE_WORK`] (BH workqueue, softirq)
//! and [`RECEIVE_TASK_WORK`] (process context, for channels that process
//! incoming packets at passive) drain the incoming ring; [`DEFERRAL_WORK`]
//! redelivers deferred packets in process context; [`REPLENISH_WORK`]
//! allocates, in process context, what an atomic allocation of the
//! receive work could not; [`RELEASE_WORK`] drops, in process context, a
//! channel whose last reference the receive work held.
//!
//! # The one back-reference
//!
//! A delivered packet ([`crate::engine::datapath::PacketObject`]) holds an
//! `Arc<Channel>`: completing it must reach its channel's data path and
//! receive state. Everything else in the engine points downward.

use kernel::{
    prelude::*,
    sync::{
        new_condvar,
        new_mutex,
        new_spinlock,
        new_spinlock_irq,
        Arc,
        CondVar,
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

use crate::sys::lock::{
    new_irq_spinlock,
    IrqSpinLock, //
};
use crate::{
    engine::datapath::{
        DataPath,
        Exposed,
        IncomingPacket, //
        PacketObject,
        TransferSets,
    },
    engine::types::{
        Guid,
        MmioSpace, //
    },
    protocol::lifecycle::{
        Lifecycle,
        Role, //
    },
};

mod control;
mod gpadl;
mod memory;
mod receive;
mod save;
mod send;
mod settings;
mod signal;
mod snapshot;
#[cfg(kmcl_kunit)]
mod tests;
mod transfer;
mod transport;

pub(crate) use control::PeerEvent;
pub(crate) use control::StateCallbacks;
pub(crate) use gpadl::GpadlCounts;
pub(crate) use receive::{
    PacketCallbacks,
    RX_BUDGET, //
};
#[cfg(kmcl_kunit)]
pub(crate) use save::fail_next_save;
pub(crate) use save::{
    Continue,
    SavedPacket, //
};
pub(crate) use settings::{
    MmioMegabytes,
    Settings,
    Transport,
    FRIENDLY_NAME_MAX, //
};
pub(crate) use signal::SignalCounts;
pub(crate) use transport::{
    same_link,
    Bus,
    Link, //
};

/// What the control lock protects.
///
/// # Invariants
///
/// - `connection` is `Some` exactly while the lifecycle is connected
///   (from the `Connected` event until its `Disconnect`), and the channel's
///   data path, if any, runs over it.
/// - `settings`, the friendly name and `server_flags` change only while
///   the lifecycle accepts init-time settings (disabled).
/// - `saving` and `saved` are only ever set on a server; while either is
///   set, delivery is stopped (`RxState::enabled` is false).
/// - `restoring` is only fed before Enable; Enable hands it to the offer.
struct Control {
    lifecycle: Lifecycle,
    settings: Settings,
    friendly_name: [u8; FRIENDLY_NAME_MAX],
    friendly_name_len: usize,
    server_flags: u32,
    callbacks: Option<Arc<dyn StateCallbacks>>,
    connection: Option<Arc<dyn Link>>,
    /// A save being handed out (between SaveBegin and SaveEnd).
    saving: Option<save::Saving>,
    /// Saved (SaveEnd done): Disable parks the connection under this id.
    saved: Option<u32>,
    /// A restore being fed (server, before Enable).
    restoring: Option<save::Restoring>,
    /// The primary channel this one is a sub-channel of (KMCL V5
    /// `VmbChannelInitSetPrimaryChannel`); set only while disabled.
    primary: Option<Arc<Channel>>,
}

/// Receive-side state, shared by the receive work (softirq) and the
/// control path (process context).
///
/// # Invariants
///
/// - `outstanding` counts the packets the driver holds (delivered, or
///   deferred, or restored, and not completed yet) plus the objects the
///   running receive work reserved for its current batch; with a quota,
///   the receive work reserves no more than `quota - outstanding`.
/// - At most one receive work delivers at a time (`active`), and at most
///   one deferral work (`passive_active`); nothing is delivered while
///   `enabled` is false, and StopIncoming returns only once neither runs
///   and no deferred packet is left.
/// - `pool` has capacity only while connected (packet objects completed
///   otherwise are freed), so no object outlives its connection's
///   teardown in the pool; `reserve` is set only while `pool` has
///   capacity.
/// - `waiters` counts the threads waiting on `rx_changed`; completions
///   notify only when it is not zero.
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
    /// straight back to the receive work
    /// ([`crate::engine::datapath::handoff`]).
    handed_back: u64,
    /// Times kmcl closed the channel because of a failure (PacketFail, a
    /// corrupt incoming ring).
    failures: u64,
    /// Why kmcl last closed the channel because of a failure.
    last_failure: Option<crate::engine::types::CloseReason>,
    /// The deferral work is delivering packets right now.
    passive_active: bool,
    /// Threads waiting on `rx_changed` (nobody is woken when 0).
    waiters: u32,
    /// Completed incoming packet objects kept for reuse while connected
    /// (no capacity otherwise: they are freed). Their buffers stay
    /// allocated, so a warm data path allocates nothing per packet.
    pool: KVec<KBox<PacketObject>>,
    /// An object the replenish work allocated in process context for a
    /// packet an atomic allocation could not take: the receive work uses
    /// it first. Only while connected, as `pool`.
    reserve: Option<KBox<PacketObject>>,
    /// Times an atomic allocation failed while receiving.
    no_memory: u64,
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

/// A KMCL channel (`VMBCHANNEL`): one endpoint, client or server. Its
/// locks, their order and its work items are in the module documentation.
///
/// # Invariants
///
/// - `data` is `Some` exactly while the channel has a data path: from its
///   connection's `Opened` until `Disconnect`.
/// - `at_passive`, `target_cpu` and `bus` change only while the channel is
///   disabled (init-time settings).
/// - `catch` holds at most the one packet the receive work is delivering
///   now ([`crate::engine::datapath::handoff`]).
/// - Every packet object (`PacketObject`) holds an `Arc` of its channel: a
///   channel lives as long as a packet of it is held, by the driver or in
///   the pool.
#[pin_data]
pub(crate) struct Channel {
    /// Names the channel in trace events and debugfs.
    id: u32,
    role: Role,
    /// The loopback bus (with its VMBus host) the channel is on; changed
    /// only while disabled ([`Self::set_bus`]).
    #[pin]
    bus: SpinLock<Arc<dyn Bus>>,
    /// Serialises transitions, setters and save steps (see the lock
    /// table); held across state callbacks.
    #[pin]
    turn: Mutex<()>,
    /// The turn of a sub-channel (once `is_sub`): the same role as
    /// `turn`, in a lock class of its own, so that a primary's state
    /// callback may wait for its sub-channel's turn (primary first) without
    /// lockdep taking it for recursion on one lock.
    #[pin]
    sub_turn: Mutex<()>,
    /// Whether the channel is a sub-channel, i.e. which of `turn` and
    /// `sub_turn` is its turn. Set once, by [`Self::set_primary`], while
    /// holding both.
    is_sub: core::sync::atomic::AtomicBool,
    /// The task that holds `turn` now (0: none): a call back into the
    /// channel from that task (one of its state callbacks) is refused
    /// with `-EDEADLK` instead of deadlocking.
    turn_owner: core::sync::atomic::AtomicUsize,
    /// The tasks that hold the turn of one of this channel's sub-channels
    /// now (one entry per turn held): a call from one of them that takes
    /// this channel's turn is refused with `-EDEADLK` (the reverse of the
    /// order turns nest in).
    #[pin]
    sub_turns: Mutex<KVec<usize>>,
    /// The task running this channel's receive or deferral work now (0:
    /// none): packet callbacks and routines at passive run there, and a
    /// Disable or Pause from them, which waits for that work, is refused
    /// with `-EDEADLK`.
    rx_owner: core::sync::atomic::AtomicUsize,
    /// The same for the deferral work.
    deferral_owner: core::sync::atomic::AtomicUsize,
    #[pin]
    control: Mutex<Control>,
    /// The address of the connection the data path runs over (0: none),
    /// to tell without a lock whether a `Closed` event is about it.
    link: core::sync::atomic::AtomicUsize,
    /// The interface instance the driver asks for
    /// (`VmbChannelGetInterfaceInstance`): the connected offer's, else the
    /// configured one. Kept apart from `control` so that any context may
    /// read it.
    #[pin]
    instance: SpinLockIrq<Guid>,
    /// Posted from any context (PacketFail runs in softirq).
    #[pin]
    events: SpinLockIrq<KVec<PeerEvent>>,
    #[pin]
    work: Work<Channel, CONTROL_WORK>,
    #[pin]
    data: IrqSpinLock<Option<DataPath>>,
    #[pin]
    rx: IrqSpinLock<RxState>,
    /// Signalled when the receive work stops or a packet is completed.
    #[pin]
    rx_changed: CondVar,
    #[pin]
    rx_work: Work<Channel, RECEIVE_WORK>,
    /// The receive work for channels that process incoming packets at
    /// passive: the same function on the system workqueue. A separate work
    /// item, so that each has one context (lockdep tracks work items).
    #[pin]
    rx_task_work: Work<Channel, RECEIVE_TASK_WORK>,
    /// Packets deferred to process context, oldest first.
    #[pin]
    deferred: IrqSpinLock<KVec<IncomingPacket>>,
    #[pin]
    passive_work: Work<Channel, DEFERRAL_WORK>,
    /// Finds memory in process context for a packet the receive work
    /// could not read for want of it.
    #[pin]
    replenish_work: Work<Channel, REPLENISH_WORK>,
    /// Takes the last reference of a channel a softirq-context work item
    /// held into process context, where the channel is dropped.
    #[pin]
    release_work: Work<Channel, RELEASE_WORK>,
    /// The largest packet (bytes) waiting for that memory (0: none).
    replenish_len: core::sync::atomic::AtomicUsize,
    /// The replenish work failed too and retries (logged once).
    replenish_failing: core::sync::atomic::AtomicBool,
    /// Counts reclaims ([`Channel::reclaim_held`]): packets delivered in
    /// an earlier epoch are no longer the driver's to complete.
    epoch: core::sync::atomic::AtomicU32,
    /// The driver's pointer (KMCL `VmbChannelSetPointer`).
    pointer: core::sync::atomic::AtomicUsize,
    /// The sub-channel index of the connection (0: a primary channel, or
    /// not connected).
    subchannel_index: core::sync::atomic::AtomicU32,
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
    /// Signals merged into an armed one (the signal timer's arming).
    signals_coalesced: core::sync::atomic::AtomicU64,
    /// Fires the delayed signal.
    signal_timer: crate::sys::queues::Timer<Channel, SIGNAL_TIMER>,
    /// Trims the kept send-queue buffers of a queue gone idle.
    trim_timer: crate::sys::queues::Timer<Channel, TRIM_TIMER>,
    /// GPADLs (client) and mappings of them (server).
    #[pin]
    gpadl: gpadl::Gpadls,
    /// Someone is running the routines of written queued packets.
    running_written: core::sync::atomic::AtomicBool,
    /// The packet the receive work is delivering, which a completion
    /// during the delivery gives straight back to it (no lock).
    pub(crate) catch:
        crate::engine::datapath::handoff::Catch<crate::engine::datapath::PacketObject>,
    /// (connected, MMIO space): set before Opened, cleared at disconnect.
    #[pin]
    mmio: SpinLockIrq<(bool, Option<MmioSpace>)>,
    /// External data this endpoint exposes, by transaction id, until the
    /// transaction's completion: what the other endpoint may access.
    #[pin]
    exposed: Exposed,
    /// Transfer-page sets this endpoint registered (a client's receive
    /// buffers), until unregistered or the connection ends; a client
    /// sub-channel's are its primary's (one receive buffer per device, as
    /// netvsc shares it), set with the primary.
    #[pin]
    transfer: SpinLockIrq<Arc<TransferSets>>,
}

/// The delayed signal of an interrupt latency ([`Channel::signal`]).
pub(crate) const SIGNAL_TIMER: u8 = 0;
/// The trim of an idle send queue's kept buffers
/// ([`crate::engine::datapath::RECYCLED_IDLE_MS`]).
pub(crate) const TRIM_TIMER: u8 = 1;

/// The control work: drains `events` (process context).
pub(crate) const CONTROL_WORK: u64 = 0;
/// The receive work on the BH workqueue (softirq context).
pub(crate) const RECEIVE_WORK: u64 = 1;
/// The deferral work: redelivers deferred packets (process context).
pub(crate) const DEFERRAL_WORK: u64 = 2;
/// The receive work in process context, for channels that process
/// incoming packets at passive.
pub(crate) const RECEIVE_TASK_WORK: u64 = 3;
/// The replenish work: memory, in process context, for a packet an atomic
/// allocation of the receive work could not take.
pub(crate) const REPLENISH_WORK: u64 = 4;
/// The release work: drops, in process context, a channel whose last
/// reference a softirq-context work item held (see [`Channel::release`]).
pub(crate) const RELEASE_WORK: u64 = 5;

impl_has_work! {
    impl HasWork<Self, CONTROL_WORK> for Channel { self.work }
    impl HasWork<Self, RECEIVE_WORK> for Channel { self.rx_work }
    impl HasWork<Self, DEFERRAL_WORK> for Channel { self.passive_work }
    impl HasWork<Self, RECEIVE_TASK_WORK> for Channel { self.rx_task_work }
    impl HasWork<Self, REPLENISH_WORK> for Channel { self.replenish_work }
    impl HasWork<Self, RELEASE_WORK> for Channel { self.release_work }
}

/// The control work: lifecycle events from the bus and the other endpoint.
impl WorkItem<CONTROL_WORK> for Channel {
    type Pointer = Arc<Channel>;

    fn run(this: Arc<Channel>) {
        this.handle_events();
    }
}

/// The receive work, on the BH workqueue (softirq context); channels that
/// process incoming packets at passive use work item 3 instead.
impl WorkItem<RECEIVE_WORK> for Channel {
    type Pointer = Arc<Channel>;

    fn run(this: Arc<Channel>) {
        this.receive();
        Channel::release(this);
    }
}

/// The receive work in process context, for channels set to process
/// incoming packets at passive.
impl WorkItem<RECEIVE_TASK_WORK> for Channel {
    type Pointer = Arc<Channel>;

    fn run(this: Arc<Channel>) {
        this.as_owner(&this.rx_owner, |c| c.receive());
    }
}

/// The deferral work (process context): redelivers deferred packets.
impl WorkItem<DEFERRAL_WORK> for Channel {
    type Pointer = Arc<Channel>;

    fn run(this: Arc<Channel>) {
        this.as_owner(&this.deferral_owner, |c| c.deliver_deferred());
    }
}

/// The replenish work (process context).
impl WorkItem<REPLENISH_WORK> for Channel {
    type Pointer = Arc<Channel>;

    fn run(this: Arc<Channel>) {
        this.replenish();
    }
}

/// The release work (process context): the channel is dropped when `this`
/// goes, here.
impl WorkItem<RELEASE_WORK> for Channel {
    type Pointer = Arc<Channel>;

    fn run(this: Arc<Channel>) {
        drop(this);
    }
}

impl Channel {
    /// Drops a reference held in softirq context: if it is the last one
    /// (the channel was cleaned up while its receive work ran), the
    /// channel is handed to the release work and dropped in process
    /// context, where what it owns (a transport, a bus) may sleep to free.
    pub(crate) fn release(this: Arc<Channel>) {
        if let Some(last) = Arc::into_unique_or_drop(this) {
            let last: Arc<Channel> = last.into();
            // Cannot be queued already: a queued work item holds a
            // reference, and this is the only one.
            let _ = crate::sys::queues::process().enqueue::<Arc<Channel>, RELEASE_WORK>(last);
        }
    }
}

/// Channel ids, from 1 on.
static NEXT_ID: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(1);

/// No target processor: the receive work runs on the CPU that signalled.
pub(crate) const NO_TARGET_CPU: u32 = u32::MAX;

/// The turn held (see the lock table), with its holder recorded in the
/// channel's `turn_owner` until it is released.
pub(super) struct Turn<'a> {
    _guard: kernel::sync::lock::Guard<'a, (), kernel::sync::lock::mutex::MutexBackend>,
    owner: &'a core::sync::atomic::AtomicUsize,
    /// A sub-channel's primary, whose `sub_turns` records the holder.
    primary: Option<Arc<Channel>>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        // Before `_guard` unlocks (fields drop after this).
        if let Some(primary) = self.primary.take() {
            let me = crate::sys::context::current_task();
            let mut tasks = primary.sub_turns.lock();
            if let Some(i) = tasks.iter().position(|t| *t == me) {
                let _ = tasks.remove(i);
            }
        }
        self.owner.store(0, core::sync::atomic::Ordering::Relaxed);
    }
}

/// The turn and the control lock held: for setters and save steps, which
/// call no driver callback.
struct ControlGuard<'a> {
    // Dropped first: the control lock is released before the turn.
    guard: kernel::sync::lock::Guard<'a, Control, kernel::sync::lock::mutex::MutexBackend>,
    _turn: Turn<'a>,
}

impl core::ops::Deref for ControlGuard<'_> {
    type Target = Control;

    fn deref(&self) -> &Control {
        &self.guard
    }
}

impl core::ops::DerefMut for ControlGuard<'_> {
    fn deref_mut(&mut self) -> &mut Control {
        &mut self.guard
    }
}

impl Channel {
    /// Whether the calling task would deadlock waiting for the turn: it
    /// holds it (a state callback of this channel), or it runs this
    /// channel's receive or deferral work (a packet callback or routine at
    /// passive), which Disable and Pause wait for.
    pub(crate) fn in_own_callback(&self) -> bool {
        use core::sync::atomic::Ordering::Relaxed;
        let me = crate::sys::context::current_task();
        // Only this task can have stored its own address in either.
        self.turn_owner.load(Relaxed) == me
            || self.rx_owner.load(Relaxed) == me
            || self.deferral_owner.load(Relaxed) == me
    }

    /// Whether the calling task runs this channel's receive work (a
    /// packet callback or routine at passive): nothing can read the ring
    /// until it returns.
    pub(crate) fn in_receive_work(&self) -> bool {
        self.rx_owner.load(core::sync::atomic::Ordering::Relaxed)
            == crate::sys::context::current_task()
    }

    /// Takes the turn. `-EDEADLK` from the channel's own callbacks (see
    /// [`Self::in_own_callback`]). Process context.
    pub(super) fn take_turn(&self) -> Result<Turn<'_>> {
        self.take_turn_or(|| {})
    }

    /// [`Self::take_turn`], calling `on_busy` first if another task holds
    /// the turn (and it must be waited for).
    pub(super) fn take_turn_or(&self, on_busy: impl FnOnce()) -> Result<Turn<'_>> {
        let me = crate::sys::context::current_task();
        if self.in_own_callback() || self.sub_turns.lock().contains(&me) {
            return Err(EDEADLK);
        }
        use core::sync::atomic::Ordering::Acquire;
        let mut on_busy = Some(on_busy);
        let guard = loop {
            let sub = self.is_sub.load(Acquire);
            let lock = if sub { &self.sub_turn } else { &self.turn };
            let guard = match lock.try_lock() {
                Some(g) => g,
                None => {
                    if let Some(f) = on_busy.take() {
                        f();
                    }
                    lock.lock()
                }
            };
            // Became a sub-channel while this task waited: its turn is
            // `sub_turn` from now on.
            if self.is_sub.load(Acquire) == sub {
                break guard;
            }
        };
        self.turn_owner
            .store(me, core::sync::atomic::Ordering::Relaxed);
        // A sub-channel's turn: its primary learns who holds it (without
        // memory for the record, the primary's turn is not refused to
        // the holder: the rule stands, unchecked, as before).
        let primary = if self.is_sub.load(Acquire) {
            self.primary()
                .filter(|p| p.sub_turns.lock().push(me, GFP_KERNEL).is_ok())
        } else {
            None
        };
        Ok(Turn {
            _guard: guard,
            owner: &self.turn_owner,
            primary,
        })
    }

    /// Takes the turn and the control lock (setters, save steps).
    /// `-EDEADLK` as [`Self::take_turn`]. Process context.
    fn lock_control(&self) -> Result<ControlGuard<'_>> {
        let turn = self.take_turn()?;
        Ok(ControlGuard {
            guard: self.control.lock(),
            _turn: turn,
        })
    }

    /// Runs `f` (work in process context) with the current task recorded
    /// in `owner` ([`Self::in_own_callback`]).
    fn as_owner(
        self: &Arc<Self>,
        owner: &core::sync::atomic::AtomicUsize,
        f: impl FnOnce(&Arc<Self>),
    ) {
        use core::sync::atomic::Ordering::Relaxed;
        owner.store(crate::sys::context::current_task(), Relaxed);
        f(self);
        owner.store(0, Relaxed);
    }

    /// Records the interface instance drivers read: `connection`'s offer's
    /// if connected, else the configured one.
    fn note_instance(&self, ctl: &Control) {
        let instance = ctl
            .connection
            .as_ref()
            .map_or(ctl.settings.interface_instance, |c| c.interface_instance());
        *self.instance.lock() = instance;
    }

    /// The channel's id: unique while kmcl is loaded; names the channel in
    /// trace events and in its debugfs directory.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// Allocates a disabled channel on `bus` (KMCL `VmbChannelAllocate`).
    pub(crate) fn new(role: Role, bus: Arc<dyn Bus>) -> Result<Arc<Self>> {
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
                    primary: None,
                }),
                turn <- new_mutex!(()),
                sub_turn <- new_mutex!(()),
                is_sub: core::sync::atomic::AtomicBool::new(false),
                turn_owner: core::sync::atomic::AtomicUsize::new(0),
                sub_turns <- new_mutex!(KVec::new()),
                rx_owner: core::sync::atomic::AtomicUsize::new(0),
                deferral_owner: core::sync::atomic::AtomicUsize::new(0),
                link: core::sync::atomic::AtomicUsize::new(0),
                instance <- new_spinlock_irq!([0; 16]),
                events <- new_spinlock_irq!(KVec::new()),
                work <- new_work!("kmcl::Channel::work"),
                data <- new_irq_spinlock!(None),
                rx <- new_irq_spinlock!(RxState {
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
                    last_failure: None,
                    passive_active: false,
                    waiters: 0,
                    pool: KVec::new(),
                    reserve: None,
                    no_memory: 0,
                    callbacks: None,
                }),
                rx_task_work <- new_work!("kmcl::Channel::rx_task_work"),
                deferred <- new_irq_spinlock!(KVec::new()),
                passive_work <- new_work!("kmcl::Channel::passive_work"),
                replenish_work <- new_work!("kmcl::Channel::replenish_work"),
                release_work <- new_work!("kmcl::Channel::release_work"),
                replenish_len: core::sync::atomic::AtomicUsize::new(0),
                replenish_failing: core::sync::atomic::AtomicBool::new(false),
                epoch: core::sync::atomic::AtomicU32::new(0),
                pointer: core::sync::atomic::AtomicUsize::new(0),
                subchannel_index: core::sync::atomic::AtomicU32::new(0),
                at_passive: core::sync::atomic::AtomicBool::new(false),
                halted: core::sync::atomic::AtomicBool::new(false),
                target_cpu: core::sync::atomic::AtomicU32::new(NO_TARGET_CPU),
                signals_sent: core::sync::atomic::AtomicU64::new(0),
                signals_received: core::sync::atomic::AtomicU64::new(0),
                latency: core::sync::atomic::AtomicU32::new(0),
                signals_coalesced: core::sync::atomic::AtomicU64::new(0),
                signal_timer: crate::sys::queues::Timer::new()?,
                trim_timer: crate::sys::queues::Timer::new()?,
                rx_changed <- new_condvar!(),
                rx_work <- new_work!("kmcl::Channel::rx_work"),
                gpadl <- gpadl::Gpadls::new(),
                exposed <- Exposed::new(),
                transfer <- new_spinlock_irq!(Arc::pin_init(TransferSets::new(), GFP_KERNEL)?),
                mmio <- new_spinlock_irq!((false, None)),
                running_written: core::sync::atomic::AtomicBool::new(false),
                catch: crate::engine::datapath::handoff::Catch::new(),
            }),
            GFP_KERNEL,
        )
    }

    /// The rings of the current connection (outgoing of the client,
    /// outgoing of the server), for tests that play a misbehaving
    /// endpoint.
    #[cfg(kmcl_kunit)]
    pub(crate) fn connection_rings(
        &self,
    ) -> Option<(Arc<crate::shmem::RingPages>, Arc<crate::shmem::RingPages>)> {
        self.control.lock().connection.as_ref()?.rings()
    }

    /// The channel's role.
    pub(crate) fn role(&self) -> Role {
        self.role
    }

    /// The bus the channel belongs to.
    pub(crate) fn bus(&self) -> Arc<dyn Bus> {
        self.bus.lock().clone()
    }

    /// KMCL `VmbServerChannelInitSetVmbusHandle`: puts the channel on
    /// `bus` (kmcl: clients too). Only while disabled (`-EBUSY`).
    pub(crate) fn set_bus(&self, bus: Arc<dyn Bus>) -> Result {
        self.init_time(|_| {
            *self.bus.lock() = bus;
            Ok(())
        })
    }
}

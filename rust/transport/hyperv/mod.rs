// SPDX-License-Identifier: GPL-2.0

//! Client channels on the channels a VMBus host (Hyper-V) offers, through
//! Linux's `hv_vmbus`.
//!
//! The host's offers reach kmcl as VMBus devices that `hv_vmbus` binds to
//! a driver of kmcl's: when the first client channel targeting an
//! interface type is enabled, kmcl asks `hv_vmbus` for the devices of that
//! type ([`HostOps::watch`], an `hv_driver` whose id table has the type).
//! Each device bound to kmcl is an offer here; a client targeting its type
//! (and instance, unless it accepts any) is connected to the first free
//! one, now or when one is probed, exactly as on the loopback bus. The
//! client's control work then opens the device's channel
//! ([`HostOps::open`], `vmbus_open()`) and runs kmcl's own ring reader and
//! writer on the rings `hv_vmbus` mapped: the data path is the loopback
//! one, with `vmbus_setevent()` as the signal and the channel callback
//! (`hv_vmbus`'s tasklet) kicking the channel's receive work.
//!
//! Offers and waiting clients are kept in the table both buses share
//! ([`crate::transport::offers`]).
//!
//! A device that goes away (rescind, or its driver unregistered) is
//! removed: the client gets Suspend and Closed, and `remove` returns once
//! it has closed the device's channel.
//!
//! Sub-channels: once a client opened a device's primary channel, the
//! host's sub-channel offers for it (`hv_vmbus`'s sc-create callback,
//! [`HostBus::subchannel`]) are offers only that client's sub-channels
//! take, and the client hears of each (SubchannelOffered), as on the
//! loopback bus. Each is opened on its own rings (`vmbus_open()` on the
//! sub-channel); its interrupt comes on the CPU `hv_vmbus` chose for it
//! (sysfs `channels/<relid>/cpu` moves it). `hv_vmbus` closes
//! sub-channels only with their primary: a sub-channel whose client left
//! stays open, unused, until then, and is not offered again. The
//! primary's client leaving first ends every sub-channel's client
//! (Suspend, Closed), then closes the primary. `hv_vmbus` tells no driver
//! of a sub-channel's rescind; kmcl notices it at the channel's next
//! signal (`channel->rescind`), and only that sub-channel's client closes.
//!
//! Without a VMBus host `hv_vmbus` refuses drivers (`-ENODEV`); a client
//! targeting the host gets PnpFailure with that status.

use core::ffi::c_void;
use core::ptr::NonNull;

use kernel::{
    prelude::*,
    sync::{
        new_mutex,
        Arc,
        Mutex, //
    },
};

use crate::{
    engine::{
        channel::{
            Channel,
            Link,
            PeerEvent,
            Settings, //
        },
        types::{
            Guid,
            GuidText,
            MmioSpace,
            RingPageCounts, //
        },
    },
    shmem::{
        GpadlPages,
        RingPages, //
    },
    transport::offers::{
        Offer,
        OfferState,
        OfferTable,
        Target, //
    },
};

mod bounce;
mod link;
pub(crate) mod vmbus;

#[cfg(kmcl_kunit)]
mod interop;
#[cfg(kmcl_kunit)]
mod interop_tests;
#[cfg(kmcl_kunit)]
mod transport_tests;

pub(crate) use link::HostLink;

/// A VMBus device (`struct hv_device`) bound to kmcl; opaque.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Device(pub(crate) NonNull<c_void>);

// SAFETY: `Device` is only an address; every function kmcl calls on it
// (hv_vmbus's) may be called from any thread.
unsafe impl Send for Device {}

// SAFETY: As for `Send`: nothing is reached through a shared `Device`
// except by hv_vmbus functions that do their own locking.
unsafe impl Sync for Device {}

/// A VMBus channel (`struct vmbus_channel`) of a device bound to kmcl:
/// its primary channel or one of its sub-channels; opaque.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HostChannel(pub(crate) NonNull<c_void>);

// SAFETY: `HostChannel` is only an address; every function kmcl calls on
// it (hv_vmbus's) may be called from any thread.
unsafe impl Send for HostChannel {}

// SAFETY: As for `Send`.
unsafe impl Sync for HostChannel {}

/// The rings of a channel that [`HostOps::open`] opened:
/// (outgoing, incoming).
pub(crate) type HostRings = (RingPages, RingPages);

/// What kmcl needs of `hv_vmbus`. The real implementation is
/// `crate::transport::hyperv::vmbus::HvVmbus`; KUnit tests use a stand-in with made-up devices.
pub(crate) trait HostOps: Send + Sync {
    /// Whether a VMBus host exists.
    fn present(&self) -> bool;

    /// Asks for the devices of interface type `ty`: from now on
    /// `HostBus::probe` and `HostBus::remove` of `bus` are called for each
    /// (also for those that exist already). Returns a token for
    /// [`Self::unwatch`]. The bus must stay alive until then.
    fn watch(&self, bus: &HostBus, ty: &Guid) -> Result<usize>;

    /// Stops watching (`token` from [`Self::watch`]); devices still bound
    /// are removed first.
    fn unwatch(&self, token: usize);

    /// Opens channel `ch` with rings of `pages` (outgoing, incoming) data
    /// pages, the host's packets limited to `max_packet` bytes; until it
    /// is closed, each channel interrupt calls `HostLink::interrupt` of
    /// `link`. A device's primary channel also passes the host's
    /// sub-channel offers to `HostBus::subchannel` until it closes.
    /// Process context.
    fn open(
        &self,
        ch: HostChannel,
        link: &HostLink,
        pages: RingPageCounts,
        max_packet: u32,
    ) -> Result<HostRings>;

    /// Closes channel `ch`: for a primary channel, it and its
    /// sub-channels, no channel interrupt of them after this returns; for
    /// a sub-channel nothing (`hv_vmbus` closes sub-channels only with
    /// their primary: its interrupts go on reaching its link). Process
    /// context.
    ///
    /// # Safety
    ///
    /// The rings [`Self::open`] returned for `ch` (and, for a primary, for
    /// its sub-channels) must have been dropped.
    unsafe fn close(&self, ch: HostChannel);

    /// Signals the host that channel `ch` needs attention; whether the
    /// host rescinded it. Any context.
    fn signal(&self, ch: HostChannel) -> bool;

    /// Makes the open channel `ch` signal the host directly (`on`,
    /// `hv_vmbus`'s `low_latency`) or through its monitor page, if the
    /// host gave it one. Any context.
    fn set_low_latency(&self, ch: HostChannel, on: bool);

    /// Whether external data on channel `ch` must reach the host through
    /// the DMA API ([`Self::dma_map`]): in an isolated (confidential) VM
    /// the host cannot read private memory, unless `ch` is a confidential
    /// VMBus channel (`co_external_memory`). Any context.
    fn bounces_external(&self, ch: HostChannel) -> bool;

    /// Maps the piece `(page, offset, len)` (within one 4-KiB frame) for
    /// the host of `dev`, both ways (`dma_map_page()`: in an isolated VM a
    /// swiotlb bounce buffer the host can reach, filled now, keeping the
    /// piece's place in its frame); returns the bus address. Any context.
    ///
    /// # Safety
    ///
    /// The page is valid, the piece within it, and it stays allocated
    /// until [`Self::dma_unmap`] of the mapping.
    unsafe fn dma_map(
        &self,
        dev: Device,
        piece: (*mut crate::shmem::Page, u32, u32),
    ) -> Result<u64>;

    /// Ends a mapping of [`Self::dma_map`]: what the host wrote reaches the
    /// page. Any context.
    ///
    /// # Safety
    ///
    /// `(addr, len)` came from [`Self::dma_map`] for `dev`, is unmapped
    /// once, and the host no longer uses it (the transaction completed or
    /// the channel closed).
    unsafe fn dma_unmap(&self, dev: Device, addr: u64, len: u32);

    /// Shares the whole pages of `pages` with the host as a GPADL of the
    /// open channel `ch` (`vmbus_establish_gpadl()`): returns (handle,
    /// token for [`Self::delete_gpadl`]). Process context.
    fn create_gpadl(&self, ch: HostChannel, pages: &GpadlPages) -> Result<(u32, usize)>;

    /// Reserves and maps the MMIO space `dev`'s offer asks for
    /// (`vmbus_allocate_mmio()`): `None` if it asks for none, else (the
    /// space: mapping, bytes and physical start; token for
    /// [`Self::free_mmio`]). Process context.
    fn allocate_mmio(&self, dev: Device) -> Result<Option<(MmioSpace, usize)>>;

    /// Releases MMIO space from [`Self::allocate_mmio`]. Process context.
    fn free_mmio(&self, dev: Device, token: usize);

    /// Tears down the GPADL `token` of channel `ch`
    /// (`vmbus_teardown_gpadl()`); on an error the host may still use the
    /// pages. Process context.
    fn delete_gpadl(&self, ch: HostChannel, token: usize) -> Result;
}

/// [`HostOps`] where no VMBus host exists: every request is refused.
pub(crate) struct NoHost;

impl HostOps for NoHost {
    fn present(&self) -> bool {
        false
    }
    fn watch(&self, _bus: &HostBus, _ty: &Guid) -> Result<usize> {
        Err(ENODEV)
    }
    fn unwatch(&self, _token: usize) {}
    fn open(
        &self,
        _c: HostChannel,
        _l: &HostLink,
        _p: RingPageCounts,
        _m: u32,
    ) -> Result<HostRings> {
        Err(ENODEV)
    }
    unsafe fn close(&self, _ch: HostChannel) {}
    fn signal(&self, _ch: HostChannel) -> bool {
        false
    }
    fn set_low_latency(&self, _ch: HostChannel, _on: bool) {}
    fn bounces_external(&self, _ch: HostChannel) -> bool {
        false
    }
    unsafe fn dma_map(&self, _d: Device, _p: (*mut crate::shmem::Page, u32, u32)) -> Result<u64> {
        Err(ENODEV)
    }
    unsafe fn dma_unmap(&self, _d: Device, _a: u64, _l: u32) {}
    fn create_gpadl(&self, _ch: HostChannel, _pages: &GpadlPages) -> Result<(u32, usize)> {
        Err(ENODEV)
    }
    fn delete_gpadl(&self, _ch: HostChannel, _token: usize) -> Result {
        Err(ENODEV)
    }
    fn allocate_mmio(&self, _dev: Device) -> Result<Option<(MmioSpace, usize)>> {
        Err(ENODEV)
    }
    fn free_mmio(&self, _dev: Device, _token: usize) {}
}

/// What the host's table keeps about a channel of a device bound to kmcl:
/// its primary channel (the device's offer) or a sub-channel.
struct DeviceOffer {
    dev: Device,
    /// The channel a client of this offer opens.
    channel: HostChannel,
    /// 0: the device's primary channel; 1..: a sub-channel's index.
    index: u16,
    /// A sub-channel's: the address of the client its primary serves.
    primary_client: usize,
    /// The connection of the client using it. A sub-channel keeps it
    /// after its client left (the channel stays open, its interrupt
    /// reaching the link, until the primary closes).
    link: Option<Arc<HostLink>>,
    /// Being removed: no new client.
    removing: bool,
    /// Suspended for hibernation: no client until it resumes.
    suspended: bool,
    /// A primary channel's: its client is leaving and its sub-channels
    /// end; a sub-channel offered now (hv_vmbus's callback may run late)
    /// is not taken.
    subs_ended: bool,
}

impl OfferState for DeviceOffer {
    fn is_free(&self) -> bool {
        self.link.is_none() && !self.removing && !self.suspended
    }

    fn subchannel_of(&self) -> usize {
        self.primary_client
    }
}

struct OffersInner {
    table: OfferTable<DeviceOffer>,
    /// Interface types watched, with their tokens.
    watched: KVec<(Guid, usize)>,
}

/// The devices bound to kmcl and the clients waiting for one: shared by
/// the bus and its links (a client leaving frees its device for the next).
#[pin_data]
pub(crate) struct HostOffers {
    ops: Arc<dyn HostOps>,
    #[pin]
    inner: Mutex<OffersInner>,
}

/// The VMBus host's offers, as `hv_vmbus` binds them to kmcl.
/// Nothing of it is released on drop, which may happen in softirq context
/// (with the last channel): [`HostBus::unwatch_all`] ends the watching, in
/// process context, before the owner lets go of it.
#[pin_data]
pub(crate) struct HostBus {
    offers: Arc<HostOffers>,
    /// Serialises [`HostOps::watch`] calls (which probe, taking the
    /// offers' lock).
    #[pin]
    watching: Mutex<()>,
}

impl HostBus {
    /// A bus over `ops`.
    pub(crate) fn new(ops: Arc<dyn HostOps>) -> Result<Arc<Self>> {
        let offers = Arc::pin_init(
            pin_init!(HostOffers {
                ops,
                inner <- new_mutex!(OffersInner {
                    table: OfferTable::new(),
                    watched: KVec::new(),
                }),
            }),
            GFP_KERNEL,
        )?;
        Arc::pin_init(
            pin_init!(HostBus {
                offers,
                watching <- new_mutex!(()),
            }),
            GFP_KERNEL,
        )
    }

    /// A bus without a VMBus host.
    pub(crate) fn none() -> Result<Arc<Self>> {
        let ops: Arc<dyn HostOps> = Arc::new(NoHost, GFP_KERNEL)?;
        Self::new(ops)
    }

    /// Whether a VMBus host exists.
    pub(crate) fn present(&self) -> bool {
        self.offers.ops.present()
    }

    /// Connects `client` to a matching free device, or records it as
    /// waiting for one. Without a host (or if `hv_vmbus` refuses kmcl's
    /// driver) the client is told its connect failed (PnpFailure).
    pub(crate) fn seek(&self, client: &Arc<Channel>, settings: &Settings) -> Result {
        let ty = settings.interface_type;
        if let Err(e) = self.watch(&ty) {
            let why = if e == ENODEV {
                "no VMBus host (hv_vmbus inactive)"
            } else {
                "hv_vmbus refused kmcl's driver"
            };
            pr_warn!(
                "channel {}: cannot open a VMBus host channel of type {}: {} ({:?}); PnpFailure\n",
                client.id(),
                GuidText(&ty),
                why,
                e
            );
            client.reserve_event()?;
            client.post_reserved(PeerEvent::ConnectFailed(e));
            return Ok(());
        }
        self.offers.seek(client, Target::of(settings))
    }

    /// Makes sure the devices of type `ty` come to kmcl.
    fn watch(&self, ty: &Guid) -> Result {
        let _serial = self.watching.lock();
        if self
            .offers
            .inner
            .lock()
            .watched
            .iter()
            .any(|(t, _)| t == ty)
        {
            return Ok(());
        }
        // Not under the offers' lock: existing devices are probed right
        // here.
        let token = self.offers.ops.watch(self, ty)?;
        let mut inner = self.offers.inner.lock();
        if inner.watched.push((*ty, token), GFP_KERNEL).is_err() {
            drop(inner);
            self.offers.ops.unwatch(token);
            return Err(ENOMEM);
        }
        Ok(())
    }

    /// Connects `client`, a sub-channel of client `primary`, to a free
    /// sub-channel offer of the device `primary` is connected to, now or
    /// when the host offers one. `-ENOTCONN` if `primary` is not
    /// connected to a device of this host.
    pub(crate) fn seek_subchannel(
        &self,
        client: &Arc<Channel>,
        settings: &Settings,
        primary: &Arc<Channel>,
    ) -> Result {
        self.offers.seek_subchannel(client, settings, primary)
    }

    /// Forgets `client` if it is still waiting.
    pub(crate) fn cancel_seek(&self, client: &Arc<Channel>) {
        self.offers.inner.lock().table.cancel(client);
    }

    /// `hv_vmbus` bound device `dev`, whose primary channel is `channel`,
    /// to kmcl. Process context.
    pub(crate) fn probe(
        &self,
        dev: Device,
        channel: HostChannel,
        interface_type: Guid,
        interface_instance: Guid,
    ) -> Result {
        self.offers
            .probe(dev, channel, interface_type, interface_instance)
    }

    /// The host offers sub-channel `sc` (index `index`) of device `dev`'s
    /// primary channel (`hv_vmbus`'s sc-create callback): an offer for
    /// the client of the primary, who is told (SubchannelOffered). Ignored
    /// unless a client has the primary. Process context.
    pub(crate) fn subchannel(&self, dev: Device, sc: HostChannel, index: u16) {
        self.offers.subchannel(dev, sc, index)
    }

    /// Device `dev` goes away: its client (if any) is told to close, and
    /// this returns once it has left, as [`Channel::await_departure`] says;
    /// if it does not (a callback of it hangs), kmcl closes the device's
    /// channel itself (hv_vmbus frees it next). Process context.
    pub(crate) fn remove(&self, dev: Device) {
        self.offers.remove(dev)
    }

    /// Device `dev` is suspended for hibernation (`hv_vmbus` calls the
    /// driver's suspend in its noirq phase): its client gets Suspend and
    /// Closed (its sub-channels' clients too) and looks for the device
    /// again; this returns once the client has closed the device's
    /// channel (bounded, as [`Self::remove`]). Process context.
    pub(crate) fn suspend(&self, dev: Device) {
        self.offers.suspend(dev)
    }

    /// Device `dev` is back after hibernation: a client waiting for it
    /// (the one it had, or another) opens it afresh (Opened, Started,
    /// PostStarted). Process context.
    pub(crate) fn resume(&self, dev: Device) {
        self.offers.resume(dev)
    }

    /// Stops watching every interface type (kmcl's module exit, once no
    /// channel is left): the devices are removed. Process context.
    pub(crate) fn unwatch_all(&self) {
        let watched = core::mem::take(&mut self.offers.inner.lock().watched);
        for (_, token) in watched.iter() {
            self.offers.ops.unwatch(*token);
        }
    }

    /// The devices bound now (for tests).
    #[cfg(kmcl_kunit)]
    pub(crate) fn offers(&self) -> usize {
        self.offers.inner.lock().table.offers.len()
    }
}

/// The offer of device `dev`'s primary channel in `table`.
fn primary_offer(table: &OfferTable<DeviceOffer>, dev: Device) -> Option<usize> {
    table
        .offers
        .iter()
        .position(|o| o.state.dev == dev && o.state.index == 0)
}

impl HostOffers {
    fn seek(self: &Arc<Self>, client: &Arc<Channel>, target: Target) -> Result {
        let mut inner = self.inner.lock();
        if let Some(idx) = inner.table.find(&target) {
            return self.connect(&mut inner.table, idx, client, target.pages);
        }
        inner.table.wait(client, target)
    }

    fn seek_subchannel(
        self: &Arc<Self>,
        client: &Arc<Channel>,
        settings: &Settings,
        primary: &Arc<Channel>,
    ) -> Result {
        let mut inner = self.inner.lock();
        let serves = inner.table.offers.iter().any(|o| {
            o.state.index == 0
                && !o.state.removing
                && !o.state.subs_ended
                && o.state
                    .link
                    .as_ref()
                    .is_some_and(|l| Arc::ptr_eq(l.client(), primary))
        });
        if !serves {
            return Err(ENOTCONN);
        }
        let target = Target {
            primary: Arc::as_ptr(primary) as usize,
            ..Target::of(settings)
        };
        if let Some(idx) = inner.table.find(&target) {
            return self.connect(&mut inner.table, idx, client, target.pages);
        }
        inner.table.wait(client, target)
    }

    fn probe(
        self: &Arc<Self>,
        dev: Device,
        channel: HostChannel,
        interface_type: Guid,
        interface_instance: Guid,
    ) -> Result {
        let mut inner = self.inner.lock();
        let idx = inner.table.add(Offer {
            interface_type,
            interface_instance,
            vtl: None,
            state: DeviceOffer {
                dev,
                channel,
                index: 0,
                primary_client: 0,
                link: None,
                removing: false,
                suspended: false,
                subs_ended: false,
            },
        })?;
        self.serve_waiting(&mut inner.table, idx);
        Ok(())
    }

    fn subchannel(self: &Arc<Self>, dev: Device, sc: HostChannel, index: u16) {
        let mut inner = self.inner.lock();
        let table = &mut inner.table;
        if index == 0 || table.offers.iter().any(|o| o.state.channel == sc) {
            return;
        }
        let Some(p) = primary_offer(table, dev)
            .map(|i| &table.offers[i])
            .filter(|p| !p.state.removing && !p.state.subs_ended)
        else {
            return;
        };
        // Offered while the primary's client is leaving (hv_vmbus may run
        // the callback late): nobody takes it.
        let Some(plink) = p.state.link.clone() else {
            return;
        };
        let (interface_type, interface_instance) = (p.interface_type, p.interface_instance);
        let client = plink.client().clone();
        let added = client.reserve_event().and_then(|()| {
            table.add(Offer {
                interface_type,
                interface_instance,
                vtl: None,
                state: DeviceOffer {
                    dev,
                    channel: sc,
                    index,
                    primary_client: Arc::as_ptr(&client) as usize,
                    link: None,
                    removing: false,
                    suspended: false,
                    subs_ended: false,
                },
            })
        });
        let idx = match added {
            Ok(idx) => idx,
            Err(e) => {
                pr_warn!(
                    "channel {}: sub-channel {} of its VMBus device not taken: {:?}\n",
                    client.id(),
                    index,
                    e
                );
                return;
            }
        };
        let link: Arc<dyn Link> = plink;
        client.post_reserved(PeerEvent::SubchannelOffered(link, index));
        self.serve_waiting(table, idx);
    }

    /// The primary channel of `dev` closes: each of its sub-channels ends
    /// (no new client; a client still there is told to close and waited
    /// for, as a device's removal waits). The offers stay until
    /// [`Self::forget_subchannels`], after the primary closed. Process
    /// context.
    fn end_subchannels(&self, dev: Device) {
        {
            let mut inner = self.inner.lock();
            if let Some(i) = primary_offer(&inner.table, dev) {
                inner.table.offers[i].state.subs_ended = true;
            }
        }
        loop {
            let link = {
                let mut inner = self.inner.lock();
                let Some(o) = inner
                    .table
                    .offers
                    .iter_mut()
                    .find(|o| o.state.dev == dev && o.state.index != 0 && !o.state.removing)
                else {
                    return;
                };
                o.state.removing = true;
                o.state.link.clone()
            };
            if let Some(link) = link.filter(|l| l.is_attached()) {
                link.tell_closed();
                if !link.client().await_departure(|ms| link.wait_detached(ms)) {
                    link.abandon();
                }
            }
        }
    }

    /// The primary channel of `dev` closed, and its sub-channels with it:
    /// their offers (and links) go.
    fn forget_subchannels(&self, dev: Device) {
        self.inner
            .lock()
            .table
            .offers
            .retain(|o| o.state.dev != dev || o.state.index == 0);
    }

    fn suspend(&self, dev: Device) {
        self.take_away(dev, true);
    }

    /// Device `dev`'s client (if any) is told the device is suspended
    /// (`suspend`) or gone, and waited for until it left, as
    /// [`Channel::await_departure`] says; if it does not leave, kmcl closes
    /// the device's channel itself. The device takes no client meanwhile.
    fn take_away(&self, dev: Device, suspend: bool) {
        let link = {
            let mut inner = self.inner.lock();
            let Some(i) = primary_offer(&inner.table, dev) else {
                return;
            };
            let offer = &mut inner.table.offers[i];
            if suspend {
                offer.state.suspended = true;
            } else {
                offer.state.removing = true;
            }
            offer.state.link.clone()
        };
        if let Some(link) = link {
            if suspend {
                link.tell_suspended();
            } else {
                link.tell_closed();
            }
            if !link.client().await_departure(|ms| link.wait_detached(ms)) {
                link.abandon();
            }
        }
    }

    fn resume(self: &Arc<Self>, dev: Device) {
        let mut inner = self.inner.lock();
        let Some(idx) = primary_offer(&inner.table, dev) else {
            return;
        };
        inner.table.offers[idx].state.suspended = false;
        if inner.table.offers[idx].state.is_free() {
            self.serve_waiting(&mut inner.table, idx);
        }
    }

    fn remove(&self, dev: Device) {
        self.take_away(dev, false);
        self.inner
            .lock()
            .table
            .offers
            .retain(|o| o.state.dev != dev);
    }

    /// The client of channel `ch` left: a device's primary channel is
    /// free for the next one; a sub-channel is not offered again (it stays
    /// open until its primary closes).
    fn release(self: &Arc<Self>, ch: HostChannel) {
        let mut inner = self.inner.lock();
        if let Some(idx) = inner
            .table
            .offers
            .iter()
            .position(|o| o.state.channel == ch && o.state.index == 0)
        {
            inner.table.offers[idx].state.link = None;
            inner.table.offers[idx].state.subs_ended = false;
            if inner.table.offers[idx].state.is_free() {
                self.serve_waiting(&mut inner.table, idx);
            }
        }
    }

    fn serve_waiting(self: &Arc<Self>, table: &mut OfferTable<DeviceOffer>, idx: usize) {
        let Some((pos, client, target)) = table.first_waiting_for(idx) else {
            return;
        };
        match self.connect(table, idx, &client, target.pages) {
            Ok(()) => table.served(pos),
            Err(e) => pr_warn!("could not connect a waiting client: {:?}\n", e),
        }
    }

    fn connect(
        self: &Arc<Self>,
        table: &mut OfferTable<DeviceOffer>,
        idx: usize,
        client: &Arc<Channel>,
        pages: RingPageCounts,
    ) -> Result {
        let offer = &table.offers[idx];
        let link = HostLink::new(
            self.clone(),
            client.clone(),
            self.ops.clone(),
            (offer.state.dev, offer.state.channel, offer.state.index),
            offer.interface_instance,
            pages,
        )?;
        client.reserve_event()?;
        table.offers[idx].state.link = Some(link.clone());
        let link: Arc<dyn Link> = link;
        client.post_reserved(PeerEvent::Connected(link));
        Ok(())
    }
}

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
//! A device that goes away (rescind, or its driver unregistered) is
//! removed: the client gets Suspend and Closed, and `remove` returns once
//! it has closed the device's channel.
//!
//! Without a VMBus host `hv_vmbus` refuses drivers (`-ENODEV`); a client
//! targeting the host gets PnpFailure with that status.

use core::ffi::c_void;
use core::ptr::NonNull;

use kernel::{
    prelude::*,
    sync::{
        new_condvar,
        new_mutex,
        Arc,
        CondVar,
        Mutex, //
    },
};

use super::channel::{
    Channel,
    PeerEvent,
    Settings, //
};
use super::datapath::{
    DataPath,
    Peer, //
};
use super::link::Link;
use super::types::{
    DataPathLimits,
    Guid,
    GuidText,
    RingPageCounts, //
};

use crate::shmem::{
    GpadlPages,
    RingPages, //
};

/// A VMBus device (`struct hv_device`) bound to kmcl; opaque.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Device(pub(crate) NonNull<c_void>);

// SAFETY: `Device` is only an address; every function kmcl calls on it
// (hv_vmbus's) may be called from any thread.
unsafe impl Send for Device {}

// SAFETY: As for `Send`: nothing is reached through a shared `Device`
// except by hv_vmbus functions that do their own locking.
unsafe impl Sync for Device {}

/// The rings of a device's channel that [`HostOps::open`] opened:
/// (outgoing, incoming).
pub(crate) type HostRings = (RingPages, RingPages);

/// What kmcl needs of `hv_vmbus`. The real implementation is
/// `crate::hv::HvVmbus`; KUnit tests use a stand-in with made-up devices.
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

    /// Opens `dev`'s channel with rings of `pages` (outgoing, incoming)
    /// data pages, the host's packets limited to `max_packet` bytes; until
    /// it is closed, each channel interrupt calls `HostLink::interrupt` of
    /// `link`. Process context.
    fn open(
        &self,
        dev: Device,
        link: &HostLink,
        pages: RingPageCounts,
        max_packet: u32,
    ) -> Result<HostRings>;

    /// Closes `dev`'s channel: no channel interrupt after this returns.
    /// Process context.
    ///
    /// # Safety
    ///
    /// The rings [`Self::open`] returned for `dev` must have been dropped.
    unsafe fn close(&self, dev: Device);

    /// Signals the host that `dev`'s channel needs attention. Any context.
    fn signal(&self, dev: Device);

    /// Whether the host may be given guest memory by page number (GPADLs,
    /// external data): not in an isolated (confidential) VM, where memory
    /// must be decrypted for the host first.
    fn shares_memory(&self) -> bool;

    /// Shares the whole pages of `pages` with the host as a GPADL of
    /// `dev`'s open channel (`vmbus_establish_gpadl()`): returns (handle,
    /// token for [`Self::delete_gpadl`]). Process context.
    fn create_gpadl(&self, dev: Device, pages: &GpadlPages) -> Result<(u32, usize)>;

    /// Reserves and maps the MMIO space `dev`'s offer asks for
    /// (`vmbus_allocate_mmio()`): `None` if it asks for none, else
    /// (kernel virtual address, bytes, token for [`Self::free_mmio`]).
    /// Process context.
    fn allocate_mmio(&self, dev: Device) -> Result<Option<(usize, usize, usize)>>;

    /// Releases MMIO space from [`Self::allocate_mmio`]. Process context.
    fn free_mmio(&self, dev: Device, token: usize);

    /// Tears down the GPADL `token` of `dev`'s channel
    /// (`vmbus_teardown_gpadl()`); on an error the host may still use the
    /// pages. Process context.
    fn delete_gpadl(&self, dev: Device, token: usize) -> Result;
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
    fn open(&self, _d: Device, _l: &HostLink, _p: RingPageCounts, _m: u32) -> Result<HostRings> {
        Err(ENODEV)
    }
    unsafe fn close(&self, _dev: Device) {}
    fn signal(&self, _dev: Device) {}
    fn shares_memory(&self) -> bool {
        false
    }
    fn create_gpadl(&self, _dev: Device, _pages: &GpadlPages) -> Result<(u32, usize)> {
        Err(ENODEV)
    }
    fn delete_gpadl(&self, _dev: Device, _token: usize) -> Result {
        Err(ENODEV)
    }
    fn allocate_mmio(&self, _dev: Device) -> Result<Option<(usize, usize, usize)>> {
        Err(ENODEV)
    }
    fn free_mmio(&self, _dev: Device, _token: usize) {}
}

/// A device bound to kmcl: an offer of the host.
struct Offer {
    dev: Device,
    interface_type: Guid,
    interface_instance: Guid,
    /// The connection of the client using it.
    link: Option<Arc<HostLink>>,
    /// Being removed: no new client.
    removing: bool,
}

/// A client channel waiting for an offer.
struct Waiting {
    client: Arc<Channel>,
    interface_type: Guid,
    /// All zeroes: any instance.
    interface_instance: Guid,
    /// Ring data pages: (outgoing, incoming).
    pages: RingPageCounts,
}

impl Waiting {
    fn matches(&self, offer: &Offer) -> bool {
        offer.link.is_none()
            && !offer.removing
            && self.interface_type == offer.interface_type
            && (self.interface_instance == [0; 16]
                || self.interface_instance == offer.interface_instance)
    }
}

struct BusInner {
    offers: KVec<Offer>,
    waiting: KVec<Waiting>,
    /// Interface types watched, with their tokens.
    watched: KVec<(Guid, usize)>,
}

/// The VMBus host's offers, as `hv_vmbus` binds them to kmcl.
/// Nothing of it is released on drop, which may happen in softirq context
/// (with the last channel): [`HostBus::unwatch_all`] ends the watching, in
/// process context, before the owner lets go of it.
#[pin_data]
pub(crate) struct HostBus {
    ops: Arc<dyn HostOps>,
    #[pin]
    inner: Mutex<BusInner>,
    /// Serialises [`HostOps::watch`] calls (which probe, taking `inner`).
    #[pin]
    watching: Mutex<()>,
}

impl HostBus {
    /// A bus over `ops`.
    pub(crate) fn new(ops: Arc<dyn HostOps>) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(HostBus {
                ops,
                inner <- new_mutex!(BusInner {
                    offers: KVec::new(),
                    waiting: KVec::new(),
                    watched: KVec::new(),
                }),
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
        self.ops.present()
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
        let mut bus = self.inner.lock();
        let waiting = Waiting {
            client: client.clone(),
            interface_type: ty,
            interface_instance: settings.interface_instance,
            pages: RingPageCounts {
                outgoing: settings.outgoing_pages,
                incoming: settings.incoming_pages,
            },
        };
        if let Some(idx) = bus.offers.iter().position(|o| waiting.matches(o)) {
            return self.connect(&mut bus, idx, client, waiting.pages);
        }
        bus.waiting.push(waiting, GFP_KERNEL)?;
        Ok(())
    }

    /// Makes sure the devices of type `ty` come to kmcl.
    fn watch(&self, ty: &Guid) -> Result {
        let _serial = self.watching.lock();
        if self.inner.lock().watched.iter().any(|(t, _)| t == ty) {
            return Ok(());
        }
        // Not under `inner`: existing devices are probed right here.
        let token = self.ops.watch(self, ty)?;
        let mut bus = self.inner.lock();
        if bus.watched.push((*ty, token), GFP_KERNEL).is_err() {
            drop(bus);
            self.ops.unwatch(token);
            return Err(ENOMEM);
        }
        Ok(())
    }

    /// Forgets `client` if it is still waiting.
    pub(crate) fn cancel_seek(&self, client: &Arc<Channel>) {
        self.inner
            .lock()
            .waiting
            .retain(|w| !Arc::ptr_eq(&w.client, client));
    }

    /// `hv_vmbus` bound device `dev` to kmcl. Process context.
    pub(crate) fn probe(
        &self,
        dev: Device,
        interface_type: Guid,
        interface_instance: Guid,
    ) -> Result {
        let mut bus = self.inner.lock();
        bus.offers.push(
            Offer {
                dev,
                interface_type,
                interface_instance,
                link: None,
                removing: false,
            },
            GFP_KERNEL,
        )?;
        let idx = bus.offers.len() - 1;
        self.serve_waiting(&mut bus, idx);
        Ok(())
    }

    /// Device `dev` goes away: its client (if any) is told to close, and
    /// this returns once it has. Process context.
    pub(crate) fn remove(&self, dev: Device) {
        let link = {
            let mut bus = self.inner.lock();
            let Some(offer) = bus.offers.iter_mut().find(|o| o.dev == dev) else {
                return;
            };
            offer.removing = true;
            offer.link.clone()
        };
        if let Some(link) = link {
            if link
                .client
                .post(PeerEvent::Closed(Link::Host(link.clone())))
                .is_err()
            {
                pr_warn!("out of memory telling a client its VMBus device is gone\n");
            }
            link.wait_detached();
        }
        self.inner.lock().offers.retain(|o| o.dev != dev);
    }

    /// The client of `dev` left: the device is free for the next one.
    fn release(&self, dev: Device) {
        let mut bus = self.inner.lock();
        if let Some(idx) = bus.offers.iter().position(|o| o.dev == dev) {
            bus.offers[idx].link = None;
            if !bus.offers[idx].removing {
                self.serve_waiting(&mut bus, idx);
            }
        }
    }

    fn serve_waiting(&self, bus: &mut BusInner, idx: usize) {
        let Some(pos) = bus.waiting.iter().position(|w| w.matches(&bus.offers[idx])) else {
            return;
        };
        let client = bus.waiting[pos].client.clone();
        let pages = bus.waiting[pos].pages;
        match self.connect(bus, idx, &client, pages) {
            Ok(()) => {
                let _ = bus.waiting.remove(pos);
            }
            Err(e) => pr_warn!("could not connect a waiting client: {:?}\n", e),
        }
    }

    fn connect(
        &self,
        bus: &mut BusInner,
        idx: usize,
        client: &Arc<Channel>,
        pages: RingPageCounts,
    ) -> Result {
        let offer = &bus.offers[idx];
        let link = HostLink::new(
            client.clone(),
            self.ops.clone(),
            offer.dev,
            offer.interface_instance,
            pages,
        )?;
        client.reserve_event()?;
        bus.offers[idx].link = Some(link.clone());
        client.post_reserved(PeerEvent::Connected(Link::Host(link)));
        Ok(())
    }

    /// Stops watching every interface type (kmcl's module exit, once no
    /// channel is left): the devices are removed. Process context.
    pub(crate) fn unwatch_all(&self) {
        let watched = core::mem::take(&mut self.inner.lock().watched);
        for (_, token) in watched.iter() {
            self.ops.unwatch(*token);
        }
    }

    /// The devices bound now (for tests).
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn offers(&self) -> usize {
        self.inner.lock().offers.len()
    }
}

/// A client's connection to a device's channel.
#[pin_data]
pub(crate) struct HostLink {
    client: Arc<Channel>,
    ops: Arc<dyn HostOps>,
    dev: Device,
    instance: Guid,
    /// Ring data pages: (outgoing, incoming).
    pages: RingPageCounts,
    #[pin]
    state: Mutex<LinkState>,
    #[pin]
    left: CondVar,
    /// The client's GPADLs on the device's channel.
    #[pin]
    gpadls: Mutex<KVec<HostGpadl>>,
}

/// A GPADL the host has.
struct HostGpadl {
    handle: u32,
    token: usize,
    /// The memory, recorded until the host let go of it.
    _pages: GpadlPages,
}

struct LinkState {
    /// The device's channel is open.
    opened: bool,
    /// The offer's MMIO space while open: (address, bytes, token).
    mmio: Option<(usize, usize, usize)>,
    /// The client has not left yet.
    attached: bool,
}

impl HostLink {
    fn new(
        client: Arc<Channel>,
        ops: Arc<dyn HostOps>,
        dev: Device,
        instance: Guid,
        pages: RingPageCounts,
    ) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(HostLink {
                client,
                ops,
                dev,
                instance,
                pages,
                state <- new_mutex!(LinkState {
                    opened: false,
                    mmio: None,
                    attached: true,
                }),
                left <- new_condvar!(),
                gpadls <- new_mutex!(KVec::new()),
            }),
            GFP_KERNEL,
        )
    }

    /// Opens the device's channel and returns the client's data path on
    /// its rings. Process context.
    pub(crate) fn data_path(
        self: &Arc<Self>,
        channel: &Arc<Channel>,
        limits: DataPathLimits,
    ) -> Result<DataPath> {
        let mut st = self.state.lock();
        if st.opened || !st.attached {
            return Err(EBUSY);
        }
        let max_packet = u32::try_from(limits.max_packet).map_err(|_| EINVAL)?;
        let mmio = self.ops.allocate_mmio(self.dev)?;
        let (out, inc) = match self.ops.open(self.dev, self, self.pages, max_packet) {
            Ok(rings) => rings,
            Err(e) => {
                if let Some((_, _, token)) = mmio {
                    self.ops.free_mmio(self.dev, token);
                }
                return Err(e);
            }
        };
        st.opened = true;
        st.mmio = mmio;
        let dp = (|| {
            let out = Arc::new(out, GFP_KERNEL)?;
            let inc = Arc::new(inc, GFP_KERNEL)?;
            DataPath::new(out, inc, Peer::Host(self.clone()), channel.id(), limits)
        })();
        if dp.is_err() {
            // SAFETY: the closure above dropped the rings on its way out.
            unsafe { self.ops.close(self.dev) };
            st.opened = false;
            if let Some((_, _, token)) = st.mmio.take() {
                self.ops.free_mmio(self.dev, token);
            }
        }
        dp
    }

    /// The client leaves: the device's channel is closed (the client's
    /// data path, which uses its rings, is gone) and the device is free
    /// for the next client.
    pub(crate) fn detach(&self, bus: &HostBus) {
        {
            let mut st = self.state.lock();
            if !st.attached {
                return;
            }
            if st.opened {
                let left = self.delete_all_gpadls();
                if left > 0 {
                    pr_warn!(
                        "channel {}: {} GPADL(s) not deleted in Closed; kmcl tore them down\n",
                        self.client.id(),
                        left
                    );
                }
                // SAFETY: the client drops its data path (the only user of
                // the rings) before it leaves the connection (the
                // Disconnect action in `Channel::execute`; `data_path`
                // keeps no other reference).
                unsafe { self.ops.close(self.dev) };
                st.opened = false;
                if let Some((_, _, token)) = st.mmio.take() {
                    self.ops.free_mmio(self.dev, token);
                }
            }
            st.attached = false;
        }
        self.left.notify_all();
        bus.release(self.dev);
    }

    fn wait_detached(&self) {
        let mut st = self.state.lock();
        while st.attached {
            self.left.wait(&mut st);
        }
    }

    /// KMCL `CreateGpadl*` on the host: shares `pages` (whole pages; the
    /// host does not enforce read-only). `-EOPNOTSUPP` in an isolated VM.
    pub(crate) fn create_gpadl(&self, pages: GpadlPages) -> Result<u32> {
        if !self.ops.shares_memory() {
            return Err(EOPNOTSUPP);
        }
        // Lock order: `state`, then `gpadls` (as `detach`).
        let st = self.state.lock();
        if !st.opened {
            return Err(ENOTCONN);
        }
        let mut gpadls = self.gpadls.lock();
        gpadls.reserve(1, GFP_KERNEL)?;
        let (handle, token) = self.ops.create_gpadl(self.dev, &pages)?;
        gpadls
            .push_within_capacity(HostGpadl {
                handle,
                token,
                _pages: pages,
            })
            .map_err(|_| ENOMEM)?;
        Ok(handle)
    }

    /// KMCL `DeleteGpadl` on the host: `-ENOENT` for an unknown handle; on
    /// a teardown error the GPADL stays recorded (its pages may still be
    /// in use by the host).
    pub(crate) fn delete_gpadl(&self, handle: u32) -> Result {
        let mut gpadls = self.gpadls.lock();
        let i = gpadls
            .iter()
            .position(|g| g.handle == handle)
            .ok_or(ENOENT)?;
        self.ops.delete_gpadl(self.dev, gpadls[i].token)?;
        let _ = gpadls.remove(i);
        Ok(())
    }

    /// Tears down every GPADL left (the channel closes); returns how many
    /// there were.
    fn delete_all_gpadls(&self) -> usize {
        let left = core::mem::take(&mut *self.gpadls.lock());
        for g in left.iter() {
            if let Err(e) = self.ops.delete_gpadl(self.dev, g.token) {
                pr_err!(
                    "channel {}: GPADL {:#x} not torn down ({:?}); the host may still reach its memory\n",
                    self.client.id(),
                    g.handle,
                    e
                );
            }
        }
        left.len()
    }

    /// Whether the host may be given guest memory by page number.
    pub(crate) fn shares_memory(&self) -> bool {
        self.ops.shares_memory()
    }

    /// Tells the host to look at the rings.
    pub(crate) fn signal(&self) {
        self.ops.signal(self.dev);
    }

    /// The channel interrupt (from `hv_vmbus`'s channel tasklet): the
    /// client's receive work looks at the rings.
    pub(crate) fn interrupt(&self) {
        self.client.signalled();
    }

    /// The offer's MMIO space while the channel is open: (address, bytes).
    pub(crate) fn mmio_space(&self) -> Option<(usize, usize)> {
        self.state.lock().mmio.map(|(va, len, _)| (va, len))
    }

    /// The device's instance GUID.
    pub(crate) fn interface_instance(&self) -> Guid {
        self.instance
    }
}

// SPDX-License-Identifier: GPL-2.0

//! kmcl's in-guest loopback VMBus.
//!
//! Server channels offer an interface (type and instance GUIDs); a client
//! channel that targets the same interface type (and the instance, unless
//! it accepts any) is connected to the first free matching offer, now if
//! one exists, or as soon as one appears (a client may be enabled before
//! the server offers). Each offer serves one client at a time; when that
//! client leaves, the offer is free for the next.
//!
//! Independent buses can coexist: a channel belongs to the bus it was
//! allocated on, so tests and drivers can isolate themselves.

use kernel::{
    prelude::*,
    sync::{
        new_condvar,
        new_mutex,
        new_spinlock,
        Arc,
        CondVar,
        Mutex,
        SpinLock, //
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
use super::host::HostBus;
use super::link::Link;
use super::types::{
    DataPathLimits,
    Guid,
    RingPageCounts, //
};
use crate::shmem::{
    MmioMemory,
    RingPages, //
};

/// A server channel's offer.
struct Offer {
    server: Arc<Channel>,
    interface_type: Guid,
    interface_instance: Guid,
    /// MMIO space for the device, in MiB (required, optional).
    mmio_megabytes: (u16, u16),
    /// Only clients in this VTL see the offer.
    vtl: u8,
    /// A client is connected.
    taken: bool,
    /// The server saved its state and left (live update): the connection
    /// waits for a server that restores that save (its id).
    parked: Option<(u32, Arc<Connection>)>,
}

/// A client channel waiting for an offer.
struct Waiting {
    client: Arc<Channel>,
    interface_type: Guid,
    /// All zeroes: any instance.
    interface_instance: Guid,
    /// The VTL the client runs in.
    vtl: u8,
    /// Ring sizes the client donates, in pages: (client outgoing, client
    /// incoming).
    pages: RingPageCounts,
}

/// Whether `offer` is free, of interface type `ty` and instance `instance`
/// (all zeroes: any) and visible in `vtl`.
fn wanted(ty: &Guid, instance: &Guid, vtl: u8, offer: &Offer) -> bool {
    !offer.taken
        && *ty == offer.interface_type
        && (*instance == [0; 16] || *instance == offer.interface_instance)
        && vtl == offer.vtl
}

impl Waiting {
    fn matches(&self, offer: &Offer) -> bool {
        wanted(
            &self.interface_type,
            &self.interface_instance,
            self.vtl,
            offer,
        )
    }
}

struct BusInner {
    offers: KVec<Offer>,
    waiting: KVec<Waiting>,
}

/// One loopback VMBus instance.
#[pin_data]
pub struct LoopbackBus {
    #[pin]
    inner: Mutex<BusInner>,
    /// Where client channels that target the VMBus host find its offers.
    host: Arc<HostBus>,
}

impl LoopbackBus {
    /// Creates an empty bus without a VMBus host.
    pub fn new() -> Result<Arc<Self>> {
        Self::with_host(HostBus::none()?)
    }

    /// The VMBus host's offers, for client channels that target them.
    pub(crate) fn host(&self) -> &Arc<HostBus> {
        &self.host
    }

    /// Whether a server offers what a client with `settings` looks for.
    pub(crate) fn offered(&self, settings: &Settings) -> bool {
        let bus = self.inner.lock();
        bus.offers.iter().any(|o| {
            wanted(
                &settings.interface_type,
                &settings.interface_instance,
                settings.vtl,
                o,
            )
        })
    }

    /// Creates an empty bus; clients that target the VMBus host use `host`.
    pub(crate) fn with_host(host: Arc<HostBus>) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(LoopbackBus {
                host,
                inner <- new_mutex!(BusInner {
                    offers: KVec::new(),
                    waiting: KVec::new(),
                }),
            }),
            GFP_KERNEL,
        )
    }

    /// Publishes `server`'s offer; `-EEXIST` if the interface is already
    /// offered on this bus. Returns whether a parked connection was taken
    /// over. A server restoring save `restored` takes over
    /// the connection its predecessor parked with that save; a server
    /// restoring nothing (or another save) closes a parked connection and
    /// offers anew.
    pub(crate) fn offer(
        &self,
        server: &Arc<Channel>,
        settings: &Settings,
        restored: Option<u32>,
    ) -> Result<bool> {
        let mut bus = self.inner.lock();
        let same = |o: &Offer| {
            o.interface_type == settings.interface_type
                && o.interface_instance == settings.interface_instance
        };
        if let Some(idx) = bus.offers.iter().position(same) {
            let Some((save_id, conn)) = bus.offers[idx].parked.clone() else {
                return Err(EEXIST);
            };
            if restored == Some(save_id) {
                server.reserve_event()?;
                let offer = &mut bus.offers[idx];
                offer.server = server.clone();
                offer.parked = None;
                conn.adopt(server);
                server.post_reserved(PeerEvent::Connected(Link::Loopback(conn)));
                return Ok(true);
            }
            // Not restored: the parked connection ends.
            let _ = bus.offers.remove(idx);
            conn.close_parked();
        }
        bus.offers.push(
            Offer {
                server: server.clone(),
                interface_type: settings.interface_type,
                interface_instance: settings.interface_instance,
                mmio_megabytes: settings.mmio_megabytes,
                vtl: settings.vtl,
                taken: false,
                parked: None,
            },
            GFP_KERNEL,
        )?;
        let idx = bus.offers.len() - 1;
        Self::serve_waiting(&mut bus, idx)?;
        Ok(false)
    }

    /// `server` saved its state and leaves its connection `conn` parked
    /// under save `save_id` (its offer stays, taken).
    pub(crate) fn park(&self, server: &Arc<Channel>, save_id: u32, conn: Arc<Connection>) {
        let mut bus = self.inner.lock();
        if let Some(o) = bus
            .offers
            .iter_mut()
            .find(|o| Arc::ptr_eq(&o.server, server))
        {
            o.parked = Some((save_id, conn));
        }
    }

    /// Withdraws `server`'s offer.
    pub(crate) fn rescind(&self, server: &Arc<Channel>) {
        self.inner
            .lock()
            .offers
            .retain(|o| !Arc::ptr_eq(&o.server, server));
    }

    /// Connects `client` to a matching free offer, or records it as waiting.
    pub(crate) fn seek(&self, client: &Arc<Channel>, settings: &Settings) -> Result {
        let mut bus = self.inner.lock();
        let waiting = Waiting {
            client: client.clone(),
            interface_type: settings.interface_type,
            interface_instance: settings.interface_instance,
            vtl: settings.vtl,
            pages: RingPageCounts {
                outgoing: settings.outgoing_pages,
                incoming: settings.incoming_pages,
            },
        };
        if let Some(idx) = bus.offers.iter().position(|o| waiting.matches(o)) {
            return Self::connect(&mut bus, idx, client, waiting.pages);
        }
        bus.waiting.push(waiting, GFP_KERNEL)?;
        Ok(())
    }

    /// Forgets `client` if it is still waiting for an offer.
    pub(crate) fn cancel_seek(&self, client: &Arc<Channel>) {
        self.inner
            .lock()
            .waiting
            .retain(|w| !Arc::ptr_eq(&w.client, client));
    }

    /// `server`'s offer is free again: give it to the next waiting client.
    fn release(&self, server: &Arc<Channel>) {
        let mut bus = self.inner.lock();
        if let Some(idx) = bus
            .offers
            .iter()
            .position(|o| Arc::ptr_eq(&o.server, server))
        {
            if bus.offers[idx].parked.is_some() {
                // The client left while the server was away: nobody is
                // left on either side.
                let _ = bus.offers.remove(idx);
                return;
            }
            bus.offers[idx].taken = false;
            if let Err(e) = Self::serve_waiting(&mut bus, idx) {
                pr_warn!("loopback: could not connect a waiting client: {:?}\n", e);
            }
        }
    }

    fn serve_waiting(bus: &mut BusInner, idx: usize) -> Result {
        let Some(pos) = bus.waiting.iter().position(|w| w.matches(&bus.offers[idx])) else {
            return Ok(());
        };
        let client = bus.waiting[pos].client.clone();
        let pages = bus.waiting[pos].pages;
        Self::connect(bus, idx, &client, pages)?;
        let _ = bus.waiting.remove(pos);
        Ok(())
    }

    fn connect(
        bus: &mut BusInner,
        idx: usize,
        client: &Arc<Channel>,
        pages: RingPageCounts,
    ) -> Result {
        let server = bus.offers[idx].server.clone();
        let instance = bus.offers[idx].interface_instance;
        let mmio = mmio_memory(bus.offers[idx].mmio_megabytes)?;
        let conn = Connection::new(client.clone(), server.clone(), pages, instance, mmio)?;
        // Make room for both events first, so that either both endpoints
        // learn of the connection or neither does.
        // The server hears of it first; the client only once the server's
        // Opened accepted it (`Connection::tell_client`), as a VMBus open
        // completes only when the VSP has accepted the channel.
        client.reserve_event()?;
        server.reserve_event()?;
        server.post_reserved(PeerEvent::Connected(Link::Loopback(conn)));
        bus.offers[idx].taken = true;
        Ok(())
    }
}

/// The memory standing in for an offer's MMIO space of `(required,
/// optional)` MiB: both if there is that much memory, else the required
/// part; `None` for none.
fn mmio_memory((required, optional): (u16, u16)) -> Result<Option<MmioMemory>> {
    if required == 0 && optional == 0 {
        return Ok(None);
    }
    const MIB: usize = 1 << 20;
    let all = (usize::from(required) + usize::from(optional)) * MIB;
    match MmioMemory::new(all) {
        Ok(m) => Ok(Some(m)),
        Err(_) if required > 0 && optional > 0 => {
            Ok(Some(MmioMemory::new(usize::from(required) * MIB)?))
        }
        // Only optional space, and not even that: none.
        Err(_) if required == 0 => Ok(None),
        Err(e) => Err(e),
    }
}

struct Attached {
    client: bool,
    server: bool,
    /// The client was told of the connection (the server accepted it).
    client_told: bool,
    /// Why the server refused the connection (its Opened callback failed).
    refusal: Option<Error>,
}

/// A connection between a client channel and a server channel.
#[pin_data]
pub struct Connection {
    client: Arc<Channel>,
    /// Changes when a restored server takes the connection over.
    #[pin]
    server: SpinLock<Arc<Channel>>,
    bus: Arc<LoopbackBus>,
    /// Client to server ring.
    c2s: Arc<RingPages>,
    /// Server to client ring.
    s2c: Arc<RingPages>,
    /// The offer's instance GUID.
    instance: Guid,
    /// Memory standing in for the offer's MMIO space.
    mmio: Option<MmioMemory>,
    /// The parked server's transactions whose completions may still come
    /// (for the server that takes the connection over).
    #[pin]
    orphans: SpinLock<KVec<u64>>,
    #[pin]
    attached: Mutex<Attached>,
    #[pin]
    left: CondVar,
}

impl Connection {
    fn new(
        client: Arc<Channel>,
        server: Arc<Channel>,
        pages: RingPageCounts,
        instance: Guid,
        mmio: Option<MmioMemory>,
    ) -> Result<Arc<Self>> {
        let bus = client.bus().clone();
        let c2s = Arc::new(RingPages::new(pages.outgoing as usize)?, GFP_KERNEL)?;
        let s2c = Arc::new(RingPages::new(pages.incoming as usize)?, GFP_KERNEL)?;
        Arc::pin_init(
            pin_init!(Connection {
                client,
                server <- new_spinlock!(server),
                bus,
                c2s,
                s2c,
                instance,
                mmio,
                orphans <- new_spinlock!(KVec::new()),
                attached <- new_mutex!(Attached {
                    client: true,
                    server: true,
                    client_told: false,
                    refusal: None,
                }),
                left <- new_condvar!(),
            }),
            GFP_KERNEL,
        )
    }

    /// `channel`'s data path on this connection; `limits` are its maximum
    /// packet size and per-packet context size.
    pub(crate) fn data_path(
        &self,
        channel: &Arc<Channel>,
        limits: DataPathLimits,
    ) -> Result<DataPath> {
        if Arc::ptr_eq(channel, &self.client) {
            DataPath::new(
                self.c2s.clone(),
                self.s2c.clone(),
                Peer::Loopback(self.server()),
                channel.id(),
                limits,
            )
        } else {
            let mut dp = DataPath::new(
                self.s2c.clone(),
                self.c2s.clone(),
                Peer::Loopback(self.client.clone()),
                channel.id(),
                limits,
            )?;
            // A server taking a parked connection over.
            dp.set_orphans(core::mem::take(&mut *self.orphans.lock()));
            Ok(dp)
        }
    }

    /// The rings: (client to server, server to client). For tests that
    /// play a misbehaving endpoint.
    pub(crate) fn rings(&self) -> (&Arc<RingPages>, &Arc<RingPages>) {
        (&self.c2s, &self.s2c)
    }

    /// The MMIO space both endpoints are given: (address, bytes).
    pub(crate) fn mmio_space(&self) -> Option<(usize, usize)> {
        self.mmio.as_ref().map(MmioMemory::space)
    }

    /// The instance GUID of the offer this connection was made to.
    pub(crate) fn interface_instance(&self) -> Guid {
        self.instance
    }

    /// The server accepted the connection: tell the client (its event was
    /// reserved when the connection was made).
    pub(crate) fn tell_client(self: &Arc<Self>) {
        {
            let mut a = self.attached.lock();
            if !a.client || a.client_told {
                return;
            }
            a.client_told = true;
        }
        self.client
            .post_reserved(PeerEvent::Connected(Link::Loopback(self.clone())));
    }

    /// The server's Opened callback refused the connection with `e`.
    pub(crate) fn refuse(&self, e: Error) {
        self.attached.lock().refusal = Some(e);
    }

    /// `channel` leaves the connection; the other endpoint, if still there,
    /// is told to close. A server leaving before the client was told makes
    /// the client's connect fail instead (PnpFailure); if the server left
    /// because its Opened refused the connection, its offer is free again
    /// for the next client.
    pub(crate) fn detach(self: &Arc<Self>, channel: &Arc<Channel>) {
        let is_client = Arc::ptr_eq(channel, &self.client);
        let refused = {
            let mut a = self.attached.lock();
            if !is_client && a.server && !a.client_told {
                a.server = false;
                a.client = false;
                // Refused by Opened, or the server went away first.
                Some((a.refusal.unwrap_or(ENODEV), a.refusal.is_some()))
            } else {
                None
            }
        };
        if let Some((e, offer_stays)) = refused {
            self.left.notify_all();
            self.client.post_reserved(PeerEvent::ConnectFailed(e));
            if offer_stays {
                self.bus.release(&self.server());
            }
            return;
        }
        let peer_attached = {
            let mut a = self.attached.lock();
            let mine = if is_client {
                &mut a.client
            } else {
                &mut a.server
            };
            if !*mine {
                return;
            }
            *mine = false;
            if is_client {
                a.server
            } else {
                a.client
            }
        };
        self.left.notify_all();
        if peer_attached {
            let peer = if is_client {
                self.server()
            } else {
                self.client.clone()
            };
            if peer
                .post(PeerEvent::Closed(Link::Loopback(self.clone())))
                .is_err()
            {
                pr_warn!("loopback: out of memory telling the other endpoint to close\n");
            }
        }
        if is_client {
            self.bus.release(&self.server());
        }
    }

    /// The client is closing: tells the server now instead of when the
    /// client leaves (see `Channel::announce_close_if_mapped`).
    pub(crate) fn announce_close(self: &Arc<Self>) {
        let server_attached = self.attached.lock().server;
        if server_attached
            && self
                .server()
                .post(PeerEvent::Closed(Link::Loopback(self.clone())))
                .is_err()
        {
            pr_warn!("loopback: out of memory telling the server to close\n");
        }
    }

    /// The server endpoint now.
    fn server(&self) -> Arc<Channel> {
        self.server.lock().clone()
    }

    /// The server saved its state and leaves without closing: the client
    /// is not told (live update); the connection waits for a restored
    /// server ([`Self::adopt`]).
    pub(crate) fn park(&self, orphans: KVec<u64>) {
        *self.orphans.lock() = orphans;
        self.attached.lock().server = false;
        self.left.notify_all();
    }

    /// `server`, which restored the parked server's save, takes the
    /// connection over: the client's signals go to it from now on.
    pub(crate) fn adopt(&self, server: &Arc<Channel>) {
        *self.server.lock() = server.clone();
        self.attached.lock().server = true;
        self.client.repoint_peer(Peer::Loopback(server.clone()));
    }

    /// A parked connection no server restored: the client is told it
    /// closed.
    pub(crate) fn close_parked(self: &Arc<Self>) {
        let client_attached = self.attached.lock().client;
        if client_attached
            && self
                .client
                .post(PeerEvent::Closed(Link::Loopback(self.clone())))
                .is_err()
        {
            pr_warn!("loopback: out of memory telling a client its server is gone\n");
        }
    }

    /// Waits until the client has left.
    pub(crate) fn wait_client_detached(&self) {
        let mut a = self.attached.lock();
        while a.client {
            self.left.wait(&mut a);
        }
    }
}

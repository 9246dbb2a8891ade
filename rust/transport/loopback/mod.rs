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
//!
//! Sub-channels: a server channel whose primary is a connected server
//! channel is offered as the next sub-channel (index 1, 2, ...) of that
//! connection, and only the client of that connection's sub-channels can
//! take it; the client's primary channel hears of each offer. When the
//! primary's connection ends (either side leaves), its sub-channel offers
//! are withdrawn and their connections closed.
//!
//! The bus keeps its offers in the table both buses share
//! ([`crate::transport::offers`]); a client whose `transport` setting
//! selects the VMBus host is handed to the host bus it carries, and so is
//! a sub-channel whose primary is connected to the host.

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
            Bus,
            Link, //
        },
        channel::{
            Channel,
            MmioMegabytes,
            PeerEvent,
            Settings,
            Transport, //
        },
        types::RingPageCounts,
    },
    shmem::MmioMemory,
    transport::{
        hyperv::HostBus,
        offers::{
            Offer,
            OfferState,
            OfferTable,
            Target, //
        },
    },
};

mod connection;

pub(crate) use connection::Connection;

/// What the bus keeps about a server channel's offer.
struct ServerOffer {
    server: Arc<Channel>,
    /// 0: a primary channel's offer; 1..: a sub-channel's.
    index: u16,
    /// A sub-channel's primary server channel.
    primary: Option<Arc<Channel>>,
    /// A sub-channel's: the address of the client its primary serves.
    primary_client: usize,
    /// The client connected now, and the connection.
    client: Option<(Arc<Channel>, Arc<Connection>)>,
    /// MMIO space for the device, in MiB (required, optional).
    mmio_megabytes: MmioMegabytes,
    /// A client is connected.
    taken: bool,
    /// The server saved its state and left (live update): the connection
    /// waits for a server that restores that save (its id).
    parked: Option<(u32, Arc<Connection>)>,
}

impl OfferState for ServerOffer {
    fn is_free(&self) -> bool {
        !self.taken
    }

    fn subchannel_of(&self) -> usize {
        self.primary_client
    }
}

/// Whether offer `o` is a sub-channel offer of primary server `primary`.
fn is_sub_of(o: &Offer<ServerOffer>, primary: &Arc<Channel>) -> bool {
    o.state
        .primary
        .as_ref()
        .is_some_and(|p| Arc::ptr_eq(p, primary))
}

/// One loopback VMBus instance.
#[pin_data]
pub(crate) struct LoopbackBus {
    #[pin]
    table: Mutex<OfferTable<ServerOffer>>,
    /// Where client channels that target the VMBus host find its offers.
    host: Arc<HostBus>,
}

impl LoopbackBus {
    /// Creates an empty bus without a VMBus host.
    pub(crate) fn new() -> Result<Arc<Self>> {
        Self::with_host(HostBus::none()?)
    }

    /// Creates an empty bus; clients that target the VMBus host use `host`.
    pub(crate) fn with_host(host: Arc<HostBus>) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(LoopbackBus {
                host,
                table <- new_mutex!(OfferTable::new()),
            }),
            GFP_KERNEL,
        )
    }

    /// The VMBus host's offers, for client channels that target them.
    pub(crate) fn host(&self) -> &Arc<HostBus> {
        &self.host
    }

    /// Whether a server offers what a client with `settings` looks for.
    fn offered(&self, settings: &Settings) -> bool {
        self.table.lock().find(&Target::of(settings)).is_some()
    }

    /// `server` saved its state and leaves its connection `conn` parked
    /// under save `save_id` (its offer stays, taken).
    pub(crate) fn park(&self, server: &Arc<Channel>, save_id: u32, conn: Arc<Connection>) {
        let mut table = self.table.lock();
        if let Some(o) = table
            .offers
            .iter_mut()
            .find(|o| Arc::ptr_eq(&o.state.server, server))
        {
            o.state.parked = Some((save_id, conn));
        }
    }

    /// `server`'s offer is free again: give it to the next waiting client.
    pub(crate) fn release(self: &Arc<Self>, server: &Arc<Channel>) {
        let mut table = self.table.lock();
        if let Some(idx) = table
            .offers
            .iter()
            .position(|o| Arc::ptr_eq(&o.state.server, server))
        {
            if table.offers[idx].state.parked.is_some() {
                // The client left while the server was away: nobody is
                // left on either side.
                let _ = table.offers.remove(idx);
                return;
            }
            table.offers[idx].state.taken = false;
            table.offers[idx].state.client = None;
            // The primary's connection ended: so do its sub-channels'.
            end_subchannels(&mut table, server);
            let Some(idx) = table
                .offers
                .iter()
                .position(|o| Arc::ptr_eq(&o.state.server, server))
            else {
                return;
            };
            if let Err(e) = self.serve_waiting(&mut table, idx) {
                pr_warn!("loopback: could not connect a waiting client: {:?}\n", e);
            }
        }
    }

    fn serve_waiting(self: &Arc<Self>, table: &mut OfferTable<ServerOffer>, idx: usize) -> Result {
        let Some((pos, client, target)) = table.first_waiting_for(idx) else {
            return Ok(());
        };
        self.connect(table, idx, &client, target.pages)?;
        table.served(pos);
        Ok(())
    }

    fn connect(
        self: &Arc<Self>,
        table: &mut OfferTable<ServerOffer>,
        idx: usize,
        client: &Arc<Channel>,
        pages: RingPageCounts,
    ) -> Result {
        let offer = &table.offers[idx];
        let server = offer.state.server.clone();
        let instance = offer.interface_instance;
        let mmio = mmio_memory(offer.state.mmio_megabytes)?;
        let conn = Connection::new(
            self.clone(),
            client.clone(),
            server.clone(),
            pages,
            (instance, offer.state.index),
            mmio,
        )?;
        // Make room for both events first, so that either both endpoints
        // learn of the connection or neither does.
        // The server hears of it first; the client only once the server's
        // Opened accepted it (`Connection::tell_client`), as a VMBus open
        // completes only when the VSP has accepted the channel.
        client.reserve_event()?;
        server.reserve_event()?;
        let link: Arc<dyn Link> = conn.clone();
        server.post_reserved(PeerEvent::Connected(link));
        table.offers[idx].state.taken = true;
        table.offers[idx].state.client = Some((client.clone(), conn));
        Ok(())
    }

    /// Offers `server` as the next sub-channel of `primary`'s connection,
    /// and tells the primary's client.
    fn offer_subchannel(
        self: &Arc<Self>,
        table: &mut OfferTable<ServerOffer>,
        server: &Arc<Channel>,
        primary: &Arc<Channel>,
    ) -> Result {
        let p = table
            .offers
            .iter()
            .find(|o| Arc::ptr_eq(&o.state.server, primary) && o.state.primary.is_none())
            .ok_or(ENOTCONN)?;
        let (client, conn) = p.state.client.clone().ok_or(ENOTCONN)?;
        let (interface_type, interface_instance, vtl) =
            (p.interface_type, p.interface_instance, p.vtl);
        let index = table
            .offers
            .iter()
            .filter(|o| is_sub_of(o, primary))
            .map(|o| o.state.index)
            .max()
            .unwrap_or(0)
            .checked_add(1)
            .ok_or(ENOSPC)?;
        client.reserve_event()?;
        let idx = table.add(Offer {
            interface_type,
            interface_instance,
            vtl,
            state: ServerOffer {
                server: server.clone(),
                index,
                primary: Some(primary.clone()),
                primary_client: Arc::as_ptr(&client) as usize,
                client: None,
                mmio_megabytes: MmioMegabytes {
                    required: 0,
                    optional: 0,
                },
                taken: false,
                parked: None,
            },
        })?;
        let link: Arc<dyn Link> = conn;
        client.post_reserved(PeerEvent::SubchannelOffered(link, index));
        self.serve_waiting(table, idx)
    }
}

/// The connection of primary server `primary` ended: its sub-channel
/// offers are withdrawn and their connections closed on both sides.
fn end_subchannels(table: &mut OfferTable<ServerOffer>, primary: &Arc<Channel>) {
    let mut i = 0;
    while i < table.offers.len() {
        if !is_sub_of(&table.offers[i], primary) {
            i += 1;
            continue;
        }
        if let Ok(gone) = table.offers.remove(i) {
            if let Some((_, conn)) = gone.state.client {
                conn.close_both();
            }
        }
    }
}

impl Bus for LoopbackBus {
    /// A server restoring nothing (or another save) closes a parked
    /// connection of its interface and offers anew.
    fn offer(
        self: Arc<Self>,
        server: &Arc<Channel>,
        settings: &Settings,
        restored: Option<u32>,
        primary: Option<&Arc<Channel>>,
    ) -> Result<bool> {
        let mut table = self.table.lock();
        if let Some(primary) = primary {
            self.offer_subchannel(&mut table, server, primary)?;
            return Ok(false);
        }
        let same = |o: &Offer<ServerOffer>| {
            o.interface_type == settings.interface_type
                && o.interface_instance == settings.interface_instance
                && o.state.primary.is_none()
        };
        if let Some(idx) = table.offers.iter().position(same) {
            let Some((save_id, conn)) = table.offers[idx].state.parked.clone() else {
                return Err(EEXIST);
            };
            if restored == Some(save_id) {
                server.reserve_event()?;
                let offer = &mut table.offers[idx].state;
                offer.server = server.clone();
                offer.parked = None;
                conn.adopt(server);
                let link: Arc<dyn Link> = conn;
                server.post_reserved(PeerEvent::Connected(link));
                return Ok(true);
            }
            // Not restored: the parked connection ends.
            let _ = table.offers.remove(idx);
            conn.close_parked();
        }
        let idx = table.add(Offer {
            interface_type: settings.interface_type,
            interface_instance: settings.interface_instance,
            vtl: Some(settings.vtl),
            state: ServerOffer {
                server: server.clone(),
                index: 0,
                primary: None,
                primary_client: 0,
                client: None,
                mmio_megabytes: settings.mmio_megabytes,
                taken: false,
                parked: None,
            },
        })?;
        self.serve_waiting(&mut table, idx)?;
        Ok(false)
    }

    fn rescind(&self, server: &Arc<Channel>) {
        let mut table = self.table.lock();
        table
            .offers
            .retain(|o| !Arc::ptr_eq(&o.state.server, server));
        end_subchannels(&mut table, server);
    }

    /// On the loopback bus if a server offers the interface there (or the
    /// client asked for loopback), else on the VMBus host (see
    /// [`Transport`]).
    fn seek(
        self: Arc<Self>,
        client: &Arc<Channel>,
        settings: &Settings,
        primary: Option<&Arc<Channel>>,
    ) -> Result {
        if let Some(primary) = primary {
            // A free sub-channel offer of the primary's connection, now or
            // when the server makes one.
            let mut table = self.table.lock();
            let serves = |o: &Offer<ServerOffer>| {
                o.state
                    .client
                    .as_ref()
                    .is_some_and(|(c, _)| Arc::ptr_eq(c, primary))
            };
            if !table.offers.iter().any(serves) {
                drop(table);
                // Connected to a VMBus host's device, or not connected.
                return if primary.is_connected() {
                    self.host.seek_subchannel(client, settings, primary)
                } else {
                    Err(ENOTCONN)
                };
            }
            let target = Target {
                primary: Arc::as_ptr(primary) as usize,
                ..Target::of(settings)
            };
            if let Some(idx) = table.find(&target) {
                return self.connect(&mut table, idx, client, target.pages);
            }
            return table.wait(client, target);
        }
        let host = match settings.transport {
            Transport::Loopback => false,
            Transport::Host => true,
            Transport::Auto => !self.offered(settings) && self.host.present(),
        };
        if host {
            return self.host.seek(client, settings);
        }
        let target = Target::of(settings);
        let mut table = self.table.lock();
        if let Some(idx) = table.find(&target) {
            return self.connect(&mut table, idx, client, target.pages);
        }
        table.wait(client, target)
    }

    fn cancel_seek(&self, client: &Arc<Channel>) {
        self.table.lock().cancel(client);
        self.host.cancel_seek(client);
    }
}

/// The memory standing in for an offer's MMIO space of `(required,
/// optional)` MiB: both if there is that much memory, else the required
/// part; `None` for none.
fn mmio_memory(MmioMegabytes { required, optional }: MmioMegabytes) -> Result<Option<MmioMemory>> {
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

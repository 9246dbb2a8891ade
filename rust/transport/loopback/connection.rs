// SPDX-License-Identifier: GPL-2.0

//! A connection between a loopback client channel and server channel: the
//! two rings (in pages the client donates, as a Hyper-V guest does), who
//! is still attached, and the [`Remote`] each endpoint's data path
//! signals.

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

use crate::{
    engine::{
        channel::Link,
        channel::{
            Channel,
            PeerEvent, //
        },
        datapath::DataPath,
        datapath::Remote,
        datapath::PEER_STALL_MS,
        types::{
            DataPathLimits,
            Guid,
            MmioSpace,
            RingPageCounts, //
        },
    },
    shmem::{
        GpadlPages,
        MmioMemory,
        RingPages, //
    },
    sys::wait::wait_bounded,
};

use super::LoopbackBus;

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
pub(crate) struct Connection {
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
    /// The offer's sub-channel index (0: a primary channel's).
    index: u16,
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
    pub(super) fn new(
        bus: Arc<LoopbackBus>,
        client: Arc<Channel>,
        server: Arc<Channel>,
        pages: RingPageCounts,
        (instance, index): (Guid, u16),
        mmio: Option<MmioMemory>,
    ) -> Result<Arc<Self>> {
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
                index,
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

    /// The server endpoint now.
    pub(super) fn server(&self) -> Arc<Channel> {
        self.server.lock().clone()
    }

    /// `server`, which restored the parked server's save, takes the
    /// connection over: the client's signals go to it from now on.
    pub(crate) fn adopt(&self, server: &Arc<Channel>) {
        *self.server.lock() = server.clone();
        self.attached.lock().server = true;
        self.client.repoint_peer(server.clone());
    }

    /// The connection ends from outside (its primary's connection ended):
    /// both endpoints still attached are told to close.
    pub(super) fn close_both(self: &Arc<Self>) {
        let (client, server) = {
            let a = self.attached.lock();
            (a.client && a.client_told, a.server)
        };
        let link: Arc<dyn Link> = self.clone();
        let peers = [(client, self.client.clone()), (server, self.server())];
        for (attached, peer) in peers {
            if attached && peer.post(PeerEvent::Closed(link.clone())).is_err() {
                pr_warn!("loopback: out of memory closing a sub-channel\n");
            }
        }
    }

    /// A parked connection no server restored: the client is told it
    /// closed.
    pub(crate) fn close_parked(self: &Arc<Self>) {
        let client_attached = self.attached.lock().client;
        let link: Arc<dyn Link> = self.clone();
        if client_attached && self.client.post(PeerEvent::Closed(link)).is_err() {
            pr_warn!("loopback: out of memory telling a client its server is gone\n");
        }
    }
}

impl Link for Connection {
    /// `channel`'s data path on this connection; `limits` are its maximum
    /// packet size and per-packet context size.
    fn data_path(
        self: Arc<Self>,
        channel: &Arc<Channel>,
        limits: DataPathLimits,
    ) -> Result<DataPath> {
        if Arc::ptr_eq(channel, &self.client) {
            DataPath::new(
                self.c2s.clone(),
                self.s2c.clone(),
                self.server(),
                channel.id(),
                limits,
            )
        } else {
            let mut dp = DataPath::new(
                self.s2c.clone(),
                self.c2s.clone(),
                self.client.clone(),
                channel.id(),
                limits,
            )?;
            // A server taking a parked connection over.
            dp.set_orphans(core::mem::take(&mut *self.orphans.lock()));
            Ok(dp)
        }
    }

    #[cfg(kmcl_kunit)]
    fn rings(&self) -> Option<(Arc<RingPages>, Arc<RingPages>)> {
        Some((self.c2s.clone(), self.s2c.clone()))
    }

    /// The MMIO space both endpoints are given.
    fn mmio_space(&self) -> Option<MmioSpace> {
        self.mmio.as_ref().map(|m| {
            let (address, len) = m.space();
            MmioSpace {
                address,
                len,
                physical: None,
            }
        })
    }

    /// The instance GUID of the offer this connection was made to.
    fn subchannel_index(&self) -> u16 {
        self.index
    }

    fn interface_instance(&self) -> Guid {
        self.instance
    }

    /// The server accepted the connection: tell the client (its event was
    /// reserved when the connection was made).
    fn tell_client(self: Arc<Self>) {
        {
            let mut a = self.attached.lock();
            if !a.client || a.client_told {
                return;
            }
            a.client_told = true;
        }
        let link: Arc<dyn Link> = self.clone();
        self.client.post_reserved(PeerEvent::Connected(link));
    }

    /// The server's Opened callback refused the connection with `e`.
    fn refuse(&self, e: Error) {
        self.attached.lock().refusal = Some(e);
    }

    /// `channel` leaves the connection; the other endpoint, if still there,
    /// is told to close. A server leaving before the client was told makes
    /// the client's connect fail instead (PnpFailure); if the server left
    /// because its Opened refused the connection, its offer is free again
    /// for the next client.
    fn detach(self: Arc<Self>, channel: &Arc<Channel>) {
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
            let link: Arc<dyn Link> = self.clone();
            if peer.post(PeerEvent::Closed(link)).is_err() {
                pr_warn!("loopback: out of memory telling the other endpoint to close\n");
            }
        }
        if is_client {
            self.bus.release(&self.server());
        }
    }

    /// `channel` is closing: tells the other endpoint now instead of
    /// when `channel` leaves (see `Channel::announce_close_if_mapped` and
    /// `Channel::await_exposed`).
    fn announce_close(self: Arc<Self>, channel: &Arc<Channel>) {
        let is_client = Arc::ptr_eq(channel, &self.client);
        let peer_attached = {
            let a = self.attached.lock();
            if is_client {
                a.server
            } else {
                a.client && a.client_told
            }
        };
        if !peer_attached {
            return;
        }
        let peer = if is_client {
            self.server()
        } else {
            self.client.clone()
        };
        let link: Arc<dyn Link> = self.clone();
        if peer.post(PeerEvent::Closed(link)).is_err() {
            pr_warn!("loopback: out of memory telling the other endpoint to close\n");
        }
    }

    /// The server saved its state and leaves without closing: the client
    /// is not told (live update); the connection waits on the bus for a
    /// restored server ([`Connection::adopt`]).
    fn park(self: Arc<Self>, server: &Arc<Channel>, save_id: u32, orphans: KVec<u64>) -> bool {
        *self.orphans.lock() = orphans;
        self.attached.lock().server = false;
        self.left.notify_all();
        self.bus.clone().park(server, save_id, self);
        true
    }

    /// Waits until the client has left, as [`Channel::await_departure`]
    /// says; then the server goes on without it (a state callback of it
    /// does not return).
    fn wait_client_detached(&self) {
        let left = self.client.await_departure(|ms| {
            let mut a = self.attached.lock();
            wait_bounded(&self.left, &mut a, ms, |a| !a.client)
        });
        if !left {
            pr_warn!(
                "channel {}: client channel {} did not leave within {} ms; the server goes on without it\n",
                self.server().id(),
                self.client.id(),
                PEER_STALL_MS + PEER_STALL_MS / 4
            );
        }
    }

    /// The other endpoint of `channel` keeps packets `channel` waits for:
    /// they are taken back from its driver.
    fn reclaim_peer(&self, channel: &Arc<Channel>) {
        if Arc::ptr_eq(channel, &self.client) {
            self.server().reclaim_held();
        } else {
            self.client.reclaim_held();
        }
    }
}

/// A loopback channel as the other endpoint of a data path: signalling it
/// kicks its receive work; its external data and its GPADL table are in
/// kmcl. (The peer is the channel itself: no allocation, and a signal is
/// one indirect call.)
impl Remote for Channel {
    fn signal(self: Arc<Self>) {
        self.signalled();
    }

    fn delays_signals(&self) -> bool {
        true
    }

    fn exposed(&self, tid: u64) -> Option<Arc<crate::shmem::External>> {
        Channel::exposed(self, tid)
    }

    fn transfer_set_len(&self, id: u16) -> Option<u64> {
        self.transfer_sets().len_of(id)
    }

    /// A loopback client keeps its GPADLs in its own table; its server
    /// maps them from there.
    fn map_gpadl(&self, handle: u32, writable: bool) -> Result<Arc<GpadlPages>> {
        self.gpadls().map_entry(handle, writable)
    }

    fn unmap_gpadl(&self, handle: u32) {
        self.gpadls().unmap_entry(handle)
    }
}

// SPDX-License-Identifier: GPL-2.0

//! A client's connection to a VMBus host device's channel: the [`Link`]
//! the lifecycle opens and leaves, and the [`Remote`] its data path
//! signals.

use core::sync::atomic::{
    AtomicBool,
    Ordering::Relaxed, //
};

use kernel::{
    page::PAGE_SIZE,
    prelude::*,
    sync::{
        new_condvar,
        new_mutex,
        Arc,
        CondVar,
        Mutex, //
    },
};

use crate::{
    engine::{
        channel::Link,
        channel::{
            Channel,
            PeerEvent, //
        },
        datapath::{
            DataPath,
            Peer,
            PEER_STALL_MS, //
        },
        datapath::{
            GpadlHost,
            MappedExternal,
            Remote, //
        },
        types::{
            DataPathLimits,
            Guid,
            MmioSpace,
            RingPageCounts, //
        },
    },
    shmem::{
        External,
        GpadlPages, //
    },
    sys::wait::wait_bounded,
};

use super::{
    bounce::Bounces,
    Device,
    HostChannel,
    HostOffers,
    HostOps, //
};

/// A client's connection to a channel of a device: its primary channel or
/// one of its sub-channels.
///
/// Locks, in the order they nest (a lock is never taken while one below
/// it is held):
///
/// | lock | guards |
/// |---|---|
/// | `state` (of a primary's link) | open/attached state, MMIO space |
/// | the offers' table (`HostOffers::inner`) | offers and waiting clients |
/// | `state` (of a sub-channel's link) | as above |
/// | `gpadls` | the client's GPADLs on the host |
///
/// A primary's link takes the table (ending its sub-channels) only while
/// it holds its own `state` on a failed open; a sub-channel's link never
/// takes the table while it holds its `state`.
#[pin_data]
pub(crate) struct HostLink {
    /// The table of the device's bus: the device is free again when the
    /// client leaves.
    offers: Arc<HostOffers>,
    client: Arc<Channel>,
    ops: Arc<dyn HostOps>,
    dev: Device,
    /// The channel opened: the device's primary channel, or a sub-channel.
    channel: HostChannel,
    /// 0: the primary channel; 1..: the sub-channel's index.
    index: u16,
    instance: Guid,
    /// The channel's interrupts go to the client (open, client there).
    live: AtomicBool,
    /// The host rescinded the channel (seen when signalling it).
    rescinded: AtomicBool,
    /// Ring data pages: (outgoing, incoming).
    pages: RingPageCounts,
    #[pin]
    state: Mutex<LinkState>,
    #[pin]
    left: CondVar,
    /// The client's GPADLs on the device's channel.
    #[pin]
    gpadls: Mutex<KVec<HostGpadl>>,
    /// External data mapped for the host of an isolated VM whose
    /// transactions ended with the connection: unmapped once the channel
    /// is closed.
    bounces: Arc<Bounces>,
}

/// A GPADL the host has.
struct HostGpadl {
    handle: u32,
    token: usize,
    /// The memory, recorded until the host let go of it.
    pages: GpadlPages,
}

struct LinkState {
    /// The device's channel is open.
    opened: bool,
    /// The offer's MMIO space while open: (address, bytes, token).
    mmio: Option<(MmioSpace, usize)>,
    /// The client has not left yet.
    attached: bool,
}

impl HostLink {
    pub(super) fn new(
        offers: Arc<HostOffers>,
        client: Arc<Channel>,
        ops: Arc<dyn HostOps>,
        (dev, channel, index): (Device, HostChannel, u16),
        instance: Guid,
        pages: RingPageCounts,
    ) -> Result<Arc<Self>> {
        let bounces = Bounces::new(ops.clone(), dev)?;
        Arc::pin_init(
            pin_init!(HostLink {
                bounces,
                offers,
                client,
                ops,
                dev,
                channel,
                index,
                instance,
                live: AtomicBool::new(false),
                rescinded: AtomicBool::new(false),
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

    /// The device goes away: the client is told to close.
    pub(super) fn tell_closed(self: &Arc<Self>) {
        let link: Arc<dyn Link> = self.clone();
        if self.client.post(PeerEvent::Closed(link)).is_err() {
            pr_warn!("out of memory telling a client its VMBus device is gone\n");
        }
    }

    /// The device is suspended (hibernation): the client closes and looks
    /// for it again.
    pub(super) fn tell_suspended(self: &Arc<Self>) {
        let link: Arc<dyn Link> = self.clone();
        if self.client.post(PeerEvent::Suspended(link)).is_err() {
            pr_warn!("out of memory telling a client its VMBus device is suspended\n");
        }
    }

    /// Waits up to `ms` for the client to leave; whether it did.
    pub(super) fn wait_detached(&self, ms: u32) -> bool {
        let mut st = self.state.lock();
        wait_bounded(&self.left, &mut st, ms, |st| !st.attached)
    }

    /// The client channel of this connection.
    pub(super) fn client(&self) -> &Arc<Channel> {
        &self.client
    }

    /// Whether the client has not left yet.
    pub(super) fn is_attached(&self) -> bool {
        self.state.lock().attached
    }

    /// The client did not leave in time (its driver holds packets, or a
    /// state callback does not return): its data path ends now and the
    /// device's channel is closed, so that hv_vmbus may free it. The
    /// driver's late completions find no ring; the client's Suspend and
    /// Closed follow when its driver lets them.
    pub(super) fn abandon(self: &Arc<Self>) {
        pr_warn!(
            "channel {}: still open {} ms after its VMBus device was rescinded; kmcl closes the device's channel without waiting further\n",
            self.client.id(),
            PEER_STALL_MS + PEER_STALL_MS / 4
        );
        self.client.abandon_data_path();
        self.clone().detach(&self.client);
    }

    /// KMCL `CreateGpadl*` on the host: shares `pages` (the host does not
    /// enforce read-only). `hv_vmbus` describes a GPADL as whole pages
    /// from the start of the first (`vmbus_establish_gpadl()` carries no
    /// offset), so a buffer that starts or ends inside a page is refused
    /// (`-EINVAL`) rather than shown to the host shifted or with the
    /// bytes around it. In an isolated (confidential) VM
    /// `vmbus_establish_gpadl()` makes the pages visible to the host for
    /// the GPADL's life (and private again at teardown), which whole pages
    /// allow.
    fn create_host_gpadl(&self, pages: GpadlPages) -> Result<u32> {
        if pages.offset() != 0 || pages.len() % PAGE_SIZE != 0 {
            return Err(EINVAL);
        }
        // Lock order: `state`, then `gpadls` (as `detach`).
        let st = self.state.lock();
        if !st.opened {
            return Err(ENOTCONN);
        }
        let mut gpadls = self.gpadls.lock();
        gpadls.reserve(1, GFP_KERNEL)?;
        let (handle, token) = self.ops.create_gpadl(self.channel, &pages)?;
        gpadls
            .push_within_capacity(HostGpadl {
                handle,
                token,
                pages,
            })
            .map_err(|_| ENOMEM)?;
        Ok(handle)
    }

    /// KMCL `DeleteGpadl` on the host: `-ENOENT` for an unknown handle; on
    /// a teardown error the GPADL stays recorded (its pages may still be
    /// in use by the host).
    fn delete_host_gpadl(&self, handle: u32) -> Result {
        let mut gpadls = self.gpadls.lock();
        let i = gpadls
            .iter()
            .position(|g| g.handle == handle)
            .ok_or(ENOENT)?;
        self.ops.delete_gpadl(self.channel, gpadls[i].token)?;
        let _ = gpadls.remove(i);
        Ok(())
    }

    /// Tears down every GPADL left (the channel closes); returns how many
    /// there were.
    fn delete_all_gpadls(&self) -> usize {
        let left = core::mem::take(&mut *self.gpadls.lock());
        for g in left.iter() {
            if let Err(e) = self.ops.delete_gpadl(self.channel, g.token) {
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

    /// The channel interrupt (from `hv_vmbus`'s channel tasklet): the
    /// client's receive work looks at the rings. Nothing once the client
    /// left (a sub-channel's interrupts reach its link until the primary
    /// closes).
    pub(crate) fn interrupt(&self) {
        if self.live.load(Relaxed) {
            self.client.clone().signalled();
        }
    }
}

impl Link for HostLink {
    /// Opens the device's channel and returns the client's data path on
    /// its rings. Process context.
    fn data_path(
        self: Arc<Self>,
        channel: &Arc<Channel>,
        limits: DataPathLimits,
    ) -> Result<DataPath> {
        let mut st = self.state.lock();
        if st.opened || !st.attached {
            return Err(EBUSY);
        }
        let max_packet = u32::try_from(limits.max_packet).map_err(|_| EINVAL)?;
        // The device's MMIO space goes with its primary channel.
        let mmio = if self.index == 0 {
            self.ops.allocate_mmio(self.dev)?
        } else {
            None
        };
        self.live.store(true, Relaxed);
        let (out, inc) = match self.ops.open(self.channel, &self, self.pages, max_packet) {
            Ok(rings) => rings,
            Err(e) => {
                self.live.store(false, Relaxed);
                if let Some((_, token)) = mmio {
                    self.ops.free_mmio(self.dev, token);
                }
                return Err(e);
            }
        };
        st.opened = true;
        st.mmio = mmio;
        // The interrupt latency is the connection's: the host's monitor
        // page until the driver asks for 0 (a client before may have).
        self.ops.set_low_latency(self.channel, false);
        let dp = (|| {
            let out = Arc::new(out, GFP_KERNEL)?;
            let inc = Arc::new(inc, GFP_KERNEL)?;
            let peer: Peer = self.clone();
            DataPath::new(out, inc, peer, channel.id(), limits)
        })();
        if dp.is_err() {
            self.live.store(false, Relaxed);
            // A sub-channel the host offered meanwhile ends with it.
            if self.index == 0 {
                self.offers.end_subchannels(self.dev);
            }
            // SAFETY: the closure above dropped the rings on its way out;
            // the sub-channels' clients have left.
            unsafe { self.ops.close(self.channel) };
            if self.index == 0 {
                self.offers.forget_subchannels(self.dev);
            }
            st.opened = false;
            if let Some((_, token)) = st.mmio.take() {
                self.ops.free_mmio(self.dev, token);
            }
        }
        dp
    }

    /// The client leaves: the channel is closed (the client's data path,
    /// which uses its rings, is gone) and a device's primary channel is
    /// free for the next client. A primary's sub-channels end first: their
    /// clients are told to close and waited for.
    fn detach(self: Arc<Self>, _channel: &Arc<Channel>) {
        if self.index == 0 {
            self.offers.end_subchannels(self.dev);
        }
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
                self.live.store(false, Relaxed);
                // SAFETY: the client drops its data path (the only user of
                // the rings) before it leaves the connection (the
                // Disconnect action in `Channel::execute`; `data_path`
                // keeps no other reference); a primary's sub-channels'
                // clients have left (`end_subchannels` above), or were
                // abandoned, which ended their data paths.
                unsafe { self.ops.close(self.channel) };
                // A primary's channel is closed, the host reaches no
                // bounce buffer of it any more (a sub-channel's closes
                // with its primary: its link ends them when dropped).
                if self.index == 0 {
                    self.bounces.release_retired();
                }
                st.opened = false;
                if let Some((_, token)) = st.mmio.take() {
                    self.ops.free_mmio(self.dev, token);
                }
            }
            st.attached = false;
        }
        self.left.notify_all();
        if self.index == 0 {
            self.offers.forget_subchannels(self.dev);
        }
        self.offers.release(self.channel);
    }

    /// The offer's MMIO space while the channel is open: (address, bytes).
    fn mmio_space(&self) -> Option<MmioSpace> {
        self.state.lock().mmio.map(|(space, _)| space)
    }

    /// The device's instance GUID.
    fn interface_instance(&self) -> Guid {
        self.instance
    }

    /// The host's sub-channel index of the channel (0: the primary).
    fn subchannel_index(&self) -> u16 {
        self.index
    }
}

impl Remote for HostLink {
    /// Tells the host to look at the rings. A channel the host rescinded
    /// (`hv_vmbus` tells drivers nothing of a sub-channel's rescind) ends
    /// its client's connection, once.
    fn signal(self: Arc<Self>) {
        if self.ops.signal(self.channel) && !self.rescinded.swap(true, Relaxed) {
            pr_info!(
                "channel {}: the host rescinded its VMBus channel (sub-channel {}); closing it\n",
                self.client.id(),
                self.index
            );
            self.tell_closed();
        }
    }

    /// In an isolated VM (and on a channel whose host cannot read private
    /// memory), external data goes through DMA bounce buffers
    /// ([`super::bounce`]); otherwise the packet names the pages.
    fn map_external(&self, pages: &External) -> Result<Option<KBox<dyn MappedExternal>>> {
        if !self.ops.bounces_external(self.channel) {
            return Ok(None);
        }
        let mapped = self.bounces.map(pages)?;
        Ok(Some(KBox::new(mapped, GFP_ATOMIC)?))
    }

    fn gpadl_host(&self) -> Option<&dyn GpadlHost> {
        Some(self)
    }

    /// 0: the channel signals the host directly (`low_latency`, the
    /// monitor page bypassed); otherwise through its monitor page, at the
    /// latency the host chose (hv_vmbus lets a driver neither read nor set
    /// it).
    fn set_signal_latency(&self, latency: u16) {
        self.ops.set_low_latency(self.channel, latency == 0);
    }
}

/// The host keeps the GPADLs (whole pages; it does not enforce read-only).
impl GpadlHost for HostLink {
    fn create_gpadl(&self, pages: GpadlPages) -> Result<u32> {
        self.create_host_gpadl(pages)
    }

    fn delete_gpadl(&self, handle: u32) -> Result {
        self.delete_host_gpadl(handle)
    }

    fn gpadl_len(&self, handle: u32) -> Option<usize> {
        self.gpadls
            .lock()
            .iter()
            .find(|g| g.handle == handle)
            .map(|g| g.pages.len())
    }
}

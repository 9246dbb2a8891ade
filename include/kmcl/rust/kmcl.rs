// SPDX-License-Identifier: GPL-2.0

//! kmcl for Rust drivers: a safe API over the functions `kmcl.ko` exports.
//!
//! Out-of-tree Rust modules use this file as source (kmcl ships no Rust
//! crate a module could link to): include it in your crate, build against
//! kmcl's `Module.symvers`, and import the `KMCL` symbol namespace.
//!
//! ```ignore
//! // In your module's crate root:
//! #[path = "../kmcl/include/kmcl/rust/kmcl.rs"] // where kmcl is
//! mod kmcl;
//!
//! module! {
//!     type: EchoClient,
//!     name: "my_vsc",
//!     license: "GPL",
//!     imports_ns: ["KMCL"],
//! }
//! // and build with: make -C $KDIR M=$PWD KBUILD_EXTRA_SYMBOLS=.../kmcl/Module.symvers
//! ```
//!
//! A driver implements [`Driver`] (KMCL's state-change and packet
//! callbacks), makes a [`Channel`] for it, sets the channel up while it is
//! disabled, and enables it:
//!
//! ```ignore
//! struct Vsc;
//! impl kmcl::Driver for Vsc {
//!     fn started(&self, _channel: kmcl::ChannelRef<'_>) {
//!         pr_info!("connected\n");
//!     }
//! }
//!
//! let mut channel = kmcl::Channel::new(module, kmcl::Role::Client, Arc::new(Vsc, GFP_KERNEL)?)?;
//! channel.set_target(&INTERFACE_TYPE, Some(&INSTANCE))?;
//! channel.enable()?;
//! // ... channel.send(b"ping", true, KBox::new(MyDone, GFP_KERNEL)?)?;
//! drop(channel); // disables and frees it
//! ```
//!
//! Nothing here needs `unsafe` in the driver. Dropping a [`Channel`]
//! disables and frees it; dropping an [`Incoming`] packet uncompleted
//! completes it with an empty payload; dropping a [`Packet`] frees it.
//! Context rules are kmcl's (`include/kmcl/kmcl.h`): the driver's packet
//! callbacks run in softirq context unless the channel processes incoming
//! packets at passive, its state callbacks in process context.
//!
//! The wrapper keeps the channel's pointer slot (`VmbChannelSetPointer`)
//! for itself: a driver keeps its state in its [`Driver`] object instead.

#![allow(
    dead_code,
    unreachable_pub,
    unused_imports,
    reason = "included with #[path] by each driver crate, which uses part of it"
)]

#[path = "abi.rs"]
pub mod abi;
#[path = "bus.rs"]
mod bus;
#[path = "guards.rs"]
mod guards;
#[path = "message.rs"]
mod message;
#[path = "save.rs"]
mod save;
#[path = "shared.rs"]
mod shared;

use abi::{
    KmclChannel,
    KmclIncoming,
    KmclPacket, //
};
use core::ffi::{
    c_int,
    c_void, //
};
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use kernel::{
    error::to_result,
    prelude::*,
    sync::Arc, //
};

pub use abi::Guid;
/// A range within one page (C `struct kmcl_page_buffer`): `len` bytes from
/// `offset` of the page with frame number `pfn`.
pub use abi::KmclPageBuffer as PageBuffer;
/// One range of a transfer-page set (C `struct kmcl_transfer_range`):
/// `byte_count` bytes from `byte_offset`.
pub use abi::KmclTransferRange as TransferRange;
pub use bus::{
    stash_put,
    stash_take,
    LoopbackBus,
    INIT_FLAG_IS_PIPE,
    SERVER_FLAG_LOOPBACK_OFFER, //
};
pub use guards::{
    Gpadl,
    Mapping, //
};
pub use save::{
    IncomingId,
    SaveChunk, //
};
pub use shared::{
    ExternalData,
    SharedPages, //
};

/// Which endpoint a channel is.
///
/// ```no_run
/// # fn example(module: &'static ThisModule, driver: Arc<dyn kmcl::Driver>) -> Result {
/// let server = kmcl::Channel::new(module, kmcl::Role::Server, driver)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Opens an offer (a VSC).
    Client,
    /// Offers the channel (a VSP).
    Server,
}

/// A channel's callbacks: KMCL's state-change callbacks and its packet
/// callbacks, all optional.
///
/// ```no_run
/// use core::sync::atomic::{AtomicU32, Ordering};
///
/// struct Echo {
///     echoed: AtomicU32,
/// }
///
/// impl kmcl::Driver for Echo {
///     fn process_packet(&self, _channel: kmcl::ChannelRef<'_>, packet: kmcl::Incoming) {
///         if packet.echo().is_ok() {
///             self.echoed.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
/// ```
#[doc(alias = "VMB_CHANNEL_STATE_CHANGE_CALLBACKS")]
#[doc(alias = "VmbChannelInitSetStateChangeCallbacks")]
#[doc(alias = "VmbChannelInitSetProcessPacketCallbacks")]
#[doc(alias = "VmbServerChannelInitSetSaveRestorePacketCallbacks")]
#[doc(alias = "VmbChannelSetPointer")]
#[doc(alias = "VmbChannelGetPointer")]
pub trait Driver: Send + Sync {
    /// `EvtChannelOpened` (process context). An error abandons the
    /// connection.
    ///
    /// ```no_run
    /// # struct Vsc;
    /// impl kmcl::Driver for Vsc {
    ///     fn opened(&self, channel: kmcl::ChannelRef<'_>) -> Result {
    ///         // Connected; packets flow after `started`.
    ///         channel.set_transaction_quota(64)
    ///     }
    /// }
    /// ```
    #[doc(alias = "EvtChannelOpened")]
    #[doc(alias = "EvtVmbChannelOpened")]
    fn opened(&self, _channel: ChannelRef<'_>) -> Result {
        Ok(())
    }
    /// `EvtChannelClosed` (process context).
    ///
    /// ```no_run
    /// # struct Vsc;
    /// impl kmcl::Driver for Vsc {
    ///     fn closed(&self, _channel: kmcl::ChannelRef<'_>) {
    ///         pr_info!("the other endpoint is gone\n");
    ///     }
    /// }
    /// ```
    #[doc(alias = "EvtChannelClosed")]
    #[doc(alias = "EvtVmbChannelClosed")]
    fn closed(&self, _channel: ChannelRef<'_>) {}
    /// `EvtChannelSuspend` (process context).
    ///
    /// ```no_run
    /// # struct Vsc;
    /// impl kmcl::Driver for Vsc {
    ///     fn suspend(&self, _channel: kmcl::ChannelRef<'_>) {
    ///         pr_info!("connection suspended: stop sending\n");
    ///     }
    /// }
    /// ```
    #[doc(alias = "EvtChannelSuspend")]
    #[doc(alias = "EvtVmbChannelSuspend")]
    fn suspend(&self, _channel: ChannelRef<'_>) {}
    /// `EvtChannelStarted` (process context).
    ///
    /// ```no_run
    /// # struct Vsc;
    /// impl kmcl::Driver for Vsc {
    ///     fn started(&self, _channel: kmcl::ChannelRef<'_>) {
    ///         pr_info!("packets flow\n");
    ///     }
    /// }
    /// ```
    #[doc(alias = "EvtChannelStarted")]
    #[doc(alias = "EvtVmbChannelStarted")]
    fn started(&self, _channel: ChannelRef<'_>) {}
    /// `EvtChannelPostStarted` (process context).
    ///
    /// ```no_run
    /// # struct Ignore;
    /// # impl kmcl::SendDone for Ignore {
    /// #     fn done(&mut self, _status: Result, _reply: &[u8]) {}
    /// # }
    /// # struct Vsc;
    /// impl kmcl::Driver for Vsc {
    ///     fn post_started(&self, channel: kmcl::ChannelRef<'_>) {
    ///         if let Ok(done) = KBox::new(Ignore, GFP_KERNEL) {
    ///             let _ = channel.send(b"hello", false, done);
    ///         }
    ///     }
    /// }
    /// ```
    #[doc(alias = "EvtChannelPostStarted")]
    #[doc(alias = "EvtVmbChannelPostStarted")]
    fn post_started(&self, _channel: ChannelRef<'_>) {}
    /// `EvtChannelPnpFailure` (client, process context): the target was
    /// found but the connection failed; the channel is disabled again.
    ///
    /// ```no_run
    /// # struct Vsc;
    /// impl kmcl::Driver for Vsc {
    ///     fn pnp_failure(&self, _channel: kmcl::ChannelRef<'_>, status: Error) {
    ///         pr_err!("could not connect: {:?}\n", status);
    ///     }
    /// }
    /// ```
    #[doc(alias = "EvtChannelPnpFailure")]
    fn pnp_failure(&self, _channel: ChannelRef<'_>, _status: Error) {}
    /// Client primary channel (kmcl's `kmcl_channel_init_set_subchannel_
    /// callback`, process context): the server offered sub-channel `index`
    /// of this connection; open it with a [`Channel`] whose primary
    /// ([`Channel::set_primary`]) is this one.
    ///
    /// ```no_run
    /// # struct Vsc;
    /// impl kmcl::Driver for Vsc {
    ///     fn subchannel_offered(&self, _primary: kmcl::ChannelRef<'_>, index: u16) {
    ///         // Typically: a Channel with set_primary(primary), enabled from a
    ///         // work item, kept by the driver.
    ///         pr_info!("sub-channel {} offered\n", index);
    ///     }
    /// }
    /// ```
    fn subchannel_offered(&self, _primary: ChannelRef<'_>, _index: u16) {}
    /// `EvtVmbChannelProcessPacket` (softirq, or process context at
    /// passive). The default completes the packet with no payload.
    ///
    /// ```no_run
    /// # struct Vsc;
    /// impl kmcl::Driver for Vsc {
    ///     fn process_packet(&self, _channel: kmcl::ChannelRef<'_>, packet: kmcl::Incoming) {
    ///         let len = packet.data().len() as u32;
    ///         let _ = packet.complete(&len.to_le_bytes());
    ///     }
    /// }
    /// ```
    #[doc(alias = "EvtVmbChannelProcessPacket")]
    fn process_packet(&self, _channel: ChannelRef<'_>, _packet: Incoming) {}
    /// `EvtVmbChannelProcessingComplete`.
    ///
    /// ```no_run
    /// # struct Vsc;
    /// impl kmcl::Driver for Vsc {
    ///     fn processing_complete(&self, _channel: kmcl::ChannelRef<'_>, packets: u32) {
    ///         pr_debug!("{} packets in this run\n", packets);
    ///     }
    /// }
    /// ```
    #[doc(alias = "EvtVmbChannelProcessingComplete")]
    fn processing_complete(&self, _channel: ChannelRef<'_>, _packets: u32) {}
    /// `EvtVmbChannelSavePacket` (server, process context, during
    /// [`Channel::save_begin`]): the driver's own state for `packet`, one
    /// of the packets it holds (compare [`Incoming::id`]), saved with it
    /// and handed to [`Driver::restore_packet`] of the server that
    /// restores the save. Empty (the default): nothing. An error fails
    /// the save (every packet stays the driver's).
    ///
    /// ```no_run
    /// # struct Vsp {
    /// #     held: kernel::sync::SpinLock<KVec<(kmcl::IncomingId, u64)>>,
    /// # }
    /// impl kmcl::Driver for Vsp {
    ///     fn save_packet(
    ///         &self,
    ///         _channel: kmcl::ChannelRef<'_>,
    ///         packet: kmcl::IncomingId,
    ///     ) -> Result<KVec<u8>> {
    ///         // `held` is the driver's list of the packets it holds.
    ///         let held = self.held.lock();
    ///         let (_, cookie) = held.iter().find(|(id, _)| *id == packet).ok_or(ENOENT)?;
    ///         let mut state = KVec::new();
    ///         state.extend_from_slice(&cookie.to_le_bytes(), GFP_KERNEL)?;
    ///         Ok(state)
    ///     }
    /// }
    /// ```
    #[doc(alias = "EvtVmbChannelSavePacket")]
    fn save_packet(&self, _channel: ChannelRef<'_>, _packet: IncomingId) -> Result<KVec<u8>> {
        Ok(KVec::new())
    }
    /// `EvtVmbChannelRestorePacket` (server restored from a save, process
    /// context, after [`Driver::opened`]): a packet the saved server held,
    /// an incoming packet again (`VmbPacketRestore`), with the state
    /// [`Driver::save_packet`] saved for it. Its payload is not delivered
    /// again ([`Incoming::data`] is empty): what the driver needs of it is
    /// in `state`. Complete it as any packet; the default completes it
    /// with no payload.
    ///
    /// ```no_run
    /// # struct Vsp;
    /// impl kmcl::Driver for Vsp {
    ///     fn restore_packet(
    ///         &self,
    ///         _channel: kmcl::ChannelRef<'_>,
    ///         packet: kmcl::Incoming,
    ///         state: &[u8],
    ///     ) {
    ///         // `state` is what `save_packet` returned for this packet.
    ///         let _ = packet.complete(state);
    ///     }
    /// }
    /// ```
    #[doc(alias = "EvtVmbChannelRestorePacket")]
    #[doc(alias = "VmbPacketRestore")]
    fn restore_packet(&self, _channel: ChannelRef<'_>, _packet: Incoming, _state: &[u8]) {}
}

/// A packet object's completion routine (KMCL
/// `EvtVmbPacketCompletionRoutine`): called once per send when its
/// transaction is over, in softirq or process context. One routine object
/// may serve many packets.
///
/// ```no_run
/// struct Resend;
///
/// impl kmcl::PacketDone for Resend {
///     fn done(&self, packet: kmcl::Packet, status: Result, _reply: &[u8]) {
///         if status.is_ok() {
///             // The same packet object again; dropped (freed) on an error.
///             let _ = packet.send(b"again", true);
///         }
///     }
/// }
/// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
/// let packet = kmcl::Packet::new(channel, Arc::new(Resend, GFP_KERNEL)?)?;
/// packet.send(b"first", true).map_err(|(_packet, e)| e)?;
/// # Ok(())
/// # }
/// ```
#[doc(alias = "EvtVmbPacketCompletionRoutine")]
pub trait PacketDone: Send + Sync {
    /// `packet` is the driver's again (to send again, from here too, or to
    /// drop); `status` is `Ok` or `ENODEV` (the connection ended first);
    /// `reply` is the completion payload, valid for the call.
    ///
    /// ```no_run
    /// struct Count(core::sync::atomic::AtomicU32);
    ///
    /// impl kmcl::PacketDone for Count {
    ///     fn done(&self, packet: kmcl::Packet, status: Result, reply: &[u8]) {
    ///         if status.is_ok() && !reply.is_empty() {
    ///             self.0.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    ///         }
    ///         drop(packet); // or keep it for the next send
    ///     }
    /// }
    /// ```
    fn done(&self, packet: Packet, status: Result, reply: &[u8]);
}

/// The routine of a one-off send ([`ChannelRef::send`]).
///
/// ```no_run
/// struct Print;
///
/// impl kmcl::SendDone for Print {
///     fn done(&mut self, status: Result, reply: &[u8]) {
///         pr_info!("{:?}: {} bytes back\n", status, reply.len());
///     }
/// }
/// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
/// channel.send(b"ping", true, KBox::new(Print, GFP_KERNEL)?)?;
/// # Ok(())
/// # }
/// ```
pub trait SendDone: Send {
    /// As [`PacketDone::done`], without the packet.
    ///
    /// ```no_run
    /// struct Store(KVec<u8>);
    ///
    /// impl kmcl::SendDone for Store {
    ///     fn done(&mut self, status: Result, reply: &[u8]) {
    ///         if status.is_ok() {
    ///             let _ = self.0.extend_from_slice(reply, GFP_ATOMIC);
    ///         }
    ///     }
    /// }
    /// ```
    fn done(&mut self, status: Result, reply: &[u8]);
}

/// 0 or a negative errno as a `Result`.
#[inline]
fn result(rc: c_int) -> Result {
    // The usual case inline (`to_result` is a call into the kernel crate
    // on every packet sent or completed).
    if rc == 0 {
        return Ok(());
    }
    to_result(rc)
}

/// A slice's length as the ABI's `u32`.
fn len32(bytes: &[u8]) -> Result<u32> {
    u32::try_from(bytes.len()).map_err(|_| EINVAL)
}

/// A channel endpoint (KMCL `VMBCHANNEL`), owned: dropping it disables the
/// channel if needed (waiting for teardown) and frees it. Process context.
///
/// ```no_run
/// # struct Vsc;
/// # impl kmcl::Driver for Vsc {}
/// # const TYPE: kmcl::Guid = kmcl::Guid { b: [0x11; 16] };
/// # const INSTANCE: kmcl::Guid = kmcl::Guid { b: [0x12; 16] };
/// # fn example(module: &'static ThisModule) -> Result {
/// let driver = Arc::new(Vsc, GFP_KERNEL)?;
/// let mut channel = kmcl::Channel::new(module, kmcl::Role::Client, driver)?;
/// channel.set_target(&TYPE, None)?;
/// channel.enable()?;
/// // ... until the driver is done with it:
/// drop(channel); // disables (waiting for teardown) and frees
/// # Ok(())
/// # }
/// ```
#[doc(alias = "VMBCHANNEL")]
#[doc(alias = "VmbChannelCleanup")]
pub struct Channel {
    raw: *mut KmclChannel,
    /// The driver and what the channel keeps for it, at a stable address
    /// the callbacks (and [`ChannelRef`]s) find through the channel's
    /// pointer slot.
    state: Pin<KBox<State>>,
}

/// What a [`Channel`] keeps at its pointer slot.
#[pin_data]
struct State {
    driver: Arc<dyn Driver>,
    /// GPADL memory and mappings ([`shared`]).
    #[pin]
    kept: shared::KeptLock,
    /// A save's packet state between kmcl's two calls ([`save`]).
    #[pin]
    saving: save::SavingLock,
}

/// The state at `channel`'s pointer slot, if it has one.
///
/// # Safety
///
/// `channel` is live and made by [`Channel::new`] (whose state outlives
/// every use of the channel: see `Channel::drop`).
unsafe fn shared_state<'a>(channel: *mut KmclChannel) -> Option<&'a State> {
    // SAFETY: the caller's promise: the slot holds the address of the
    // `Channel`'s pinned state, or NULL before it is set.
    unsafe {
        abi::kmcl_channel_get_pointer(channel)
            .cast::<State>()
            .as_ref()
    }
}

// SAFETY: kmcl's channel functions may be called from any thread; the
// driver object is `Send + Sync`.
unsafe impl Send for Channel {}
// SAFETY: see above.
unsafe impl Sync for Channel {}

impl Channel {
    /// KMCL `VmbChannelAllocate` plus the driver's callbacks. `module` is
    /// the calling module (`&THIS_MODULE`): kmcl frees the channel if the
    /// module is unloaded without dropping it.
    ///
    /// ```no_run
    /// # struct Vsp;
    /// # impl kmcl::Driver for Vsp {}
    /// # const TYPE: kmcl::Guid = kmcl::Guid { b: [0x11; 16] };
    /// # const INSTANCE: kmcl::Guid = kmcl::Guid { b: [0x12; 16] };
    /// # fn example(module: &'static ThisModule) -> Result {
    /// let mut channel = kmcl::Channel::new(module, kmcl::Role::Server, Arc::new(Vsp, GFP_KERNEL)?)?;
    /// channel.set_offer(&TYPE, &INSTANCE)?;
    /// channel.enable()?;
    /// channel.start()?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelAllocate")]
    pub fn new(module: &'static ThisModule, role: Role, driver: Arc<dyn Driver>) -> Result<Self> {
        let mut raw = core::ptr::null_mut();
        let owner = module.as_ptr().cast::<abi::Module>();
        // SAFETY: `raw` is writable; `owner` is this module.
        result(unsafe { abi::kmcl_channel_allocate(owner, role == Role::Server, &mut raw) })?;
        let state = KBox::pin_init(
            pin_init!(State {
                driver,
                kept <- shared::new_kept(),
                saving <- save::new_saving(),
            }),
            GFP_KERNEL,
        );
        let state = match state {
            Ok(s) => s,
            Err(e) => {
                // SAFETY: `raw` is live, has no callbacks yet and is not
                // used again.
                unsafe { abi::kmcl_channel_cleanup(raw) };
                return Err(e);
            }
        };
        // From here on, dropping `channel` cleans it up.
        let channel = Channel { raw, state };
        let slot: *const State = &*channel.state;
        let mut callbacks = abi::StateCallbacks::new();
        callbacks.opened = Some(on_opened);
        callbacks.closed = Some(on_closed);
        callbacks.suspend = Some(on_suspend);
        callbacks.started = Some(on_started);
        callbacks.post_started = Some(on_post_started);
        // SAFETY: `raw` is live; the trampolines find the driver through
        // the pointer slot, which stays valid until `drop` (after cleanup,
        // so no callback runs later).
        unsafe {
            abi::kmcl_channel_set_pointer(raw, slot.cast_mut().cast());
            result(abi::kmcl_channel_init_set_state_change_callbacks(
                raw, &callbacks,
            ))?;
            result(abi::kmcl_channel_init_set_process_packet_callbacks(
                raw,
                Some(on_packet),
                Some(on_processing_complete),
            ))?;
            if role == Role::Client {
                result(abi::kmcl_channel_init_set_subchannel_callback(
                    raw,
                    Some(on_subchannel_offered),
                ))?;
            } else {
                save::register(raw)?;
            }
        }
        Ok(channel)
    }

    /// KMCL V5 `VmbChannelInitSetPrimaryChannel`: this (disabled) channel
    /// becomes a sub-channel of `primary` (same role); see
    /// `kmcl_channel_init_set_primary_channel` in `kmcl.h`.
    ///
    /// ```no_run
    /// # fn example(module: &'static ThisModule, primary: &kmcl::Channel, driver: Arc<dyn kmcl::Driver>) -> Result {
    /// let mut sub = kmcl::Channel::new(module, kmcl::Role::Server, driver)?;
    /// sub.set_primary(primary.as_ref())?;
    /// sub.enable()?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelInitSetPrimaryChannel")]
    pub fn set_primary(&mut self, primary: ChannelRef<'_>) -> Result {
        // SAFETY: both channels are live.
        result(unsafe { abi::kmcl_channel_init_set_primary_channel(self.raw, primary.raw) })
    }

    /// The channel, borrowed (what callbacks get).
    ///
    /// ```no_run
    /// # fn example(channel: &kmcl::Channel) -> Result {
    /// let borrowed: kmcl::ChannelRef<'_> = channel.as_ref();
    /// borrowed.set_transaction_quota(32)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn as_ref(&self) -> ChannelRef<'_> {
        ChannelRef {
            raw: self.raw,
            _life: PhantomData,
        }
    }

    /// Client: `VmbClientChannelInitSetTargetPnp` (instance `None`: any).
    ///
    /// ```no_run
    /// # const TYPE: kmcl::Guid = kmcl::Guid { b: [0x11; 16] };
    /// # const INSTANCE: kmcl::Guid = kmcl::Guid { b: [0x12; 16] };
    /// # fn example(channel: &mut kmcl::Channel) -> Result {
    /// channel.set_target(&TYPE, Some(&INSTANCE))?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbClientChannelInitSetTargetPnp")]
    pub fn set_target(&mut self, interface_type: &Guid, instance: Option<&Guid>) -> Result {
        let inst = instance.map_or(core::ptr::null(), core::ptr::from_ref);
        // SAFETY: `raw` is live; the GUIDs are readable for the call.
        result(unsafe {
            abi::kmcl_client_channel_init_set_target_pnp(
                self.raw,
                interface_type,
                inst,
                Some(on_pnp_failure),
            )
        })
    }

    /// Server: `VmbServerChannelInitSetTargetInterfaceId`.
    ///
    /// ```no_run
    /// # const TYPE: kmcl::Guid = kmcl::Guid { b: [0x11; 16] };
    /// # const INSTANCE: kmcl::Guid = kmcl::Guid { b: [0x12; 16] };
    /// # fn example(channel: &mut kmcl::Channel) -> Result {
    /// channel.set_offer(&TYPE, &INSTANCE)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbServerChannelInitSetTargetInterfaceId")]
    pub fn set_offer(&mut self, interface_type: &Guid, instance: &Guid) -> Result {
        // SAFETY: `raw` is live; the GUIDs are readable for the call.
        result(unsafe {
            abi::kmcl_server_channel_init_set_target_interface_id(
                self.raw,
                interface_type,
                instance,
            )
        })
    }

    /// `VmbChannelInitSetMaximumPacketSize`.
    ///
    /// ```no_run
    /// # fn example(channel: &mut kmcl::Channel) -> Result {
    /// channel.set_maximum_packet_size(16 * 1024)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelInitSetMaximumPacketSize")]
    pub fn set_maximum_packet_size(&mut self, bytes: u32) -> Result {
        // SAFETY: `raw` is live.
        result(unsafe { abi::kmcl_channel_init_set_maximum_packet_size(self.raw, bytes) })
    }

    /// Client: `VmbClientChannelInitSetRingBufferPageCount`.
    ///
    /// ```no_run
    /// # fn example(channel: &mut kmcl::Channel) -> Result {
    /// channel.set_ring_pages(64, 64)?; // 256 KiB each way
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbClientChannelInitSetRingBufferPageCount")]
    pub fn set_ring_pages(&mut self, incoming: u32, outgoing: u32) -> Result {
        // SAFETY: `raw` is live.
        result(unsafe {
            abi::kmcl_client_channel_init_set_ring_buffer_page_count(self.raw, incoming, outgoing)
        })
    }

    /// `VmbServerChannelInitSetMmioMegabytes` (server): MMIO space for the
    /// device, `megabytes` required and `optional` more if available.
    ///
    /// ```no_run
    /// # fn example(channel: &mut kmcl::Channel) -> Result {
    /// channel.set_mmio_megabytes(4, 0)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbServerChannelInitSetMmioMegabytes")]
    pub fn set_mmio_megabytes(&mut self, megabytes: u16, optional: u16) -> Result {
        // SAFETY: `raw` is live.
        result(unsafe {
            abi::kmcl_server_channel_init_set_mmio_megabytes(self.raw, megabytes, optional)
        })
    }

    /// Which VMBus a client looks for its offer on (kmcl's own;
    /// `abi::TRANSPORT_AUTO`, `TRANSPORT_LOOPBACK` or `TRANSPORT_HOST`).
    ///
    /// ```no_run
    /// # fn example(channel: &mut kmcl::Channel) -> Result {
    /// channel.set_transport(kmcl::abi::TRANSPORT_LOOPBACK)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_transport(&mut self, transport: u32) -> Result {
        // SAFETY: `raw` is live.
        result(unsafe { abi::kmcl_client_channel_init_set_transport(self.raw, transport) })
    }

    /// `VmbClientChannelInitSetTargetProcessorIndex` (kmcl: servers too):
    /// the CPU whose softirq delivers this channel's packets; `None` (the
    /// default): the CPU the other endpoint signalled from.
    ///
    /// ```no_run
    /// # fn example(channel: &mut kmcl::Channel) -> Result {
    /// channel.set_target_processor(Some(0))?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbClientChannelInitSetTargetProcessorIndex")]
    pub fn set_target_processor(&mut self, cpu: Option<u32>) -> Result {
        let cpu = cpu.unwrap_or(abi::TARGET_PROCESSOR_NONE);
        // SAFETY: `raw` is live.
        result(unsafe { abi::kmcl_channel_init_set_target_processor(self.raw, cpu) })
    }

    /// `VmbChannelInitSetFriendlyName`.
    ///
    /// ```no_run
    /// # fn example(channel: &mut kmcl::Channel) -> Result {
    /// channel.set_friendly_name(c"my_vsc")?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelInitSetFriendlyName")]
    pub fn set_friendly_name(&mut self, name: &CStr) -> Result {
        // SAFETY: `raw` is live; `name` is NUL-terminated.
        result(unsafe { abi::kmcl_channel_init_set_friendly_name(self.raw, name.as_char_ptr()) })
    }

    /// `VmbChannelInitSetMaximumExternalData`: the most external data an
    /// incoming packet may carry (`bytes` in at most `ranges` ranges).
    ///
    /// ```no_run
    /// # fn example(channel: &mut kmcl::Channel) -> Result {
    /// channel.set_maximum_external_data(1 << 20, 256)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelInitSetMaximumExternalData")]
    pub fn set_maximum_external_data(&mut self, bytes: u32, ranges: u32) -> Result {
        // SAFETY: `raw` is live.
        result(unsafe { abi::kmcl_channel_init_set_maximum_external_data(self.raw, bytes, ranges) })
    }

    /// `VmbChannelInitSetClientContextSize`: `size` zeroed bytes (at most
    /// 4096) with every incoming packet, for [`Incoming::client_context`].
    ///
    /// ```no_run
    /// # fn example(channel: &mut kmcl::Channel) -> Result {
    /// channel.set_client_context_size(64)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelInitSetClientContextSize")]
    pub fn set_client_context_size(&mut self, size: u32) -> Result {
        // SAFETY: `raw` is live.
        result(unsafe { abi::kmcl_channel_init_set_client_context_size(self.raw, size) })
    }

    /// `VmbChannelSaveBegin` (server, connected): stops delivery and takes
    /// the packets the driver holds into a save, asking
    /// [`Driver::save_packet`] for each; the driver then lets go of them
    /// with [`Incoming::into_save`], and writes the save out with
    /// [`Channel::save_continue`] or [`Channel::save_rest`]. On an error
    /// every packet is the driver's again and delivery resumes. Process
    /// context.
    ///
    /// ```no_run
    /// # const KEY: kmcl::Guid = kmcl::Guid { b: [0x13; 16] };
    /// # fn example(channel: &kmcl::Channel, held: &mut KVec<kmcl::Incoming>) -> Result {
    /// channel.save_begin()?;
    /// for packet in held.drain_all() {
    ///     packet.into_save();
    /// }
    /// let save = channel.save_rest()?;
    /// kmcl::stash_put(&KEY, &save)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelSaveBegin")]
    pub fn save_begin(&self) -> Result {
        // SAFETY: `raw` is live.
        result(unsafe { abi::kmcl_channel_save_begin(self.raw) })
    }

    /// `VmbChannelSetTransactionQuota` (also from callbacks:
    /// [`ChannelRef::set_transaction_quota`]).
    ///
    /// ```no_run
    /// # fn example(channel: &mut kmcl::Channel) -> Result {
    /// channel.set_transaction_quota(128)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelSetTransactionQuota")]
    pub fn set_transaction_quota(&mut self, quota: u32) -> Result {
        self.as_ref().set_transaction_quota(quota)
    }

    /// `VmbChannelSetIncomingProcessingAtPassive`.
    ///
    /// ```no_run
    /// # fn example(channel: &mut kmcl::Channel) -> Result {
    /// channel.set_incoming_processing_at_passive(true)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelSetIncomingProcessingAtPassive")]
    pub fn set_incoming_processing_at_passive(&mut self, at_passive: bool) -> Result {
        // SAFETY: `raw` is live.
        result(unsafe {
            abi::kmcl_channel_set_incoming_processing_at_passive(self.raw, at_passive)
        })
    }

    /// `VmbChannelEnable`: offer (server) or open (client); returns at once.
    ///
    /// ```no_run
    /// # fn example(channel: &mut kmcl::Channel) -> Result {
    /// channel.enable()?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelEnable")]
    pub fn enable(&self) -> Result {
        // SAFETY: `raw` is live.
        result(unsafe { abi::kmcl_channel_enable(self.raw) })
    }

    /// `VmbChannelDisable`: waits until the channel is torn down.
    ///
    /// ```no_run
    /// # fn example(channel: &mut kmcl::Channel) -> Result {
    /// channel.disable()?;
    /// channel.set_maximum_packet_size(8192)?; // disabled again: settable
    /// channel.enable()?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelDisable")]
    pub fn disable(&self) -> Result {
        // SAFETY: `raw` is live.
        result(unsafe { abi::kmcl_channel_disable(self.raw) })
    }

    /// `VmbChannelStart` (a server starts paused).
    ///
    /// ```no_run
    /// # fn example(channel: &kmcl::Channel) -> Result {
    /// channel.enable()?;
    /// channel.start()?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelStart")]
    pub fn start(&self) -> Result {
        // SAFETY: `raw` is live.
        result(unsafe { abi::kmcl_channel_start(self.raw) })
    }

    /// [`ChannelRef::interface_instance`].
    ///
    /// ```no_run
    /// # fn example(channel: &kmcl::Channel) -> Result {
    /// let instance: kmcl::Guid = channel.interface_instance();
    /// # Ok(())
    /// # }
    /// ```
    pub fn interface_instance(&self) -> Guid {
        self.as_ref().interface_instance()
    }

    /// [`ChannelRef::send`].
    ///
    /// ```no_run
    /// # struct Ignore;
    /// # impl kmcl::SendDone for Ignore {
    /// #     fn done(&mut self, _status: Result, _reply: &[u8]) {}
    /// # }
    /// # fn example(channel: &kmcl::Channel) -> Result {
    /// channel.send(b"hello", false, KBox::new(Ignore, GFP_KERNEL)?)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn send(
        &self,
        payload: &[u8],
        wait_for_completion: bool,
        done: KBox<dyn SendDone>,
    ) -> Result {
        self.as_ref().send(payload, wait_for_completion, done)
    }

    /// [`ChannelRef::send_sync`].
    ///
    /// ```no_run
    /// # fn example(channel: &kmcl::Channel) -> Result {
    /// let mut reply = [0u8; 64];
    /// let n = channel.send_sync(b"query", &mut reply, Some(1000))?;
    /// let reply = &reply[..n];
    /// # Ok(())
    /// # }
    /// ```
    pub fn send_sync(
        &self,
        payload: &[u8],
        reply: &mut [u8],
        timeout_ms: Option<u32>,
    ) -> Result<usize> {
        self.as_ref().send_sync(payload, reply, timeout_ms)
    }

    /// `VmbChannelPause`: waits for delivered packets to be completed.
    ///
    /// ```no_run
    /// # fn example(channel: &kmcl::Channel) -> Result {
    /// channel.pause()?;
    /// // ... no packets are delivered here ...
    /// channel.start()?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelPause")]
    pub fn pause(&self) -> Result {
        // SAFETY: `raw` is live.
        result(unsafe { abi::kmcl_channel_pause(self.raw) })
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        // SAFETY: `raw` is live and not used again; cleanup disables the
        // channel first, so no callback uses `state` after this (it is
        // dropped after this function, with the GPADL memory it kept:
        // kmcl deleted the GPADLs and mappings left).
        unsafe { abi::kmcl_channel_cleanup(self.raw) };
    }
}

/// A borrowed channel: what callbacks get, and [`Channel::as_ref`]. It
/// cannot outlive the channel it borrows.
///
/// ```no_run
/// # struct Vsc;
/// impl kmcl::Driver for Vsc {
///     fn started(&self, channel: kmcl::ChannelRef<'_>) {
///         let _ = channel.set_transaction_quota(16);
///     }
/// }
/// ```
#[derive(Clone, Copy)]
pub struct ChannelRef<'a> {
    raw: *mut KmclChannel,
    _life: PhantomData<&'a Channel>,
}

impl ChannelRef<'_> {
    /// The C handle, for calls to kmcl's C API (`abi`) that this wrapper
    /// does not cover yet. Calling them is `unsafe`; the handle is valid
    /// while this reference is.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
    /// let raw: *mut kmcl::abi::KmclChannel = channel.as_raw();
    /// # Ok(())
    /// # }
    /// ```
    pub fn as_raw(&self) -> *mut KmclChannel {
        self.raw
    }

    /// Which sub-channel of its primary's connection the channel is (1..;
    /// 0 for a primary channel); `ENOTCONN` while not connected.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
    /// if channel.subchannel_index()? == 0 {
    ///     pr_info!("the primary channel\n");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn subchannel_index(&self) -> Result<u16> {
        // SAFETY: `raw` is live for `'a`.
        let rc = unsafe { abi::kmcl_channel_get_subchannel_index(self.raw) };
        result(rc.min(0))?;
        u16::try_from(rc).map_err(|_| EINVAL)
    }

    /// `VmbChannelSetTransactionQuota`: the most incoming packets the
    /// driver may hold uncompleted (greater than 0; `u32::MAX` is as good
    /// as none); lowering it below what is held stops delivery until
    /// enough are completed. Any context, callbacks included.
    ///
    /// ```no_run
    /// # struct Vsc;
    /// impl kmcl::Driver for Vsc {
    ///     fn process_packet(&self, channel: kmcl::ChannelRef<'_>, packet: kmcl::Incoming) {
    ///         // Slow down: hold at most 8 packets from now on.
    ///         let _ = channel.set_transaction_quota(8);
    ///         let _ = packet.echo();
    ///     }
    /// }
    /// ```
    #[doc(alias = "VmbChannelSetTransactionQuota")]
    pub fn set_transaction_quota(&self, quota: u32) -> Result {
        // SAFETY: `raw` is live for `'a`.
        result(unsafe { abi::kmcl_channel_set_transaction_quota(self.raw, quota) })
    }

    /// `VmbChannelSetInterruptLatency`, for the current connection (from
    /// Opened until Closed; `ENOTCONN` otherwise): `latency` in 100 ns
    /// units (on the loopback bus signals are delayed and merged by it; on
    /// a VMBus host's channel 0 signals directly, anything else through
    /// the host's monitor page). Returns the value set before on this
    /// connection (0 at first). Any context.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
    /// let before = channel.set_interrupt_latency(100)?; // 10 us
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelSetInterruptLatency")]
    pub fn set_interrupt_latency(&self, latency: u16) -> Result<u16> {
        let mut old = 0u16;
        // SAFETY: `raw` is live for `'a`; `old` is writable.
        result(unsafe { abi::kmcl_channel_set_interrupt_latency(self.raw, latency, &mut old) })?;
        Ok(old)
    }

    /// `VmbChannelSizeofPacket`: the bytes of a packet object, what
    /// [`PacketMemory::new`] allocates. Any context.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
    /// let bytes = channel.sizeof_packet();
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelSizeofPacket")]
    pub fn sizeof_packet(&self) -> u32 {
        // SAFETY: `raw` is live for `'a`.
        unsafe { abi::kmcl_channel_sizeof_packet(self.raw) }
    }

    /// `VmbChannelGetInterfaceInstance`.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
    /// let instance = channel.interface_instance();
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelGetInterfaceInstance")]
    pub fn interface_instance(&self) -> Guid {
        let mut g = Guid::default();
        // SAFETY: `raw` is live for `'a`; `g` is writable.
        unsafe { abi::kmcl_channel_get_interface_instance(self.raw, &mut g) };
        g
    }

    /// `VmbChannelGetMmioSpace`: (kernel virtual address, bytes) of the
    /// connection's MMIO space, from Opened until Closed. Accessing it is
    /// the driver's business (raw memory, or I/O memory on a VMBus host).
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
    /// let (address, bytes) = channel.mmio_space()?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelGetMmioSpace")]
    pub fn mmio_space(&self) -> Result<(usize, u64)> {
        let (mut va, mut size) = (core::ptr::null_mut(), 0u64);
        // SAFETY: `raw` is live for `'a`; both outputs are writable.
        result(unsafe { abi::kmcl_channel_get_mmio_space(self.raw, &mut va, &mut size) })?;
        Ok((va as usize, size))
    }

    /// kmcl's `kmcl_channel_get_mmio_physical`: (guest physical start,
    /// bytes) of the connection's MMIO space, what a driver tells its host
    /// (KMCL's physical `MmioAddress`). `EOPNOTSUPP` on the loopback bus.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
    /// let (start, bytes) = channel.mmio_physical()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn mmio_physical(&self) -> Result<(u64, u64)> {
        let (mut start, mut size) = (0u64, 0u64);
        // SAFETY: `raw` is live for `'a`; both outputs are writable.
        result(unsafe { abi::kmcl_channel_get_mmio_physical(self.raw, &mut start, &mut size) })?;
        Ok((start, size))
    }

    /// Sends `payload` in a new packet object (`VmbPacketAllocate` +
    /// `VmbPacketSend`); `done` runs once when the transaction is over
    /// (with `wait_for_completion`: when the other endpoint completed it).
    /// Any context. On an error `done` does not run. Drivers that send
    /// often reuse [`Packet`]s instead, which allocates nothing per send.
    ///
    /// ```no_run
    /// # struct Ignore;
    /// # impl kmcl::SendDone for Ignore {
    /// #     fn done(&mut self, _status: Result, _reply: &[u8]) {}
    /// # }
    /// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
    /// channel.send(b"hello", true, KBox::new(Ignore, GFP_ATOMIC)?)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbPacketAllocate")]
    #[doc(alias = "VmbPacketSend")]
    pub fn send(
        &self,
        payload: &[u8],
        wait_for_completion: bool,
        done: KBox<dyn SendDone>,
    ) -> Result {
        Packet::make(*self, Done::Once(Some(done)))?
            .send(payload, wait_for_completion)
            .map_err(|(_, e)| e)
    }

    /// Sends `payload` without a completion request and without a routine:
    /// kmcl's `kmcl_channel_post`, what `VmbPacketAllocate` +
    /// `VmbPacketSend` of a packet object whose completion routine is NULL
    /// do, without the packet object. Written to the ring, or queued when
    /// the ring is full (`ENOBUFS` once the queue is at its limit). The
    /// cheapest way to send a packet nobody waits for. Any context.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
    /// channel.post(b"fire and forget")?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbPacketSend")]
    pub fn post(&self, payload: &[u8]) -> Result {
        let len = len32(payload)?;
        // SAFETY: the channel is live; the payload is copied before the
        // call returns.
        result(unsafe { abi::kmcl_channel_post(self.raw, payload.as_ptr().cast(), len) })
    }

    /// kmcl's `kmcl_channel_register_transfer_page_set` (client,
    /// connected): the other endpoint may from now on deliver data into
    /// GPADL `gpadl` by naming ranges of it as set `set_id`; such packets
    /// arrive with [`Incoming::transfer_pages`]. Process context.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
    /// let buffer = kmcl::SharedPages::new(16)?;
    /// let gpadl = channel.create_gpadl(&buffer, false)?;
    /// channel.register_transfer_page_set(gpadl, 1)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn register_transfer_page_set(&self, gpadl: u32, set_id: u16) -> Result {
        // SAFETY: `raw` is live for `'a`.
        result(unsafe { abi::kmcl_channel_register_transfer_page_set(self.raw, gpadl, set_id) })
    }

    /// kmcl's `kmcl_channel_unregister_transfer_page_set`. Process context.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
    /// channel.unregister_transfer_page_set(1)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn unregister_transfer_page_set(&self, set_id: u16) -> Result {
        // SAFETY: `raw` is live for `'a`.
        result(unsafe { abi::kmcl_channel_unregister_transfer_page_set(self.raw, set_id) })
    }

    /// `VmbChannelSendSynchronousRequest`: sends `payload`, waits for the
    /// completion, copies its payload into `reply` and returns its length.
    /// `timeout_ms` `None` waits for ever. Process context.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
    /// let mut reply = [0u8; 16];
    /// let n = channel.send_sync(b"version?", &mut reply, None)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelSendSynchronousRequest")]
    pub fn send_sync(
        &self,
        payload: &[u8],
        reply: &mut [u8],
        timeout_ms: Option<u32>,
    ) -> Result<usize> {
        let mut len = len32(reply)?;
        let timeout = timeout_ms
            .as_ref()
            .map_or(core::ptr::null(), core::ptr::from_ref);
        // SAFETY: `raw` is live; the buffers are valid for the call with
        // the lengths passed.
        result(unsafe {
            abi::kmcl_channel_send_synchronous_request(
                self.raw,
                payload.as_ptr().cast(),
                len32(payload)?,
                core::ptr::null(),
                0,
                reply.as_mut_ptr().cast(),
                &mut len,
                timeout,
            )
        })?;
        Ok(len as usize)
    }
}

/// An outgoing packet object (KMCL `VMBPACKET`), reusable: sending hands it
/// to kmcl until its transaction is over, then its [`PacketDone`] gets it
/// back. Dropping it frees it (`VmbPacketFree`). Sending allocates nothing.
///
/// ```no_run
/// # struct Done;
/// # impl kmcl::PacketDone for Done {
/// #     fn done(&self, _packet: kmcl::Packet, _status: Result, _reply: &[u8]) {}
/// # }
/// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
/// let done: Arc<dyn kmcl::PacketDone> = Arc::new(Done, GFP_KERNEL)?;
/// let packet = kmcl::Packet::new(channel, done)?;
/// packet.send(b"data", true).map_err(|(_packet, e)| e)?;
/// # Ok(())
/// # }
/// ```
#[doc(alias = "VmbPacketFree")]
#[doc(alias = "VMBPACKET")]
pub struct Packet {
    raw: *mut KmclPacket,
}

// SAFETY: a packet object not in flight is only used by its owner.
unsafe impl Send for Packet {}

/// What runs when a packet's transaction is over.
enum Done {
    Shared(Arc<dyn PacketDone>),
    Once(Option<KBox<dyn SendDone>>),
}

/// A packet's state in kmcl's pointer slot.
struct Slot {
    done: Done,
    tag: usize,
    /// The external data of the send in flight, kept until its
    /// transaction is over.
    external: Option<Arc<SharedPages>>,
    /// The driver's memory the packet object lives in
    /// ([`Packet::initialize`]), freed after the object ends.
    memory: Option<PacketMemory>,
}

/// Memory for one packet object, for [`Packet::initialize`]
/// (`VmbPacketInitialize`: a packet object in the driver's memory, say
/// from a pool it sized at init, rather than one kmcl allocates).
///
/// # Invariants
///
/// `words` holds at least `kmcl_channel_sizeof_packet()` bytes, aligned
/// for a pointer; its buffer does not move while `self` lives.
///
/// ```no_run
/// # struct Done;
/// # impl kmcl::PacketDone for Done {
/// #     fn done(&self, _packet: kmcl::Packet, _status: Result, _reply: &[u8]) {}
/// # }
/// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
/// # let done: Arc<dyn kmcl::PacketDone> = Arc::new(Done, GFP_KERNEL)?;
/// let memory = kmcl::PacketMemory::new(channel, GFP_KERNEL)?;
/// let packet = kmcl::Packet::initialize(channel, memory, done).map_err(|(e, _)| e)?;
/// // ... sent and back ...
/// let memory = packet.into_memory(); // for the next packet object
/// # Ok(())
/// # }
/// ```
pub struct PacketMemory {
    words: KVec<u64>,
}

impl core::fmt::Debug for PacketMemory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PacketMemory({} bytes)", self.words.len() * 8)
    }
}

impl PacketMemory {
    /// `VmbChannelSizeofPacket` bytes of memory (`flags`: `GFP_KERNEL` in
    /// process context, `GFP_ATOMIC` otherwise).
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
    /// let memory = kmcl::PacketMemory::new(channel, GFP_ATOMIC)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelSizeofPacket")]
    pub fn new(channel: ChannelRef<'_>, flags: kernel::alloc::Flags) -> Result<Self> {
        let bytes = channel.sizeof_packet() as usize;
        let words = KVec::from_elem(0u64, bytes.div_ceil(8), flags)?;
        Ok(PacketMemory { words })
    }
}

impl Packet {
    /// `VmbPacketAllocate` with `done` as its completion routine
    /// (`VmbPacketSetCompletionRoutine`). Any context.
    ///
    /// ```no_run
    /// # struct Done;
    /// # impl kmcl::PacketDone for Done {
    /// #     fn done(&self, _packet: kmcl::Packet, _status: Result, _reply: &[u8]) {}
    /// # }
    /// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
    /// let packet = kmcl::Packet::new(channel, Arc::new(Done, GFP_KERNEL)?)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbPacketAllocate")]
    #[doc(alias = "VmbPacketSetCompletionRoutine")]
    pub fn new(channel: ChannelRef<'_>, done: Arc<dyn PacketDone>) -> Result<Self> {
        Self::make(channel, Done::Shared(done))
    }

    fn make(channel: ChannelRef<'_>, done: Done) -> Result<Self> {
        Self::make_in(channel, done, None).map_err(|(e, _)| e)
    }

    /// `VmbPacketInitialize`: a packet object in `memory` (from
    /// [`PacketMemory::new`] for a channel of the same kmcl), with `done`
    /// as its completion routine. The packet owns `memory` until
    /// [`Packet::into_memory`] ends it. Any context. On an error `memory`
    /// is given back.
    ///
    /// ```no_run
    /// # fn example(channel: kmcl::ChannelRef<'_>, memory: kmcl::PacketMemory, done: Arc<dyn kmcl::PacketDone>) -> Result {
    /// let packet = match kmcl::Packet::initialize(channel, memory, done) {
    ///     Ok(p) => p,
    ///     Err((e, _memory)) => return Err(e),
    /// };
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbPacketInitialize")]
    pub fn initialize(
        channel: ChannelRef<'_>,
        memory: PacketMemory,
        done: Arc<dyn PacketDone>,
    ) -> core::result::Result<Self, (Error, Option<PacketMemory>)> {
        Self::make_in(channel, Done::Shared(done), Some(memory))
    }

    /// Ends a packet made by [`Packet::initialize`] (`VmbPacketFree`) and
    /// gives its memory back, to initialize another; `None` for a packet
    /// kmcl allocated (which this frees).
    ///
    /// ```no_run
    /// # fn example(packet: kmcl::Packet, pool: &mut KVec<kmcl::PacketMemory>) -> Result {
    /// if let Some(memory) = packet.into_memory() {
    ///     pool.push(memory, GFP_ATOMIC)?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbPacketFree")]
    pub fn into_memory(mut self) -> Option<PacketMemory> {
        let memory = self.slot().memory.take();
        drop(self);
        memory
    }

    /// [`Packet::new`] (`memory` `None`) or [`Packet::initialize`].
    fn make_in(
        channel: ChannelRef<'_>,
        done: Done,
        memory: Option<PacketMemory>,
    ) -> core::result::Result<Self, (Error, Option<PacketMemory>)> {
        let slot = match KBox::new(
            Slot {
                done,
                tag: 0,
                external: None,
                memory,
            },
            GFP_ATOMIC,
        ) {
            Ok(b) => KBox::into_raw(b),
            Err(_) => return Err((ENOMEM, None)),
        };
        // SAFETY: from `into_raw` above, ours until handed to the packet.
        let mem = unsafe { (*slot).memory.as_mut() };
        let raw = match mem {
            None => {
                // SAFETY: the channel is live.
                let raw = unsafe { abi::kmcl_packet_allocate(channel.raw) };
                if raw.is_null() {
                    // SAFETY: from `into_raw` above, not shared.
                    drop(unsafe { KBox::from_raw(slot) });
                    return Err((ENOMEM, None));
                }
                raw
            }
            Some(m) => {
                let mut raw = core::ptr::null_mut();
                let bytes = u32::try_from(m.words.len() * 8).unwrap_or(u32::MAX);
                // SAFETY: the channel is live; the memory is writable for
                // `bytes` and stays (in the slot, freed after the packet
                // object ends: `Drop`); `raw` is writable.
                let rc = unsafe {
                    abi::kmcl_packet_initialize(
                        channel.raw,
                        m.words.as_mut_ptr().cast(),
                        bytes,
                        &mut raw,
                    )
                };
                if rc != 0 {
                    // SAFETY: from `into_raw` above, not shared.
                    let mut s = unsafe { KBox::from_raw(slot) };
                    return Err((Error::from_errno(rc), s.memory.take()));
                }
                raw
            }
        };
        // SAFETY: `raw` is a new packet; the slot is freed in `drop`.
        unsafe {
            abi::kmcl_packet_set_pointer(raw, slot.cast());
            abi::kmcl_packet_set_completion_routine(raw, Some(on_packet_done));
        }
        Ok(Packet { raw })
    }

    fn slot(&mut self) -> &mut Slot {
        // SAFETY: set by `make`; the packet (and so its slot) is ours.
        unsafe { &mut *abi::kmcl_packet_get_pointer(self.raw).cast::<Slot>() }
    }

    /// The driver's word for this packet (KMCL `VmbPacketGetPointer`).
    ///
    /// ```no_run
    /// # fn example(packet: &mut kmcl::Packet) -> Result {
    /// let slot = packet.tag();
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbPacketGetPointer")]
    pub fn tag(&mut self) -> usize {
        self.slot().tag
    }

    /// Sets the driver's word (KMCL `VmbPacketSetPointer`).
    ///
    /// ```no_run
    /// # fn example(packet: &mut kmcl::Packet) -> Result {
    /// packet.set_tag(42);
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbPacketSetPointer")]
    pub fn set_tag(&mut self, tag: usize) {
        self.slot().tag = tag;
    }

    /// `VmbPacketGetChannel`, as a question: whether the packet was made
    /// for `channel`. (A `Packet` does not borrow its channel, so it
    /// cannot hand out a [`ChannelRef`]; [`Packet::channel_raw`] gives the
    /// C handle.)
    ///
    /// ```no_run
    /// # fn example(packet: &kmcl::Packet, channel: kmcl::ChannelRef<'_>) -> Result {
    /// if !packet.is_for(channel) {
    ///     return Err(EINVAL);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbPacketGetChannel")]
    pub fn is_for(&self, channel: ChannelRef<'_>) -> bool {
        self.channel_raw() == channel.raw
    }

    /// `VmbPacketGetChannel`: the C handle of the packet's channel, for
    /// kmcl's C API (`abi`); valid while that channel is.
    ///
    /// ```no_run
    /// # fn example(packet: &kmcl::Packet) -> Result {
    /// let raw: *mut kmcl::abi::KmclChannel = packet.channel_raw();
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbPacketGetChannel")]
    pub fn channel_raw(&self) -> *mut KmclChannel {
        // SAFETY: the packet is live.
        unsafe { abi::kmcl_packet_get_channel(self.raw) }
    }

    /// `VmbPacketSend` (in-band). On an error the packet is given back and
    /// its routine does not run.
    ///
    /// ```no_run
    /// # fn example(packet: kmcl::Packet) -> Result {
    /// match packet.send(b"data", true) {
    ///     Ok(()) => {} // its routine gets it back
    ///     Err((packet, e)) => {
    ///         pr_warn!("not sent: {:?}\n", e);
    ///         drop(packet);
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbPacketSend")]
    pub fn send(
        self,
        payload: &[u8],
        wait_for_completion: bool,
    ) -> core::result::Result<(), (Packet, Error)> {
        let Ok(len) = len32(payload) else {
            return Err((self, EINVAL));
        };
        let flags = if wait_for_completion {
            abi::FORMAT_FLAG_WAIT_FOR_COMPLETION
        } else {
            0
        };
        // SAFETY: the packet is live and not in flight; the payload is
        // copied before the call returns.
        let rc = unsafe {
            abi::kmcl_packet_send(
                self.raw,
                payload.as_ptr().cast(),
                len,
                core::ptr::null(),
                flags,
            )
        };
        self.handed_over(rc)
    }
}

impl Packet {
    /// kmcl's `kmcl_packet_send_with_transfer_pages`: `payload` in the ring,
    /// naming `ranges` of the other endpoint's transfer-page set `set_id`,
    /// into which the driver wrote the data (through its mapping of the
    /// set's GPADL). The ranges must lie in a set the other endpoint
    /// registered (`EINVAL` otherwise). Any context. On an error the
    /// packet is given back and its routine does not run.
    ///
    /// ```no_run
    /// # fn example(packet: kmcl::Packet) -> Result {
    /// // The data is in bytes 0..1500 of the other endpoint's set 1.
    /// let ranges = [kmcl::TransferRange { byte_count: 1500, byte_offset: 0 }];
    /// packet.send_with_transfer_pages(1, &ranges, b"rx", true).map_err(|(_, e)| e)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn send_with_transfer_pages(
        self,
        set_id: u16,
        ranges: &[TransferRange],
        payload: &[u8],
        wait_for_completion: bool,
    ) -> core::result::Result<(), (Packet, Error)> {
        let (Ok(len), Ok(count)) = (len32(payload), u32::try_from(ranges.len())) else {
            return Err((self, EINVAL));
        };
        let flags = if wait_for_completion {
            abi::FORMAT_FLAG_WAIT_FOR_COMPLETION
        } else {
            0
        };
        // SAFETY: the packet is live and not in flight; the ranges and the
        // payload are copied before the call returns.
        let rc = unsafe {
            abi::kmcl_packet_send_with_transfer_pages(
                self.raw,
                set_id,
                ranges.as_ptr(),
                count,
                payload.as_ptr().cast(),
                len,
                flags,
            )
        };
        self.handed_over(rc)
    }

    /// kmcl's `kmcl_packet_send_with_page_buffers`: `payload` in the ring
    /// and one range of external data per entry of `ranges` (1 to 256),
    /// exposed to the other endpoint until it completes the packet (a
    /// completion is always requested).
    ///
    /// # Safety
    ///
    /// Every page `ranges` names stays allocated until the packet's
    /// routine runs.
    ///
    /// ```no_run
    /// # fn example(packet: kmcl::Packet, pfn: u64) -> Result {
    /// let ranges = [kmcl::PageBuffer { len: 512, offset: 0, pfn }];
    /// // SAFETY: the page stays allocated until the packet's routine runs.
    /// unsafe { packet.send_with_page_buffers(b"hdr", &ranges) }.map_err(|(_, e)| e)?;
    /// # Ok(())
    /// # }
    /// ```
    pub unsafe fn send_with_page_buffers(
        self,
        payload: &[u8],
        ranges: &[PageBuffer],
    ) -> core::result::Result<(), (Packet, Error)> {
        let (Ok(len), Ok(count)) = (len32(payload), u32::try_from(ranges.len())) else {
            return Err((self, EINVAL));
        };
        // SAFETY: the packet is live and not in flight; the payload and
        // the ranges are read before the call returns; the pages stay
        // allocated until the routine (the caller's promise).
        let rc = unsafe {
            abi::kmcl_packet_send_with_page_buffers(
                self.raw,
                payload.as_ptr().cast(),
                len,
                ranges.as_ptr(),
                count,
                abi::FORMAT_FLAG_WAIT_FOR_COMPLETION,
            )
        };
        self.handed_over(rc)
    }

    /// `VmbPacketSendWithExternalPfns`: `payload` in the ring and the whole
    /// pages with frame numbers `pfns` exposed to the other endpoint as
    /// external data until it completes the packet (a completion is always
    /// requested). `EINVAL` for an empty list or an invalid frame. Drivers
    /// without page frame numbers of their own use
    /// [`Packet::send_with_shared`], which is safe.
    ///
    /// # Safety
    ///
    /// Every page `pfns` names stays allocated until the packet's routine
    /// runs.
    ///
    /// ```no_run
    /// # fn example(packet: kmcl::Packet, pfns: &[u64]) -> Result {
    /// // SAFETY: the pages stay allocated until the packet's routine runs.
    /// unsafe { packet.send_with_external_pfns(b"hdr", pfns) }.map_err(|(_, e)| e)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbPacketSendWithExternalPfns")]
    pub unsafe fn send_with_external_pfns(
        self,
        payload: &[u8],
        pfns: &[u64],
    ) -> core::result::Result<(), (Packet, Error)> {
        let (Ok(len), Ok(count)) = (len32(payload), u32::try_from(pfns.len())) else {
            return Err((self, EINVAL));
        };
        // SAFETY: the packet is live and not in flight; the payload and the
        // frame numbers are read before the call returns; the pages stay
        // allocated until the routine (the caller's promise).
        let rc = unsafe {
            abi::kmcl_packet_send_with_external_pfns(
                self.raw,
                payload.as_ptr().cast(),
                len,
                pfns.as_ptr(),
                count,
                abi::FORMAT_FLAG_WAIT_FOR_COMPLETION,
            )
        };
        self.handed_over(rc)
    }

    /// `VmbPacketSend` with external data: `payload` in the ring, and
    /// `length` bytes from `offset` in `page` exposed to the other endpoint
    /// until it completes the packet (a completion is always requested).
    ///
    /// # Safety
    ///
    /// `page` stays allocated until the packet's routine runs.
    ///
    /// ```no_run
    /// # fn example(packet: kmcl::Packet, page: &kernel::page::Page) -> Result {
    /// // SAFETY: the page stays allocated until the packet's routine runs.
    /// unsafe { packet.send_with_page(b"hdr", page, 0, 4096) }.map_err(|(_, e)| e)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbPacketSend")]
    pub unsafe fn send_with_page(
        self,
        payload: &[u8],
        page: &kernel::page::Page,
        offset: u32,
        length: u32,
    ) -> core::result::Result<(), (Packet, Error)> {
        let Ok(len) = len32(payload) else {
            return Err((self, EINVAL));
        };
        let mut pages = [page.as_ptr().cast::<abi::Page>()];
        let mdl = abi::KmclMdl {
            pages: pages.as_mut_ptr(),
            nr_pages: 1,
            offset,
            length,
            next: core::ptr::null_mut(),
        };
        // SAFETY: the packet is live and not in flight; the payload and
        // the MDL are read before the call returns; the page stays
        // allocated until the routine (the caller's promise).
        let rc = unsafe {
            abi::kmcl_packet_send(
                self.raw,
                payload.as_ptr().cast(),
                len,
                &mdl,
                abi::FORMAT_FLAG_WAIT_FOR_COMPLETION,
            )
        };
        self.handed_over(rc)
    }
}

impl Packet {
    /// The end of a send that returned `rc`: on success kmcl has the packet
    /// until `on_packet_done`; on an error it is the caller's again.
    fn handed_over(self, rc: c_int) -> core::result::Result<(), (Packet, Error)> {
        match result(rc) {
            Ok(()) => {
                let _ = ManuallyDrop::new(self);
                Ok(())
            }
            Err(e) => Err((self, e)),
        }
    }
}

impl Drop for Packet {
    fn drop(&mut self) {
        // SAFETY: the packet is live, not in flight, not used again; its
        // slot was made by `make_in` and is freed once, here, after the
        // packet object (which may live in the slot's memory) ends.
        unsafe {
            let slot = KBox::from_raw(abi::kmcl_packet_get_pointer(self.raw).cast::<Slot>());
            abi::kmcl_packet_free(self.raw);
            drop(slot);
        }
    }
}

/// An incoming packet (KMCL `VMBPACKETCOMPLETION`), given to
/// [`Driver::process_packet`]. Completing, deferring or failing consumes
/// it; dropping it completes it with an empty payload.
///
/// ```no_run
/// # struct Vsc;
/// impl kmcl::Driver for Vsc {
///     fn process_packet(&self, _channel: kmcl::ChannelRef<'_>, packet: kmcl::Incoming) {
///         match packet.data().first() {
///             Some(0) => drop(packet), // completed with no payload
///             Some(_) => packet.defer_to_passive(),
///             None => packet.fail(),
///         }
///     }
/// }
/// ```
#[doc(alias = "VMBPACKETCOMPLETION")]
pub struct Incoming {
    raw: *mut KmclIncoming,
    data: *const u8,
    len: usize,
    /// The `EvtVmbChannelProcessPacket` flags.
    flags: u32,
}

// SAFETY: kmcl lets an incoming packet be completed from any context.
unsafe impl Send for Incoming {}

impl Incoming {
    /// The payload (padded to 8 bytes by VMBus).
    ///
    /// ```no_run
    /// # fn example(packet: &kmcl::Incoming) -> Result {
    /// let header = packet.data().get(..8).ok_or(EINVAL)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn data(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: kmcl keeps the payload valid until the packet is
        // completed, which takes `self`.
        unsafe { core::slice::from_raw_parts(self.data, self.len) }
    }

    /// The flags `EvtVmbChannelProcessPacket` delivered the packet with:
    /// [`abi::PROCESS_PACKET_FLAG_EXTERNAL_DATA`] (read it with
    /// [`Incoming::external_data`]), [`abi::PROCESS_PACKET_FLAG_TRANSFER_PAGES`]
    /// ([`Incoming::transfer_pages`]), or 0.
    ///
    /// ```no_run
    /// # fn example(packet: &kmcl::Incoming) -> Result {
    /// if packet.flags() & kmcl::abi::PROCESS_PACKET_FLAG_EXTERNAL_DATA != 0 {
    ///     let data = packet.external_data().ok_or(EINVAL)?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// `VmbChannelPacketGetClientContext` (KMCL V2): the packet's context
    /// area of [`Channel`]'s `ClientContextSize` bytes, zeroed when the
    /// packet arrived and kept across a deferral; empty without one.
    ///
    /// ```no_run
    /// # fn example(packet: &mut kmcl::Incoming) -> Result {
    /// let context = packet.client_context();
    /// if let Some(first) = context.first_mut() {
    ///     *first = 1; // seen once; kept across a deferral
    /// }
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelPacketGetClientContext")]
    pub fn client_context(&mut self) -> &mut [u8] {
        let mut size = 0u32;
        // SAFETY: the packet is live (held by `self`); `size` is writable.
        let area = unsafe { abi::kmcl_channel_packet_get_client_context(self.raw, &mut size) };
        if area.is_null() || size == 0 {
            return &mut [];
        }
        // SAFETY: kmcl gives the driver `size` bytes at `area` until the
        // packet is completed, which takes `self`; `&mut self` makes this
        // the only reference.
        unsafe { core::slice::from_raw_parts_mut(area.cast::<u8>(), size as usize) }
    }

    /// The transfer-page set and ranges a transfer-page packet names
    /// (kmcl's `kmcl_channel_packet_get_transfer_pages`): offsets into the
    /// buffer the driver registered as that set, each checked to lie
    /// inside it. `None` for any other packet. Completing the packet tells
    /// the sender the ranges are free again.
    ///
    /// ```no_run
    /// # fn example(packet: &kmcl::Incoming) -> Result {
    /// if let Some((set, ranges)) = packet.transfer_pages() {
    ///     for r in ranges {
    ///         pr_debug!("set {}: {} bytes at {}\n", set, r.byte_count, r.byte_offset);
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn transfer_pages(&self) -> Option<(u16, &[TransferRange])> {
        let (mut set, mut ranges, mut count) = (0u16, core::ptr::null(), 0u32);
        // SAFETY: the packet is live (held by `self`); the outputs are
        // writable.
        let rc = unsafe {
            abi::kmcl_channel_packet_get_transfer_pages(self.raw, &mut set, &mut ranges, &mut count)
        };
        if rc != 0 || ranges.is_null() {
            return None;
        }
        // SAFETY: kmcl gives `count` ranges at `ranges`, valid until the
        // packet is completed, which takes `self`.
        Some((set, unsafe {
            core::slice::from_raw_parts(ranges, count as usize)
        }))
    }

    /// `VmbChannelPacketComplete`, with `reply` as the completion payload
    /// if the sender asked for one.
    ///
    /// ```no_run
    /// # fn example(packet: kmcl::Incoming) -> Result {
    /// packet.complete(b"done")?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelPacketComplete")]
    pub fn complete(self, reply: &[u8]) -> Result {
        let me = ManuallyDrop::new(self);
        let len = len32(reply)?;
        // SAFETY: the packet is live and given up here.
        result(unsafe { abi::kmcl_channel_packet_complete(me.raw, reply.as_ptr().cast(), len) })
    }

    /// `VmbChannelPacketComplete` with the packet's own payload as the
    /// completion payload (an echo).
    ///
    /// ```no_run
    /// # fn example(packet: kmcl::Incoming) -> Result {
    /// packet.echo()?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelPacketComplete")]
    pub fn echo(self) -> Result {
        let me = ManuallyDrop::new(self);
        // SAFETY: the packet is live and given up here; kmcl copies the
        // payload (which lives in the packet) before it releases it.
        result(unsafe { abi::kmcl_channel_packet_complete(me.raw, me.data.cast(), me.len as u32) })
    }

    /// `VmbChannelPacketDeferToPassive`: delivered again in process context.
    ///
    /// ```no_run
    /// # struct Vsc;
    /// impl kmcl::Driver for Vsc {
    ///     fn process_packet(&self, _channel: kmcl::ChannelRef<'_>, packet: kmcl::Incoming) {
    ///         // Delivered again, in process context, where it may sleep.
    ///         packet.defer_to_passive();
    ///     }
    /// }
    /// ```
    #[doc(alias = "VmbChannelPacketDeferToPassive")]
    pub fn defer_to_passive(self) {
        let me = ManuallyDrop::new(self);
        // SAFETY: the packet is live and given up here.
        unsafe { abi::kmcl_channel_packet_defer_to_passive(me.raw) };
    }

    /// `VmbChannelPacketFail`: delivery stops and the connection closes.
    ///
    /// ```no_run
    /// # fn example(packet: kmcl::Incoming) -> Result {
    /// if packet.data().len() < 8 {
    ///     packet.fail(); // a malformed packet: close the connection
    /// }
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelPacketFail")]
    pub fn fail(self) {
        let me = ManuallyDrop::new(self);
        // SAFETY: the packet is live and given up here.
        unsafe { abi::kmcl_channel_packet_fail(me.raw) };
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // SAFETY: the packet is live and given up here.
        unsafe { abi::kmcl_channel_packet_complete(self.raw, core::ptr::null(), 0) };
    }
}

// Trampolines: kmcl calls these; they find the driver through the
// channel's pointer slot (set by `Channel::new`).

/// The driver of `channel`.
///
/// # Safety
///
/// `channel` is a live channel made by [`Channel::new`].
unsafe fn driver<'a>(channel: *mut KmclChannel) -> (&'a Arc<dyn Driver>, ChannelRef<'a>) {
    // SAFETY: the slot holds the address of the `Channel`'s state, set
    // before any callback can run, which outlives every callback (see
    // `Channel::drop`).
    let s = unsafe { shared_state(channel) }.expect("kmcl::Channel's state");
    (
        &s.driver,
        ChannelRef {
            raw: channel,
            _life: PhantomData,
        },
    )
}

/// # Safety
///
/// Called by kmcl for a channel made by [`Channel::new`].
unsafe extern "C" fn on_opened(channel: *mut KmclChannel) -> c_int {
    // SAFETY: the caller's promise.
    let (d, c) = unsafe { driver(channel) };
    // A new connection: the last one's GPADLs were deleted (by the driver,
    // or by kmcl after its Closed), their memory is no longer shared.
    // SAFETY: the caller's promise.
    if let Some(s) = unsafe { shared_state(channel) } {
        let old = s.kept.lock().forget_gpadls();
        drop(old);
    }
    match d.opened(c) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by kmcl for a channel made by [`Channel::new`].
unsafe extern "C" fn on_closed(channel: *mut KmclChannel) {
    // SAFETY: the caller's promise.
    let (d, c) = unsafe { driver(channel) };
    d.closed(c);
    // Mappings the driver left end with the connection.
    c.unmap_all();
}

/// # Safety
///
/// Called by kmcl for a channel made by [`Channel::new`].
unsafe extern "C" fn on_suspend(channel: *mut KmclChannel) {
    // SAFETY: the caller's promise.
    let (d, c) = unsafe { driver(channel) };
    d.suspend(c);
}

/// # Safety
///
/// Called by kmcl for a channel made by [`Channel::new`].
unsafe extern "C" fn on_started(channel: *mut KmclChannel) {
    // SAFETY: the caller's promise.
    let (d, c) = unsafe { driver(channel) };
    d.started(c);
}

/// # Safety
///
/// Called by kmcl for a channel made by [`Channel::new`].
unsafe extern "C" fn on_post_started(channel: *mut KmclChannel) {
    // SAFETY: the caller's promise.
    let (d, c) = unsafe { driver(channel) };
    d.post_started(c);
}

/// # Safety
///
/// Called by kmcl for a client channel made by [`Channel::new`].
unsafe extern "C" fn on_subchannel_offered(channel: *mut KmclChannel, index: u16) {
    // SAFETY: the caller's promise.
    let (d, c) = unsafe { driver(channel) };
    d.subchannel_offered(c, index);
}

/// # Safety
///
/// Called by kmcl for a channel made by [`Channel::new`].
unsafe extern "C" fn on_pnp_failure(channel: *mut KmclChannel, status: c_int) {
    // SAFETY: the caller's promise.
    let (d, c) = unsafe { driver(channel) };
    d.pnp_failure(c, Error::from_errno(status));
}

/// # Safety
///
/// Called by kmcl for a channel made by [`Channel::new`], with a live
/// packet whose payload is `length` bytes at `buffer`.
unsafe extern "C" fn on_packet(
    channel: *mut KmclChannel,
    packet: *mut KmclIncoming,
    buffer: *const c_void,
    length: u32,
    flags: u32,
) {
    // SAFETY: the caller's promise.
    let (d, c) = unsafe { driver(channel) };
    let packet = Incoming {
        raw: packet,
        data: buffer.cast(),
        len: length as usize,
        flags,
    };
    d.process_packet(c, packet);
}

/// # Safety
///
/// Called by kmcl for a channel made by [`Channel::new`].
unsafe extern "C" fn on_processing_complete(channel: *mut KmclChannel, packets: u32) {
    // SAFETY: the caller's promise.
    let (d, c) = unsafe { driver(channel) };
    d.processing_complete(c, packets);
}

/// # Safety
///
/// Called by kmcl for a packet made by [`Packet::make`], whose transaction
/// is over; `buffer` holds `length` bytes for the call.
unsafe extern "C" fn on_packet_done(
    packet: *mut KmclPacket,
    status: c_int,
    buffer: *const c_void,
    length: u32,
) {
    let reply = if length == 0 || buffer.is_null() {
        &[][..]
    } else {
        // SAFETY: the caller's promise.
        unsafe { core::slice::from_raw_parts(buffer.cast::<u8>(), length as usize) }
    };
    let mut packet = Packet { raw: packet };
    // One look at the slot (each is a call into kmcl).
    let slot = packet.slot();
    // The transaction is over: the other endpoint reaches its external
    // data no more.
    drop(slot.external.take());
    // The routine may drop the packet, and with it the slot: what it needs
    // is taken out first.
    let done = match &mut slot.done {
        Done::Shared(d) => Ok(d.clone()),
        Done::Once(d) => Err(d.take()),
    };
    match done {
        Ok(d) => d.done(packet, result(status), reply),
        Err(d) => {
            drop(packet);
            if let Some(mut d) = d {
                d.done(result(status), reply);
            }
        }
    }
}

// SPDX-License-Identifier: GPL-2.0

//! Init-time settings of a channel (KMCL's `VmbChannelInitSet*` and
//! `VmbServerChannelInitSet*`): changeable only while it is disabled.

use kernel::{
    prelude::*,
    sync::Arc, //
};

use crate::{
    engine::types::Guid,
    protocol::lifecycle::Role, //
};

use super::PacketCallbacks;
use super::{
    Channel,
    Control,
    StateCallbacks, //
    NO_TARGET_CPU,
};

/// Init-time settings (KMCL's `VmbChannelInitSet*`), changeable only while
/// the channel is disabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Interface type GUID: offered (server) or looked for (client).
    pub(crate) interface_type: Guid,
    /// Interface instance GUID; for a client all zeroes means "any".
    pub(crate) interface_instance: Guid,
    /// Largest packet payload the driver will send (`MaximumPacketSize`).
    pub(crate) max_packet_size: u32,
    /// Client: pages of the ring the client receives on.
    pub(crate) incoming_pages: u32,
    /// Client: pages of the ring the client sends on.
    pub(crate) outgoing_pages: u32,
    /// Bytes of zeroed driver context given with each incoming packet
    /// (`ClientContextSize`).
    pub(crate) client_context_size: u32,
    /// Most bytes of external data one packet may describe
    /// (`MaximumExternalData`; 0: none).
    pub(crate) max_external_bytes: u32,
    /// Most ranges (chain length) one packet may describe.
    pub(crate) max_external_ranges: u32,
    /// Client: which VMBus the offer is looked for on.
    pub(crate) transport: Transport,
    /// Server: MMIO space for the device, in MiB (required, optional).
    pub(crate) mmio_megabytes: MmioMegabytes,
    /// Server: the VTL whose clients see the offer (KMCL target VTL).
    /// Client: the VTL it runs in (the kernel's; 0 unless a test says
    /// otherwise).
    pub(crate) vtl: u8,
}

/// Where a client channel looks for its offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// On the loopback bus if a server offers the interface there when the
    /// client is enabled, or if no VMBus host exists; else on the host.
    Auto,
    /// On kmcl's loopback VMBus only.
    Loopback,
    /// On the VMBus host (Hyper-V) only, through hv_vmbus.
    Host,
}

/// The highest VTL (Hyper-V's VTLs are numbered 0 to 15).
pub(crate) const MAX_VTL: u8 = 15;

/// Longest friendly name, in bytes.
pub(crate) const FRIENDLY_NAME_MAX: usize = 64;

/// `VMBUS_CHANNEL_INIT_FLAG_IS_PIPE`: pipe mode (not supported).
pub(crate) const CHANNEL_FLAG_IS_PIPE: u32 = 0x1;

/// All server flags KMCL defines (`VMBUS_SERVER_CHANNEL_INIT_FLAG_*`).
pub(crate) const SERVER_FLAGS_KNOWN: u32 = 0x1f;

/// `VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER`: what every kmcl offer
/// is (on kmcl's in-guest loopback VMBus), so the one server flag kmcl
/// takes. The others ask for what kmcl does not do -- pipe offers, a
/// Windows device interface, a forced new channel, a TLNPI provider
/// offer -- and are refused rather than recorded without effect.
pub(crate) const SERVER_FLAG_LOOPBACK_OFFER: u32 = 0x1;

/// The MMIO space a server's device asks for, in MiB (KMCL
/// `VmbServerChannelInitSetMmioMegabytes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MmioMegabytes {
    /// MiB the device must have.
    pub(crate) required: u16,
    /// MiB more it may have.
    pub(crate) optional: u16,
}

impl Settings {
    pub(super) const fn new() -> Self {
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
            mmio_megabytes: MmioMegabytes {
                required: 0,
                optional: 0,
            },
            vtl: 0,
        }
    }
}

/// Most data pages of one ring: its size, (pages + 1) pages in bytes (the
/// control page too), must fit the 32 bits `hv_vmbus` takes it in.
pub(crate) const MAX_RING_PAGES: u32 = (u32::MAX >> kernel::page::PAGE_SHIFT) - 1;

impl Channel {
    /// KMCL `VmbClientChannelInitSetRingBufferPageCount`: data pages of the
    /// ring the client receives on and of the one it sends on, each 1 to
    /// [`MAX_RING_PAGES`] (`-EINVAL` otherwise).
    pub(crate) fn set_ring_page_counts(&self, incoming: u32, outgoing: u32) -> Result {
        let valid = 1..=MAX_RING_PAGES;
        if !valid.contains(&incoming) || !valid.contains(&outgoing) {
            return Err(EINVAL);
        }
        self.configure(|s| {
            s.incoming_pages = incoming;
            s.outgoing_pages = outgoing;
        })
    }

    /// Runs `f` on the control state if init-time settings may change
    /// (KMCL: only while disabled), else fails with `-EBUSY`.
    pub(super) fn init_time(&self, f: impl FnOnce(&mut Control) -> Result) -> Result {
        let mut ctl = self.lock_control()?;
        if !ctl.lifecycle.accepts_init() {
            return Err(EBUSY);
        }
        f(&mut ctl)?;
        self.note_instance(&ctl);
        Ok(())
    }

    /// Changes init-time settings; `-EBUSY` unless the channel is disabled.
    pub(crate) fn configure(&self, f: impl FnOnce(&mut Settings)) -> Result {
        self.init_time(|ctl| {
            f(&mut ctl.settings);
            Ok(())
        })
    }

    #[cfg(kmcl_kunit)]
    /// The current settings.
    pub(crate) fn settings(&self) -> Settings {
        self.control.lock().settings
    }

    /// KMCL `VmbChannelInitSetFriendlyName`: a name for debugging (at most
    /// [`FRIENDLY_NAME_MAX`] bytes, else `-EINVAL`).
    pub(crate) fn set_friendly_name(&self, name: &[u8]) -> Result {
        self.init_time(|ctl| {
            let dst = ctl.friendly_name.get_mut(..name.len()).ok_or(EINVAL)?;
            dst.copy_from_slice(name);
            ctl.friendly_name_len = name.len();
            Ok(())
        })
    }

    /// Calls `f` with the friendly name.
    pub(crate) fn with_friendly_name<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        let ctl = self.control.lock();
        f(&ctl.friendly_name[..ctl.friendly_name_len])
    }

    /// KMCL `VmbChannelInitSetFlags`: `-EINVAL` for unknown bits,
    /// `-EOPNOTSUPP` for pipe mode, which kmcl does not implement.
    pub(crate) fn set_flags(&self, flags: u32) -> Result {
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
    pub(crate) fn set_target_vtl(&self, vtl: u8) -> Result {
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
    pub(crate) fn set_mmio_megabytes(&self, megabytes: u16, optional: u16) -> Result {
        self.init_time(|ctl| {
            if self.role != Role::Server {
                return Err(EINVAL);
            }
            ctl.settings.mmio_megabytes = MmioMegabytes {
                required: megabytes,
                optional,
            };
            Ok(())
        })
    }

    /// KMCL `VmbServerChannelInitSetFlags`: `-EINVAL` for unknown bits or
    /// on a client channel, `-EOPNOTSUPP` for a flag kmcl does not
    /// implement (all but [`SERVER_FLAG_LOOPBACK_OFFER`]).
    pub(crate) fn set_server_flags(&self, flags: u32) -> Result {
        self.init_time(|ctl| {
            if self.role != Role::Server || flags & !SERVER_FLAGS_KNOWN != 0 {
                return Err(EINVAL);
            }
            if flags & !SERVER_FLAG_LOOPBACK_OFFER != 0 {
                return Err(EOPNOTSUPP);
            }
            ctl.server_flags = flags;
            Ok(())
        })
    }

    /// KMCL `VmbChannelInitSetMaximumExternalData`: the most external data
    /// (bytes and chain length) one packet may describe; both must be
    /// non-zero (`-EINVAL`). Incoming GPA-direct range lists beyond these
    /// limits are rejected.
    pub(crate) fn set_maximum_external_data(&self, bytes: u32, ranges: u32) -> Result {
        if bytes == 0 || ranges == 0 {
            return Err(EINVAL);
        }
        self.configure(|s| {
            s.max_external_bytes = bytes;
            s.max_external_ranges = ranges;
        })
    }

    /// KMCL `VmbChannelSetPointer`.
    pub(crate) fn set_pointer(&self, pointer: usize) {
        self.pointer
            .store(pointer, core::sync::atomic::Ordering::Release);
    }

    /// KMCL `VmbChannelGetPointer`.
    pub(crate) fn pointer(&self) -> usize {
        self.pointer.load(core::sync::atomic::Ordering::Acquire)
    }

    /// KMCL `VmbChannelGetInterfaceInstance`: the instance GUID of the
    /// offer the channel is connected to (a client that accepted any
    /// instance learns which), else the configured one. Any context, the
    /// channel's own callbacks included.
    pub(crate) fn interface_instance(&self) -> Guid {
        *self.instance.lock()
    }

    /// Sets the state callbacks; `-EBUSY` unless the channel is disabled.
    pub(crate) fn set_state_callbacks(&self, callbacks: Arc<dyn StateCallbacks>) -> Result {
        self.init_time(|ctl| {
            ctl.callbacks = Some(callbacks);
            Ok(())
        })
    }

    /// KMCL V5 `VmbChannelInitSetPrimaryChannel`: the channel becomes a
    /// sub-channel of `primary` (same role, itself no sub-channel). A
    /// server sub-channel is offered, when enabled, as the next sub-channel
    /// of its primary's connection (the primary's client hears of it, see
    /// [`StateCallbacks::subchannel_offered`]); a client sub-channel, when
    /// enabled, opens a free sub-channel offer of its primary's
    /// connection. Both need their primary connected (`-ENOTCONN` at
    /// Enable), and their connection closes with the primary's. `-EINVAL`
    /// for the channel itself, another role or a sub-channel; `-EBUSY`
    /// unless disabled.
    pub(crate) fn set_primary(self: &Arc<Self>, primary: &Arc<Channel>) -> Result {
        if Arc::ptr_eq(self, primary) || primary.role != self.role {
            return Err(EINVAL);
        }
        // Not under our control lock: a second channel's control is never
        // taken while holding one (the lock table); the primary's primary
        // is set only while it is disabled, and a primary enabled later
        // with one is refused at Enable (see `primary_of`).
        if primary.control.lock().primary.is_some() {
            return Err(EINVAL);
        }
        let turn = self.take_turn()?;
        {
            let mut ctl = self.control.lock();
            if !ctl.lifecycle.accepts_init() {
                return Err(EBUSY);
            }
            ctl.primary = Some(primary.clone());
            if self.role == Role::Client {
                self.share_transfer_sets(primary);
            }
        }
        // From now on the channel's turn is `sub_turn`: switched while
        // holding both, so that no two tasks ever hold "the" turn.
        if !self.is_sub.load(core::sync::atomic::Ordering::Relaxed) {
            let _sub = self.sub_turn.lock();
            self.is_sub
                .store(true, core::sync::atomic::Ordering::Release);
        }
        drop(turn);
        Ok(())
    }

    /// The primary channel of a sub-channel.
    pub(crate) fn primary(&self) -> Option<Arc<Channel>> {
        self.control.lock().primary.clone()
    }

    /// The sub-channel index of the channel's connection: 1.. for a
    /// sub-channel, 0 for a primary channel or while not connected.
    pub(crate) fn subchannel_index(&self) -> u16 {
        self.subchannel_index
            .load(core::sync::atomic::Ordering::Relaxed) as u16
    }

    /// Whether the driver set state-change callbacks.
    pub(crate) fn has_state_callbacks(&self) -> bool {
        self.control.lock().callbacks.is_some()
    }

    /// Sets the packet callbacks; `-EBUSY` unless the channel is disabled.
    pub(crate) fn set_packet_callbacks(&self, callbacks: Arc<dyn PacketCallbacks>) -> Result {
        self.init_time(|_| {
            self.rx.lock().callbacks = Some(callbacks);
            Ok(())
        })
    }

    /// KMCL `VmbChannelSetIncomingProcessingAtPassive`: deliver incoming
    /// packets in process context (a workqueue) rather than softirq. Only
    /// while disabled (`-EBUSY` otherwise), so that a channel's receive
    /// work always runs in one context.
    pub(crate) fn set_incoming_processing_at_passive(&self, at_passive: bool) -> Result {
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
    pub(crate) fn set_target_processor(&self, cpu: Option<u32>) -> Result {
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

    #[cfg(kmcl_kunit)]
    /// The target processor ([`Self::set_target_processor`]).
    pub(crate) fn target_processor(&self) -> Option<u32> {
        let cpu = self.target_cpu.load(core::sync::atomic::Ordering::Relaxed);
        (cpu != NO_TARGET_CPU).then_some(cpu)
    }
}

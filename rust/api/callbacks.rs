// SPDX-License-Identifier: GPL-2.0

//! Callback adapters: the engine's traits, implemented by calling the
//! driver's C callbacks.

use kernel::{
    error::to_result,
    prelude::*,
    sync::Arc, //
};

use crate::{
    engine::channel::{
        Channel,
        PacketCallbacks,
        StateCallbacks, //
    },
    engine::datapath::IncomingPacket,
};

use super::{
    abi,
    abi::{
        EvtProcessPacket, //
        EvtProcessingComplete,
    },
    incoming::incoming_unchecked,
    lent, Handle,
};

/// A driver's state-change callbacks.
pub(super) struct CState {
    pub(super) handle: Arc<Handle>,
    pub(super) cb: abi::StateCallbacks,
}

impl CState {
    /// Calls `f` on the handle unless the owner is gone.
    fn call(&self, f: abi::EvtState) {
        if let (Some(f), true) = (f, self.handle.alive()) {
            // SAFETY: the driver registered `f` for this channel; its module
            // is not gone, so `f` is still code.
            unsafe { f(self.handle.as_raw()) }
        }
    }
}

impl StateCallbacks for CState {
    fn opened(&self, _channel: &Arc<Channel>) -> Result {
        match (self.cb.opened, self.handle.alive()) {
            // SAFETY: as in `CState::call`.
            (Some(f), true) => to_result(unsafe { f(self.handle.as_raw()) }),
            _ => Ok(()),
        }
    }
    fn closed(&self, _channel: &Arc<Channel>) {
        self.call(self.cb.closed);
    }
    fn suspend(&self, _channel: &Arc<Channel>) {
        self.call(self.cb.suspend);
    }
    fn started(&self, _channel: &Arc<Channel>) {
        self.call(self.cb.started);
    }
    fn post_started(&self, _channel: &Arc<Channel>) {
        self.call(self.cb.post_started);
    }
    fn pnp_failure(&self, _channel: &Arc<Channel>, status: Error) {
        let f = *self.handle.pnp_failure.lock();
        if let (Some(f), true) = (f, self.handle.alive()) {
            // SAFETY: the driver's callback (set with the target), its
            // module alive.
            unsafe { f(self.handle.as_raw(), status.to_errno()) }
        }
    }
    fn subchannel_offered(&self, _primary: &Arc<Channel>, index: u16) {
        let f = *self.handle.subchannel.lock();
        if let (Some(f), true) = (f, self.handle.alive()) {
            // SAFETY: the driver's callback (set with
            // `kmcl_channel_init_set_subchannel_callback`), its module
            // alive.
            unsafe { f(self.handle.as_raw(), index) }
        }
    }
}

/// A driver's packet callbacks.
pub(super) struct CPackets {
    pub(super) handle: Arc<Handle>,
    pub(super) process: EvtProcessPacket,
    pub(super) complete: EvtProcessingComplete,
}

impl PacketCallbacks for CPackets {
    fn restore_packet(&self, _channel: &Arc<Channel>, lib: &[u8], driver_state: &[u8]) -> Result {
        let f = self.handle.save_restore.lock().1;
        let (Some(f), true) = (f, self.handle.alive()) else {
            return Err(EOPNOTSUPP);
        };
        // SAFETY: the driver's restore callback (module alive); both
        // buffers are readable for their lengths during the call (saved
        // chunks are at most 1 MiB, so the lengths fit `u32`).
        to_result(unsafe {
            f(
                self.handle.as_raw(),
                lib.as_ptr().cast(),
                lib.len() as u32,
                driver_state.as_ptr().cast(),
                driver_state.len() as u32,
            )
        })
    }

    fn process_packet(&self, _channel: &Arc<Channel>, packet: IncomingPacket) {
        let (Some(f), true) = (self.process, self.handle.alive()) else {
            // Dropping completes it (empty): the sender is not left waiting.
            return;
        };
        let boxed = packet.into_box();
        let (data, len) = (boxed.data().as_ptr(), boxed.data().len());
        let flags = if boxed.external_data().is_some() {
            abi::PROCESS_PACKET_FLAG_EXTERNAL_DATA
        } else if boxed.transfer_pages().is_some() {
            abi::PROCESS_PACKET_FLAG_TRANSFER_PAGES
        } else {
            0
        };
        let raw = KBox::into_raw(boxed);
        let delivered = lent::lend_for(raw as usize, self.handle.owner, || {
            // SAFETY: `f` is the driver's callback (module alive). `raw` is
            // the packet handle, lent for the call: the driver gives it
            // back through complete, defer or fail; `data` stays valid
            // until then (it lives in the box). The length came from a
            // ring packet, so it fits `u32`.
            unsafe {
                f(
                    self.handle.as_raw(),
                    raw.cast(),
                    data.cast(),
                    len as u32,
                    flags,
                )
            }
        });
        if delivered.is_err() {
            // SAFETY: `raw` was made just above and not handed out.
            drop(unsafe { incoming_unchecked(raw.cast()) });
            pr_err!("out of memory delivering a packet; it was completed empty\n");
        }
    }

    fn processing_complete(&self, _channel: &Arc<Channel>, count: u32) {
        if let (Some(f), true) = (self.complete, self.handle.alive()) {
            // SAFETY: the driver's callback, its module alive.
            unsafe { f(self.handle.as_raw(), count) }
        }
    }
}

// SAFETY: the C callbacks are plain function pointers that kmcl's API
// documents as callable from any CPU (softirq or process context); the
// handle is `Sync`.
unsafe impl Send for CState {}
// SAFETY: see above.
unsafe impl Sync for CState {}
// SAFETY: see above.
unsafe impl Send for CPackets {}
// SAFETY: see above.
unsafe impl Sync for CPackets {}

// SPDX-License-Identifier: GPL-2.0

//! The rest of a channel's init-time settings (flags, VTL, which loopback
//! VMBus), kmcl's independent loopback buses, and its stash (where a VSP
//! leaves its save for its next load).

use super::{
    abi,
    result,
    Channel,
    Guid, //
};
use core::ffi::c_void;
use kernel::prelude::*;

/// `VMBUS_CHANNEL_INIT_FLAG_IS_PIPE` (pipe mode; kmcl refuses it).
pub const INIT_FLAG_IS_PIPE: u32 = 0x1;
/// `VMBUS_SERVER_CHANNEL_INIT_FLAG_LOOPBACK_OFFER`: what every kmcl offer
/// is.
pub const SERVER_FLAG_LOOPBACK_OFFER: u32 = 0x1;

impl Channel {
    /// `VmbChannelInitSetFlags`: `EINVAL` for unknown bits, `EOPNOTSUPP`
    /// for pipe mode ([`INIT_FLAG_IS_PIPE`]). Disabled channels only.
    ///
    /// ```no_run
    /// # fn example(channel: &mut kmcl::Channel) -> Result {
    /// channel.set_flags(0)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelInitSetFlags")]
    pub fn set_flags(&mut self, flags: u32) -> Result {
        // SAFETY: `raw` is live.
        result(unsafe { abi::kmcl_channel_init_set_flags(self.raw, flags) })
    }

    /// `VmbServerChannelInitSetFlags` (server): only
    /// [`SERVER_FLAG_LOOPBACK_OFFER`] is taken (`EOPNOTSUPP` for the
    /// others, `EINVAL` for unknown bits).
    ///
    /// ```no_run
    /// # fn example(channel: &mut kmcl::Channel) -> Result {
    /// channel.set_server_flags(kmcl::SERVER_FLAG_LOOPBACK_OFFER)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbServerChannelInitSetFlags")]
    pub fn set_server_flags(&mut self, flags: u32) -> Result {
        // SAFETY: `raw` is live.
        result(unsafe { abi::kmcl_server_channel_init_set_flags(self.raw, flags) })
    }

    /// `VmbServerChannelInitSetTargetVtl` (server): only clients running
    /// in `vtl` (0 to 15) may open the offer.
    ///
    /// ```no_run
    /// # fn example(channel: &mut kmcl::Channel) -> Result {
    /// channel.set_target_vtl(0)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbServerChannelInitSetTargetVtl")]
    pub fn set_target_vtl(&mut self, vtl: u8) -> Result {
        // SAFETY: `raw` is live.
        result(unsafe { abi::kmcl_server_channel_init_set_target_vtl(self.raw, vtl) })
    }

    /// `VmbServerChannelInitSetVmbusHandle` (kmcl: clients too): the
    /// channel is on `bus` instead of kmcl's own loopback bus; it keeps the
    /// bus until it is dropped.
    ///
    /// ```no_run
    /// # fn example(channel: &mut kmcl::Channel) -> Result {
    /// let bus = kmcl::LoopbackBus::new()?;
    /// channel.set_bus(&bus)?; // offers there are seen by clients on `bus` only
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbServerChannelInitSetVmbusHandle")]
    #[doc(alias = "VmbConvertVmbusHandleToKernelHandle")]
    pub fn set_bus(&mut self, bus: &LoopbackBus) -> Result {
        let mut kernel_handle: *mut c_void = core::ptr::null_mut();
        // SAFETY: `kernel_handle` is writable.
        result(unsafe {
            abi::kmcl_convert_vmbus_handle_to_kernel_handle(bus.handle, &mut kernel_handle)
        })?;
        // SAFETY: `raw` is live; the kernel handle is valid while `bus`
        // is (borrowed for the call).
        result(unsafe { abi::kmcl_server_channel_init_set_vmbus_handle(self.raw, kernel_handle) })
    }
}

/// A loopback VMBus of its own (kmcl's `kmcl_loopback_vmbus_create`):
/// offers on it are seen only by clients on it ([`Channel::set_bus`]);
/// tests isolate themselves with one. Dropping it forgets the bus;
/// channels on it keep it until they are dropped. Process context.
pub struct LoopbackBus {
    handle: u64,
}

impl LoopbackBus {
    /// A new bus.
    pub fn new() -> Result<Self> {
        let mut handle = 0u64;
        // SAFETY: `handle` is writable.
        result(unsafe { abi::kmcl_loopback_vmbus_create(&mut handle) })?;
        Ok(LoopbackBus { handle })
    }

    /// The bus's VMBus handle (what KMCL's VmbusHandle names).
    pub fn handle(&self) -> u64 {
        self.handle
    }
}

impl Drop for LoopbackBus {
    fn drop(&mut self) {
        // SAFETY: a bus this object created, forgotten once.
        let _ = unsafe { abi::kmcl_loopback_vmbus_destroy(self.handle) };
    }
}

/// kmcl's stash (`kmcl_stash_put`): keeps a copy of `data` under `key`
/// (a VSP's interface instance, say) until [`stash_take`], replacing what
/// was kept; where a VSP leaves its save for its next load. Process
/// context.
pub fn stash_put(key: &Guid, data: &[u8]) -> Result {
    let len = super::len32(data)?;
    // SAFETY: `key` and `data` are readable for the call.
    result(unsafe { abi::kmcl_stash_put(key, data.as_ptr().cast(), len) })
}

/// kmcl's `kmcl_stash_take`: what is kept under `key`, now forgotten
/// (`ENOENT` if nothing). Process context.
pub fn stash_take(key: &Guid) -> Result<KVec<u8>> {
    let mut len = 0u32;
    // SAFETY: `key` is readable; with no buffer only `len` is written.
    let rc = unsafe { abi::kmcl_stash_take(key, core::ptr::null_mut(), 0, &mut len) };
    if rc != ENOBUFS.to_errno() {
        // Nothing kept, or an empty buffer could take it (never: a stash
        // holds at least one byte).
        result(rc)?;
        return Err(ENOENT);
    }
    let mut buf = KVec::from_elem(0u8, len as usize, GFP_KERNEL)?;
    let mut got = 0u32;
    // SAFETY: `buf` has `len` writable bytes; `got` is writable.
    result(unsafe { abi::kmcl_stash_take(key, buf.as_mut_ptr().cast(), len, &mut got) })?;
    buf.truncate(got as usize);
    Ok(buf)
}

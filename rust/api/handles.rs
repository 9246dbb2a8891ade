// SPDX-License-Identifier: GPL-2.0

//! VMBus handles: kmcl's loopback buses, and the handle of a host bus.

use core::ffi::{
    c_int,
    c_void, //
};

use kernel::{
    prelude::*,
    sync::Arc, //
};

use crate::transport::loopback::LoopbackBus;

use super::{
    abi::KmclChannel, //

    sleepable,
    with_channel_sleeping,
    REGISTRY,
};

/// `kmcl_loopback_vmbus_create` (kmcl's own): a new, independent loopback
/// bus (without a VMBus host); `*handle` names it for
/// [`kmcl_convert_vmbus_handle_to_kernel_handle`].
///
/// # Safety
///
/// `handle` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_loopback_vmbus_create(handle: *mut u64) -> c_int {
    if let Err(e) = sleepable(c"kmcl_loopback_vmbus_create", 0) {
        return e.to_errno();
    }
    if handle.is_null() {
        return EINVAL.to_errno();
    }
    let made = (|| {
        let bus = LoopbackBus::new()?;
        let mut r = REGISTRY.lock();
        if r.bus.is_none() {
            return Err(ENODEV);
        }
        let id = r.next_bus;
        r.buses.push((id, bus), GFP_KERNEL)?;
        r.next_bus += 1;
        Ok(id)
    })();
    match made {
        Ok(id) => {
            // SAFETY: checked non-NULL; writable (the caller's promise).
            unsafe { *handle = id };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// `kmcl_loopback_vmbus_destroy` (kmcl's own): forgets the bus `handle`
/// names; channels already on it keep it until they are cleaned up.
/// `-ENOENT` for an unknown handle.
#[no_mangle]
pub extern "C" fn kmcl_loopback_vmbus_destroy(handle: u64) -> c_int {
    if let Err(e) = sleepable(c"kmcl_loopback_vmbus_destroy", 0) {
        return e.to_errno();
    }
    let gone = {
        let mut r = REGISTRY.lock();
        match r.buses.iter().position(|(id, _)| *id == handle) {
            Some(i) => r.buses.remove(i).ok(),
            None => None,
        }
    };
    match gone {
        Some(_) => 0,
        None => ENOENT.to_errno(),
    }
}

/// `VmbConvertVmbusHandleToKernelHandle`: the kernel handle of the loopback
/// bus `handle` names (from `kmcl_loopback_vmbus_create`), for
/// `kmcl_server_channel_init_set_vmbus_handle`; valid until the bus is
/// destroyed. `-ENOENT` for an unknown handle.
///
/// # Safety
///
/// `kernel_handle` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_convert_vmbus_handle_to_kernel_handle(
    handle: u64,
    kernel_handle: *mut *mut c_void,
) -> c_int {
    if let Err(e) = sleepable(c"kmcl_convert_vmbus_handle_to_kernel_handle", 0) {
        return e.to_errno();
    }
    if kernel_handle.is_null() {
        return EINVAL.to_errno();
    }
    let r = REGISTRY.lock();
    let Some((_, bus)) = r.buses.iter().find(|(id, _)| *id == handle) else {
        return ENOENT.to_errno();
    };
    // SAFETY: checked non-NULL; writable (the caller's promise).
    unsafe { *kernel_handle = Arc::as_ptr(bus).cast_mut().cast() };
    0
}

/// `VmbServerChannelInitSetVmbusHandle`: puts the channel (kmcl: a client
/// too) on the loopback bus `handle` names (from
/// [`kmcl_convert_vmbus_handle_to_kernel_handle`]). `-ENOENT` if no
/// existing bus has that kernel handle.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_server_channel_init_set_vmbus_handle(
    channel: *mut KmclChannel,
    handle: *mut c_void,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(c"kmcl_server_channel_init_set_vmbus_handle", channel, |h| {
            // Compared as an address only: never dereferenced.
            let bus = REGISTRY
                .lock()
                .buses
                .iter()
                .find(|(_, b)| core::ptr::eq(Arc::as_ptr(b).cast(), handle.cast_const()))
                .map(|(_, b)| b.clone());
            h.channel.set_bus(bus.ok_or(ENOENT)?)
        })
    }
}

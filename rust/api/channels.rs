// SPDX-License-Identifier: GPL-2.0

//! Channel objects: allocate, cleanup, and the registry entry of each
//! handle.

use core::{
    ffi::c_int,
    sync::atomic::{
        AtomicBool,
        Ordering, //
    },
};

use kernel::{
    ffi::c_char,
    new_mutex,
    new_spinlock,
    new_spinlock_irq,
    prelude::*,
    sync::Arc, //
};

use crate::{
    engine::channel::Channel,
    protocol::lifecycle::Role, //
};

use super::{
    abi,
    abi::{
        KmclChannel,
        KmclIncoming, //
    },
    callbacks::CState,
    checked,
    incoming::{
        incoming_unchecked, //
    },
    lent, release, sleepable, Handle, LOOKASIDE, REGISTRY,
};

/// `VmbChannelAllocate`.
///
/// # Safety
///
/// `owner` is NULL or the calling module; `channel` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_allocate(
    owner: *mut abi::Module,
    is_server: bool,
    channel: *mut *mut KmclChannel,
) -> c_int {
    if channel.is_null() {
        return EINVAL.to_errno();
    }
    if let Err(e) = sleepable(c"kmcl_channel_allocate", owner as usize) {
        return e.to_errno();
    }
    let made = (|| -> Result<*mut KmclChannel> {
        let bus = REGISTRY.lock().bus.clone().ok_or(ENODEV)?;
        let role = if is_server {
            Role::Server
        } else {
            Role::Client
        };
        let engine = Channel::new(role, bus)?;
        let kept = KVec::with_capacity(LOOKASIDE, GFP_KERNEL)?;
        let h = Arc::pin_init(
            pin_init!(Handle {
                channel: engine,
                owner: owner as usize,
                gone: AtomicBool::new(false),
                pnp_failure <- new_spinlock!(None),
                subchannel <- new_spinlock!(None),
                lookaside <- new_spinlock_irq!(Some(kept)),
                last_freed: super::outgoing::LastFreed::new(),
                debugfs <- new_spinlock!(None),
                mdls <- new_mutex!(KVec::new()),
                save_restore <- new_spinlock!((None, None)),
            }),
            GFP_KERNEL,
        )?;
        // State callbacks exist from the start, so that a PnpFailure set
        // with the target is delivered even without the others.
        let state = Arc::new(
            CState {
                handle: h.clone(),
                cb: abi::StateCallbacks::new(),
            },
            GFP_KERNEL,
        )?;
        h.channel.set_state_callbacks(state)?;
        let raw = h.as_raw();
        checked::insert(raw as usize, checked::Kind::Channel).inspect_err(|_| {
            let _ = h.channel.clone().cleanup();
        })?;
        if let Err(e) = REGISTRY.lock().handles.push(h.clone(), GFP_KERNEL) {
            checked::remove(raw as usize, checked::Kind::Channel);
            // Break the handle <-> callbacks cycle before giving up.
            let _ = h.channel.clone().cleanup();
            return Err(e.into());
        }
        Ok(raw)
    })();
    match made {
        Ok(raw) => {
            // SAFETY: checked non-NULL; the caller's promise.
            unsafe { *channel = raw };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// `VmbChannelCleanup`: disables the channel if needed and frees it.
///
/// # Safety
///
/// `channel` is NULL or a live handle, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_cleanup(channel: *mut KmclChannel) {
    if channel.is_null() {
        return;
    }
    // Cleanup returns nothing: a refused call leaves the channel as it was
    // (the error line says so). The handle is not looked at before the
    // registry vouches for it, so the line names the task.
    if sleepable(c"kmcl_channel_cleanup", 0).is_err() {
        return;
    }
    let target = channel.cast::<Handle>().cast_const();
    let taken = {
        let mut r = REGISTRY.lock();
        let pos = r
            .handles
            .iter()
            .position(|h| core::ptr::eq(Arc::as_ptr(h), target));
        // From one of the channel's own callbacks Disable would wait
        // for that callback to return: refused, the channel stays.
        if pos.is_some_and(|p| r.handles[p].channel.in_own_callback()) {
            pr_err!(
                "kmcl_channel_cleanup: called from one of the channel's own callbacks; refused\n"
            );
            return;
        }
        pos.and_then(|p| r.handles.remove(p).ok())
    };
    match taken {
        Some(h) => release(&h),
        None => pr_err!(
            "kmcl_channel_cleanup: {:p} is not a channel (cleaned up twice?)\n",
            target
        ),
    }
}

/// Releases every channel `module` left behind (called from the module
/// notifier when `module` is going away).
///
/// # Safety
///
/// `name` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn kmcl_ffi_module_going(module: *mut abi::Module, name: *const c_char) {
    let owner = module as usize;
    // First mark them all: tearing one down makes calls on the others (its
    // peer closes).
    for h in REGISTRY.lock().handles.iter() {
        if h.owner == owner {
            h.gone.store(true, Ordering::Release);
        }
    }
    // Packets its driver still held are completed (empty), so that the
    // channels can close: Disable waits for every delivered packet.
    let mut reclaimed = 0usize;
    while let Some(p) = lent::take_one_of(owner) {
        // SAFETY: `p` was lent (`CPackets::process_packet`) and was just
        // taken back from the record, so nobody else owns it.
        drop(unsafe { incoming_unchecked(p as *mut KmclIncoming) });
        reclaimed += 1;
    }
    let mut released = 0usize;
    loop {
        // One at a time, so that nothing is allocated and no lock is held
        // while a channel is torn down.
        let next = {
            let mut r = REGISTRY.lock();
            let pos = r.handles.iter().position(|h| h.owner == owner);
            pos.and_then(|p| r.handles.remove(p).ok())
        };
        let Some(h) = next else { break };
        release(&h);
        released += 1;
    }
    if released > 0 || reclaimed > 0 {
        // SAFETY: the notifier passes the module's NUL-terminated name.
        let name = unsafe { CStr::from_char_ptr(name) };
        pr_warn!(
            "module {} was unloaded with {} channel(s) not cleaned up and {} incoming packet(s) not completed; kmcl completed, disabled and freed them\n",
            name.to_str().unwrap_or("?"),
            released,
            reclaimed
        );
    }
}

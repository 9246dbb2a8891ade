// SPDX-License-Identifier: GPL-2.0

//! The lifecycle: enable, disable, pause, start.

use core::ffi::c_int;

use super::{
    abi::KmclChannel, //

    with_channel_sleeping,
};

/// `VmbChannelEnable`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_enable(channel: *mut KmclChannel) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel_sleeping(c"kmcl_channel_enable", channel, |h| {
            h.channel.enable()?;
            h.ensure_debugfs();
            Ok(())
        })
    }
}

/// `VmbChannelDisable`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_disable(channel: *mut KmclChannel) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { with_channel_sleeping(c"kmcl_channel_disable", channel, |h| h.channel.disable()) }
}

/// `VmbChannelPause`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_pause(channel: *mut KmclChannel) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { with_channel_sleeping(c"kmcl_channel_pause", channel, |h| h.channel.pause()) }
}

/// `VmbChannelStart`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_start(channel: *mut KmclChannel) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { with_channel_sleeping(c"kmcl_channel_start", channel, |h| h.channel.start()) }
}

// SPDX-License-Identifier: GPL-2.0

//! kmcl's exported API: the C functions of `include/kmcl/kmcl.h`, their
//! interface tables, and the bookkeeping that ties handles to their owners.
//!
//! Every raw pointer another module hands kmcl is turned into a safe engine
//! object here and nowhere else; the engine never sees C.
//!
//! - A channel handle (`struct kmcl_channel *`) is the address of a
//!   [`Handle`] in an [`Arc`]; kmcl's registry holds that `Arc` from
//!   `kmcl_channel_allocate` until `kmcl_channel_cleanup`. The registry
//!   knows each handle's owner module: when a module is unloaded with
//!   channels it did not clean up, kmcl disables and frees them without
//!   calling into the module again.
//! - An incoming packet handle (`struct kmcl_incoming *`) is the engine's
//!   boxed [`IncomingPacket`], turned back into it by whichever of
//!   complete, defer or fail the driver calls.
//! - An outgoing packet (`struct kmcl_packet *`) is a [`CPacket`], either
//!   kmalloc'ed (`kmcl_packet_allocate`) or placed in the driver's memory
//!   (`kmcl_packet_initialize`).
//!
//! Handles are trusted as kernel APIs trust their pointers: NULL is refused
//! with `-EINVAL`; a dangling handle is the caller's bug (a channel cleaned
//! up twice is caught and logged).

use core::ffi::{
    c_int,
    c_void, //
};
use core::sync::atomic::{
    AtomicBool,
    Ordering, //
};

use kernel::{
    debugfs::{Dir, File},
    error::to_result,
    prelude::*,
    str::CString,
    sync::{Arc, ArcBorrow, Mutex, SpinLock, SpinLockIrq},
};

use crate::engine::channel::Channel;
use crate::shmem::GpadlPages;
use crate::transport::loopback::LoopbackBus;

#[path = "../../include/kmcl/rust/abi.rs"]
pub mod abi;
pub mod callbacks;
pub mod channels;
mod checked;
pub mod gpadl;
pub mod handles;
pub mod incoming;
mod lent;
pub mod lifecycle;
pub mod outgoing;
pub mod save;
pub mod settings;
pub mod tables;

use abi::{
    EvtPnpFailure,
    EvtRestorePacket,
    EvtSavePacket,
    KmclChannel,
    KmclMdl, //
};
use outgoing::CPacket;

/// What every exported function shares.
struct Registry {
    /// The loopback bus channels are allocated on.
    bus: Option<Arc<LoopbackBus>>,
    /// `/sys/kernel/debug/kmcl/`.
    debugfs: Option<Dir>,
    /// Every channel handle between allocate and cleanup.
    handles: KVec<Arc<Handle>>,
    /// Loopback buses made with `kmcl_loopback_vmbus_create`, by handle.
    buses: KVec<(u64, Arc<LoopbackBus>)>,
    /// The next such handle.
    next_bus: u64,
    /// `kmcl_stash_put`'s copies, by key.
    stash: KVec<([u8; 16], KVVec<u8>)>,
}

kernel::sync::global_lock! {
    // SAFETY: `init` runs in kmcl's module initialiser, before any other
    // module can call an exported function.
    unsafe(uninit) static REGISTRY: Mutex<Registry> = Registry {
        bus: None,
        debugfs: None,
        handles: KVec::new(),
        buses: KVec::new(),
        next_bus: 1,
        stash: KVec::new(),
    };
}

mod glue {
    extern "C" {
        pub(super) fn kmcl_glue_watch_modules() -> core::ffi::c_int;
        pub(super) fn kmcl_glue_unwatch_modules();
        #[cfg(kmcl_kunit)]
        pub(super) fn kmcl_glue_c_layout(count: *mut u32) -> *const u32;
    }
}

/// Sets up the registry and starts watching for modules that go away
/// (module init, once); `checked_handles`: see [`checked`].
pub(crate) fn init(checked_handles: bool) -> Result {
    checked::set_enabled(checked_handles);
    // SAFETY: called once, from the module initialiser, before any use.
    unsafe { REGISTRY.init() };
    lent::init();
    let host_ops: Arc<dyn crate::transport::hyperv::HostOps> =
        Arc::new(crate::transport::hyperv::vmbus::HvVmbus, GFP_KERNEL)?;
    let bus = LoopbackBus::with_host(crate::transport::hyperv::HostBus::new(host_ops)?)?;
    {
        let mut r = REGISTRY.lock();
        r.bus = Some(bus);
        r.debugfs = Some(Dir::new(c"kmcl"));
    }
    // SAFETY: registers a static notifier block; undone in `exit`.
    to_result(unsafe { glue::kmcl_glue_watch_modules() })
}

/// Releases the registry (module exit). No module that uses kmcl is loaded
/// any more, so only handles kmcl's own tests leaked can be left.
pub(crate) fn exit() {
    // SAFETY: registered in `init`.
    unsafe { glue::kmcl_glue_unwatch_modules() };
    let (bus, handles, buses, stash) = {
        let mut r = REGISTRY.lock();
        (
            r.bus.take(),
            core::mem::take(&mut r.handles),
            core::mem::take(&mut r.buses),
            core::mem::take(&mut r.stash),
        )
    };
    drop(stash);
    if !buses.is_empty() {
        pr_warn!("{} loopback bus(es) not destroyed at unload\n", buses.len());
    }
    drop(buses);
    for h in handles.iter() {
        h.gone.store(true, Ordering::Release);
        release(h);
    }
    // No channel is left: kmcl's hv_vmbus drivers go.
    if let Some(bus) = &bus {
        bus.host().unwatch_all();
    }
    drop((bus, handles));
    let root = REGISTRY.lock().debugfs.take();
    drop(root);
    lent::exit();
}

/// A channel handle: the engine channel plus what the C API adds.
#[pin_data]
pub struct Handle {
    channel: Arc<Channel>,
    /// The module that allocated the channel (0: none given).
    owner: usize,
    /// The owner is being unloaded: call none of its functions any more.
    gone: AtomicBool,
    /// `EvtChannelPnpFailure`, for hv_vmbus channels.
    #[pin]
    pnp_failure: SpinLock<EvtPnpFailure>,
    /// kmcl's sub-channel callback (client primary channels).
    #[pin]
    subchannel: SpinLock<abi::EvtSubchannelOffered>,
    /// The channel's debugfs directory, from its first Enable to cleanup.
    #[pin]
    debugfs: SpinLock<Option<DebugEntry>>,
    /// Freed packet objects kept for reuse (KMCL's per-channel lookaside
    /// list); `None` once the channel is cleaned up.
    #[pin]
    lookaside: SpinLockIrq<Option<KVec<KBox<CPacket>>>>,
    /// The packet object freed last, in front of `lookaside` (no lock).
    last_freed: outgoing::LastFreed,
    /// Server: the MDLs of its GPADL mappings.
    #[pin]
    mdls: Mutex<KVec<MappedMdl>>,
    /// Server: `EvtVmbChannelSavePacket`, `EvtVmbChannelRestorePacket`.
    #[pin]
    save_restore: SpinLock<(EvtSavePacket, EvtRestorePacket)>,
}

/// A server's mapping of a GPADL as C sees it: the pages, whose
/// description (laid out as `struct kmcl_mdl`, see `mdl_view`) is what the
/// driver got, valid while this lives.
struct MappedMdl {
    gpadl: u32,
    pages: Arc<GpadlPages>,
}

impl MappedMdl {
    /// The `struct kmcl_mdl` handed to C.
    fn as_ptr(&self) -> *mut KmclMdl {
        core::ptr::from_ref(self.pages.mdl_view()).cast_mut().cast()
    }
}

/// `/sys/kernel/debug/kmcl/<name>.<n>/state`: the channel's snapshot.
struct DebugEntry {
    _state: Pin<KBox<File<ChannelState>>>,
    _dir: Dir,
}

/// What a channel's debugfs `state` file prints.
struct ChannelState(Arc<Channel>);

// debugfs prints `Debug` types; this one prints the channel's snapshot.
impl core::fmt::Debug for ChannelState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0.snapshot())
    }
}

impl Handle {
    /// Creates the channel's debugfs directory if it has none yet: named
    /// after its friendly name (or its interface instance) and its id.
    fn ensure_debugfs(&self) {
        if self.debugfs.lock().is_some() {
            return;
        }
        let made = (|| -> Result<DebugEntry> {
            let name = self.channel.with_friendly_name(|n| {
                let mut buf = [0u8; crate::engine::channel::FRIENDLY_NAME_MAX];
                buf[..n.len()].copy_from_slice(n);
                (buf, n.len())
            });
            let id = self.channel.id();
            let dir = {
                let r = REGISTRY.lock();
                let title = match core::str::from_utf8(&name.0[..name.1]) {
                    Ok(s) if !s.is_empty() && !s.contains('/') => {
                        CString::try_from_fmt(fmt!("{}.{}", s, id))?
                    }
                    _ => CString::try_from_fmt(fmt!(
                        "{}.{}",
                        GuidName(self.channel.interface_instance()),
                        id
                    ))?,
                };
                r.debugfs.as_ref().ok_or(ENODEV)?.subdir(&title)
            };
            let state = KBox::pin_init(
                dir.read_only_file(c"state", ChannelState(self.channel.clone())),
                GFP_KERNEL,
            )?;
            Ok(DebugEntry {
                _state: state,
                _dir: dir,
            })
        })();
        match made {
            Ok(e) => *self.debugfs.lock() = Some(e),
            Err(e) => pr_warn!("no debugfs entry for a channel ({:?})\n", e),
        }
    }
}

/// A GUID's 32 hex digits, for a directory name.
struct GuidName([u8; 16]);

impl kernel::fmt::Display for GuidName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in &self.0 {
            write!(f, "{:02x}", b)?;
        }
        Ok(())
    }
}

/// Packet objects a channel's lookaside list keeps.
const LOOKASIDE: usize = 32;

impl Handle {
    /// The handle as C sees it.
    fn as_raw(&self) -> *mut KmclChannel {
        core::ptr::from_ref(self).cast_mut().cast()
    }

    /// Whether the owner's functions may still be called.
    fn alive(&self) -> bool {
        !self.gone.load(Ordering::Acquire)
    }
}

/// The handle behind `channel`.
///
/// # Safety
///
/// `channel` is NULL or a handle from [`kmcl_channel_allocate`] that is not
/// cleaned up before the returned borrow ends. With checked handles (the
/// default) a handle that is not a live channel's is refused (`None`, one
/// rate-limited line) instead of dereferenced.
unsafe fn handle<'a>(channel: *mut KmclChannel) -> Option<ArcBorrow<'a, Handle>> {
    if channel.is_null() {
        return None;
    }
    if !checked::is(channel as usize, checked::Kind::Channel) {
        crate::sys::context::refuse_handle(
            c"a kmcl function",
            channel as usize,
            c"a stale, unknown or wrong-kind channel",
        );
        return None;
    }
    // SAFETY: a live handle is the address of an `Arc<Handle>`'s object,
    // kept alive by the registry's reference until cleanup (caller's
    // promise).
    Some(unsafe { ArcBorrow::from_raw(channel.cast::<Handle>().cast_const()) })
}

/// Runs `f` on the channel behind `channel`; NULL gives `-EINVAL`.
///
/// # Safety
///
/// As for [`handle`].
unsafe fn with_channel(channel: *mut KmclChannel, f: impl FnOnce(&Handle) -> Result) -> c_int {
    // SAFETY: forwarded from the caller.
    match unsafe { handle(channel) } {
        None => EINVAL.to_errno(),
        Some(h) => errno(f(&h)),
    }
}

/// `Ok` if the caller may sleep; otherwise `-EINVAL`, and one rate-limited
/// error line naming `function` and `owner` (the channel's module; 0: the
/// task). Every exported function that may sleep checks this first, then
/// calls `might_sleep()` (its debug checks) before anything that sleeps.
fn sleepable(function: &'static CStr, owner: usize) -> Result {
    if crate::sys::context::may_sleep() {
        crate::sys::context::might_sleep();
        Ok(())
    } else {
        crate::sys::context::refuse_atomic(function, owner);
        Err(EINVAL)
    }
}

/// [`with_channel`] for functions that may sleep: an atomic caller is
/// refused ([`sleepable`]) before `f` runs.
///
/// # Safety
///
/// As for [`handle`].
unsafe fn with_channel_sleeping(
    function: &'static CStr,
    channel: *mut KmclChannel,
    f: impl FnOnce(&Handle) -> Result,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_channel(channel, |h| {
            sleepable(function, h.owner)?;
            f(h)
        })
    }
}

/// 0 or a negative errno.
fn errno(r: Result) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// `len` bytes at `ptr` (NULL allowed when `len` is 0).
///
/// # Safety
///
/// Unless `len` is 0, `ptr` points to `len` readable bytes that stay
/// unchanged for `'a`.
unsafe fn bytes<'a>(ptr: *const c_void, len: u32) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(EINVAL);
    }
    // SAFETY: the caller's promise.
    Ok(unsafe { core::slice::from_raw_parts(ptr.cast::<u8>(), len as usize) })
}

/// The allocation flags for the caller's context.
fn gfp() -> kernel::alloc::Flags {
    if crate::sys::context::may_sleep() {
        GFP_KERNEL
    } else {
        GFP_ATOMIC
    }
}

/// Disables and frees a channel whose handle left the registry.
fn release(h: &Arc<Handle>) {
    // Kept packet objects hold the handle: free them, and keep no more
    // (the slot first: a free that finds it closed goes to the list).
    drop(h.last_freed.close());
    let kept = h.lookaside.lock().take();
    drop(kept);
    let debugfs = h.debugfs.lock().take();
    drop(debugfs);
    let mdls = core::mem::take(&mut *h.mdls.lock());
    drop(mdls);
    if h.channel.is_enabled() {
        if let Err(e) = h.channel.disable() {
            pr_err!("channel disable failed ({:?})\n", e);
        }
    }
    if let Err(e) = h.channel.clone().cleanup() {
        pr_err!("channel cleanup failed ({:?})\n", e);
    }
    // Its callbacks, called while it was disabled, could still use it.
    checked::remove(h.as_raw() as usize, checked::Kind::Channel);
}

#[cfg(kmcl_kunit)]
mod tests;

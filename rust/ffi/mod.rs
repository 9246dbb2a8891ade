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

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use kernel::ffi::c_char;

use kernel::{
    debugfs::{Dir, File},
    error::to_result,
    new_mutex, new_spinlock, new_spinlock_irq,
    prelude::*,
    str::CString,
    sync::{Arc, ArcBorrow, Mutex, SpinLock, SpinLockIrq},
};

use crate::engine::{
    channel::{self, Channel, StateCallbacks},
    datapath::{Incoming, IncomingPacket, PacketCallbacks, Routine},
    loopback::LoopbackBus,
};
use crate::protocol::lifecycle::Role;
use crate::shmem::GpadlPages;

#[path = "../../include/kmcl/rust/abi.rs"]
pub mod abi;
mod lent;

use abi::{
    ClientInterfaceV1, EvtPacketCompletion, EvtPnpFailure, EvtProcessPacket, EvtProcessingComplete,
    EvtRestorePacket, EvtSavePacket, Guid, KmclChannel, KmclIncoming, KmclMdl, KmclPacket,
    ServerInterfaceV1, ServerOnlyMethods,
};

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
        pub(super) fn kmcl_glue_c_layout(count: *mut u32) -> *const u32;
    }
}

/// Sets up the registry and starts watching for modules that go away
/// (module init, once).
pub(crate) fn init() -> Result {
    // SAFETY: called once, from the module initialiser, before any use.
    unsafe { REGISTRY.init() };
    lent::init();
    let host_ops: Arc<dyn crate::engine::host::HostOps> = Arc::new(crate::hv::HvVmbus, GFP_KERNEL)?;
    let bus = LoopbackBus::with_host(crate::engine::host::HostBus::new(host_ops)?)?;
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
    /// The channel's debugfs directory, from its first Enable to cleanup.
    #[pin]
    debugfs: SpinLock<Option<DebugEntry>>,
    /// Freed packet objects kept for reuse (KMCL's per-channel lookaside
    /// list); `None` once the channel is cleaned up.
    #[pin]
    lookaside: SpinLockIrq<Option<KVec<KBox<CPacket>>>>,
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
                let mut buf = [0u8; channel::FRIENDLY_NAME_MAX];
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
/// cleaned up before the returned borrow ends.
unsafe fn handle<'a>(channel: *mut KmclChannel) -> Option<ArcBorrow<'a, Handle>> {
    if channel.is_null() {
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
    if crate::context::in_task() {
        GFP_KERNEL
    } else {
        GFP_ATOMIC
    }
}

/// Disables and frees a channel whose handle left the registry.
fn release(h: &Arc<Handle>) {
    // Kept packet objects hold the handle: free them, and keep no more.
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
}

// ---------------------------------------------------------------------------
// Channel objects.

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
                lookaside <- new_spinlock_irq!(Some(kept)),
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
        if let Err(e) = REGISTRY.lock().handles.push(h.clone(), GFP_KERNEL) {
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
    let target = channel.cast::<Handle>().cast_const();
    let taken = {
        let mut r = REGISTRY.lock();
        let pos = r
            .handles
            .iter()
            .position(|h| core::ptr::eq(Arc::as_ptr(h), target));
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

// ---------------------------------------------------------------------------
// Callback adapters: the engine's traits, implemented by calling C.

/// A driver's state-change callbacks.
struct CState {
    handle: Arc<Handle>,
    cb: abi::StateCallbacks,
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
}

/// A driver's packet callbacks.
struct CPackets {
    handle: Arc<Handle>,
    process: EvtProcessPacket,
    complete: EvtProcessingComplete,
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

// ---------------------------------------------------------------------------
// Init-time settings and channel information.

/// Runs `f` on the handle if the channel has `role`, else `-EINVAL`.
fn for_role(h: &Handle, role: Role, f: impl FnOnce(&Handle) -> Result) -> Result {
    if h.channel.role() != role {
        return Err(EINVAL);
    }
    f(h)
}

/// Largest `ClientContextSize`: the context is allocated per packet in
/// softirq context.
const CLIENT_CONTEXT_MAX: u32 = 4096;

/// `VmbChannelInitSetClientContextSize`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_init_set_client_context_size(
    channel: *mut KmclChannel,
    size: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel(channel, |h| {
            if size > CLIENT_CONTEXT_MAX {
                return Err(EINVAL);
            }
            h.channel.configure(|s| s.client_context_size = size)
        })
    }
}

/// `VmbChannelInitSetFlags`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_init_set_flags(
    channel: *mut KmclChannel,
    flags: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { with_channel(channel, |h| h.channel.set_flags(flags)) }
}

/// `VmbChannelInitSetFriendlyName`.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `name` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_init_set_friendly_name(
    channel: *mut KmclChannel,
    name: *const c_char,
) -> c_int {
    if name.is_null() {
        return EINVAL.to_errno();
    }
    // SAFETY: the caller's promise: NUL-terminated.
    let name = unsafe { CStr::from_char_ptr(name) };
    // SAFETY: the caller's promise.
    unsafe { with_channel(channel, |h| h.channel.set_friendly_name(name.to_bytes())) }
}

/// `VmbChannelInitSetMaximumExternalData`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_init_set_maximum_external_data(
    channel: *mut KmclChannel,
    size: u32,
    chain_length: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel(channel, |h| {
            h.channel.set_maximum_external_data(size, chain_length)
        })
    }
}

/// `VmbChannelInitSetMaximumPacketSize`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_init_set_maximum_packet_size(
    channel: *mut KmclChannel,
    size: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel(channel, |h| {
            if size == 0 {
                return Err(EINVAL);
            }
            h.channel.configure(|s| s.max_packet_size = size)
        })
    }
}

/// `VmbChannelInitSetProcessPacketCallbacks`.
///
/// # Safety
///
/// `channel` is NULL or a live handle; the callbacks are NULL or functions
/// that stay loaded while the channel exists.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_init_set_process_packet_callbacks(
    channel: *mut KmclChannel,
    process_packet: EvtProcessPacket,
    processing_complete: EvtProcessingComplete,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(h) = (unsafe { handle(channel) }) else {
        return EINVAL.to_errno();
    };
    if process_packet.is_none() {
        return EINVAL.to_errno();
    }
    let set = (|| -> Result {
        let cb = Arc::new(
            CPackets {
                handle: h.into(),
                process: process_packet,
                complete: processing_complete,
            },
            GFP_KERNEL,
        )?;
        h.channel.set_packet_callbacks(cb)
    })();
    errno(set)
}

/// `VmbChannelInitSetStateChangeCallbacks`: refuses a structure of another
/// version or size (`-EINVAL`).
///
/// # Safety
///
/// `channel` is NULL or a live handle; `callbacks` is NULL or points to at
/// least its own `size` bytes, `version` and `size` first.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_init_set_state_change_callbacks(
    channel: *mut KmclChannel,
    callbacks: *const abi::StateCallbacks,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(h) = (unsafe { handle(channel) }) else {
        return EINVAL.to_errno();
    };
    if callbacks.is_null() {
        return EINVAL.to_errno();
    }
    // Read the version and size first: a smaller structure must not be
    // read past its end.
    // SAFETY: every version starts with `version` and `size`.
    let (version, size) = unsafe {
        (
            core::ptr::addr_of!((*callbacks).version).read(),
            core::ptr::addr_of!((*callbacks).size).read(),
        )
    };
    let expected = core::mem::size_of::<abi::StateCallbacks>();
    if version != abi::STATE_CALLBACKS_VERSION || size as usize != expected {
        pr_warn!(
            "state change callbacks: version {} size {}; kmcl supports version {} size {}\n",
            version,
            size,
            abi::STATE_CALLBACKS_VERSION,
            expected
        );
        return EINVAL.to_errno();
    }
    // SAFETY: checked: the caller's structure is this layout.
    let cb = unsafe { callbacks.read() };
    let set = (|| -> Result {
        let adapter = Arc::new(
            CState {
                handle: h.into(),
                cb,
            },
            GFP_KERNEL,
        )?;
        h.channel.set_state_callbacks(adapter)
    })();
    errno(set)
}

/// `VmbClientChannelInitSetRingBufferPageCount`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_client_channel_init_set_ring_buffer_page_count(
    channel: *mut KmclChannel,
    incoming: u32,
    outgoing: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel(channel, |h| {
            for_role(h, Role::Client, |h| {
                if incoming == 0 || outgoing == 0 {
                    return Err(EINVAL);
                }
                h.channel.configure(|s| {
                    s.incoming_pages = incoming;
                    s.outgoing_pages = outgoing;
                })
            })
        })
    }
}

/// `VmbClientChannelInitSetTargetProcessorIndex` (kmcl: servers too).
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_init_set_target_processor(
    channel: *mut KmclChannel,
    processor: u32,
) -> c_int {
    let cpu = (processor != abi::TARGET_PROCESSOR_NONE).then_some(processor);
    // SAFETY: the caller's promise.
    unsafe { with_channel(channel, |h| h.channel.set_target_processor(cpu)) }
}

/// `kmcl_client_channel_init_set_transport` (kmcl's own).
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_client_channel_init_set_transport(
    channel: *mut KmclChannel,
    transport: u32,
) -> c_int {
    let transport = match transport {
        abi::TRANSPORT_AUTO => Some(channel::Transport::Auto),
        abi::TRANSPORT_LOOPBACK => Some(channel::Transport::Loopback),
        abi::TRANSPORT_HOST => Some(channel::Transport::Host),
        _ => None,
    };
    // SAFETY: the caller's promise.
    unsafe {
        with_channel(channel, |h| {
            for_role(h, Role::Client, |h| {
                let transport = transport.ok_or(EINVAL)?;
                h.channel.configure(|s| s.transport = transport)
            })
        })
    }
}

/// Reads an optional GUID.
///
/// # Safety
///
/// `g` is NULL or readable.
unsafe fn guid(g: *const Guid) -> Option<[u8; 16]> {
    // SAFETY: the caller's promise.
    (!g.is_null()).then(|| unsafe { g.read() }.b)
}

/// `VmbClientChannelInitSetTargetPnp`: the interface type (required) and
/// instance (NULL: any) of the offer to open.
///
/// # Safety
///
/// `channel` is NULL or a live handle; the GUIDs are NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_client_channel_init_set_target_pnp(
    channel: *mut KmclChannel,
    interface_type: *const Guid,
    instance: *const Guid,
    pnp_failure: EvtPnpFailure,
) -> c_int {
    // SAFETY: the caller's promise.
    let (ty, inst) = unsafe { (guid(interface_type), guid(instance)) };
    // SAFETY: the caller's promise.
    unsafe {
        with_channel(channel, |h| {
            for_role(h, Role::Client, |h| {
                let ty = ty.ok_or(EINVAL)?;
                h.channel.configure(|s| {
                    s.interface_type = ty;
                    s.interface_instance = inst.unwrap_or([0; 16]);
                })?;
                *h.pnp_failure.lock() = pnp_failure;
                Ok(())
            })
        })
    }
}

/// `VmbServerChannelInitSetTargetInterfaceId`.
///
/// # Safety
///
/// `channel` is NULL or a live handle; the GUIDs are NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_server_channel_init_set_target_interface_id(
    channel: *mut KmclChannel,
    interface_type: *const Guid,
    instance: *const Guid,
) -> c_int {
    // SAFETY: the caller's promise.
    let (ty, inst) = unsafe { (guid(interface_type), guid(instance)) };
    // SAFETY: the caller's promise.
    unsafe {
        with_channel(channel, |h| {
            for_role(h, Role::Server, |h| {
                let (ty, inst) = (ty.ok_or(EINVAL)?, inst.ok_or(EINVAL)?);
                h.channel.configure(|s| {
                    s.interface_type = ty;
                    s.interface_instance = inst;
                })
            })
        })
    }
}

/// `VmbServerChannelInitSetFlags`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_server_channel_init_set_flags(
    channel: *mut KmclChannel,
    flags: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel(channel, |h| {
            for_role(h, Role::Server, |h| h.channel.set_server_flags(flags))
        })
    }
}

/// `VmbServerChannelInitSetTargetVtl`: only clients running in `vtl` see
/// the offer (kmcl's clients run in VTL 0).
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_server_channel_init_set_target_vtl(
    channel: *mut KmclChannel,
    vtl: u8,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { with_channel(channel, |h| h.channel.set_target_vtl(vtl)) }
}

/// `VmbChannelSetIncomingProcessingAtPassive`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_set_incoming_processing_at_passive(
    channel: *mut KmclChannel,
    at_passive: bool,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel(channel, |h| {
            h.channel.set_incoming_processing_at_passive(at_passive)
        })
    }
}

/// `VmbChannelSetTransactionQuota`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_set_transaction_quota(
    channel: *mut KmclChannel,
    quota: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { with_channel(channel, |h| h.channel.set_transaction_quota(quota)) }
}

/// `VmbChannelGetInterfaceInstance`.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `instance` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_get_interface_instance(
    channel: *mut KmclChannel,
    instance: *mut Guid,
) {
    // SAFETY: the caller's promise.
    if let (Some(h), false) = (unsafe { handle(channel) }, instance.is_null()) {
        let b = h.channel.interface_instance();
        // SAFETY: checked non-NULL; writable (the caller's promise).
        unsafe { instance.write(Guid { b }) };
    }
}

/// `VmbChannelSetPointer`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_set_pointer(channel: *mut KmclChannel, pointer: *mut c_void) {
    // SAFETY: the caller's promise.
    if let Some(h) = unsafe { handle(channel) } {
        h.channel.set_pointer(pointer as usize);
    }
}

/// `VmbChannelGetPointer`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_get_pointer(channel: *mut KmclChannel) -> *mut c_void {
    // SAFETY: the caller's promise.
    match unsafe { handle(channel) } {
        Some(h) => h.channel.pointer() as *mut c_void,
        None => core::ptr::null_mut(),
    }
}

// ---------------------------------------------------------------------------
// Lifecycle.

/// `VmbChannelEnable`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_enable(channel: *mut KmclChannel) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel(channel, |h| {
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
    unsafe { with_channel(channel, |h| h.channel.disable()) }
}

/// `VmbChannelPause`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_pause(channel: *mut KmclChannel) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { with_channel(channel, |h| h.channel.pause()) }
}

/// `VmbChannelStart`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_start(channel: *mut KmclChannel) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { with_channel(channel, |h| h.channel.start()) }
}

// ---------------------------------------------------------------------------
// Incoming packets.

/// The incoming packet behind a handle a driver gives back, if kmcl lent
/// it and it was not given back before (a packet completed twice is
/// refused and logged instead of freed twice; see [`lent`]).
fn incoming(packet: *mut KmclIncoming) -> Option<IncomingPacket> {
    if !lent::give_back(packet as usize) {
        pr_err!(
            "invalid incoming packet handle {:p} (completed twice?); ignored\n",
            packet
        );
        return None;
    }
    // SAFETY: the record had the handle, so it is `KBox::into_raw` of a
    // packet's box, and taking it out of the record made it ours alone.
    Some(unsafe { incoming_unchecked(packet) })
}

/// The incoming packet behind a handle.
///
/// # Safety
///
/// `packet` is `KBox::into_raw` of an incoming packet's box, owned by the
/// caller (given back exactly once).
unsafe fn incoming_unchecked(packet: *mut KmclIncoming) -> IncomingPacket {
    // SAFETY: the caller's promise.
    IncomingPacket::from_box(unsafe { KBox::from_raw(packet.cast::<Incoming>()) })
}

/// `VmbChannelPacketComplete`.
///
/// # Safety
///
/// `packet` is NULL or a handle kmcl passed to a process-packet callback
/// (one given back already is refused); `buffer` holds `length` bytes.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_packet_complete(
    packet: *mut KmclIncoming,
    buffer: *const c_void,
    length: u32,
) -> c_int {
    if packet.is_null() {
        return EINVAL.to_errno();
    }
    let Some(packet) = incoming(packet) else {
        return EINVAL.to_errno();
    };
    // SAFETY: the caller's promise.
    match unsafe { bytes(buffer, length) } {
        Ok(payload) => errno(packet.complete(payload)),
        Err(e) => {
            // Completed without a payload rather than leaked.
            drop(packet);
            e.to_errno()
        }
    }
}

/// `VmbChannelPacketDeferToPassive`.
///
/// # Safety
///
/// `packet` is NULL or a handle kmcl passed to a process-packet callback
/// (one given back already is refused).
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_packet_defer_to_passive(packet: *mut KmclIncoming) {
    if !packet.is_null() {
        if let Some(p) = incoming(packet) {
            p.defer_to_passive();
        }
    }
}

/// `VmbChannelPacketFail`.
///
/// # Safety
///
/// `packet` is NULL or a handle kmcl passed to a process-packet callback
/// (one given back already is refused).
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_packet_fail(packet: *mut KmclIncoming) {
    if !packet.is_null() {
        if let Some(p) = incoming(packet) {
            p.fail();
        }
    }
}

// ---------------------------------------------------------------------------
// Outgoing packets.

/// An outgoing packet object (`VMBPACKET`).
pub struct CPacket {
    handle: Arc<Handle>,
    pointer: AtomicUsize,
    routine: EvtPacketCompletion,
    /// In the driver's memory (`kmcl_packet_initialize`), not kmalloc'ed.
    in_caller_memory: bool,
    /// The incoming packet `kmcl_packet_restore` made (its handle, 0:
    /// none), until `kmcl_packet_restored` hands it out.
    restored: AtomicUsize,
}

/// Frees a packet object.
///
/// # Safety
///
/// `p` is a live packet object, not used again.
unsafe fn free_packet(p: *mut CPacket) {
    // SAFETY: `p` is live; `in_caller_memory` tells how it was made.
    unsafe {
        if (*p).in_caller_memory {
            core::ptr::drop_in_place(p);
            return;
        }
    }
    // SAFETY: a kmalloc'ed packet object is `KBox::into_raw` of its box.
    let b = unsafe { KBox::from_raw(p) };
    let handle = b.handle.clone();
    let rejected = match &mut *handle.lookaside.lock() {
        Some(kept) => kept.push_within_capacity(b).err().map(|e| e.0),
        None => Some(b),
    };
    // Freed without the lock.
    drop(rejected);
}

/// The routine of a C packet object's send: `word` is the packet object.
/// A plain function, so that a send allocates nothing.
fn packet_done(word: usize, status: Result, data: &[u8]) {
    let p = word as *mut CPacket;
    // SAFETY: `word` is the packet object of the send (see
    // `kmcl_packet_send`), which belongs to kmcl until this runs, once.
    let (routine, alive) = unsafe { ((*p).routine, (*p).handle.alive()) };
    match (routine, alive) {
        // SAFETY: the driver's routine gets its packet back, with the
        // completion payload for the duration of the call.
        (Some(f), true) => unsafe {
            f(
                p.cast(),
                errno(status),
                data.as_ptr().cast(),
                data.len() as u32,
            )
        },
        // KMCL's default: a packet without a routine is freed once its
        // transaction is over; so is every packet of a module gone.
        // SAFETY: nobody else uses it any more.
        _ => unsafe { free_packet(p) },
    }
}

/// The packet object behind a handle.
///
/// # Safety
///
/// `packet` is NULL or a live packet handle, used by one thread at a time
/// while not in flight.
unsafe fn packet_ref<'a>(packet: *mut KmclPacket) -> Option<&'a CPacket> {
    // SAFETY: the caller's promise.
    unsafe { packet.cast::<CPacket>().as_ref() }
}

/// `VmbChannelSizeofPacket`: the bytes `kmcl_packet_initialize` needs.
///
/// # Safety
///
/// None beyond the C signature: the channel is not used.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_sizeof_packet(_channel: *mut KmclChannel) -> u32 {
    core::mem::size_of::<CPacket>() as u32
}

/// `VmbPacketAllocate`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_allocate(channel: *mut KmclChannel) -> *mut KmclPacket {
    // SAFETY: the caller's promise.
    let Some(h) = (unsafe { handle(channel) }) else {
        return core::ptr::null_mut();
    };
    let kept = Option::as_mut(&mut *h.lookaside.lock()).and_then(|k| k.pop());
    let b = match kept {
        Some(mut b) => {
            b.pointer.store(0, Ordering::Relaxed);
            b.routine = None;
            b.restored.store(0, Ordering::Relaxed);
            b
        }
        None => {
            let p = CPacket {
                handle: h.into(),
                pointer: AtomicUsize::new(0),
                routine: None,
                in_caller_memory: false,
                restored: AtomicUsize::new(0),
            };
            match KBox::new(p, gfp()) {
                Ok(b) => b,
                Err(_) => return core::ptr::null_mut(),
            }
        }
    };
    KBox::into_raw(b).cast()
}

/// `VmbPacketInitialize`: makes a packet object in `buffer`, which must be
/// at least `kmcl_channel_sizeof_packet()` bytes and pointer-aligned.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `buffer` is NULL or `size` writable
/// bytes that stay allocated until the packet is freed; `packet` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_initialize(
    channel: *mut KmclChannel,
    buffer: *mut c_void,
    size: u32,
    packet: *mut *mut KmclPacket,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(h) = (unsafe { handle(channel) }) else {
        return EINVAL.to_errno();
    };
    let fits = (size as usize) >= core::mem::size_of::<CPacket>();
    let aligned = (buffer as usize) & (core::mem::align_of::<CPacket>() - 1) == 0;
    if buffer.is_null() || packet.is_null() || !fits || !aligned {
        return EINVAL.to_errno();
    }
    let p = buffer.cast::<CPacket>();
    // SAFETY: checked: large enough and aligned; writable (caller).
    unsafe {
        p.write(CPacket {
            handle: h.into(),
            pointer: AtomicUsize::new(0),
            routine: None,
            in_caller_memory: true,
            restored: AtomicUsize::new(0),
        });
        *packet = p.cast();
    }
    0
}

/// `VmbPacketFree`: also ends a packet made by `kmcl_packet_initialize`
/// (its memory stays the driver's).
///
/// # Safety
///
/// `packet` is NULL or a live packet handle, not in flight, not used again.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_free(packet: *mut KmclPacket) {
    if !packet.is_null() {
        // SAFETY: the caller's promise.
        unsafe { free_packet(packet.cast()) };
    }
}

/// `VmbPacketGetChannel`.
///
/// # Safety
///
/// `packet` is NULL or a live packet handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_get_channel(packet: *mut KmclPacket) -> *mut KmclChannel {
    // SAFETY: the caller's promise.
    match unsafe { packet_ref(packet) } {
        Some(p) => p.handle.as_raw(),
        None => core::ptr::null_mut(),
    }
}

/// `VmbPacketGetPointer`.
///
/// # Safety
///
/// `packet` is NULL or a live packet handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_get_pointer(packet: *mut KmclPacket) -> *mut c_void {
    // SAFETY: the caller's promise.
    match unsafe { packet_ref(packet) } {
        Some(p) => p.pointer.load(Ordering::Relaxed) as *mut c_void,
        None => core::ptr::null_mut(),
    }
}

/// `VmbPacketSetPointer`.
///
/// # Safety
///
/// `packet` is NULL or a live packet handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_set_pointer(packet: *mut KmclPacket, pointer: *mut c_void) {
    // SAFETY: the caller's promise.
    if let Some(p) = unsafe { packet_ref(packet) } {
        p.pointer.store(pointer as usize, Ordering::Relaxed);
    }
}

/// `VmbPacketSetCompletionRoutine`.
///
/// # Safety
///
/// `packet` is NULL or a live packet handle, not in flight.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_set_completion_routine(
    packet: *mut KmclPacket,
    routine: EvtPacketCompletion,
) {
    // SAFETY: the caller's promise: not in flight, so kmcl does not read
    // the packet concurrently.
    if let Some(p) = unsafe { packet.cast::<CPacket>().as_mut() } {
        p.routine = routine;
    }
}

/// Flags `kmcl_packet_send` knows.
const FORMAT_FLAGS: u32 = abi::FORMAT_FLAG_WAIT_FOR_COMPLETION
    | abi::FORMAT_FLAG_FORCE_MDL_LENGTH
    | abi::FORMAT_FLAG_PAGED_BUFFER;

/// `VmbPacketSend` (in-band, or GPA-direct with an MDL). On an
/// error the routine does not run and the packet is the driver's again.
///
/// # Safety
///
/// `packet` is NULL or a live packet handle, not in flight; `buffer` holds
/// `length` bytes.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_send(
    packet: *mut KmclPacket,
    buffer: *const c_void,
    length: u32,
    mdl: *const KmclMdl,
    flags: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(p) = (unsafe { packet_ref(packet) }) else {
        return EINVAL.to_errno();
    };
    let sent = (|| -> Result {
        if flags & !FORMAT_FLAGS != 0 {
            return Err(EINVAL);
        }
        // SAFETY: the caller's promise; the bytes are copied into the ring
        // (or the send queue) before this returns.
        let payload = unsafe { bytes(buffer, length) }?;
        let wait = flags & abi::FORMAT_FLAG_WAIT_FOR_COMPLETION != 0;
        let routine = Routine::Function(packet_done, packet as usize);
        if !mdl.is_null() {
            needs_wait(flags)?;
            // SAFETY: the caller's promise (a readable MDL whose pages stay
            // valid until the routine runs).
            let pages = unsafe { mdl_pages(mdl, 0, 0) }?;
            return p.handle.channel.send_external(payload, pages, routine);
        }
        p.handle.channel.send(payload, wait, routine)
    })();
    errno(sent)
}

/// External data must be sent with a completion request (KMCL: its pages
/// are the sender's again only once the other endpoint completed it).
fn needs_wait(flags: u32) -> Result {
    if flags & abi::FORMAT_FLAG_WAIT_FOR_COMPLETION == 0 {
        return Err(EINVAL);
    }
    Ok(())
}

/// The pages of `length` bytes (0: to the end) from `offset` of the data
/// `mdl` describes.
///
/// # Safety
///
/// `mdl` is a readable `struct kmcl_mdl` whose `pages` holds `nr_pages`
/// valid page pointers, and those pages stay allocated as long as the
/// result is used.
unsafe fn mdl_pages(mdl: *const KmclMdl, offset: u32, length: u32) -> Result<GpadlPages> {
    // SAFETY: readable (the caller's promise).
    let m = unsafe { &*mdl };
    if m.pages.is_null() || m.length == 0 || offset >= m.length {
        return Err(EINVAL);
    }
    let length = if length == 0 {
        m.length - offset
    } else {
        length
    };
    if u64::from(offset) + u64::from(length) > u64::from(m.length) {
        return Err(EINVAL);
    }
    let start = m.offset as usize + offset as usize;
    let first = start >> kernel::page::PAGE_SHIFT;
    let in_page = start & (kernel::page::PAGE_SIZE - 1);
    // SAFETY: `pages` holds `nr_pages` pointers (the caller's promise).
    let all = unsafe {
        core::slice::from_raw_parts(
            m.pages.cast::<*mut crate::shmem::Page>(),
            m.nr_pages as usize,
        )
    };
    let from_first = all.get(first..).ok_or(EINVAL)?;
    // SAFETY: valid pages that stay (the caller's promise); the range is
    // checked against the slice.
    unsafe { GpadlPages::from_pages(from_first, in_page, length as usize) }
}

/// `VmbChannelSendSynchronousRequest` (in-band). `timeout_ms` NULL waits
/// for ever; `*reply_length` is the reply buffer's size on entry and the
/// reply's on return. Process context only.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `buffer` holds `length` bytes;
/// `reply` holds `*reply_length` writable bytes; `reply_length` and
/// `timeout_ms` are NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_send_synchronous_request(
    channel: *mut KmclChannel,
    buffer: *const c_void,
    length: u32,
    mdl: *const KmclMdl,
    flags: u32,
    reply: *mut c_void,
    reply_length: *mut u32,
    timeout_ms: *const u32,
) -> c_int {
    if !crate::context::in_task() {
        return EINVAL.to_errno();
    }
    // SAFETY: the caller's promise.
    unsafe {
        with_channel(channel, |h| {
            if flags & !FORMAT_FLAGS != 0 {
                return Err(EINVAL);
            }
            let ext = if mdl.is_null() {
                None
            } else {
                // SAFETY: the caller's promise (a readable MDL whose pages
                // stay valid until this returns).
                Some(mdl_pages(mdl, 0, 0)?)
            };
            let payload = bytes(buffer, length)?;
            let cap = if reply_length.is_null() {
                0
            } else {
                *reply_length
            };
            let out: &mut [u8] = if cap == 0 {
                &mut []
            } else if reply.is_null() {
                return Err(EINVAL);
            } else {
                core::slice::from_raw_parts_mut(reply.cast::<u8>(), cap as usize)
            };
            let timeout = timeout_ms.as_ref().copied();
            let n = match ext {
                Some(pages) => h.channel.send_sync_external(payload, pages, out, timeout)?,
                None => h.channel.send_sync(payload, out, timeout)?,
            };
            if !reply_length.is_null() {
                *reply_length = n as u32;
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------------------
// GPADLs, external data, MMIO, save/restore and VMBus handles.

/// `VmbChannelCreateGpadlFromBuffer`: shares `length` bytes at `buffer`
/// (vmalloc or linear-map memory) with the server.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `gpadl` is NULL or writable; the
/// buffer stays allocated until the GPADL is deleted.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_create_gpadl_from_buffer(
    channel: *mut KmclChannel,
    flags: u32,
    buffer: *mut c_void,
    length: u32,
    gpadl: *mut u32,
) -> c_int {
    if gpadl.is_null() || buffer.is_null() || flags & !abi::GPADL_FLAG_READ_ONLY != 0 {
        return EINVAL.to_errno();
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        with_channel(channel, |h| {
            // SAFETY: the caller keeps the buffer until the GPADL is
            // deleted (kmcl.h).
            let pages = GpadlPages::from_buffer(buffer as usize, length as usize)?;
            let handle = h
                .channel
                .create_gpadl(pages, flags & abi::GPADL_FLAG_READ_ONLY != 0)?;
            // SAFETY: `gpadl` is writable (the caller's promise).
            *gpadl = handle;
            Ok(())
        })
    }
}

/// `VmbChannelCreateGpadlFromMdl`: shares `length` bytes (0: to the end)
/// from `offset` of the data `mdl` describes.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `mdl` is NULL or a readable
/// `struct kmcl_mdl` whose `pages` holds `nr_pages` valid page pointers,
/// and those pages stay allocated until the GPADL is deleted; `gpadl` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_create_gpadl_from_mdl(
    channel: *mut KmclChannel,
    flags: u32,
    mdl: *const KmclMdl,
    offset: u32,
    length: u32,
    gpadl: *mut u32,
) -> c_int {
    if gpadl.is_null() || mdl.is_null() || flags & !abi::GPADL_FLAG_READ_ONLY != 0 {
        return EINVAL.to_errno();
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        with_channel(channel, |h| {
            // SAFETY: the caller's promise (as `mdl_pages` requires).
            let pages = mdl_pages(mdl, offset, length)?;
            let handle = h
                .channel
                .create_gpadl(pages, flags & abi::GPADL_FLAG_READ_ONLY != 0)?;
            // SAFETY: `gpadl` is writable (the caller's promise).
            *gpadl = handle;
            Ok(())
        })
    }
}

/// `VmbChannelDeleteGpadl`: waits while the server has it mapped.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_delete_gpadl(channel: *mut KmclChannel, gpadl: u32) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { with_channel(channel, |h| h.channel.delete_gpadl(gpadl)) }
}

/// `VmbChannelGetMmioSpace`: the MMIO space of the connection.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `address` and `size` are NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_get_mmio_space(
    channel: *mut KmclChannel,
    address: *mut *mut c_void,
    size: *mut u64,
) -> c_int {
    if address.is_null() || size.is_null() {
        return EINVAL.to_errno();
    }
    let mut space = None;
    // SAFETY: the caller's promise.
    let rc = unsafe {
        with_channel(channel, |h| {
            space = Some(h.channel.mmio_space()?);
            Ok(())
        })
    };
    if let Some((va, len)) = space {
        // SAFETY: both outputs are writable (checked non-NULL; the
        // caller's promise).
        unsafe {
            *address = va as *mut c_void;
            *size = len as u64;
        }
    }
    rc
}

/// `VmbChannelPacketGetExternalData`: `*mdl` describes the external data
/// of an incoming GPA-direct packet, valid until the packet is completed.
/// `-ENODATA` for a packet without external data.
///
/// # Safety
///
/// `packet` is NULL or a handle kmcl passed to a process-packet callback
/// and not yet given back; `mdl` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_packet_get_external_data(
    packet: *mut KmclIncoming,
    flags: u32,
    mdl: *mut *mut KmclMdl,
) -> c_int {
    if packet.is_null() || mdl.is_null() || flags & !abi::EXTERNAL_DATA_FLAG_READ_ONLY != 0 {
        return EINVAL.to_errno();
    }
    if !lent::is_lent(packet as usize) {
        pr_err!("invalid incoming packet handle {:p}; ignored\n", packet);
        return EINVAL.to_errno();
    }
    // SAFETY: a lent handle is a live incoming packet's box, which the
    // calling driver owns until it gives it back.
    let incoming = unsafe { &*packet.cast::<Incoming>() };
    match incoming.external_data() {
        Some(pages) => {
            // SAFETY: `mdl` is writable; the view has `struct kmcl_mdl`'s
            // layout (checked below) and lives as long as the packet.
            unsafe { *mdl = core::ptr::from_ref(pages.mdl_view()).cast_mut().cast() };
            0
        }
        None => ENODATA.to_errno(),
    }
}

// `MdlView` is handed to C as a `struct kmcl_mdl`.
const _: () = {
    use crate::shmem::MdlView;
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<MdlView>() == size_of::<KmclMdl>());
    assert!(align_of::<MdlView>() == align_of::<KmclMdl>());
    assert!(offset_of!(MdlView, pages) == offset_of!(KmclMdl, pages));
    assert!(offset_of!(MdlView, nr_pages) == offset_of!(KmclMdl, nr_pages));
    assert!(offset_of!(MdlView, offset) == offset_of!(KmclMdl, offset));
    assert!(offset_of!(MdlView, length) == offset_of!(KmclMdl, length));
};

/// `VmbChannelSetInterruptLatency`: `*original` (if not NULL) receives
/// the previous latency.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `original` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_set_interrupt_latency(
    channel: *mut KmclChannel,
    latency: u16,
    original: *mut u16,
) -> c_int {
    let mut old = None;
    // SAFETY: the caller's promise.
    let rc = unsafe {
        with_channel(channel, |h| {
            old = Some(h.channel.set_interrupt_latency(latency)?);
            Ok(())
        })
    };
    if let (Some(old), false) = (old, original.is_null()) {
        // SAFETY: not NULL, so writable (the caller's promise).
        unsafe { *original = old };
    }
    rc
}

/// `VmbPacketSendWithExternalMdl`: `mdl_length` bytes (0: to the end)
/// from `mdl_offset` of `mdl` as external data. A completion must be
/// requested.
///
/// # Safety
///
/// As [`kmcl_packet_send`]; `mdl` is NULL or a readable `struct kmcl_mdl`
/// whose pages stay valid until the routine runs.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_send_with_external_mdl(
    packet: *mut KmclPacket,
    buffer: *const c_void,
    length: u32,
    mdl: *const KmclMdl,
    mdl_offset: u32,
    mdl_length: u32,
    flags: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(p) = (unsafe { packet_ref(packet) }) else {
        return EINVAL.to_errno();
    };
    let sent = (|| -> Result {
        if flags & !FORMAT_FLAGS != 0 || mdl.is_null() {
            return Err(EINVAL);
        }
        needs_wait(flags)?;
        // SAFETY: the caller's promise.
        let payload = unsafe { bytes(buffer, length) }?;
        // SAFETY: the caller's promise.
        let pages = unsafe { mdl_pages(mdl, mdl_offset, mdl_length) }?;
        let routine = Routine::Function(packet_done, packet as usize);
        p.handle.channel.send_external(payload, pages, routine)
    })();
    errno(sent)
}

/// `VmbPacketSendWithExternalPfns`: the whole pages `pfns` as external
/// data. A completion must be requested.
///
/// # Safety
///
/// As [`kmcl_packet_send`]; `pfns` holds `pfn_count` page frame numbers of
/// memory that stays allocated until the routine runs.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_send_with_external_pfns(
    packet: *mut KmclPacket,
    buffer: *const c_void,
    length: u32,
    pfns: *const u64,
    pfn_count: u32,
    flags: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(p) = (unsafe { packet_ref(packet) }) else {
        return EINVAL.to_errno();
    };
    let sent = (|| -> Result {
        if flags & !FORMAT_FLAGS != 0 || pfns.is_null() || pfn_count == 0 {
            return Err(EINVAL);
        }
        needs_wait(flags)?;
        // SAFETY: the caller's promise.
        let payload = unsafe { bytes(buffer, length) }?;
        // SAFETY: `pfns` holds `pfn_count` numbers (the caller's promise).
        let list = unsafe { core::slice::from_raw_parts(pfns, pfn_count as usize) };
        // SAFETY: the memory stays until the routine runs (the caller's
        // promise); the glue checks each frame.
        let pages = unsafe { GpadlPages::from_pfns(list) }?;
        let routine = Routine::Function(packet_done, packet as usize);
        p.handle.channel.send_external(payload, pages, routine)
    })();
    errno(sent)
}

/// `VmbChannelMapGpadl`: `*mdl` describes the client's pages behind
/// `gpadl` until it is unmapped (or the channel is cleaned up).
///
/// # Safety
///
/// `channel` is NULL or a live handle; `mdl` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_map_gpadl(
    channel: *mut KmclChannel,
    flags: u32,
    gpadl: u32,
    mdl: *mut *mut KmclMdl,
) -> c_int {
    if mdl.is_null() || flags & !abi::GPADL_FLAG_READ_ONLY != 0 {
        return EINVAL.to_errno();
    }
    let writable = flags & abi::GPADL_FLAG_READ_ONLY == 0;
    // SAFETY: forwarded from the caller.
    unsafe {
        with_channel(channel, |h| {
            let pages = h.channel.map_gpadl(gpadl, writable)?;
            let m = MappedMdl { gpadl, pages };
            let ptr = m.as_ptr();
            match h.mdls.lock().push(m, GFP_KERNEL) {
                Ok(()) => {
                    // SAFETY: `mdl` is writable (the caller's promise).
                    *mdl = ptr;
                    Ok(())
                }
                Err(e) => {
                    let _ = h.channel.unmap_gpadl(gpadl);
                    Err(e.into())
                }
            }
        })
    }
}

/// `VmbChannelUnmapGpadl`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_unmap_gpadl(channel: *mut KmclChannel, gpadl: u32) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_channel(channel, |h| {
            let r = h.channel.unmap_gpadl(gpadl);
            // The MDL goes with the mapping (also if kmcl already unmapped
            // it because the connection ended).
            let gone = {
                let mut mdls = h.mdls.lock();
                let i = mdls.iter().position(|m| m.gpadl == gpadl);
                i.and_then(|i| mdls.remove(i).ok())
            };
            match (r, gone) {
                (Err(e), None) => Err(e),
                _ => Ok(()),
            }
        })
    }
}

/// `VmbChannelRestoreFromBuffer` (server, disabled, interface set): 0
/// once the save is complete, `-EAGAIN` (`STATUS_MORE_PROCESSING_REQUIRED`)
/// for more chunks, `-EBADMSG` for a buffer that is not (the rest of) a
/// valid save, `-EINVAL` for a save of another interface; a refused buffer
/// changes nothing.
///
/// # Safety
///
/// `channel` is NULL or a live handle; `buffer` is readable for `size`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_restore_from_buffer(
    channel: *mut KmclChannel,
    buffer: *const c_void,
    size: u32,
) -> c_int {
    if buffer.is_null() || size == 0 {
        return EINVAL.to_errno();
    }
    // SAFETY: readable for `size` bytes (the caller's promise).
    let buf = unsafe { core::slice::from_raw_parts(buffer.cast::<u8>(), size as usize) };
    // SAFETY: the caller's promise.
    unsafe {
        with_channel(channel, |h| {
            for_role(h, Role::Server, |h| match h.channel.restore_from(buf)? {
                true => Ok(()),
                false => Err(EAGAIN),
            })
        })
    }
}

/// Gives the taken-back packets back to the driver (a save failed) and
/// lets delivery resume.
fn give_back_all(h: &Handle, taken: KVec<(KBox<Incoming>, usize)>) {
    for (b, owner) in taken {
        let raw = KBox::into_raw(b);
        if lent::lend(raw as usize, owner).is_err() {
            // SAFETY: made just above, not handed out: completed empty.
            drop(unsafe { incoming_unchecked(raw.cast()) });
        }
    }
    h.channel.resume_after_save();
}

/// What the driver saves for the packet `handle` (`EvtVmbChannelSavePacket`:
/// a size query with no buffer first, then a buffer of the size it asked
/// for). Empty without a callback.
fn driver_state(h: &Handle, handle: *mut KmclIncoming) -> Result<KVec<u8>> {
    let f = h.save_restore.lock().0;
    let (Some(f), true) = (f, h.alive()) else {
        return Ok(KVec::new());
    };
    let mut needed = 0u32;
    // SAFETY: the driver's callback (module alive); `handle` is one of its
    // packets, taken back for the save and alive; no buffer (size 0).
    let rc = unsafe { f(h.as_raw(), handle, core::ptr::null_mut(), 0, &mut needed) };
    if rc == 0 {
        return Ok(KVec::new());
    }
    if needed == 0 || needed as usize > crate::protocol::save::MAX_BODY_LEN / 2 {
        return Err(Error::from_errno(rc));
    }
    let mut buf = KVec::from_elem(0u8, needed as usize, GFP_KERNEL)?;
    let mut used = needed;
    // SAFETY: as above, with a writable buffer of `needed` bytes.
    let rc = unsafe {
        f(
            h.as_raw(),
            handle,
            buf.as_mut_ptr().cast(),
            needed,
            &mut used,
        )
    };
    to_result(rc)?;
    buf.truncate(used.min(needed) as usize);
    Ok(buf)
}

/// `VmbChannelSaveBegin` (server, connected): stops delivery and takes the
/// packets the driver holds uncompleted into the save, with what the
/// driver's `EvtVmbChannelSavePacket` saves for each. From then on they
/// belong to the save: completing one fails (`-EINVAL`). `-EOPNOTSUPP`
/// if one carries external data (not saved); on any error the packets
/// stay the driver's and delivery resumes.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_save_begin(channel: *mut KmclChannel) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { with_channel(channel, |h| for_role(h, Role::Server, save_begin)) }
}

fn save_begin(h: &Handle) -> Result {
    h.channel.stop_for_save()?;
    let me = Arc::as_ptr(&h.channel);
    let mut taken: KVec<(KBox<Incoming>, usize)> = KVec::new();
    loop {
        if taken.reserve(1, GFP_KERNEL).is_err() {
            give_back_all(h, taken);
            return Err(ENOMEM);
        }
        let Some((handle, owner)) = lent::take_one_where(|addr, _| {
            // SAFETY: `addr` is lent (its entry is in the table, under the
            // table's lock), so the packet is alive.
            let b = unsafe { &*(addr as *const Incoming) };
            core::ptr::eq(Arc::as_ptr(b.channel()), me)
        }) else {
            break;
        };
        // SAFETY: a lent handle taken out of the table is ours again.
        let b = unsafe { KBox::from_raw(handle as *mut Incoming) };
        if taken.push_within_capacity((b, owner)).is_err() {
            // Reserved above.
            break;
        }
    }
    if taken.iter().any(|(b, _)| b.external_data().is_some()) {
        pr_err!("save: a packet in flight carries external data, which is not saved\n");
        give_back_all(h, taken);
        return Err(EOPNOTSUPP);
    }
    let mut states = KVec::with_capacity(taken.len(), GFP_KERNEL)?;
    for (b, _) in taken.iter() {
        let raw = core::ptr::from_ref::<Incoming>(b)
            .cast_mut()
            .cast::<KmclIncoming>();
        match driver_state(h, raw) {
            Ok(st) => {
                let _ = states.push_within_capacity(st);
            }
            Err(e) => {
                pr_err!("save: the driver could not save a packet: {:?}\n", e);
                give_back_all(h, taken);
                return Err(e);
            }
        }
    }
    let mut packets = KVec::with_capacity(taken.len(), GFP_KERNEL)?;
    for ((packet, _), driver_state) in taken.into_iter().zip(states) {
        let _ = packets.push_within_capacity(crate::engine::save::SavedPacket {
            packet,
            driver_state,
        });
    }
    h.channel.save(packets)
}

/// `VmbChannelSaveContinue`: as many whole chunks of the save as fit in
/// `buffer`: 0 (all handed out), `-EOVERFLOW` (`STATUS_BUFFER_OVERFLOW`:
/// `*filled` bytes written, more to come), `-ENOBUFS`
/// (`STATUS_BUFFER_TOO_SMALL`: the next chunk needs `*required` bytes).
///
/// # Safety
///
/// `channel` is NULL or a live handle; `buffer` is writable for `size`
/// bytes (NULL if `size` is 0); `filled` and `required` are NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_save_continue(
    channel: *mut KmclChannel,
    buffer: *mut c_void,
    size: u32,
    filled: *mut u32,
    required: *mut u32,
) -> c_int {
    if filled.is_null() || required.is_null() || (buffer.is_null() && size > 0) {
        return EINVAL.to_errno();
    }
    let out: &mut [u8] = if size == 0 {
        &mut []
    } else {
        // SAFETY: writable for `size` bytes (the caller's promise).
        unsafe { core::slice::from_raw_parts_mut(buffer.cast(), size as usize) }
    };
    let mut outcome = None;
    // SAFETY: the caller's promise.
    let rc = unsafe {
        with_channel(channel, |h| {
            outcome = Some(h.channel.save_continue(out)?);
            Ok(())
        })
    };
    use crate::engine::save::Continue;
    let (n, need, rc) = match outcome {
        Some(Continue::Done(n)) => (n, 0, 0),
        Some(Continue::More(n)) => (n, 0, EOVERFLOW.to_errno()),
        Some(Continue::TooSmall(need)) => (0, need, ENOBUFS.to_errno()),
        None => (0, 0, rc),
    };
    // SAFETY: both checked non-NULL; writable (the caller's promise).
    unsafe {
        *filled = n as u32;
        *required = need as u32;
    }
    rc
}

/// `VmbChannelSaveEnd`: the save is over; the channel's Disable now parks
/// its connection for the server that restores the save.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_channel_save_end(channel: *mut KmclChannel) {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel(channel, |h| {
            h.channel.save_end();
            Ok(())
        })
    };
}

/// `kmcl_loopback_vmbus_create` (kmcl's own): a new, independent loopback
/// bus (without a VMBus host); `*handle` names it for
/// [`kmcl_convert_vmbus_handle_to_kernel_handle`].
///
/// # Safety
///
/// `handle` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_loopback_vmbus_create(handle: *mut u64) -> c_int {
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

/// `VmbPacketRestore`: makes the saved packet `buffer` (the `lib_buffer`
/// of `EvtVmbChannelRestorePacket`) an incoming packet of the packet
/// object's channel again; [`kmcl_packet_restored`] hands out its handle.
/// `-EBADMSG` for a buffer that is not a saved packet, `-EBUSY` if the
/// packet object holds a restored packet not handed out yet.
///
/// # Safety
///
/// `packet` is NULL or a live packet object; `buffer` is readable for
/// `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_restore(
    packet: *mut KmclPacket,
    buffer: *const c_void,
    size: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(p) = (unsafe { packet_ref(packet) }) else {
        return EINVAL.to_errno();
    };
    if buffer.is_null() || size == 0 {
        return EINVAL.to_errno();
    }
    if p.restored.load(Ordering::Acquire) != 0 {
        return EBUSY.to_errno();
    }
    // SAFETY: readable for `size` bytes (the caller's promise).
    let lib = unsafe { core::slice::from_raw_parts(buffer.cast::<u8>(), size as usize) };
    let b = match p.handle.channel.restore_incoming(lib) {
        Ok(b) => b,
        Err(e) => return e.to_errno(),
    };
    let raw = KBox::into_raw(b);
    if lent::lend(raw as usize, p.handle.owner).is_err() {
        // SAFETY: made just above, not handed out: completed empty.
        drop(unsafe { incoming_unchecked(raw.cast()) });
        return ENOMEM.to_errno();
    }
    p.restored.store(raw as usize, Ordering::Release);
    0
}

/// kmcl's own: the incoming packet `kmcl_packet_restore` made in `packet`
/// (once; NULL otherwise), to complete as any incoming packet.
///
/// # Safety
///
/// `packet` is NULL or a live packet object.
#[no_mangle]
pub unsafe extern "C" fn kmcl_packet_restored(packet: *mut KmclPacket) -> *mut KmclIncoming {
    // SAFETY: the caller's promise.
    match unsafe { packet_ref(packet) } {
        Some(p) => p.restored.swap(0, Ordering::AcqRel) as *mut KmclIncoming,
        None => core::ptr::null_mut(),
    }
}

/// `kmcl_stash_put` (kmcl's own): keeps a copy of `len` bytes under `key`
/// (replacing what was there) until [`kmcl_stash_take`] or kmcl unloads:
/// state a driver hands to its next load (a live update).
///
/// # Safety
///
/// `key` is NULL or readable; `buffer` readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn kmcl_stash_put(
    key: *const Guid,
    buffer: *const c_void,
    len: u32,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(key) = (unsafe { guid(key) }) else {
        return EINVAL.to_errno();
    };
    if buffer.is_null() || len == 0 {
        return EINVAL.to_errno();
    }
    // SAFETY: readable for `len` bytes (the caller's promise).
    let data = unsafe { core::slice::from_raw_parts(buffer.cast::<u8>(), len as usize) };
    let put = (|| {
        let mut copy = KVVec::with_capacity(data.len(), GFP_KERNEL)?;
        copy.extend_from_slice(data, GFP_KERNEL)?;
        let mut r = REGISTRY.lock();
        r.stash.retain(|(k, _)| *k != key);
        r.stash.push((key, copy), GFP_KERNEL)?;
        Ok(())
    })();
    errno(put)
}

/// `kmcl_stash_take` (kmcl's own): copies what is kept under `key` into
/// `buffer` and forgets it; `*len` receives its size. `-ENOENT` (nothing
/// kept), `-ENOBUFS` (`size` too small: `*len` says how much; it stays
/// kept).
///
/// # Safety
///
/// `key` is NULL or readable; `buffer` writable for `size` bytes (NULL if
/// `size` is 0); `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kmcl_stash_take(
    key: *const Guid,
    buffer: *mut c_void,
    size: u32,
    len: *mut u32,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(key) = (unsafe { guid(key) }) else {
        return EINVAL.to_errno();
    };
    if len.is_null() || (buffer.is_null() && size > 0) {
        return EINVAL.to_errno();
    }
    let mut r = REGISTRY.lock();
    let Some(i) = r.stash.iter().position(|(k, _)| *k == key) else {
        return ENOENT.to_errno();
    };
    let n = r.stash[i].1.len();
    // SAFETY: checked non-NULL; writable (the caller's promise).
    unsafe { *len = n as u32 };
    if n > size as usize {
        return ENOBUFS.to_errno();
    }
    // SAFETY: writable for `size >= n` bytes (the caller's promise).
    unsafe { core::ptr::copy_nonoverlapping(r.stash[i].1.as_ptr(), buffer.cast::<u8>(), n) };
    let taken = r.stash.remove(i);
    drop(r);
    drop(taken);
    0
}

/// `VmbServerChannelInitSetMmioMegabytes`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_server_channel_init_set_mmio_megabytes(
    channel: *mut KmclChannel,
    megabytes: u16,
    optional_megabytes: u16,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel(channel, |h| {
            h.channel.set_mmio_megabytes(megabytes, optional_megabytes)
        })
    }
}

/// `VmbServerChannelInitSetSaveRestorePacketCallbacks`.
///
/// # Safety
///
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kmcl_server_channel_init_set_save_restore_packet_callbacks(
    channel: *mut KmclChannel,
    save: EvtSavePacket,
    restore: EvtRestorePacket,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_channel(channel, |h| {
            for_role(h, Role::Server, |h| {
                // Init time only (`-EBUSY` while enabled).
                h.channel.configure(|_| {})?;
                *h.save_restore.lock() = (save, restore);
                Ok(())
            })
        })
    }
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
    // Compared as an address only: never dereferenced.
    let bus = REGISTRY
        .lock()
        .buses
        .iter()
        .find(|(_, b)| core::ptr::eq(Arc::as_ptr(b).cast(), handle.cast_const()))
        .map(|(_, b)| b.clone());
    // SAFETY: the caller's promise.
    unsafe { with_channel(channel, |h| h.channel.set_bus(bus.clone().ok_or(ENOENT)?)) }
}

// ---------------------------------------------------------------------------
// Interface tables.

/// `KMCL_CLIENT_INTERFACE_V1` as kmcl hands it out.
const CLIENT_V1: ClientInterfaceV1 = ClientInterfaceV1 {
    size: core::mem::size_of::<ClientInterfaceV1>() as u32,
    version: abi::INTERFACE_VERSION_1,
    channel_allocate: kmcl_channel_allocate,
    channel_cleanup: kmcl_channel_cleanup,
    channel_create_gpadl_from_buffer: kmcl_channel_create_gpadl_from_buffer,
    channel_create_gpadl_from_mdl: kmcl_channel_create_gpadl_from_mdl,
    channel_delete_gpadl: kmcl_channel_delete_gpadl,
    channel_disable: kmcl_channel_disable,
    channel_enable: kmcl_channel_enable,
    channel_get_interface_instance: kmcl_channel_get_interface_instance,
    channel_get_mmio_space: kmcl_channel_get_mmio_space,
    channel_get_pointer: kmcl_channel_get_pointer,
    channel_init_set_client_context_size: kmcl_channel_init_set_client_context_size,
    channel_init_set_flags: kmcl_channel_init_set_flags,
    channel_init_set_friendly_name: kmcl_channel_init_set_friendly_name,
    channel_init_set_maximum_external_data: kmcl_channel_init_set_maximum_external_data,
    channel_init_set_maximum_packet_size: kmcl_channel_init_set_maximum_packet_size,
    channel_init_set_process_packet_callbacks: kmcl_channel_init_set_process_packet_callbacks,
    channel_init_set_state_change_callbacks: kmcl_channel_init_set_state_change_callbacks,
    channel_packet_complete: kmcl_channel_packet_complete,
    channel_packet_defer_to_passive: kmcl_channel_packet_defer_to_passive,
    channel_packet_fail: kmcl_channel_packet_fail,
    channel_packet_get_external_data: kmcl_channel_packet_get_external_data,
    channel_pause: kmcl_channel_pause,
    channel_send_synchronous_request: kmcl_channel_send_synchronous_request,
    channel_set_incoming_processing_at_passive: kmcl_channel_set_incoming_processing_at_passive,
    channel_set_interrupt_latency: kmcl_channel_set_interrupt_latency,
    channel_set_pointer: kmcl_channel_set_pointer,
    channel_set_transaction_quota: kmcl_channel_set_transaction_quota,
    channel_sizeof_packet: kmcl_channel_sizeof_packet,
    channel_start: kmcl_channel_start,
    client_channel_init_set_ring_buffer_page_count:
        kmcl_client_channel_init_set_ring_buffer_page_count,
    client_channel_init_set_target_pnp: kmcl_client_channel_init_set_target_pnp,
    packet_allocate: kmcl_packet_allocate,
    packet_free: kmcl_packet_free,
    packet_get_channel: kmcl_packet_get_channel,
    packet_get_pointer: kmcl_packet_get_pointer,
    packet_initialize: kmcl_packet_initialize,
    packet_send: kmcl_packet_send,
    packet_send_with_external_mdl: kmcl_packet_send_with_external_mdl,
    packet_send_with_external_pfns: kmcl_packet_send_with_external_pfns,
    packet_set_completion_routine: kmcl_packet_set_completion_routine,
    packet_set_pointer: kmcl_packet_set_pointer,
};

/// `KMCL_SERVER_ONLY_METHODS` as kmcl hands them out.
const SERVER_ONLY: ServerOnlyMethods = ServerOnlyMethods {
    channel_map_gpadl: kmcl_channel_map_gpadl,
    channel_restore_from_buffer: kmcl_channel_restore_from_buffer,
    channel_save_begin: kmcl_channel_save_begin,
    channel_save_continue: kmcl_channel_save_continue,
    channel_save_end: kmcl_channel_save_end,
    channel_unmap_gpadl: kmcl_channel_unmap_gpadl,
    convert_vmbus_handle_to_kernel_handle: kmcl_convert_vmbus_handle_to_kernel_handle,
    packet_restore: kmcl_packet_restore,
    server_channel_init_set_flags: kmcl_server_channel_init_set_flags,
    server_channel_init_set_mmio_megabytes: kmcl_server_channel_init_set_mmio_megabytes,
    server_channel_init_set_save_restore_packet_callbacks:
        kmcl_server_channel_init_set_save_restore_packet_callbacks,
    server_channel_init_set_target_interface_id: kmcl_server_channel_init_set_target_interface_id,
    server_channel_init_set_target_vtl: kmcl_server_channel_init_set_target_vtl,
    server_channel_init_set_vmbus_handle: kmcl_server_channel_init_set_vmbus_handle,
};

/// The interface query: fills `interface` with the client (`kind` 1) or
/// server (`kind` 2) table. `-EINVAL` for an unknown kind, a NULL buffer or
/// a size that is not the table's; `-EOPNOTSUPP` for an unknown version.
///
/// # Safety
///
/// `interface` is NULL or `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn kmcl_query_interface(
    kind: u32,
    size: u32,
    version: u32,
    interface: *mut c_void,
) -> c_int {
    let (expected, name) = match kind {
        abi::CLIENT_INTERFACE => (core::mem::size_of::<ClientInterfaceV1>(), "client"),
        abi::SERVER_INTERFACE => (core::mem::size_of::<ServerInterfaceV1>(), "server"),
        _ => {
            pr_warn!("interface query: unknown interface type {}\n", kind);
            return EINVAL.to_errno();
        }
    };
    if version != abi::INTERFACE_VERSION_1 {
        pr_warn!(
            "interface query: {} interface version {} unknown (kmcl has version {})\n",
            name,
            version,
            abi::INTERFACE_VERSION_1
        );
        return EOPNOTSUPP.to_errno();
    }
    if interface.is_null() || size as usize != expected {
        pr_warn!(
            "interface query: {} interface version {} is {} bytes, caller has {}\n",
            name,
            version,
            expected,
            size
        );
        return EINVAL.to_errno();
    }
    // SAFETY: `interface` has `size` writable bytes, which is the table's
    // size; the tables hold only integers and function pointers, for which
    // any alignment of a caller's structure of this type is right.
    unsafe {
        match kind {
            abi::CLIENT_INTERFACE => interface.cast::<ClientInterfaceV1>().write(CLIENT_V1),
            _ => {
                let mut t = ServerInterfaceV1 {
                    client: CLIENT_V1,
                    server: SERVER_ONLY,
                };
                t.client.size = expected as u32;
                interface.cast::<ServerInterfaceV1>().write(t)
            }
        }
    }
    0
}
mod abi_tests;

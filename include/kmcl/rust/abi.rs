// SPDX-License-Identifier: GPL-2.0

//! kmcl's C ABI as Rust sees it: the types, callback and function types,
//! interface tables and exported functions of `include/kmcl/kmcl.h`.
//!
//! This one file is compiled into `kmcl.ko` (which defines the functions and
//! fills the interface tables, so the compiler checks every definition
//! against the types here) and into every Rust driver that uses kmcl through
//! `kmcl.rs` (which calls the functions declared here). The `const` checks
//! at the end make the compiler hold each declaration to its function type
//! too. The C header is the third copy; kmcl's KUnit ABI test compares its
//! layouts with these.
//!
//! Everything here is raw: pointers, errnos. Drivers use the safe types of
//! `kmcl.rs` instead.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "included with #[path] by several crates (kmcl.ko, drivers, the bench), each using part of it"
)]

use core::ffi::{
    c_int,
    c_void, //
};
use kernel::ffi::c_char;

/// A kernel module (C `struct module`), opaque here: drivers pass
/// `THIS_MODULE.as_ptr().cast()`.
///
/// ```no_run
/// # fn example(module: &'static ThisModule) {
/// let owner: *mut kmcl::abi::Module = module.as_ptr().cast();
/// # }
/// ```
#[repr(C)]
pub struct Module {
    _opaque: [u8; 0],
}

/// A page (C `struct page`), opaque here.
///
/// ```no_run
/// # fn example(page: &kernel::page::Page) {
/// let raw: *mut kmcl::abi::Page = page.as_ptr().cast();
/// # }
/// ```
#[repr(C)]
pub struct Page {
    _opaque: [u8; 0],
}

/// A channel handle (C `struct kmcl_channel`, KMCL `VMBCHANNEL`). Opaque.
///
/// ```no_run
/// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
/// let raw: *mut kmcl::abi::KmclChannel = channel.as_raw();
/// // SAFETY: `raw` is live while `channel` is.
/// let quota_rc = unsafe { kmcl::abi::kmcl_channel_set_transaction_quota(raw, 32) };
/// # Ok(())
/// # }
/// ```
#[repr(C)]
pub struct KmclChannel {
    _opaque: [u8; 0],
}

/// An outgoing packet object (C `struct kmcl_packet`, KMCL `VMBPACKET`).
/// Opaque.
///
/// ```no_run
/// # fn example(raw: *mut kmcl::abi::KmclChannel) -> Result {
/// // SAFETY: `raw` is a live channel.
/// let packet: *mut kmcl::abi::KmclPacket = unsafe { kmcl::abi::kmcl_packet_allocate(raw) };
/// if !packet.is_null() {
///     // SAFETY: allocated above, not in flight.
///     unsafe { kmcl::abi::kmcl_packet_free(packet) };
/// }
/// # Ok(())
/// # }
/// ```
#[repr(C)]
pub struct KmclPacket {
    _opaque: [u8; 0],
}

/// An incoming packet (C `struct kmcl_incoming`, KMCL
/// `VMBPACKETCOMPLETION`). Opaque.
///
/// ```no_run
/// # fn example(incoming: *mut kmcl::abi::KmclIncoming) -> Result {
/// // SAFETY: `incoming` is a live incoming packet, given up here.
/// let rc = unsafe { kmcl::abi::kmcl_channel_packet_complete(incoming, core::ptr::null(), 0) };
/// # Ok(())
/// # }
/// ```
#[repr(C)]
pub struct KmclIncoming {
    _opaque: [u8; 0],
}

/// A VMBus interface GUID in wire byte order (C `guid_t`).
///
/// ```no_run
/// /// The interface's type: 6b6d636c-6563-686f-8a11-000000000001.
/// const TYPE: kmcl::Guid = kmcl::Guid {
///     b: [
///         0x6c, 0x63, 0x6d, 0x6b, 0x63, 0x65, 0x6f, 0x68, 0x8a, 0x11, 0, 0, 0, 0, 0, 1,
///     ],
/// };
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Guid {
    /// The 16 bytes, as Linux's `guid_t` and Windows' `GUID` lay them out.
    pub b: [u8; 16],
}

/// kmcl's counterpart of a Windows MDL (C `struct kmcl_mdl`): `length` bytes
/// starting `offset` bytes into the first of `nr_pages` pages.
///
/// ```no_run
/// # fn example(page: &kernel::page::Page) -> Result {
/// let mut pages = [page.as_ptr().cast::<kmcl::abi::Page>()];
/// let mdl = kmcl::abi::KmclMdl {
///     pages: pages.as_mut_ptr(),
///     nr_pages: 1,
///     offset: 0,
///     length: 4096,
///     next: core::ptr::null_mut(),
/// };
/// # Ok(())
/// # }
/// ```
#[repr(C)]
pub struct KmclMdl {
    /// The pages, in order.
    pub pages: *mut *mut Page,
    /// How many pages `pages` holds.
    pub nr_pages: u32,
    /// Byte offset of the data in the first page.
    pub offset: u32,
    /// Bytes of data.
    pub length: u32,
    /// The next MDL of a chain (an MDL's `Next`), or NULL.
    pub next: *mut KmclMdl,
}

/// One range of a transfer-page set (C `struct kmcl_transfer_range`,
/// Linux's `struct vmtransfer_page_range`); kmcl's extension.
///
/// ```no_run
/// # fn example() {
/// let first_frame = kmcl::TransferRange { byte_count: 1514, byte_offset: 0 };
/// # }
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KmclTransferRange {
    /// Bytes in the range (at least 1).
    pub byte_count: u32,
    /// Offset of its first byte from the start of the set.
    pub byte_offset: u32,
}

/// A range within one page (C `struct kmcl_page_buffer`, Linux's `struct
/// hv_page_buffer`); kmcl's extension.
///
/// ```no_run
/// # fn example(pfn: u64) {
/// let range = kmcl::PageBuffer { len: 100, offset: 12, pfn };
/// # }
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KmclPageBuffer {
    /// Bytes (at least 1; `offset + len` within the page).
    pub len: u32,
    /// Offset of the first byte in the page.
    pub offset: u32,
    /// The page's frame number.
    pub pfn: u64,
}

/// `EvtVmbChannelOpened`.
pub type EvtOpened = Option<unsafe extern "C" fn(channel: *mut KmclChannel) -> c_int>;
/// `EvtVmbChannelClosed`, `EvtVmbChannelSuspend`, `EvtVmbChannelStarted`,
/// `EvtVmbChannelPostStarted`.
pub type EvtState = Option<unsafe extern "C" fn(channel: *mut KmclChannel)>;
/// `EvtChannelPnpFailure`.
pub type EvtPnpFailure = Option<unsafe extern "C" fn(channel: *mut KmclChannel, status: c_int)>;
/// `EvtVmbChannelProcessPacket`.
pub type EvtProcessPacket = Option<
    unsafe extern "C" fn(
        channel: *mut KmclChannel,
        packet: *mut KmclIncoming,
        buffer: *const c_void,
        length: u32,
        flags: u32,
    ),
>;
/// kmcl's sub-channel callback: the server offered sub-channel `index` of
/// the primary channel's connection.
pub type EvtSubchannelOffered = Option<unsafe extern "C" fn(primary: *mut KmclChannel, index: u16)>;
/// `EvtVmbChannelProcessingComplete`.
pub type EvtProcessingComplete =
    Option<unsafe extern "C" fn(channel: *mut KmclChannel, packets: u32)>;
/// `EvtVmbPacketCompletionRoutine`.
pub type EvtPacketCompletion = Option<
    unsafe extern "C" fn(
        packet: *mut KmclPacket,
        status: c_int,
        buffer: *const c_void,
        length: u32,
    ),
>;
/// `EvtVmbChannelSavePacket`.
pub type EvtSavePacket = Option<
    unsafe extern "C" fn(
        channel: *mut KmclChannel,
        packet: *mut KmclIncoming,
        buffer: *mut c_void,
        size: u32,
        needed: *mut u32,
    ) -> c_int,
>;
/// `EvtVmbChannelRestorePacket`.
pub type EvtRestorePacket = Option<
    unsafe extern "C" fn(
        channel: *mut KmclChannel,
        lib_buffer: *const c_void,
        lib_size: u32,
        buffer: *const c_void,
        size: u32,
    ) -> c_int,
>;

/// `VMB_CHANNEL_STATE_CHANGE_CALLBACKS_VERSION` of this layout.
pub const STATE_CALLBACKS_VERSION: u32 = 1;

/// `VMB_CHANNEL_STATE_CHANGE_CALLBACKS` (C `struct kmcl_state_callbacks`).
///
/// ```no_run
/// # unsafe extern "C" fn opened(_channel: *mut kmcl::abi::KmclChannel) -> core::ffi::c_int {
/// #     0
/// # }
/// # fn example() {
/// let mut callbacks = kmcl::abi::StateCallbacks::new();
/// callbacks.opened = Some(opened);
/// # }
/// ```
#[repr(C)]
#[derive(Clone, Copy)]
#[doc(alias = "VMB_CHANNEL_STATE_CHANGE_CALLBACKS")]
pub struct StateCallbacks {
    /// [`STATE_CALLBACKS_VERSION`].
    pub version: u32,
    /// `size_of::<StateCallbacks>()`.
    pub size: u32,
    /// `EvtChannelOpened`.
    pub opened: EvtOpened,
    /// `EvtChannelClosed`.
    pub closed: EvtState,
    /// `EvtChannelSuspend`.
    pub suspend: EvtState,
    /// `EvtChannelStarted`.
    pub started: EvtState,
    /// `EvtChannelPostStarted`.
    pub post_started: EvtState,
}

impl StateCallbacks {
    /// `VMB_CHANNEL_STATE_CHANGE_CALLBACKS_INIT`: version and size set, no
    /// callbacks.
    ///
    /// ```no_run
    /// # fn example() {
    /// let callbacks = kmcl::abi::StateCallbacks::new(); // no callbacks yet
    /// # }
    /// ```
    #[doc(alias = "VMB_CHANNEL_STATE_CHANGE_CALLBACKS_INIT")]
    pub const fn new() -> Self {
        Self {
            version: STATE_CALLBACKS_VERSION,
            size: core::mem::size_of::<Self>() as u32,
            opened: None,
            closed: None,
            suspend: None,
            started: None,
            post_started: None,
        }
    }
}

impl Default for StateCallbacks {
    fn default() -> Self {
        Self::new()
    }
}

/// Which interface `kmcl_query_interface` returns.
pub const CLIENT_INTERFACE: u32 = 1;
/// The server interface: the client table followed by the server-only one.
pub const SERVER_INTERFACE: u32 = 2;
/// KMCL's interface version 1.
pub const INTERFACE_VERSION_1: u32 = 1;
/// kmcl's version 2: version 1's tables as a prefix, then
/// [`V2Methods`].
pub const INTERFACE_VERSION_2: u32 = 2;

/// Declares the function types, the exported functions and the compile-time
/// checks that tie them together, from one list.
macro_rules! kmcl_functions {
    ($($(#[$m:meta])* $fn_type:ident = $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;)*) => {
        $(
            $(#[$m])*
            pub type $fn_type = unsafe extern "C" fn($($arg: $ty),*) $(-> $ret)?;
        )*
        extern "C" {
            $(
                $(#[$m])*
                pub fn $name($($arg: $ty),*) $(-> $ret)?;
            )*
        }
        $(
            const _: $fn_type = $name;
        )*
    };
}

kmcl_functions! {
    /// `VmbChannelAllocate`.
    FnChannelAllocate = kmcl_channel_allocate(owner: *mut Module, is_server: bool,
        channel: *mut *mut KmclChannel) -> c_int;
    /// `VmbChannelCleanup`.
    FnChannelCleanup = kmcl_channel_cleanup(channel: *mut KmclChannel);
    /// `VmbChannelCreateGpadlFromBuffer`.
    FnChannelCreateGpadlFromBuffer = kmcl_channel_create_gpadl_from_buffer(
        channel: *mut KmclChannel, flags: u32, buffer: *mut c_void, length: u32,
        gpadl: *mut u32) -> c_int;
    /// `VmbChannelCreateGpadlFromMdl`.
    FnChannelCreateGpadlFromMdl = kmcl_channel_create_gpadl_from_mdl(
        channel: *mut KmclChannel, flags: u32, mdl: *const KmclMdl, offset: u32, length: u32,
        gpadl: *mut u32) -> c_int;
    /// `VmbChannelDeleteGpadl`.
    FnChannelDeleteGpadl = kmcl_channel_delete_gpadl(channel: *mut KmclChannel,
        gpadl: u32) -> c_int;
    /// `VmbChannelDisable`.
    FnChannelDisable = kmcl_channel_disable(channel: *mut KmclChannel) -> c_int;
    /// `VmbChannelEnable`.
    FnChannelEnable = kmcl_channel_enable(channel: *mut KmclChannel) -> c_int;
    /// `VmbChannelGetInterfaceInstance`.
    FnChannelGetInterfaceInstance = kmcl_channel_get_interface_instance(
        channel: *mut KmclChannel, instance: *mut Guid);
    /// `VmbChannelGetMmioSpace`.
    FnChannelGetMmioSpace = kmcl_channel_get_mmio_space(channel: *mut KmclChannel,
        address: *mut *mut c_void, size: *mut u64) -> c_int;
    /// `VmbChannelGetPointer`.
    FnChannelGetPointer = kmcl_channel_get_pointer(channel: *mut KmclChannel) -> *mut c_void;
    /// `VmbChannelInitSetClientContextSize`.
    FnChannelInitSetClientContextSize = kmcl_channel_init_set_client_context_size(
        channel: *mut KmclChannel, size: u32) -> c_int;
    /// `VmbChannelInitSetFlags`.
    FnChannelInitSetFlags = kmcl_channel_init_set_flags(channel: *mut KmclChannel,
        flags: u32) -> c_int;
    /// `VmbChannelInitSetFriendlyName`.
    FnChannelInitSetFriendlyName = kmcl_channel_init_set_friendly_name(
        channel: *mut KmclChannel, name: *const c_char) -> c_int;
    /// `VmbChannelInitSetMaximumExternalData`.
    FnChannelInitSetMaximumExternalData = kmcl_channel_init_set_maximum_external_data(
        channel: *mut KmclChannel, size: u32, chain_length: u32) -> c_int;
    /// `VmbChannelInitSetMaximumPacketSize`.
    FnChannelInitSetMaximumPacketSize = kmcl_channel_init_set_maximum_packet_size(
        channel: *mut KmclChannel, size: u32) -> c_int;
    /// `VmbChannelInitSetProcessPacketCallbacks`.
    FnChannelInitSetProcessPacketCallbacks = kmcl_channel_init_set_process_packet_callbacks(
        channel: *mut KmclChannel, process_packet: EvtProcessPacket,
        processing_complete: EvtProcessingComplete) -> c_int;
    /// `VmbChannelInitSetStateChangeCallbacks`.
    FnChannelInitSetStateChangeCallbacks = kmcl_channel_init_set_state_change_callbacks(
        channel: *mut KmclChannel, callbacks: *const StateCallbacks) -> c_int;
    /// `VmbChannelPacketComplete`.
    FnChannelPacketComplete = kmcl_channel_packet_complete(packet: *mut KmclIncoming,
        buffer: *const c_void, length: u32) -> c_int;
    /// `VmbChannelPacketDeferToPassive`.
    FnChannelPacketDeferToPassive = kmcl_channel_packet_defer_to_passive(
        packet: *mut KmclIncoming);
    /// `VmbChannelPacketFail`.
    FnChannelPacketFail = kmcl_channel_packet_fail(packet: *mut KmclIncoming);
    /// `VmbChannelPacketGetClientContext` (KMCL V2).
    FnChannelPacketGetClientContext = kmcl_channel_packet_get_client_context(
        packet: *mut KmclIncoming, size: *mut u32) -> *mut c_void;
    /// kmcl's own: the set and ranges of a transfer-page packet.
    FnChannelPacketGetTransferPages = kmcl_channel_packet_get_transfer_pages(
        packet: *mut KmclIncoming, set_id: *mut u16, ranges: *mut *const KmclTransferRange,
        count: *mut u32) -> c_int;
    /// kmcl's own: registers a client's GPADL as a transfer-page set.
    FnChannelRegisterTransferPageSet = kmcl_channel_register_transfer_page_set(
        channel: *mut KmclChannel, gpadl: u32, set_id: u16) -> c_int;
    /// kmcl's own: ends a transfer-page set.
    FnChannelUnregisterTransferPageSet = kmcl_channel_unregister_transfer_page_set(
        channel: *mut KmclChannel, set_id: u16) -> c_int;
    /// kmcl's own: external data as an array of page ranges.
    FnPacketSendWithPageBuffers = kmcl_packet_send_with_page_buffers(
        packet: *mut KmclPacket, buffer: *const c_void, length: u32,
        pb: *const KmclPageBuffer, count: u32, flags: u32) -> c_int;
    /// kmcl's own: sends ranges of the other endpoint's transfer-page set.
    FnPacketSendWithTransferPages = kmcl_packet_send_with_transfer_pages(
        packet: *mut KmclPacket, set_id: u16, ranges: *const KmclTransferRange, count: u32,
        buffer: *const c_void, length: u32, flags: u32) -> c_int;
    /// `VmbChannelPacketGetExternalData`.
    FnChannelPacketGetExternalData = kmcl_channel_packet_get_external_data(
        packet: *mut KmclIncoming, flags: u32, mdl: *mut *mut KmclMdl) -> c_int;
    /// `VmbChannelPause`.
    FnChannelPause = kmcl_channel_pause(channel: *mut KmclChannel) -> c_int;
    /// `VmbChannelSendSynchronousRequest`.
    FnChannelSendSynchronousRequest = kmcl_channel_send_synchronous_request(
        channel: *mut KmclChannel, buffer: *const c_void, length: u32, mdl: *const KmclMdl,
        flags: u32, reply: *mut c_void, reply_length: *mut u32,
        timeout_ms: *const u32) -> c_int;
    /// `VmbChannelSetIncomingProcessingAtPassive`.
    FnChannelSetIncomingProcessingAtPassive = kmcl_channel_set_incoming_processing_at_passive(
        channel: *mut KmclChannel, at_passive: bool) -> c_int;
    /// `VmbChannelSetInterruptLatency`.
    FnChannelSetInterruptLatency = kmcl_channel_set_interrupt_latency(
        channel: *mut KmclChannel, latency: u16, original: *mut u16) -> c_int;
    /// `VmbChannelSetPointer`.
    FnChannelSetPointer = kmcl_channel_set_pointer(channel: *mut KmclChannel,
        pointer: *mut c_void);
    /// `VmbChannelSetTransactionQuota`.
    FnChannelSetTransactionQuota = kmcl_channel_set_transaction_quota(
        channel: *mut KmclChannel, quota: u32) -> c_int;
    /// `VmbChannelSizeofPacket`.
    FnChannelSizeofPacket = kmcl_channel_sizeof_packet(channel: *mut KmclChannel) -> u32;
    /// `VmbChannelStart`.
    FnChannelStart = kmcl_channel_start(channel: *mut KmclChannel) -> c_int;
    /// `VmbClientChannelInitSetRingBufferPageCount`.
    FnClientChannelInitSetRingBufferPageCount =
        kmcl_client_channel_init_set_ring_buffer_page_count(channel: *mut KmclChannel,
        incoming: u32, outgoing: u32) -> c_int;
    /// `VmbClientChannelInitSetTargetPnp`.
    FnClientChannelInitSetTargetPnp = kmcl_client_channel_init_set_target_pnp(
        channel: *mut KmclChannel, interface_type: *const Guid, instance: *const Guid,
        pnp_failure: EvtPnpFailure) -> c_int;
    /// `VmbPacketAllocate`.
    FnPacketAllocate = kmcl_packet_allocate(channel: *mut KmclChannel) -> *mut KmclPacket;
    /// `VmbPacketFree`.
    FnPacketFree = kmcl_packet_free(packet: *mut KmclPacket);
    /// `VmbPacketGetChannel`.
    FnPacketGetChannel = kmcl_packet_get_channel(packet: *mut KmclPacket) -> *mut KmclChannel;
    /// `VmbPacketGetPointer`.
    FnPacketGetPointer = kmcl_packet_get_pointer(packet: *mut KmclPacket) -> *mut c_void;
    /// `VmbPacketInitialize`.
    FnPacketInitialize = kmcl_packet_initialize(channel: *mut KmclChannel,
        buffer: *mut c_void, size: u32, packet: *mut *mut KmclPacket) -> c_int;
    /// `VmbPacketSend`.
    FnPacketSend = kmcl_packet_send(packet: *mut KmclPacket, buffer: *const c_void,
        length: u32, mdl: *const KmclMdl, flags: u32) -> c_int;
    /// kmcl's own: an in-band packet without a packet object, a completion
    /// request or a routine.
    FnChannelPost = kmcl_channel_post(channel: *mut KmclChannel, buffer: *const c_void,
        length: u32) -> c_int;
    /// `VmbPacketSendWithExternalMdl`.
    FnPacketSendWithExternalMdl = kmcl_packet_send_with_external_mdl(packet: *mut KmclPacket,
        buffer: *const c_void, length: u32, mdl: *const KmclMdl, mdl_offset: u32,
        mdl_length: u32, flags: u32) -> c_int;
    /// `VmbPacketSendWithExternalPfns`.
    FnPacketSendWithExternalPfns = kmcl_packet_send_with_external_pfns(
        packet: *mut KmclPacket, buffer: *const c_void, length: u32, pfns: *const u64,
        pfn_count: u32, flags: u32) -> c_int;
    /// `VmbPacketSetCompletionRoutine`.
    FnPacketSetCompletionRoutine = kmcl_packet_set_completion_routine(
        packet: *mut KmclPacket, routine: EvtPacketCompletion);
    /// `VmbPacketSetPointer`.
    FnPacketSetPointer = kmcl_packet_set_pointer(packet: *mut KmclPacket,
        pointer: *mut c_void);
    /// `VmbChannelMapGpadl`.
    FnChannelMapGpadl = kmcl_channel_map_gpadl(channel: *mut KmclChannel, flags: u32,
        gpadl: u32, mdl: *mut *mut KmclMdl) -> c_int;
    /// `VmbChannelRestoreFromBuffer`.
    FnChannelRestoreFromBuffer = kmcl_channel_restore_from_buffer(channel: *mut KmclChannel,
        buffer: *const c_void, size: u32) -> c_int;
    /// `VmbChannelSaveBegin`.
    FnChannelSaveBegin = kmcl_channel_save_begin(channel: *mut KmclChannel) -> c_int;
    /// `VmbChannelSaveContinue`.
    FnChannelSaveContinue = kmcl_channel_save_continue(channel: *mut KmclChannel,
        buffer: *mut c_void, size: u32, filled: *mut u32, required: *mut u32) -> c_int;
    /// `VmbChannelSaveEnd`.
    FnChannelSaveEnd = kmcl_channel_save_end(channel: *mut KmclChannel);
    /// `VmbChannelUnmapGpadl`.
    FnChannelUnmapGpadl = kmcl_channel_unmap_gpadl(channel: *mut KmclChannel,
        gpadl: u32) -> c_int;
    /// `VmbConvertVmbusHandleToKernelHandle`.
    FnConvertVmbusHandleToKernelHandle = kmcl_convert_vmbus_handle_to_kernel_handle(
        handle: u64, kernel_handle: *mut *mut c_void) -> c_int;
    /// `VmbPacketRestore`.
    FnPacketRestore = kmcl_packet_restore(packet: *mut KmclPacket, buffer: *const c_void,
        size: u32) -> c_int;
    /// `VmbServerChannelInitSetFlags`.
    FnServerChannelInitSetFlags = kmcl_server_channel_init_set_flags(
        channel: *mut KmclChannel, flags: u32) -> c_int;
    /// `VmbServerChannelInitSetMmioMegabytes`.
    FnServerChannelInitSetMmioMegabytes = kmcl_server_channel_init_set_mmio_megabytes(
        channel: *mut KmclChannel, megabytes: u16, optional_megabytes: u16) -> c_int;
    /// `VmbServerChannelInitSetSaveRestorePacketCallbacks`.
    FnServerChannelInitSetSaveRestorePacketCallbacks =
        kmcl_server_channel_init_set_save_restore_packet_callbacks(channel: *mut KmclChannel,
        save: EvtSavePacket, restore: EvtRestorePacket) -> c_int;
    /// `VmbServerChannelInitSetTargetInterfaceId`.
    FnServerChannelInitSetTargetInterfaceId = kmcl_server_channel_init_set_target_interface_id(
        channel: *mut KmclChannel, interface_type: *const Guid,
        instance: *const Guid) -> c_int;
    /// `VmbServerChannelInitSetTargetVtl`.
    FnServerChannelInitSetTargetVtl = kmcl_server_channel_init_set_target_vtl(
        channel: *mut KmclChannel, vtl: u8) -> c_int;
    /// `VmbServerChannelInitSetVmbusHandle`.
    FnServerChannelInitSetVmbusHandle = kmcl_server_channel_init_set_vmbus_handle(
        channel: *mut KmclChannel, handle: *mut c_void) -> c_int;
    /// The interface query (KMCL: `WdfFdoQueryForInterface` with
    /// `KMCL_CLIENT_INTERFACE_TYPE` or `KMCL_SERVER_INTERFACE_TYPE`).
    FnQueryInterface = kmcl_query_interface(kind: u32, size: u32, version: u32,
        interface: *mut c_void) -> c_int;
    /// kmcl's own: the incoming packet `kmcl_packet_restore` made.
    FnPacketRestored = kmcl_packet_restored(packet: *mut KmclPacket) -> *mut KmclIncoming;
    /// kmcl's own: keeps a copy of a buffer under a key.
    FnStashPut = kmcl_stash_put(key: *const Guid, buffer: *const c_void, len: u32) -> c_int;
    /// kmcl's own: takes back what is kept under a key.
    FnStashTake = kmcl_stash_take(key: *const Guid, buffer: *mut c_void, size: u32,
        len: *mut u32) -> c_int;
    /// kmcl's own: a new independent loopback bus, named by `*handle`.
    FnLoopbackVmbusCreate = kmcl_loopback_vmbus_create(handle: *mut u64) -> c_int;
    /// kmcl's own: forgets a loopback bus from `kmcl_loopback_vmbus_create`.
    FnLoopbackVmbusDestroy = kmcl_loopback_vmbus_destroy(handle: u64) -> c_int;
    /// kmcl's own: the guest physical range of the MMIO space (KMCL's
    /// physical `MmioAddress`).
    FnChannelGetMmioPhysical = kmcl_channel_get_mmio_physical(channel: *mut KmclChannel,
        start: *mut u64, size: *mut u64) -> c_int;
    /// kmcl's own: which VMBus a client looks for its offer on
    /// (`TRANSPORT_*`).
    FnClientChannelInitSetTransport = kmcl_client_channel_init_set_transport(
        channel: *mut KmclChannel, transport: u32) -> c_int;
    /// `VmbChannelInitSetPrimaryChannel` (KMCL V5).
    FnChannelInitSetPrimaryChannel = kmcl_channel_init_set_primary_channel(
        channel: *mut KmclChannel, primary: *mut KmclChannel) -> c_int;
    /// kmcl's own: the sub-channel callback of a client primary channel.
    FnChannelInitSetSubchannelCallback = kmcl_channel_init_set_subchannel_callback(
        channel: *mut KmclChannel, cb: EvtSubchannelOffered) -> c_int;
    /// kmcl's own: the sub-channel index of a connected channel.
    FnChannelGetSubchannelIndex = kmcl_channel_get_subchannel_index(
        channel: *mut KmclChannel) -> c_int;
    /// `VmbClientChannelInitSetTargetProcessorIndex` (kmcl: servers too).
    FnChannelInitSetTargetProcessor = kmcl_channel_init_set_target_processor(
        channel: *mut KmclChannel, processor: u32) -> c_int;
}

/// `KMCL_CLIENT_INTERFACE_V1` (C `struct kmcl_client_interface_v1`), in
/// KMCL's field order. Each field is the function of the same name.
///
/// ```no_run
/// # fn example() -> Result {
/// let mut table = core::mem::MaybeUninit::<kmcl::abi::ClientInterfaceV1>::zeroed();
/// let size = core::mem::size_of::<kmcl::abi::ClientInterfaceV1>() as u32;
/// // SAFETY: `table` is writable for `size` bytes.
/// kernel::error::to_result(unsafe {
///     kmcl::abi::kmcl_query_interface(kmcl::abi::CLIENT_INTERFACE, size, kmcl::abi::INTERFACE_VERSION_1, table.as_mut_ptr().cast())
/// })?;
/// // SAFETY: filled by kmcl_query_interface.
/// let table = unsafe { table.assume_init() };
/// # Ok(())
/// # }
/// ```
#[repr(C)]
#[allow(
    missing_docs,
    reason = "each field is the exported function of the same name, documented in kmcl.h"
)]
#[derive(Clone, Copy)]
#[doc(alias = "KMCL_CLIENT_INTERFACE_V1")]
pub struct ClientInterfaceV1 {
    /// `size_of` the whole interface asked for.
    pub size: u32,
    /// [`INTERFACE_VERSION_1`].
    pub version: u32,
    pub channel_allocate: FnChannelAllocate,
    pub channel_cleanup: FnChannelCleanup,
    pub channel_create_gpadl_from_buffer: FnChannelCreateGpadlFromBuffer,
    pub channel_create_gpadl_from_mdl: FnChannelCreateGpadlFromMdl,
    pub channel_delete_gpadl: FnChannelDeleteGpadl,
    pub channel_disable: FnChannelDisable,
    pub channel_enable: FnChannelEnable,
    pub channel_get_interface_instance: FnChannelGetInterfaceInstance,
    pub channel_get_mmio_space: FnChannelGetMmioSpace,
    pub channel_get_pointer: FnChannelGetPointer,
    pub channel_init_set_client_context_size: FnChannelInitSetClientContextSize,
    pub channel_init_set_flags: FnChannelInitSetFlags,
    pub channel_init_set_friendly_name: FnChannelInitSetFriendlyName,
    pub channel_init_set_maximum_external_data: FnChannelInitSetMaximumExternalData,
    pub channel_init_set_maximum_packet_size: FnChannelInitSetMaximumPacketSize,
    pub channel_init_set_process_packet_callbacks: FnChannelInitSetProcessPacketCallbacks,
    pub channel_init_set_state_change_callbacks: FnChannelInitSetStateChangeCallbacks,
    pub channel_packet_complete: FnChannelPacketComplete,
    pub channel_packet_defer_to_passive: FnChannelPacketDeferToPassive,
    pub channel_packet_fail: FnChannelPacketFail,
    pub channel_packet_get_external_data: FnChannelPacketGetExternalData,
    pub channel_pause: FnChannelPause,
    pub channel_send_synchronous_request: FnChannelSendSynchronousRequest,
    pub channel_set_incoming_processing_at_passive: FnChannelSetIncomingProcessingAtPassive,
    pub channel_set_interrupt_latency: FnChannelSetInterruptLatency,
    pub channel_set_pointer: FnChannelSetPointer,
    pub channel_set_transaction_quota: FnChannelSetTransactionQuota,
    pub channel_sizeof_packet: FnChannelSizeofPacket,
    pub channel_start: FnChannelStart,
    pub client_channel_init_set_ring_buffer_page_count: FnClientChannelInitSetRingBufferPageCount,
    pub client_channel_init_set_target_pnp: FnClientChannelInitSetTargetPnp,
    pub packet_allocate: FnPacketAllocate,
    pub packet_free: FnPacketFree,
    pub packet_get_channel: FnPacketGetChannel,
    pub packet_get_pointer: FnPacketGetPointer,
    pub packet_initialize: FnPacketInitialize,
    pub packet_send: FnPacketSend,
    pub packet_send_with_external_mdl: FnPacketSendWithExternalMdl,
    pub packet_send_with_external_pfns: FnPacketSendWithExternalPfns,
    pub packet_set_completion_routine: FnPacketSetCompletionRoutine,
    pub packet_set_pointer: FnPacketSetPointer,
}

/// `KMCL_SERVER_ONLY_METHODS` (C `struct kmcl_server_only_methods`), in
/// KMCL's field order. Each field is the function of the same name.
///
/// ```no_run
/// # fn example() -> Result {
/// let mut table = core::mem::MaybeUninit::<kmcl::abi::ServerInterfaceV1>::zeroed();
/// let size = core::mem::size_of::<kmcl::abi::ServerInterfaceV1>() as u32;
/// // SAFETY: `table` is writable for `size` bytes.
/// kernel::error::to_result(unsafe {
///     kmcl::abi::kmcl_query_interface(kmcl::abi::SERVER_INTERFACE, size, kmcl::abi::INTERFACE_VERSION_1, table.as_mut_ptr().cast())
/// })?;
/// // SAFETY: filled by kmcl_query_interface.
/// let table = unsafe { table.assume_init() };
/// # Ok(())
/// # }
/// ```
#[repr(C)]
#[allow(
    missing_docs,
    reason = "each field is the exported function of the same name, documented in kmcl.h"
)]
#[derive(Clone, Copy)]
#[doc(alias = "KMCL_SERVER_ONLY_METHODS")]
pub struct ServerOnlyMethods {
    pub channel_map_gpadl: FnChannelMapGpadl,
    pub channel_restore_from_buffer: FnChannelRestoreFromBuffer,
    pub channel_save_begin: FnChannelSaveBegin,
    pub channel_save_continue: FnChannelSaveContinue,
    pub channel_save_end: FnChannelSaveEnd,
    pub channel_unmap_gpadl: FnChannelUnmapGpadl,
    pub convert_vmbus_handle_to_kernel_handle: FnConvertVmbusHandleToKernelHandle,
    pub packet_restore: FnPacketRestore,
    pub server_channel_init_set_flags: FnServerChannelInitSetFlags,
    pub server_channel_init_set_mmio_megabytes: FnServerChannelInitSetMmioMegabytes,
    pub server_channel_init_set_save_restore_packet_callbacks:
        FnServerChannelInitSetSaveRestorePacketCallbacks,
    pub server_channel_init_set_target_interface_id: FnServerChannelInitSetTargetInterfaceId,
    pub server_channel_init_set_target_vtl: FnServerChannelInitSetTargetVtl,
    pub server_channel_init_set_vmbus_handle: FnServerChannelInitSetVmbusHandle,
}

/// The server interface (C `struct kmcl_server_interface_v1`): the client
/// table, then the server-only methods.
///
/// ```no_run
/// # fn example() -> Result {
/// let mut table = core::mem::MaybeUninit::<kmcl::abi::ServerInterfaceV1>::zeroed();
/// let size = core::mem::size_of::<kmcl::abi::ServerInterfaceV1>() as u32;
/// // SAFETY: `table` is writable for `size` bytes.
/// kernel::error::to_result(unsafe {
///     kmcl::abi::kmcl_query_interface(kmcl::abi::SERVER_INTERFACE, size, kmcl::abi::INTERFACE_VERSION_1, table.as_mut_ptr().cast())
/// })?;
/// // SAFETY: filled by kmcl_query_interface.
/// let table = unsafe { table.assume_init() };
/// # Ok(())
/// # }
/// ```
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ServerInterfaceV1 {
    /// Every client function.
    pub client: ClientInterfaceV1,
    /// The server-only functions.
    pub server: ServerOnlyMethods,
}

/// What version 2 of kmcl's tables adds (C `struct kmcl_v2_methods`), in
/// the header's order. Each field is the function of the same name.
///
/// ```no_run
/// # fn example() -> Result {
/// let mut table = core::mem::MaybeUninit::<kmcl::abi::ClientInterfaceV2>::zeroed();
/// let size = core::mem::size_of::<kmcl::abi::ClientInterfaceV2>() as u32;
/// // SAFETY: `table` is writable for `size` bytes.
/// kernel::error::to_result(unsafe {
///     kmcl::abi::kmcl_query_interface(kmcl::abi::CLIENT_INTERFACE, size, kmcl::abi::INTERFACE_VERSION_2, table.as_mut_ptr().cast())
/// })?;
/// // SAFETY: filled by kmcl_query_interface.
/// let table = unsafe { table.assume_init() };
/// # Ok(())
/// # }
/// ```
#[repr(C)]
#[allow(
    missing_docs,
    reason = "each field is the exported function of the same name, documented in kmcl.h"
)]
#[derive(Clone, Copy)]
pub struct V2Methods {
    pub channel_packet_get_client_context: FnChannelPacketGetClientContext,
    pub channel_init_set_target_processor: FnChannelInitSetTargetProcessor,
    pub channel_init_set_primary_channel: FnChannelInitSetPrimaryChannel,
    pub client_channel_init_set_transport: FnClientChannelInitSetTransport,
    pub channel_init_set_subchannel_callback: FnChannelInitSetSubchannelCallback,
    pub channel_get_subchannel_index: FnChannelGetSubchannelIndex,
    pub channel_register_transfer_page_set: FnChannelRegisterTransferPageSet,
    pub channel_unregister_transfer_page_set: FnChannelUnregisterTransferPageSet,
    pub channel_packet_get_transfer_pages: FnChannelPacketGetTransferPages,
    pub packet_send_with_page_buffers: FnPacketSendWithPageBuffers,
    pub packet_send_with_transfer_pages: FnPacketSendWithTransferPages,
    pub stash_put: FnStashPut,
    pub stash_take: FnStashTake,
    pub loopback_vmbus_create: FnLoopbackVmbusCreate,
    pub loopback_vmbus_destroy: FnLoopbackVmbusDestroy,
    pub channel_get_mmio_physical: FnChannelGetMmioPhysical,
}

/// The client table, version 2 (C `struct kmcl_client_interface_v2`).
///
/// ```no_run
/// # fn example() -> Result {
/// let mut table = core::mem::MaybeUninit::<kmcl::abi::ClientInterfaceV2>::zeroed();
/// let size = core::mem::size_of::<kmcl::abi::ClientInterfaceV2>() as u32;
/// // SAFETY: `table` is writable for `size` bytes.
/// kernel::error::to_result(unsafe {
///     kmcl::abi::kmcl_query_interface(kmcl::abi::CLIENT_INTERFACE, size, kmcl::abi::INTERFACE_VERSION_2, table.as_mut_ptr().cast())
/// })?;
/// // SAFETY: filled by kmcl_query_interface.
/// let table = unsafe { table.assume_init() };
/// # Ok(())
/// # }
/// ```
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ClientInterfaceV2 {
    /// Version 1's table, unchanged (its `size` is this table's, its
    /// `version` [`INTERFACE_VERSION_2`]).
    pub v1: ClientInterfaceV1,
    /// The additions.
    pub v2: V2Methods,
}

/// The server table, version 2 (C `struct kmcl_server_interface_v2`).
///
/// ```no_run
/// # fn example() -> Result {
/// let mut table = core::mem::MaybeUninit::<kmcl::abi::ServerInterfaceV2>::zeroed();
/// let size = core::mem::size_of::<kmcl::abi::ServerInterfaceV2>() as u32;
/// // SAFETY: `table` is writable for `size` bytes.
/// kernel::error::to_result(unsafe {
///     kmcl::abi::kmcl_query_interface(kmcl::abi::SERVER_INTERFACE, size, kmcl::abi::INTERFACE_VERSION_2, table.as_mut_ptr().cast())
/// })?;
/// // SAFETY: filled by kmcl_query_interface.
/// let table = unsafe { table.assume_init() };
/// # Ok(())
/// # }
/// ```
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ServerInterfaceV2 {
    /// Version 1's server table, unchanged.
    pub v1: ServerInterfaceV1,
    /// The additions.
    pub v2: V2Methods,
    /// `kmcl_packet_restored`.
    pub packet_restored: FnPacketRestored,
}

/// `VMBUS_CHANNEL_GPADL_FLAG_READ_ONLY`: a GPADL the server may only map
/// for reading (create), or a read-only mapping (map).
pub const GPADL_FLAG_READ_ONLY: u32 = 0x1;
/// `VMBUS_CHANNEL_FORMAT_FLAG_WAIT_FOR_COMPLETION`.
pub const FORMAT_FLAG_WAIT_FOR_COMPLETION: u32 = 0x1;
/// `VMBUS_CHANNEL_FORMAT_FLAG_FORCE_MDL_LENGTH`.
pub const FORMAT_FLAG_FORCE_MDL_LENGTH: u32 = 0x2;
/// `VMBUS_CHANNEL_FORMAT_FLAG_PAGED_BUFFER`.
pub const FORMAT_FLAG_PAGED_BUFFER: u32 = 0x4;
/// `VMBUS_CHANNEL_PROCESS_PACKET_FLAG_EXTERNAL_DATA`.
pub const PROCESS_PACKET_FLAG_EXTERNAL_DATA: u32 = 0x1;
/// `KMCL_PROCESS_PACKET_FLAG_TRANSFER_PAGES` (kmcl's own): the packet names
/// ranges of a transfer-page set.
pub const PROCESS_PACKET_FLAG_TRANSFER_PAGES: u32 = 0x10000;
/// `VMBUS_CHANNEL_PACKET_EXTERNAL_DATA_FLAG_READ_ONLY`.
pub const EXTERNAL_DATA_FLAG_READ_ONLY: u32 = 0x1;
/// `KMCL_TRANSPORT_AUTO`: the loopback bus if a server offers the
/// interface there at Enable or no VMBus host exists, else the host.
pub const TRANSPORT_AUTO: u32 = 0;
/// `KMCL_TRANSPORT_LOOPBACK`: kmcl's loopback VMBus only.
pub const TRANSPORT_LOOPBACK: u32 = 1;
/// `KMCL_TRANSPORT_HOST`: the VMBus host (Hyper-V) only, via hv_vmbus.
pub const TRANSPORT_HOST: u32 = 2;
/// `KMCL_TARGET_PROCESSOR_NONE`: a channel's packets are delivered on the
/// CPU the other endpoint signalled from (the default).
pub const TARGET_PROCESSOR_NONE: u32 = 0xffff_ffff;

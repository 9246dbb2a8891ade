// SPDX-License-Identifier: GPL-2.0

//! kmcl client channels on VMBus host devices, without a hypervisor: the
//! transport's binding (probe/remove, type and instance matching, several
//! clients), open/close, PnpFailure, and the data path on hv_vmbus-mapped
//! rings, with hv_vmbus's own `vmbus_sendpacket()`/`hv_pkt_iter_*()` as the
//! host and `vmbus_setevent()` as kmcl's signal.
//!
//! The devices are made up (`kmcl_hvi_device_new()` in `hv_interop.c`):
//! each has a made-up channel whose rings are mapped as hv_vmbus maps them,
//! and the "host" is a second made-up channel over the same two rings the
//! other way round. A stand-in [`HostOps`] does what `vmbus_open()` and
//! `vmbus_close()` do for kmcl once a host answered (set and clear the
//! channel callback); only those two and driver registration are not the
//! real functions.

use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicI32,
    AtomicU32,
    Ordering, //
};

use kernel::{
    prelude::*,
    sync::{new_mutex, new_spinlock_irq, Arc, Mutex, SpinLockIrq},
    time::{delay::fsleep, Delta},
};

use super::interop::LinuxChannel;
use crate::engine::channel::{
    Channel,
    Transport, //
};
use crate::engine::channel::{
    PacketCallbacks,
    StateCallbacks, //
};
use crate::engine::datapath::{
    IncomingPacket,
    SendCompletion,
    PEER_STALL_MS, //
};
use crate::engine::testing::{
    wait_for,
    wait_until,
    Keeper,
    Letters,
    Negotiator, //
};
use crate::engine::types::RingPageCounts;
use crate::engine::types::{
    Guid,
    MmioSpace, //
};
use crate::protocol::{
    gpa,
    lifecycle::Role,
    packet::{Descriptor, PacketType, DESCRIPTOR_SIZE},
    ring::{RingMemory, FEATURE_BITS, FEATURE_PENDING_SEND_SIZE, WRITE_INDEX},
};
use crate::shmem::{
    External,
    GpadlPages,
    RingPages, //
};
use crate::transport::hyperv::{
    Device,
    HostBus,
    HostChannel,
    HostLink,
    HostOps,
    HostRings, //
};
use crate::transport::loopback::LoopbackBus;

mod ffi {
    use super::Guid;
    use core::ffi::c_void;

    extern "C" {
        pub(super) fn kmcl_hvi_device_new(
            ch: *mut c_void,
            ty: *const Guid,
            inst: *const Guid,
        ) -> *mut c_void;
        pub(super) fn kmcl_hvi_device_free(dev: *mut c_void);
        pub(super) fn kmcl_hvi_bounces(dev: *mut c_void) -> bool;
        pub(super) fn kmcl_hvi_make_subchannel(sc: *mut c_void, primary: *mut c_void, index: u16);
        pub(super) fn kmcl_hvi_rescind(ch: *mut c_void);
        pub(super) fn kmcl_hvi_low_latency(ch: *mut c_void) -> bool;
        pub(super) fn kmcl_hvi_attach(
            ch: *mut c_void,
            link: *const c_void,
            rings: *mut crate::transport::hyperv::vmbus::ffi::Rings,
        );
        pub(super) fn kmcl_hvi_detach(ch: *mut c_void);
        pub(super) fn kmcl_hvi_interrupt(ch: *mut c_void);
    }
}

/// `VM_PKT_DATA_INBAND` and `VM_PKT_COMP`.
const INBAND: u16 = 6;
const COMP: u16 = 11;
/// `VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED`.
const COMPLETION_REQUESTED: u32 = 1;

const TYPE: Guid = [0x5a; 16];
/// Where the stand-in host says its offers' MMIO space is.
const MMIO_START: u64 = 0xf800_0000;
const OTHER: Guid = [0x6b; 16];

/// A made-up device: the guest's channel (kmcl's), the host's view of the
/// same rings, and the `struct hv_device`. A made-up sub-channel is one
/// too, whose `struct hv_device` goes unused (hv_vmbus gives sub-channels
/// none).
///
/// # Invariants
///
/// `dev` is from `kmcl_hvi_device_new` over `guest`, freed on drop.
struct FakeDevice {
    dev: NonNull<c_void>,
    guest: LinuxChannel,
    host: LinuxChannel,
    /// The ring the host writes (for packets hv_vmbus has no call for).
    h2g: Arc<RingPages>,
    ty: Guid,
    instance: Guid,
}

// SAFETY: the device is only passed to hv_vmbus-style functions that may
// run on any thread; the channels are made for it.
unsafe impl Send for FakeDevice {}
// SAFETY: as above.
unsafe impl Sync for FakeDevice {}

impl FakeDevice {
    fn new(ty: Guid, instance: Guid) -> Result<Arc<Self>> {
        // Host to guest, and guest to host, 4 data pages each.
        let h2g = Arc::new(RingPages::new(4)?, GFP_KERNEL)?;
        let g2h = Arc::new(RingPages::new(4)?, GFP_KERNEL)?;
        // hv_ringbuffer_init() announces pending-send-size support.
        for r in [&h2g, &g2h] {
            r.control()[FEATURE_BITS].store(FEATURE_PENDING_SEND_SIZE, Ordering::SeqCst);
        }
        let guest = LinuxChannel::new(h2g.clone(), g2h.clone())?;
        let host = LinuxChannel::new(g2h, h2g.clone())?;
        // SAFETY: `guest` is a live made-up channel, kept with the device;
        // the GUIDs are read during the call.
        let dev = unsafe { ffi::kmcl_hvi_device_new(guest.raw(), &ty, &instance) };
        let dev = NonNull::new(dev).ok_or(ENOMEM)?;
        Ok(Arc::new(
            FakeDevice {
                dev,
                guest,
                host,
                h2g,
                ty,
                instance,
            },
            GFP_KERNEL,
        )?)
    }

    /// Made-up sub-channel `index` of `primary`'s channel.
    fn subchannel(primary: &FakeDevice, index: u16) -> Result<Arc<Self>> {
        let sc = Self::new(primary.ty, primary.instance)?;
        // SAFETY: both channels are live made-up channels.
        unsafe { ffi::kmcl_hvi_make_subchannel(sc.guest.raw(), primary.guest.raw(), index) };
        Ok(sc)
    }

    fn device(&self) -> Device {
        Device(self.dev)
    }

    /// The guest's channel (kmcl's).
    fn channel(&self) -> HostChannel {
        // The made-up channel exists (`LinuxChannel::new` succeeded).
        HostChannel(NonNull::new(self.guest.raw()).expect("a made-up channel"))
    }

    /// Whether the channel signals the host directly (`low_latency`).
    fn low_latency(&self) -> bool {
        // SAFETY: a live made-up channel.
        unsafe { ffi::kmcl_hvi_low_latency(self.guest.raw()) }
    }

    /// The host rescinds this channel (as hv_vmbus marks a sub-channel).
    fn rescind(&self) {
        // SAFETY: a live made-up channel.
        unsafe { ffi::kmcl_hvi_rescind(self.guest.raw()) }
    }

    /// The host writes `pkt` (descriptor onwards, a multiple of 8 bytes)
    /// and its trailer at the write index of the ring to the guest, as
    /// Hyper-V's VSPs write packets Linux guests never send (a
    /// transfer-page packet). The ring must have room before its end.
    fn host_write_raw(&self, pkt: &[u8]) -> Result {
        let w = self.h2g.control()[WRITE_INDEX].load(Ordering::SeqCst);
        let mut all = KVec::with_capacity(pkt.len() + 8, GFP_KERNEL)?;
        all.extend_from_slice(pkt, GFP_KERNEL)?;
        all.extend_from_slice(&(u64::from(w) << 32).to_le_bytes(), GFP_KERNEL)?;
        if w as usize + all.len() > self.h2g.data_len() || pkt.len() % 8 != 0 {
            return Err(EINVAL);
        }
        self.h2g.write_data(w as usize, &all);
        self.h2g.control()[WRITE_INDEX].store(w + all.len() as u32, Ordering::SeqCst);
        Ok(())
    }

    /// Whether the DMA API bounces every mapping of the device (the VM
    /// booted with `swiotlb=force`, as `make check` boots it).
    fn bounces(&self) -> bool {
        // SAFETY: a live made-up device.
        unsafe { ffi::kmcl_hvi_bounces(self.dev.as_ptr()) }
    }

    /// The host's channel interrupt for the guest.
    fn interrupt(&self) {
        // SAFETY: a live made-up channel.
        unsafe { ffi::kmcl_hvi_interrupt(self.guest.raw()) }
    }
}

impl Drop for FakeDevice {
    fn drop(&mut self) {
        // SAFETY: made in `new`, freed once here.
        unsafe { ffi::kmcl_hvi_device_free(self.dev.as_ptr()) }
    }
}

/// The stand-in for hv_vmbus: its devices, and what kmcl asked of it.
#[pin_data]
struct FakeHost {
    present: bool,
    #[pin]
    devices: Mutex<KVec<Arc<FakeDevice>>>,
    /// Sub-channels offered: (primary's channel, sub-channel).
    #[pin]
    subs: Mutex<KVec<(HostChannel, Arc<FakeDevice>)>>,
    #[pin]
    watched: Mutex<KVec<Guid>>,
    /// Non-zero: `open` fails with this errno.
    fail_open: AtomicI32,
    /// An isolated VM: no guest memory by page number.
    isolated: bool,
    /// GPADLs the host has: (handle, page numbers, the bytes the host
    /// reads through those page numbers when it gets the GPADL).
    #[pin]
    gpadls: Mutex<KVec<HostGpadl>>,
    next_gpadl: AtomicU32,
    /// The offers' MMIO space (all devices share it here), and how often
    /// it was reserved and released.
    #[pin]
    mmio: Mutex<Option<KVec<u8>>>,
    mmio_allocs: AtomicU32,
    mmio_frees: AtomicU32,
    opens: AtomicU32,
    closes: AtomicU32,
    /// DMA mappings made and ended (through the real glue), and how many
    /// had ended when a channel was last closed.
    dma_maps: AtomicU32,
    dma_unmaps: AtomicU32,
    unmaps_at_close: AtomicU32,
}

impl FakeHost {
    fn new(present: bool) -> Result<Arc<Self>> {
        Self::with(present, false)
    }

    fn with(present: bool, isolated: bool) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(FakeHost {
                present,
                isolated,
                gpadls <- new_mutex!(KVec::new()),
                next_gpadl: AtomicU32::new(0x100),
                mmio <- new_mutex!(None),
                mmio_allocs: AtomicU32::new(0),
                mmio_frees: AtomicU32::new(0),
                devices <- new_mutex!(KVec::new()),
                subs <- new_mutex!(KVec::new()),
                watched <- new_mutex!(KVec::new()),
                fail_open: AtomicI32::new(0),
                opens: AtomicU32::new(0),
                closes: AtomicU32::new(0),
                dma_maps: AtomicU32::new(0),
                dma_unmaps: AtomicU32::new(0),
                unmaps_at_close: AtomicU32::new(0),
            }),
            GFP_KERNEL,
        )
    }

    /// The host offers `dev`: probed if kmcl watches its type.
    fn add(&self, bus: &HostBus, dev: &Arc<FakeDevice>) -> Result {
        self.devices.lock().push(dev.clone(), GFP_KERNEL)?;
        if self.watched.lock().contains(&dev.ty) {
            bus.probe(dev.device(), dev.channel(), dev.ty, dev.instance)?;
        }
        Ok(())
    }

    /// The host offers `sc` as a sub-channel of `dev` (whose primary
    /// channel kmcl opened): what hv_vmbus's sc-create callback does.
    fn offer_subchannel(
        &self,
        bus: &HostBus,
        dev: &FakeDevice,
        sc: &Arc<FakeDevice>,
        index: u16,
    ) -> Result {
        self.subs
            .lock()
            .push((dev.channel(), sc.clone()), GFP_KERNEL)?;
        bus.subchannel(dev.device(), sc.channel(), index);
        Ok(())
    }

    /// The host rescinds `dev`.
    fn rescind(&self, bus: &HostBus, dev: &Arc<FakeDevice>) {
        bus.remove(dev.device());
        self.devices.lock().retain(|d| !Arc::ptr_eq(d, dev));
    }
}

impl HostOps for FakeHost {
    fn present(&self) -> bool {
        self.present
    }

    fn watch(&self, bus: &HostBus, ty: &Guid) -> Result<usize> {
        if !self.present {
            return Err(ENODEV);
        }
        self.watched.lock().push(*ty, GFP_KERNEL)?;
        let mut of_type = KVec::new();
        for d in self.devices.lock().iter().filter(|d| d.ty == *ty) {
            of_type.push(d.clone(), GFP_KERNEL)?;
        }
        // As driver registration: existing devices are probed now.
        for d in of_type.iter() {
            bus.probe(d.device(), d.channel(), d.ty, d.instance)?;
        }
        Ok(self.watched.lock().len())
    }

    fn unwatch(&self, _token: usize) {}

    fn open(
        &self,
        ch: HostChannel,
        link: &HostLink,
        _p: RingPageCounts,
        _m: u32,
    ) -> Result<HostRings> {
        let e = self.fail_open.load(Ordering::SeqCst);
        if e != 0 {
            return Err(Error::from_errno(e));
        }
        self.opens.fetch_add(1, Ordering::SeqCst);
        let mut r = crate::transport::hyperv::vmbus::ffi::Rings {
            out: core::ptr::null_mut(),
            inc: core::ptr::null_mut(),
            out_len: 0,
            in_len: 0,
        };
        // SAFETY: `ch` is a made-up channel of this host; `link` stays
        // alive while attached (it detaches in `close`, a sub-channel's
        // once its primary closes); `r` is writable.
        unsafe { ffi::kmcl_hvi_attach(ch.0.as_ptr(), core::ptr::from_ref(link).cast(), &mut r) };
        // SAFETY: the made-up channel's rings stay mapped until the
        // device is dropped, after the test closed the channel.
        unsafe { super::vmbus::rings_of(&r) }
    }

    /// As `vmbus_close()`: a primary channel closes with its
    /// sub-channels, a sub-channel alone not at all.
    unsafe fn close(&self, ch: HostChannel) {
        let mut subs = self.subs.lock();
        if subs.iter().any(|(_, sc)| sc.channel() == ch) {
            return;
        }
        self.closes.fetch_add(1, Ordering::SeqCst);
        self.unmaps_at_close
            .store(self.dma_unmaps.load(Ordering::SeqCst), Ordering::SeqCst);
        for (_, sc) in subs.iter().filter(|(p, _)| *p == ch) {
            // SAFETY: a made-up channel of this host.
            unsafe { ffi::kmcl_hvi_detach(sc.guest.raw()) }
        }
        subs.retain(|(p, _)| *p != ch);
        // SAFETY: a made-up channel of this host.
        unsafe { ffi::kmcl_hvi_detach(ch.0.as_ptr()) }
    }

    fn signal(&self, ch: HostChannel) -> bool {
        super::vmbus::signal(ch)
    }

    fn set_low_latency(&self, ch: HostChannel, on: bool) {
        super::vmbus::set_low_latency(ch, on)
    }

    fn bounces_external(&self, _ch: HostChannel) -> bool {
        self.isolated
    }

    /// The real glue, on the made-up device (a DMA-capable `struct
    /// device`), counted.
    unsafe fn dma_map(
        &self,
        dev: Device,
        piece: (*mut crate::shmem::Page, u32, u32),
    ) -> Result<u64> {
        // SAFETY: the caller's promise (the same contract).
        let addr = unsafe { super::vmbus::dma_map(dev, piece) }?;
        self.dma_maps.fetch_add(1, Ordering::SeqCst);
        Ok(addr)
    }

    unsafe fn dma_unmap(&self, dev: Device, addr: u64, len: u32) {
        self.dma_unmaps.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the caller's promise (the same contract).
        unsafe { super::vmbus::dma_unmap(dev, addr, len) }
    }

    /// As the host does: what it gets is page numbers, and it reads the
    /// memory through them (whole pages, from the first page's start, as
    /// `vmbus_establish_gpadl()` describes it).
    fn create_gpadl(&self, _ch: HostChannel, pages: &GpadlPages) -> Result<(u32, usize)> {
        let mut pfns = KVec::new();
        for p in pages.pfns() {
            pfns.push(p, GFP_KERNEL)?;
        }
        // SAFETY: the pages stay while the GPADL exists (the caller keeps
        // them until `delete_gpadl`), and this reads them now.
        let seen = unsafe { GpadlPages::from_pfns(&pfns) }?;
        let mut bytes = KVec::from_elem(0u8, seen.len(), GFP_KERNEL)?;
        seen.read(0, &mut bytes)?;
        let handle = self.next_gpadl.fetch_add(1, Ordering::SeqCst);
        self.gpadls.lock().push((handle, pfns, bytes), GFP_KERNEL)?;
        Ok((handle, handle as usize))
    }

    /// The space stands for a range the host reserved at [`MMIO_START`].
    fn allocate_mmio(&self, _dev: Device) -> Result<Option<(MmioSpace, usize)>> {
        let m = self.mmio.lock();
        let Some(space) = m.as_ref() else {
            return Ok(None);
        };
        self.mmio_allocs.fetch_add(1, Ordering::SeqCst);
        let space = MmioSpace {
            address: space.as_ptr() as usize,
            len: space.len(),
            physical: Some(MMIO_START),
        };
        Ok(Some((space, 7)))
    }

    fn free_mmio(&self, _dev: Device, token: usize) {
        if token == 7 {
            self.mmio_frees.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn delete_gpadl(&self, _ch: HostChannel, token: usize) -> Result {
        let mut g = self.gpadls.lock();
        let i = g
            .iter()
            .position(|(h, _, _)| *h as usize == token)
            .ok_or(ENOENT)?;
        let _ = g.remove(i);
        Ok(())
    }
}

/// A GPADL as the stand-in host keeps it: (handle, page numbers, bytes
/// read through them).
type HostGpadl = (u32, KVec<u64>, KVec<u8>);

/// A client driver: its state callbacks as letters ([`Letters`]),
/// incoming packets echoed back reversed as their completion, and send
/// completions.
#[pin_data]
struct Driver {
    letters: Arc<Letters>,
    /// Filled in softirq context.
    #[pin]
    received: SpinLockIrq<KVec<(u64, KVec<u8>)>>,
    #[pin]
    completed: SpinLockIrq<KVec<(i32, KVec<u8>)>>,
    /// Transfer-page packets: (set id, ranges as (byte count, byte
    /// offset)).
    #[pin]
    transfers: SpinLockIrq<KVec<Transfer>>,
}

impl Driver {
    fn new() -> Result<Arc<Self>> {
        let letters = Letters::new(false)?;
        Arc::pin_init(
            pin_init!(Driver {
                letters,
                received <- new_spinlock_irq!(KVec::new()),
                completed <- new_spinlock_irq!(KVec::new()),
                transfers <- new_spinlock_irq!(KVec::new()),
            }),
            GFP_KERNEL,
        )
    }

    /// Whether the state callbacks so far read `expected`.
    fn is(&self, expected: &[u8]) -> bool {
        self.letters.is(expected)
    }

    /// Waits up to five seconds for `what`.
    fn wait(&self, what: impl Fn(&Self) -> bool) -> bool {
        wait_until(|| what(self))
    }
}

impl PacketCallbacks for Driver {
    fn process_packet(&self, _channel: &Arc<Channel>, packet: IncomingPacket) {
        if let Some((set, raw, _)) = packet.object().transfer_pages() {
            let mut ranges = KVec::new();
            for r in raw.chunks(8) {
                let word = |i: usize| u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
                let _ = ranges.push((word(0), word(4)), GFP_ATOMIC);
            }
            let _ = self.transfers.lock().push((set, ranges), GFP_ATOMIC);
        }
        let mut copy = KVec::new();
        let _ = copy.extend_from_slice(packet.data(), GFP_ATOMIC);
        let _ = self
            .received
            .lock()
            .push((packet.transaction_id(), copy), GFP_ATOMIC);
        // The completion carries the payload back, reversed.
        let mut back = KVec::new();
        let _ = back.extend_from_slice(packet.data(), GFP_ATOMIC);
        back.reverse();
        let _ = packet.complete(&back);
    }
}

/// A transfer-page packet as a [`Driver`] records it: (set id, ranges as
/// (byte count, byte offset)).
type Transfer = (u16, KVec<(u32, u32)>);

/// A send completion recorded in a [`Driver`].
struct Done(Arc<Driver>);

impl SendCompletion for Done {
    fn complete(&mut self, status: Result, data: &[u8]) {
        let mut copy = KVec::new();
        let _ = copy.extend_from_slice(data, GFP_ATOMIC);
        let errno = status.err().map_or(0, |e| e.to_errno());
        let _ = self.0.completed.lock().push((errno, copy), GFP_ATOMIC);
    }
}

/// A client channel of `bus` for `ty` (and `instance`: zeroes for any) on
/// the VMBus host.
fn client(bus: &Arc<LoopbackBus>, ty: Guid, instance: Guid) -> Result<(Arc<Channel>, Arc<Driver>)> {
    let drv = Driver::new()?;
    let ch = Channel::new(Role::Client, bus.clone())?;
    ch.configure(|s| {
        s.interface_type = ty;
        s.interface_instance = instance;
        s.transport = Transport::Host;
    })?;
    ch.set_state_callbacks(drv.letters.clone())?;
    ch.set_packet_callbacks(drv.clone())?;
    Ok((ch, drv))
}

/// Packet `i`'s payload.
fn payload(i: u32) -> Result<KVec<u8>> {
    let len = 1 + (i.wrapping_mul(2_654_435_761) >> 20) % 700;
    let mut v = KVec::with_capacity(len as usize, GFP_KERNEL)?;
    for j in 0..len {
        v.push((j ^ i.wrapping_mul(31)) as u8, GFP_KERNEL)?;
    }
    Ok(v)
}

/// The packets hv_vmbus's reader finds: (type, transaction id, payload).
fn host_reads(dev: &FakeDevice) -> Result<KVec<(u16, u64, KVec<u8>)>> {
    let mut out = KVec::new();
    for p in host_reads_with_headers(dev)? {
        out.push((p.0, p.1, p.3), GFP_KERNEL)?;
    }
    Ok(out)
}

/// One packet as hv_vmbus's reader finds it: (type, transaction id,
/// header (a GPA range list), payload).
type HostPacket = (u16, u64, KVec<u8>, KVec<u8>);

/// As [`host_reads`], with each packet's header.
fn host_reads_with_headers(dev: &FakeDevice) -> Result<KVec<HostPacket>> {
    let mut out = KVec::with_capacity(5 * 4096, GFP_KERNEL)?;
    let n = dev.host.recv_all(&mut out)?;
    let mut found = KVec::new();
    let mut at = 0;
    for _ in 0..n {
        let raw = out[at..].first_chunk::<DESCRIPTOR_SIZE>().ok_or(EINVAL)?;
        let len = usize::from(u16::from_le_bytes([raw[4], raw[5]])) * 8;
        // hv_vmbus copies the packet without its trailer.
        let d = Descriptor::parse(raw, len + 8).map_err(|_| EINVAL)?;
        let mut header = KVec::new();
        header.extend_from_slice(&out[at + DESCRIPTOR_SIZE..at + d.data_offset()], GFP_KERNEL)?;
        let mut body = KVec::new();
        body.extend_from_slice(&out[at + d.data_offset()..at + len], GFP_KERNEL)?;
        found.push(
            (d.packet_type() as u16, d.transaction_id(), header, body),
            GFP_KERNEL,
        )?;
        at += len;
    }
    Ok(found)
}

/// `v` padded with zeroes to a multiple of 8 bytes, as VMBus carries it
/// (a packet's length is in 8-byte units).
fn padded(mut v: KVec<u8>) -> Result<KVec<u8>> {
    while v.len() % 8 != 0 {
        v.push(0, GFP_KERNEL)?;
    }
    Ok(v)
}

/// Whether `got` is `want` followed by at most 7 bytes of zero padding
/// (hv_vmbus's reader gives the padded payload).
fn padded_eq(got: &[u8], want: &[u8]) -> bool {
    got.len() >= want.len()
        && got.len() - want.len() < 8
        && got[..want.len()] == *want
        && got[want.len()..].iter().all(|b| *b == 0)
}

/// A client primary's state callbacks: its letters, and the indexes of the
/// sub-channels the host offered it (SubchannelOffered, process context).
#[pin_data]
struct SubOffers {
    letters: Arc<Letters>,
    #[pin]
    indexes: Mutex<KVec<u16>>,
}

impl SubOffers {
    fn new(letters: Arc<Letters>) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(SubOffers {
                letters,
                indexes <- new_mutex!(KVec::new()),
            }),
            GFP_KERNEL,
        )
    }
}

impl StateCallbacks for SubOffers {
    fn opened(&self, c: &Arc<Channel>) -> Result {
        self.letters.opened(c)
    }
    fn closed(&self, c: &Arc<Channel>) {
        self.letters.closed(c)
    }
    fn suspend(&self, c: &Arc<Channel>) {
        self.letters.suspend(c)
    }
    fn started(&self, c: &Arc<Channel>) {
        self.letters.started(c)
    }
    fn post_started(&self, c: &Arc<Channel>) {
        self.letters.post_started(c)
    }
    fn pnp_failure(&self, c: &Arc<Channel>, status: Error) {
        self.letters.pnp_failure(c, status)
    }
    fn subchannel_offered(&self, primary: &Arc<Channel>, index: u16) {
        if primary.is_connected() {
            let _ = self.indexes.lock().push(index, GFP_KERNEL);
        }
    }
}

/// A client sub-channel's state callbacks: its letters, and, when it is
/// closed, the host offering one more sub-channel (as hv_vmbus's callback
/// may run late, while the primary's client is leaving).
struct OfferOnClose {
    letters: Arc<Letters>,
    host: Arc<FakeHost>,
    bus: Arc<LoopbackBus>,
    dev: Arc<FakeDevice>,
    late: Arc<FakeDevice>,
}

impl StateCallbacks for OfferOnClose {
    fn opened(&self, c: &Arc<Channel>) -> Result {
        self.letters.opened(c)
    }
    fn closed(&self, c: &Arc<Channel>) {
        self.letters.closed(c);
        let _ = self
            .host
            .offer_subchannel(self.bus.host(), &self.dev, &self.late, 9);
    }
    fn suspend(&self, c: &Arc<Channel>) {
        self.letters.suspend(c)
    }
    fn started(&self, c: &Arc<Channel>) {
        self.letters.started(c)
    }
    fn post_started(&self, c: &Arc<Channel>) {
        self.letters.post_started(c)
    }
}

#[kunit_tests(kmcl_hv_transport)]
mod tests {
    use super::*;

    fn host_bus(host: &Arc<FakeHost>) -> Result<Arc<LoopbackBus>> {
        let ops: Arc<dyn HostOps> = host.clone();
        LoopbackBus::with_host(HostBus::new(ops)?)
    }

    /// A host offering one device of `TYPE` (instance 1), and a client
    /// for it, not enabled yet.
    struct Rig {
        host: Arc<FakeHost>,
        bus: Arc<LoopbackBus>,
        dev: Arc<FakeDevice>,
        ch: Arc<Channel>,
        drv: Arc<Driver>,
    }

    impl Rig {
        /// `isolated`: the host is an isolated (confidential) guest's.
        fn new(isolated: bool) -> Result<Self> {
            let host = FakeHost::with(true, isolated)?;
            let bus = host_bus(&host)?;
            let dev = FakeDevice::new(TYPE, [1; 16])?;
            host.add(bus.host(), &dev)?;
            let (ch, drv) = client(&bus, TYPE, [0; 16])?;
            Ok(Rig {
                host,
                bus,
                dev,
                ch,
                drv,
            })
        }
    }

    #[test]
    fn packets_cross_both_ways_with_linux_as_the_host() -> Result {
        let Rig {
            host,
            bus,
            dev,
            ch,
            drv,
        } = Rig::new(false)?;
        ch.enable()?;
        assert!(drv.wait(|d| d.is(b"OTP")));
        assert_eq!(host.opens.load(Ordering::SeqCst), 1);
        assert_eq!(ch.interface_instance(), [1; 16]);

        // Host to guest: 10 rounds of 16 packets (about 4 ring wraps),
        // each completed by the driver with its payload reversed.
        let mut n = 0u32;
        for _round in 0..10 {
            for _ in 0..16 {
                let p = payload(n)?;
                dev.host
                    .send(&p, 0x5000 + u64::from(n), INBAND, COMPLETION_REQUESTED)?;
                n += 1;
            }
            dev.interrupt();
            assert!(drv.wait(|d| d.received.lock().len() == n as usize));
            // Give the completions time to be written.
            fsleep(Delta::from_millis(20));
            let comps = host_reads(&dev)?;
            assert_eq!(comps.len(), 16);
            for (k, (ty, id, body)) in comps.iter().enumerate() {
                let i = n - 16 + k as u32;
                // The driver saw the padded payload, and reversed that.
                let mut want = padded(payload(i)?)?;
                want.reverse();
                assert_eq!(*ty, COMP);
                assert_eq!(*id, 0x5000 + u64::from(i));
                if !padded_eq(body, &want) {
                    pr_err!(
                        "completion {}: {} bytes, want {}\n",
                        i,
                        body.len(),
                        want.len()
                    );
                }
                assert!(padded_eq(body, &want));
            }
        }
        let received = core::mem::take(&mut *drv.received.lock());
        assert_eq!(received.len(), 160);
        for (i, (id, data)) in received.iter().enumerate() {
            assert_eq!(*id, 0x5000 + i as u64);
            assert_eq!(*data, padded(payload(i as u32)?)?);
        }
        // Every signal kmcl sent went through vmbus_setevent().
        let sent = ch.signals().sent;
        assert!(sent > 0);
        assert_eq!(dev.guest.signals().total, sent);

        // Guest to host: requests with completions; the host answers each
        // transaction id with a completion packet.
        for i in 0..40u32 {
            ch.send(
                &payload(1000 + i)?,
                true,
                KBox::new(Done(drv.clone()), GFP_KERNEL)?,
            )?;
        }
        let mut reqs = KVec::new();
        for _ in 0..100 {
            for r in host_reads(&dev)? {
                reqs.push(r, GFP_KERNEL)?;
            }
            if reqs.len() == 40 {
                break;
            }
            fsleep(Delta::from_millis(10));
        }
        assert_eq!(reqs.len(), 40);
        for (k, (ty, id, body)) in reqs.iter().enumerate() {
            assert_eq!(*ty, INBAND);
            assert!(padded_eq(body, &payload(1000 + k as u32)?));
            let reply = [k as u8; 24];
            dev.host.send(&reply, *id, COMP, 0)?;
        }
        dev.interrupt();
        assert!(drv.wait(|d| d.completed.lock().len() == 40));
        for (k, (errno, data)) in drv.completed.lock().iter().enumerate() {
            assert_eq!(*errno, 0);
            assert_eq!(*data, [k as u8; 24]);
        }

        // The host rescinds the device: Suspend and Closed, the channel
        // closed before remove returns.
        host.rescind(bus.host(), &dev);
        assert!(drv.is(b"OTPSC"));
        assert_eq!(host.closes.load(Ordering::SeqCst), 1);
        assert!(!ch.is_enabled());
        ch.cleanup()?;
        Ok(())
    }

    #[test]
    fn a_full_ring_waits_for_the_hosts_signal() -> Result {
        let Rig {
            host: _host,
            bus: _bus,
            dev,
            ch,
            drv,
        } = Rig::new(false)?;
        ch.enable()?;
        assert!(drv.wait(|d| d.is(b"OTP")));
        // 60 packets of about 1 KiB do not fit a 16 KiB ring: the rest is
        // queued, with pending_send_sz set for the host.
        for i in 0..60u32 {
            ch.send(
                &[i as u8; 1000],
                false,
                KBox::new(Done(drv.clone()), GFP_KERNEL)?,
            )?;
        }
        assert!(ch.counters().ring_full > 0);
        let first = host_reads(&dev)?;
        assert!(first.len() < 60);
        // hv_vmbus's reader, crossing pending_send_sz, signalled the guest
        // once; that interrupt makes kmcl write the queue.
        assert_eq!(dev.host.signals().in_full, 1);
        dev.interrupt();
        let mut all = first;
        for _ in 0..100 {
            for p in host_reads(&dev)? {
                all.push(p, GFP_KERNEL)?;
            }
            if all.len() >= 60 {
                break;
            }
            // Each time the ring fills again the host signals again.
            dev.interrupt();
            fsleep(Delta::from_millis(10));
        }
        assert_eq!(all.len(), 60);
        for (i, (ty, _, body)) in all.iter().enumerate() {
            assert_eq!(*ty, INBAND);
            assert!(padded_eq(body, &[i as u8; 1000]));
        }
        // Every routine ran once the packet was written.
        assert!(drv.wait(|d| d.completed.lock().len() == 60));
        ch.disable()?;
        ch.cleanup()?;
        Ok(())
    }

    #[test]
    fn clients_bind_by_type_and_instance() -> Result {
        let host = FakeHost::new(true)?;
        let bus = host_bus(&host)?;
        let d1 = FakeDevice::new(TYPE, [1; 16])?;
        let d2 = FakeDevice::new(TYPE, [2; 16])?;
        let d3 = FakeDevice::new(OTHER, [1; 16])?;
        for d in [&d1, &d2, &d3] {
            host.add(bus.host(), d)?;
        }
        // Nothing is bound before a client asks for the type.
        assert_eq!(bus.host().offers(), 0);
        let (a, da) = client(&bus, TYPE, [2; 16])?;
        a.enable()?;
        assert!(da.wait(|d| d.is(b"OTP")));
        assert_eq!(a.interface_instance(), [2; 16]);
        // Only TYPE's devices came.
        assert_eq!(bus.host().offers(), 2);
        let (b, db) = client(&bus, TYPE, [0; 16])?;
        b.enable()?;
        assert!(db.wait(|d| d.is(b"OTP")));
        assert_eq!(b.interface_instance(), [1; 16]);
        // Both taken: the next waits until a device appears.
        let (c, dc) = client(&bus, TYPE, [0; 16])?;
        c.enable()?;
        fsleep(Delta::from_millis(50));
        assert!(dc.is(b""));
        let d4 = FakeDevice::new(TYPE, [4; 16])?;
        host.add(bus.host(), &d4)?;
        assert!(dc.wait(|d| d.is(b"OTP")));
        assert_eq!(c.interface_instance(), [4; 16]);
        assert_eq!(host.watched.lock().len(), 1);
        // A client leaving frees its device for the next.
        a.disable()?;
        assert!(da.is(b"OTPSC"));
        assert_eq!(host.closes.load(Ordering::SeqCst), 1);
        let (e, de) = client(&bus, TYPE, [2; 16])?;
        e.enable()?;
        assert!(de.wait(|d| d.is(b"OTP")));
        // A failing open is the client's PnpFailure; the device stays free.
        host.fail_open.store(EIO.to_errno(), Ordering::SeqCst);
        let (f, df) = client(&bus, OTHER, [0; 16])?;
        f.enable()?;
        assert!(df.wait(|d| d.is(b"F")));
        assert_eq!(df.letters.pnp_status.load(Ordering::SeqCst), EIO.to_errno());
        assert!(!f.is_enabled());
        host.fail_open.store(0, Ordering::SeqCst);
        f.enable()?;
        assert!(df.wait(|d| d.is(b"FOTP")));
        assert_eq!(host.opens.load(Ordering::SeqCst), 5);
        for ch in [&b, &c, &e, &f] {
            ch.disable()?;
        }
        assert_eq!(host.closes.load(Ordering::SeqCst), 5);
        for ch in [a, b, c, e, f] {
            ch.cleanup()?;
        }
        Ok(())
    }

    #[test]
    fn gpadls_external_data_and_mmio_reach_the_host() -> Result {
        let Rig {
            host,
            bus,
            dev,
            ch,
            drv,
        } = Rig::new(false)?;
        assert_eq!(ch.mmio_space(), Err(ENOTCONN));
        *host.mmio.lock() = Some(KVec::from_elem(0u8, 8192, GFP_KERNEL)?);
        let space = host.mmio.lock().as_ref().map(|m| MmioSpace {
            address: m.as_ptr() as usize,
            len: m.len(),
            physical: Some(MMIO_START),
        });
        ch.enable()?;
        assert!(drv.wait(|d| d.is(b"OTP")));
        // The offer's MMIO space, reserved at open: mapped, and where the
        // host put it (KMCL's physical MmioAddress).
        assert_eq!(ch.mmio_space().ok(), space);
        assert_eq!(ch.mmio_physical(), Ok((MMIO_START, 8192)));
        assert_eq!(host.mmio_allocs.load(Ordering::SeqCst), 1);
        // Four pages of physically contiguous memory (and what it takes to
        // start them on a page boundary), each byte telling its place.
        let mut buf = KVec::from_elem(0u8, 5 * 4096, GFP_KERNEL)?;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let skew = (4096 - buf.as_ptr() as usize % 4096) % 4096;
        let pages_of = |at: usize, len: usize| {
            // SAFETY: `buf` outlives every GPADL and transaction below.
            unsafe { GpadlPages::from_buffer(buf.as_ptr() as usize + skew + at, len) }
        };
        // hv_vmbus describes a GPADL as whole pages from the first one's
        // start: a buffer starting inside a page, or ending inside one,
        // would be seen shifted or with bytes beyond it, so it is refused.
        assert_eq!(
            ch.create_gpadl(pages_of(100, 3 * 4096)?, false),
            Err(EINVAL)
        );
        assert_eq!(
            ch.create_gpadl(pages_of(0, 3 * 4096 + 200)?, false),
            Err(EINVAL)
        );
        assert!(host.gpadls.lock().is_empty());
        let first = pages_of(0, 3 * 4096)?;
        let mut want = KVec::new();
        for p in first.pfns() {
            want.push(p, GFP_KERNEL)?;
        }
        let handle = ch.create_gpadl(first, false)?;
        {
            let g = host.gpadls.lock();
            assert_eq!(g.len(), 1);
            assert_eq!(g[0].0, handle);
            assert_eq!(g[0].1, want);
            // The host reads exactly the buffer's bytes.
            assert!(g[0].2[..] == buf[skew..skew + 3 * 4096]);
        }
        ch.delete_gpadl(handle)?;
        assert!(host.gpadls.lock().is_empty());
        assert_eq!(ch.delete_gpadl(handle), Err(ENOENT));
        // Left for the rescind to tear down.
        let kept = ch.create_gpadl(pages_of(0, 4096)?, true)?;
        assert_ne!(kept, handle);

        // External data: a GPA-direct packet with one range per piece
        // (two: 5000 bytes from 300, 10 bytes from 4100), naming the
        // pages, the transaction completed by the host.
        let (ext, tail) = (pages_of(300, 5000)?, pages_of(4100, 10)?);
        let mut ext_pfns = KVec::new();
        for p in ext.pfns() {
            ext_pfns.push(p, GFP_KERNEL)?;
        }
        let tail_pfn = tail.pfns().next();
        let mut both = KVec::new();
        both.push(ext, GFP_KERNEL)?;
        both.push(tail, GFP_KERNEL)?;
        ch.send_external(
            b"read these",
            External::new(both)?,
            KBox::new(Done(drv.clone()), GFP_KERNEL)?,
        )?;
        let got = host_reads_with_headers(&dev)?;
        assert_eq!(got.len(), 1);
        let (ty, id, header, body) = &got[0];
        assert_eq!(*ty, PacketType::GpaDirect as u16);
        assert!(padded_eq(body, b"read these"));
        let ranges = gpa::GpaRanges::parse(header, 4, 1 << 20).map_err(|_| EINVAL)?;
        let mut it = ranges.iter();
        let (r, t) = (it.next().ok_or(EINVAL)?, it.next().ok_or(EINVAL)?);
        assert_eq!(ranges.count(), 2);
        assert_eq!((r.offset, r.len), (300, 5000));
        assert!(r.pfns().eq(ext_pfns.iter().copied()));
        assert_eq!((t.offset, t.len), (4, 10));
        assert_eq!(t.pfns().next(), tail_pfn);
        dev.host.send(b"done!!!!", *id, COMP, 0)?;
        dev.interrupt();
        assert!(drv.wait(|d| d.completed.lock().len() == 1));
        assert_eq!(drv.completed.lock()[0].0, 0);

        host.rescind(bus.host(), &dev);
        assert!(drv.is(b"OTPSC"));
        // The GPADL left was torn down before the channel closed; the MMIO
        // space was released.
        assert!(host.gpadls.lock().is_empty());
        assert_eq!(host.closes.load(Ordering::SeqCst), 1);
        assert_eq!(host.mmio_frees.load(Ordering::SeqCst), 1);
        assert_eq!(ch.mmio_space(), Err(ENOTCONN));
        assert_eq!(ch.mmio_physical(), Err(ENOTCONN));
        ch.cleanup()?;
        drop(buf);
        Ok(())
    }

    #[test]
    fn an_isolated_guest_shares_gpadls_and_bounces_external_data() -> Result {
        let Rig {
            host,
            bus: _bus,
            dev,
            ch,
            drv,
        } = Rig::new(true)?;
        ch.enable()?;
        assert!(drv.wait(|d| d.is(b"OTP")));
        // An offer without MMIO space.
        assert_eq!(ch.mmio_space(), Err(ENODATA));
        assert_eq!(ch.mmio_physical(), Err(ENODATA));
        // A page-aligned page (kmalloc aligns a power-of-two size).
        let buf = KVec::from_elem(0x3cu8, 4096, GFP_KERNEL)?;
        // SAFETY: `buf` outlives the GPADL (deleted below) and the refused
        // packet.
        let pages = || unsafe { GpadlPages::from_buffer(buf.as_ptr() as usize, 4096) };
        // A GPADL is whole pages, which hv_vmbus makes visible to the host
        // (vmbus_establish_gpadl() decrypts them): it is created.
        let handle = ch.create_gpadl(pages()?, false)?;
        assert!(host
            .gpadls
            .lock()
            .iter()
            .any(|g| g.0 == handle && g.2 == buf[..]));
        ch.delete_gpadl(handle)?;
        assert!(host.gpadls.lock().is_empty());
        assert_eq!(host.dma_maps.load(Ordering::SeqCst), 0);

        // External data the host cannot read where it is goes through the
        // DMA API: two ranges (5000 bytes from 300, 10 bytes from 8200 of
        // three contiguous pages) are three 4-KiB pieces mapped.
        let mut data = KVec::from_elem(0u8, 3 * 4096, GFP_KERNEL)?;
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let at = |off: usize, len: usize| {
            // SAFETY: `data` outlives every transaction below.
            unsafe { GpadlPages::from_buffer(data.as_ptr() as usize + off, len) }
        };
        let (a, b) = (at(300, 5000)?, at(8200, 10)?);
        let mut own = KVec::new();
        for p in a.pfns() {
            own.push(p, GFP_KERNEL)?;
        }
        let mut both = KVec::new();
        both.push(a, GFP_KERNEL)?;
        both.push(b, GFP_KERNEL)?;
        ch.send_external(
            b"bounce",
            External::new(both)?,
            KBox::new(Done(drv.clone()), GFP_KERNEL)?,
        )?;
        assert_eq!(host.dma_maps.load(Ordering::SeqCst), 3);
        assert_eq!(host.dma_unmaps.load(Ordering::SeqCst), 0);
        let got = host_reads_with_headers(&dev)?;
        assert_eq!(got.len(), 1);
        let (ty, id, header, body) = &got[0];
        assert_eq!(*ty, PacketType::GpaDirect as u16);
        assert!(padded_eq(body, b"bounce"));
        let ranges = gpa::GpaRanges::parse(header, 4, 1 << 20).map_err(|_| EINVAL)?;
        assert_eq!(ranges.count(), 2);
        let mut it = ranges.iter();
        let (r, t) = (it.next().ok_or(EINVAL)?, it.next().ok_or(EINVAL)?);
        assert_eq!((r.offset, r.len, r.page_count()), (300, 5000, 2));
        assert_eq!((t.offset, t.len, t.page_count()), (8, 10, 1));
        // The frames the host is given: the bounce buffers' when the DMA
        // API bounces (`swiotlb=force`), else the pages themselves.
        assert_eq!(r.pfns().eq(own.iter().copied()), !dev.bounces());
        pr_info!(
            "isolated guest: external data {}\n",
            if dev.bounces() {
                "bounced through swiotlb"
            } else {
                "mapped in place (swiotlb not forced)"
            }
        );
        // The host reads the data through those frames...
        let frames = |g: &gpa::GpaRange<'_>| -> Result<GpadlPages> {
            let mut f = KVec::new();
            for p in g.pfns() {
                f.push(p, GFP_KERNEL)?;
            }
            // SAFETY: mapped for the host until the completion below.
            unsafe { GpadlPages::from_pfns(&f) }
        };
        let (hr, ht) = (frames(&r)?, frames(&t)?);
        let mut seen = KVec::from_elem(0u8, 5000, GFP_KERNEL)?;
        hr.read(300, &mut seen)?;
        assert!(seen[..] == data[300..5300]);
        let mut tail = [0u8; 10];
        ht.read(8, &mut tail)?;
        assert!(tail[..] == data[8200..8210]);
        // ...writes its answer there, and completes the transaction: the
        // mappings end, and the answer is in the driver's pages.
        let answer = KVec::from_elem(0xa5u8, 5000, GFP_KERNEL)?;
        hr.write(300, &answer)?;
        ht.write(8, b"0123456789")?;
        dev.host.send(b"done!!!!", *id, COMP, 0)?;
        dev.interrupt();
        assert!(drv.wait(|d| d.completed.lock().len() == 1));
        assert_eq!(drv.completed.lock()[0].0, 0);
        assert_eq!(host.dma_unmaps.load(Ordering::SeqCst), 3);
        assert!(data[300..5300] == answer[..]);
        assert!(data[8200..8210] == *b"0123456789");
        assert_eq!(data[299], (299 % 251) as u8);
        assert_eq!(data[5300], (5300 % 251) as u8);

        // A transaction still open when the connection ends: its bounce
        // buffer stays mapped until the channel is closed (the host may still
        // write into it), then unmapped.
        ch.send_external(
            b"left",
            External::one(at(0, 4096)?)?,
            KBox::new(Done(drv.clone()), GFP_KERNEL)?,
        )?;
        assert_eq!(host.dma_maps.load(Ordering::SeqCst), 4);
        let left = host_reads_with_headers(&dev)?;
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, PacketType::GpaDirect as u16);
        ch.disable()?;
        assert!(drv.wait(|d| d.completed.lock().len() == 2));
        assert_eq!(drv.completed.lock()[1].0, ENODEV.to_errno());
        assert_eq!(host.closes.load(Ordering::SeqCst), 1);
        assert_eq!(host.unmaps_at_close.load(Ordering::SeqCst), 3);
        assert!(wait_until(|| host.dma_unmaps.load(Ordering::SeqCst) == 4));
        ch.cleanup()?;
        drop(data);
        Ok(())
    }

    /// Not a timed test: what the isolated-guest mode costs a transaction
    /// of 64 KiB of external data (mapped and unmapped through the real
    /// DMA glue: two copies under `swiotlb=force`), next to two plain
    /// copies of as much, for Documentation/performance.rst. In a guest
    /// that is not isolated nothing is mapped (no cost to measure).
    #[test]
    fn what_bouncing_external_data_costs() -> Result {
        const ROUNDS: u32 = 200;
        const LEN: usize = 64 * 1024;
        let host = FakeHost::with(true, true)?;
        let dev = FakeDevice::new(TYPE, [1; 16])?;
        let ops: Arc<dyn HostOps> = host.clone();
        let bounces = super::super::bounce::Bounces::new(ops, dev.device())?;
        // Page allocator memory: kmalloc of more than 8 KiB.
        let data = KVec::from_elem(0x5au8, LEN, GFP_KERNEL)?;
        let mut copy = KVec::from_elem(0u8, LEN, GFP_KERNEL)?;
        let ext = || -> Result<External> {
            // SAFETY: `data` outlives every mapping below.
            External::one(unsafe { GpadlPages::from_buffer(data.as_ptr() as usize, LEN) }?)
        };
        let one = ext()?;
        let start = kernel::time::Instant::<kernel::time::Monotonic>::now();
        for _ in 0..ROUNDS {
            let mapped = bounces.map(&one)?;
            drop(mapped);
        }
        let bounced = start.elapsed().as_nanos() / i64::from(ROUNDS);
        assert_eq!(host.dma_maps.load(Ordering::SeqCst), 16 * ROUNDS);
        assert_eq!(host.dma_unmaps.load(Ordering::SeqCst), 16 * ROUNDS);
        let start = kernel::time::Instant::<kernel::time::Monotonic>::now();
        for _ in 0..ROUNDS {
            copy.copy_from_slice(&data);
            core::hint::black_box(&mut copy);
            copy.copy_from_slice(&data);
            core::hint::black_box(&mut copy);
        }
        let copies = start.elapsed().as_nanos() / i64::from(ROUNDS);
        pr_info!(
            "external data, 64 KiB a transaction: {} ns to map and unmap ({}), {} ns for two plain copies\n",
            bounced,
            if dev.bounces() {
                "swiotlb bounce buffers"
            } else {
                "mapped in place"
            },
            copies
        );
        assert!(copy[..] == data[..]);
        Ok(())
    }

    #[test]
    fn without_a_host_a_host_client_gets_pnp_failure() -> Result {
        // kmcl's own bus objects with no VMBus host, as on these machines.
        let bus = LoopbackBus::new()?;
        let (ch, drv) = client(&bus, TYPE, [0; 16])?;
        ch.enable()?;
        assert!(drv.wait(|d| d.is(b"F")));
        assert_eq!(
            drv.letters.pnp_status.load(Ordering::SeqCst),
            ENODEV.to_errno()
        );
        assert!(!ch.is_enabled());
        // The default (auto) waits on the loopback bus instead.
        ch.configure(|s| s.transport = Transport::Auto)?;
        ch.enable()?;
        fsleep(Delta::from_millis(50));
        assert!(drv.is(b"F"));
        let server = Channel::new(Role::Server, bus.clone())?;
        server.configure(|s| s.interface_type = TYPE)?;
        server.enable()?;
        server.start()?;
        assert!(drv.wait(|d| d.is(b"FOTP")));
        ch.disable()?;
        server.disable()?;
        ch.cleanup()?;
        server.cleanup()?;
        Ok(())
    }

    #[test]
    fn a_host_describing_guest_memory_fails_the_channel() -> Result {
        let Rig {
            host,
            bus: _bus,
            dev,
            ch,
            drv,
        } = Rig::new(false)?;
        ch.configure(|s| {
            s.max_external_bytes = 1 << 20;
            s.max_external_ranges = 4;
        })?;
        ch.enable()?;
        assert!(drv.wait(|d| d.is(b"OTP")));
        // A GPA-direct packet naming a guest page the host picked.
        let mut list = [0u8; 32];
        let pfns = [0x1000u64];
        let len =
            gpa::encode([(0u32, 4096u32, &pfns[..])].into_iter(), &mut list).map_err(|_| EINVAL)?;
        let mut desc = KVec::from_elem(0u8, DESCRIPTOR_SIZE + len, GFP_KERNEL)?;
        desc[DESCRIPTOR_SIZE..].copy_from_slice(&list[..len]);
        dev.host.send_gpa_direct(&mut desc, b"take this", 9)?;
        dev.interrupt();
        // Never delivered; the channel is closed.
        assert!(drv.wait(|d| d.is(b"OTPSC")));
        assert!(drv.received.lock().is_empty());
        // Closed comes before the connection is torn down (KMCL's order):
        // the device's channel is closed right after.
        assert!(wait_until(|| host.closes.load(Ordering::SeqCst) == 1));
        ch.cleanup()?;
        Ok(())
    }

    /// A transfer-page packet as Hyper-V's network VSP writes it (built
    /// with Linux's `struct vmtransfer_page_packet_header`) reaches the
    /// driver with its ranges once the client registered the set over a
    /// GPADL the host has; its completion goes back with the transaction
    /// id; a packet naming a set the client never registered closes the
    /// channel.
    #[test]
    fn transfer_pages_from_the_host_reach_the_driver() -> Result {
        use super::super::interop::xfer_build;
        let Rig {
            host,
            bus: _bus,
            dev,
            ch,
            drv,
        } = Rig::new(false)?;
        ch.enable()?;
        assert!(drv.wait(|d| d.is(b"OTP")));
        let buf = KVec::from_elem(0u8, 2 * 4096, GFP_KERNEL)?;
        // SAFETY: `buf` outlives the GPADL (torn down by the close below).
        let pages = unsafe { GpadlPages::from_buffer(buf.as_ptr() as usize, buf.len()) }?;
        let handle = ch.create_gpadl(pages, false)?;
        assert_eq!(ch.register_transfer_set(7, handle + 1), Err(ENOENT));
        ch.register_transfer_set(7, handle)?;
        assert_eq!(ch.delete_gpadl(handle), Err(EBUSY));
        let want = [[1514u32, 0u32], [100, 8192 - 100]];
        dev.host_write_raw(&xfer_build(7, &want, 55)?)?;
        dev.interrupt();
        assert!(drv.wait(|d| d.transfers.lock().len() == 1));
        {
            let t = drv.transfers.lock();
            assert_eq!(t[0].0, 7);
            assert!(t[0]
                .1
                .iter()
                .map(|(c, o)| [*c, *o])
                .eq(want.iter().copied()));
        }
        // The driver's completion, for the host's transaction.
        let got = host_reads(&dev)?;
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].0, got[0].1), (COMP, 55));
        // A range past the set: refused, the channel closed.
        dev.host_write_raw(&xfer_build(7, &[[101, 8192 - 100]], 56)?)?;
        dev.interrupt();
        assert!(drv.wait(|d| d.is(b"OTPSC")));
        assert_eq!(drv.transfers.lock().len(), 1);
        assert!(wait_until(|| host.closes.load(Ordering::SeqCst) == 1));
        // The GPADL went with the close.
        assert!(host.gpadls.lock().is_empty());
        ch.cleanup()?;
        drop(buf);
        Ok(())
    }

    #[test]
    fn a_rescind_ends_a_request_from_post_started() -> Result {
        let Rig {
            host,
            bus,
            dev,
            ch,
            drv: _drv,
        } = Rig::new(false)?;
        // The driver negotiates in PostStarted; the host never answers,
        // then rescinds the device.
        let neg = Negotiator::new(Some(3000))?;
        ch.set_state_callbacks(neg.clone())?;
        ch.enable()?;
        assert!(wait_until(|| neg.entered.load(Ordering::SeqCst)));
        assert!(wait_until(
            || !host_reads(&dev).map_or(true, |r| r.is_empty())
        ));
        let start = kernel::time::Instant::<kernel::time::Monotonic>::now();
        host.rescind(bus.host(), &dev);
        let took = start.elapsed().as_millis();
        // hv_vmbus's rescind work is not held up by the driver's request,
        // which ends with -ENODEV, well under a second.
        assert_eq!(neg.wait_result(0), Some(ENODEV.to_errno()));
        pr_info!("rescind took {} ms\n", took);
        assert!(took < 1000);
        assert!(wait_until(|| !ch.is_enabled()));
        assert_eq!(host.closes.load(Ordering::SeqCst), 1);
        ch.cleanup()?;
        Ok(())
    }

    #[test]
    fn a_rescind_waits_for_a_driver_holding_packets_only_so_long() -> Result {
        let Rig {
            host,
            bus,
            dev,
            ch,
            drv,
        } = Rig::new(false)?;
        let keeper = Keeper::new()?;
        ch.set_packet_callbacks(keeper.clone())?;
        ch.enable()?;
        assert!(drv.wait(|d| d.is(b"OTP")));
        // The driver keeps the host's packet and completes it 4 s later.
        dev.host
            .send(b"keep it", 0x77, INBAND, COMPLETION_REQUESTED)?;
        dev.interrupt();
        assert!(wait_until(|| keeper.held() == 1));
        keeper.complete_all_after(4000);
        let start = kernel::time::Instant::<kernel::time::Monotonic>::now();
        host.rescind(bus.host(), &dev);
        let took = start.elapsed().as_millis();
        pr_info!("rescind took {} ms\n", took);
        // hv_vmbus's rescind work waits for the driver no longer than the
        // wait on the other endpoint allows, and the device's channel is
        // closed before it returns (hv_vmbus frees it next).
        assert!(took < PEER_STALL_MS + 1000);
        assert_eq!(host.closes.load(Ordering::SeqCst), 1);
        // kmcl took the packet back from the driver: the channel closed in
        // KMCL's order while the driver still held it.
        assert!(wait_for(1, || drv.is(b"OTPSC") && !ch.is_enabled()));
        assert_eq!(keeper.held(), 1);
        // Its late completion does nothing.
        assert!(wait_for(5, || keeper.held() == 0));
        assert_eq!(host.closes.load(Ordering::SeqCst), 1);
        ch.cleanup()?;
        Ok(())
    }

    /// State callbacks whose Suspend takes 3 s (a driver stuck in it).
    struct SlowSuspend {
        suspended: core::sync::atomic::AtomicBool,
        closed: core::sync::atomic::AtomicBool,
    }

    impl crate::engine::channel::StateCallbacks for SlowSuspend {
        fn suspend(&self, _c: &Arc<Channel>) {
            fsleep(Delta::from_millis(3000));
            self.suspended.store(true, Ordering::SeqCst);
        }
        fn closed(&self, _c: &Arc<Channel>) {
            self.closed.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_rescind_closes_the_device_channel_even_if_the_driver_hangs() -> Result {
        let Rig {
            host,
            bus,
            dev,
            ch,
            drv: _drv,
        } = Rig::new(false)?;
        let slow = Arc::new(
            SlowSuspend {
                suspended: core::sync::atomic::AtomicBool::new(false),
                closed: core::sync::atomic::AtomicBool::new(false),
            },
            GFP_KERNEL,
        )?;
        ch.set_state_callbacks(slow.clone())?;
        ch.enable()?;
        assert!(wait_until(|| ch.is_running()));
        let start = kernel::time::Instant::<kernel::time::Monotonic>::now();
        host.rescind(bus.host(), &dev);
        let took = start.elapsed().as_millis();
        pr_info!("rescind took {} ms\n", took);
        // The driver's Suspend does not return for 3 s: after the bound
        // and its quarter kmcl closed the device's channel itself, so
        // hv_vmbus may free it.
        assert!((PEER_STALL_MS..PEER_STALL_MS + 1000).contains(&took));
        assert_eq!(host.closes.load(Ordering::SeqCst), 1);
        assert!(!slow.suspended.load(Ordering::SeqCst));
        // The driver's close then ends in KMCL's order; nothing is closed
        // twice.
        assert!(wait_for(5, || slow.closed.load(Ordering::SeqCst)));
        assert!(slow.suspended.load(Ordering::SeqCst));
        assert!(wait_until(|| !ch.is_enabled()));
        assert_eq!(host.closes.load(Ordering::SeqCst), 1);
        ch.cleanup()?;
        Ok(())
    }

    /// Sub-channels of a host device (hv_vmbus's sc-create callback): the
    /// primary's client hears of each, a client sub-channel waiting before
    /// the offer and one enabled after it are each opened on their own
    /// rings and carry only their own packets both ways; a sub-channel the
    /// host rescinds closes only it (noticed at its next signal); the
    /// primary's client leaving closes the other sub-channel first, then
    /// the primary with them all.
    #[test]
    fn subchannels_of_a_host_device_open_on_their_own_rings() -> Result {
        let host = FakeHost::new(true)?;
        let bus = host_bus(&host)?;
        let dev = FakeDevice::new(TYPE, [1; 16])?;
        host.add(bus.host(), &dev)?;
        let drv = Driver::new()?;
        let watch = SubOffers::new(drv.letters.clone())?;
        let ch = Channel::new(Role::Client, bus.clone())?;
        ch.configure(|s| {
            s.interface_type = TYPE;
            s.transport = Transport::Host;
        })?;
        ch.set_state_callbacks(watch.clone())?;
        ch.set_packet_callbacks(drv.clone())?;
        let mut subs = KVec::new();
        for _ in 0..2 {
            let d = Driver::new()?;
            let c = Channel::new(Role::Client, bus.clone())?;
            c.set_state_callbacks(d.letters.clone())?;
            c.set_packet_callbacks(d.clone())?;
            c.set_primary(&ch)?;
            subs.push((c, d), GFP_KERNEL)?;
        }
        // No sub-channel before the primary is connected.
        assert_eq!(subs[0].0.enable(), Err(ENOTCONN));
        ch.enable()?;
        assert!(drv.wait(|d| d.is(b"OTP")));
        // Sub-channel 1's client waits; the host offers 1 and 2.
        subs[0].0.enable()?;
        assert!(!subs[0].0.is_connected());
        let sc1 = FakeDevice::subchannel(&dev, 1)?;
        let sc2 = FakeDevice::subchannel(&dev, 2)?;
        host.offer_subchannel(bus.host(), &dev, &sc1, 1)?;
        host.offer_subchannel(bus.host(), &dev, &sc2, 2)?;
        // Offered again (a late callback): ignored.
        host.offer_subchannel(bus.host(), &dev, &sc2, 2)?;
        assert!(wait_until(|| watch.indexes.lock().len() == 2));
        assert_eq!(*watch.indexes.lock(), [1, 2]);
        assert!(subs[0].1.wait(|d| d.is(b"OTP")));
        subs[1].0.enable()?;
        assert!(subs[1].1.wait(|d| d.is(b"OTP")));
        assert_eq!(watch.indexes.lock().len(), 2);
        assert_eq!(host.opens.load(Ordering::SeqCst), 3);
        assert_eq!(subs[0].0.subchannel_index(), 1);
        assert_eq!(subs[1].0.subchannel_index(), 2);
        assert_eq!(ch.subchannel_index(), 0);
        // Primary + 2 sub-channel offers.
        assert_eq!(bus.host().offers(), 3);

        // Each carries its own packets: the host writes on each channel's
        // ring, the client sends on each channel.
        let chans = [
            (&ch, &drv, &dev),
            (&subs[0].0, &subs[0].1, &sc1),
            (&subs[1].0, &subs[1].1, &sc2),
        ];
        for (k, (c, d, fake)) in chans.iter().enumerate() {
            let p = payload(100 + k as u32)?;
            fake.host.send(&p, 0x700 + k as u64, INBAND, 0)?;
            fake.interrupt();
            assert!(d.wait(|d| d.received.lock().len() == 1));
            let want = padded(p)?;
            assert!(d.received.lock()[0].1 == want);
            c.send(
                &payload(200 + k as u32)?,
                false,
                KBox::new(Done((*d).clone()), GFP_KERNEL)?,
            )?;
        }
        for (k, (_, d, fake)) in chans.iter().enumerate() {
            assert_eq!(d.received.lock().len(), 1);
            let got = host_reads(fake)?;
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].0, INBAND);
            assert!(padded_eq(&got[0].2, &payload(200 + k as u32)?));
        }

        // The host rescinds sub-channel 1: its next signal closes it, and
        // only it.
        sc1.rescind();
        subs[0].0.send(
            &payload(300)?,
            false,
            KBox::new(Done(subs[0].1.clone()), GFP_KERNEL)?,
        )?;
        assert!(subs[0].1.wait(|d| d.is(b"OTPSC")));
        for (k, (c, d, fake)) in [chans[0], chans[2]].iter().enumerate() {
            let p = payload(400 + k as u32)?;
            fake.host.send(&p, 0x800, INBAND, 0)?;
            fake.interrupt();
            assert!(d.wait(|d| d.received.lock().len() == 2));
            c.send(
                &payload(500)?,
                false,
                KBox::new(Done((*d).clone()), GFP_KERNEL)?,
            )?;
            assert!(wait_until(|| host_reads(fake).is_ok_and(|r| r.len() == 1)));
        }
        assert!(drv.is(b"OTP") && subs[1].1.is(b"OTP"));
        // Sub-channel 1 is not offered again: its channel stays open (and
        // kmcl's) until the primary closes.
        subs[0].0.enable()?;
        fsleep(Delta::from_millis(50));
        assert!(!subs[0].0.is_connected());
        subs[0].0.disable()?;
        assert_eq!(host.closes.load(Ordering::SeqCst), 0);

        // The primary's client leaves: sub-channel 2's client is closed
        // first, then the primary channel with its sub-channels.
        ch.disable()?;
        assert!(subs[1].1.is(b"OTPSC"));
        assert!(drv.is(b"OTPSC"));
        assert_eq!(host.closes.load(Ordering::SeqCst), 1);
        assert!(!subs[1].0.is_enabled());
        assert_eq!(bus.host().offers(), 1);
        // Nothing reaches sub-channel 2's client any more.
        sc2.host.send(&payload(600)?, 0x900, INBAND, 0)?;
        sc2.interrupt();
        fsleep(Delta::from_millis(50));
        assert_eq!(subs[1].1.received.lock().len(), 2);
        for (c, _) in subs {
            c.cleanup()?;
        }
        ch.cleanup()?;
        Ok(())
    }

    /// KMCL's interrupt latency on a host channel, only while connected:
    /// 0 makes the channel signal the host directly (hv_vmbus's
    /// `low_latency`, the monitor page bypassed), any other value through
    /// its monitor page; each call returns the value before; a new
    /// connection starts on the monitor page again.
    #[test]
    fn interrupt_latency_zero_signals_the_host_directly() -> Result {
        let Rig {
            host: _host,
            bus: _bus,
            dev,
            ch,
            drv,
        } = Rig::new(false)?;
        assert_eq!(ch.set_interrupt_latency(0), Err(ENOTCONN));
        ch.enable()?;
        assert!(drv.wait(|d| d.is(b"OTP")));
        assert!(!dev.low_latency());
        assert_eq!(ch.set_interrupt_latency(0), Ok(0));
        assert!(dev.low_latency());
        // Signals still go through vmbus_setevent().
        let before = dev.guest.signals().total;
        ch.send(b"direct", false, KBox::new(Done(drv.clone()), GFP_KERNEL)?)?;
        assert!(wait_until(|| host_reads(&dev).is_ok_and(|r| r.len() == 1)));
        assert!(dev.guest.signals().total > before);
        assert_eq!(ch.set_interrupt_latency(500), Ok(0));
        assert!(!dev.low_latency());
        assert_eq!(ch.set_interrupt_latency(0), Ok(500));
        assert!(dev.low_latency());
        // The next connection starts afresh.
        ch.disable()?;
        assert_eq!(ch.set_interrupt_latency(0), Err(ENOTCONN));
        ch.enable()?;
        assert!(drv.wait(|d| d.is(b"OTPSCOTP")));
        assert!(!dev.low_latency());
        assert_eq!(ch.set_interrupt_latency(100), Ok(0));
        ch.disable()?;
        ch.cleanup()?;
        Ok(())
    }

    /// Hibernation, as hv_vmbus drives it (the driver's suspend, then its
    /// resume): with the channel open, a GPADL left and requests in
    /// flight, the client gets Suspend and Closed, each request's
    /// completion routine runs exactly once (`-ENODEV`), the GPADL is torn
    /// down and the channel closed before suspend returns; the client
    /// stays enabled, opens nothing while the device is suspended, and
    /// after resume opens it afresh (Opened, Started, PostStarted) with
    /// packets flowing again.
    #[test]
    fn hibernation_closes_the_channel_and_resume_opens_it_afresh() -> Result {
        let Rig {
            host,
            bus,
            dev,
            ch,
            drv,
        } = Rig::new(false)?;
        ch.enable()?;
        assert!(drv.wait(|d| d.is(b"OTP")));
        // A page-aligned page (kmalloc aligns a power-of-two size).
        let buf = KVec::from_elem(0u8, 4096, GFP_KERNEL)?;
        // SAFETY: `buf` outlives the GPADL (torn down by the suspend).
        let pages = unsafe { GpadlPages::from_buffer(buf.as_ptr() as usize, buf.len()) }?;
        ch.create_gpadl(pages, false)?;
        for i in 0..5u32 {
            ch.send(
                &payload(i)?,
                true,
                KBox::new(Done(drv.clone()), GFP_KERNEL)?,
            )?;
        }
        let mut seen = 0;
        assert!(wait_until(|| {
            seen += host_reads(&dev).map_or(0, |r| r.len());
            seen == 5
        }));
        bus.host().suspend(dev.device());
        assert!(drv.is(b"OTPSC"));
        assert_eq!(host.closes.load(Ordering::SeqCst), 1);
        assert!(host.gpadls.lock().is_empty());
        assert!(drv.wait(|d| d.completed.lock().len() == 5));
        assert!(drv
            .completed
            .lock()
            .iter()
            .all(|(e, _)| *e == ENODEV.to_errno()));
        // Enabled, waiting for the device.
        fsleep(Delta::from_millis(50));
        assert!(ch.is_enabled() && !ch.is_connected());
        assert_eq!(host.opens.load(Ordering::SeqCst), 1);

        bus.host().resume(dev.device());
        assert!(drv.wait(|d| d.is(b"OTPSCOTP")));
        assert_eq!(host.opens.load(Ordering::SeqCst), 2);
        dev.host.send(b"after resume", 0x99, INBAND, 0)?;
        dev.interrupt();
        assert!(drv.wait(|d| d.received.lock().len() == 1));
        // No routine ran twice.
        fsleep(Delta::from_millis(20));
        assert_eq!(drv.completed.lock().len(), 5);
        ch.disable()?;
        assert!(drv.is(b"OTPSCOTPSC"));
        assert_eq!(host.closes.load(Ordering::SeqCst), 2);
        ch.cleanup()?;
        drop(buf);
        Ok(())
    }
    /// A sub-channel the host offers while the primary's client is
    /// leaving (from a sub-channel client's Closed, during the primary's
    /// close) is taken by nobody, not even a client sub-channel waiting
    /// for one: its channel is about to close with the primary.
    #[test]
    fn a_subchannel_offered_while_the_primary_leaves_is_not_taken() -> Result {
        let host = FakeHost::new(true)?;
        let bus = host_bus(&host)?;
        let dev = FakeDevice::new(TYPE, [1; 16])?;
        host.add(bus.host(), &dev)?;
        let (ch, drv) = client(&bus, TYPE, [0; 16])?;
        ch.enable()?;
        assert!(drv.wait(|d| d.is(b"OTP")));
        let sc1 = FakeDevice::subchannel(&dev, 1)?;
        let late = FakeDevice::subchannel(&dev, 9)?;
        let letters = Letters::new(false)?;
        let sub = Channel::new(Role::Client, bus.clone())?;
        sub.set_state_callbacks(Arc::new(
            OfferOnClose {
                letters: letters.clone(),
                host: host.clone(),
                bus: bus.clone(),
                dev: dev.clone(),
                late: late.clone(),
            },
            GFP_KERNEL,
        )?)?;
        sub.set_packet_callbacks(Driver::new()?)?;
        sub.set_primary(&ch)?;
        sub.enable()?;
        host.offer_subchannel(bus.host(), &dev, &sc1, 1)?;
        assert!(letters.wait_for(b"OTP"));
        // A second client sub-channel waits for an offer.
        let (waiting, wdrv) = client(&bus, TYPE, [0; 16])?;
        waiting.set_primary(&ch)?;
        waiting.enable()?;
        assert!(!waiting.is_connected());
        ch.disable()?;
        assert!(letters.is(b"OTPSC"));
        assert!(drv.is(b"OTPSC"));
        // The late offer went to nobody: two opens (primary, sub-channel
        // 1), one close (the primary's, with its sub-channels).
        fsleep(Delta::from_millis(50));
        assert!(wdrv.is(b""));
        assert!(!waiting.is_connected());
        assert_eq!(host.opens.load(Ordering::SeqCst), 2);
        assert_eq!(host.closes.load(Ordering::SeqCst), 1);
        assert_eq!(bus.host().offers(), 1);
        waiting.disable()?;
        for c in [waiting, sub, ch] {
            c.cleanup()?;
        }
        Ok(())
    }
}

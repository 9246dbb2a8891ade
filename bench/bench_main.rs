// SPDX-License-Identifier: GPL-2.0

//! kmcl_bench: kmcl's in-kernel benchmark, run in the VM by `make bench`.
//!
//! On load it measures, on the loopback VMBus and through the exported API
//! (the Rust wrapper, as a driver uses it):
//!
//! - `full`: packets of each size through the whole KMCL path (send, BH
//!   dispatch, ProcessPacket, PacketComplete, and with a completion request
//!   the completion routine), with and without WAIT_FOR_COMPLETION;
//! - `ring`: the raw ring (the same `rust/protocol` files kmcl.ko uses) in
//!   one thread, for the same sizes, so the API's overhead is a ratio;
//! - `vs_hv`: kmcl's raw ring on kmcl's ring pages beside hv_vmbus's own
//!   ring code (`vmbus_sendpacket()` and `foreach_vmbus_pkt()` on a
//!   made-up channel over the same kind of ring), same sizes and counts;
//! - `hv_driver`: the same work as `full` done by a minimal driver written
//!   on hv_vmbus directly (`bench/hv_driver.c`), with and without
//!   completion requests, same sizes and counts;
//! - `sync`: SendSynchronousRequest round trips (median and p99);
//! - `pairs`: aggregate throughput with 1, 4, 16 and 64 channel pairs.
//!
//! With `stress=SECONDS` it instead runs a stress test: 32 channel pairs
//! with packets in flight while channels are paused, started, disabled and
//! enabled again at random; at the end every send's completion routine
//! must have run exactly once, with success or -ENODEV (`make check` runs
//! it from `tests/kselftest/kmcl/stress.sh`).
//!
//! With `hold=N` it instead connects N channel pairs with default settings
//! and keeps them until unloaded, so that `tests/vm/bench.sh` can read the
//! memory they take from `/proc/meminfo`.
//!
//! Results are kernel log lines `kmcl_bench: RESULT key=value ...` that
//! `scripts/bench_report.py` collects. Loading fails (-EIO) if a
//! measurement failed; otherwise the module stays loaded, idle, until it is
//! removed.

use core::sync::atomic::{
    AtomicBool,
    AtomicU32,
    AtomicU64,
    Ordering, //
};
use kernel::{
    new_spinlock_irq,
    prelude::*,
    sync::{Arc, SpinLockIrq},
    time::{delay::fsleep, Delta, Instant, Monotonic},
};

#[path = "../include/kmcl/rust/kmcl.rs"]
mod kmcl;

#[path = "../rust/protocol/mod.rs"]
#[allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    reason = "the benchmark uses the protocol layer's ring only"
)]
mod protocol;

module! {
    type: Bench,
    name: "kmcl_bench",
    authors: ["kmcl developers"],
    description: "kmcl in-kernel benchmark",
    license: "GPL",
    imports_ns: ["KMCL"],
    params: {
        packets: u32 {
            default: 100000,
            description: "Packets per measurement",
        },
        stress: u32 {
            default: 0,
            description: "Only run the stress test, for this many seconds",
        },
        hold: u32 {
            default: 0,
            description: "Only connect this many default channel pairs and keep them",
        },
        micro: u32 {
            default: 0,
            description: "Only time primitives (locks, atomics, fences), this many iterations each",
        },
        profile: u32 {
            default: 0,
            description: "Only measure this many packets on the ring and the full path without completions (for profiling)",
        },
        count: u32 {
            default: 0,
            description: "Only run the counted windows (make bench's per-packet counts), this many packets each",
        },
        profile_size: u32 {
            default: 64,
            description: "Packet size for profile (64 to 65536)",
        },
    },
}

const SIZES: [usize; 5] = [64, 256, 1024, 4096, 65536];
const WINDOW: u32 = 16;
const TYPE: kmcl::Guid = kmcl::Guid {
    b: [
        0x6b, 0x62, 0x65, 0x6e, 0x63, 0x68, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ],
};

fn instance(i: u32) -> kmcl::Guid {
    let mut g = TYPE;
    g.b[12..].copy_from_slice(&i.to_le_bytes());
    g
}

fn wait_for(ms: u32, what: impl Fn() -> bool) -> bool {
    let t = Instant::<Monotonic>::now();
    loop {
        if what() {
            return true;
        }
        if t.elapsed().as_millis() > i64::from(ms) {
            return what();
        }
        // Let the receive work run now, then nap briefly: the measured
        // times are not stretched by a coarse polling interval.
        run_softirqs();
        if what() {
            return true;
        }
        fsleep(Delta::from_micros(100));
    }
}

mod glue {
    extern "C" {
        pub(super) fn kmcl_bench_run_softirqs();
        pub(super) fn kmcl_bench_primitive(which: u32);
        pub(super) fn kmcl_bench_pin(cpu: u32) -> core::ffi::c_int;
        pub(super) fn kmcl_bench_mark();
        pub(super) fn kmcl_bench_thread_start(
            cpu: u32,
            f: unsafe extern "C" fn(*mut core::ffi::c_void) -> core::ffi::c_int,
            arg: *mut core::ffi::c_void,
        ) -> *mut core::ffi::c_void;
        pub(super) fn kmcl_bench_thread_stop(t: *mut core::ffi::c_void) -> core::ffi::c_int;
    }
}

/// Runs the softirqs pending on this CPU (kmcl's receive work among them)
/// instead of spinning while waiting for the receiver.
fn run_softirqs() {
    // SAFETY: takes no arguments; called from process context, where
    // disabling and enabling bottom halves is allowed.
    unsafe { glue::kmcl_bench_run_softirqs() }
}

/// Marks an edge of a counted window (`count=N`): the QEMU plugin
/// `tools/count/kmcl_count.c` reports what ran between two marks.
fn mark() {
    // SAFETY: takes no arguments and changes nothing (a no-op instruction).
    unsafe { glue::kmcl_bench_mark() }
}

/// Lets this thread run on `cpu` only (`None`: anywhere again).
fn pin(cpu: Option<u32>) -> Result {
    // SAFETY: changes the calling thread's affinity; process context.
    kernel::error::to_result(unsafe { glue::kmcl_bench_pin(cpu.unwrap_or(u32::MAX)) })
}

/// The server side: completes every packet with an empty payload, at
/// once, except (with `keep_external`) the last packet with external data
/// (payload tag [`EXTERNAL_TAG`]), which it keeps until the next such
/// packet or its Suspend.
#[pin_data]
struct Sink {
    running: AtomicBool,
    received: AtomicU64,
    keep_external: AtomicBool,
    #[pin]
    kept: SpinLockIrq<Option<kmcl::Incoming>>,
}

/// The first payload byte of the stress test's sends with external data.
const EXTERNAL_TAG: u8 = 0xe0;

impl Sink {
    /// Whether it keeps a packet with external data now.
    fn keeps(&self) -> bool {
        self.kept.lock().is_some()
    }

    /// Completes the kept packet, if any.
    fn release(&self) {
        let kept = self.kept.lock().take();
        if let Some(p) = kept {
            let _ = p.complete(&[]);
        }
    }
}

impl kmcl::Driver for Sink {
    fn started(&self, _c: kmcl::ChannelRef<'_>) {
        self.running.store(true, Ordering::SeqCst);
    }
    fn suspend(&self, _c: kmcl::ChannelRef<'_>) {
        // KMCL: every packet is completed by the end of Suspend.
        self.release();
    }
    fn process_packet(&self, _c: kmcl::ChannelRef<'_>, packet: kmcl::Incoming) {
        self.received.fetch_add(1, Ordering::Relaxed);
        let external = packet.data().first() == Some(&EXTERNAL_TAG);
        if external && self.keep_external.load(Ordering::Relaxed) {
            let older = self.kept.lock().replace(packet);
            if let Some(p) = older {
                let _ = p.complete(&[]);
            }
            return;
        }
        let _ = packet.complete(&[]);
    }
}

/// The client side's callbacks.
struct Source {
    running: AtomicBool,
}

impl kmcl::Driver for Source {
    fn started(&self, _c: kmcl::ChannelRef<'_>) {
        self.running.store(true, Ordering::SeqCst);
    }
    fn suspend(&self, _c: kmcl::ChannelRef<'_>) {
        self.running.store(false, Ordering::SeqCst);
    }
}

/// A connected loopback channel pair.
struct Pair {
    client: kmcl::Channel,
    source: Arc<Source>,
    sink: Arc<Sink>,
    server: kmcl::Channel,
}

impl Pair {
    /// A pair for the benchmarks: 64-KiB packets, 256-KiB rings.
    fn new(module: &'static ThisModule, i: u32) -> Result<Self> {
        Self::with(module, i, true, None)
    }

    /// A pair with kmcl's default settings (`big`: the benchmark's), the
    /// server's packets processed on CPU `target` (`None`: the sender's).
    fn with(module: &'static ThisModule, i: u32, big: bool, target: Option<u32>) -> Result<Self> {
        let sink = Arc::pin_init(
            pin_init!(Sink {
                running: AtomicBool::new(false),
                received: AtomicU64::new(0),
                keep_external: AtomicBool::new(false),
                kept <- new_spinlock_irq!(None),
            }),
            GFP_KERNEL,
        )?;
        let source = Arc::new(
            Source {
                running: AtomicBool::new(false),
            },
            GFP_KERNEL,
        )?;
        let mut server = kmcl::Channel::new(module, kmcl::Role::Server, sink.clone())?;
        server.set_offer(&TYPE, &instance(i))?;
        if big {
            server.set_maximum_packet_size(65536)?;
        }
        // One page of external data per packet (the stress test's).
        server.set_maximum_external_data(4096, 1)?;
        server.set_target_processor(target)?;
        server.enable()?;
        server.start()?;
        let mut client = kmcl::Channel::new(module, kmcl::Role::Client, source.clone())?;
        client.set_target(&TYPE, Some(&instance(i)))?;
        if big {
            client.set_maximum_packet_size(65536)?;
            client.set_ring_pages(64, 64)?;
        }
        client.enable()?;
        let up = wait_for(10_000, || {
            source.running.load(Ordering::SeqCst) && sink.running.load(Ordering::SeqCst)
        });
        if !up {
            return Err(ETIMEDOUT);
        }
        Ok(Pair {
            client,
            source,
            sink,
            server,
        })
    }
}

/// A window of reused packet objects, each sent again from its routine.
struct Flow {
    count: u64,
    size: usize,
    next: AtomicU64,
    done: AtomicU64,
    failed: AtomicU32,
    payload: KVec<u8>,
}

impl Flow {
    fn send_next(&self, packet: kmcl::Packet) {
        if self.next.fetch_add(1, Ordering::Relaxed) >= self.count {
            return;
        }
        if packet.send(&self.payload[..self.size], true).is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
            self.done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl kmcl::PacketDone for Flow {
    fn done(&self, packet: kmcl::Packet, status: Result, _reply: &[u8]) {
        if status.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.done.fetch_add(1, Ordering::Relaxed);
        self.send_next(packet);
    }
}

fn flow(size: usize, count: u64) -> Result<Arc<Flow>> {
    Ok(Arc::new(
        Flow {
            count,
            size,
            next: AtomicU64::new(0),
            done: AtomicU64::new(0),
            failed: AtomicU32::new(0),
            payload: KVec::from_elem(0x5a_u8, size, GFP_KERNEL)?,
        },
        GFP_KERNEL,
    )?)
}

/// Starts a window of `flow` on `pair`.
fn start(pair: &Pair, f: &Arc<Flow>) -> Result {
    for _ in 0..WINDOW {
        f.send_next(kmcl::Packet::new(pair.client.as_ref(), f.clone())?);
    }
    Ok(())
}

/// Full path with completions: `count` packets of `size`, in ns.
fn full_wait(pair: &Pair, size: usize, count: u64) -> Result<i64> {
    let f = flow(size, count)?;
    let t = Instant::<Monotonic>::now();
    start(pair, &f)?;
    if !wait_for(300_000, || f.done.load(Ordering::Relaxed) >= count) {
        return Err(ETIMEDOUT);
    }
    let ns = t.elapsed().as_nanos();
    if f.failed.load(Ordering::Relaxed) != 0 {
        return Err(EIO);
    }
    Ok(ns)
}

/// Full path without completions: each packet sent with
/// [`kmcl::ChannelRef::post`] (a packet object from the channel's
/// lookaside list, no routine: kmcl frees it to the list once the packet
/// is in the ring; no lock of the benchmark's own on the measured path)
/// from a loop, until the server got them all: ns, and how often the
/// sender waited for the server (a ring's worth ahead).
fn full_nowait(pair: &Pair, size: usize, count: u64) -> Result<(i64, u64)> {
    let payload = KVec::from_elem(0x5a_u8, size, GFP_KERNEL)?;
    let client = pair.client.as_ref();
    let base = pair.sink.received.load(Ordering::SeqCst);
    let t = Instant::<Monotonic>::now();
    let mut sent = 0;
    let mut waits = 0;
    while sent < count {
        // At most a ring's worth ahead of the server: no queue growth.
        if pair.sink.received.load(Ordering::Relaxed) + 256 < base + sent {
            waits += 1;
            run_softirqs();
            continue;
        }
        match client.post(&payload) {
            Ok(()) => sent += 1,
            // Back-pressure: kmcl's send queue is at its limit.
            Err(e) if e == ENOBUFS => run_softirqs(),
            Err(e) => return Err(e),
        }
    }
    if !wait_for(300_000, || {
        pair.sink.received.load(Ordering::Relaxed) >= base + count
    }) {
        return Err(ETIMEDOUT);
    }
    Ok((t.elapsed().as_nanos(), waits))
}

/// [`full_nowait`] with the sender on CPU 0, where the server's packets
/// are processed too (they run where the sender signals from).
fn one_cpu_nowait(pair: &Pair, size: usize, count: u64) -> Result<(i64, u64)> {
    pin(Some(0))?;
    let r = full_nowait(pair, size, count);
    pin(None)?;
    r
}

/// [`full_nowait`] with the sender on CPU 0 and the server's packets
/// processed on CPU 1 (its target processor); `None` with one CPU.
fn split_nowait(
    module: &'static ThisModule,
    size: usize,
    count: u64,
) -> Result<Option<(i64, u64)>> {
    if pin(Some(1)).is_err() {
        return Ok(None);
    }
    let pair = Pair::with(module, 1, true, Some(1))?;
    pin(Some(0))?;
    let r = full_nowait(&pair, size, warm_up(count)).and_then(|_| full_nowait(&pair, size, count));
    pin(None)?;
    r.map(Some)
}

/// Packets per batch of the one-thread ring measurements on a 256-KiB
/// ring: up to 64, as long as they fill at most half the ring (no
/// division by a run-time value: objtool).
fn ring_batch(size: usize) -> u64 {
    let mut batch = 64_u64;
    while batch > 1 && batch as usize * (size + 64) * 2 > 256 * 1024 {
        batch -= 1;
    }
    batch
}

/// The raw ring in one thread: batches written, committed, read back.
/// Returns the packets moved (`count` rounded up to whole batches) and ns.
fn raw_ring(size: usize, count: u64) -> Result<(u64, i64)> {
    use protocol::packet::PacketType;
    use protocol::ring::{
        init_control,
        IncomingRing,
        OutgoingRing,
        WordRingMemory,
        CONTROL_WORDS, //
    };
    let words = (256 * 1024) / 8;
    let mut data = KVec::with_capacity(words, GFP_KERNEL)?;
    for _ in 0..words {
        data.push(AtomicU64::new(0), GFP_KERNEL)?;
    }
    let control: [core::sync::atomic::AtomicU32; CONTROL_WORDS] =
        core::array::from_fn(|_| core::sync::atomic::AtomicU32::new(0));
    init_control(&control);
    let mem = || WordRingMemory::new(&control, &data);
    let mut out = OutgoingRing::new(mem()).map_err(|_| EINVAL)?;
    let mut inc = IncomingRing::new(mem()).map_err(|_| EINVAL)?;
    let payload = KVec::from_elem(0x5a_u8, size, GFP_KERNEL)?;
    let mut buf = KVec::from_elem(0_u8, size + 64, GFP_KERNEL)?;
    let batch = ring_batch(size);
    let t = Instant::<Monotonic>::now();
    let mut done = 0;
    while done < count {
        for _ in 0..batch {
            out.write(PacketType::InBand, &[], &payload, false, 0)
                .map_err(|_| EIO)?;
        }
        out.commit().map_err(|_| EIO)?;
        for _ in 0..batch {
            inc.read(&mut buf).map_err(|_| EIO)?.ok_or(EIO)?;
        }
        inc.commit();
        done += batch;
    }
    Ok((done, t.elapsed().as_nanos()))
}

/// kmcl's ring pages (`rust/shmem/ring_pages.rs`, the memory kmcl.ko's
/// channels use, copies through the kernel's `memcpy`), compiled into the
/// benchmark so that its raw ring is kmcl's as channels run it.
#[path = "../rust/shmem/ring_pages.rs"]
#[allow(
    dead_code,
    unreachable_pub,
    reason = "the benchmark uses new and base_addr"
)]
mod ring_pages;

/// hv_vmbus's own ring code on a made-up channel (`rust/glue/hv_channel.c`,
/// compiled into this module by `bench/kmcl_shared.c`).
mod hv {
    use core::ffi::c_void;

    extern "C" {
        fn kmcl_hvi_channel_new(
            inbound: *mut c_void,
            outbound: *mut c_void,
            pages: u32,
            max_pkt: u32,
        ) -> *mut c_void;
        fn kmcl_hvi_channel_free(ch: *mut c_void);
        fn kmcl_hvi_send(
            ch: *mut c_void,
            buf: *const u8,
            len: u32,
            requestid: u64,
            ptype: u16,
            flags: u32,
        ) -> i32;
        fn kmcl_hvi_read_all(ch: *mut c_void, bytes: *mut u64) -> u32;
    }

    /// A `struct vmbus_channel` whose inbound and outbound rings are both
    /// the ring of `RingPages` it was made for: what hv_vmbus writes with
    /// `vmbus_sendpacket()` it reads back with `foreach_vmbus_pkt()`.
    ///
    /// # Invariants
    ///
    /// `ch` is a live channel from `kmcl_hvi_channel_new` over `ring`'s
    /// pages, which `'a` keeps allocated; it is freed on drop.
    pub(super) struct Channel<'a> {
        ch: *mut c_void,
        _ring: &'a super::ring_pages::RingPages,
    }

    impl<'a> Channel<'a> {
        /// A channel over `ring` (a ring of `pages` pages with its control
        /// page), reading packets up to `max_pkt` bytes.
        pub(super) fn new(
            ring: &'a super::ring_pages::RingPages,
            max_pkt: u32,
        ) -> kernel::error::Result<Self> {
            let base = ring.base_addr() as *mut c_void;
            let pages = (ring.data_pages() + 1) as u32;
            // SAFETY: `base` is the page-aligned vmalloc ring of `pages`
            // pages that `ring` keeps allocated for `'a`, longer than the
            // channel lives (freed in drop).
            let ch = unsafe { kmcl_hvi_channel_new(base, base, pages, max_pkt) };
            if ch.is_null() {
                return Err(kernel::error::code::ENOMEM);
            }
            // INVARIANT: a live channel over `ring`, which `'a` keeps.
            Ok(Self { ch, _ring: ring })
        }

        /// `vmbus_sendpacket()` of an in-band packet without a completion
        /// request: 0 or a negative errno (-EAGAIN: the ring is full).
        pub(super) fn send(&self, buf: &[u8]) -> i32 {
            // SAFETY: `ch` is live (invariants); `buf` is valid for reads
            // of its length, which hv_vmbus copies before returning.
            unsafe { kmcl_hvi_send(self.ch, buf.as_ptr(), buf.len() as u32, 1, 6, 0) }
        }

        /// `foreach_vmbus_pkt()` over every packet there is: how many.
        pub(super) fn read_all(&self) -> u64 {
            let mut bytes = 0u64;
            // SAFETY: `ch` is live; `bytes` is a valid `u64`.
            let n = unsafe { kmcl_hvi_read_all(self.ch, &mut bytes) };
            core::hint::black_box(bytes);
            u64::from(n)
        }
    }

    impl Drop for Channel<'_> {
        fn drop(&mut self) {
            // SAFETY: `ch` came from `kmcl_hvi_channel_new` and is not
            // used again.
            unsafe { kmcl_hvi_channel_free(self.ch) };
        }
    }
}

/// kmcl's raw ring and hv_vmbus's ring code side by side, each on a ring
/// of 64 data pages of kmcl's ring pages: `count` packets of `size` in
/// batches, each packet published as it is sent (kmcl: write and commit;
/// hv_vmbus: `vmbus_sendpacket()`), then every packet read and copied out
/// of the ring (kmcl: `IncomingRing::read` into a buffer; hv_vmbus:
/// `foreach_vmbus_pkt`, whose `hv_pkt_iter_first()` copies each into the
/// channel's packet buffer) and the read index published. Returns the
/// packets moved and the nanoseconds of each.
fn ring_vs_hv(size: usize, count: u64) -> Result<(u64, i64, i64)> {
    use protocol::packet::PacketType;
    use protocol::ring::{
        IncomingRing,
        OutgoingRing, //
    };
    // Zeroed pages: both rings start empty.
    let kring = ring_pages::RingPages::new(64)?;
    let hring = ring_pages::RingPages::new(64)?;
    let ch = hv::Channel::new(&hring, 65536 + 64)?;
    let payload = KVec::from_elem(0x5a_u8, size, GFP_KERNEL)?;
    let mut buf = KVec::from_elem(0_u8, size + 64, GFP_KERNEL)?;
    let batch = ring_batch(size);

    let mut out = OutgoingRing::new(&kring).map_err(|_| EINVAL)?;
    let mut inc = IncomingRing::new(&kring).map_err(|_| EINVAL)?;
    let t = Instant::<Monotonic>::now();
    let mut done = 0;
    while done < count {
        for _ in 0..batch {
            out.write(PacketType::InBand, &[], &payload, false, 1)
                .map_err(|_| EIO)?;
            core::hint::black_box(out.commit().map_err(|_| EIO)?);
        }
        let mut got = 0;
        while let Some(p) = inc.read(&mut buf).map_err(|_| EIO)? {
            core::hint::black_box(p.payload(&buf));
            got += 1;
        }
        core::hint::black_box(inc.commit());
        if got != batch {
            return Err(EIO);
        }
        done += batch;
    }
    let kmcl_ns = t.elapsed().as_nanos();

    let t = Instant::<Monotonic>::now();
    let mut moved = 0;
    while moved < count {
        for _ in 0..batch {
            if ch.send(&payload) != 0 {
                return Err(EIO);
            }
        }
        if ch.read_all() != batch {
            return Err(EIO);
        }
        moved += batch;
    }
    let hv_ns = t.elapsed().as_nanos();
    Ok((done, kmcl_ns, hv_ns))
}

/// A raw ring shared by a writer on CPU 0 and a reader on CPU 1.
struct Ring2 {
    control: [core::sync::atomic::AtomicU32; protocol::ring::CONTROL_WORDS],
    data: KVec<AtomicU64>,
    /// Packets the reader is to read, and has read.
    count: u64,
    read: AtomicU64,
    /// Either side failed: the other stops.
    abort: AtomicBool,
}

/// [`Ring2`]'s memory: word memory under a type of its own, so that the
/// ring code is compiled for it separately and the compiler inlines each
/// copy into its one user, as it does for [`raw_ring`] (an out-of-line
/// ring makes a raw ring ~50% slower under TCG: the strictest baseline is
/// the inlined one).
struct Ring2Memory<'a>(protocol::ring::WordRingMemory<'a>);

impl protocol::ring::RingMemory for Ring2Memory<'_> {
    #[inline]
    fn control(&self) -> &[core::sync::atomic::AtomicU32; protocol::ring::CONTROL_WORDS] {
        self.0.control()
    }

    #[inline]
    fn data_len(&self) -> usize {
        self.0.data_len()
    }

    #[inline]
    fn read_data(&self, offset: usize, buf: &mut [u8]) {
        self.0.read_data(offset, buf)
    }

    #[inline]
    fn write_data(&self, offset: usize, buf: &[u8]) {
        self.0.write_data(offset, buf)
    }
}

impl Ring2 {
    fn mem(&self) -> Ring2Memory<'_> {
        Ring2Memory(protocol::ring::WordRingMemory::new(
            &self.control,
            &self.data,
        ))
    }

    /// The reader: reads until `count` packets came, returning each run
    /// of them to the writer when the ring is empty (or every 64).
    fn read_all(&self) -> Result {
        let mut inc = protocol::ring::IncomingRing::new(self.mem()).map_err(|_| EINVAL)?;
        let mut buf = KVec::from_elem(0_u8, self.data.len() * 8, GFP_KERNEL)?;
        let mut got = 0_u64;
        while got < self.count {
            if self.abort.load(Ordering::Relaxed) {
                return Err(EINTR);
            }
            match inc.read(&mut buf).map_err(|_| EIO)? {
                Some(_) => {
                    got += 1;
                    if got % 64 == 0 {
                        inc.commit();
                    }
                }
                None => {
                    inc.commit();
                    core::hint::spin_loop();
                }
            }
        }
        inc.commit();
        self.read.store(got, Ordering::Release);
        Ok(())
    }
}

/// The reader thread's body.
///
/// # Safety
///
/// `arg` is a `Ring2` that outlives the thread.
unsafe extern "C" fn ring2_reader(arg: *mut core::ffi::c_void) -> core::ffi::c_int {
    // SAFETY: the caller's promise.
    let ring = unsafe { &*arg.cast::<Ring2>() };
    match ring.read_all() {
        Ok(()) => 0,
        Err(e) => {
            ring.abort.store(true, Ordering::Relaxed);
            e.to_errno()
        }
    }
}

/// The raw ring across two CPUs: this thread (on CPU 0) writes `count`
/// packets of `size`, publishing each, as a VMBus writer does; a thread on
/// CPU 1 reads them. ns until the last was read; `None` with one CPU.
fn raw_ring_2cpus(size: usize, count: u64) -> Result<Option<i64>> {
    use protocol::packet::PacketType;
    use protocol::ring::{
        init_control,
        OutgoingRing,
        WriteError, //
    };
    let words = (256 * 1024) / 8;
    let mut data = KVec::with_capacity(words, GFP_KERNEL)?;
    for _ in 0..words {
        data.push(AtomicU64::new(0), GFP_KERNEL)?;
    }
    let ring = KBox::new(
        Ring2 {
            control: core::array::from_fn(|_| core::sync::atomic::AtomicU32::new(0)),
            data,
            count,
            read: AtomicU64::new(0),
            abort: AtomicBool::new(false),
        },
        GFP_KERNEL,
    )?;
    init_control(&ring.control);
    let mut out = OutgoingRing::new(ring.mem()).map_err(|_| EINVAL)?;
    let payload = KVec::from_elem(0x5a_u8, size, GFP_KERNEL)?;
    pin(Some(0))?;
    let arg = core::ptr::from_ref::<Ring2>(&ring).cast_mut().cast();
    // SAFETY: `ring` outlives the thread: it is stopped below, before
    // `ring` is dropped.
    let thread = unsafe { glue::kmcl_bench_thread_start(1, ring2_reader, arg) };
    if kernel::error::from_err_ptr(thread).is_err() {
        pin(None)?;
        return Ok(None);
    }
    let t = Instant::<Monotonic>::now();
    let mut sent = 0;
    let mut failed = Ok(());
    while sent < count && !ring.abort.load(Ordering::Relaxed) {
        match out.write(PacketType::InBand, &[], &payload, false, 0) {
            Ok(()) => {
                let _ = out.commit();
                sent += 1;
            }
            Err(WriteError::Full { .. }) => core::hint::spin_loop(),
            Err(_) => {
                failed = Err(EIO);
                break;
            }
        }
    }
    if failed.is_err() {
        ring.abort.store(true, Ordering::Relaxed);
    }
    while ring.read.load(Ordering::Acquire) < count && !ring.abort.load(Ordering::Relaxed) {
        core::hint::spin_loop();
    }
    let ns = t.elapsed().as_nanos();
    // SAFETY: the thread started above, stopped once.
    let rc = unsafe { glue::kmcl_bench_thread_stop(thread) };
    pin(None)?;
    failed?;
    kernel::error::to_result(rc)?;
    Ok(Some(ns))
}

/// Times primitives the data path uses, `n` iterations each: ns per
/// iteration in `RESULT kind=micro` lines.
fn micro(n: u32) -> Result {
    let time = |what: &str, f: &mut dyn FnMut()| {
        let t = Instant::<Monotonic>::now();
        for _ in 0..n {
            f();
        }
        let ns = t.elapsed().as_nanos();
        pr_info!("RESULT kind=micro op={} n={} ns={}\n", what, n, ns);
    };
    let irq = Arc::pin_init(new_spinlock_irq!(0u64), GFP_KERNEL)?;
    let plain = Arc::pin_init(kernel::new_spinlock!(0u64), GFP_KERNEL)?;
    let counter = AtomicU64::new(0);
    time("empty", &mut || {
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed)
    });
    time("spinlock_irq", &mut || *irq.lock() += 1);
    time("spinlock", &mut || *plain.lock() += 1);
    time("atomic_add", &mut || {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    time("fence", &mut || {
        counter.fetch_add(1, Ordering::Relaxed);
        core::sync::atomic::fence(Ordering::SeqCst)
    });
    let flag = AtomicBool::new(false);
    time("cmpxchg_store", &mut || {
        let _ = flag.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed);
        flag.store(false, Ordering::Release);
    });
    for (i, what) in [
        "c_call",
        "c_preempt",
        "c_irq",
        "c_spin",
        "c_spin_irqsave",
        "c_spin_bh",
    ]
    .iter()
    .enumerate()
    {
        // SAFETY: `i` names one of the glue's primitives; each is balanced.
        time(what, &mut || unsafe {
            glue::kmcl_bench_primitive(i as u32)
        });
    }
    time("arc_clone_drop", &mut || drop(irq.clone()));
    // 64 bytes copied by memcpy (which may be `rep movsb`) and as words.
    let src = [0x5a_u64; 8];
    let mut dst = [0_u64; 8];
    let mut bytes = [0_u8; 64];
    time("memcpy_64", &mut || {
        let from: &[u8] = core::hint::black_box(&[0x5a_u8; 64]);
        bytes[..from.len()].copy_from_slice(from);
    });
    time("words_64", &mut || {
        for (d, s) in dst.iter_mut().zip(core::hint::black_box(&src)) {
            // SAFETY: both are valid, aligned words.
            unsafe { core::ptr::write_volatile(d, *s) };
        }
    });
    let _ = core::hint::black_box((&bytes, &dst));
    time("bh_off_on", &mut || run_softirqs());
    Ok(())
}

/// The raw ring and the full path without completions on one CPU and on
/// two, `n` packets of `size`: their `RESULT` lines (with how often the
/// sender waited for the server).
fn ring_and_nowait(module: &'static ThisModule, pair: &Pair, size: usize, n: u64) -> Result {
    // Each measurement runs once untimed first: under TCG the first pass
    // over code also translates it, which would weigh most on the
    // shortest runs (the raw ring's).
    let warm = warm_up(n);
    raw_ring(size, warm)?;
    let (moved, ring) = raw_ring(size, n)?;
    pr_info!(
        "RESULT kind=ring size={} packets={} ns={}\n",
        size,
        moved,
        ring
    );
    ring_vs_hv(size, warm)?;
    let (moved, kmcl_ns, hv_ns) = ring_vs_hv(size, n)?;
    pr_info!(
        "RESULT kind=vs_hv size={} packets={} kmcl_ns={} hv_ns={}\n",
        size,
        moved,
        kmcl_ns,
        hv_ns
    );
    raw_ring_2cpus(size, warm)?;
    if let Some(ns) = raw_ring_2cpus(size, n)? {
        pr_info!(
            "RESULT kind=ring cpus=2 size={} packets={} ns={}\n",
            size,
            n,
            ns
        );
    }
    one_cpu_nowait(pair, size, warm)?;
    let (nowait, waits) = one_cpu_nowait(pair, size, n)?;
    pr_info!(
        "RESULT kind=full wait=0 size={} packets={} ns={} waits={}\n",
        size,
        n,
        nowait,
        waits
    );
    if let Some((split, waits)) = split_nowait(module, size, n)? {
        pr_info!(
            "RESULT kind=full wait=0 cpus=2 size={} packets={} ns={} waits={}\n",
            size,
            n,
            split,
            waits
        );
    }
    Ok(())
}

/// The minimal driver on hv_vmbus (`bench/hv_driver.c`) the full path is
/// compared with: the same work done with `vmbus_sendpacket()`, a tasklet
/// callback reading with `foreach_vmbus_pkt()`, completions sent back with
/// `vmbus_sendpacket()` and looked up by hv_vmbus's request ids.
mod hv_driver {
    use core::ffi::c_void;

    extern "C" {
        fn kmcl_bench_hv_new() -> *mut c_void;
        fn kmcl_bench_hv_free(h: *mut c_void);
        fn kmcl_bench_hv_start(
            h: *mut c_void,
            payload: *const u8,
            size: u32,
            count: u64,
            window: u32,
        );
        fn kmcl_bench_hv_completed(h: *mut c_void) -> u64;
        fn kmcl_bench_hv_received(h: *mut c_void) -> u64;
        fn kmcl_bench_hv_failed(h: *mut c_void) -> u64;
        fn kmcl_bench_hv_send_all(
            h: *mut c_void,
            payload: *const u8,
            size: u32,
            count: u64,
            ahead: u64,
        ) -> i32;
    }

    /// A client and a server channel of the minimal driver.
    ///
    /// # Invariants
    ///
    /// `h` is a live `struct kmcl_bench_hv`, freed on drop; `payload`
    /// outlives every packet sent from it (it is kept until drop, after
    /// the driver's tasklets are killed).
    pub(super) struct Driver {
        h: *mut c_void,
        payload: kernel::alloc::KVec<u8>,
    }

    impl Driver {
        pub(super) fn new() -> kernel::error::Result<Self> {
            // SAFETY: No arguments; the result is checked.
            let h = unsafe { kmcl_bench_hv_new() };
            if h.is_null() {
                return Err(kernel::error::code::ENOMEM);
            }
            let payload =
                kernel::alloc::KVec::from_elem(0x5a_u8, 65536, kernel::alloc::flags::GFP_KERNEL)?;
            // INVARIANT: live, and `payload` stays until drop.
            Ok(Self { h, payload })
        }

        /// Starts `count` packets of `size` with completion requests, a
        /// window of `window` in flight.
        pub(super) fn start(&self, size: usize, count: u64, window: u32) {
            let size = size.min(self.payload.len());
            // SAFETY: `h` is live; `payload` outlives the packets
            // (invariants); nothing else runs the window now.
            unsafe {
                kmcl_bench_hv_start(self.h, self.payload.as_ptr(), size as u32, count, window)
            }
        }

        /// Sends `count` packets of `size` without completion requests,
        /// at most `ahead` ahead of the server.
        pub(super) fn send_all(
            &self,
            size: usize,
            count: u64,
            ahead: u64,
        ) -> kernel::error::Result {
            let size = size.min(self.payload.len());
            // SAFETY: As in `start`; process context.
            let rc = unsafe {
                kmcl_bench_hv_send_all(self.h, self.payload.as_ptr(), size as u32, count, ahead)
            };
            kernel::error::to_result(rc)
        }

        pub(super) fn completed(&self) -> u64 {
            // SAFETY: `h` is live.
            unsafe { kmcl_bench_hv_completed(self.h) }
        }

        pub(super) fn received(&self) -> u64 {
            // SAFETY: `h` is live.
            unsafe { kmcl_bench_hv_received(self.h) }
        }

        pub(super) fn failed(&self) -> u64 {
            // SAFETY: `h` is live.
            unsafe { kmcl_bench_hv_failed(self.h) }
        }
    }

    impl Drop for Driver {
        fn drop(&mut self) {
            // SAFETY: `h` came from `kmcl_bench_hv_new` and is not used
            // again; freeing kills its tasklets before `payload` goes.
            unsafe { kmcl_bench_hv_free(self.h) };
        }
    }
}

/// The minimal hv_vmbus driver with completions: `count` packets of
/// `size`, a window of [`WINDOW`] in flight as [`full_wait`] keeps: ns.
fn hv_full_wait(d: &hv_driver::Driver, size: usize, count: u64) -> Result<i64> {
    let t = Instant::<Monotonic>::now();
    d.start(size, count, WINDOW);
    if !wait_for(300_000, || d.completed() >= count) {
        return Err(ETIMEDOUT);
    }
    let ns = t.elapsed().as_nanos();
    if d.failed() != 0 {
        return Err(EIO);
    }
    Ok(ns)
}

/// The minimal hv_vmbus driver without completions, sent from a loop on
/// CPU 0 at most 256 packets ahead of the server, as [`one_cpu_nowait`]
/// sends: ns.
fn hv_nowait(d: &hv_driver::Driver, size: usize, count: u64) -> Result<i64> {
    pin(Some(0))?;
    let base = d.received();
    let t = Instant::<Monotonic>::now();
    let r = d.send_all(size, count, 256).and_then(|()| {
        if wait_for(300_000, || d.received() >= base + count) {
            Ok(t.elapsed().as_nanos())
        } else {
            Err(ETIMEDOUT)
        }
    });
    pin(None)?;
    r
}

/// Both modes of the minimal hv_vmbus driver for `size`: `RESULT
/// kind=hv_driver` lines.
fn hv_driver_runs(size: usize, n: u64) -> Result {
    let d = hv_driver::Driver::new()?;
    hv_nowait(&d, size, warm_up(n))?;
    let ns = hv_nowait(&d, size, n)?;
    pr_info!(
        "RESULT kind=hv_driver wait=0 size={} packets={} ns={}\n",
        size,
        n,
        ns
    );
    hv_full_wait(&d, size, warm_up(n))?;
    let ns = hv_full_wait(&d, size, n)?;
    pr_info!(
        "RESULT kind=hv_driver wait=1 size={} packets={} ns={}\n",
        size,
        n,
        ns
    );
    Ok(())
}

/// The windows of `make bench`'s per-packet counts: kmcl's full path and
/// the minimal hv_vmbus driver, without and with completion requests, at
/// 64 B and 4 KiB, `n` packets each after an untimed pass. Each window lies
/// between two [`mark`]s and is named by the `COUNT` line after it
/// (`scripts/count_report.py` pairs them in order).
fn counts(module: &'static ThisModule, n: u64) -> Result {
    let pair = Pair::new(module, 0)?;
    let d = hv_driver::Driver::new()?;
    let warm = warm_up(n);
    // tests/vm/bench.sh reads the module symbols now.
    pr_info!("COUNT start\n");
    fsleep(Delta::from_secs(5));
    let window = |kind: &str, wait: u32, size: usize, run: &dyn Fn(u64) -> Result| -> Result {
        run(warm)?;
        mark();
        let r = run(n);
        mark();
        r?;
        pr_info!(
            "COUNT kind={} wait={} size={} packets={}\n",
            kind,
            wait,
            size,
            n
        );
        Ok(())
    };
    for size in [64, 4096] {
        window("full", 0, size, &|c| {
            one_cpu_nowait(&pair, size, c).map(|_| ())
        })?;
        window("hv_driver", 0, size, &|c| {
            hv_nowait(&d, size, c).map(|_| ())
        })?;
        window("full", 1, size, &|c| full_wait(&pair, size, c).map(|_| ()))?;
        window("hv_driver", 1, size, &|c| {
            hv_full_wait(&d, size, c).map(|_| ())
        })?;
    }
    pr_info!("COUNT done\n");
    Ok(())
}

/// The packets of the untimed pass before a measurement of `n`.
fn warm_up(n: u64) -> u64 {
    (n >> 3).max(100)
}

/// Synchronous request round trips: (median, p99) in ns.
fn sync_latency(pair: &Pair, count: usize) -> Result<(i64, i64)> {
    let mut times = KVec::with_capacity(count, GFP_KERNEL)?;
    let request = [0x5a_u8; 64];
    let mut reply = [0_u8; 64];
    for _ in 0..count {
        let t = Instant::<Monotonic>::now();
        pair.client.send_sync(&request, &mut reply, Some(5000))?;
        times.push(t.elapsed().as_nanos(), GFP_KERNEL)?;
    }
    heap_sort(&mut times);
    if !times.iter().zip(times.iter().skip(1)).all(|(a, b)| a <= b) {
        pr_err!("sync_latency: the times are not sorted\n");
        return Err(EINVAL);
    }
    let p99 = (count * 99 / 100).min(count - 1);
    Ok((times[count / 2], times[p99]))
}

/// Sorts `v` ascending. A heapsort with no panicking path: core's
/// `sort_unstable` calls panic helpers objtool does not know never
/// return ("falls through" warnings on the fast kernel).
fn heap_sort(v: &mut [i64]) {
    fn sift_down(v: &mut [i64], mut root: usize, end: usize) {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                return;
            }
            if let (Some(a), Some(b)) = (v.get(child), v.get(child + 1)) {
                if child + 1 < end && a < b {
                    child += 1;
                }
            }
            let (Some(&r), Some(&c)) = (v.get(root), v.get(child)) else {
                return;
            };
            if r >= c {
                return;
            }
            if let Some(x) = v.get_mut(root) {
                *x = c;
            }
            if let Some(x) = v.get_mut(child) {
                *x = r;
            }
            root = child;
        }
    }
    let n = v.len();
    for start in (0..n / 2).rev() {
        sift_down(v, start, n);
    }
    for end in (1..n).rev() {
        let (Some(&first), Some(&last)) = (v.first(), v.get(end)) else {
            return;
        };
        if let Some(x) = v.get_mut(0) {
            *x = last;
        }
        if let Some(x) = v.get_mut(end) {
            *x = first;
        }
        sift_down(v, 0, end);
    }
}

/// `n` pairs each sending `count / n` 64-byte packets with completions at
/// once: total packets and ns.
fn pairs(module: &'static ThisModule, n: u32, count: u64) -> Result<(u64, i64)> {
    let mut all = KVec::with_capacity(n as usize, GFP_KERNEL)?;
    for i in 0..n {
        all.push(Pair::new(module, 100 + i)?, GFP_KERNEL)?;
    }
    // `n` is a power of two: a shift, not a division (objtool).
    let per = (count >> n.trailing_zeros()).max(u64::from(WINDOW));
    let mut flows = KVec::with_capacity(n as usize, GFP_KERNEL)?;
    for _ in 0..n {
        flows.push(flow(64, per)?, GFP_KERNEL)?;
    }
    let t = Instant::<Monotonic>::now();
    for (p, f) in all.iter().zip(flows.iter()) {
        start(p, f)?;
    }
    let finished = || flows.iter().all(|f| f.done.load(Ordering::Relaxed) >= per);
    if !wait_for(300_000, finished) {
        return Err(ETIMEDOUT);
    }
    Ok((per * u64::from(n), t.elapsed().as_nanos()))
}

fn run(module: &'static ThisModule) -> Result {
    let count = u64::from(module_parameters::packets.value());
    let pair = Pair::new(module, 0)?;
    for size in SIZES {
        // Fewer of the large ones: the same bytes, roughly (sizes are
        // powers of two from 64: a shift, not a division, for objtool).
        let n = (count >> (size.trailing_zeros() - 6)).clamp(500, count);
        ring_and_nowait(module, &pair, size, n)?;
        full_wait(&pair, size, warm_up(n))?;
        let wait = full_wait(&pair, size, n)?;
        pr_info!(
            "RESULT kind=full wait=1 size={} packets={} ns={}\n",
            size,
            n,
            wait
        );
        hv_driver_runs(size, n)?;
    }
    let (median, p99) = sync_latency(&pair, 2000)?;
    pr_info!(
        "RESULT kind=sync size=64 median_ns={} p99_ns={}\n",
        median,
        p99
    );
    drop(pair);
    for n in [1, 4, 16, 64] {
        let (total, ns) = pairs(module, n, count)?;
        pr_info!(
            "RESULT kind=pairs pairs={} packets={} ns={}\n",
            n,
            total,
            ns
        );
    }
    Ok(())
}

/// One pair's sends in the stress test, counted by outcome.
struct StressFlow {
    go: AtomicBool,
    /// The pair's client is disabled (between Disable returning and the
    /// next Enable): no routine of it may run now.
    closed: AtomicBool,
    sent: AtomicU64,
    /// Sends with a completion request, completed by the server.
    ok: AtomicU64,
    /// Sends without one, written to the ring.
    written: AtomicU64,
    enodev: AtomicU64,
    other: AtomicU64,
    /// Routines that ran while the client was disabled.
    late: AtomicU64,
    /// Sends so far (every fourth asks for no completion, every fifth
    /// carries external data).
    seq: AtomicU64,
    payload: [u8; 64],
    external: [u8; 64],
    /// The external data of its sends (read by the servers).
    page: kernel::page::Page,
}

impl StressFlow {
    fn new() -> Result<Arc<Self>> {
        Ok(Arc::new(
            StressFlow {
                go: AtomicBool::new(true),
                closed: AtomicBool::new(false),
                sent: AtomicU64::new(0),
                ok: AtomicU64::new(0),
                written: AtomicU64::new(0),
                enodev: AtomicU64::new(0),
                other: AtomicU64::new(0),
                late: AtomicU64::new(0),
                seq: AtomicU64::new(0),
                payload: [0x5a; 64],
                external: [EXTERNAL_TAG; 64],
                page: kernel::page::Page::alloc_page(GFP_KERNEL)?,
            },
            GFP_KERNEL,
        )?)
    }

    fn send(&self, mut packet: kmcl::Packet) {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        // External data always asks for a completion.
        let wait = n % 5 == 0 || n % 4 != 3;
        // The tag says how the routine must count it.
        packet.set_tag(usize::from(wait));
        let sent = if n % 5 == 0 {
            // SAFETY: the page lives as long as this flow, which every
            // routine of it holds (the packet's routine is this flow).
            unsafe { packet.send_with_page(&self.external, &self.page, 0, 4096) }
        } else {
            packet.send(&self.payload, wait)
        };
        if sent.is_ok() {
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl kmcl::PacketDone for StressFlow {
    fn done(&self, mut packet: kmcl::Packet, status: Result, _reply: &[u8]) {
        if self.closed.load(Ordering::SeqCst) {
            self.late.fetch_add(1, Ordering::SeqCst);
        }
        let waited = packet.tag() == 1;
        match status {
            Ok(()) if waited => self.ok.fetch_add(1, Ordering::Relaxed),
            Ok(()) => self.written.fetch_add(1, Ordering::Relaxed),
            Err(e) if e == ENODEV => self.enodev.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.other.fetch_add(1, Ordering::Relaxed),
        };
        if status.is_ok() && self.go.load(Ordering::Relaxed) {
            self.send(packet);
        }
    }
}

/// Starts 8 packets on `pair`'s client.
fn stress_prime(pair: &Pair, flow: &Arc<StressFlow>) -> Result {
    for _ in 0..8 {
        flow.send(kmcl::Packet::new(pair.client.as_ref(), flow.clone())?);
    }
    Ok(())
}

/// Disables `pair`'s client (`how` it got there is the caller's), checks
/// that no routine runs while it is disabled, and enables it again
/// (`early`: disabled once more before it runs, then enabled again).
fn stress_reconnect(pair: &Pair, flow: &Arc<StressFlow>, early: bool) -> Result {
    // Every packet in flight completes with -ENODEV, before Disable
    // returns.
    pair.client.disable()?;
    flow.closed.store(true, Ordering::SeqCst);
    fsleep(Delta::from_millis(1));
    flow.closed.store(false, Ordering::SeqCst);
    if early {
        // Disable of a channel that never started: enabled, then disabled
        // before its connection is made or right after.
        pair.client.enable()?;
        pair.client.disable()?;
        flow.closed.store(true, Ordering::SeqCst);
        fsleep(Delta::from_millis(1));
        flow.closed.store(false, Ordering::SeqCst);
    }
    pair.client.enable()?;
    if !wait_for(5000, || pair.source.running.load(Ordering::SeqCst)) {
        return Err(ETIMEDOUT);
    }
    // Running again: a new window.
    stress_prime(pair, flow)
}

fn stress(module: &'static ThisModule, seconds: u32) -> Result {
    const PAIRS: u32 = 32;
    let mut pairs = KVec::with_capacity(PAIRS as usize, GFP_KERNEL)?;
    let mut flows = KVec::with_capacity(PAIRS as usize, GFP_KERNEL)?;
    for i in 0..PAIRS {
        let p = Pair::with(module, 2000 + i, false, None)?;
        p.sink.keep_external.store(true, Ordering::SeqCst);
        let flow = StressFlow::new()?;
        stress_prime(&p, &flow)?;
        pairs.push(p, GFP_KERNEL)?;
        flows.push(flow, GFP_KERNEL)?;
    }
    let t = Instant::<Monotonic>::now();
    let mut rng = 0x2545_f491_u32;
    let (mut pauses, mut reconnects, mut paused_disables, mut early_disables) =
        (0u32, 0u32, 0u32, 0u32);
    // Saves begun while the server kept a packet with external data, which
    // a save cannot hold: each must fail, give every packet back and let
    // delivery go on.
    let (mut saves_failed, mut saves_made) = (0u32, 0u32);
    while t.elapsed().as_millis() < i64::from(seconds) * 1000 {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let k = (rng & (PAIRS - 1)) as usize;
        let (pair, flow) = (&pairs[k], &flows[k]);
        match (rng >> 8) & 7 {
            0 | 1 => {
                pair.client.pause()?;
                fsleep(Delta::from_millis(1));
                pair.client.start()?;
                pauses += 1;
            }
            2 => {
                pair.server.pause()?;
                fsleep(Delta::from_millis(2));
                pair.server.start()?;
                pauses += 1;
            }
            3 => {
                stress_reconnect(pair, flow, false)?;
                reconnects += 1;
            }
            4 => {
                // Disable of a paused channel.
                pair.client.pause()?;
                stress_reconnect(pair, flow, false)?;
                reconnects += 1;
                paused_disables += 1;
            }
            5 => {
                stress_reconnect(pair, flow, true)?;
                reconnects += 1;
                early_disables += 1;
            }
            6 if pair.sink.keeps() => match pair.server.save_begin() {
                Err(e) if e == EOPNOTSUPP => saves_failed += 1,
                Err(_) => {}
                Ok(()) => saves_made += 1,
            },
            _ => fsleep(Delta::from_millis(5)),
        }
    }
    for f in flows.iter() {
        f.go.store(false, Ordering::SeqCst);
    }
    for (p, f) in pairs.iter().zip(flows.iter()) {
        p.client.disable()?;
        f.closed.store(true, Ordering::SeqCst);
    }
    // Packets the servers received (each completed at once).
    let received: u64 = pairs
        .iter()
        .map(|p| p.sink.received.load(Ordering::SeqCst))
        .sum();
    drop(pairs);
    let total = |f: fn(&StressFlow) -> &AtomicU64| -> u64 {
        flows.iter().map(|x| f(x).load(Ordering::SeqCst)).sum()
    };
    let (sent, ok, written, enodev, other, late) = (
        total(|f| &f.sent),
        total(|f| &f.ok),
        total(|f| &f.written),
        total(|f| &f.enodev),
        total(|f| &f.other),
        total(|f| &f.late),
    );
    pr_info!(
        "RESULT kind=stress pairs={} seconds={} pauses={} reconnects={} paused_disables={} early_disables={} saves_failed={} saves_made={} sent={} ok={} written={} enodev={} other={} late={} received={}\n",
        PAIRS,
        seconds,
        pauses,
        reconnects,
        paused_disables,
        early_disables,
        saves_failed,
        saves_made,
        sent,
        ok,
        written,
        enodev,
        other,
        late,
        received
    );
    // A completed send was received; a received one was sent (a
    // completion lost to a disconnect ends its send with -ENODEV; a
    // written one may be lost to it).
    if ok > received || received > sent {
        pr_err!(
            "stress: {} sends, {} received, {} completed\n",
            sent,
            received,
            ok
        );
        return Err(EIO);
    }
    if sent != ok + written + enodev || other != 0 {
        pr_err!(
            "stress: {} sends but {} routines ran\n",
            sent,
            ok + written + enodev + other
        );
        return Err(EIO);
    }
    if saves_made != 0 {
        pr_err!(
            "stress: {} saves succeeded though a packet with external data was held\n",
            saves_made
        );
        return Err(EIO);
    }
    if late != 0 {
        pr_err!(
            "stress: {} routines ran after their channel's Disable returned\n",
            late
        );
        return Err(EIO);
    }
    Ok(())
}

struct Bench {
    _held: KVec<Pair>,
}

impl kernel::Module for Bench {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let seconds = module_parameters::stress.value();
        if seconds > 0 {
            stress(module, seconds).inspect_err(|e| pr_err!("stress failed: {:?}\n", e))?;
            return Ok(Bench { _held: KVec::new() });
        }
        let hold = module_parameters::hold.value();
        if hold > 0 {
            let mut held = KVec::with_capacity(hold as usize, GFP_KERNEL)?;
            for i in 0..hold {
                held.push(Pair::with(module, 1000 + i, false, None)?, GFP_KERNEL)?;
            }
            pr_info!("RESULT kind=hold pairs={}\n", hold);
            return Ok(Bench { _held: held });
        }
        let micro_n = module_parameters::micro.value();
        if micro_n > 0 {
            micro(micro_n)?;
            return Ok(Bench { _held: KVec::new() });
        }
        let count = module_parameters::count.value();
        if count > 0 {
            counts(module, u64::from(count)).inspect_err(|e| pr_err!("count failed: {:?}\n", e))?;
            return Ok(Bench { _held: KVec::new() });
        }
        let profile = module_parameters::profile.value();
        if profile > 0 {
            let size = module_parameters::profile_size.value().clamp(64, 65536) as usize;
            let n = u64::from(profile);
            let pair = Pair::new(module, 0)?;
            ring_and_nowait(module, &pair, size, n)?;
            return Ok(Bench { _held: KVec::new() });
        }
        match run(module) {
            Ok(()) => {
                pr_info!("RESULT done\n");
                Ok(Bench { _held: KVec::new() })
            }
            Err(e) => {
                pr_err!("benchmark failed: {:?}\n", e);
                Err(EIO)
            }
        }
    }
}

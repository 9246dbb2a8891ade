// SPDX-License-Identifier: GPL-2.0

//! Ring throughput on the host: the ring source files kmcl.ko compiles,
//! benchmarked with criterion (`make bench` runs this and reports).
//!
//! - `ring_1t/<size>`: one thread writes a batch of in-band packets,
//!   commits, reads them back and commits, on a 1 MiB ring whose payload
//!   is copied with the platform's `memcpy` ([`HostRing`], as `kmcl.ko`
//!   copies with the kernel's);
//! - `ring_1t_256k/<size>`: the same on a 256 KiB ring;
//! - `ring_1t_words/<size>`: the same on a 1 MiB ring of atomic words
//!   ([`WordRingMemory`]: copies a word at a time, as kmcl did before);
//! - `ring_2t/<size>`: a producer thread and a consumer thread, one per
//!   core, stream packets through a 1 MiB [`HostRing`];
//! - `memcpy/<size>`: the same payload bytes copied twice with plain
//!   `copy_from_slice` (a ring copies each payload in and out), the
//!   ceiling a copying ring is compared with.
//!
//! Each benchmark's throughput is set in bytes; `scripts/bench_report.py`
//! turns criterion's estimates into packets/s, bytes/s and the ratio to
//! memcpy.

use std::hint::black_box;
use std::sync::atomic::{
    AtomicU32,
    AtomicU64, //
};
use std::time::{
    Duration,
    Instant, //
};

use criterion::{
    criterion_group,
    criterion_main,
    BenchmarkId,
    Criterion,
    Throughput, //
};
use kmcl_protocol::host_ring::HostRing;
use kmcl_protocol::packet::PacketType;
use kmcl_protocol::ring::{
    init_control,
    IncomingRing,
    OutgoingRing,
    RingMemory,
    WordRingMemory,
    WriteError,
    CONTROL_WORDS, //
};

/// Payload sizes, bytes.
const SIZES: [usize; 5] = [64, 256, 1024, 4096, 65536];
/// Ring data area: 1 MiB (room for several 64-KiB packets).
const RING: usize = 1 << 20;

/// Packets per batch of the one-thread benchmark for `size` on a ring of
/// `ring` bytes: up to 64, no more than fill half the ring.
fn batch(size: usize, ring: usize) -> usize {
    (ring / (size + 64) / 2).clamp(1, 64)
}

/// A ring of atomic words (the memory kmcl copied word by word).
struct Words {
    control: [AtomicU32; CONTROL_WORDS],
    data: Vec<AtomicU64>,
}

impl Words {
    fn new(bytes: usize) -> Self {
        let r = Words {
            control: std::array::from_fn(|_| AtomicU32::new(0)),
            data: (0..bytes / 8).map(|_| AtomicU64::new(0)).collect(),
        };
        init_control(&r.control);
        r
    }

    fn mem(&self) -> WordRingMemory<'_> {
        WordRingMemory::new(&self.control, &self.data)
    }
}

/// A bulk-copy ring of `bytes`.
fn host_ring(bytes: usize) -> HostRing {
    // SAFETY: each benchmark uses one writer end and one reader end.
    unsafe { HostRing::new(bytes) }
}

/// One thread: a batch written, committed, read back, committed.
fn one_thread_on<M: RingMemory>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    size: usize,
    n: usize,
    writer: M,
    reader: M,
) {
    let mut out = OutgoingRing::new(writer).unwrap();
    let mut inc = IncomingRing::new(reader).unwrap();
    let payload = vec![0x5a_u8; size];
    let mut buf = vec![0_u8; size + 64];
    g.throughput(Throughput::Bytes((size * n) as u64));
    g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
        b.iter(|| {
            for _ in 0..n {
                out.write(PacketType::InBand, &[], &payload, false, 0)
                    .unwrap();
            }
            out.commit().unwrap();
            for _ in 0..n {
                let p = inc.read(&mut buf).unwrap().unwrap();
                black_box(p.payload(&buf));
            }
            inc.commit();
        })
    });
}

fn one_thread(c: &mut Criterion) {
    for (name, bytes) in [("ring_1t", RING), ("ring_1t_256k", RING / 4)] {
        let mut g = c.benchmark_group(name);
        for size in SIZES {
            let ring = host_ring(bytes);
            one_thread_on(&mut g, size, batch(size, bytes), &ring, &ring);
        }
        g.finish();
    }
    let mut g = c.benchmark_group("ring_1t_words");
    for size in SIZES {
        let ring = Words::new(RING);
        one_thread_on(&mut g, size, batch(size, RING), ring.mem(), ring.mem());
    }
    g.finish();
}

/// Streams `packets` packets of `size` bytes from a producer thread to a
/// consumer thread; returns the time it took.
fn stream(ring: &HostRing, size: usize, packets: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut out = OutgoingRing::new(ring).unwrap();
            let payload = vec![0x5a_u8; size];
            let mut sent = 0;
            while sent < packets {
                match out.write(PacketType::InBand, &[], &payload, false, 0) {
                    Ok(()) => {
                        sent += 1;
                        if sent % 16 == 0 {
                            out.commit().unwrap();
                        }
                    }
                    Err(WriteError::Full { .. }) => {
                        out.commit().unwrap();
                        std::hint::spin_loop();
                    }
                    Err(e) => panic!("write: {e:?}"),
                }
            }
            out.commit().unwrap();
        });
        s.spawn(|| {
            let mut inc = IncomingRing::new(ring).unwrap();
            let mut buf = vec![0_u8; size + 64];
            let mut got = 0;
            while got < packets {
                match inc.read(&mut buf).unwrap() {
                    Some(p) => {
                        black_box(p.payload(&buf));
                        got += 1;
                        if got % 16 == 0 {
                            inc.commit();
                        }
                    }
                    None => {
                        inc.commit();
                        std::hint::spin_loop();
                    }
                }
            }
            inc.commit();
        });
    });
    start.elapsed()
}

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_2t");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter_custom(|iters| {
                let ring = host_ring(RING);
                stream(&ring, size, iters)
            })
        });
    }
    g.finish();
}

fn memcpy(c: &mut Criterion) {
    let mut g = c.benchmark_group("memcpy");
    for size in SIZES {
        let n = batch(size, RING);
        let src = vec![0x5a_u8; size];
        // Each copy goes to its own place, as ring slots do.
        let mut dst = vec![0_u8; size * n];
        let mut back = vec![0_u8; size];
        g.throughput(Throughput::Bytes((size * n) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                for slot in dst.chunks_exact_mut(size) {
                    slot.copy_from_slice(black_box(&src));
                    back.copy_from_slice(black_box(slot));
                }
                black_box(&back);
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = one_thread, two_threads, memcpy
}
criterion_main!(benches);

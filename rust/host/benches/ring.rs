// SPDX-License-Identifier: GPL-2.0

//! Ring throughput on the host: the ring source files kmcl.ko compiles,
//! benchmarked with criterion (`make bench` runs this and reports).
//!
//! - `ring_1t/<size>`: one thread writes a batch of in-band packets,
//!   commits, reads them back and commits.
//! - `ring_2t/<size>`: a producer thread and a consumer thread, one per
//!   core, stream packets through the ring.
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
use kmcl_protocol::packet::PacketType;
use kmcl_protocol::ring::{
    init_control, IncomingRing, OutgoingRing, WordRingMemory, WriteError, CONTROL_WORDS,
};

/// Payload sizes, bytes.
const SIZES: [usize; 5] = [64, 256, 1024, 4096, 65536];
/// Ring data area: 1 MiB (room for several 64-KiB packets).
const RING_WORDS: usize = (1 << 20) / 8;

/// Packets per batch of the one-thread benchmark for `size`: up to 64,
/// fewer when that many would not fit the ring.
fn batch(size: usize) -> usize {
    ((RING_WORDS * 8) / (size + 64) / 2).clamp(1, 64)
}

struct Ring {
    control: [AtomicU32; CONTROL_WORDS],
    data: Vec<AtomicU64>,
}

impl Ring {
    fn new() -> Self {
        let r = Ring {
            control: std::array::from_fn(|_| AtomicU32::new(0)),
            data: (0..RING_WORDS).map(|_| AtomicU64::new(0)).collect(),
        };
        init_control(&r.control);
        r
    }

    fn mem(&self) -> WordRingMemory<'_> {
        WordRingMemory::new(&self.control, &self.data)
    }
}

fn one_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_1t");
    for size in SIZES {
        let n = batch(size);
        let ring = Ring::new();
        let mut out = OutgoingRing::new(ring.mem()).unwrap();
        let mut inc = IncomingRing::new(ring.mem()).unwrap();
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
    g.finish();
}

/// Streams `packets` packets of `size` bytes from a producer thread to a
/// consumer thread; returns the time it took.
fn stream(ring: &Ring, size: usize, packets: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut out = OutgoingRing::new(ring.mem()).unwrap();
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
            let mut inc = IncomingRing::new(ring.mem()).unwrap();
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
                let ring = Ring::new();
                stream(&ring, size, iters)
            })
        });
    }
    g.finish();
}

fn memcpy(c: &mut Criterion) {
    let mut g = c.benchmark_group("memcpy");
    for size in SIZES {
        let n = batch(size);
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

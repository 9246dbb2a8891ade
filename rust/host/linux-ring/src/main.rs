// SPDX-License-Identifier: GPL-2.0

//! kmcl's ring and Linux's ring code side by side, in one process, in
//! interleaved rounds (`make bench`; Documentation/performance.rst).
//!
//! Both move in-band packets of 64 B to 64 KiB through one ring of 256 KiB
//! or 1 MiB the way a driver does: every packet is published when it is
//! sent (kmcl: `OutgoingRing::write` + `commit`; Linux:
//! `vmbus_sendpacket_getid()` → `hv_ringbuffer_write()`), and the reader
//! takes every packet there is, copying each out of the ring, then
//! publishes its index once (kmcl: `IncomingRing::read` until empty +
//! `commit`; Linux: `foreach_vmbus_pkt()`, whose `hv_pkt_iter_first()`
//! copies each packet into the channel's packet buffer). kmcl's ring is
//! [`HostRing`] (payload copied with the platform's `memcpy`, as Linux's
//! is). One thread: batches of up to 64 packets sent then read; two
//! threads: a sender and a reader streaming, the reader publishing after
//! every 16 packets and when the ring is empty (Linux: `hv_pkt_iter_next`
//! and `hv_pkt_iter_close` as netvsc's poll uses them with a budget). Also
//! the two-copy `memcpy` of the same payload, the ceiling of a copying
//! ring.
//!
//! `ONLY=<threads>,<ring KiB>,<size>` runs one figure (for profiling).
//!
//! Prints a table and writes `linux-ring.csv` into the directory given as
//! the first argument (default `.`). `ROUNDS` sets the rounds per figure
//! (default 9); each figure is the median round.

use std::ffi::c_void;
use std::hint::black_box;
use std::io::Write;
use std::time::Instant;

use kmcl_protocol::host_ring::HostRing;
use kmcl_protocol::packet::PacketType;
use kmcl_protocol::ring::{
    IncomingRing,
    OutgoingRing,
    WriteError, //
};

mod ffi {
    use std::ffi::c_void;

    extern "C" {
        pub fn lr_new(data_bytes: u32, max_pkt: u32) -> *mut c_void;
        pub fn lr_send(r: *mut c_void, buf: *const u8, len: u32, id: u64, completion: bool) -> i32;
        pub fn lr_read_all(r: *mut c_void, bytes: *mut u64) -> u32;
        pub fn lr_read_some(r: *mut c_void, budget: u32, bytes: *mut u64) -> u32;
        pub fn lr_signals(r: *mut c_void) -> u64;
    }
}

/// A channel of Linux's ring code (harness.c).
///
/// # Invariants
///
/// `ptr` is a live `lr_ring` (never freed: rings live as long as the
/// process).
struct LinuxRing {
    ptr: *mut c_void,
}

// SAFETY: The sender only touches the channel's outbound ring state and
// the reader only its inbound state, as in the kernel, where they run on
// different CPUs; the shared pages are accessed the way Linux's ring code
// accesses them.
unsafe impl Sync for LinuxRing {}
// SAFETY: See `Sync`; the pointer is not tied to a thread.
unsafe impl Send for LinuxRing {}

impl LinuxRing {
    fn new(data_bytes: usize, max_pkt: usize) -> Self {
        // SAFETY: Plain values; the result is checked.
        let ptr = unsafe { ffi::lr_new(data_bytes as u32, max_pkt as u32) };
        assert!(!ptr.is_null(), "lr_new failed");
        // INVARIANT: checked non-null; never freed.
        Self { ptr }
    }

    /// Sends `buf`; false if the ring is full.
    fn send(&self, buf: &[u8]) -> bool {
        // SAFETY: `ptr` is live; `buf` is valid for its length.
        let rc = unsafe { ffi::lr_send(self.ptr, buf.as_ptr(), buf.len() as u32, 1, false) };
        assert!(rc == 0 || rc == -11, "vmbus_sendpacket: {rc}");
        rc == 0
    }

    /// Reads every packet there is; returns how many.
    fn read_all(&self) -> u64 {
        let mut bytes = 0u64;
        // SAFETY: `ptr` is live; `bytes` is a valid u64.
        let n = unsafe { ffi::lr_read_all(self.ptr, &mut bytes) };
        black_box(bytes);
        u64::from(n)
    }

    /// Reads up to `budget` packets, publishing after them.
    fn read_some(&self, budget: u32) -> u64 {
        let mut bytes = 0u64;
        // SAFETY: `ptr` is live; `bytes` is a valid u64.
        let n = unsafe { ffi::lr_read_some(self.ptr, budget, &mut bytes) };
        black_box(bytes);
        u64::from(n)
    }

    fn signals(&self) -> u64 {
        // SAFETY: `ptr` is live.
        unsafe { ffi::lr_signals(self.ptr) }
    }
}

const SIZES: [usize; 6] = [64, 256, 1024, 4096, 16384, 65536];

fn batch(size: usize, ring: usize) -> u64 {
    (ring / (size + 64) / 2).clamp(1, 64) as u64
}

/// Packets per round: 256 MiB of payload, at least 4,096 and at most
/// 2,000,000 packets (a round takes 30-150 ms here).
fn packets(size: usize) -> u64 {
    ((256usize << 20) / size).clamp(4096, 2_000_000) as u64
}

/// Two threads: the reader publishes its index after this many packets
/// and whenever the ring is empty (Linux: a NAPI-style budget).
const BUDGET: u64 = 16;

/// One thread, kmcl: batches sent (each published) and read back.
fn kmcl_1t(ring: &HostRing, size: usize, count: u64) -> f64 {
    let mut out = OutgoingRing::new(ring).unwrap();
    let mut inc = IncomingRing::new(ring).unwrap();
    let payload = vec![0x5a_u8; size];
    let mut buf = vec![0_u8; size + 64];
    let n = batch(size, ring_len(ring));
    let t = Instant::now();
    let mut done = 0;
    while done < count {
        for _ in 0..n {
            out.write(PacketType::InBand, &[], &payload, false, 1)
                .unwrap();
            black_box(out.commit().unwrap());
        }
        let mut got = 0;
        while let Some(p) = inc.read(&mut buf).unwrap() {
            black_box(p.payload(&buf));
            got += 1;
        }
        black_box(inc.commit());
        assert_eq!(got, n);
        done += n;
    }
    done as f64 / t.elapsed().as_secs_f64()
}

fn ring_len(ring: &HostRing) -> usize {
    use kmcl_protocol::ring::RingMemory;
    ring.data_len()
}

/// One thread, Linux: the same with vmbus_sendpacket and foreach_vmbus_pkt.
fn linux_1t(ring: &LinuxRing, ring_bytes: usize, size: usize, count: u64) -> f64 {
    let payload = vec![0x5a_u8; size];
    let n = batch(size, ring_bytes);
    let t = Instant::now();
    let mut done = 0;
    while done < count {
        for _ in 0..n {
            assert!(ring.send(&payload));
        }
        assert_eq!(ring.read_all(), n);
        done += n;
    }
    done as f64 / t.elapsed().as_secs_f64()
}

/// Two threads, kmcl: a sender and a reader streaming `count` packets.
fn kmcl_2t(ring: &HostRing, size: usize, count: u64) -> f64 {
    let t = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut out = OutgoingRing::new(ring).unwrap();
            let payload = vec![0x5a_u8; size];
            let mut sent = 0;
            while sent < count {
                match out.write(PacketType::InBand, &[], &payload, false, 1) {
                    Ok(()) => {
                        black_box(out.commit().unwrap());
                        sent += 1;
                    }
                    Err(WriteError::Full { .. }) => std::hint::spin_loop(),
                    Err(e) => panic!("write: {e:?}"),
                }
            }
        });
        s.spawn(|| {
            let mut inc = IncomingRing::new(ring).unwrap();
            let mut buf = vec![0_u8; size + 64];
            let mut got = 0;
            while got < count {
                match inc.read(&mut buf).unwrap() {
                    Some(p) => {
                        black_box(p.payload(&buf));
                        got += 1;
                        if got % BUDGET == 0 {
                            black_box(inc.commit());
                        }
                    }
                    None => {
                        black_box(inc.commit());
                        std::hint::spin_loop();
                    }
                }
            }
        });
    });
    count as f64 / t.elapsed().as_secs_f64()
}

/// Two threads, Linux.
fn linux_2t(ring: &LinuxRing, size: usize, count: u64) -> f64 {
    let t = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let payload = vec![0x5a_u8; size];
            let mut sent = 0;
            while sent < count {
                if ring.send(&payload) {
                    sent += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
        });
        s.spawn(|| {
            let mut got = 0;
            while got < count {
                let n = ring.read_some(BUDGET as u32);
                if n == 0 {
                    std::hint::spin_loop();
                }
                got += n;
            }
        });
    });
    count as f64 / t.elapsed().as_secs_f64()
}

/// Two copies of each payload (into a slot and back out): packets/s.
fn memcpy_2x(size: usize, count: u64) -> f64 {
    let n = batch(size, 1 << 20) as usize;
    let src = vec![0x5a_u8; size];
    let mut slots = vec![0_u8; size * n];
    let mut back = vec![0_u8; size];
    let t = Instant::now();
    let mut done = 0;
    while done < count {
        for slot in slots.chunks_exact_mut(size) {
            slot.copy_from_slice(black_box(&src));
            back.copy_from_slice(black_box(slot));
        }
        black_box(&back);
        done += n as u64;
    }
    done as f64 / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(9);
    let mut csv = std::fs::File::create(format!("{dir}/linux-ring.csv")).expect("csv");
    writeln!(
        csv,
        "threads,ring_bytes,size,kmcl_pps,linux_pps,ratio,kmcl_bytes_per_s,memcpy2x_pps,kmcl_over_memcpy,linux_over_memcpy"
    )
    .unwrap();
    println!(
        "{:<8} {:>6} {:>7} {:>12} {:>12} {:>6} {:>10} {:>8} {:>8}",
        "threads",
        "ring",
        "size",
        "kmcl pkt/s",
        "linux pkt/s",
        "ratio",
        "kmcl GB/s",
        "k/memcpy",
        "l/memcpy"
    );
    let only: Option<Vec<usize>> = std::env::var("ONLY")
        .ok()
        .map(|v| v.split(',').map(|x| x.parse().expect("ONLY")).collect());
    for threads in [1, 2] {
        for ring_bytes in [256usize << 10, 1 << 20] {
            if only
                .as_ref()
                .is_some_and(|o| o[0] != threads || o[1] << 10 != ring_bytes)
            {
                continue;
            }
            // SAFETY: one sender end and one reader end at a time.
            let kring = unsafe { HostRing::new(ring_bytes) };
            let lring = LinuxRing::new(ring_bytes, 65536 + 64);
            for size in SIZES {
                if only.as_ref().is_some_and(|o| o[2] != size) {
                    continue;
                }
                let count = packets(size);
                let (mut k, mut l, mut m) = (Vec::new(), Vec::new(), Vec::new());
                for r in 0..rounds + 1 {
                    // Alternate which goes first.
                    let kmcl = || {
                        if threads == 1 {
                            kmcl_1t(&kring, size, count)
                        } else {
                            kmcl_2t(&kring, size, count)
                        }
                    };
                    let linux = || {
                        if threads == 1 {
                            linux_1t(&lring, ring_bytes, size, count)
                        } else {
                            linux_2t(&lring, size, count)
                        }
                    };
                    let (kv, lv) = if r % 2 == 0 {
                        let kv = kmcl();
                        (kv, linux())
                    } else {
                        let lv = linux();
                        (kmcl(), lv)
                    };
                    let mv = if threads == 1 {
                        memcpy_2x(size, count)
                    } else {
                        0.0
                    };
                    // The first round warms caches and is not counted.
                    if r > 0 {
                        k.push(kv);
                        l.push(lv);
                        m.push(mv);
                    }
                }
                let (k, l, m) = (median(k), median(l), median(m));
                let (km, lm) = if m > 0.0 {
                    (k / m, l / m)
                } else {
                    (f64::NAN, f64::NAN)
                };
                println!(
                    "{:<8} {:>6} {:>7} {:>12.0} {:>12.0} {:>6.2} {:>10.2} {:>8.2} {:>8.2}",
                    threads,
                    ring_bytes >> 10,
                    size,
                    k,
                    l,
                    k / l,
                    k * size as f64 / 1e9,
                    km,
                    lm
                );
                writeln!(
                    csv,
                    "{threads},{ring_bytes},{size},{k:.0},{l:.0},{:.4},{:.0},{m:.0},{km:.4},{lm:.4}",
                    k / l,
                    k * size as f64
                )
                .unwrap();
            }
            black_box(lring.signals());
        }
    }
}

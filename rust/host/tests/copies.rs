// SPDX-License-Identifier: GPL-2.0

//! The ring with bulk copies ([`HostRing`], the platform's `memcpy`) is
//! byte-exact across the wrap point at every alignment: packets of every
//! length from 0 to 300 bytes and larger ones, starting at every 8-byte
//! offset before the end of the data area, from and into buffers at every
//! byte alignment, come out as they went in, and leave the data area byte
//! for byte as the word-at-a-time memory does.

use std::sync::atomic::{
    AtomicU32,
    AtomicU64, //
};

use kmcl_protocol::host_ring::HostRing;
use kmcl_protocol::packet::PacketType;
use kmcl_protocol::ring::{
    IncomingRing,
    OutgoingRing,
    RingMemory,
    WordRingMemory,
    CONTROL_WORDS, //
};

const RING: usize = 4096;

fn byte(i: usize, seed: usize) -> u8 {
    (i.wrapping_mul(131) ^ seed.wrapping_mul(7) ^ (i >> 8)) as u8
}

/// Moves one packet of `len` bytes (sent from `src_align`, received at
/// `dst_align`) through rings whose next packet starts at `start`, on both
/// kinds of memory, and checks the payload and both data areas.
fn one(start: usize, len: usize, src_align: usize, dst_align: usize) {
    // SAFETY: used from this thread only.
    let bulk = unsafe { HostRing::new(RING) };
    let control: [AtomicU32; CONTROL_WORDS] = std::array::from_fn(|_| AtomicU32::new(0));
    let data: Vec<AtomicU64> = (0..RING / 8).map(|_| AtomicU64::new(0)).collect();
    let words = WordRingMemory::new(&control, &data);
    for w in [0, 1] {
        bulk.control()[w].store(start as u32, std::sync::atomic::Ordering::SeqCst);
        words.control()[w].store(start as u32, std::sync::atomic::Ordering::SeqCst);
    }
    let seed = start ^ len;
    let mut from = vec![0u8; len + 8];
    for (i, b) in from[src_align..src_align + len].iter_mut().enumerate() {
        *b = byte(i, seed);
    }
    let payload = &from[src_align..src_align + len];
    let ring_len = 16 + len.div_ceil(8) * 8 + 8;
    let mut into = vec![0u8; ring_len - 8 + 8];

    let mut w = OutgoingRing::new(&bulk).unwrap();
    w.write(PacketType::InBand, &[], payload, true, seed as u64)
        .unwrap();
    w.commit().unwrap();
    let mut w2 = OutgoingRing::new(&words).unwrap();
    w2.write(PacketType::InBand, &[], payload, true, seed as u64)
        .unwrap();
    w2.commit().unwrap();

    let mut r = IncomingRing::new(&bulk).unwrap();
    let buf = &mut into[dst_align..dst_align + ring_len - 8];
    let p = r.read(buf).unwrap().expect("a packet");
    assert_eq!(p.descriptor.transaction_id(), seed as u64);
    assert_eq!(&p.payload(buf)[..len], payload, "start {start} len {len}");
    assert!(p.payload(buf)[len..].iter().all(|&b| b == 0));

    let mut a = vec![0u8; RING];
    let mut b = vec![0u8; RING];
    bulk.read_data(0, &mut a);
    words.read_data(0, &mut b);
    assert!(a == b, "data areas differ: start {start} len {len}");
}

#[test]
fn every_length_at_every_offset_before_the_wrap() {
    let mut n = 0;
    for start in (RING - 512..RING).step_by(8) {
        for len in 0..=300 {
            one(start, len, len % 8, (len / 8) % 8);
            n += 1;
        }
    }
    assert_eq!(n, 64 * 301);
}

#[test]
fn large_packets_at_every_alignment() {
    for start in (0..RING).step_by(8 * 37) {
        for len in [1000, 1001, 2047, 2048, 3000, 4000] {
            for align in 0..8 {
                one(start, len, align, 7 - align);
            }
        }
    }
}

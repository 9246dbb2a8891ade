// SPDX-License-Identifier: GPL-2.0

//! Property tests: the ring against a reference queue model.
//!
//! Random sequences of writes, commits and reads run on rings of every size
//! from 64 bytes to several pages; after each step the ring must agree with
//! a plain queue on which packets were accepted, which come out and in what
//! order, byte for byte, how much space is free, and when each side must
//! signal the other. Every fourth packet is a transfer-page packet (type
//! 7, a range-list header before its payload), whose ranges must come out
//! as written.

use std::collections::VecDeque;
use std::sync::atomic::{
    AtomicU32,
    AtomicU64, //
};

use kmcl_protocol::packet::{
    inband_ring_len,
    PacketType, //
};
use kmcl_protocol::ring::{
    IncomingRing,
    OutgoingRing,
    WordRingMemory,
    WriteError,
    CONTROL_WORDS, //
};
use kmcl_protocol::xfer::{
    self,
    XferRange,
    XferRanges, //
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Write { len: usize, completion: bool },
    CommitWrite,
    Read,
    CommitRead,
    Mask(bool),
}

fn op(max_payload: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..=max_payload, any::<bool>()).prop_map(|(len, completion)| Op::Write { len, completion }),
        2 => Just(Op::CommitWrite),
        4 => Just(Op::Read),
        2 => Just(Op::CommitRead),
        1 => any::<bool>().prop_map(Op::Mask),
    ]
}

/// Ring data sizes: small ones (every multiple of 8 from 64 bytes) make
/// wrap-around frequent; page multiples are what VMBus uses.
fn ring_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        (8usize..=128).prop_map(|w| w * 8),
        (1usize..=4).prop_map(|p| p * 4096)
    ]
}

fn payload(len: usize, id: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 ^ id.wrapping_mul(0x9e37)) as u8)
        .collect()
}

/// The transfer-page ranges packet `id` carries (none for three packets
/// in four).
fn ranges_of(id: u64) -> Vec<XferRange> {
    if id % 4 != 3 {
        return vec![];
    }
    (0..1 + id % 3)
        .map(|k| XferRange {
            offset: (id * 100 + k) as u32,
            len: 1 + (id % 50 + k) as u32,
        })
        .collect()
}

/// The header packet `id` is written with.
fn header_of(id: u64) -> Vec<u8> {
    let r = ranges_of(id);
    if r.is_empty() {
        return vec![];
    }
    let mut h = vec![0u8; xfer::LIST_HEADER + r.len() * xfer::RANGE_SIZE];
    assert_eq!(xfer::encode(5, r.into_iter(), &mut h), Ok(h.len()));
    h
}

/// Ring bytes of packet `id` with a `len`-byte payload.
fn ring_len(id: u64, len: usize) -> usize {
    inband_ring_len(len).unwrap() + header_of(id).len()
}

struct Model {
    size: usize,
    /// Packets written but not committed: (id, len).
    batch: Vec<(u64, usize)>,
    /// Committed packets the reader has not read.
    committed: VecDeque<(u64, usize)>,
    /// Bytes read but not committed by the reader.
    read_uncommitted: usize,
    /// Bytes in the ring from the writer's point of view: everything
    /// written, minus what the reader committed.
    used: usize,
    /// Bytes committed by the writer and not yet committed by the reader
    /// (what the reader's committed index trails the writer's by).
    published_unreleased: usize,
    masked: bool,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn ring_matches_queue_model(size in ring_size(), ops in prop::collection::vec(op(300), 1..300)) {
        let control: [AtomicU32; CONTROL_WORDS] = std::array::from_fn(|_| AtomicU32::new(0));
        let data: Vec<AtomicU64> = (0..size / 8).map(|_| AtomicU64::new(0)).collect();
        let mem = WordRingMemory::new(&control, &data);
        let mut w = OutgoingRing::new(&mem).unwrap();
        let mut r = IncomingRing::new(&mem).unwrap();
        let mut buf = vec![0u8; size];
        let mut m = Model {
            size, batch: vec![], committed: VecDeque::new(), read_uncommitted: 0,
            used: 0, published_unreleased: 0, masked: false,
        };
        let mut next_id = 1u64;

        for op in ops {
            match op {
                Op::Write { len, completion } => {
                    let need = ring_len(next_id, len);
                    let free = m.size - 8 - m.used;
                    prop_assert_eq!(w.free_bytes().unwrap(), free);
                    let header = header_of(next_id);
                    let ptype = if header.is_empty() { PacketType::InBand } else { PacketType::TransferPages };
                    let res = w.write(ptype, &header, &payload(len, next_id), completion, next_id);
                    if need > m.size - 8 {
                        prop_assert_eq!(res, Err(WriteError::TooLarge));
                    } else if need > free {
                        prop_assert_eq!(res, Err(WriteError::Full { needed: need }));
                    } else {
                        prop_assert_eq!(res, Ok(()));
                        m.batch.push((next_id, len));
                        m.used += need;
                        next_id += 1;
                    }
                }
                Op::CommitWrite => {
                    let was_empty = m.published_unreleased == 0;
                    let signal = w.commit().unwrap();
                    let expect = !m.batch.is_empty() && was_empty && !m.masked;
                    prop_assert_eq!(signal, expect);
                    for p in m.batch.drain(..) {
                        m.published_unreleased += ring_len(p.0, p.1);
                        m.committed.push_back(p);
                    }
                }
                Op::Read => {
                    let got = r.read(&mut buf).unwrap();
                    match m.committed.pop_front() {
                        None => prop_assert_eq!(got, None),
                        Some((id, len)) => {
                            let pkt = got.expect("model has a packet");
                            prop_assert_eq!(pkt.descriptor.transaction_id(), id);
                            let want = ranges_of(id);
                            if want.is_empty() {
                                prop_assert_eq!(pkt.descriptor.packet_type(), PacketType::InBand);
                            } else {
                                prop_assert_eq!(pkt.descriptor.packet_type(), PacketType::TransferPages);
                                let r = XferRanges::parse(pkt.header(&buf), |s| (s == 5).then_some(1 << 20), 8).unwrap();
                                prop_assert_eq!(r.iter().collect::<Vec<_>>(), want);
                            }
                            let p = pkt.payload(&buf);
                            prop_assert_eq!(&p[..len], &payload(len, id)[..]);
                            prop_assert!(p[len..].iter().all(|&b| b == 0));
                            m.read_uncommitted += ring_len(id, len);
                        }
                    }
                }
                Op::CommitRead => {
                    // No pending send size is set in this test: never signal.
                    prop_assert!(!r.commit());
                    m.used -= m.read_uncommitted;
                    m.published_unreleased -= m.read_uncommitted;
                    m.read_uncommitted = 0;
                }
                Op::Mask(masked) => {
                    r.set_interrupt_mask(masked);
                    m.masked = masked;
                }
            }
        }
    }

    /// The reader signals exactly when its commit makes the free space
    /// reach the writer's pending send size from below.
    #[test]
    fn pending_send_size_signal(size in ring_size(), lens in prop::collection::vec(0usize..200, 1..64), pending_words in 1usize..64) {
        let control: [AtomicU32; CONTROL_WORDS] = std::array::from_fn(|_| AtomicU32::new(0));
        let data: Vec<AtomicU64> = (0..size / 8).map(|_| AtomicU64::new(0)).collect();
        let mem = WordRingMemory::new(&control, &data);
        let mut w = OutgoingRing::new(&mem).unwrap();
        let mut r = IncomingRing::new(&mem).unwrap();
        let mut written = VecDeque::new();
        for len in lens {
            if w.write(PacketType::InBand, &[], &vec![1; len], false, 0).is_ok() {
                written.push_back(inband_ring_len(len).unwrap());
            }
        }
        w.commit().unwrap();
        let pending = pending_words * 8;
        w.set_pending_send_size(pending as u32);
        let mut free = w.free_bytes().unwrap();
        let mut buf = vec![0u8; size];
        while let Some(len) = written.pop_front() {
            r.read(&mut buf).unwrap().unwrap();
            let signal = r.commit();
            let now = free + len;
            prop_assert_eq!(signal, free < pending && now >= pending);
            free = now;
            prop_assert_eq!(w.free_bytes().unwrap(), free);
        }
    }
}

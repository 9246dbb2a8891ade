// SPDX-License-Identifier: GPL-2.0

//! The ring reader on a ring whose control page and data area are
//! arbitrary: the first 8 bytes are the write and read indices, the rest
//! the data area. Every read must return a packet within the buffer, an
//! empty ring or a typed error, and stop: no panic, no endless loop.

#![no_main]

use std::sync::atomic::{
    AtomicU32,
    AtomicU64, //
};

use kmcl_protocol::ring::{
    IncomingRing,
    WordRingMemory,
    CONTROL_WORDS, //
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if input.len() < 8 + 64 {
        return;
    }
    let (ctl, rest) = input.split_at(8);
    let words = rest.len() / 8;
    let control: [AtomicU32; CONTROL_WORDS] = std::array::from_fn(|_| AtomicU32::new(0));
    control[0].store(
        u32::from_le_bytes(ctl[0..4].try_into().unwrap()),
        std::sync::atomic::Ordering::Relaxed,
    );
    control[1].store(
        u32::from_le_bytes(ctl[4..8].try_into().unwrap()),
        std::sync::atomic::Ordering::Relaxed,
    );
    let data: Vec<AtomicU64> = rest
        .chunks_exact(8)
        .take(words)
        .map(|c| AtomicU64::new(u64::from_le_bytes(c.try_into().unwrap())))
        .collect();
    let Ok(mut ring) = IncomingRing::new(WordRingMemory::new(&control, &data)) else {
        return;
    };
    let mut buf = vec![0u8; words * 8];
    // A ring holds at most size/24 packets: more reads than that without
    // an error or an empty ring would be a loop.
    for _ in 0..=words / 3 + 1 {
        match ring.read(&mut buf) {
            Ok(Some(p)) => {
                let payload = p.payload(&buf);
                assert!(payload.len() <= buf.len());
                let _ = p.header(&buf);
            }
            Ok(None) | Err(_) => {
                ring.commit();
                return;
            }
        }
    }
    panic!(
        "the reader kept finding packets in a {}-byte ring",
        words * 8
    );
});

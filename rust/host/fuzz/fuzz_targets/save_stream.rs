// SPDX-License-Identifier: GPL-2.0

//! Save buffers (RestoreFromBuffer's input), fed in two parts at an
//! arbitrary split: nothing panics; a buffer is either refused whole or
//! yields exactly its chunks; a complete stream written again with the
//! same records and save id is byte-for-byte the input. Half the inputs
//! get their checksums fixed up first, so that mutations reach the checks
//! behind the checksum (lengths, kinds, sequence, counts).

#![no_main]

use kmcl_protocol::save::{
    crc32,
    Record,
    Restore,
    Writer,
    HEADER_LEN, //
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if input.len() < 2 {
        return;
    }
    let split = usize::from(u16::from_le_bytes([input[0], input[1]])) % input.len();
    let mut owned = input[2..].to_vec();
    if input[0] & 0x80 != 0 {
        fix_checksums(&mut owned);
    }
    let data = &owned[..];
    let split = split.min(data.len());
    let mut r = Restore::new();
    let mut records = Vec::new();
    for part in [&data[..split], &data[split..]] {
        if part.is_empty() {
            continue;
        }
        match r.check(part) {
            Ok((recs, next)) => {
                records.extend(recs.map(|(r, _)| r));
                r = next;
            }
            Err(_) => return,
        }
    }
    if !r.is_done() {
        return;
    }
    // A complete stream: write it again.
    let save_id = u32::from_le_bytes(data[16..20].try_into().unwrap());
    let mut w = Writer::new(save_id);
    let mut out = vec![0u8; data.len()];
    let mut at = 0;
    for rec in &records {
        at += match rec {
            Record::Channel {
                interface_type,
                interface_instance,
                packets,
            } => w.channel(&mut out[at..], interface_type, interface_instance, *packets),
            Record::Packet(p) => w.packet(&mut out[at..], p),
            Record::End => w.end(&mut out[at..]),
        }
        .expect("a checked stream can be written again");
    }
    assert_eq!(&out[..at], data);
});

/// Rewrites the checksum of every whole chunk in `buf`.
fn fix_checksums(buf: &mut [u8]) {
    let mut at = 0;
    while at + HEADER_LEN <= buf.len() {
        let body = u32::from_le_bytes(buf[at + 8..at + 12].try_into().unwrap()) as usize;
        let Some(end) = (at + HEADER_LEN)
            .checked_add(body)
            .filter(|e| *e <= buf.len())
        else {
            return;
        };
        buf[at + 20..at + 24].fill(0);
        let crc = crc32(0, &buf[at..end]);
        buf[at + 20..at + 24].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}

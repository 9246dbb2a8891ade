// SPDX-License-Identifier: GPL-2.0

//! Descriptor parsing: 16 arbitrary bytes and an arbitrary amount of
//! available ring data. A descriptor that parses describes a packet that
//! fits what was available, and encodes back to the same bytes.

#![no_main]

use kmcl_protocol::packet::{
    Descriptor,
    DESCRIPTOR_SIZE, //
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if input.len() < DESCRIPTOR_SIZE + 4 {
        return;
    }
    let raw: [u8; DESCRIPTOR_SIZE] = input[..DESCRIPTOR_SIZE].try_into().unwrap();
    let available = u32::from_le_bytes(
        input[DESCRIPTOR_SIZE..DESCRIPTOR_SIZE + 4]
            .try_into()
            .unwrap(),
    ) as usize;
    if let Ok(d) = Descriptor::parse(&raw, available) {
        assert!(d.ring_len() <= available);
        assert!(d.data_offset() <= d.packet_len());
        assert_eq!(d.header_len() + d.payload_len() + 16, d.packet_len());
        assert_eq!(d.to_bytes(), raw);
    }
});

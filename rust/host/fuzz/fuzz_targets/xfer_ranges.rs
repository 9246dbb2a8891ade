// SPDX-License-Identifier: GPL-2.0

//! Transfer-page range lists (the header of type-7 packets) against one
//! registered set of arbitrary id and length and an arbitrary range limit.
//! A list that parses names that set, stays within its limit, and every
//! range is non-empty and inside the set; what parses encodes back to the
//! same bytes.

#![no_main]

use kmcl_protocol::xfer::{encode, XferRanges};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if input.len() < 8 {
        return;
    }
    let set_id = u16::from_le_bytes([input[0], input[1]]);
    let max_ranges = u32::from(input[2]);
    let set_len = u64::from(u32::from_le_bytes(input[3..7].try_into().unwrap()));
    let header = &input[8..];
    if let Ok(r) = XferRanges::parse(header, |id| (id == set_id).then_some(set_len), max_ranges) {
        assert_eq!(r.set_id(), set_id);
        assert!(r.count() >= 1 && r.count() <= max_ranges);
        let mut n = 0;
        let mut total = 0u64;
        for range in r.iter() {
            n += 1;
            total += u64::from(range.len);
            assert!(range.len > 0);
            assert!(u64::from(range.offset) + u64::from(range.len) <= set_len);
        }
        assert_eq!(n, r.count());
        assert_eq!(total, r.total_len());
        let mut out = vec![0u8; header.len()];
        let used = encode(set_id, r.iter(), &mut out).unwrap();
        assert_eq!(used, header.len());
        // The encoder writes sender_owns_set and reserved as 0.
        assert_eq!(out[..2], header[..2]);
        assert_eq!(out[4..], header[4..]);
    }
});

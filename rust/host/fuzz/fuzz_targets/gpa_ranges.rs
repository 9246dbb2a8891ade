// SPDX-License-Identifier: GPL-2.0

//! GPA range lists (the header of GPA-direct packets), with arbitrary
//! limits. A list that parses stays within its limits and its header.

#![no_main]

use kmcl_protocol::gpa::GpaRanges;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if input.len() < 8 {
        return;
    }
    let max_ranges = u32::from(input[0]);
    let max_bytes = u64::from(u32::from_le_bytes(input[1..5].try_into().unwrap()));
    let header = &input[8..];
    if let Ok(r) = GpaRanges::parse(header, max_ranges, max_bytes) {
        assert!(r.count() <= max_ranges);
        assert!(r.total_len() <= max_bytes);
        let mut n = 0;
        for range in r.iter() {
            n += 1;
            assert_eq!(range.pfns().count(), range.page_count());
        }
        assert_eq!(n, r.count());
    }
});

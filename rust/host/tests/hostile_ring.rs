// SPDX-License-Identifier: GPL-2.0

//! The ring reader against a writer that rewrites the ring between every
//! access the reader makes (`kmcl_protocol::hostile`): random scripts, and
//! the scripts that aim at each rule. The fuzz target `hostile_ring` runs
//! the same checks on inputs libFuzzer grows.

use kmcl_protocol::hostile::run;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn the_reader_keeps_its_rules_under_attack(input in proptest::collection::vec(any::<u8>(), 0..600)) {
        run(&input);
    }
}

/// Scripts that read packets with no attack and with each kind of move:
/// a harness whose scripts never reach a read would check nothing.
#[test]
fn scripts_reach_reads_and_every_attack() {
    // A 1-KiB ring, three packets written (op 4: payload 120, 150, 180
    // bytes, no header), then reads and their accesses (zero bytes: read,
    // and no move).
    let writes = [15u8, 4, 40, 0, 4, 50, 0, 4, 60, 0];
    let mut quiet = writes.to_vec();
    quiet.extend_from_slice(&[0; 40]);
    quiet.push(3);
    assert_eq!(run(&quiet), 3);
    // Each attack at the first read's first access: that read may fail,
    // none breaks a rule, and in all but a few the packets still come
    // out (moves of the feature bits or of a data byte elsewhere change
    // nothing).
    let mut read = 0;
    for attack in 4u8..10 {
        for arg in [0u8, 1, 8, 0x7f, 0xff] {
            let mut s = writes.to_vec();
            s.extend_from_slice(&[0, attack, arg, arg, arg, arg, arg, arg, arg, arg, arg]);
            s.extend_from_slice(&[0; 40]);
            read += run(&s);
        }
    }
    assert!(read > 40, "only {read} packets read");
}

/// Found by the fuzz target: a packet of only a descriptor ending exactly
/// at the end of the data area; the reader made a zero-length copy at the
/// end of the data area (one past its last byte) for the empty body.
#[test]
fn a_descriptor_only_packet_at_the_end_copies_nothing_more() {
    let input: &[u8] = &[
        3, 4, 4, 1, 0, 0, 0, 0, 0, 0, 3, 4, 0, 0, 20, 1, 0, 0, 0, 0, 0, 0, 3, 4, 20, 1, 0, 0, 0, 0,
        0, 0, 0, 0, 3, 15, 4, 40, 0, 4, 50, 0, 4, 60, 0, 0, 192, 9, 127, 127, 127, 127, 127, 127,
        127, 127, 127, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0,
        0, 0, 0, 3, 4, 20, 1, 0, 0, 0, 0, 0, 2, 3, 4, 20, 1, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 25, 0, 0, 0, 0, 0, 0, 0, 3, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 4,
        20, 1, 0, 0, 0, 0, 0, 0, 3, 1, 4, 20, 0, 0, 0, 0, 0, 0, 3, 4, 20, 1, 0, 0, 0, 0, 0, 0, 3,
        4, 20, 1, 0, 0, 0, 0, 0, 0, 3, 4, 0, 0, 20, 1, 0, 0, 0, 0, 3, 4, 20, 1, 0, 0, 0, 0, 0, 0,
        3,
    ];
    run(input);
}

// SPDX-License-Identifier: GPL-2.0

//! The ring reader against a writer that rewrites the ring's data and
//! control words between every read the reader makes (a peer racing the
//! copy): `kmcl_protocol::hostile::run` plays the input as that writer's
//! script and panics if a packet is delivered other than exactly as it
//! was copied once, with the descriptor that was validated.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    kmcl_protocol::hostile::run(input);
});

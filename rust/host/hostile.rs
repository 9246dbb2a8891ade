// SPDX-License-Identifier: GPL-2.0

//! A hostile writer racing the ring reader, for the fuzz target
//! `hostile_ring` and the property test `tests/hostile_ring.rs`.
//!
//! [`run`] puts well-formed packets into a ring, then reads them with
//! kmcl's [`IncomingRing`] while a script rewrites the ring between every
//! access the reader makes: before each look at the control words and
//! after each copy out of the data area it may move the write index (to
//! any value, valid or not), set `pending_send_sz` and the feature bits,
//! or overwrite data bytes (anywhere, or at the packet being read). That is
//! what a peer racing the copy can do; it never touches the words only the
//! reader writes. The memory copies its data area with `copy_from_slice`
//! (the platform's `memcpy`), in the reader's thread, so the race is
//! simulated, not a data race.
//!
//! After every read [`run`] checks the rules kmcl's ring promises:
//!
//! - a packet comes out exactly as it was copied: the reader copied each of
//!   its bytes once, in order, from where the packet starts (no second
//!   fetch of anything), and its buffer holds exactly those bytes;
//! - the descriptor it returns is the one in the buffer (validated once,
//!   not re-read), the packet fits a write index the reader saw, and header
//!   and payload lie within the packet;
//! - an empty ring copies nothing; an error consumes nothing and copies at
//!   most the descriptor;
//! - a commit publishes exactly the end of the packets read.
//!
//! Any rule broken panics (the fuzz target's crash, the test's failure).

extern crate alloc;

use alloc::vec::Vec;
use core::cell::{
    Cell,
    RefCell, //
};
use core::sync::atomic::{
    AtomicU32,
    Ordering, //
};

use crate::packet::{
    PacketType,
    DESCRIPTOR_SIZE, //
};
use crate::ring::{
    IncomingRing,
    OutgoingRing,
    RingMemory,
    CONTROL_WORDS,
    FEATURE_BITS,
    PENDING_SEND_SIZE,
    READ_INDEX,
    WRITE_INDEX, //
};

/// The fuzz input, consumed a byte at a time (zeros once it runs out).
struct Script<'a> {
    bytes: &'a [u8],
    at: Cell<usize>,
}

impl Script<'_> {
    fn byte(&self) -> u8 {
        let at = self.at.get();
        self.at.set(at + 1);
        self.bytes.get(at).copied().unwrap_or(0)
    }

    fn u32(&self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn done(&self) -> bool {
        self.at.get() >= self.bytes.len()
    }
}

/// One copy the reader made out of the data area.
struct Copy {
    offset: usize,
    bytes: Vec<u8>,
}

/// Ring memory whose writer is the script.
struct Hostile<'a> {
    control: [AtomicU32; CONTROL_WORDS],
    data: RefCell<Vec<u8>>,
    script: &'a Script<'a>,
    /// Whether accesses are attacked (off while the honest writer fills
    /// the ring).
    armed: Cell<bool>,
    /// Where the packet being read starts (target of aimed overwrites).
    reading_at: Cell<usize>,
    /// Copies out of the data area since the last [`Self::take_copies`].
    copies: RefCell<Vec<Copy>>,
    /// Every valid write index the reader could have loaded (it keeps
    /// the last one it loaded across reads).
    seen_write: RefCell<Vec<u32>>,
}

impl Hostile<'_> {
    fn size(&self) -> usize {
        self.data.borrow().len()
    }

    /// The script's move before or after one access of the reader.
    fn attack(&self) {
        if !self.armed.get() || self.script.done() {
            return;
        }
        let size = self.size();
        let c = &self.control;
        match self.script.byte() % 10 {
            // Most accesses go unharmed, so that reads get far enough to
            // meet the later moves.
            0..=3 => {}
            4 => c[WRITE_INDEX].store(self.script.u32(), Ordering::Relaxed),
            5 => {
                let w = (usize::from(self.script.byte()) * 8) % size;
                c[WRITE_INDEX].store(w as u32, Ordering::Relaxed);
            }
            6 => c[PENDING_SEND_SIZE].store(self.script.u32(), Ordering::Relaxed),
            7 => c[FEATURE_BITS].store(self.script.u32(), Ordering::Relaxed),
            8 => {
                let at = self.script.u32() as usize % size;
                self.data.borrow_mut()[at] ^= self.script.byte() | 1;
            }
            _ => {
                // Aimed at the packet being read: its descriptor, header,
                // payload or the next packet.
                let at = (self.reading_at.get() + usize::from(self.script.byte() % 32) * 8) % size;
                let mut data = self.data.borrow_mut();
                for i in 0..8 {
                    data[(at + i) % size] = self.script.byte();
                }
            }
        }
        let w = c[WRITE_INDEX].load(Ordering::Relaxed);
        if (w as usize) < size && w % 8 == 0 {
            self.seen_write.borrow_mut().push(w);
        }
    }

    fn take_copies(&self) -> Vec<Copy> {
        core::mem::take(&mut *self.copies.borrow_mut())
    }
}

impl RingMemory for Hostile<'_> {
    fn control(&self) -> &[AtomicU32; CONTROL_WORDS] {
        self.attack();
        &self.control
    }

    fn data_len(&self) -> usize {
        self.size()
    }

    fn read_data(&self, offset: usize, buf: &mut [u8]) {
        self.attack();
        buf.copy_from_slice(&self.data.borrow()[offset..offset + buf.len()]);
        if self.armed.get() {
            self.copies.borrow_mut().push(Copy {
                offset,
                bytes: buf.to_vec(),
            });
        }
        self.attack();
    }

    fn write_data(&self, offset: usize, buf: &[u8]) {
        self.data.borrow_mut()[offset..offset + buf.len()].copy_from_slice(buf);
    }
}

/// Bytes from `from` forward to `to` in a ring of `size`.
fn distance(from: usize, to: usize, size: usize) -> usize {
    (to + size - from) % size
}

/// Runs the script in `input` (see the module documentation). Panics if
/// the reader breaks one of its rules. Returns the packets read.
pub fn run(input: &[u8]) -> usize {
    let script = Script {
        bytes: input,
        at: Cell::new(0),
    };
    // Rings of 64 bytes to 4 KiB: small ones wrap often.
    let size = (usize::from(script.byte() % 64) + 1) * 64;
    let mem = Hostile {
        control: core::array::from_fn(|_| AtomicU32::new(0)),
        data: RefCell::new(alloc::vec![0; size]),
        script: &script,
        armed: Cell::new(false),
        reading_at: Cell::new(0),
        copies: RefCell::new(Vec::new()),
        seen_write: RefCell::new(Vec::new()),
    };
    let mut writer = OutgoingRing::new(&mem).expect("a fresh ring");
    let mut reader = IncomingRing::new(&mem).expect("a fresh ring");
    let mut buf = alloc::vec![0u8; size];
    // Where the reader is, and what it last published.
    let mut pos = 0usize;
    let mut published = 0usize;
    let mut packets = 0;
    let mut id = 0u64;

    for _ in 0..256 {
        if script.done() {
            break;
        }
        match script.byte() % 8 {
            // The honest writer adds a packet (not attacked).
            4 | 5 => {
                let len = usize::from(script.byte()) * 3 % size;
                let header_len = usize::from(script.byte() % 3) * 8;
                let payload: Vec<u8> = (0..len).map(|i| (i as u8) ^ (id as u8)).collect();
                let header = alloc::vec![0xa5; header_len];
                let ptype = if header_len > 0 {
                    PacketType::TransferPages
                } else {
                    PacketType::InBand
                };
                id += 1;
                if writer
                    .write(ptype, &header, &payload, id % 2 == 0, id)
                    .is_ok()
                {
                    let _ = writer.commit();
                }
            }
            // The reader commits: it publishes exactly where it is.
            3 => {
                mem.armed.set(true);
                reader.commit();
                mem.armed.set(false);
                if pos != published {
                    assert_eq!(
                        mem.control[READ_INDEX].load(Ordering::Relaxed) as usize,
                        pos,
                        "the reader published a position it did not read to"
                    );
                    published = pos;
                }
            }
            // The reader reads one packet under attack.
            _ => {
                mem.reading_at.set(pos);
                mem.take_copies();
                mem.armed.set(true);
                let got = reader.read(&mut buf);
                mem.armed.set(false);
                let copies = mem.take_copies();
                // Each byte copied at most once, in order, from `pos`.
                let mut at = pos;
                let mut whole = Vec::new();
                for c in &copies {
                    assert_eq!(c.offset, at, "a copy out of order or repeated");
                    whole.extend_from_slice(&c.bytes);
                    at = (at + c.bytes.len()) % size;
                }
                match got {
                    Ok(None) => assert!(whole.is_empty(), "an empty ring was copied from"),
                    Err(_) => assert!(
                        whole.len() <= DESCRIPTOR_SIZE,
                        "a failed read copied {} bytes",
                        whole.len()
                    ),
                    Ok(Some(p)) => {
                        let d = p.descriptor;
                        let len = d.packet_len();
                        assert_eq!(whole.len(), len, "copied bytes != the packet's length");
                        assert!(whole == buf[..len], "the buffer is not what was copied");
                        // The descriptor returned is the one delivered.
                        assert_eq!(d.to_bytes(), buf[..DESCRIPTOR_SIZE], "descriptor differs");
                        assert!(d.data_offset() <= len);
                        assert_eq!(p.header(&buf).len() + p.payload(&buf).len() + 16, len);
                        // It fits a write index the reader could have seen.
                        let fits = mem
                            .seen_write
                            .borrow()
                            .iter()
                            .any(|&w| d.ring_len() <= distance(pos, w as usize, size));
                        assert!(fits, "a packet beyond every write index seen");
                        pos = (pos + d.ring_len()) % size;
                        packets += 1;
                    }
                }
            }
        }
        // What the honest writer published is a write index too.
        let w = mem.control[WRITE_INDEX].load(Ordering::Relaxed);
        if (w as usize) < size && w % 8 == 0 {
            mem.seen_write.borrow_mut().push(w);
        }
    }
    packets
}

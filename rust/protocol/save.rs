// SPDX-License-Identifier: GPL-2.0

//! kmcl's save format for a server channel's state (KMCL
//! `VmbChannelSaveBegin`/`SaveContinue`/`SaveEnd` write it,
//! `VmbChannelRestoreFromBuffer` reads it).
//!
//! The state is a stream of chunks, written and read whole: a save buffer
//! holds one or more whole chunks, and a restore is fed whole chunks.
//! Every chunk is self-checking, so a buffer that was truncated, corrupted,
//! reordered, spliced from two saves or written by another version is
//! rejected before anything of it is used:
//!
//! ```text
//! chunk:  magic u32 "KMSV" | version u16 | kind u16 | body_len u32 | seq u32
//!         | save_id u32 | crc u32 | body (body_len bytes)
//! kinds:  1 channel  interface type [16], instance [16], packets u32,
//!                    reserved u32 (0)
//!         2 packet   transaction id u64, flags u32 (bit 0: completion
//!                    requested), payload_len u32, driver_len u32,
//!                    reserved u32 (0), payload, driver state
//!         3 end      packets u32, chunks u32
//! ```
//!
//! All integers are little endian. `seq` numbers the chunks of one save
//! from 0; `save_id` is the same in every chunk of one save; `crc` is the
//! CRC-32 (IEEE) of the header with `crc` zeroed, then the body. A stream
//! is one channel chunk, the number of packet chunks it announces, and an
//! end chunk that repeats the counts.
//!
//! [`Restore`] checks a buffer completely against the stream so far before
//! it hands out any record, so a bad buffer leaves the restore as it was.

/// `"KMSV"`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"KMSV");
/// The format version this code writes and reads.
pub const VERSION: u16 = 1;
/// Bytes of a chunk header.
pub const HEADER_LEN: usize = 24;
/// Bytes of a channel chunk's body.
pub const CHANNEL_BODY_LEN: usize = 40;
/// Bytes of a packet chunk's body before the payload.
pub const PACKET_FIXED_LEN: usize = 24;
/// Bytes of an end chunk's body.
pub const END_BODY_LEN: usize = 8;
/// Largest chunk body accepted (a packet: payload and driver state).
pub const MAX_BODY_LEN: usize = 1 << 20;

const KIND_CHANNEL: u16 = 1;
const KIND_PACKET: u16 = 2;
const KIND_END: u16 = 3;

/// Why a save buffer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveError {
    /// The buffer ends inside a chunk.
    Truncated,
    /// Not a kmcl save (magic).
    BadMagic,
    /// Written by another version of the format.
    BadVersion(u16),
    /// The checksum does not match: corrupted.
    BadChecksum,
    /// A length field is out of range or inconsistent.
    BadLength,
    /// A chunk of an unknown kind, or one not expected here.
    Unexpected(u16),
    /// A chunk out of order, or from another save.
    BadSequence,
    /// A reserved field or flag is set, or the end disagrees with the
    /// stream.
    Inconsistent,
    /// The output buffer cannot hold the chunk.
    NoRoom,
}

/// CRC-32 (IEEE 802.3, reflected), continuing from `crc` (start with 0).
pub fn crc32(mut crc: u32, data: &[u8]) -> u32 {
    crc = !crc;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

/// One saved packet (a transaction the server had not completed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketRecord<'a> {
    /// The transaction id the client sent.
    pub transaction_id: u64,
    /// The client asked for a completion.
    pub completion_requested: bool,
    /// The packet's payload, as delivered.
    pub payload: &'a [u8],
    /// What the server's driver saved for it (`EvtVmbChannelSavePacket`).
    pub driver_state: &'a [u8],
}

/// One record of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// The channel: its interface and how many packets follow.
    Channel {
        /// Interface type GUID.
        interface_type: [u8; 16],
        /// Interface instance GUID.
        interface_instance: [u8; 16],
        /// Packet chunks that follow.
        packets: u32,
    },
    /// A packet in flight.
    Packet(PacketRecord<'a>),
    /// The end of the stream.
    End,
}

/// Bytes a chunk with a body of `body_len` bytes takes.
pub const fn chunk_len(body_len: usize) -> usize {
    HEADER_LEN + body_len
}

/// The length of the whole chunk that starts `buf`, from its header (not
/// checked: for streams this code wrote or [`Restore::check`] accepted).
pub fn chunk_len_at(buf: &[u8]) -> Option<usize> {
    let h = buf.get(..HEADER_LEN)?;
    Some(chunk_len(get_u32(h, 8) as usize))
}

/// Bytes a packet record's chunk takes.
pub const fn packet_chunk_len(payload: usize, driver_state: usize) -> usize {
    chunk_len(PACKET_FIXED_LEN + payload + driver_state)
}

fn put_u16(out: &mut [u8], at: usize, v: u16) {
    out[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from(get_u32(b, at)) | (u64::from(get_u32(b, at + 4)) << 32)
}

/// Writes a chunk of `kind` whose body is `parts` back to back into the
/// start of `out`; returns its length.
fn write_chunk(
    out: &mut [u8],
    kind: u16,
    seq: u32,
    save_id: u32,
    parts: &[&[u8]],
) -> Result<usize, SaveError> {
    let body_len: usize = parts.iter().map(|p| p.len()).sum();
    if body_len > MAX_BODY_LEN {
        return Err(SaveError::BadLength);
    }
    let len = chunk_len(body_len);
    let out = out.get_mut(..len).ok_or(SaveError::NoRoom)?;
    put_u32(out, 0, MAGIC);
    put_u16(out, 4, VERSION);
    put_u16(out, 6, kind);
    put_u32(out, 8, body_len as u32);
    put_u32(out, 12, seq);
    put_u32(out, 16, save_id);
    put_u32(out, 20, 0);
    let mut at = HEADER_LEN;
    for p in parts {
        out[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    let crc = crc32(0, out);
    put_u32(out, 20, crc);
    Ok(len)
}

/// Writes one save stream's chunks in order.
#[derive(Clone, Copy, Debug)]
pub struct Writer {
    save_id: u32,
    seq: u32,
    /// Packet chunks announced and not written yet.
    left: Option<u32>,
    packets: u32,
    ended: bool,
}

impl Writer {
    /// A stream named `save_id` (any value; every chunk repeats it).
    pub const fn new(save_id: u32) -> Self {
        Self {
            save_id,
            seq: 0,
            left: None,
            packets: 0,
            ended: false,
        }
    }

    /// Writes the channel chunk, announcing `packets` packet chunks.
    pub fn channel(
        &mut self,
        out: &mut [u8],
        interface_type: &[u8; 16],
        interface_instance: &[u8; 16],
        packets: u32,
    ) -> Result<usize, SaveError> {
        if self.seq != 0 {
            return Err(SaveError::Unexpected(KIND_CHANNEL));
        }
        let mut tail = [0u8; 8];
        tail[..4].copy_from_slice(&packets.to_le_bytes());
        let n = write_chunk(
            out,
            KIND_CHANNEL,
            self.seq,
            self.save_id,
            &[interface_type, interface_instance, &tail],
        )?;
        self.seq += 1;
        self.left = Some(packets);
        self.packets = packets;
        Ok(n)
    }

    /// Writes the next packet chunk.
    pub fn packet(&mut self, out: &mut [u8], p: &PacketRecord<'_>) -> Result<usize, SaveError> {
        let left = match self.left {
            Some(n) if n > 0 => n,
            _ => return Err(SaveError::Unexpected(KIND_PACKET)),
        };
        let (pl, dl) = (
            u32::try_from(p.payload.len()).map_err(|_| SaveError::BadLength)?,
            u32::try_from(p.driver_state.len()).map_err(|_| SaveError::BadLength)?,
        );
        let mut fixed = [0u8; PACKET_FIXED_LEN];
        fixed[..8].copy_from_slice(&p.transaction_id.to_le_bytes());
        put_u32(&mut fixed, 8, u32::from(p.completion_requested));
        put_u32(&mut fixed, 12, pl);
        put_u32(&mut fixed, 16, dl);
        let n = write_chunk(
            out,
            KIND_PACKET,
            self.seq,
            self.save_id,
            &[&fixed, p.payload, p.driver_state],
        )?;
        self.seq += 1;
        self.left = Some(left - 1);
        Ok(n)
    }

    /// Writes the end chunk (every announced packet written).
    pub fn end(&mut self, out: &mut [u8]) -> Result<usize, SaveError> {
        if self.left != Some(0) || self.ended {
            return Err(SaveError::Unexpected(KIND_END));
        }
        let mut body = [0u8; END_BODY_LEN];
        put_u32(&mut body, 0, self.packets);
        put_u32(&mut body, 4, self.seq + 1);
        let n = write_chunk(out, KIND_END, self.seq, self.save_id, &[&body])?;
        self.seq += 1;
        self.ended = true;
        Ok(n)
    }
}

/// A checked chunk: (kind, seq, save_id, body).
type Chunk<'a> = (u16, u32, u32, &'a [u8]);

/// Checks one chunk at the start of `buf`; returns it and its length.
fn read_chunk(buf: &[u8]) -> Result<(Chunk<'_>, usize), SaveError> {
    let h = buf.get(..HEADER_LEN).ok_or(SaveError::Truncated)?;
    if get_u32(h, 0) != MAGIC {
        return Err(SaveError::BadMagic);
    }
    let version = get_u16(h, 4);
    if version != VERSION {
        return Err(SaveError::BadVersion(version));
    }
    let body_len = get_u32(h, 8) as usize;
    if body_len > MAX_BODY_LEN {
        return Err(SaveError::BadLength);
    }
    let len = chunk_len(body_len);
    let chunk = buf.get(..len).ok_or(SaveError::Truncated)?;
    let mut zeroed = [0u8; HEADER_LEN];
    zeroed.copy_from_slice(h);
    zeroed[20..24].fill(0);
    let crc = crc32(crc32(0, &zeroed), &chunk[HEADER_LEN..]);
    if crc != get_u32(h, 20) {
        return Err(SaveError::BadChecksum);
    }
    Ok((
        (
            get_u16(h, 6),
            get_u32(h, 12),
            get_u32(h, 16),
            &chunk[HEADER_LEN..],
        ),
        len,
    ))
}

/// Where a restore is in the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restore {
    /// The next chunk's `seq`.
    seq: u32,
    /// The stream's `save_id` (from its first chunk).
    save_id: u32,
    /// Packet chunks still to come (`None` before the channel chunk).
    left: Option<u32>,
    packets: u32,
    ended: bool,
}

impl Default for Restore {
    fn default() -> Self {
        Self::new()
    }
}

impl Restore {
    /// A restore at the start of a stream.
    pub const fn new() -> Self {
        Self {
            seq: 0,
            save_id: 0,
            left: None,
            packets: 0,
            ended: false,
        }
    }

    /// The end chunk was read: the stream is complete.
    pub const fn is_done(&self) -> bool {
        self.ended
    }

    /// The stream's save id, once its channel chunk was read.
    pub fn save_id(&self) -> Option<u32> {
        self.left.map(|_| self.save_id)
    }

    /// Checks a buffer of whole chunks against the stream so far. On
    /// success returns the records, to apply in order, and the state after
    /// them (which the caller keeps only once it applied them); on an
    /// error nothing of the buffer may be used.
    pub fn check<'a>(&self, buf: &'a [u8]) -> Result<(Records<'a>, Restore), SaveError> {
        if buf.is_empty() {
            return Err(SaveError::Truncated);
        }
        let mut next = *self;
        let mut at = 0;
        while at < buf.len() {
            let ((kind, seq, save_id, body), len) = read_chunk(&buf[at..])?;
            next.step(kind, seq, save_id, body)?;
            at += len;
        }
        Ok((Records { buf, at: 0 }, next))
    }

    fn step(&mut self, kind: u16, seq: u32, save_id: u32, body: &[u8]) -> Result<(), SaveError> {
        if self.ended {
            return Err(SaveError::Unexpected(kind));
        }
        if seq != self.seq || (seq > 0 && save_id != self.save_id) {
            return Err(SaveError::BadSequence);
        }
        match (kind, self.left) {
            (KIND_CHANNEL, None) => {
                if body.len() != CHANNEL_BODY_LEN || get_u32(body, 36) != 0 {
                    return Err(SaveError::BadLength);
                }
                let packets = get_u32(body, 32);
                self.save_id = save_id;
                self.left = Some(packets);
                self.packets = packets;
            }
            (KIND_PACKET, Some(left)) if left > 0 => {
                parse_packet(body)?;
                self.left = Some(left - 1);
            }
            (KIND_END, Some(0)) => {
                if body.len() != END_BODY_LEN
                    || get_u32(body, 0) != self.packets
                    || get_u32(body, 4) != seq + 1
                {
                    return Err(SaveError::Inconsistent);
                }
                self.ended = true;
            }
            _ => return Err(SaveError::Unexpected(kind)),
        }
        self.seq += 1;
        Ok(())
    }
}

fn parse_packet(body: &[u8]) -> Result<PacketRecord<'_>, SaveError> {
    let fixed = body.get(..PACKET_FIXED_LEN).ok_or(SaveError::BadLength)?;
    let flags = get_u32(fixed, 8);
    if flags & !1 != 0 || get_u32(fixed, 20) != 0 {
        return Err(SaveError::Inconsistent);
    }
    let (pl, dl) = (get_u32(fixed, 12) as usize, get_u32(fixed, 16) as usize);
    let rest = &body[PACKET_FIXED_LEN..];
    if pl.checked_add(dl) != Some(rest.len()) {
        return Err(SaveError::BadLength);
    }
    Ok(PacketRecord {
        transaction_id: get_u64(fixed, 0),
        completion_requested: flags & 1 != 0,
        payload: &rest[..pl],
        driver_state: &rest[pl..],
    })
}

/// One packet chunk on its own (a saved packet's `LibBuf`), checked: its
/// record.
pub fn packet_chunk(buf: &[u8]) -> Result<PacketRecord<'_>, SaveError> {
    let ((kind, _, _, body), len) = read_chunk(buf)?;
    if kind != KIND_PACKET {
        return Err(SaveError::Unexpected(kind));
    }
    if len != buf.len() {
        return Err(SaveError::BadLength);
    }
    parse_packet(body)
}

/// The records of a checked buffer ([`Restore::check`]), each with its
/// chunk's bytes.
#[derive(Clone, Debug)]
pub struct Records<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Records<'a> {
    type Item = (Record<'a>, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        // The buffer was checked: every step below succeeds.
        let chunk = self.buf.get(self.at..)?;
        let ((kind, _, _, body), len) = read_chunk(chunk).ok()?;
        self.at += len;
        let record = match kind {
            KIND_CHANNEL => {
                let mut interface_type = [0u8; 16];
                let mut interface_instance = [0u8; 16];
                interface_type.copy_from_slice(&body[..16]);
                interface_instance.copy_from_slice(&body[16..32]);
                Record::Channel {
                    interface_type,
                    interface_instance,
                    packets: get_u32(body, 32),
                }
            }
            KIND_PACKET => Record::Packet(parse_packet(body).ok()?),
            _ => Record::End,
        };
        Some((record, &chunk[..len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole stream with `n` packets, as one buffer.
    fn stream(n: u32, save_id: u32) -> Vec<u8> {
        let mut w = Writer::new(save_id);
        let mut out = vec![0u8; 1 << 16];
        let mut at = w.channel(&mut out, &[1; 16], &[2; 16], n).unwrap();
        for i in 0..n {
            let payload = vec![i as u8; i as usize * 3];
            let state = vec![0xa0 | i as u8; i as usize % 5];
            let p = PacketRecord {
                transaction_id: 0x1000 + u64::from(i),
                completion_requested: i % 2 == 0,
                payload: &payload,
                driver_state: &state,
            };
            at += w.packet(&mut out[at..], &p).unwrap();
        }
        at += w.end(&mut out[at..]).unwrap();
        out.truncate(at);
        out
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(0, b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(crc32(0, b"12345"), b"6789"), 0xcbf4_3926);
    }

    #[test]
    fn a_stream_round_trips() {
        let s = stream(5, 77);
        let (records, next) = Restore::new().check(&s).unwrap();
        assert!(next.is_done());
        assert_eq!(next.save_id(), Some(77));
        assert_eq!(Restore::new().save_id(), None);
        // Each record comes with its chunk, back to back.
        let total: usize = records.clone().map(|(_, c)| c.len()).sum();
        assert_eq!(total, s.len());
        let all: Vec<_> = records.map(|(r, _)| r).collect();
        assert_eq!(all.len(), 7);
        assert_eq!(
            all[0],
            Record::Channel {
                interface_type: [1; 16],
                interface_instance: [2; 16],
                packets: 5
            }
        );
        for i in 0..5u32 {
            let Record::Packet(p) = all[i as usize + 1] else {
                panic!("not a packet");
            };
            assert_eq!(p.transaction_id, 0x1000 + u64::from(i));
            assert_eq!(p.completion_requested, i % 2 == 0);
            assert_eq!(p.payload, &vec![i as u8; i as usize * 3][..]);
            assert_eq!(p.driver_state.len(), i as usize % 5);
        }
        assert_eq!(all[6], Record::End);
    }

    #[test]
    fn chunks_may_be_fed_one_by_one() {
        let s = stream(3, 5);
        let mut r = Restore::new();
        let mut at = 0;
        let mut n = 0;
        while at < s.len() {
            let len =
                chunk_len(u32::from_le_bytes(s[at + 8..at + 12].try_into().unwrap()) as usize);
            let (records, next) = r.check(&s[at..at + len]).unwrap();
            n += records.count();
            assert_eq!(next.is_done(), at + len == s.len());
            r = next;
            at += len;
        }
        assert_eq!(n, 5);
        // Nothing more after the end.
        assert!(r.check(&s[..chunk_len(CHANNEL_BODY_LEN)]).is_err());
    }

    #[test]
    fn every_truncation_and_every_flipped_bit_is_refused() {
        let s = stream(3, 9);
        for cut in 0..s.len() {
            if Restore::new().check(&s[..cut]).map(|(_, n)| n.is_done()) == Ok(true) {
                panic!("truncated at {cut} and still complete");
            }
        }
        for i in 0..s.len() {
            for bit in 0..8 {
                let mut bad = s.clone();
                bad[i] ^= 1 << bit;
                assert!(Restore::new().check(&bad).is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn chunks_of_another_save_or_out_of_order_are_refused() {
        let (a, b) = (stream(2, 1), stream(2, 2));
        let first = chunk_len(CHANNEL_BODY_LEN);
        let mut spliced = a[..first].to_vec();
        spliced.extend_from_slice(&b[first..]);
        assert_eq!(
            Restore::new().check(&spliced).err(),
            Some(SaveError::BadSequence)
        );
        // The packet chunks swapped.
        let p0 = first;
        let p0_len = packet_chunk_len(0, 0);
        let mut swapped = a[..p0].to_vec();
        swapped.extend_from_slice(&a[p0 + p0_len..p0 + p0_len + packet_chunk_len(3, 1)]);
        swapped.extend_from_slice(&a[p0..p0 + p0_len]);
        assert_eq!(
            Restore::new().check(&swapped).err(),
            Some(SaveError::BadSequence)
        );
    }

    #[test]
    fn a_packet_chunk_stands_alone() {
        let s = stream(2, 3);
        let first = chunk_len(CHANNEL_BODY_LEN);
        let len = packet_chunk_len(0, 0);
        let p = packet_chunk(&s[first..first + len]).unwrap();
        assert_eq!(p.transaction_id, 0x1000);
        assert!(packet_chunk(&s[..first]).is_err());
        assert!(packet_chunk(&s[first..first + len + 1]).is_err());
        assert!(packet_chunk(&s[first..first + len - 1]).is_err());
    }

    #[test]
    fn the_writer_enforces_the_stream_shape() {
        let mut out = [0u8; 256];
        let mut w = Writer::new(1);
        let p = PacketRecord {
            transaction_id: 1,
            completion_requested: true,
            payload: b"x",
            driver_state: b"",
        };
        assert!(w.packet(&mut out, &p).is_err());
        assert!(w.end(&mut out).is_err());
        assert_eq!(
            w.channel(&mut out[..10], &[0; 16], &[0; 16], 1),
            Err(SaveError::NoRoom)
        );
        w.channel(&mut out, &[0; 16], &[0; 16], 1).unwrap();
        assert!(w.end(&mut out).is_err());
        w.packet(&mut out, &p).unwrap();
        assert!(w.packet(&mut out, &p).is_err());
        w.end(&mut out).unwrap();
        assert!(w.end(&mut out).is_err());
    }
}

// SPDX-License-Identifier: GPL-2.0

//! Wire compatibility with Linux's own VMBus ring code: kmcl's ring writer
//! and reader against hv_vmbus's (`vmbus_sendpacket`,
//! `vmbus_sendpacket_mpb_desc`, `hv_pkt_iter_first`, `__hv_pkt_iter_next`,
//! `hv_pkt_iter_close`) on the same rings, byte for byte, across the wrap,
//! with completion requests, transaction ids, trailers, GPA-direct range
//! lists, transfer-page packets (as netvsc reads them) and both sides'
//! signalling decisions (`interrupt_mask`,
//! `pending_send_sz`). No hypervisor is involved (see `hv_interop.c`).

use kernel::{
    prelude::*,
    sync::Arc, //
};

use super::interop::{
    xfer_build,
    xfer_parse,
    LinuxChannel,
    Signals, //
};
use crate::protocol::{
    gpa::{self, GpaRanges},
    packet::{Descriptor, PacketType, DESCRIPTOR_SIZE, FLAG_COMPLETION_REQUESTED},
    ring::{
        IncomingRing, OutgoingRing, RingMemory, WriteError, FEATURE_BITS,
        FEATURE_PENDING_SEND_SIZE, INTERRUPT_MASK, PENDING_SEND_SIZE, READ_INDEX, WRITE_INDEX,
    },
};
use crate::shmem::RingPages;
use core::sync::atomic::Ordering;

/// `VM_PKT_DATA_INBAND` for hv_vmbus.
const INBAND: u16 = 6;

/// Two fresh rings of `data_pages` pages and hv_vmbus's channel over them:
/// (kmcl writes / Linux reads, Linux writes / kmcl reads, channel).
fn setup(data_pages: usize) -> Result<(Arc<RingPages>, Arc<RingPages>, LinuxChannel)> {
    let to_linux = Arc::new(RingPages::new(data_pages)?, GFP_KERNEL)?;
    let from_linux = Arc::new(RingPages::new(data_pages)?, GFP_KERNEL)?;
    // hv_ringbuffer_init() announces pending-send-size support on the
    // rings Linux writes; kmcl's writer does so itself.
    from_linux.control()[FEATURE_BITS].store(FEATURE_PENDING_SEND_SIZE, Ordering::SeqCst);
    let ch = LinuxChannel::new(to_linux.clone(), from_linux.clone())?;
    Ok((to_linux, from_linux, ch))
}

/// Deterministic pseudo-random numbers.
fn next(seed: &mut u32) -> u32 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 17;
    *seed ^= *seed << 5;
    *seed
}

/// Packet `i`'s payload: its length and bytes derived from `i`.
fn payload(i: u32, buf: &mut KVec<u8>, max: u32) -> Result {
    let mut seed = i.wrapping_mul(2_654_435_761) | 1;
    let len = next(&mut seed) % max + 1;
    buf.clear();
    for j in 0..len {
        buf.push((j ^ i.wrapping_mul(7)) as u8, GFP_KERNEL)?;
    }
    Ok(())
}

/// Packet `i`'s transaction id and completion request.
fn header_of(i: u32) -> (u64, bool) {
    (
        0x1234_5678_0000_0000 | u64::from(i.wrapping_mul(40503)),
        i % 3 != 0,
    )
}

/// Checks one whole packet (as hv_vmbus copied it out) against packet `i`.
fn check_linux_copy(bytes: &[u8], i: u32, want: &[u8]) -> bool {
    let Some(raw) = bytes.first_chunk::<DESCRIPTOR_SIZE>() else {
        return false;
    };
    // hv_vmbus copies the packet without its trailer; `parse` counts it.
    let Ok(d) = Descriptor::parse(raw, bytes.len() + 8) else {
        return false;
    };
    let (id, completion) = header_of(i);
    let body = &bytes[d.data_offset()..d.packet_len()];
    d.packet_type() == PacketType::InBand
        && d.transaction_id() == id
        && d.completion_requested() == completion
        && d.packet_len() == bytes.len()
        && body.get(..want.len()) == Some(want)
        && body[want.len()..].iter().all(|b| *b == 0)
}

#[kunit_tests(kmcl_hv_interop)]
mod tests {
    use super::*;

    #[test]
    fn kmcl_writes_and_linux_reads_byte_exact_across_the_wrap() -> Result {
        const N: u32 = 400;
        let (to_linux, _from, ch) = setup(2)?;
        let mut w = OutgoingRing::new(to_linux.clone()).map_err(|_| EINVAL)?;
        let mut out = KVec::with_capacity(3 * 4096, GFP_KERNEL)?;
        let (mut data, mut sent, mut seen, mut bad) = (KVec::new(), 0u32, 0u32, 0u32);
        let mut rounds = 0;
        while seen < N {
            // kmcl fills the ring (one batch), Linux empties it.
            while sent < N {
                payload(sent, &mut data, 1500)?;
                let (id, completion) = header_of(sent);
                match w.write(PacketType::InBand, &[], &data, completion, id) {
                    Ok(()) => sent += 1,
                    Err(WriteError::Full { .. }) => break,
                    Err(_) => return Err(EINVAL),
                }
            }
            w.commit().map_err(|_| EINVAL)?;
            let n = ch.recv_all(&mut out)?;
            let mut at = 0;
            for _ in 0..n {
                let Some(raw) = out[at..].first_chunk::<DESCRIPTOR_SIZE>() else {
                    return Err(EINVAL);
                };
                let len = usize::from(u16::from_le_bytes([raw[4], raw[5]])) * 8;
                payload(seen, &mut data, 1500)?;
                if !check_linux_copy(&out[at..at + len], seen, &data) {
                    bad += 1;
                }
                at += len;
                seen += 1;
            }
            rounds += 1;
            assert!(rounds < 1000);
        }
        assert_eq!(bad, 0);
        assert_eq!(seen, N);
        // Hundreds of KiB through an 8 KiB ring: it wrapped many times.
        assert!(rounds > 20);
        // Linux's reader left its read index where kmcl's writer is.
        let c = to_linux.control();
        assert_eq!(
            c[READ_INDEX].load(Ordering::SeqCst),
            c[WRITE_INDEX].load(Ordering::SeqCst)
        );
        Ok(())
    }

    #[test]
    fn linux_writes_and_kmcl_reads_byte_exact_across_the_wrap() -> Result {
        const N: u32 = 400;
        let (_to, from_linux, ch) = setup(2)?;
        let mut r = IncomingRing::new(from_linux.clone()).map_err(|_| EINVAL)?;
        let mut buf = KVec::from_elem(0u8, 8192, GFP_KERNEL)?;
        let (mut data, mut sent, mut seen, mut bad) = (KVec::new(), 0u32, 0u32, 0u32);
        let mut rounds = 0;
        while seen < N {
            while sent < N {
                payload(sent, &mut data, 1500)?;
                let (id, completion) = header_of(sent);
                let flags = u32::from(completion) * u32::from(FLAG_COMPLETION_REQUESTED);
                match ch.send(&data, id, INBAND, flags) {
                    Ok(()) => sent += 1,
                    Err(e) if e == EAGAIN => break,
                    Err(e) => return Err(e),
                }
            }
            while let Some(p) = r.read(&mut buf).map_err(|_| EINVAL)? {
                payload(seen, &mut data, 1500)?;
                let (id, completion) = header_of(seen);
                let d = p.descriptor;
                let body = p.payload(&buf);
                let ok = d.packet_type() == PacketType::InBand
                    && d.transaction_id() == id
                    && d.completion_requested() == completion
                    && p.header(&buf).is_empty()
                    && body.get(..data.len()) == Some(&data[..])
                    && body[data.len()..].iter().all(|b| *b == 0);
                if !ok {
                    bad += 1;
                }
                seen += 1;
            }
            r.commit();
            rounds += 1;
            assert!(rounds < 1000);
        }
        assert_eq!(bad, 0);
        assert_eq!(seen, N);
        assert!(rounds > 20);
        Ok(())
    }

    #[test]
    fn both_writers_leave_the_same_ring_bytes_and_agree_when_it_is_full() -> Result {
        // The same packets, written by kmcl into one ring and by Linux into
        // another: identical data areas (descriptors, payloads, padding,
        // trailers) and indices, and both call the ring full at the same
        // packet.
        let kmcl_ring = Arc::new(RingPages::new(2)?, GFP_KERNEL)?;
        let (_to, linux_ring, ch) = setup(2)?;
        let mut w = OutgoingRing::new(kmcl_ring.clone()).map_err(|_| EINVAL)?;
        let mut data = KVec::new();
        let (mut kmcl_n, mut linux_n) = (None, None);
        for i in 0..100u32 {
            payload(i, &mut data, 700)?;
            let (id, completion) = header_of(i);
            let flags = u32::from(completion) * u32::from(FLAG_COMPLETION_REQUESTED);
            if kmcl_n.is_none() {
                match w.write(PacketType::InBand, &[], &data, completion, id) {
                    Ok(()) => {}
                    Err(WriteError::Full { .. }) => kmcl_n = Some(i),
                    Err(_) => return Err(EINVAL),
                }
            }
            if linux_n.is_none() {
                match ch.send(&data, id, INBAND, flags) {
                    Ok(()) => {}
                    Err(e) if e == EAGAIN => linux_n = Some(i),
                    Err(e) => return Err(e),
                }
            }
        }
        w.commit().map_err(|_| EINVAL)?;
        assert!(kmcl_n.is_some());
        assert_eq!(kmcl_n, linux_n);
        let (mut a, mut b) = (
            KVec::from_elem(0u8, 8192, GFP_KERNEL)?,
            KVec::from_elem(0u8, 8192, GFP_KERNEL)?,
        );
        kmcl_ring.read_data(0, &mut a);
        linux_ring.read_data(0, &mut b);
        assert!(a == b);
        assert_eq!(
            kmcl_ring.control()[WRITE_INDEX].load(Ordering::SeqCst),
            linux_ring.control()[WRITE_INDEX].load(Ordering::SeqCst)
        );
        Ok(())
    }

    /// A range list: 300 bytes from offset 100 of page 0x1234, and 9000
    /// bytes from offset 4000 (spanning pages 0x2000..0x2003).
    fn ranges(out: &mut [u8]) -> Result<usize> {
        const PFNS_A: [u64; 1] = [0x1234];
        const PFNS_B: [u64; 4] = [0x2000, 0x2001, 0x2002, 0x2003];
        let list = [(100u32, 300u32, &PFNS_A[..]), (4000, 9000, &PFNS_B[..])];
        gpa::encode(list.into_iter(), out).map_err(|_| EINVAL)
    }

    fn check_ranges(header: &[u8]) -> bool {
        let Ok(r) = GpaRanges::parse(header, 8, 1 << 20) else {
            return false;
        };
        let mut it = r.iter();
        let (Some(a), Some(b)) = (it.next(), it.next()) else {
            return false;
        };
        let first_a = a.pfns().next().unwrap_or(0);
        let last_b = b.pfns().last().unwrap_or(0);
        let got = [
            (a.offset, a.len, first_a, a.page_count()),
            (b.offset, b.len, last_b, b.page_count()),
        ];
        r.count() == 2 && got == [(100, 300, 0x1234, 1), (4000, 9000, 0x2003, 4)]
    }

    #[test]
    fn gpa_direct_packets_cross_both_ways() -> Result {
        let (to_linux, from_linux, ch) = setup(2)?;
        let mut list = [0u8; 64];
        let list_len = ranges(&mut list)?;
        let body = b"external data follows";

        // Linux writes (vmbus_sendpacket_mpb_desc), kmcl reads.
        let mut desc = KVec::from_elem(0u8, DESCRIPTOR_SIZE + list_len, GFP_KERNEL)?;
        desc[DESCRIPTOR_SIZE..].copy_from_slice(&list[..list_len]);
        ch.send_gpa_direct(&mut desc, body, 77)?;
        let mut r = IncomingRing::new(from_linux.clone()).map_err(|_| EINVAL)?;
        let mut buf = KVec::from_elem(0u8, 8192, GFP_KERNEL)?;
        let p = r.read(&mut buf).map_err(|_| EINVAL)?.ok_or(EINVAL)?;
        assert_eq!(p.descriptor.packet_type(), PacketType::GpaDirect);
        assert_eq!(p.descriptor.transaction_id(), 77);
        assert!(p.descriptor.completion_requested());
        assert!(check_ranges(p.header(&buf)));
        assert_eq!(&p.payload(&buf)[..body.len()], &body[..]);
        r.commit();

        // kmcl writes the same packet, Linux reads it: the same bytes.
        let mut w = OutgoingRing::new(to_linux.clone()).map_err(|_| EINVAL)?;
        w.write(PacketType::GpaDirect, &list[..list_len], body, true, 77)
            .map_err(|_| EINVAL)?;
        w.commit().map_err(|_| EINVAL)?;
        let mut out = KVec::with_capacity(4096, GFP_KERNEL)?;
        assert_eq!(ch.recv_all(&mut out)?, 1);
        let mut theirs = KVec::from_elem(0u8, out.len() + 8, GFP_KERNEL)?;
        from_linux.read_data(0, &mut theirs);
        // Descriptor, range list, payload and padding as Linux wrote them,
        // and the same trailer (both packets start at offset 0).
        assert!(out[..] == theirs[..out.len()]);
        let mut ours = KVec::from_elem(0u8, out.len() + 8, GFP_KERNEL)?;
        to_linux.read_data(0, &mut ours);
        assert!(ours[out.len()..] == theirs[out.len()..]);
        Ok(())
    }

    /// kmcl's transfer-page packets are what netvsc reads through `struct
    /// vmtransfer_page_packet_header` (read with `hv_pkt_iter_*`), and
    /// kmcl reads the packet Hyper-V's network VSP writes with that
    /// struct, with the same ranges.
    #[test]
    fn transfer_page_packets_match_linuxs_header() -> Result {
        use crate::protocol::xfer::{XferRange, XferRanges};
        let (to_linux, from_linux, ch) = setup(2)?;
        // (byte count, byte offset) as Linux's struct lays them out.
        let want = [[1514u32, 0u32], [60, 0x1000], [9000, 0x20000]];
        let ranges = want.map(|[len, offset]| XferRange { offset, len });
        let mut header = [0u8; 8 + 3 * 8];
        assert_eq!(
            crate::protocol::xfer::encode(0xcafe, ranges.into_iter(), &mut header),
            Ok(header.len())
        );
        let body = b"rndis";
        let mut w = OutgoingRing::new(to_linux.clone()).map_err(|_| EINVAL)?;
        w.write(PacketType::TransferPages, &header, body, true, 42)
            .map_err(|_| EINVAL)?;
        w.commit().map_err(|_| EINVAL)?;
        let mut out = KVec::with_capacity(4096, GFP_KERNEL)?;
        assert_eq!(ch.recv_all(&mut out)?, 1);
        let (set, got) = xfer_parse(&out)?;
        assert_eq!(set, 0xcafe);
        assert!(got[..] == want[..]);
        let off = DESCRIPTOR_SIZE + header.len();
        assert!(out[off..off + body.len()] == body[..]);

        // The VSP's packet, built with Linux's struct, as kmcl's reader
        // sees it.
        let theirs = xfer_build(7, &want, 99)?;
        let mut raw = [0u8; DESCRIPTOR_SIZE];
        raw.copy_from_slice(&theirs[..DESCRIPTOR_SIZE]);
        let d = Descriptor::parse(&raw, theirs.len() + 8).map_err(|_| EINVAL)?;
        assert_eq!(d.packet_type(), PacketType::TransferPages);
        assert_eq!(d.transaction_id(), 99);
        assert!(d.completion_requested());
        assert_eq!(d.payload_len(), 0);
        let header = &theirs[DESCRIPTOR_SIZE..d.data_offset()];
        let r =
            XferRanges::parse(header, |id| (id == 7).then_some(1 << 20), 8).map_err(|_| EINVAL)?;
        assert_eq!(r.set_id(), 7);
        assert_eq!(r.count(), 3);
        assert!(r.iter().map(|x| [x.len, x.offset]).eq(want.iter().copied()));
        drop(from_linux);
        Ok(())
    }

    #[test]
    fn writers_signal_only_when_the_ring_turns_non_empty_and_not_when_masked() -> Result {
        // Linux writes into the ring kmcl reads.
        let (to_linux, from_linux, ch) = setup(2)?;
        let mut r = IncomingRing::new(from_linux.clone()).map_err(|_| EINVAL)?;
        let mut buf = KVec::from_elem(0u8, 8192, GFP_KERNEL)?;
        ch.send(b"one", 1, INBAND, 0)?;
        ch.send(b"two", 2, INBAND, 0)?;
        assert_eq!(ch.signals().out_empty, 1);
        while r.read(&mut buf).map_err(|_| EINVAL)?.is_some() {}
        r.commit();
        ch.send(b"three", 3, INBAND, 0)?;
        assert_eq!(ch.signals().out_empty, 2);
        while r.read(&mut buf).map_err(|_| EINVAL)?.is_some() {}
        r.commit();
        // kmcl's reader masks interrupts: Linux does not signal.
        r.set_interrupt_mask(true);
        ch.send(b"four", 4, INBAND, 0)?;
        assert_eq!(ch.signals().out_empty, 2);
        r.set_interrupt_mask(false);

        // kmcl writes into the ring Linux reads: the same decisions.
        let mut w = OutgoingRing::new(to_linux.clone()).map_err(|_| EINVAL)?;
        let mut out = KVec::with_capacity(8192, GFP_KERNEL)?;
        let mut kicks = KVec::new();
        for (i, mask) in [(0u64, false), (1, false), (2, false), (3, true)] {
            to_linux.control()[INTERRUPT_MASK].store(u32::from(mask), Ordering::SeqCst);
            w.write(PacketType::InBand, &[], b"data", false, i)
                .map_err(|_| EINVAL)?;
            kicks.push(w.commit().map_err(|_| EINVAL)?, GFP_KERNEL)?;
            if i >= 1 {
                ch.recv_all(&mut out)?;
            }
        }
        // Empty ring: signal; not empty: none; emptied by Linux: signal;
        // masked: none.
        assert!(kicks[..] == [true, false, true, false]);
        Ok(())
    }

    #[test]
    fn readers_signal_a_waiting_writer_exactly_when_pending_send_sz_is_crossed() -> Result {
        let (to_linux, from_linux, ch) = setup(2)?;
        let payload = [0x5au8; 1000];
        let mut out = KVec::with_capacity(8192, GFP_KERNEL)?;

        // kmcl's writer fills the ring and asks for room; Linux's reader
        // (hv_pkt_iter_close) signals once, when it frees that much.
        let mut w = OutgoingRing::new(to_linux.clone()).map_err(|_| EINVAL)?;
        let needed = loop {
            match w.write(PacketType::InBand, &[], &payload, false, 9) {
                Ok(()) => {}
                Err(WriteError::Full { needed }) => break needed,
                Err(_) => return Err(EINVAL),
            }
        };
        w.commit().map_err(|_| EINVAL)?;
        let before = ch.signals();
        // Without a request, reading signals nothing.
        ch.recv_all(&mut out)?;
        assert_eq!(ch.signals(), before);
        // Full again, now with the request.
        let needed = loop {
            match w.write(PacketType::InBand, &[], &payload, false, 9) {
                Ok(()) => {}
                Err(WriteError::Full { needed: n }) => break n.max(needed),
                Err(_) => return Err(EINVAL),
            }
        };
        w.commit().map_err(|_| EINVAL)?;
        w.set_pending_send_size(u32::try_from(needed)?);
        ch.recv_all(&mut out)?;
        assert_eq!(
            ch.signals(),
            Signals {
                total: before.total + 1,
                out_empty: before.out_empty,
                in_full: before.in_full + 1,
            }
        );

        // Linux's writer fills the ring kmcl reads, and (as a Linux driver
        // does) asks for room; kmcl's reader signals once, at the crossing.
        let mut r = IncomingRing::new(from_linux.clone()).map_err(|_| EINVAL)?;
        let mut buf = KVec::from_elem(0u8, 8192, GFP_KERNEL)?;
        while ch.send(&payload, 5, INBAND, 0).is_ok() {}
        let want = u32::try_from(needed)?;
        from_linux.control()[PENDING_SEND_SIZE].store(want, Ordering::SeqCst);
        let mut signals = 0;
        // One packet at a time: only the commit that makes room signals.
        while r.read(&mut buf).map_err(|_| EINVAL)?.is_some() {
            if r.commit() {
                signals += 1;
            }
        }
        assert_eq!(signals, 1);
        Ok(())
    }
}

// SPDX-License-Identifier: GPL-2.0

//! Memory shared with the other endpoint of a channel.
//!
//! One of the few places in kmcl with `unsafe` code: ring memory is written
//! by the other endpoint at any time, so it is reached through raw pointers
//! and only ever accessed with atomics (the control page), volatile 8-byte
//! words or the kernel's `memcpy` called from C (the data area) — the
//! accesses hv_vmbus makes to the same memory (`READ_ONCE`/`WRITE_ONCE`
//! for indices, `memcpy` for packets). Nothing here
//! interprets the bytes; [`crate::protocol::ring`] validates them.
//!
//! - [`ring_pages`]: the pages of a ring (control page and data area);
//! - [`gpadl_pages`]: memory a client shares through a GPADL, and external
//!   data described by page lists;
//! - [`mmio`]: a loopback device's MMIO space.

mod gpadl_pages;
mod mmio;
mod ring_pages;

#[cfg(kmcl_kunit)]
pub(crate) use gpadl_pages::{
    page_read,
    page_write, //
};
pub(crate) use gpadl_pages::{
    External,
    GpadlPages,
    MdlView,
    Page, //
    MAX_EXTERNAL_RANGES,
};
pub(crate) use mmio::MmioMemory;
pub(crate) use ring_pages::RingPages;

#[cfg(kmcl_kunit)]
#[kernel::prelude::kunit_tests(kmcl_shmem)]
mod tests {
    use super::*;
    use crate::protocol::packet::PacketType;
    use crate::protocol::ring::RingMemory;
    use crate::protocol::ring::{
        IncomingRing,
        OutgoingRing, //
    };
    use kernel::page::PAGE_SIZE;
    use kernel::prelude::*;

    #[test]
    fn ring_pages_layout() -> Result {
        let ring = RingPages::new(2)?;
        assert_eq!(ring.base_addr() % PAGE_SIZE, 0);
        assert_eq!(ring.data_len(), 2 * PAGE_SIZE);
        assert_eq!(ring.data_pages(), 2);
        let mut w = OutgoingRing::new(&ring).map_err(|_| EINVAL)?;
        w.write(PacketType::InBand, &[], &[0xab; 5], false, 9)
            .map_err(|_| EINVAL)?;
        w.commit().map_err(|_| EINVAL)?;
        // The write index is the first word of the control page, the data
        // area starts one page later: read both back as raw bytes.
        let mut first = [0u8; 8];
        ring.read_data(0, &mut first);
        // In-band, offset8 2, len8 3 (16 + 5 bytes padded to 24), no flags.
        assert_eq!(first, [6, 0, 2, 0, 3, 0, 0, 0]);
        assert_eq!(
            ring.control()[0].load(core::sync::atomic::Ordering::SeqCst),
            32
        );
        Ok(())
    }

    #[test]
    fn out_of_range_copies_are_refused() -> Result {
        let ring = RingPages::new(1)?;
        ring.write_data(0, &[0x5a; 16]);
        let mut buf = [0u8; 16];
        ring.read_data(PAGE_SIZE - 8, &mut buf);
        assert_eq!(buf, [0u8; 16]);
        ring.read_data(4, &mut buf);
        assert_eq!(buf, [0u8; 16]);
        ring.read_data(0, &mut buf);
        assert_eq!(buf, [0x5a; 16]);
        assert!(RingPages::new(0).is_err());
        Ok(())
    }

    /// Copies in and out of the data area are byte-exact at every 8-byte
    /// offset of the last page and every length to 2 KiB (word copies
    /// below 64 bytes, the kernel's `memcpy` from there), from and into
    /// buffers at every byte alignment, without touching the bytes around
    /// them; and packets split at the wrap point at every alignment read
    /// back whole.
    #[test]
    fn copies_are_byte_exact_at_every_offset_and_length() -> Result {
        let ring = RingPages::new(2)?;
        let end = ring.data_len();
        let mut pattern = KVec::from_elem(0u8, 2048 + 8, GFP_KERNEL)?;
        let mut back = KVec::from_elem(0u8, 2048 + 16, GFP_KERNEL)?;
        let mut checked = 0u32;
        for start in (end - PAGE_SIZE..end).step_by(8) {
            for len in (8..=2048usize).step_by(if start % 512 == 0 { 8 } else { 248 }) {
                if start + len > end {
                    break;
                }
                // Source and destination at every byte alignment.
                let (a, d) = ((start / 8 + len / 8) % 8, len / 8 % 8);
                for (i, b) in pattern[a..a + len].iter_mut().enumerate() {
                    *b = (start / 8 + i * 131 + len) as u8;
                }
                ring.write_data(start, &pattern[a..a + len]);
                back.fill(0xee);
                ring.read_data(start, &mut back[8 + d..8 + d + len]);
                assert!(back[8 + d..8 + d + len] == pattern[a..a + len]);
                assert!(back[..8 + d].iter().all(|&b| b == 0xee));
                assert!(back[8 + d + len..].iter().all(|&b| b == 0xee));
                checked += 1;
            }
        }
        assert!(checked > 1000);
        // Neighbouring ring bytes are untouched by a copy: write a run,
        // then a shorter one inside it, and read the whole back.
        ring.write_data(end - 256, &pattern[..256]);
        ring.write_data(end - 192, &[0x11; 64]);
        ring.read_data(end - 256, &mut back[..256]);
        assert!(back[..64] == pattern[..64]);
        assert!(back[64..128].iter().all(|&b| b == 0x11));
        assert!(back[128..256] == pattern[128..256]);
        // Packets of several sizes, so that the wrap splits them at every
        // alignment.
        let mut w = OutgoingRing::new(&ring).map_err(|_| EINVAL)?;
        let mut r = IncomingRing::new(&ring).map_err(|_| EINVAL)?;
        let mut buf = KVec::from_elem(0u8, 4096, GFP_KERNEL)?;
        for i in 0..600u32 {
            let len =
                [24usize, 232, 248, 256, 264, 1000, 3000][i as usize % 7] + (i as usize % 5) * 8;
            for (j, b) in pattern[..len.min(2048)].iter_mut().enumerate() {
                *b = (i as usize ^ j) as u8;
            }
            let payload = &pattern[..len.min(2048)];
            w.write(PacketType::InBand, &[], payload, false, u64::from(i))
                .map_err(|_| EINVAL)?;
            w.commit().map_err(|_| EINVAL)?;
            let pkt = r.read(&mut buf).map_err(|_| EINVAL)?.ok_or(EINVAL)?;
            assert_eq!(pkt.descriptor.transaction_id(), u64::from(i));
            assert!(pkt.payload(&buf)[..payload.len()] == *payload);
            r.commit();
        }
        Ok(())
    }

    #[test]
    fn wraps_on_real_pages() -> Result {
        let ring = RingPages::new(1)?;
        let mut w = OutgoingRing::new(&ring).map_err(|_| EINVAL)?;
        let mut r = IncomingRing::new(&ring).map_err(|_| EINVAL)?;
        let mut buf = KVec::from_elem(0u8, PAGE_SIZE, GFP_KERNEL)?;
        let mut payload = KVec::from_elem(0u8, 1000, GFP_KERNEL)?;
        // 1000-byte packets in a 4 KiB ring: every few packets wrap.
        for i in 0..50u8 {
            for (j, b) in payload.iter_mut().enumerate() {
                *b = i.wrapping_mul(7) ^ (j as u8);
            }
            w.write(PacketType::InBand, &[], &payload, true, u64::from(i))
                .map_err(|_| EINVAL)?;
            w.commit().map_err(|_| EINVAL)?;
            let pkt = r.read(&mut buf).map_err(|_| EINVAL)?.ok_or(EINVAL)?;
            assert_eq!(pkt.descriptor.transaction_id(), u64::from(i));
            assert_eq!(&pkt.payload(&buf)[..1000], &payload[..]);
            r.commit();
        }
        Ok(())
    }
}

// SPDX-License-Identifier: GPL-2.0

//! GPA-direct range lists: the header of a VMBus GPA-direct packet (type 9).
//!
//! The header that follows the 16-byte descriptor is
//!
//! ```text
//! u32 reserved; u32 range_count;
//! range_count x { u32 byte_count; u32 byte_offset; u64 pfn[pages]; }
//! ```
//!
//! (`struct vmbus_packet_mpb_array` / `struct hv_mpb_array` in
//! `include/linux/hyperv.h`), where `byte_offset` is the offset into the first
//! page and `pages` is the number of 4 KiB pages the range touches. The whole
//! list comes from the other endpoint: [`GpaRanges::parse`] checks every count,
//! offset and length before anything uses it.

/// VMBus page size: GPA ranges always count 4 KiB pages.
pub const HV_PAGE_SIZE: usize = 4096;

/// Bytes of the list header (`reserved`, `range_count`).
const LIST_HEADER: usize = 8;
/// Bytes of a range header (`byte_count`, `byte_offset`).
const RANGE_HEADER: usize = 8;

/// Why a GPA range list was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpaError {
    /// The list is shorter than its own headers claim.
    Truncated,
    /// `range_count` is zero or above the receiver's limit.
    BadRangeCount(u32),
    /// A range is empty or its offset is not inside the first page.
    BadRange {
        /// `byte_count` as read.
        len: u32,
        /// `byte_offset` as read.
        offset: u32,
    },
    /// The ranges describe more bytes than the receiver's limit.
    TooMuchData,
    /// Bytes are left over after the last range.
    TrailingBytes,
    /// The output buffer is too small (encoding only).
    NoSpace,
}

/// Number of 4-KiB pages a range of `len` bytes starting `offset` bytes
/// into its first page touches.
pub fn pages_spanned(offset: usize, len: usize) -> Option<usize> {
    pages_spanned_of(offset, len, HV_PAGE_SIZE)
}

/// Number of pages of `page_size` bytes (a power of two) a range of `len`
/// bytes starting `offset` bytes into its first page touches.
pub fn pages_spanned_of(offset: usize, len: usize, page_size: usize) -> Option<usize> {
    Some(offset.checked_add(len)?.checked_add(page_size - 1)? / page_size)
}

/// The range of `len` bytes starting `offset` bytes into the first of the
/// kernel pages `pfns` (of `1 << page_shift` bytes each) as VMBus names
/// it: its offset into its first 4-KiB frame, and those frames in order
/// (Hyper-V's page numbers, Linux's `page_to_hvpfn()`; each kernel page
/// is `1 << (page_shift - 12)` of them). With 4-KiB kernel pages both are
/// the kernel's. `None` for pages smaller than 4 KiB or larger than 1 MiB,
/// or an offset outside the first page. The frames end early if `pfns`
/// holds fewer pages than the range needs.
pub fn hv_frames<I: Iterator<Item = u64>>(
    offset: usize,
    len: usize,
    page_shift: u32,
    pfns: I,
) -> Option<(u32, impl Iterator<Item = u64>)> {
    let ratio_shift = page_shift.checked_sub(12).filter(|s| *s <= 8)?;
    if offset >> page_shift != 0 {
        return None;
    }
    let count = pages_spanned(offset % HV_PAGE_SIZE, len)?;
    let frames = pfns
        .flat_map(move |p| (0..1u64 << ratio_shift).map(move |i| (p << ratio_shift) | i))
        .skip(offset / HV_PAGE_SIZE)
        .take(count);
    Some(((offset % HV_PAGE_SIZE) as u32, frames))
}

/// `len` bytes from byte `offset` of a run of memory, split at every
/// 4-KiB frame boundary: (position from the run's start, length) of each
/// piece, in order. A DMA mapping that keeps a piece's place in its frame
/// (swiotlb with a 4-KiB `min_align_mask`) maps each piece to one frame,
/// so that the mapped pieces still make one GPA range ([`mapped_range`]).
pub fn frame_pieces(offset: usize, len: usize) -> impl Iterator<Item = (usize, usize)> {
    let end = offset.saturating_add(len);
    let mut at = offset;
    core::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let n = (HV_PAGE_SIZE - at % HV_PAGE_SIZE).min(end - at);
        let piece = (at, n);
        at += n;
        Some(piece)
    })
}

/// The GPA range that mapped pieces make, given each piece's bus address
/// and length in order: its offset into its first 4-KiB frame and its
/// frames (one a piece). `None` unless they line up as one range: no
/// piece empty or leaving its frame, every piece but the first starting
/// at a frame's start and every piece but the last ending at a frame's
/// end.
pub fn mapped_range(pieces: &[(u64, usize)]) -> Option<(u32, impl Iterator<Item = u64> + '_)> {
    const PAGE: u64 = HV_PAGE_SIZE as u64;
    const SHIFT: u32 = HV_PAGE_SIZE.trailing_zeros();
    let last = pieces.len().checked_sub(1)?;
    let (first, _) = *pieces.first()?;
    for (i, (addr, len)) in pieces.iter().enumerate() {
        let start = addr & (PAGE - 1);
        let end = start.checked_add(u64::try_from(*len).ok()?)?;
        if *len == 0 || end > PAGE || (i > 0 && start != 0) || (i < last && end != PAGE) {
            return None;
        }
    }
    let offset = (first & (PAGE - 1)) as u32;
    Some((offset, pieces.iter().map(|(addr, _)| addr >> SHIFT)))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// One validated range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpaRange<'a> {
    /// Offset of the first byte within the first page.
    pub offset: u32,
    /// Length in bytes; at least 1.
    pub len: u32,
    pfns: &'a [u8],
}

impl GpaRange<'_> {
    /// Number of pages the range touches.
    pub fn page_count(&self) -> usize {
        self.pfns.len() / 8
    }

    /// The page frame numbers of the range, in order.
    pub fn pfns(&self) -> impl Iterator<Item = u64> + '_ {
        self.pfns
            .as_chunks::<8>()
            .0
            .iter()
            .map(|c| u64::from_le_bytes(*c))
    }
}

/// A validated GPA range list, borrowed from the packet copy it was parsed
/// from.
///
/// # Invariants
///
/// `bytes` holds exactly `count` well-formed ranges (non-empty, offset inside
/// the first page, page count matching offset and length).
#[derive(Clone, Copy, Debug)]
pub struct GpaRanges<'a> {
    count: u32,
    total_len: u64,
    bytes: &'a [u8],
}

impl<'a> GpaRanges<'a> {
    /// Parses and validates the type-specific header of a GPA-direct
    /// packet. `max_ranges` and `max_bytes` are the receiver's limits (its
    /// maximum external data chain length and size).
    pub fn parse(header: &'a [u8], max_ranges: u32, max_bytes: u64) -> Result<Self, GpaError> {
        let count = u32_at(header, 4).ok_or(GpaError::Truncated)?;
        if count == 0 || count > max_ranges {
            return Err(GpaError::BadRangeCount(count));
        }
        let mut at = LIST_HEADER;
        let mut total: u64 = 0;
        for _ in 0..count {
            let len = u32_at(header, at).ok_or(GpaError::Truncated)?;
            let offset = u32_at(header, at + 4).ok_or(GpaError::Truncated)?;
            if len == 0 || offset as usize >= HV_PAGE_SIZE {
                return Err(GpaError::BadRange { len, offset });
            }
            total += u64::from(len);
            if total > max_bytes {
                return Err(GpaError::TooMuchData);
            }
            // Cannot overflow: offset < 4096 and len < 2^32.
            let pages =
                pages_spanned(offset as usize, len as usize).ok_or(GpaError::TooMuchData)?;
            let end = at
                .checked_add(RANGE_HEADER)
                .and_then(|a| a.checked_add(pages.checked_mul(8)?))
                .ok_or(GpaError::Truncated)?;
            if end > header.len() {
                return Err(GpaError::Truncated);
            }
            at = end;
        }
        if at != header.len() {
            return Err(GpaError::TrailingBytes);
        }
        // INVARIANT: every range was checked above.
        Ok(Self {
            count,
            total_len: total,
            bytes: header,
        })
    }

    /// Number of ranges.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Total bytes described by all ranges.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// The ranges, in order.
    pub fn iter(&self) -> impl Iterator<Item = GpaRange<'a>> + 'a {
        let bytes = self.bytes;
        let mut at = LIST_HEADER;
        (0..self.count).map(move |_| {
            // The invariant guarantees these reads succeed.
            let len = u32_at(bytes, at).unwrap_or(0);
            let offset = u32_at(bytes, at + 4).unwrap_or(0);
            let pages = pages_spanned(offset as usize, len as usize).unwrap_or(0);
            let pfns = &bytes[at + RANGE_HEADER..at + RANGE_HEADER + pages * 8];
            at += RANGE_HEADER + pages * 8;
            GpaRange { offset, len, pfns }
        })
    }
}

/// Size in bytes of the encoded list for ranges of the given
/// `(offset, len)` pairs.
pub fn encoded_len(ranges: impl Iterator<Item = (u32, u32)>) -> Option<usize> {
    let mut n = LIST_HEADER;
    for (offset, len) in ranges {
        let pages = pages_spanned(offset as usize, len as usize)?;
        n = n
            .checked_add(RANGE_HEADER)?
            .checked_add(pages.checked_mul(8)?)?;
    }
    Some(n)
}

/// Encodes one range list into `out`, returning the bytes used.
///
/// Each item is `(offset, len, pfns)`; `pfns` must have exactly the number
/// of pages the range touches.
pub fn encode<'p>(
    ranges: impl Iterator<Item = (u32, u32, &'p [u64])>,
    out: &mut [u8],
) -> Result<usize, GpaError> {
    if out.len() < LIST_HEADER {
        return Err(GpaError::NoSpace);
    }
    let mut at = LIST_HEADER;
    let mut count: u32 = 0;
    for (offset, len, pfns) in ranges {
        if len == 0 || offset as usize >= HV_PAGE_SIZE {
            return Err(GpaError::BadRange { len, offset });
        }
        if pages_spanned(offset as usize, len as usize) != Some(pfns.len()) {
            return Err(GpaError::BadRange { len, offset });
        }
        let end = at + RANGE_HEADER + pfns.len() * 8;
        if end > out.len() {
            return Err(GpaError::NoSpace);
        }
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
        out[at + 4..at + 8].copy_from_slice(&offset.to_le_bytes());
        for (i, pfn) in pfns.iter().enumerate() {
            let p = at + RANGE_HEADER + i * 8;
            out[p..p + 8].copy_from_slice(&pfn.to_le_bytes());
        }
        at = end;
        count = count
            .checked_add(1)
            .ok_or(GpaError::BadRangeCount(u32::MAX))?;
    }
    if count == 0 {
        return Err(GpaError::BadRangeCount(0));
    }
    out[0..4].copy_from_slice(&0u32.to_le_bytes());
    out[4..8].copy_from_slice(&count.to_le_bytes());
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    fn frames(offset: usize, len: usize, shift: u32, pfns: &[u64]) -> Option<(u32, Vec<u64>)> {
        hv_frames(offset, len, shift, pfns.iter().copied()).map(|(o, f)| (o, f.collect()))
    }

    #[test]
    fn hv_frames_of_4k_pages_are_the_kernels() {
        assert_eq!(frames(100, 5000, 12, &[7, 9]), Some((100, std::vec![7, 9])));
        assert_eq!(frames(0, 4096, 12, &[3]), Some((0, std::vec![3])));
    }

    #[test]
    fn hv_frames_of_larger_pages() {
        // 16 KiB pages: four frames each. 5000 bytes from 9000 into page
        // 10 (frames 40..43): from 808 into frame 42, then 43; 8000 bytes
        // go on into the next kernel page, 20 (frames 80..83).
        assert_eq!(
            frames(9000, 5000, 14, &[10, 20]),
            Some((808, std::vec![42, 43]))
        );
        assert_eq!(
            frames(9000, 8000, 14, &[10, 20]),
            Some((808, std::vec![42, 43, 80]))
        );
        // 64 KiB pages: sixteen frames each.
        assert_eq!(
            frames(65535, 2, 16, &[1, 5]),
            Some((4095, std::vec![31, 80]))
        );
        // Smaller than 4 KiB, an offset past the first page.
        assert_eq!(frames(0, 1, 11, &[1]), None);
        assert_eq!(frames(16384, 1, 14, &[1]), None);
    }

    #[test]
    fn hv_frames_count_what_the_range_list_expects() {
        for shift in [12u32, 14, 16] {
            let page = 1usize << shift;
            let pfns: Vec<u64> = (0..8).map(|i| 1000 + 3 * i).collect();
            for offset in (0..page).step_by(page / 8 + 1) {
                for len in [1usize, 100, 4096, 4097, page, 3 * page - offset] {
                    let n = pages_spanned_of(offset, len, page).unwrap();
                    let (o, f) = frames(offset, len, shift, &pfns[..n]).unwrap();
                    assert_eq!(f.len(), pages_spanned(o as usize, len).unwrap());
                    // Every frame lies in one of the kernel pages, in order.
                    let ratio = 1u64 << (shift - 12);
                    assert!(f.windows(2).all(|w| w[0] < w[1]));
                    assert!(f.iter().all(|fr| pfns[..n].contains(&(fr / ratio))));
                }
            }
        }
    }

    #[test]
    fn frame_pieces_split_at_every_4k_boundary() {
        let p: Vec<_> = frame_pieces(300, 5000).collect();
        assert_eq!(p, std::vec![(300, 3796), (4096, 1204)]);
        let p: Vec<_> = frame_pieces(4096, 8192).collect();
        assert_eq!(p, std::vec![(4096, 4096), (8192, 4096)]);
        assert_eq!(frame_pieces(5, 0).count(), 0);
        assert_eq!(
            frame_pieces(4095, 2).collect::<Vec<_>>(),
            std::vec![(4095, 1), (4096, 1)]
        );
    }

    #[test]
    fn mapped_pieces_make_one_range_only_when_they_line_up() {
        let range = |p: &[(u64, usize)]| mapped_range(p).map(|(o, f)| (o, f.collect::<Vec<_>>()));
        // Bounced to frames 0x90 and 0x31, keeping the offset.
        assert_eq!(
            range(&[(0x9012c, 3796), (0x31000, 1204)]),
            Some((300, std::vec![0x90, 0x31]))
        );
        assert_eq!(range(&[(0x5000, 10)]), Some((0, std::vec![5])));
        // A piece that does not end its frame, or starts inside one.
        assert_eq!(range(&[(0x9012c, 3000), (0x31000, 1204)]), None);
        assert_eq!(range(&[(0x9012c, 3796), (0x31004, 1204)]), None);
        // Leaving its frame, empty, none.
        assert_eq!(range(&[(0x9012c, 4000)]), None);
        assert_eq!(range(&[(0x9000, 0)]), None);
        assert_eq!(range(&[]), None);
    }

    proptest::proptest! {
        #[test]
        fn pieces_mapped_in_place_give_the_ranges_frames(
            offset in 0usize..20000, len in 1usize..40000, base in 1u64..1 << 30
        ) {
            // Memory mapped where it is (no bounce): the frames of the
            // range itself.
            let pieces: Vec<(u64, usize)> = frame_pieces(offset, len)
                .map(|(at, n)| (base * 4096 + at as u64, n))
                .collect();
            proptest::prop_assert_eq!(pieces.iter().map(|p| p.1).sum::<usize>(), len);
            let (o, f) = mapped_range(&pieces).unwrap();
            proptest::prop_assert_eq!(o as usize, offset % 4096);
            let f: Vec<u64> = f.collect();
            proptest::prop_assert_eq!(f.len(), pages_spanned(offset % 4096, len).unwrap());
            let first = base + (offset / 4096) as u64;
            proptest::prop_assert!(f.iter().enumerate().all(|(i, x)| *x == first + i as u64));
        }
    }

    #[test]
    fn round_trip_two_ranges() {
        let a = [10u64, 11];
        let b = [99u64];
        let mut buf = [0u8; 64];
        let n = encode(
            [(4000, 200, &a[..]), (0, 4096, &b[..])].into_iter(),
            &mut buf,
        )
        .unwrap();
        assert_eq!(n, 8 + 8 + 16 + 8 + 8);
        assert_eq!(encoded_len([(4000, 200), (0, 4096)].into_iter()), Some(n));
        let list = GpaRanges::parse(&buf[..n], 4, 1 << 20).unwrap();
        assert_eq!(list.count(), 2);
        assert_eq!(list.total_len(), 4296);
        let r: [GpaRange<'_>; 2] = {
            let mut it = list.iter();
            [it.next().unwrap(), it.next().unwrap()]
        };
        assert_eq!((r[0].offset, r[0].len, r[0].page_count()), (4000, 200, 2));
        assert!(r[0].pfns().eq([10, 11]));
        assert!(r[1].pfns().eq([99]));
    }

    #[test]
    fn rejects_each_malformed_list() {
        let pfn = [7u64];
        let mut buf = [0u8; 24];
        encode([(0, 100, &pfn[..])].into_iter(), &mut buf).unwrap();
        assert_eq!(
            GpaRanges::parse(&buf[..4], 4, 1 << 20).err(),
            Some(GpaError::Truncated)
        );
        assert_eq!(
            GpaRanges::parse(&buf[..20], 4, 1 << 20).err(),
            Some(GpaError::Truncated)
        );
        assert_eq!(
            GpaRanges::parse(&buf, 4, 99).err(),
            Some(GpaError::TooMuchData)
        );
        let mut bad = buf;
        bad[4..8].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            GpaRanges::parse(&bad, 4, 1 << 20).err(),
            Some(GpaError::BadRangeCount(0))
        );
        bad[4..8].copy_from_slice(&5u32.to_le_bytes());
        assert_eq!(
            GpaRanges::parse(&bad, 4, 1 << 20).err(),
            Some(GpaError::BadRangeCount(5))
        );
        let mut bad = buf;
        bad[12..16].copy_from_slice(&4096u32.to_le_bytes());
        assert_eq!(
            GpaRanges::parse(&bad, 4, 1 << 20).err(),
            Some(GpaError::BadRange {
                len: 100,
                offset: 4096
            })
        );
        let mut bad = buf;
        bad[8..12].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            GpaRanges::parse(&bad, 4, 1 << 20).err(),
            Some(GpaError::BadRange { len: 0, offset: 0 })
        );
        // A range crossing into a second page needs a second PFN.
        let mut bad = buf;
        bad[12..16].copy_from_slice(&4090u32.to_le_bytes());
        assert_eq!(
            GpaRanges::parse(&bad, 4, 1 << 20).err(),
            Some(GpaError::Truncated)
        );
        let mut long = [0u8; 32];
        long[..24].copy_from_slice(&buf);
        assert_eq!(
            GpaRanges::parse(&long, 4, 1 << 20).err(),
            Some(GpaError::TrailingBytes)
        );
    }

    #[test]
    fn encode_checks_pfn_counts() {
        let pfn = [1u64];
        let mut buf = [0u8; 64];
        assert_eq!(
            encode([(4000, 200, &pfn[..])].into_iter(), &mut buf),
            Err(GpaError::BadRange {
                len: 200,
                offset: 4000
            })
        );
        assert_eq!(
            encode(core::iter::empty(), &mut buf),
            Err(GpaError::BadRangeCount(0))
        );
        assert_eq!(
            encode([(0, 8, &pfn[..])].into_iter(), &mut buf[..16]),
            Err(GpaError::NoSpace)
        );
    }
}

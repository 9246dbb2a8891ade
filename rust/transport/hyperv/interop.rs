// SPDX-License-Identifier: GPL-2.0

//! hv_vmbus's ring functions on rings kmcl owns, for the wire-compatibility
//! tests (`interop_tests.rs`). The C side is `rust/glue/hv_interop.c`.

use core::ffi::c_void;
use core::ptr::NonNull;

use kernel::{
    prelude::*,
    sync::Arc, //
};

use crate::shmem::RingPages;

mod ffi {
    use core::ffi::c_void;

    extern "C" {
        pub(super) fn kmcl_hvi_channel_new(
            inbound: *mut c_void,
            outbound: *mut c_void,
            pages: u32,
            max_pkt: u32,
        ) -> *mut c_void;
        pub(super) fn kmcl_hvi_channel_free(ch: *mut c_void);
        pub(super) fn kmcl_hvi_send(
            ch: *mut c_void,
            buf: *const c_void,
            len: u32,
            requestid: u64,
            ptype: u16,
            flags: u32,
        ) -> i32;
        pub(super) fn kmcl_hvi_send_mpb(
            ch: *mut c_void,
            desc: *mut c_void,
            desc_size: u32,
            buf: *const c_void,
            len: u32,
            requestid: u64,
        ) -> i32;
        pub(super) fn kmcl_hvi_recv_all(
            ch: *mut c_void,
            out: *mut u8,
            cap: u32,
            used: *mut u32,
        ) -> i32;
        pub(super) fn kmcl_hvi_xfer_parse(
            pkt: *const c_void,
            len: u32,
            set_id: *mut u16,
            count: *mut u32,
            ranges: *mut [u32; 2],
            cap: u32,
        ) -> i32;
        pub(super) fn kmcl_hvi_xfer_build(
            out: *mut c_void,
            cap: u32,
            set_id: u16,
            ranges: *const [u32; 2],
            count: u32,
            tid: u64,
        ) -> i32;
        pub(super) fn kmcl_hvi_counters(
            ch: *mut c_void,
            sig_events: *mut u64,
            intr_out_empty: *mut u64,
            intr_in_full: *mut u64,
        );
    }
}

/// hv_vmbus's signal counters of a [`LinuxChannel`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Signals {
    /// Every signal (`sig_events`).
    pub(crate) total: u64,
    /// Writer signals: the ring went from empty to non-empty.
    pub(crate) out_empty: u64,
    /// Reader signals: a waiting writer's `pending_send_sz` was crossed.
    pub(crate) in_full: u64,
}

/// A `struct vmbus_channel` made up around two kmcl rings: hv_vmbus reads
/// `to_linux` (its inbound ring) and writes `from_linux` (its outbound).
///
/// # Invariants
///
/// `ch` is a channel from `kmcl_hvi_channel_new` over the two rings, which
/// `_rings` keeps alive until `ch` is freed on drop.
pub(crate) struct LinuxChannel {
    ch: NonNull<c_void>,
    _rings: (Arc<RingPages>, Arc<RingPages>),
}

impl LinuxChannel {
    /// Maps the two rings (of equal size) for hv_vmbus.
    pub(crate) fn new(to_linux: Arc<RingPages>, from_linux: Arc<RingPages>) -> Result<Self> {
        if to_linux.data_pages() != from_linux.data_pages() {
            return Err(EINVAL);
        }
        let pages = u32::try_from(to_linux.data_pages() + 1)?;
        let max_pkt = u32::try_from(to_linux.data_pages() * kernel::page::PAGE_SIZE)?;
        // SAFETY: both addresses are live vmalloc rings of `pages` pages
        // (control page included), kept alive by `_rings` for as long as
        // the channel exists.
        let ch = unsafe {
            ffi::kmcl_hvi_channel_new(
                to_linux.base_addr() as *mut c_void,
                from_linux.base_addr() as *mut c_void,
                pages,
                max_pkt,
            )
        };
        let ch = NonNull::new(ch).ok_or(ENOMEM)?;
        // INVARIANT: made over the two rings just above.
        Ok(Self {
            ch,
            _rings: (to_linux, from_linux),
        })
    }

    /// The made-up `struct vmbus_channel`.
    pub(crate) fn raw(&self) -> *mut c_void {
        self.ch.as_ptr()
    }

    /// `vmbus_sendpacket()`: `-EAGAIN` when the ring is full.
    pub(crate) fn send(&self, payload: &[u8], requestid: u64, ptype: u16, flags: u32) -> Result {
        let len = u32::try_from(payload.len())?;
        // SAFETY: a live channel (invariant); `payload` is readable for
        // `len` bytes and only read during the call.
        let rc = unsafe {
            ffi::kmcl_hvi_send(
                self.ch.as_ptr(),
                payload.as_ptr().cast(),
                len,
                requestid,
                ptype,
                flags,
            )
        };
        kernel::error::to_result(rc)
    }

    /// `vmbus_sendpacket_mpb_desc()`: `desc` is the descriptor (whose
    /// fixed fields hv_vmbus fills in) followed by the range list.
    pub(crate) fn send_gpa_direct(
        &self,
        desc: &mut [u8],
        payload: &[u8],
        requestid: u64,
    ) -> Result {
        let (desc_len, len) = (u32::try_from(desc.len())?, u32::try_from(payload.len())?);
        // SAFETY: a live channel; `desc` is writable and `payload` readable
        // for their lengths during the call.
        let rc = unsafe {
            ffi::kmcl_hvi_send_mpb(
                self.ch.as_ptr(),
                desc.as_mut_ptr().cast(),
                desc_len,
                payload.as_ptr().cast(),
                len,
                requestid,
            )
        };
        kernel::error::to_result(rc)
    }

    /// Reads every packet with `hv_pkt_iter_*` into `out` (cleared first),
    /// whole and back to back; returns how many.
    pub(crate) fn recv_all(&self, out: &mut KVec<u8>) -> Result<usize> {
        let cap = out.capacity();
        out.clear();
        let mut used = 0u32;
        // SAFETY: a live channel; `out` has `cap` writable bytes of
        // capacity, of which the call writes `used` at most `cap`.
        let n = unsafe {
            ffi::kmcl_hvi_recv_all(
                self.ch.as_ptr(),
                out.as_mut_ptr(),
                u32::try_from(cap)?,
                &mut used,
            )
        };
        if n < 0 {
            return Err(Error::from_errno(n));
        }
        // SAFETY: the C side initialised the first `used` bytes.
        unsafe { out.inc_len(used as usize) };
        Ok(n as usize)
    }

    /// hv_vmbus's signal counters.
    pub(crate) fn signals(&self) -> Signals {
        let mut s = Signals::default();
        // SAFETY: a live channel; the three outputs are writable.
        unsafe {
            ffi::kmcl_hvi_counters(
                self.ch.as_ptr(),
                &mut s.total,
                &mut s.out_empty,
                &mut s.in_full,
            )
        };
        s
    }
}

/// The set id and ranges (byte count, byte offset) of the transfer-page
/// packet `pkt`, read through Linux's `struct
/// vmtransfer_page_packet_header` as netvsc reads it.
pub(crate) fn xfer_parse(pkt: &[u8]) -> Result<(u16, KVec<[u32; 2]>)> {
    let (mut set, mut count) = (0u16, 0u32);
    let mut ranges = KVec::from_elem([0u32; 2], 64, GFP_KERNEL)?;
    // SAFETY: `pkt` is readable and `ranges` writable for the lengths
    // given; the outputs are writable.
    let rc = unsafe {
        ffi::kmcl_hvi_xfer_parse(
            pkt.as_ptr().cast(),
            u32::try_from(pkt.len())?,
            &mut set,
            &mut count,
            ranges.as_mut_ptr(),
            64,
        )
    };
    kernel::error::to_result(rc)?;
    ranges.truncate(count.min(64) as usize);
    Ok((set, ranges))
}

/// The transfer-page packet Hyper-V's network VSP writes for `ranges`
/// (byte count, byte offset) of set `set`, built with Linux's `struct
/// vmtransfer_page_packet_header`: descriptor and header, no payload.
pub(crate) fn xfer_build(set: u16, ranges: &[[u32; 2]], tid: u64) -> Result<KVec<u8>> {
    let mut out = KVec::from_elem(0u8, 16 + 8 + 8 * ranges.len(), GFP_KERNEL)?;
    // SAFETY: `out` is writable and `ranges` readable for the lengths
    // given.
    let rc = unsafe {
        ffi::kmcl_hvi_xfer_build(
            out.as_mut_ptr().cast(),
            u32::try_from(out.len())?,
            set,
            ranges.as_ptr(),
            u32::try_from(ranges.len())?,
            tid,
        )
    };
    if rc < 0 {
        return Err(Error::from_errno(rc));
    }
    out.truncate(rc as usize);
    Ok(out)
}

impl Drop for LinuxChannel {
    fn drop(&mut self) {
        // SAFETY: made by `kmcl_hvi_channel_new` and freed only here.
        unsafe { ffi::kmcl_hvi_channel_free(self.ch.as_ptr()) };
    }
}

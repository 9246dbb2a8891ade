// SPDX-License-Identifier: GPL-2.0

//! External data an incoming packet describes, checked against what its
//! sender exposed.

use kernel::{
    sync::Arc, //
};

use crate::{
    protocol::gpa::GpaRanges,
    shmem::GpadlPages, //
};

use crate::engine::types::ExternalLimits;

use super::Peer;

/// The pages `peer` exposed for transaction `tid`, if `header` (a GPA range
/// list read from the ring) describes exactly them within `limits`. A host's GPA ranges would name guest memory the host
/// chose: never accepted.
pub(super) fn check_external(
    peer: &Peer,
    header: &[u8],
    tid: u64,
    limits: ExternalLimits,
) -> Option<Arc<GpadlPages>> {
    let ranges = GpaRanges::parse(header, limits.ranges, limits.bytes).ok()?;
    let pages = peer.channel()?.exposed(tid)?;
    let mut it = ranges.iter();
    let r = it.next()?;
    let same = it.next().is_none()
        && r.offset as usize == pages.offset()
        && r.len as usize == pages.len()
        && r.pfns().eq(pages.pfns());
    same.then_some(pages)
}

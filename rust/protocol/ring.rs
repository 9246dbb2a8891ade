// SPDX-License-Identifier: GPL-2.0

//! VMBus ring buffers: the writer and reader ends.
//!
//! A VMBus ring is a control page followed by a data area whose size is a
//! multiple of the page size. The control page's first words are
//! (`struct hv_ring_buffer` in `include/linux/hyperv.h`):
//!
//! | word | field             | owner  |
//! |------|-------------------|--------|
//! | 0    | `write_index`     | writer |
//! | 1    | `read_index`      | reader |
//! | 2    | `interrupt_mask`  | reader |
//! | 3    | `pending_send_sz` | writer |
//! | 16   | `feature_bits`    | both   |
//!
//! Indices are byte offsets into the data area, always 8-byte aligned. The
//! ring is empty when they are equal; a writer never fills it completely, so
//! a full ring is never mistaken for an empty one.
//!
//! Each end keeps its own index privately and only publishes it: a value the
//! other endpoint wrote into our word is never read back. The other end's
//! index is read once per operation and validated before use; a bad value
//! fails the operation with [`RingError`] and nothing is read or written.
//!
//! Both ends batch: [`OutgoingRing::write`] and [`IncomingRing::read`] work on
//! private cursors, and [`OutgoingRing::commit`] / [`IncomingRing::commit`]
//! publish them, telling the caller whether the other endpoint must be
//! signalled, by the rules hv_vmbus and Hyper-V use:
//!
//! - the writer signals only when the ring goes from empty to non-empty and
//!   the reader's `interrupt_mask` is clear;
//! - the reader signals only when the free space crosses the writer's
//!   `pending_send_sz` (and the writer set the pending-send-size feature).

use core::sync::atomic::{
    fence,
    AtomicU32,
    AtomicU64,
    Ordering, //
};

use super::packet::{
    Descriptor, DescriptorError, PacketType, DESCRIPTOR_SIZE, PACKET_ALIGN, TRAILER_SIZE,
};

/// Number of 32-bit words of the control page kmcl accesses.
pub const CONTROL_WORDS: usize = 32;

/// Control word: `write_index` (see the layout table above).
pub const WRITE_INDEX: usize = 0;
/// Control word: `read_index`.
pub const READ_INDEX: usize = 1;
/// Control word: `interrupt_mask`.
pub const INTERRUPT_MASK: usize = 2;
/// Control word: `pending_send_sz`.
pub const PENDING_SEND_SIZE: usize = 3;
/// Control word: `feature_bits`.
pub const FEATURE_BITS: usize = 16;

/// `feature_bits` bit: the writer uses `pending_send_sz` for flow control.
pub const FEATURE_PENDING_SEND_SIZE: u32 = 1;

/// Copies of at least this many bytes are worth a call to a bulk copy
/// (`memcpy`); a ring memory copies shorter ones (descriptors, trailers, a
/// payload's last word) a word at a time. The kernel's ring pages and the
/// host's bulk-copy memory both follow it.
pub const BULK_COPY_MIN: usize = 64;

/// Memory holding one ring: its control words and its data area.
///
/// Implementations decide how the shared memory is reached (atomics on the
/// host, page mappings in the kernel). The ring calls the data accessors
/// only with 8-byte aligned offsets and lengths that are multiples of 8 and
/// never past [`data_len`](Self::data_len): wrap-around is split by the ring.
pub trait RingMemory {
    /// The control words at the start of the ring's first page.
    fn control(&self) -> &[AtomicU32; CONTROL_WORDS];

    /// Size of the data area in bytes: a non-zero multiple of 8.
    fn data_len(&self) -> usize;

    /// Copies `buf.len()` bytes of the data area at `offset` into `buf`.
    fn read_data(&self, offset: usize, buf: &mut [u8]);

    /// Copies `buf` into the data area at `offset`.
    fn write_data(&self, offset: usize, buf: &[u8]);
}

/// A ring's shared state did not make sense.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The data area is empty, too large or not a multiple of 8 bytes.
    BadSize(usize),
    /// The other endpoint's index is out of range or misaligned.
    BadIndex(u32),
    /// A packet descriptor in the ring was malformed.
    Descriptor(DescriptorError),
    /// A packet is larger than the reader's buffer (its maximum packet size).
    PacketTooLarge {
        /// Bytes the packet needs.
        len: usize,
        /// Bytes the reader can take.
        max: usize,
    },
}

impl From<DescriptorError> for RingError {
    fn from(e: DescriptorError) -> Self {
        Self::Descriptor(e)
    }
}

/// Why a packet was not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// Not enough free space now; `needed` bytes must be free (the value
    /// to put in `pending_send_sz` before waiting).
    Full {
        /// Bytes the packet occupies in the ring, trailer included.
        needed: usize,
    },
    /// The packet can never fit this ring, or its header is misaligned.
    TooLarge,
    /// The ring's shared state is corrupt.
    Ring(RingError),
}

impl From<RingError> for WriteError {
    fn from(e: RingError) -> Self {
        Self::Ring(e)
    }
}

fn checked_size<M: RingMemory>(mem: &M) -> Result<u32, RingError> {
    let len = mem.data_len();
    if len == 0 || len % PACKET_ALIGN != 0 {
        return Err(RingError::BadSize(len));
    }
    u32::try_from(len).map_err(|_| RingError::BadSize(len))
}

#[inline]
fn checked_index(raw: u32, size: u32) -> Result<u32, RingError> {
    if raw >= size || raw as usize % PACKET_ALIGN != 0 {
        return Err(RingError::BadIndex(raw));
    }
    Ok(raw)
}

/// Bytes from `from` to `to` going forward around a ring of `size` bytes,
/// for `from` and `to` below `size` (validated indices).
///
/// The ring's offset arithmetic (here, in [`advance`] and in
/// `OutgoingRing::free_from`) wraps instead of checking for overflow: its
/// operands are validated indices below `size`, so no result leaves
/// `0..size`, and with `CONFIG_RUST_OVERFLOW_CHECKS` (the kernel's
/// default) each checked operation is a branch to a panic on the
/// per-packet path.
#[inline]
fn distance(from: u32, to: u32, size: u32) -> u32 {
    let d = to.wrapping_sub(from);
    if to >= from {
        d
    } else {
        d.wrapping_add(size)
    }
}

/// The ring offset `len` bytes after `offset`, for `offset < size` and
/// `len <= size`.
///
/// Written without `%`: besides being cheaper, a remainder by a run-time
/// value carries a division-by-zero panic path that objtool cannot follow.
#[inline]
fn advance(offset: u32, len: usize, size: u32) -> u32 {
    // Both below 2^32: no overflow (see `distance`).
    let end = (offset as usize).wrapping_add(len);
    if end >= size as usize {
        end.wrapping_sub(size as usize) as u32
    } else {
        end as u32
    }
}

/// Copies `buf` into the ring at `offset`, splitting at the end of the data
/// area. Returns the offset after the copy.
#[inline]
fn write_wrapped<M: RingMemory>(mem: &M, size: u32, offset: u32, buf: &[u8]) -> u32 {
    let first = core::cmp::min(buf.len(), (size - offset) as usize);
    mem.write_data(offset as usize, &buf[..first]);
    if first < buf.len() {
        mem.write_data(0, &buf[first..]);
    }
    advance(offset, buf.len(), size)
}

/// Copies ring bytes at `offset` into `buf`, splitting at the end of the
/// data area. Returns the offset after the copy.
#[inline]
fn read_wrapped<M: RingMemory>(mem: &M, size: u32, offset: u32, buf: &mut [u8]) -> u32 {
    let first = core::cmp::min(buf.len(), (size - offset) as usize);
    mem.read_data(offset as usize, &mut buf[..first]);
    if first < buf.len() {
        mem.read_data(0, &mut buf[first..]);
    }
    advance(offset, buf.len(), size)
}

/// A ring's control values as read at one moment, for diagnostics
/// (debugfs). The values are whatever the shared page holds: unvalidated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingState {
    /// Data area size in bytes.
    pub size: u32,
    /// `write_index`.
    pub write_index: u32,
    /// `read_index`.
    pub read_index: u32,
    /// `interrupt_mask`.
    pub interrupt_mask: u32,
    /// `pending_send_sz`.
    pub pending_send_size: u32,
    /// Bytes between the read and the write index (0 if either is out of
    /// range).
    pub used: u32,
}

/// Reads `mem`'s control values once each (no validation, no effect).
pub fn ring_state<M: RingMemory>(mem: &M) -> RingState {
    let c = mem.control();
    let size = u32::try_from(mem.data_len()).unwrap_or(0);
    let write_index = c[WRITE_INDEX].load(Ordering::Relaxed);
    let read_index = c[READ_INDEX].load(Ordering::Relaxed);
    let used = if write_index < size && read_index < size {
        distance(read_index, write_index, size)
    } else {
        0
    };
    RingState {
        size,
        write_index,
        read_index,
        interrupt_mask: c[INTERRUPT_MASK].load(Ordering::Relaxed),
        pending_send_size: c[PENDING_SEND_SIZE].load(Ordering::Relaxed),
        used,
    }
}

/// The writer's end of a ring.
///
/// # Invariants
///
/// `size` is `mem.data_len()`, a non-zero multiple of 8 that fits in `u32`;
/// `committed` and `next` are 8-aligned and below `size`; `next` is at most
/// the free space ahead of `committed`, so the batch never overruns the
/// reader.
pub struct OutgoingRing<M: RingMemory> {
    mem: M,
    size: u32,
    /// The `write_index` we last published.
    committed: u32,
    /// Where the next packet of the current batch goes.
    next: u32,
    /// The reader's index as last read (validated). The reader only moves
    /// forward, so space computed from it is never more than there is;
    /// the shared index is read again only when that space runs out.
    known_read: u32,
}

impl<M: RingMemory> OutgoingRing<M> {
    /// Takes the writer's end of an initialised ring (both indices zero, as
    /// after [`init_control`]) and announces pending-send-size support.
    pub fn new(mem: M) -> Result<Self, RingError> {
        let size = checked_size(&mem)?;
        let committed = checked_index(mem.control()[WRITE_INDEX].load(Ordering::Acquire), size)?;
        mem.control()[FEATURE_BITS].fetch_or(FEATURE_PENDING_SEND_SIZE, Ordering::Relaxed);
        let known_read = checked_index(mem.control()[READ_INDEX].load(Ordering::Acquire), size)?;
        // INVARIANT: size and the indices were validated; next == committed.
        Ok(Self {
            mem,
            size,
            committed,
            next: committed,
            known_read,
        })
    }

    /// The ring memory.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Free bytes if the reader were still at `read`.
    #[inline]
    fn free_from(&self, read: u32) -> usize {
        let used = distance(read, self.next, self.size);
        // A ring is never filled completely: keep 8 bytes so that a full
        // ring does not look empty. `used` is a distance between 8-aligned
        // indices below `size`, so at most `size - 8` (see `distance`).
        (self.size.wrapping_sub(used) as usize).wrapping_sub(PACKET_ALIGN)
    }

    /// The largest packet (trailer included) this ring can ever take.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.size as usize - PACKET_ALIGN
    }

    /// Reads (with `order`) and validates the reader's index.
    #[inline]
    fn read_index(&self, order: Ordering) -> Result<u32, RingError> {
        checked_index(self.mem.control()[READ_INDEX].load(order), self.size)
    }

    /// Bytes that can be written now, beyond the uncommitted batch.
    pub fn free_bytes(&self) -> Result<usize, RingError> {
        Ok(self.free_from(self.read_index(Ordering::Acquire)?))
    }

    /// Appends a packet to the batch: the descriptor, `header` (a
    /// type-specific header such as a GPA range list, 8-byte multiple) and
    /// `payload`, padded to 8 bytes, then the trailer. Nothing is visible to
    /// the reader until [`commit`](Self::commit).
    #[inline]
    pub fn write(
        &mut self,
        ptype: PacketType,
        header: &[u8],
        payload: &[u8],
        completion_requested: bool,
        transaction_id: u64,
    ) -> Result<(), WriteError> {
        if header.len() % PACKET_ALIGN != 0 {
            return Err(WriteError::TooLarge);
        }
        let desc = Descriptor::new(
            ptype,
            header.len(),
            payload.len(),
            completion_requested,
            transaction_id,
        )
        .ok_or(WriteError::TooLarge)?;
        let needed = desc.ring_len();
        if needed > self.capacity() {
            return Err(WriteError::TooLarge);
        }
        if needed > self.free_from(self.known_read) {
            self.known_read = self.read_index(Ordering::Acquire)?;
            if needed > self.free_from(self.known_read) {
                return Err(WriteError::Full { needed });
            }
        }

        let start = self.next;
        // The trailer carries the packet's start offset in its upper half,
        // as hv_vmbus writes it.
        let trailer = (u64::from(start) << 32).to_le_bytes();
        let whole = payload.len() - payload.len() % PACKET_ALIGN;
        let mut last = [0u8; PACKET_ALIGN];
        if whole < payload.len() {
            // (Unconditionally, a payload of whole words would still be a
            // `memcpy` call, of nothing.)
            last[..payload.len() - whole].copy_from_slice(&payload[whole..]);
        }
        if start as usize + needed <= self.size as usize {
            // The common case: the packet does not wrap, so its pieces go
            // one after another without splitting. The same five pieces as
            // the wrapped path below, written out rather than looped over
            // an array of slices: the loop measured a third slower at 64 B
            // (host, kmcl / Linux's ring code 1.45 -> 0.93-1.08).
            let mut at = start as usize;
            self.mem.write_data(at, &desc.to_bytes());
            at += DESCRIPTOR_SIZE;
            if !header.is_empty() {
                self.mem.write_data(at, header);
                at += header.len();
            }
            if whole > 0 {
                self.mem.write_data(at, &payload[..whole]);
                at += whole;
            }
            if whole < payload.len() {
                self.mem.write_data(at, &last);
                at += PACKET_ALIGN;
            }
            self.mem.write_data(at, &trailer);
            // INVARIANT: as below; `at + 8 <= size`, so the next packet
            // starts at `at + 8`, or at 0 at the end of the data area.
            self.next = advance(start, needed, self.size);
            return Ok(());
        }
        let mut at = write_wrapped(&self.mem, self.size, start, &desc.to_bytes());
        if !header.is_empty() {
            at = write_wrapped(&self.mem, self.size, at, header);
        }
        if whole > 0 {
            at = write_wrapped(&self.mem, self.size, at, &payload[..whole]);
        }
        if whole < payload.len() {
            at = write_wrapped(&self.mem, self.size, at, &last);
        }
        at = write_wrapped(&self.mem, self.size, at, &trailer);
        // INVARIANT: `needed` bytes fit in the free space, so `at` is still
        // behind the reader.
        self.next = at;
        Ok(())
    }

    /// Whether packets were written since the last commit.
    pub fn has_uncommitted(&self) -> bool {
        self.next != self.committed
    }

    /// Publishes the batch. Returns `true` when the reader must be
    /// signalled: the ring was empty before the batch and the reader has not
    /// masked interrupts.
    pub fn commit(&mut self) -> Result<bool, RingError> {
        if self.next == self.committed {
            return Ok(false);
        }
        let old = self.committed;
        // The packet bytes are visible before the index (release), and the
        // index store comes before reading the reader's state, so that
        // either the reader sees our packets or we see its empty ring: a
        // sequentially consistent store and loads, which order exactly
        // these accesses (x86: `xchg`, the full barrier hv_vmbus's
        // `virt_mb()` also is, in place of a store and an `mfence`; arm64:
        // `stlr` then `ldar`, in place of a `dmb`).
        let control = self.mem.control();
        control[WRITE_INDEX].store(self.next, Ordering::SeqCst);
        self.committed = self.next;
        if control[INTERRUPT_MASK].load(Ordering::SeqCst) != 0 {
            return Ok(false);
        }
        Ok(self.read_index(Ordering::SeqCst)? == old)
    }

    /// Asks the reader to signal once `bytes` are free (0: never). Only
    /// the writer sets the word, so one that already says `bytes` is left
    /// alone (no store, no fence: it has been visible since it was set).
    pub fn set_pending_send_size(&self, bytes: u32) {
        let word = &self.mem.control()[PENDING_SEND_SIZE];
        if word.load(Ordering::Relaxed) == bytes {
            return;
        }
        word.store(bytes, Ordering::Relaxed);
        // The reader must see the request before we re-check free space.
        fence(Ordering::SeqCst);
    }
}

/// A packet read out of a ring into the reader's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadPacket {
    /// The validated descriptor.
    pub descriptor: Descriptor,
}

impl ReadPacket {
    /// The type-specific header within the buffer the packet was read into.
    #[inline]
    pub fn header<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[DESCRIPTOR_SIZE..self.descriptor.data_offset()]
    }

    /// The payload (including the sender's padding) within the buffer the
    /// packet was read into.
    #[inline]
    pub fn payload<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.descriptor.data_offset()..self.descriptor.packet_len()]
    }
}

/// What [`IncomingRing::read_into`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// The ring is empty.
    Empty,
    /// A packet was read into the buffer given for it.
    Read(ReadPacket),
    /// No buffer was given for the packet with this (validated)
    /// descriptor: it is still in the ring.
    Declined(Descriptor),
}

/// The reader's end of a ring.
///
/// # Invariants
///
/// `size` is `mem.data_len()`, a non-zero multiple of 8 that fits in `u32`;
/// `committed`, `last` and `next` are 8-aligned and below `size`, `last`
/// lies from `committed` to `next` (in ring order), and `next` never passes
/// the last validated write index.
pub struct IncomingRing<M: RingMemory> {
    mem: M,
    size: u32,
    /// The `read_index` we last published.
    committed: u32,
    /// Where the packet read last starts (`committed` after a commit).
    last: u32,
    /// Where the next packet to read starts.
    next: u32,
    /// The writer's index as last read (validated): packets up to it are
    /// published, so the shared index is read again only when they are
    /// all read.
    known_write: u32,
}

impl<M: RingMemory> IncomingRing<M> {
    /// Takes the reader's end of an initialised ring.
    pub fn new(mem: M) -> Result<Self, RingError> {
        let size = checked_size(&mem)?;
        let committed = checked_index(mem.control()[READ_INDEX].load(Ordering::Acquire), size)?;
        // INVARIANT: size and committed were validated; last == next ==
        // committed; nothing is known to be published yet.
        Ok(Self {
            mem,
            size,
            committed,
            last: committed,
            next: committed,
            known_write: committed,
        })
    }

    /// The ring memory.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Reads (with `order`) and validates the writer's index.
    #[inline]
    fn write_index(&self, order: Ordering) -> Result<u32, RingError> {
        checked_index(self.mem.control()[WRITE_INDEX].load(order), self.size)
    }

    /// Bytes the writer has published that we have not read yet.
    pub fn available(&self) -> Result<usize, RingError> {
        Ok(distance(self.next, self.write_index(Ordering::Acquire)?, self.size) as usize)
    }

    /// Copies the next packet into `buf` and validates it.
    ///
    /// Returns `Ok(None)` when the ring is empty. The packet, descriptor
    /// included, is copied out of shared memory before any of it is parsed;
    /// the descriptor is read once. On error nothing is consumed.
    #[inline]
    pub fn read(&mut self, buf: &mut [u8]) -> Result<Option<ReadPacket>, RingError> {
        let max = buf.len();
        match self.read_into(|d| buf.get_mut(..d.packet_len()))? {
            Next::Empty => Ok(None),
            Next::Read(p) => Ok(Some(p)),
            Next::Declined(d) => Err(RingError::PacketTooLarge {
                len: d.packet_len(),
                max,
            }),
        }
    }

    /// Copies the next packet into the buffer `into` gives for it, so that
    /// a reader can read each packet straight into where it keeps it.
    ///
    /// `into` gets the validated descriptor (read once, as in
    /// [`Self::read`]) and returns a buffer of exactly
    /// `descriptor.packet_len()` bytes, or `None` to leave the packet in the
    /// ring ([`Next::Declined`]; a longer buffer declines too). On error or
    /// decline nothing is consumed.
    #[inline]
    pub fn read_into<'b>(
        &mut self,
        into: impl FnOnce(&Descriptor) -> Option<&'b mut [u8]>,
    ) -> Result<Next, RingError> {
        let mut available = distance(self.next, self.known_write, self.size) as usize;
        if available == 0 {
            self.known_write = self.write_index(Ordering::Acquire)?;
            available = distance(self.next, self.known_write, self.size) as usize;
            if available == 0 {
                return Ok(Next::Empty);
            }
        }
        let mut raw = [0u8; DESCRIPTOR_SIZE];
        if available < DESCRIPTOR_SIZE + TRAILER_SIZE {
            return Err(DescriptorError::TooLong {
                claimed: DESCRIPTOR_SIZE + TRAILER_SIZE,
                available,
            }
            .into());
        }
        let at = self.next as usize;
        let size = self.size as usize;
        if at + DESCRIPTOR_SIZE <= size {
            self.mem.read_data(at, &mut raw);
        } else {
            read_wrapped(&self.mem, self.size, self.next, &mut raw);
        }
        let descriptor = Descriptor::parse(&raw, available)?;
        let len = descriptor.packet_len();
        let Some(buf) = into(&descriptor).filter(|b| b.len() == len) else {
            return Ok(Next::Declined(descriptor));
        };
        // Use the validated copy of the descriptor, not a second read.
        buf[..DESCRIPTOR_SIZE].copy_from_slice(&raw);
        if len == DESCRIPTOR_SIZE {
            // Nothing after the descriptor.
        } else if at + len <= size {
            // The common case: the packet does not wrap.
            self.mem
                .read_data(at + DESCRIPTOR_SIZE, &mut buf[DESCRIPTOR_SIZE..]);
        } else {
            let body_at = advance(self.next, DESCRIPTOR_SIZE, self.size);
            read_wrapped(&self.mem, self.size, body_at, &mut buf[DESCRIPTOR_SIZE..]);
        }
        // INVARIANT: the packet and trailer are within `available`; the
        // packet read last starts where `next` was.
        self.last = self.next;
        self.next = advance(self.next, descriptor.ring_len(), self.size);
        Ok(Next::Read(ReadPacket { descriptor }))
    }

    /// Whether packets were read since the last commit.
    pub fn has_uncommitted(&self) -> bool {
        self.next != self.committed
    }

    /// Forgets the packets read since the last commit: they will be read
    /// again (for a reader that could not take a packet after all).
    pub fn revert(&mut self) {
        // INVARIANT: last == next == committed.
        self.next = self.committed;
        self.last = self.committed;
    }

    /// Forgets the packet read last (only that one: those before it stay
    /// read, for a reader that commits once per batch). It will be read
    /// again. Does nothing right after a commit or a revert.
    pub fn unread(&mut self) {
        // INVARIANT: `last` lies from `committed` to `next`.
        self.next = self.last;
    }

    /// Returns the packets read since the last commit to the writer.
    /// Returns `true` when the writer must be signalled: it asked (through
    /// `pending_send_sz`) to be told when this much space is free, and the
    /// free space just crossed that amount.
    pub fn commit(&mut self) -> bool {
        if self.next == self.committed {
            return false;
        }
        let old = self.committed;
        // Our copies of the packets are complete before the writer may
        // reuse the space (release), and the index store comes before
        // reading the writer's request (sequentially consistent store and
        // loads, as in `OutgoingRing::commit`).
        let control = self.mem.control();
        control[READ_INDEX].store(self.next, Ordering::SeqCst);
        // INVARIANT: last == committed == next.
        self.committed = self.next;
        self.last = self.next;
        if control[FEATURE_BITS].load(Ordering::SeqCst) & FEATURE_PENDING_SEND_SIZE == 0 {
            return false;
        }
        let pending = control[PENDING_SEND_SIZE].load(Ordering::SeqCst) as usize;
        if pending == 0 {
            return false;
        }
        let Ok(write) = self.write_index(Ordering::SeqCst) else {
            // A corrupt write index is reported by the next read.
            return false;
        };
        let size = self.size as usize;
        let free_before = size - distance(old, write, self.size) as usize - PACKET_ALIGN;
        let free_now = size - distance(self.next, write, self.size) as usize - PACKET_ALIGN;
        free_before < pending && free_now >= pending
    }

    /// [`commit`](Self::commit), then a look at the writer's index:
    /// (whether the writer must be signalled, whether packets arrived
    /// since the ring was last found empty). For a reader that commits
    /// once per batch and has just found the ring empty: a writer decides
    /// whether to signal from the read index we published, so a packet it
    /// committed after our last look and before this commit came with no
    /// signal, and the reader must go on reading instead of stopping.
    pub fn commit_and_poll(&mut self) -> Result<(bool, bool), RingError> {
        let kick = self.commit();
        // Ordered after the index store (sequentially consistent, as the
        // writer's store of its index and load of ours).
        self.known_write = self.write_index(Ordering::SeqCst)?;
        Ok((kick, self.known_write != self.next))
    }

    /// Sets or clears `interrupt_mask`: while set, the writer does not
    /// signal. After clearing it, check [`available`](Self::available) again:
    /// a packet may have arrived while the mask was set.
    pub fn set_interrupt_mask(&self, masked: bool) {
        self.mem.control()[INTERRUPT_MASK].store(u32::from(masked), Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }
}

/// Resets a ring's control words: both indices zero, interrupts unmasked,
/// no pending send size, no features.
pub fn init_control(control: &[AtomicU32; CONTROL_WORDS]) {
    for word in control {
        word.store(0, Ordering::Relaxed);
    }
    fence(Ordering::SeqCst);
}

/// Ring memory made of atomic words the caller provides: safe shared
/// memory for tests, benchmarks and in-process peers.
pub struct WordRingMemory<'a> {
    control: &'a [AtomicU32; CONTROL_WORDS],
    data: &'a [AtomicU64],
}

impl<'a> WordRingMemory<'a> {
    /// Wraps a control block and a data area of `data.len() * 8` bytes.
    pub fn new(control: &'a [AtomicU32; CONTROL_WORDS], data: &'a [AtomicU64]) -> Self {
        Self { control, data }
    }
}

impl RingMemory for WordRingMemory<'_> {
    #[inline]
    fn control(&self) -> &[AtomicU32; CONTROL_WORDS] {
        self.control
    }

    #[inline]
    fn data_len(&self) -> usize {
        self.data.len() * 8
    }

    #[inline]
    fn read_data(&self, offset: usize, buf: &mut [u8]) {
        let (chunks, _) = buf.as_chunks_mut::<8>();
        for (chunk, word) in chunks.iter_mut().zip(&self.data[offset / 8..]) {
            *chunk = word.load(Ordering::Relaxed).to_le_bytes();
        }
    }

    #[inline]
    fn write_data(&self, offset: usize, buf: &[u8]) {
        let (chunks, _) = buf.as_chunks::<8>();
        for (chunk, word) in chunks.iter().zip(&self.data[offset / 8..]) {
            word.store(u64::from_le_bytes(*chunk), Ordering::Relaxed);
        }
    }
}

/// A reference or smart pointer to ring memory is ring memory (`&M`, and
/// in the kernel `Arc<RingPages>`).
impl<P> RingMemory for P
where
    P: core::ops::Deref,
    P::Target: RingMemory,
{
    #[inline]
    fn control(&self) -> &[AtomicU32; CONTROL_WORDS] {
        (**self).control()
    }

    #[inline]
    fn data_len(&self) -> usize {
        (**self).data_len()
    }

    #[inline]
    fn read_data(&self, offset: usize, buf: &mut [u8]) {
        (**self).read_data(offset, buf)
    }

    #[inline]
    fn write_data(&self, offset: usize, buf: &[u8]) {
        (**self).write_data(offset, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    struct Ring {
        control: [AtomicU32; CONTROL_WORDS],
        data: Vec<AtomicU64>,
    }

    impl Ring {
        fn new(bytes: usize) -> Self {
            Self {
                control: core::array::from_fn(|_| AtomicU32::new(0)),
                data: (0..bytes / 8).map(|_| AtomicU64::new(0)).collect(),
            }
        }
        fn mem(&self) -> WordRingMemory<'_> {
            WordRingMemory::new(&self.control, &self.data)
        }
        fn set(&self, word: usize, v: u32) {
            self.control[word].store(v, Ordering::SeqCst);
        }
    }

    fn payload(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    /// Writes an 8-byte in-band packet with transaction id `id` for each
    /// of `ids` (not committed).
    fn write_ids<M: RingMemory>(w: &mut OutgoingRing<M>, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            w.write(PacketType::InBand, &[], &[id as u8; 8], false, id)
                .unwrap();
        }
    }

    /// The transaction id of the next packet read, `None` at an empty ring.
    fn next_id<M: RingMemory>(rd: &mut IncomingRing<M>) -> Option<u64> {
        let mut buf = [0u8; 64];
        rd.read(&mut buf)
            .unwrap()
            .map(|p| p.descriptor.transaction_id())
    }

    #[test]
    fn packet_bytes_on_the_wire() {
        let r = Ring::new(4096);
        let mut w = OutgoingRing::new(r.mem()).unwrap();
        w.write(PacketType::InBand, &[], &[1, 2, 3], true, 77)
            .unwrap();
        assert!(w.commit().unwrap());
        let mut bytes = [0u8; 40];
        r.mem().read_data(0, &mut bytes);
        // type 6, offset8 2, len8 3, flags 1, id 77, payload padded, trailer 0.
        assert_eq!(&bytes[0..8], &[6, 0, 2, 0, 3, 0, 1, 0]);
        assert_eq!(&bytes[8..16], &77u64.to_le_bytes());
        assert_eq!(&bytes[16..24], &[1, 2, 3, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[24..32], &[0; 8]);
        assert_eq!(r.control[WRITE_INDEX].load(Ordering::SeqCst), 32);
        // The second packet's trailer records its start offset.
        w.write(PacketType::InBand, &[], &[9], false, 0).unwrap();
        w.commit().unwrap();
        r.mem().read_data(56, &mut bytes[..8]);
        assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()), 32 << 32);
    }

    #[test]
    fn round_trip_across_the_wrap() {
        let r = Ring::new(128);
        let mut w = OutgoingRing::new(r.mem()).unwrap();
        let mut rd = IncomingRing::new(r.mem()).unwrap();
        let mut buf = [0u8; 128];
        for i in 0..200usize {
            let p = payload(i % 60, i as u8);
            w.write(PacketType::InBand, &[], &p, i % 2 == 0, i as u64)
                .unwrap();
            w.commit().unwrap();
            let pkt = rd.read(&mut buf).unwrap().unwrap();
            assert_eq!(pkt.descriptor.transaction_id(), i as u64);
            assert_eq!(pkt.descriptor.completion_requested(), i % 2 == 0);
            assert_eq!(&pkt.payload(&buf)[..p.len()], &p[..]);
            assert!(pkt.payload(&buf)[p.len()..].iter().all(|&b| b == 0));
            assert_eq!(rd.read(&mut buf).unwrap(), None);
            rd.commit();
        }
    }

    #[test]
    fn read_into_reads_each_packet_into_a_buffer_of_its_own_length() {
        let r = Ring::new(4096);
        let mut w = OutgoingRing::new(r.mem()).unwrap();
        let mut rd = IncomingRing::new(r.mem()).unwrap();
        assert_eq!(rd.read_into(|_| unreachable!()), Ok(Next::Empty));
        let sizes = [0usize, 1, 8, 63, 200];
        for (i, &n) in sizes.iter().enumerate() {
            w.write(
                PacketType::InBand,
                &[],
                &payload(n, i as u8),
                false,
                i as u64,
            )
            .unwrap();
        }
        w.commit().unwrap();
        for (i, &n) in sizes.iter().enumerate() {
            let mut own = Vec::new();
            let next = rd.read_into(|d| {
                assert_eq!(d.transaction_id(), i as u64);
                own.resize(d.packet_len(), 0xee);
                Some(&mut own[..])
            });
            let Ok(Next::Read(pkt)) = next else {
                panic!("packet {i}: {next:?}");
            };
            assert_eq!(own.len(), pkt.descriptor.packet_len());
            assert_eq!(&pkt.payload(&own)[..n], &payload(n, i as u8)[..]);
            assert!(pkt.payload(&own)[n..].iter().all(|&b| b == 0));
        }
        assert_eq!(rd.read_into(|_| unreachable!()), Ok(Next::Empty));
    }

    #[test]
    fn a_declined_packet_stays_in_the_ring() {
        let r = Ring::new(4096);
        let mut w = OutgoingRing::new(r.mem()).unwrap();
        let mut rd = IncomingRing::new(r.mem()).unwrap();
        w.write(PacketType::InBand, &[], &payload(40, 3), true, 9)
            .unwrap();
        w.commit().unwrap();
        // No buffer, and one of the wrong length: nothing is consumed.
        let declined = rd.read_into(|_| None);
        let Ok(Next::Declined(d)) = declined else {
            panic!("{declined:?}");
        };
        assert_eq!((d.transaction_id(), d.payload_len()), (9, 40));
        let mut long = [0u8; 4096];
        assert_eq!(rd.read_into(|_| Some(&mut long[..])), Ok(Next::Declined(d)));
        assert!(!rd.has_uncommitted());
        // `read` reports a buffer too short as such.
        let mut short = [0u8; 32];
        assert_eq!(
            rd.read(&mut short),
            Err(RingError::PacketTooLarge { len: 56, max: 32 })
        );
        let pkt = rd.read(&mut long).unwrap().unwrap();
        assert_eq!(&pkt.payload(&long)[..40], &payload(40, 3)[..]);
    }

    #[test]
    fn full_is_not_empty() {
        let r = Ring::new(128);
        let mut w = OutgoingRing::new(r.mem()).unwrap();
        let mut rd = IncomingRing::new(r.mem()).unwrap();
        // 120 bytes usable: five 24-byte empty packets fill it exactly.
        for _ in 0..5 {
            w.write(PacketType::InBand, &[], &[], false, 0).unwrap();
        }
        assert_eq!(w.free_bytes(), Ok(0));
        assert_eq!(
            w.write(PacketType::InBand, &[], &[], false, 0),
            Err(WriteError::Full { needed: 24 })
        );
        w.commit().unwrap();
        assert_eq!(rd.available(), Ok(120));
        let mut buf = [0u8; 64];
        let mut n = 0;
        while rd.read(&mut buf).unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 5);
    }

    #[test]
    fn too_large_for_the_ring() {
        let r = Ring::new(128);
        let mut w = OutgoingRing::new(r.mem()).unwrap();
        assert_eq!(
            w.write(PacketType::InBand, &[], &[0; 97], false, 0),
            Err(WriteError::TooLarge)
        );
        assert_eq!(
            w.write(PacketType::GpaDirect, &[0; 4], &[], false, 0),
            Err(WriteError::TooLarge)
        );
    }

    #[test]
    fn writer_signals_only_empty_to_non_empty_unmasked() {
        let r = Ring::new(4096);
        let mut w = OutgoingRing::new(r.mem()).unwrap();
        let mut rd = IncomingRing::new(r.mem()).unwrap();
        let mut buf = [0u8; 64];
        w.write(PacketType::InBand, &[], &[1], false, 0).unwrap();
        assert_eq!(w.commit(), Ok(true));
        // Not empty before this commit: no signal.
        w.write(PacketType::InBand, &[], &[2], false, 0).unwrap();
        assert_eq!(w.commit(), Ok(false));
        // Nothing new: no signal.
        assert_eq!(w.commit(), Ok(false));
        while rd.read(&mut buf).unwrap().is_some() {}
        rd.commit();
        // Empty again but masked: no signal.
        rd.set_interrupt_mask(true);
        w.write(PacketType::InBand, &[], &[3], false, 0).unwrap();
        assert_eq!(w.commit(), Ok(false));
        rd.set_interrupt_mask(false);
        assert_eq!(rd.available(), Ok(32));
        rd.read(&mut buf).unwrap().unwrap();
        rd.commit();
        w.write(PacketType::InBand, &[], &[4], false, 0).unwrap();
        assert_eq!(w.commit(), Ok(true));
    }

    #[test]
    fn reader_signals_when_pending_send_size_is_crossed() {
        let r = Ring::new(128);
        let mut w = OutgoingRing::new(r.mem()).unwrap();
        let mut rd = IncomingRing::new(r.mem()).unwrap();
        let mut buf = [0u8; 64];
        for _ in 0..5 {
            w.write(PacketType::InBand, &[], &[], false, 0).unwrap();
        }
        w.commit().unwrap();
        let Err(WriteError::Full { needed }) = w.write(PacketType::InBand, &[0; 16], &[], false, 0)
        else {
            panic!("ring should be full");
        };
        assert_eq!(needed, 40);
        w.set_pending_send_size(needed as u32);
        // One 24-byte packet freed: 24 < 40, no signal yet.
        rd.read(&mut buf).unwrap().unwrap();
        assert!(!rd.commit());
        // 48 free now: crossed.
        rd.read(&mut buf).unwrap().unwrap();
        assert!(rd.commit());
        // Already past it: no second signal.
        rd.read(&mut buf).unwrap().unwrap();
        assert!(!rd.commit());
        w.write(PacketType::InBand, &[0; 16], &[], false, 0)
            .unwrap();
    }

    #[test]
    fn no_signal_without_the_feature_bit() {
        let r = Ring::new(128);
        let mut rd = IncomingRing::new(r.mem()).unwrap();
        // A writer that never announced pending-send-size support.
        r.set(PENDING_SEND_SIZE, 8);
        r.set(WRITE_INDEX, 0);
        r.mem().write_data(
            0,
            &Descriptor::new(PacketType::InBand, 0, 0, false, 0)
                .unwrap()
                .to_bytes(),
        );
        r.set(WRITE_INDEX, 24);
        let mut buf = [0u8; 64];
        rd.read(&mut buf).unwrap().unwrap();
        assert!(!rd.commit());
    }

    /// Writes raw descriptor fields at offset 0 and publishes `write`.
    fn forge(r: &Ring, fields: [u16; 4], write: u32) {
        let mut raw = [0u8; 16];
        for (i, f) in fields.iter().enumerate() {
            raw[i * 2..i * 2 + 2].copy_from_slice(&f.to_le_bytes());
        }
        r.mem().write_data(0, &raw);
        r.set(WRITE_INDEX, write);
    }

    fn read_error(r: &Ring) -> RingError {
        let mut rd = IncomingRing::new(r.mem()).unwrap();
        let mut buf = [0u8; 256];
        let before = rd.available();
        let e = rd.read(&mut buf).unwrap_err();
        // Nothing was consumed.
        assert_eq!(rd.available(), before);
        assert!(!rd.has_uncommitted());
        e
    }

    #[test]
    fn malformed_write_index() {
        let r = Ring::new(128);
        r.set(WRITE_INDEX, 128);
        assert_eq!(read_error(&r), RingError::BadIndex(128));
        r.set(WRITE_INDEX, 12);
        assert_eq!(read_error(&r), RingError::BadIndex(12));
    }

    #[test]
    fn ring_state_reports_indices_and_fill() {
        let r = Ring::new(128);
        let mut w = OutgoingRing::new(r.mem()).unwrap();
        w.write(PacketType::InBand, &[], &[7; 8], true, 3).unwrap();
        w.commit().unwrap();
        w.set_pending_send_size(40);
        let st = ring_state(&r.mem());
        assert_eq!(
            st,
            RingState {
                size: 128,
                write_index: 32,
                read_index: 0,
                interrupt_mask: 0,
                pending_send_size: 40,
                used: 32,
            }
        );
        // Out-of-range indices are shown as they are, with no fill level.
        r.set(READ_INDEX, 4096);
        assert_eq!(ring_state(&r.mem()).used, 0);
    }

    #[test]
    fn malformed_read_index_seen_by_writer() {
        let r = Ring::new(128);
        let mut w = OutgoingRing::new(r.mem()).unwrap();
        r.set(READ_INDEX, 0xffff_fff8);
        // The writer reads the reader's index when it commits, and when
        // the space it knew of runs out: both see the corruption.
        assert_eq!(w.write(PacketType::InBand, &[], &[1], false, 0), Ok(()));
        assert_eq!(w.commit(), Err(RingError::BadIndex(0xffff_fff8)));
        assert_eq!(
            w.write(PacketType::InBand, &[], &[0; 72], false, 0),
            Err(WriteError::Ring(RingError::BadIndex(0xffff_fff8)))
        );
    }

    #[test]
    fn malformed_descriptors() {
        let r = Ring::new(128);
        forge(&r, [8, 2, 2, 0], 24);
        assert_eq!(read_error(&r), DescriptorError::UnknownType(8).into());
        forge(&r, [6, 2, 2, 0x8000], 24);
        assert_eq!(read_error(&r), DescriptorError::UnknownFlags(0x8000).into());
        forge(&r, [6, 0, 2, 0], 24);
        assert_eq!(
            read_error(&r),
            DescriptorError::BadOffset {
                offset8: 0,
                len8: 2
            }
            .into()
        );
        forge(&r, [6, 5, 4, 0], 40);
        assert_eq!(
            read_error(&r),
            DescriptorError::BadOffset {
                offset8: 5,
                len8: 4
            }
            .into()
        );
        // len8 claims more than the writer published.
        forge(&r, [6, 2, 9, 0], 24);
        assert_eq!(
            read_error(&r),
            DescriptorError::TooLong {
                claimed: 80,
                available: 24
            }
            .into()
        );
        // Fewer bytes published than a descriptor and trailer.
        forge(&r, [6, 2, 2, 0], 16);
        assert_eq!(
            read_error(&r),
            DescriptorError::TooLong {
                claimed: 24,
                available: 16
            }
            .into()
        );
    }

    #[test]
    fn packet_larger_than_reader_buffer() {
        let r = Ring::new(4096);
        let mut w = OutgoingRing::new(r.mem()).unwrap();
        w.write(PacketType::InBand, &[], &[0; 100], false, 0)
            .unwrap();
        w.commit().unwrap();
        let mut rd = IncomingRing::new(r.mem()).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(
            rd.read(&mut buf),
            Err(RingError::PacketTooLarge { len: 120, max: 64 })
        );
        let mut big = [0u8; 120];
        assert!(rd.read(&mut big).unwrap().is_some());
    }

    #[test]
    fn revert_reads_the_packet_again() {
        let r = Ring::new(256);
        let mut w = OutgoingRing::new(r.mem()).unwrap();
        let mut rd = IncomingRing::new(r.mem()).unwrap();
        write_ids(&mut w, 1..=2);
        w.commit().unwrap();
        assert_eq!(next_id(&mut rd), Some(1));
        rd.commit();
        assert_eq!(next_id(&mut rd), Some(2));
        rd.revert();
        assert!(!rd.has_uncommitted());
        assert_eq!(next_id(&mut rd), Some(2));
        assert_eq!(next_id(&mut rd), None);
    }

    #[test]
    fn unread_puts_back_only_the_last_packet_of_a_batch() {
        let r = Ring::new(512);
        let mut w = OutgoingRing::new(r.mem()).unwrap();
        let mut rd = IncomingRing::new(r.mem()).unwrap();
        write_ids(&mut w, 1..=3);
        w.commit().unwrap();
        let read_index = |r: &Ring| r.control[READ_INDEX].load(Ordering::SeqCst);
        // A batch of two, the second put back: the first stays read.
        assert_eq!(next_id(&mut rd), Some(1));
        assert_eq!(next_id(&mut rd), Some(2));
        rd.unread();
        assert!(rd.has_uncommitted());
        // Twice in a row changes nothing more.
        rd.unread();
        assert_eq!(read_index(&r), 0);
        rd.commit();
        // 32 bytes a packet: descriptor, 8 bytes of payload, trailer.
        assert_eq!(read_index(&r), 32);
        assert_eq!(next_id(&mut rd), Some(2));
        rd.commit();
        // Right after a commit there is nothing to put back.
        rd.unread();
        assert!(!rd.has_uncommitted());
        assert_eq!(next_id(&mut rd), Some(3));
        assert_eq!(next_id(&mut rd), None);
    }

    #[test]
    fn a_packet_committed_between_empty_and_commit_is_polled() {
        let r = Ring::new(512);
        let mut w = OutgoingRing::new(r.mem()).unwrap();
        let mut rd = IncomingRing::new(r.mem()).unwrap();
        write_ids(&mut w, [1]);
        assert_eq!(w.commit(), Ok(true));
        assert_eq!(next_id(&mut rd), Some(1));
        // The reader finds the ring empty, its read not published yet...
        assert_eq!(next_id(&mut rd), None);
        // ... and the writer commits another packet meanwhile: the read
        // index it sees is behind, so it does not signal.
        write_ids(&mut w, [2]);
        assert_eq!(w.commit(), Ok(false));
        // The reader learns of it when it publishes its batch.
        assert_eq!(rd.commit_and_poll(), Ok((false, true)));
        assert_eq!(next_id(&mut rd), Some(2));
        // Nothing more: empty after the commit too.
        assert_eq!(next_id(&mut rd), None);
        assert_eq!(rd.commit_and_poll(), Ok((false, false)));
        // Now the ring is empty as the writer sees it: it signals.
        write_ids(&mut w, [3]);
        assert_eq!(w.commit(), Ok(true));
    }

    #[test]
    fn bad_sizes_rejected() {
        let r = Ring::new(0);
        assert_eq!(
            OutgoingRing::new(r.mem()).err(),
            Some(RingError::BadSize(0))
        );
    }
}

/// The ring on the kernel build of this file, run by KUnit when the test
/// build of `kmcl.ko` is loaded (`KMCL_KUNIT=y`).
#[cfg(kmcl_kunit)]
#[::kernel::prelude::kunit_tests(kmcl_protocol_ring)]
mod kunit {
    use super::*;

    #[test]
    fn round_trip_across_the_wrap() {
        let control: [AtomicU32; CONTROL_WORDS] = core::array::from_fn(|_| AtomicU32::new(0));
        let data: [AtomicU64; 32] = core::array::from_fn(|_| AtomicU64::new(0));
        let mem = WordRingMemory::new(&control, &data);
        let mut w = OutgoingRing::new(&mem).unwrap();
        let mut r = IncomingRing::new(&mem).unwrap();
        let mut buf = [0u8; 128];
        // 256-byte ring, packets of 24..64 bytes: it wraps every few packets.
        for i in 0..100u8 {
            let len = usize::from(i % 40);
            let mut p = [0u8; 40];
            for (j, b) in p.iter_mut().enumerate() {
                *b = i ^ (j as u8);
            }
            w.write(PacketType::InBand, &[], &p[..len], true, u64::from(i))
                .unwrap();
            w.commit().unwrap();
            let pkt = r.read(&mut buf).unwrap().unwrap();
            assert_eq!(pkt.descriptor.transaction_id(), u64::from(i));
            assert!(pkt.descriptor.completion_requested());
            assert_eq!(&pkt.payload(&buf)[..len], &p[..len]);
            assert_eq!(r.read(&mut buf), Ok(None));
            r.commit();
        }
    }

    #[test]
    fn corrupt_write_index_is_rejected() {
        let control: [AtomicU32; CONTROL_WORDS] = core::array::from_fn(|_| AtomicU32::new(0));
        let data: [AtomicU64; 16] = core::array::from_fn(|_| AtomicU64::new(0));
        let mem = WordRingMemory::new(&control, &data);
        let mut r = IncomingRing::new(&mem).unwrap();
        let mut buf = [0u8; 64];
        control[WRITE_INDEX].store(129, Ordering::SeqCst);
        assert_eq!(r.read(&mut buf), Err(RingError::BadIndex(129)));
        control[WRITE_INDEX].store(4096, Ordering::SeqCst);
        assert_eq!(r.read(&mut buf), Err(RingError::BadIndex(4096)));
        assert!(!r.has_uncommitted());
    }
}

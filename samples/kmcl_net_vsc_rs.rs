// SPDX-License-Identifier: GPL-2.0

//! kmcl_net_vsc_rs: the client (VSC) of kmcl's network-style sample pair,
//! written in Rust: the twin of `kmcl_net_vsc.c`, speaking the protocol of
//! `kmcl_net.h` to the C server `kmcl_net_vsp`.
//!
//! Once connected (PostStarted) it shares a receive buffer and a send
//! buffer as GPADLs ([`kmcl::SharedPages`]), registers the receive buffer
//! as transfer-page set `NET_SET_ID` and asks the server for `channels - 1`
//! sub-channels with a synchronous request; it opens each sub-channel the
//! server offers with a [`kmcl::Channel`] of its own, on its own target
//! CPU. Frames from the server arrive as transfer-page packets on any
//! channel and are checked byte for byte in the receive buffer. Its module
//! init then sends its own frames round-robin over the channels (at most
//! `NET_SLOTS` in flight per channel): small ones copied into the
//! channel's sections of the send buffer, the rest as external data
//! (`VmbPacketSendWithExternalMdl`) from frame memory the packet keeps
//! alive until the server completes it, and returns when every frame was
//! completed.
//!
//! A template for Rust network- or storage-style drivers; it uses kmcl
//! only through the safe wrapper: no `unsafe` here. The messages are
//! written and read as little-endian bytes (the wrapper's typed messages
//! would need an `unsafe impl` of `AsBytes`/`FromBytes` per type).

use core::sync::atomic::{
    AtomicBool,
    AtomicU32,
    Ordering, //
};
use kernel::{
    new_condvar, new_mutex, new_spinlock_irq,
    prelude::*,
    sync::{Arc, CondVar, Mutex, SpinLockIrq},
    time::{delay::fsleep, Delta, Instant, Monotonic},
};

#[path = "../include/kmcl/rust/kmcl.rs"]
mod kmcl;

module! {
    type: NetVsc,
    name: "kmcl_net_vsc_rs",
    authors: ["kmcl developers"],
    description: "kmcl sample: a network-style VSC in Rust (transfer pages, external data, sub-channels)",
    license: "GPL",
    imports_ns: ["KMCL"],
    params: {
        channels: u32 {
            default: 4,
            description: "Channels to use: the primary and channels-1 sub-channels (1 to 8)",
        },
        frames: u32 {
            default: 100000,
            description: "Frames to send each way",
        },
    },
}

// The protocol (samples/kmcl_net.h).

/// The network-style interface type.
const NET_TYPE: kmcl::Guid = kmcl::Guid {
    b: [
        0x6c, 0x63, 0x6d, 0x6b, 0x65, 0x6e, 0x00, 0x74, 0x8a, 0x11, 0, 0, 0, 0, 0, 0x01,
    ],
};
/// The network-style interface instance.
const NET_INSTANCE: kmcl::Guid = kmcl::Guid {
    b: [
        0x6c, 0x63, 0x6d, 0x6b, 0x65, 0x6e, 0x00, 0x74, 0x8a, 0x11, 0, 0, 0, 0, 0, 0x02,
    ],
};
/// The receive buffer's transfer-page set.
const NET_SET_ID: u16 = 0xcafe;
/// The primary and sub-channels, at most.
const NET_MAX_CHANNELS: usize = 8;
/// Frames in flight per channel, each way.
const NET_SLOTS: usize = 32;
/// Receive-buffer bytes per frame.
const NET_SLOT_SIZE: usize = 4096;
/// Send-buffer bytes per small frame.
const NET_SECTION_SIZE: usize = 256;
/// The longest frame the client sends.
const NET_MAX_FRAME: u32 = 9000;
/// Frame memory per slot, in pages.
const NET_FRAME_PAGES: usize = 4;
const PAGE_SIZE: usize = 4096;

const NET_MSG_INIT: u32 = 1;
const NET_MSG_FRAME: u32 = 2;
const NET_MSG_SECTION: u32 = 3;

/// Byte `i` of frame `seq`.
fn net_byte(seq: u32, i: u32) -> u8 {
    seq.wrapping_mul(131)
        .wrapping_add(i.wrapping_mul(7))
        .wrapping_add(i >> 8) as u8
}

/// Frame `seq`'s length, 1 to `max`.
fn net_frame_len(seq: u32, max: u32) -> u32 {
    let mut x = seq.wrapping_mul(0x9e37_79b9) | 1;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    x.checked_rem(max).unwrap_or(0) + 1
}

/// Little-endian `u32`s, then what follows. (Byte by byte: no slice
/// operation that could panic.)
fn le_words<const N: usize>(words: &[u32], tail: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let bytes = words.iter().flat_map(|w| w.to_le_bytes());
    let bytes = Iterator::chain(bytes, tail.iter().copied());
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b;
    }
    out
}

/// `struct net_init`: type, channels, frames, recv_gpadl, send_gpadl,
/// set_id, reserved.
fn init_msg(channels: u32, frames: u32, recv: u32, send: u32) -> [u8; 24] {
    let set = NET_SET_ID.to_le_bytes();
    le_words(
        &[NET_MSG_INIT, channels, frames, recv, send],
        &[set[0], set[1], 0, 0],
    )
}

/// `struct net_frame`: type, seq, len, section.
fn frame_msg(kind: u32, seq: u32, len: u32, section: u32) -> [u8; 16] {
    le_words(&[kind, seq, len, section], &[])
}

/// The `u32` at word `i` of `data`.
fn word(data: &[u8], i: usize) -> Option<u32> {
    let b = data.get(i * 4..i * 4 + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Outcomes of a fixed number of frames, counted from any context.
#[derive(Default)]
struct Tally {
    good: AtomicU32,
    bad: AtomicU32,
    /// Outcomes counted so far (the last one counted reports).
    counted: AtomicU32,
}

impl Tally {
    /// Counts one outcome; `Some((good, bad))` for the call that counts the
    /// `total`-th, and for no other.
    fn count(&self, ok: bool, total: u32) -> Option<(u32, u32)> {
        let counter = if ok { &self.good } else { &self.bad };
        counter.fetch_add(1, Ordering::SeqCst);
        if self.counted.fetch_add(1, Ordering::SeqCst) + 1 != total {
            return None;
        }
        Some((
            self.good.load(Ordering::SeqCst),
            self.bad.load(Ordering::SeqCst),
        ))
    }

    /// Outcomes counted so far.
    fn counted(&self) -> u32 {
        self.counted.load(Ordering::SeqCst)
    }
}

/// The client's state, shared by its channels' drivers and its frames'
/// completion routine.
#[pin_data]
struct Net {
    module: &'static ThisModule,
    /// Channels in use (primary + sub-channels).
    nch: usize,
    frames: u32,
    /// The receive buffer (transfer-page set `NET_SET_ID`).
    recv: Arc<kmcl::SharedPages>,
    /// The send buffer: `NET_SECTION_SIZE` bytes per channel and slot.
    send: Arc<kmcl::SharedPages>,
    /// Frame memory: `NET_FRAME_PAGES` pages per channel and slot.
    frame_mem: Arc<kmcl::SharedPages>,
    /// The buffers' GPADLs while shared (recv, send).
    #[pin]
    gpadls: Mutex<Option<(u32, u32)>>,
    /// The sub-channels opened (index, channel).
    #[pin]
    subs: Mutex<KVec<(u16, kmcl::Channel)>>,
    subs_up: AtomicU32,
    shared: AtomicBool,
    /// Frames from the server, per channel.
    received: [AtomicU32; NET_MAX_CHANNELS],
    /// Frames from the server: byte-exact or not.
    from_server: Tally,
    /// Frames to the server: completed or failed.
    to_server: Tally,
    /// Slots in flight, a bit each, per channel.
    #[pin]
    busy: SpinLockIrq<[u32; NET_MAX_CHANNELS]>,
    /// Signalled when a slot is freed.
    #[pin]
    freed: CondVar,
}

impl Net {
    /// A frame from the server on channel `ci`: its bytes in ranges of the
    /// receive buffer.
    fn frame_in(&self, ci: usize, packet: kmcl::Incoming) {
        let data = packet.data();
        let ok = match (word(data, 0), word(data, 1), word(data, 2)) {
            (Some(NET_MSG_FRAME), Some(seq), Some(len)) => self.check_ranges(&packet, seq, len),
            _ => false,
        };
        drop(packet); // completed, no payload: the ranges are free again
        if let Some(r) = self.received.get(ci) {
            r.fetch_add(1, Ordering::Relaxed);
        }
        if let Some((good, bad)) = self.from_server.count(ok, self.frames) {
            pr_info!(
                "{} of {} frames from the server byte-exact over {} channels, {} bad\n",
                good,
                self.frames,
                self.nch,
                bad
            );
            for (c, r) in self.received.iter().take(self.nch).enumerate() {
                pr_info!(
                    "channel {}: {} frames from the server\n",
                    c,
                    r.load(Ordering::Relaxed)
                );
            }
        }
    }

    /// Whether the transfer-page ranges of `packet` hold frame `seq`'s
    /// `len` bytes (kmcl checked that each range lies in the set).
    fn check_ranges(&self, packet: &kmcl::Incoming, seq: u32, len: u32) -> bool {
        let Some((set, ranges)) = packet.transfer_pages() else {
            return false;
        };
        if set != NET_SET_ID {
            return false;
        }
        let mut at = 0u32;
        let mut chunk = [0u8; 256];
        for r in ranges {
            let mut done = 0u32;
            while done < r.byte_count {
                let n = (r.byte_count - done).min(chunk.len() as u32) as usize;
                let from = (r.byte_offset + done) as usize;
                if self.recv.read(from, &mut chunk[..n]).is_err() {
                    return false;
                }
                for (k, &b) in chunk[..n].iter().enumerate() {
                    if b != net_byte(seq, at + done + k as u32) {
                        return false;
                    }
                }
                done += n as u32;
            }
            at += r.byte_count;
        }
        at == len
    }

    /// Waits for a free slot of channel `ci` and takes it; `None` if the
    /// wait was interrupted or took 60 s.
    fn take_slot(&self, ci: usize) -> Option<usize> {
        let mut busy = self.busy.lock();
        loop {
            let free = (!busy[ci]).trailing_zeros() as usize;
            if free < NET_SLOTS {
                busy[ci] |= 1 << free;
                return Some(free);
            }
            let timeout = kernel::time::msecs_to_jiffies(60_000);
            match self.freed.wait_interruptible_timeout(&mut busy, timeout) {
                kernel::sync::CondVarTimeoutResult::Woken { .. } => {}
                _ => return None,
            }
        }
    }

    /// Frees slot `slot` of channel `ci`.
    fn free_slot(&self, ci: usize, slot: usize) {
        self.busy.lock()[ci] &= !(1 << slot);
        self.freed.notify_all();
    }

    /// Sends frame `seq` on `channel` (channel `ci`) from slot `slot`:
    /// small frames through its send-buffer section, the rest as external
    /// data from its frame memory (from an offset, so that the data does
    /// not start on a page boundary). `scratch` holds `NET_MAX_FRAME` bytes.
    fn send_frame(
        self: &Arc<Self>,
        channel: kmcl::ChannelRef<'_>,
        ci: usize,
        slot: usize,
        seq: u32,
        scratch: &mut [u8],
    ) -> Result {
        let len = net_frame_len(seq, NET_MAX_FRAME);
        let index = ci * NET_SLOTS + slot;
        let bytes = &mut scratch[..len as usize];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = net_byte(seq, i as u32);
        }
        let done: Arc<dyn kmcl::PacketDone> = Arc::new(FrameDone(self.clone()), GFP_KERNEL)?;
        let mut packet = kmcl::Packet::new(channel, done)?;
        packet.set_tag(index);
        let sent = if len as usize <= NET_SECTION_SIZE {
            self.send.write(index * NET_SECTION_SIZE, bytes)?;
            let msg = frame_msg(NET_MSG_SECTION, seq, len, index as u32);
            packet.send(&msg, true)
        } else {
            let at = index * NET_FRAME_PAGES * PAGE_SIZE + (seq as usize * 64) % 512;
            self.frame_mem.write(at, bytes)?;
            let msg = frame_msg(NET_MSG_FRAME, seq, len, 0);
            packet.send_with_shared(&msg, &self.frame_mem, at, len as usize)
        };
        sent.map_err(|(_packet, e)| e)
    }

    /// Sends every frame round-robin over the channels and waits until
    /// each was completed. Process context.
    fn send_all(self: &Arc<Self>, primary: kmcl::ChannelRef<'_>) -> Result {
        let start = Instant::<Monotonic>::now();
        pr_info!(
            "sending {} frames to the server over {} channels\n",
            self.frames,
            self.nch
        );
        let mut scratch = KVec::from_elem(0u8, NET_MAX_FRAME as usize, GFP_KERNEL)?;
        let mut sent = 0;
        for seq in 0..self.frames {
            let ci = (seq as usize).checked_rem(self.nch).unwrap_or(0);
            let Some(slot) = self.take_slot(ci) else {
                pr_err!("frame {}: no slot free in 60 s\n", seq);
                break;
            };
            let r = if ci == 0 {
                self.send_frame(primary, ci, slot, seq, &mut scratch)
            } else {
                let subs = self.subs.lock();
                match subs.iter().find(|(i, _)| *i as usize == ci) {
                    Some((_, c)) => self.send_frame(c.as_ref(), ci, slot, seq, &mut scratch),
                    None => Err(ENOTCONN),
                }
            };
            if let Err(e) = r {
                self.free_slot(ci, slot);
                pr_err!("frame {} not sent: {:?}\n", seq, e);
                break;
            }
            sent += 1;
        }
        let finished = wait_for(600_000, || self.to_server.counted() >= sent);
        pr_info!("sent in {} ms\n", start.elapsed().as_millis());
        if finished && sent == self.frames {
            Ok(())
        } else {
            Err(EIO)
        }
    }
}

/// Polls `what` every 10 ms for up to `ms`; whether it became true.
fn wait_for(ms: u32, what: impl Fn() -> bool) -> bool {
    for _ in 0..ms.div_ceil(10) {
        if what() {
            return true;
        }
        fsleep(Delta::from_millis(10));
    }
    what()
}

/// A frame's completion routine: frees its slot.
struct FrameDone(Arc<Net>);

impl kmcl::PacketDone for FrameDone {
    fn done(&self, mut packet: kmcl::Packet, status: Result, _reply: &[u8]) {
        let net = &self.0;
        let index = packet.tag();
        net.free_slot(index / NET_SLOTS, index % NET_SLOTS);
        drop(packet);
        if let Some((ok, failed)) = net.to_server.count(status.is_ok(), net.frames) {
            pr_info!(
                "{} of {} frames to the server completed, {} failed\n",
                ok,
                net.frames,
                failed
            );
        }
    }
}

/// The primary channel's callbacks.
struct Primary(Arc<Net>);

impl kmcl::Driver for Primary {
    /// Connected: share the buffers and ask for the sub-channels.
    fn post_started(&self, channel: kmcl::ChannelRef<'_>) {
        let net = &self.0;
        if net.shared.load(Ordering::SeqCst) {
            return;
        }
        let shared = (|| -> Result {
            let recv = channel.create_gpadl(&net.recv, false)?;
            *net.gpadls.lock() = Some((recv, 0));
            let send = channel.create_gpadl(&net.send, true)?;
            *net.gpadls.lock() = Some((recv, send));
            channel.register_transfer_page_set(recv, NET_SET_ID)?;
            let init = init_msg(net.nch as u32, net.frames, recv, send);
            // The reply: an int, padded to 8 bytes as VMBus pads payloads.
            let mut reply = [0u8; 8];
            let n = channel.send_sync(&init, &mut reply, Some(10_000))?;
            match word(&reply[..n], 0) {
                Some(0) => Ok(()),
                Some(status) => Err(Error::from_errno(status as i32)),
                None => Err(EPROTO),
            }
        })();
        match shared {
            Ok(()) => net.shared.store(true, Ordering::SeqCst),
            Err(e) => pr_err!("the server did not take the buffers: {:?}\n", e),
        }
    }

    /// The server offered sub-channel `index`: open it, on its own CPU.
    fn subchannel_offered(&self, primary: kmcl::ChannelRef<'_>, index: u16) {
        let net = &self.0;
        if index as usize >= net.nch || net.subs.lock().iter().any(|(i, _)| *i == index) {
            return;
        }
        let opened = (|| -> Result<kmcl::Channel> {
            let sub = Arc::new(Sub(net.clone(), index as usize), GFP_KERNEL)?;
            let mut ch = kmcl::Channel::new(net.module, kmcl::Role::Client, sub)?;
            ch.set_primary(primary)?;
            ch.set_friendly_name(c"kmcl_net_vsc_rs_sub")?;
            ch.set_target_processor(Some(target_cpu(index)))?;
            ch.enable()?;
            Ok(ch)
        })();
        match opened {
            Ok(ch) => {
                let mut subs = net.subs.lock();
                if subs.push((index, ch), GFP_KERNEL).is_err() {
                    pr_err!("sub-channel {} not kept\n", index);
                }
            }
            Err(e) => pr_err!("sub-channel {} not opened: {:?}\n", index, e),
        }
    }

    fn process_packet(&self, _channel: kmcl::ChannelRef<'_>, packet: kmcl::Incoming) {
        self.0.frame_in(0, packet);
    }

    /// The connection ended: the buffers are the client's again.
    fn closed(&self, channel: kmcl::ChannelRef<'_>) {
        let net = &self.0;
        if let Some((recv, send)) = net.gpadls.lock().take() {
            let _ = channel.unregister_transfer_page_set(NET_SET_ID);
            if send != 0 {
                let _ = channel.delete_gpadl(send);
            }
            let _ = channel.delete_gpadl(recv);
        }
        net.shared.store(false, Ordering::SeqCst);
    }
}

/// Sub-channel `index`'s target processor: the CPU ids in turn (kmcl
/// takes the next online CPU for one that is not).
fn target_cpu(index: u16) -> u32 {
    u32::from(index)
        .checked_rem(kernel::cpu::nr_cpu_ids())
        .unwrap_or(0)
}

/// A sub-channel's callbacks (its index).
struct Sub(Arc<Net>, usize);

impl kmcl::Driver for Sub {
    fn started(&self, _channel: kmcl::ChannelRef<'_>) {
        self.0.subs_up.fetch_add(1, Ordering::SeqCst);
    }

    fn process_packet(&self, _channel: kmcl::ChannelRef<'_>, packet: kmcl::Incoming) {
        self.0.frame_in(self.1, packet);
    }
}

struct NetVsc {
    net: Arc<Net>,
    primary: kmcl::Channel,
}

impl kernel::Module for NetVsc {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let nch = module_parameters::channels
            .value()
            .clamp(1, NET_MAX_CHANNELS as u32) as usize;
        let frames = module_parameters::frames.value();
        let pages = |bytes: usize| bytes.div_ceil(PAGE_SIZE);
        let recv = kmcl::SharedPages::new(pages(nch * NET_SLOTS * NET_SLOT_SIZE))?;
        let send = kmcl::SharedPages::new(pages(nch * NET_SLOTS * NET_SECTION_SIZE))?;
        let frame_mem = kmcl::SharedPages::new(nch * NET_SLOTS * NET_FRAME_PAGES)?;
        let net = Arc::pin_init(
            pin_init!(Net {
                module,
                nch,
                frames,
                recv,
                send,
                frame_mem,
                gpadls <- new_mutex!(None),
                subs <- new_mutex!(KVec::new()),
                subs_up: AtomicU32::new(0),
                shared: AtomicBool::new(false),
                received: Default::default(),
                from_server: Tally::default(),
                to_server: Tally::default(),
                busy <- new_spinlock_irq!([0; NET_MAX_CHANNELS]),
                freed <- new_condvar!(),
            }),
            GFP_KERNEL,
        )?;
        let driver = Arc::new(Primary(net.clone()), GFP_KERNEL)?;
        let mut primary = kmcl::Channel::new(module, kmcl::Role::Client, driver)?;
        primary.set_target(&NET_TYPE, Some(&NET_INSTANCE))?;
        primary.set_friendly_name(c"kmcl_net_vsc_rs")?;
        primary.enable()?;
        let me = NetVsc { net, primary };
        let ready = wait_for(60_000, || {
            me.net.shared.load(Ordering::SeqCst)
                && me.net.subs_up.load(Ordering::SeqCst) as usize == nch - 1
        });
        if !ready {
            pr_err!(
                "{} of {} sub-channels opened in 60 s\n",
                me.net.subs_up.load(Ordering::SeqCst),
                nch - 1
            );
            return Err(ETIMEDOUT);
        }
        me.net.send_all(me.primary.as_ref())?;
        Ok(me)
    }
}

impl Drop for NetVsc {
    fn drop(&mut self) {
        // The sub-channels first (their drivers hold `net`), then the
        // primary (when `self` goes).
        let subs = core::mem::take(&mut *self.net.subs.lock());
        drop(subs);
        pr_info!("unloaded\n");
    }
}

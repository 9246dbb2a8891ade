// SPDX-License-Identifier: GPL-2.0

//! Receiving: the receive work that drains the incoming ring and
//! delivers packets to the driver, deferral to process context, the
//! transaction quota, and what happens when the driver completes or fails
//! a packet.

use kernel::{
    prelude::*,
    sync::Arc, //
};

use crate::{
    engine::datapath::{
        IncomingPacket,
        PacketObject,
        Received, //
    },
    sys::trace, //
};

use crate::engine::{
    datapath::PEER_STALL_MS,
    types::CloseReason, //
};

use super::Channel;

/// What one batch of the receive work read, in ring order.
enum Item {
    /// A data packet, for the driver.
    Data(IncomingPacket),
    /// A completion of one of our packets: its routine and payload.
    Completion(crate::engine::datapath::Routine, KVec<u8>),
}

/// Drops `v`; an empty vector without capacity owns no memory, so it is
/// forgotten instead: dropping it would still call the allocator (the
/// kernel's `Vec` frees unconditionally), once per completion here.
fn forget_empty(v: KVec<u8>) {
    if v.capacity() == 0 {
        core::mem::forget(v);
    } else {
        drop(v);
    }
}

/// Incoming packet callbacks (KMCL `EvtVmbChannelProcessPacket` and
/// `EvtVmbChannelProcessingComplete`), called in softirq context.
pub(crate) trait PacketCallbacks: Send + Sync {
    /// A packet arrived. The driver completes it, now or later, with
    /// [`IncomingPacket::complete`].
    fn process_packet(&self, channel: &Arc<Channel>, packet: IncomingPacket);
    /// The incoming ring went empty after `count` packets.
    fn processing_complete(&self, _channel: &Arc<Channel>, _count: u32) {}
    /// `EvtVmbChannelRestorePacket` (server taking over a saved
    /// connection, after Opened): `lib` is the saved packet (for
    /// [`Channel::restore_incoming`]), `driver_state` what the driver
    /// saved for it. An error (or no implementation) lets kmcl complete
    /// the packet with an empty payload.
    fn restore_packet(&self, _channel: &Arc<Channel>, _lib: &[u8], _driver_state: &[u8]) -> Result {
        Err(EOPNOTSUPP)
    }
}

/// Packets (data and completions) the receive work reads per run before it
/// yields to other work and is queued again (KMCL's DPC cycle limit).
pub(crate) const RX_BUDGET: u32 = 128;

/// Most packets the receive work reads under one hold of the data lock.
const RX_BATCH: usize = 16;

/// `N` slots, filled from the front and emptied by [`Slots::take_first`],
/// whose drop looks only at the slots used since they were last emptied:
/// a plain array's drop looks at all `N`, a loop of `N` steps for each of
/// the receive work's arrays at the end of every run (some 100 translated
/// blocks a run under TCG, where runs with completions are short).
///
/// # Invariants
///
/// `slots[used..]` are `None`.
struct Slots<T, const N: usize> {
    slots: core::mem::ManuallyDrop<[Option<T>; N]>,
    used: usize,
}

impl<T, const N: usize> Default for Slots<T, N> {
    fn default() -> Self {
        Self {
            slots: core::mem::ManuallyDrop::new([const { None }; N]),
            used: 0,
        }
    }
}

impl<T, const N: usize> Slots<T, N> {
    /// Slot `i`, `None` past the end.
    #[inline]
    fn get(&mut self, i: usize) -> Option<&mut Option<T>> {
        let slot = self.slots.get_mut(i)?;
        self.used = self.used.max(i + 1);
        Some(slot)
    }

    /// Slot `i` (`i < N`, else this panics, as indexing an array does).
    #[inline]
    fn at(&mut self, i: usize) -> &mut Option<T> {
        self.used = self.used.max(i + 1);
        &mut self.slots[i]
    }

    /// Whether slot `i` holds something.
    #[inline]
    fn is_some(&self, i: usize) -> bool {
        self.slots.get(i).is_some_and(Option::is_some)
    }

    /// The first `n` slots (all if `n >= N`).
    #[inline]
    fn first(&mut self, n: usize) -> &mut [Option<T>] {
        let n = n.min(N);
        self.used = self.used.max(n);
        &mut self.slots[..n]
    }

    /// Takes what the first `n` slots hold, in order. Those the caller
    /// does not get (it stops early) are dropped with the iterator; once
    /// `n` covers every slot used, the slots count as unused again.
    #[inline]
    fn take_first(&mut self, n: usize) -> TakeFirst<'_, T, N> {
        TakeFirst {
            n: n.min(N),
            next: 0,
            slots: self,
        }
    }
}

impl<T, const N: usize> Drop for Slots<T, N> {
    fn drop(&mut self) {
        // The others hold nothing (invariant): the array itself is never
        // dropped, which would look at them.
        for slot in self.first(self.used) {
            drop(slot.take());
        }
    }
}

/// [`Slots::take_first`]'s iterator.
struct TakeFirst<'a, T, const N: usize> {
    slots: &'a mut Slots<T, N>,
    n: usize,
    next: usize,
}

impl<T, const N: usize> Iterator for TakeFirst<'_, T, N> {
    type Item = Option<T>;

    #[inline]
    fn next(&mut self) -> Option<Option<T>> {
        if self.next >= self.n {
            return None;
        }
        let taken = self.slots.slots.get_mut(self.next).and_then(Option::take);
        self.next += 1;
        Some(taken)
    }
}

impl<T, const N: usize> Drop for TakeFirst<'_, T, N> {
    fn drop(&mut self) {
        for rest in self.by_ref() {
            drop(rest);
        }
        // Every slot used is empty now.
        if self.n >= self.slots.used {
            self.slots.used = 0;
        }
    }
}

/// The packet objects a run of the receive work holds for its batches: a
/// stack, so that a batch takes, and a packet completed during its
/// delivery returns, an object without a look at the slots it does not
/// use.
///
/// # Invariants
///
/// `len <= RX_BATCH`; `slots[..len]` are `Some`, the rest `None` (between
/// calls: [`Objects::top`] lends a slot that [`Objects::settle_top`]
/// accounts for again).
#[derive(Default)]
struct Objects {
    slots: Slots<KBox<PacketObject>, RX_BATCH>,
    len: usize,
}

impl Objects {
    /// Takes objects from `next` until there are `want` (or `next` has
    /// none).
    fn fill(&mut self, want: usize, mut next: impl FnMut() -> Option<KBox<PacketObject>>) {
        while self.len < want {
            let Some(slot) = self.slots.get(self.len) else {
                break;
            };
            let Some(b) = next() else {
                break;
            };
            *slot = Some(b);
            self.len += 1;
        }
    }

    /// The index of the slot [`Objects::top`] lends: the top object's, or
    /// the first (empty) one when there is none.
    fn top_index(&self) -> usize {
        self.len.saturating_sub(1).min(RX_BATCH - 1)
    }

    /// The slot the next data packet is read into: the top object's, or
    /// an empty one (the data path allocates an object into it). Followed
    /// by [`Objects::settle_top`].
    fn top(&mut self) -> &mut Option<KBox<PacketObject>> {
        let i = self.top_index();
        self.slots.at(i)
    }

    /// Counts the slot [`Objects::top`] lent: its object was used, or is
    /// still there (or was allocated there).
    fn settle_top(&mut self) {
        let i = self.top_index();
        self.len = i + usize::from(self.slots.is_some(i));
    }

    /// Puts `b` on the stack; gives it back if the stack is full.
    fn push(&mut self, b: KBox<PacketObject>) -> Option<KBox<PacketObject>> {
        match self.slots.get(self.len) {
            Some(slot) => {
                *slot = Some(b);
                self.len += 1;
                None
            }
            None => Some(b),
        }
    }

    /// Returns the objects to `pool` (the run ends). Those it has no room
    /// for stay, to be freed with what is returned, without the caller's
    /// lock (each holds a reference to its channel).
    fn recycle(
        mut self,
        pool: &mut KVec<KBox<PacketObject>>,
    ) -> Slots<KBox<PacketObject>, RX_BATCH> {
        for slot in self.slots.first(self.len) {
            if let Some(b) = slot.take() {
                *slot = crate::engine::datapath::recycle(pool, b);
            }
        }
        // The slots past `len` are empty (invariant): its drop need not
        // look at them.
        self.slots.used = self.len;
        self.slots
    }
}

impl Channel {
    /// Stops delivery: no packet reaches the driver after this returns
    /// (KMCL's Suspend rule); packets already deferred are delivered
    /// first. Process context.
    pub(super) fn stop_incoming(&self) {
        let mut rx = self.rx.lock();
        rx.enabled = false;
        rx.waiters += 1;
        while rx.active || rx.passive_active || !self.deferred.lock().is_empty() {
            self.rx_changed.wait(&mut rx);
        }
        rx.waiters -= 1;
    }

    /// The channel's epoch (see [`Self::reclaim_held`]). Any context.
    pub(crate) fn epoch(&self) -> u32 {
        self.epoch.load(core::sync::atomic::Ordering::Acquire)
    }

    /// The other endpoint stopped waiting for this channel's driver (a
    /// bounded wait on it expired): delivery stops, and the packets the
    /// driver holds are taken back — they count as completed (no
    /// completion is sent; the other endpoint is leaving), and the
    /// driver's later completion of one does nothing. So the channel's own
    /// close (its Drain) goes on. Logged when there were any. Process
    /// context, not from the channel's receive work.
    pub(crate) fn reclaim_held(&self) {
        let held = {
            let mut rx = self.rx.lock();
            rx.enabled = false;
            rx.waiters += 1;
            while rx.active {
                self.rx_changed.wait(&mut rx);
            }
            rx.waiters -= 1;
            // Before the count goes: a completion racing with this is
            // either counted below or finds its epoch over.
            self.epoch
                .fetch_add(1, core::sync::atomic::Ordering::AcqRel);
            let held = rx.outstanding;
            rx.outstanding = 0;
            rx.quota_blocked = false;
            held
        };
        self.rx_changed.notify_all();
        if held > 0 {
            pr_warn!(
                "channel {}: its driver still held {} packet(s) when the other endpoint stopped waiting; kmcl took them back\n",
                self.id,
                held
            );
        }
    }

    /// How a transport waits for this channel (a client) to leave its
    /// connection: `left(ms)` waits up to `ms` and says whether it left.
    /// For [`PEER_STALL_MS`]; then the packets its driver holds are
    /// reclaimed ([`Self::reclaim_held`]), so that its close goes on, and
    /// it gets a quarter of that again. Whether it left; if not, a
    /// callback of it hangs and the caller goes on without it. Process
    /// context.
    pub(crate) fn await_departure(&self, left: impl Fn(u32) -> bool) -> bool {
        left(PEER_STALL_MS as u32) || {
            self.reclaim_held();
            left(PEER_STALL_MS as u32 / 4)
        }
    }

    /// Waits until no receive or deferral work of the channel runs (a run
    /// that began before, or one a late signal started). Process context,
    /// not from that work.
    pub(super) fn wait_rx_idle(&self) {
        let mut rx = self.rx.lock();
        rx.waiters += 1;
        while rx.active || rx.passive_active {
            self.rx_changed.wait(&mut rx);
        }
        rx.waiters -= 1;
    }

    /// The receive work could not read a packet of `len` bytes for want
    /// of memory: the replenish work allocates for it in process context
    /// and kicks the receive work again. Any context.
    fn need_memory(self: &Arc<Self>, len: usize) {
        use core::sync::atomic::Ordering::Relaxed;
        self.rx.lock().no_memory += 1;
        self.replenish_len.fetch_max(len.max(1), Relaxed);
        let _ = crate::sys::queues::process()
            .enqueue::<Arc<Self>, { super::REPLENISH_WORK }>(self.clone());
    }

    /// The replenish work: an object (for a data packet) and a completion
    /// buffer able to hold the packet the receive work could not read,
    /// allocated in process context; then the receive work runs again.
    /// Retries every 20 ms while even that fails.
    pub(super) fn replenish(self: &Arc<Self>) {
        use core::sync::atomic::Ordering::Relaxed;
        let len = self.replenish_len.swap(0, Relaxed);
        let Some(context) = self.incoming_context_size() else {
            // Disconnected meanwhile: nothing to read any more.
            return;
        };
        if len == 0 {
            return;
        }
        let object = crate::engine::datapath::new_object(self, context, len, GFP_KERNEL);
        let buffer = KVec::<u8>::with_capacity(len, GFP_KERNEL);
        let (Ok(object), Ok(buffer)) = (object, buffer) else {
            // Logged once per shortage.
            if !self.replenish_failing.swap(true, Relaxed) {
                pr_warn!(
                    "channel {}: out of memory for a {}-byte packet; retrying every 20 ms\n",
                    self.id,
                    len
                );
            }
            self.replenish_len.fetch_max(len, Relaxed);
            kernel::time::delay::fsleep(kernel::time::Delta::from_millis(20));
            let _ = crate::sys::queues::process()
                .enqueue::<Arc<Self>, { super::REPLENISH_WORK }>(self.clone());
            return;
        };
        self.replenish_failing.store(false, Relaxed);
        let unused = {
            let mut rx = self.rx.lock();
            // Only while connected (the pool has capacity then).
            if rx.pool.capacity() > 0 {
                rx.reserve.replace(object)
            } else {
                Some(object)
            }
        };
        // Freed without the lock (it holds a reference to this channel).
        drop(unused);
        if let Some(dp) = Option::as_mut(&mut *self.data.lock()) {
            dp.return_spare(buffer);
        }
        self.kick_rx();
    }

    /// Completes an incoming packet whose object is gone (dropped by the
    /// driver; see [`IncomingPacket::complete`] for the usual way).
    pub(crate) fn complete_incoming(
        self: &Arc<Self>,
        completion_requested: bool,
        id: u64,
        payload: &[u8],
    ) -> Result {
        let result = if completion_requested {
            self.send_completion(id, payload)
        } else {
            Ok(())
        };
        self.release_incoming(None);
        result
    }

    /// A completed incoming packet's object: given back to the receive
    /// work if it is delivering that packet right now, else released.
    pub(crate) fn release_completed(b: KBox<PacketObject>) {
        if let Err(b) = crate::engine::datapath::handoff::Catch::give(b, |o| &o.channel().catch) {
            let channel = b.channel().clone();
            channel.release_incoming(Some(b));
        }
    }

    /// One delivered packet is done with; resumes delivery stopped at the
    /// quota (KMCL: only a completion restarts it). `reuse` is its object,
    /// kept for the next packet while connected (one lock for both).
    pub(super) fn release_incoming(self: &Arc<Self>, reuse: Option<KBox<PacketObject>>) {
        let (resume, wake, rejected) = {
            let mut rx = self.rx.lock();
            rx.outstanding = rx.outstanding.saturating_sub(1);
            let resume = rx.quota_blocked && rx.outstanding < rx.quota;
            if resume {
                rx.quota_blocked = false;
            }
            let rejected = reuse.and_then(|b| crate::engine::datapath::recycle(&mut rx.pool, b));
            // Only Pause and Disable wait, for the last completion.
            (resume, rx.outstanding == 0 && rx.waiters > 0, rejected)
        };
        // Freed without the lock (it holds a reference to this channel).
        drop(rejected);
        if wake {
            self.rx_changed.notify_all();
        }
        if resume {
            self.kick_rx();
        }
    }

    /// A packet read in a batch is not delivered after all (the channel
    /// failed meanwhile): released without a completion.
    pub(crate) fn discard_incoming(self: &Arc<Self>, b: KBox<PacketObject>) {
        self.release_incoming(Some(b));
    }

    /// KMCL `VmbChannelPacketFail`: the driver found a packet it cannot
    /// handle. Delivery stops, and the connection is closed (Suspend and
    /// Closed on both sides).
    pub(crate) fn fail_incoming(self: &Arc<Self>) {
        pr_warn!(
            "channel {}: a driver failed an incoming packet; closing the channel\n",
            self.id
        );
        // Delivery stops before the failed packet is released, so that a
        // quota resume cannot deliver another one.
        self.stop_and_close(CloseReason::PacketFail);
        self.release_incoming(None);
    }

    /// KMCL `VmbChannelSetTransactionQuota`: at most `quota` delivered
    /// packets may be uncompleted; delivery stops there and resumes on a
    /// completion. `-EINVAL` for 0.
    pub(crate) fn set_transaction_quota(&self, quota: u32) -> Result {
        if quota == 0 {
            return Err(EINVAL);
        }
        self.rx.lock().quota = quota;
        Ok(())
    }

    #[cfg(kmcl_kunit)]
    /// Times delivery stopped at the transaction quota.
    pub(crate) fn quota_hits(&self) -> u64 {
        self.rx.lock().quota_hits
    }

    /// KMCL `VmbChannelPacketDeferToPassive`: `packet` will be delivered
    /// again, in process context. It stays outstanding until completed.
    pub(crate) fn defer(self: &Arc<Self>, packet: IncomingPacket) {
        self.rx.lock().deferrals += 1;
        if self.deferred.lock().push(packet, GFP_ATOMIC).is_err() {
            // The packet was dropped, which completed it empty.
            pr_err!("out of memory deferring a packet; it was completed empty\n");
            return;
        }
        let _ = crate::sys::queues::process()
            .enqueue::<Arc<Self>, { super::DEFERRAL_WORK }>(self.clone());
    }

    pub(super) fn deliver_deferred(self: &Arc<Self>) {
        let callbacks = {
            let mut rx = self.rx.lock();
            rx.passive_active = true;
            rx.callbacks.clone()
        };
        loop {
            let next = {
                let mut deferred = self.deferred.lock();
                if deferred.is_empty() {
                    None
                } else {
                    deferred.remove(0).ok()
                }
            };
            let Some(packet) = next else { break };
            match &callbacks {
                Some(cb) => cb.process_packet(self, packet),
                None => drop(packet),
            }
        }
        self.rx.lock().passive_active = false;
        self.rx_changed.notify_all();
    }

    /// The receive work: writes queued sends the other endpoint made room
    /// for, then delivers incoming packets while the lifecycle allows.
    pub(super) fn receive(self: &Arc<Self>) {
        let callbacks = {
            let mut rx = self.rx.lock();
            if rx.active {
                return;
            }
            rx.active = true;
            rx.callbacks.clone()
        };
        let mut delivered = 0u32;
        let mut fetched = 0u32;
        let mut yielded = false;
        // The data path was severed (seen under the lock the batches take
        // anyway, so that the usual run takes no extra lock).
        let mut severed = false;
        // Counted outstanding but not with the driver: objects reserved for
        // a batch and not filled, and packets given back during their
        // delivery. Settled in the next critical section.
        let (mut unused, mut caught) = (0u32, 0u32);
        // Packet objects from the pool for the next batch, and the batch:
        // data packets and completions in ring order.
        let mut objects = Objects::default();
        let mut batch: Slots<Item, RX_BATCH> = Slots::default();
        // The completion payload buffers of a batch, handed back after it
        // (they live across batches: each batch leaves them empty).
        let mut used: Slots<KVec<u8>, RX_BATCH> = Slots::default();
        loop {
            if fetched >= RX_BUDGET {
                // Let other channels' work run; this one is queued again.
                self.rx.lock().budget_hits += 1;
                trace::budget_hit(self.id, fetched);
                yielded = true;
                break;
            }
            // How many packets the driver may get now (the quota), with
            // objects for them.
            let allowed = {
                let mut rx = self.rx.lock();
                rx.settle(core::mem::take(&mut unused), core::mem::take(&mut caught));
                let blocked = rx.quota > 0 && rx.outstanding >= rx.quota;
                if rx.enabled && blocked && !rx.quota_blocked {
                    rx.quota_blocked = true;
                    rx.quota_hits += 1;
                    trace::quota_hit(self.id, rx.outstanding, rx.quota);
                }
                let allowed = if !rx.enabled || blocked {
                    0
                } else if rx.quota > 0 {
                    ((rx.quota - rx.outstanding) as usize).min(RX_BATCH)
                } else {
                    RX_BATCH
                };
                let allowed = allowed.min((RX_BUDGET - fetched) as usize);
                // Counted before the driver can complete one.
                rx.outstanding += allowed as u32;
                objects.fill(allowed, || rx.reserve.take().or_else(|| rx.pool.pop()));
                allowed
            };
            // Up to `allowed` data packets, and the completions among
            // them (their routines run without the lock, in ring order
            // with the data packets), under one hold of the data lock,
            // ending early at an empty ring. Each completion's payload is
            // in one of the data path's spare buffers, all handed back
            // after the batch (a buffer allocated and freed per completion
            // would churn the allocator, and under KASAN fill its
            // quarantine, which softirq allocations never trim).
            let (n, items, last, peer, written, trim) = {
                let mut data = self.data.lock();
                let Some(dp) = Option::as_mut(&mut *data) else {
                    break;
                };
                let (mut kick, broken) = match dp.flush_queue() {
                    Ok((kick, _)) => (kick, None),
                    // The other endpoint corrupted our outgoing ring.
                    Err(why) => (false, Some(why)),
                };
                let mut n = 0;
                let mut items = 0;
                let mut last = Received::Empty;
                if let Some(why) = broken {
                    last = Received::Broken(why);
                } else if allowed == 0 {
                    // Delivery is off (before Started, paused, at the
                    // quota): a completion at the head of the ring is
                    // still read, so that a synchronous request made
                    // meanwhile completes; a data packet stops the read.
                    let (step, made_room) = dp.receive(self, &self.exposed, &mut None, false);
                    kick |= made_room;
                    last = step;
                }
                while broken.is_none() && n < allowed && items < RX_BATCH {
                    let (step, made_room) = dp.receive(self, &self.exposed, objects.top(), true);
                    objects.settle_top();
                    kick |= made_room;
                    match step {
                        Received::Data(packet) => {
                            *batch.at(items) = Some(Item::Data(packet));
                            n += 1;
                            items += 1;
                        }
                        Received::Completion(routine, data) => {
                            *batch.at(items) = Some(Item::Completion(routine, data));
                            items += 1;
                        }
                        other => {
                            last = other;
                            break;
                        }
                    }
                }
                // The batch's reads, published at once.
                kick |= dp.commit_reads();
                let peer = if kick { Some(dp.peer().clone()) } else { None };
                severed |= dp.is_severed();
                (
                    n,
                    items,
                    last,
                    peer,
                    dp.has_written(),
                    dp.keeps_more_than_idle(),
                )
            };
            if let Some(peer) = peer {
                self.signal(peer);
            }
            if trim {
                // The queue emptied, keeping buffers: trimmed if it stays
                // idle.
                self.arm_trim(crate::engine::datapath::RECYCLED_IDLE_MS);
            }
            if written {
                self.run_written();
            }
            unused += (allowed - n) as u32;
            fetched += items as u32;
            // How many of `used` this batch filled.
            let mut n_used = 0;
            for item in batch.take_first(items) {
                let packet = match item {
                    Some(Item::Data(packet)) => packet,
                    Some(Item::Completion(routine, data)) => {
                        routine.run(Ok(()), &data);
                        let slot = if data.capacity() > 0 {
                            used.get(n_used)
                        } else {
                            None
                        };
                        match slot {
                            Some(slot) => {
                                *slot = Some(data);
                                n_used += 1;
                            }
                            None => forget_empty(data),
                        }
                        continue;
                    }
                    None => continue,
                };
                if self.halted.load(core::sync::atomic::Ordering::Relaxed) {
                    // The channel failed (PacketFail) during the batch:
                    // the rest are dropped as if never read, without a
                    // completion (the connection is closing).
                    packet.discard();
                    continue;
                }
                // (Counts below RX_BUDGET: no overflow to check.)
                delivered = delivered.wrapping_add(1);
                match &callbacks {
                    Some(cb) => {
                        let delivering = self.catch.expect(packet.object());
                        cb.process_packet(self, packet);
                        // Completed meanwhile: its object is ours again, for
                        // a later packet of this run.
                        if let Some(b) = self.catch.settle(delivering) {
                            // (Never full: the batch took an object off or
                            // allocated one for each packet it read.)
                            drop(objects.push(crate::engine::datapath::scrub(b)));
                            caught = caught.wrapping_add(1);
                        }
                    }
                    // No driver callback: completed (empty) on drop.
                    None => drop(packet),
                }
            }
            if n_used > 0 {
                if let Some(dp) = Option::as_mut(&mut *self.data.lock()) {
                    for b in used.take_first(n_used).flatten() {
                        dp.return_spare(b);
                    }
                }
            }
            match last {
                // A full batch: there may be more.
                Received::Empty | Received::Data(_)
                    if (n > 0 && n == allowed) || items == RX_BATCH => {}
                // The ring is empty, or delivery is stopped.
                Received::Empty | Received::Data(_) => break,
                Received::Broken(why) => {
                    // As PacketFail: delivery stops, both sides close.
                    self.stop_and_close(why);
                    break;
                }
                Received::Discarded => fetched += 1,
                Received::NoMemory(len) => {
                    // Not lost: read again once the replenish work found
                    // memory for it.
                    self.need_memory(len);
                    break;
                }
                // Read while delivery is off (`allowed` 0).
                Received::Completion(routine, data) => {
                    fetched += 1;
                    routine.run(Ok(()), &data);
                    if data.capacity() > 0 {
                        if let Some(dp) = Option::as_mut(&mut *self.data.lock()) {
                            dp.return_spare(data);
                        }
                    } else {
                        forget_empty(data);
                    }
                }
            }
        }
        // The other endpoint left (or the channel is closing): what the
        // ring held was read; every transaction left ends with -ENODEV.
        if severed && !yielded {
            let left = Option::as_mut(&mut *self.data.lock())
                .filter(|dp| dp.is_severed())
                .map(|dp| dp.take_unfinished());
            if let Some(left) = left {
                // Nobody can reach their external data any more.
                self.exposed.clear();
                left.complete_all(Err(ENODEV));
            }
        }
        // Objects not used go back to the pool; those it has no room for
        // (or all, once it is gone) stay in their slots and are freed
        // without the lock (each holds a reference to this channel).
        let rejected = {
            let mut rx = self.rx.lock();
            rx.settle(unused, caught);
            objects.recycle(&mut rx.pool)
        };
        drop(rejected);
        if delivered > 0 {
            if let Some(cb) = &callbacks {
                cb.processing_complete(self, delivered);
            }
        }
        trace::batch_done(self.id, fetched, RX_BUDGET);
        let wake = {
            let mut rx = self.rx.lock();
            rx.active = false;
            rx.waiters > 0
        };
        if wake {
            self.rx_changed.notify_all();
        }
        if yielded {
            self.kick_rx();
        }
    }
}

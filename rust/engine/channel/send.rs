// SPDX-License-Identifier: GPL-2.0

//! Sending: packets, packets with external data, completions of
//! incoming packets, and synchronous requests. Every send goes through the
//! data path under the `data` lock ([`crate::engine::datapath`]).

use kernel::{
    prelude::*,
    sync::{
        new_condvar,
        new_spinlock_irq,
        Arc,
        CondVar,
        CondVarTimeoutResult,
        SpinLockIrq, //
    },
};

use crate::{
    engine::datapath::{
        DataPath,
        Routine,
        SendCompletion,
        SendError,
        Sent, //
    },
    protocol::packet::PacketType, //
};

use super::Channel;

impl Channel {
    /// One send through the data path, the way every send goes: `op` under
    /// the data lock (`not_connected` without a data path); then, without
    /// the lock, the routines of queued packets it wrote, closing the
    /// channel if the other endpoint stopped reading (the send fails with
    /// `-ENODEV`, as sends do once a channel is closed), and the signal.
    /// Returns what is left of the send: a routine to run now, the
    /// transaction id.
    #[inline]
    fn send_through(
        self: &Arc<Self>,
        not_connected: Error,
        op: impl FnOnce(&mut DataPath) -> Result<Sent, SendError>,
    ) -> Result<Sent> {
        let (sent, written) = {
            let mut data = self.data.lock();
            let dp = Option::as_mut(&mut *data).ok_or(not_connected)?;
            let sent = op(dp);
            (sent, dp.has_written())
        };
        if written {
            self.run_written();
        }
        let mut sent = match sent {
            Ok(sent) => sent,
            Err(SendError::Refused(e)) => return Err(e),
            Err(SendError::Closes(why)) => {
                self.stop_and_close(why);
                return Err(ENODEV);
            }
        };
        if let Some(peer) = sent.kick.take() {
            self.signal(peer);
        }
        Ok(sent)
    }

    /// KMCL `VmbPacketSend` with external data (`SendWithExternalMdl`,
    /// `SendWithExternalPfns`, kmcl's page buffers): `payload` in the ring
    /// and `pages` described by a GPA range list, one range per range of
    /// `pages`; the other endpoint gets the pages with the packet. A
    /// completion is always requested; `pages` must stay valid until
    /// `completion` runs.
    pub(crate) fn send_external(
        self: &Arc<Self>,
        payload: &[u8],
        pages: crate::shmem::External,
        completion: impl Into<Routine>,
    ) -> Result {
        let pages = Arc::new(pages, GFP_ATOMIC)?;
        let completion = completion.into();
        self.send_through(ENOTCONN, |dp| {
            dp.send_external(&self.exposed, payload, pages, completion, true)
        })?;
        Ok(())
    }

    /// KMCL `VmbPacketSend` of an in-band packet. With
    /// `wait_for_completion`, `completion` runs when the other endpoint
    /// completes the packet, with its completion payload; otherwise when the
    /// packet is in the ring. A full ring queues the packet. `-ENOTCONN` if
    /// the channel is not connected (then `completion` does not run).
    pub(crate) fn send(
        self: &Arc<Self>,
        payload: &[u8],
        wait_for_completion: bool,
        completion: impl Into<Routine>,
    ) -> Result {
        let completion = completion.into();
        self.send_and_run(|dp| {
            dp.send(PacketType::InBand, payload, completion, wait_for_completion)
        })
    }

    /// `kmcl_channel_post`: an in-band packet without a completion request
    /// and without a routine. A full ring queues it. `-ENOTCONN` if the
    /// channel is not connected. Any context.
    pub(crate) fn post_packet(self: &Arc<Self>, payload: &[u8]) -> Result {
        let sent = self.send_through(ENOTCONN, |dp| dp.post(payload))?;
        // Owns nothing now: the kick went out in `send_through` and a
        // posted packet has no routine. Forgotten rather than dropped,
        // which is a call to its drop glue on every packet.
        debug_assert!(sent.kick.is_none() && sent.run_now.is_none());
        core::mem::forget(sent);
        Ok(())
    }

    /// [`Self::send_through`] for a send that is not synchronous: a packet
    /// without a completion request that was written at once has its
    /// routine run here. `-ENOTCONN` when not connected.
    pub(super) fn send_and_run(
        self: &Arc<Self>,
        op: impl FnOnce(&mut DataPath) -> Result<Sent, SendError>,
    ) -> Result {
        let sent = self.send_through(ENOTCONN, op)?;
        if let Some(routine) = sent.run_now {
            routine.run(Ok(()), &[]);
        }
        Ok(())
    }

    /// Sends the completion of incoming transaction `id` with `payload`.
    /// `-ENOTCONN` when the connection is gone (nobody waits for it). A
    /// payload the ring could never hold is not sent: the completion goes
    /// out empty, so that the sender is not left waiting, and the caller
    /// gets `-EOVERFLOW`.
    pub(crate) fn send_completion(self: &Arc<Self>, id: u64, payload: &[u8]) -> Result {
        match self.send_through(ENOTCONN, |dp| dp.send_completion(id, payload)) {
            Err(e) if e == EOVERFLOW => {
                pr_err!(
                    "channel {}: a completion of {} bytes cannot fit the ring; completed empty\n",
                    self.id,
                    payload.len()
                );
                self.send_through(ENOTCONN, |dp| dp.send_completion(id, &[]))?;
                Err(EOVERFLOW)
            }
            r => r.map(|_| ()),
        }
    }

    /// Runs the routines of queued packets that were written meanwhile
    /// (never under the data lock: a routine may send again). One runner
    /// at a time: a routine whose send writes more queued packets leaves
    /// their routines to the loop already running rather than nesting
    /// (which would recurse as deep as the queue is long).
    pub(super) fn run_written(&self) {
        use core::sync::atomic::Ordering::{Acquire, Release};
        loop {
            if self.running_written.swap(true, Acquire) {
                return;
            }
            loop {
                let next = Option::as_mut(&mut *self.data.lock()).and_then(|dp| dp.pop_written());
                match next {
                    Some(r) => r.run(Ok(()), &[]),
                    None => break,
                }
            }
            self.running_written.store(false, Release);
            // A routine written after our last look but before the flag
            // was cleared would wait for the next runner: look again.
            let more = self.data.lock().as_ref().is_some_and(|dp| dp.has_written());
            if !more {
                return;
            }
        }
    }

    /// KMCL `VmbChannelSendSynchronousRequest`: sends `payload` and waits
    /// for the other endpoint to complete it, copying the completion
    /// payload into `reply` and returning its length. Process context only.
    ///
    /// `timeout_ms`: `None` waits for ever; `Some(0)` does not queue, so a
    /// full ring gives `-EOVERFLOW`. Errors: `-ETIMEDOUT` (the request is
    /// cancelled; a late completion is dropped), `-ENODEV` (not connected,
    /// or the connection ended), `-EOVERFLOW` (`reply` too small; nothing
    /// copied), `-EINTR` (a signal while waiting with a timeout),
    /// `-EDEADLK` (from a packet callback or routine the channel's receive
    /// work runs at passive: it alone would read the completion).
    pub(crate) fn send_sync(
        self: &Arc<Self>,
        payload: &[u8],
        reply: &mut [u8],
        timeout_ms: Option<u32>,
    ) -> Result<usize> {
        self.send_sync_with(payload, None, reply, timeout_ms)
    }

    /// [`Self::send_sync`] with external data `pages` (valid until this
    /// returns).
    pub(crate) fn send_sync_external(
        self: &Arc<Self>,
        payload: &[u8],
        pages: crate::shmem::External,
        reply: &mut [u8],
        timeout_ms: Option<u32>,
    ) -> Result<usize> {
        self.send_sync_with(payload, Some(pages), reply, timeout_ms)
    }

    pub(super) fn send_sync_with(
        self: &Arc<Self>,
        payload: &[u8],
        external: Option<crate::shmem::External>,
        reply: &mut [u8],
        timeout_ms: Option<u32>,
    ) -> Result<usize> {
        // Its completion would be read by the very work it would block.
        if self.in_receive_work() {
            return Err(EDEADLK);
        }
        let external = match external {
            Some(p) => Some(Arc::new(p, GFP_KERNEL)?),
            None => None,
        };
        let wait = Arc::pin_init(
            pin_init!(SyncWait {
                state <- new_spinlock_irq!(SyncState {
                    status: None,
                    reply: KVec::new(),
                }),
                done <- new_condvar!(),
            }),
            GFP_KERNEL,
        )?;
        let routine = KBox::new(SyncCompletion(wait.clone()), GFP_KERNEL)?;
        let may_queue = timeout_ms != Some(0);
        let routine: Routine = routine.into();
        let id = self
            .send_through(ENODEV, |dp| match external {
                Some(pages) => dp.send_external(&self.exposed, payload, pages, routine, may_queue),
                None => dp.send_with_id(PacketType::InBand, payload, routine, true, may_queue),
            })?
            .id;

        let mut st = wait.state.lock();
        let mut left = timeout_ms.map(|ms| kernel::time::msecs_to_jiffies(ms.max(1)));
        let mut gave_up = None;
        while st.status.is_none() {
            match left {
                None => wait.done.wait(&mut st),
                Some(j) => match wait.done.wait_interruptible_timeout(&mut st, j) {
                    CondVarTimeoutResult::Woken { jiffies } => left = Some(jiffies),
                    CondVarTimeoutResult::Timeout => {
                        gave_up = Some(ETIMEDOUT);
                        break;
                    }
                    CondVarTimeoutResult::Signal { .. } => {
                        gave_up = Some(EINTR);
                        break;
                    }
                },
            }
        }
        if let Some(e) = gave_up {
            drop(st);
            let cancelled = Option::as_mut(&mut *self.data.lock()).and_then(|dp| dp.cancel(id));
            if cancelled.is_some() {
                return Err(e);
            }
            // The completion won the race: wait for it to be recorded.
            st = wait.state.lock();
            while st.status.is_none() {
                wait.done.wait(&mut st);
            }
        }
        st.status.unwrap_or(Err(ENODEV))?;
        let n = st.reply.len();
        let dst = reply.get_mut(..n).ok_or(EOVERFLOW)?;
        dst.copy_from_slice(&st.reply);
        Ok(n)
    }

    /// Arms the trim of the send queue's kept buffers to look in `ms`
    /// milliseconds, unless it is armed. Any context.
    pub(super) fn arm_trim(self: &Arc<Self>, ms: i64) {
        let ms = ms.clamp(1, crate::engine::datapath::RECYCLED_IDLE_MS) as u32;
        // Armed already (a receive work that keeps emptying a queue asks
        // once a batch), or refused while the connection ends (its disarm
        // cancels it): either way nothing more to do.
        let _ = self.trim_timer.arm(self, ms * 1000);
    }
}

/// The trim timer: a send queue idle since it was armed gives back the
/// buffers it kept beyond one ring's bytes; one used meanwhile is looked
/// at again once it may have been idle long enough.
impl crate::sys::queues::TimerFired<{ super::TRIM_TIMER }> for Channel {
    fn timer(&self) -> &crate::sys::queues::Timer<Self, { super::TRIM_TIMER }> {
        &self.trim_timer
    }

    fn fired(this: Arc<Self>) {
        let again = Option::as_mut(&mut *this.data.lock()).and_then(|dp| dp.trim_idle_queue());
        if let Some(ms) = again {
            this.arm_trim(ms);
        }
    }
}

/// A synchronous request's rendezvous.
#[pin_data]
struct SyncWait {
    #[pin]
    state: SpinLockIrq<SyncState>,
    #[pin]
    done: CondVar,
}

struct SyncState {
    status: Option<Result>,
    reply: KVec<u8>,
}

/// The completion routine of a synchronous request.
struct SyncCompletion(Arc<SyncWait>);

impl SendCompletion for SyncCompletion {
    fn complete(&mut self, status: Result, data: &[u8]) {
        let mut st = self.0.state.lock();
        let copied = st.reply.extend_from_slice(data, GFP_ATOMIC);
        st.status = Some(match (status, copied) {
            (Ok(()), Err(_)) => Err(ENOMEM),
            (s, _) => s,
        });
        drop(st);
        self.0.done.notify_all();
    }
}

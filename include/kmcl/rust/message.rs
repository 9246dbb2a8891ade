// SPDX-License-Identifier: GPL-2.0

//! Typed protocol messages: a driver's `#[repr(C)]` message structs sent
//! and received as themselves instead of byte slices, through the kernel's
//! [`AsBytes`] and [`FromBytes`] (a struct implements them once, with
//! `unsafe impl`, promising it has no padding and that any bytes are a
//! valid value, as for any kernel type read from a device).
//!
//! Incoming messages are copied out of the payload (a VMBus payload is
//! 8-byte aligned; a message type may need more, and the payload is only
//! valid while the packet is held).

use super::{
    ChannelRef,
    Incoming,
    Packet,
    SendDone, //
};
use kernel::{
    prelude::*,
    transmute::{
        AsBytes,
        FromBytes, //
    },
};

impl ChannelRef<'_> {
    /// [`ChannelRef::send`] of the message `msg` (its bytes are the
    /// payload). Any context.
    ///
    /// ```no_run
    /// # #[repr(C)]
    /// # #[derive(Clone, Copy)]
    /// # struct Ping {
    /// #     seq: u32,
    /// #     op: u32,
    /// # }
    /// # // SAFETY: integers only, no padding.
    /// # unsafe impl kernel::transmute::AsBytes for Ping {}
    /// # // SAFETY: as above; any bytes are a value.
    /// # unsafe impl kernel::transmute::FromBytes for Ping {}
    /// # struct Ignore;
    /// # impl kmcl::SendDone for Ignore {
    /// #     fn done(&mut self, _status: Result, _reply: &[u8]) {}
    /// # }
    /// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
    /// channel.send_message(&Ping { seq: 1, op: 2 }, false, KBox::new(Ignore, GFP_KERNEL)?)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbPacketSend")]
    pub fn send_message<T: AsBytes>(
        &self,
        msg: &T,
        wait_for_completion: bool,
        done: KBox<dyn SendDone>,
    ) -> Result {
        self.send(msg.as_bytes(), wait_for_completion, done)
    }

    /// `VmbChannelSendSynchronousRequest` with typed messages: sends `msg`,
    /// waits for the completion and returns its payload read as `R`
    /// (`EPROTO` when the other endpoint's reply is shorter than `R`;
    /// bytes beyond `R` are ignored). `timeout_ms` `None` waits for ever.
    /// Process context.
    ///
    /// ```no_run
    /// # #[repr(C)]
    /// # #[derive(Clone, Copy)]
    /// # struct Ping {
    /// #     seq: u32,
    /// #     op: u32,
    /// # }
    /// # // SAFETY: integers only, no padding.
    /// # unsafe impl kernel::transmute::AsBytes for Ping {}
    /// # // SAFETY: as above; any bytes are a value.
    /// # unsafe impl kernel::transmute::FromBytes for Ping {}
    /// # fn example(channel: kmcl::ChannelRef<'_>) -> Result {
    /// let pong: Ping = channel.request(&Ping { seq: 1, op: 2 }, Some(1000))?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelSendSynchronousRequest")]
    pub fn request<T: AsBytes, R: FromBytes>(&self, msg: &T, timeout_ms: Option<u32>) -> Result<R> {
        let mut reply = KVec::from_elem(0u8, core::mem::size_of::<R>(), GFP_KERNEL)?;
        let len = self.send_sync(msg.as_bytes(), &mut reply, timeout_ms)?;
        let got = reply.get(..len).ok_or(EPROTO)?;
        R::from_bytes_copy_prefix(got).map(|(r, _)| r).ok_or(EPROTO)
    }
}

impl Packet {
    /// [`Packet::send`] of the message `msg`. Any context. On an error the
    /// packet is given back and its routine does not run.
    ///
    /// ```no_run
    /// # #[repr(C)]
    /// # #[derive(Clone, Copy)]
    /// # struct Ping {
    /// #     seq: u32,
    /// #     op: u32,
    /// # }
    /// # // SAFETY: integers only, no padding.
    /// # unsafe impl kernel::transmute::AsBytes for Ping {}
    /// # // SAFETY: as above; any bytes are a value.
    /// # unsafe impl kernel::transmute::FromBytes for Ping {}
    /// # fn example(packet: kmcl::Packet) -> Result {
    /// packet.send_message(&Ping { seq: 1, op: 2 }, true).map_err(|(_, e)| e)?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbPacketSend")]
    pub fn send_message<T: AsBytes>(
        self,
        msg: &T,
        wait_for_completion: bool,
    ) -> core::result::Result<(), (Packet, Error)> {
        self.send(msg.as_bytes(), wait_for_completion)
    }
}

impl Incoming {
    /// The payload read as the message `T` (a copy of its first
    /// `size_of::<T>()` bytes); `None` when the payload is shorter.
    ///
    /// ```no_run
    /// # #[repr(C)]
    /// # #[derive(Clone, Copy)]
    /// # struct Ping {
    /// #     seq: u32,
    /// #     op: u32,
    /// # }
    /// # // SAFETY: integers only, no padding.
    /// # unsafe impl kernel::transmute::AsBytes for Ping {}
    /// # // SAFETY: as above; any bytes are a value.
    /// # unsafe impl kernel::transmute::FromBytes for Ping {}
    /// # fn example(packet: &kmcl::Incoming) -> Result {
    /// let ping: Ping = packet.message().ok_or(EINVAL)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn message<T: FromBytes>(&self) -> Option<T> {
        T::from_bytes_copy_prefix(self.data()).map(|(m, _)| m)
    }

    /// `VmbChannelPacketComplete` with the message `reply` as the
    /// completion payload.
    ///
    /// ```no_run
    /// # #[repr(C)]
    /// # #[derive(Clone, Copy)]
    /// # struct Ping {
    /// #     seq: u32,
    /// #     op: u32,
    /// # }
    /// # // SAFETY: integers only, no padding.
    /// # unsafe impl kernel::transmute::AsBytes for Ping {}
    /// # // SAFETY: as above; any bytes are a value.
    /// # unsafe impl kernel::transmute::FromBytes for Ping {}
    /// # fn example(packet: kmcl::Incoming) -> Result {
    /// let ping: Ping = packet.message().ok_or(EINVAL)?;
    /// packet.complete_with(&Ping { seq: ping.seq, op: 0 })?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "VmbChannelPacketComplete")]
    pub fn complete_with<T: AsBytes>(self, reply: &T) -> Result {
        self.complete(reply.as_bytes())
    }
}

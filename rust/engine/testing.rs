// SPDX-License-Identifier: GPL-2.0

//! Helpers shared by kmcl's KUnit tests: one way to wait for a condition,
//! and channel pairs on a loopback bus (the tests' fixture; production
//! code in the engine names no transport).

use core::sync::atomic::{
    AtomicBool,
    AtomicI32,
    Ordering, //
};

use kernel::{
    prelude::*,
    sync::{new_mutex, Arc, Mutex},
    time::{delay::fsleep, Delta},
};

use super::{
    channel::{
        Channel,
        PacketCallbacks,
        StateCallbacks, //
    },
    types::Guid,
};
use crate::{
    protocol::lifecycle::Role,
    transport::loopback::LoopbackBus, //
};

/// Polls `what` every 10 ms for up to `seconds`; whether it became true.
pub(crate) fn wait_for(seconds: u32, mut what: impl FnMut() -> bool) -> bool {
    for _ in 0..seconds * 100 {
        if what() {
            return true;
        }
        fsleep(Delta::from_millis(10));
    }
    what()
}

/// Polls `what` every 10 ms for up to five seconds.
pub(crate) fn wait_until(what: impl FnMut() -> bool) -> bool {
    wait_for(5, what)
}

/// A server and a client of interface type `ty` on `bus`, the server
/// delivering to `server_callbacks` (if given), connected and running:
/// (server, client).
pub(crate) fn channel_pair(
    bus: &Arc<LoopbackBus>,
    ty: Guid,
    server_callbacks: Option<Arc<dyn PacketCallbacks>>,
) -> Result<(Arc<Channel>, Arc<Channel>)> {
    let server = Channel::new(Role::Server, bus.clone())?;
    server.configure(|s| s.interface_type = ty)?;
    if let Some(cb) = server_callbacks {
        server.set_packet_callbacks(cb)?;
    }
    let client = Channel::new(Role::Client, bus.clone())?;
    client.configure(|s| s.interface_type = ty)?;
    connect(&server, &client)?;
    Ok((server, client))
}

/// Disables (the client first) and releases both channels of a pair.
pub(crate) fn close_pair(client: Arc<Channel>, server: Arc<Channel>) -> Result {
    client.disable()?;
    server.disable()?;
    client.cleanup()?;
    server.cleanup()
}

/// Enables and starts `server`, enables `client`, and waits until both
/// run (the client connects asynchronously); `-ETIMEDOUT` after five
/// seconds.
pub(crate) fn connect(server: &Arc<Channel>, client: &Arc<Channel>) -> Result {
    server.enable()?;
    server.start()?;
    client.enable()?;
    if wait_until(|| client.is_running() && server.is_running()) {
        Ok(())
    } else {
        Err(ETIMEDOUT)
    }
}

/// State callbacks recorded as letters: Opened `O`, Started `T`,
/// PostStarted `P`, Suspend `S`, Closed `C`, PnpFailure `F`.
#[pin_data]
pub(crate) struct Letters {
    #[pin]
    log: Mutex<KVec<u8>>,
    /// Opened fails (`-EIO`) while this is set.
    pub(crate) fail_open: AtomicBool,
    /// The status of the last PnpFailure.
    pub(crate) pnp_status: AtomicI32,
}

impl Letters {
    pub(crate) fn new(fail_open: bool) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Letters {
                log <- new_mutex!(KVec::new()),
                fail_open: AtomicBool::new(fail_open),
                pnp_status: AtomicI32::new(0),
            }),
            GFP_KERNEL,
        )
    }

    fn note(&self, c: u8) {
        let _ = self.log.lock().push(c, GFP_KERNEL);
    }

    /// Whether the callbacks so far read `expected`.
    pub(crate) fn is(&self, expected: &[u8]) -> bool {
        self.log.lock().as_slice() == expected
    }

    /// Waits up to five seconds for the callbacks to read `expected`.
    pub(crate) fn wait_for(&self, expected: &[u8]) -> bool {
        wait_until(|| self.is(expected))
    }
}

impl StateCallbacks for Letters {
    fn opened(&self, _c: &Arc<Channel>) -> Result {
        self.note(b'O');
        if self.fail_open.load(Ordering::SeqCst) {
            Err(EIO)
        } else {
            Ok(())
        }
    }
    fn closed(&self, _c: &Arc<Channel>) {
        self.note(b'C');
    }
    fn suspend(&self, _c: &Arc<Channel>) {
        self.note(b'S');
    }
    fn started(&self, _c: &Arc<Channel>) {
        self.note(b'T');
    }
    fn post_started(&self, _c: &Arc<Channel>) {
        self.note(b'P');
    }
    fn pnp_failure(&self, _c: &Arc<Channel>, status: Error) {
        // The status first: a test that sees the letter reads it at once.
        self.pnp_status.store(status.to_errno(), Ordering::SeqCst);
        self.note(b'F');
    }
}

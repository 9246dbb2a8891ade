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
    sync::{new_mutex, new_spinlock_irq, Arc, Mutex, SpinLockIrq},
    time::{delay::fsleep, Delta},
    workqueue::{impl_has_work, new_work, Work, WorkItem},
};

use super::{
    channel::{
        Channel,
        PacketCallbacks,
        StateCallbacks, //
    },
    datapath::IncomingPacket,
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

/// State callbacks of a driver that negotiates its protocol in
/// PostStarted, as KMCL suggests: the first PostStarted makes one
/// synchronous request and records how it ended.
pub(crate) struct Negotiator {
    /// Milliseconds the request waits (`None`: for ever).
    timeout_ms: Option<u32>,
    /// PostStarted was entered.
    pub(crate) entered: AtomicBool,
    /// The request returned.
    pub(crate) done: AtomicBool,
    /// What it returned: the reply's length, or a negative errno.
    pub(crate) result: AtomicI32,
    /// Milliseconds it took.
    pub(crate) took_ms: AtomicI32,
}

impl Negotiator {
    pub(crate) fn new(timeout_ms: Option<u32>) -> Result<Arc<Self>> {
        Ok(Arc::new(
            Negotiator {
                timeout_ms,
                entered: AtomicBool::new(false),
                done: AtomicBool::new(false),
                result: AtomicI32::new(0),
                took_ms: AtomicI32::new(-1),
            },
            GFP_KERNEL,
        )?)
    }

    /// Waits up to `seconds` for the request to return; its result.
    pub(crate) fn wait_result(&self, seconds: u32) -> Option<i32> {
        wait_for(seconds, || self.done.load(Ordering::SeqCst))
            .then(|| self.result.load(Ordering::SeqCst))
    }
}

impl StateCallbacks for Negotiator {
    fn post_started(&self, channel: &Arc<Channel>) {
        if self.entered.swap(true, Ordering::SeqCst) {
            return;
        }
        let start = kernel::time::Instant::<kernel::time::Monotonic>::now();
        let mut reply = [0u8; 64];
        let result = match channel.send_sync(b"negotiate", &mut reply, self.timeout_ms) {
            Ok(n) => n as i32,
            Err(e) => e.to_errno(),
        };
        let took = start.elapsed().as_millis();
        self.took_ms
            .store(took.min(i64::from(i32::MAX)) as i32, Ordering::SeqCst);
        self.result.store(result, Ordering::SeqCst);
        self.done.store(true, Ordering::SeqCst);
    }
}

/// Packet callbacks of a driver that keeps every packet uncompleted until
/// it is told to complete them, possibly later from a work item (while
/// the test's thread is blocked).
#[pin_data]
pub(crate) struct Keeper {
    #[pin]
    held: SpinLockIrq<KVec<IncomingPacket>>,
    #[pin]
    work: Work<Keeper>,
    /// What the work item sleeps before it completes them.
    delay_ms: core::sync::atomic::AtomicU32,
}

impl_has_work! {
    impl HasWork<Self> for Keeper { self.work }
}

impl Keeper {
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Keeper {
                held <- new_spinlock_irq!(KVec::new()),
                work <- new_work!("kmcl::testing::Keeper::work"),
                delay_ms: core::sync::atomic::AtomicU32::new(0),
            }),
            GFP_KERNEL,
        )
    }

    /// Packets held now.
    pub(crate) fn held(&self) -> usize {
        self.held.lock().len()
    }

    /// Completes every packet held, with an empty payload.
    pub(crate) fn complete_all(&self) {
        loop {
            let Some(p) = self.held.lock().pop() else {
                return;
            };
            let _ = p.complete(&[]);
        }
    }

    /// Completes every packet held `ms` from now, from a work item.
    pub(crate) fn complete_all_after(self: &Arc<Self>, ms: u32) {
        self.delay_ms.store(ms, Ordering::SeqCst);
        let _ = crate::sys::queues::process().enqueue(self.clone());
    }
}

impl WorkItem for Keeper {
    type Pointer = Arc<Keeper>;

    fn run(this: Arc<Keeper>) {
        fsleep(Delta::from_millis(
            this.delay_ms.load(Ordering::SeqCst).into(),
        ));
        this.complete_all();
    }
}

impl PacketCallbacks for Keeper {
    fn process_packet(&self, _channel: &Arc<Channel>, packet: IncomingPacket) {
        // On failure the packet is dropped, which completes it.
        let _ = self.held.lock().push(packet, GFP_ATOMIC);
    }
}

// SPDX-License-Identifier: GPL-2.0

//! KMCL's channel lifecycle as a pure state machine.
//!
//! The engine feeds it events (the driver's Enable, Disable, Pause and
//! Start calls, and the connection opening or closing) and gets back the
//! ordered [`Action`]s to carry out: which state callbacks to deliver, when
//! to start and stop the incoming queue, when to offer, connect or
//! disconnect. Keeping the rules here makes the callback order testable on
//! the host, and leaves the engine with no ordering decisions of its own.
//!
//! The rules (KMCL's "state model"):
//!
//! - A channel is *running* while it is enabled, connected to the other
//!   endpoint, and not paused. Entering running delivers `Started`, then
//!   enables the incoming queue, then delivers `PostStarted`. Leaving it
//!   stops the queue, delivers `Suspend`, and waits until every incoming
//!   packet the driver was given has been completed.
//! - `Opened` is delivered when the connection is made (before `Started`),
//!   `Closed` when it ends (after `Suspend`), each once per connection.
//! - A client is active as soon as it is enabled; a server stays paused
//!   until its driver calls Start.
//! - When the connection closes, a client becomes disabled (it must be
//!   enabled again); a server stays enabled and its offer stays up, so a
//!   client can open it again.
//! - Pause on a disabled channel is remembered: the channel is paused when
//!   it is next enabled.

/// Which endpoint a channel is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The endpoint that opens an offer (a VSC; the guest side on Hyper-V).
    Client,
    /// The endpoint that offers the channel (a VSP).
    Server,
}

/// Something that happened to a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The driver called Enable.
    Enable,
    /// The driver called Disable.
    Disable,
    /// The driver called Pause.
    Pause,
    /// The driver called Start.
    Start,
    /// The connection to the other endpoint was made; the engine delivers
    /// `Opened` and reports its result with one of the next two events.
    Connected,
    /// The driver's `Opened` callback succeeded.
    OpenedOk,
    /// The driver's `Opened` callback failed: the connection is abandoned.
    OpenedFailed,
    /// The other endpoint closed the channel or rescinded its offer.
    PeerClosed,
}

/// One step the engine must carry out, in the order given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Server: make the offer visible to clients.
    Offer,
    /// Server: withdraw (rescind) the offer.
    Rescind,
    /// Client: look for the target offer and open it when it exists.
    Connect,
    /// Close our side of the connection and free its rings.
    Disconnect,
    /// Deliver `EvtChannelOpened`.
    Opened,
    /// Deliver `EvtChannelStarted`.
    Started,
    /// Start delivering incoming packets.
    EnableIncoming,
    /// Deliver `EvtChannelPostStarted`.
    PostStarted,
    /// Stop delivering incoming packets.
    StopIncoming,
    /// Deliver `EvtChannelSuspend`.
    Suspend,
    /// Wait until the driver has completed every incoming packet.
    DrainIncoming,
    /// Deliver `EvtChannelClosed`.
    Closed,
}

impl Event {
    /// The event's name, for traces.
    pub const fn name(self) -> &'static str {
        match self {
            Event::Enable => "enable",
            Event::Disable => "disable",
            Event::Pause => "pause",
            Event::Start => "start",
            Event::Connected => "connected",
            Event::OpenedOk => "opened_ok",
            Event::OpenedFailed => "opened_failed",
            Event::PeerClosed => "peer_closed",
        }
    }
}

impl Action {
    /// The action's name, for traces.
    pub const fn name(self) -> &'static str {
        match self {
            Action::Offer => "offer",
            Action::Rescind => "rescind",
            Action::Connect => "connect",
            Action::Disconnect => "disconnect",
            Action::Opened => "opened",
            Action::Started => "started",
            Action::EnableIncoming => "enable_incoming",
            Action::PostStarted => "post_started",
            Action::StopIncoming => "stop_incoming",
            Action::Suspend => "suspend",
            Action::DrainIncoming => "drain_incoming",
            Action::Closed => "closed",
        }
    }
}

/// The event is not allowed in the channel's current state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidState;

/// Up to eight actions, in order, without allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Actions {
    buf: [Action; 8],
    len: usize,
}

impl Actions {
    fn new() -> Self {
        Self {
            buf: [Action::Offer; 8],
            len: 0,
        }
    }

    fn push(&mut self, a: Action) {
        // No transition produces more than eight actions (the longest,
        // disabling a running client, produces five).
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = a;
            self.len += 1;
        }
    }

    /// The actions as a slice.
    pub fn as_slice(&self) -> &[Action] {
        &self.buf[..self.len]
    }
}

/// The lifecycle state of one channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    role: Role,
    enabled: bool,
    connected: bool,
    /// `Opened` was delivered and its result is not known yet.
    opening: bool,
    paused: bool,
    running: bool,
}

impl Lifecycle {
    /// A newly allocated, disabled channel.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            enabled: false,
            connected: false,
            opening: false,
            paused: role == Role::Server,
            running: false,
        }
    }

    /// The channel's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the driver enabled the channel (and it was not closed since,
    /// for a client).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether the channel is connected to the other endpoint.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Whether `Opened` was delivered and its result is awaited.
    pub fn is_opening(&self) -> bool {
        self.opening
    }

    /// Whether the channel is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Whether packets flow: enabled, connected and not paused.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Whether init-time settings may still be changed (KMCL: only while
    /// the channel is disabled).
    pub fn accepts_init(&self) -> bool {
        !self.enabled && !self.connected
    }

    fn enter_running(&mut self, out: &mut Actions) {
        if self.enabled && self.connected && !self.opening && !self.paused && !self.running {
            self.running = true;
            out.push(Action::Started);
            out.push(Action::EnableIncoming);
            out.push(Action::PostStarted);
        }
    }

    fn leave_running(&mut self, out: &mut Actions) {
        if self.running {
            self.running = false;
            out.push(Action::StopIncoming);
            out.push(Action::Suspend);
            out.push(Action::DrainIncoming);
        }
    }

    /// Applies `event` and returns what the engine must do, in order.
    ///
    /// An event that makes no sense in the current state (Enable twice,
    /// Disable while disabled, a connection on a disabled channel, anything
    /// but the `Opened` result while it is awaited) is rejected and changes
    /// nothing.
    pub fn apply(&mut self, event: Event) -> Result<Actions, InvalidState> {
        let mut out = Actions::new();
        if self.opening && !matches!(event, Event::OpenedOk | Event::OpenedFailed) {
            return Err(InvalidState);
        }
        match event {
            Event::Enable => {
                if self.enabled {
                    return Err(InvalidState);
                }
                self.enabled = true;
                out.push(match self.role {
                    Role::Server => Action::Offer,
                    Role::Client => Action::Connect,
                });
            }
            Event::Disable => {
                if !self.enabled && !self.connected {
                    return Err(InvalidState);
                }
                self.leave_running(&mut out);
                if self.connected {
                    self.connected = false;
                    out.push(Action::Closed);
                    out.push(Action::Disconnect);
                }
                if self.role == Role::Server && self.enabled {
                    out.push(Action::Rescind);
                }
                self.enabled = false;
                self.paused = self.role == Role::Server;
            }
            Event::Pause => {
                self.leave_running(&mut out);
                self.paused = true;
            }
            Event::Start => {
                if !self.enabled {
                    return Err(InvalidState);
                }
                self.paused = false;
                self.enter_running(&mut out);
            }
            Event::Connected => {
                if !self.enabled || self.connected {
                    return Err(InvalidState);
                }
                self.connected = true;
                self.opening = true;
                out.push(Action::Opened);
            }
            Event::OpenedOk => {
                if !self.opening {
                    return Err(InvalidState);
                }
                self.opening = false;
                self.enter_running(&mut out);
            }
            Event::OpenedFailed => {
                if !self.opening {
                    return Err(InvalidState);
                }
                self.opening = false;
                self.connected = false;
                out.push(Action::Disconnect);
                if self.role == Role::Client {
                    self.enabled = false;
                }
            }
            Event::PeerClosed => {
                if !self.connected {
                    return Err(InvalidState);
                }
                self.leave_running(&mut out);
                self.connected = false;
                out.push(Action::Closed);
                out.push(Action::Disconnect);
                if self.role == Role::Client {
                    self.enabled = false;
                    self.paused = false;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::Action::*;
    use super::*;

    fn run(l: &mut Lifecycle, e: Event) -> &'static [Action] {
        let a = l.apply(e).unwrap();
        // Leak into a static slice for easy comparison in tests.
        extern crate std;
        std::boxed::Box::leak(a.as_slice().to_vec().into_boxed_slice())
    }

    #[test]
    fn client_open_run_close() {
        let mut c = Lifecycle::new(Role::Client);
        assert!(c.accepts_init());
        assert_eq!(run(&mut c, Event::Enable), [Connect]);
        assert!(!c.accepts_init());
        assert_eq!(run(&mut c, Event::Connected), [Opened]);
        assert!(!c.is_running());
        assert_eq!(
            run(&mut c, Event::OpenedOk),
            [Started, EnableIncoming, PostStarted]
        );
        assert!(c.is_running());
        assert_eq!(
            run(&mut c, Event::Disable),
            [StopIncoming, Suspend, DrainIncoming, Closed, Disconnect]
        );
        assert!(c.accepts_init());
    }

    #[test]
    fn server_waits_for_start() {
        let mut s = Lifecycle::new(Role::Server);
        assert_eq!(run(&mut s, Event::Enable), [Offer]);
        assert_eq!(run(&mut s, Event::Connected), [Opened]);
        assert_eq!(run(&mut s, Event::OpenedOk), []);
        assert!(!s.is_running());
        assert_eq!(
            run(&mut s, Event::Start),
            [Started, EnableIncoming, PostStarted]
        );
        // The client goes away: the server is stopped, its offer stays up.
        assert_eq!(
            run(&mut s, Event::PeerClosed),
            [StopIncoming, Suspend, DrainIncoming, Closed, Disconnect]
        );
        assert!(s.is_enabled() && !s.is_paused());
        // The client comes back: straight to running (it was started).
        assert_eq!(run(&mut s, Event::Connected), [Opened]);
        assert_eq!(
            run(&mut s, Event::OpenedOk),
            [Started, EnableIncoming, PostStarted]
        );
        assert_eq!(
            run(&mut s, Event::Disable),
            [
                StopIncoming,
                Suspend,
                DrainIncoming,
                Closed,
                Disconnect,
                Rescind
            ]
        );
    }

    #[test]
    fn client_is_disabled_when_the_peer_closes() {
        let mut c = Lifecycle::new(Role::Client);
        run(&mut c, Event::Enable);
        run(&mut c, Event::Connected);
        run(&mut c, Event::OpenedOk);
        run(&mut c, Event::PeerClosed);
        assert!(!c.is_enabled() && c.accepts_init());
        assert_eq!(c.apply(Event::Disable), Err(InvalidState));
        assert_eq!(run(&mut c, Event::Enable), [Connect]);
    }

    #[test]
    fn pause_and_start() {
        let mut c = Lifecycle::new(Role::Client);
        run(&mut c, Event::Enable);
        run(&mut c, Event::Connected);
        run(&mut c, Event::OpenedOk);
        assert_eq!(
            run(&mut c, Event::Pause),
            [StopIncoming, Suspend, DrainIncoming]
        );
        assert_eq!(run(&mut c, Event::Pause), []);
        assert_eq!(
            run(&mut c, Event::Start),
            [Started, EnableIncoming, PostStarted]
        );
        assert_eq!(run(&mut c, Event::Start), []);
    }

    #[test]
    fn pause_before_enable_is_remembered() {
        let mut c = Lifecycle::new(Role::Client);
        assert_eq!(run(&mut c, Event::Pause), []);
        run(&mut c, Event::Enable);
        assert_eq!(run(&mut c, Event::Connected), [Opened]);
        assert_eq!(run(&mut c, Event::OpenedOk), []);
        assert!(c.is_paused());
    }

    #[test]
    fn failed_open_rolls_back() {
        let mut c = Lifecycle::new(Role::Client);
        run(&mut c, Event::Enable);
        assert_eq!(run(&mut c, Event::Connected), [Opened]);
        // Nothing else is accepted while the result of Opened is awaited.
        assert_eq!(c.apply(Event::Pause), Err(InvalidState));
        assert_eq!(c.apply(Event::Disable), Err(InvalidState));
        assert_eq!(run(&mut c, Event::OpenedFailed), [Disconnect]);
        assert!(!c.is_enabled() && !c.is_connected() && !c.is_running());
        assert_eq!(c.apply(Event::OpenedOk), Err(InvalidState));
    }

    #[test]
    fn invalid_events_change_nothing() {
        let mut c = Lifecycle::new(Role::Client);
        let before = c;
        assert_eq!(c.apply(Event::Disable), Err(InvalidState));
        assert_eq!(c.apply(Event::Start), Err(InvalidState));
        assert_eq!(c.apply(Event::Connected), Err(InvalidState));
        assert_eq!(c.apply(Event::PeerClosed), Err(InvalidState));
        assert_eq!(c, before);
        run(&mut c, Event::Enable);
        let before = c;
        assert_eq!(c.apply(Event::Enable), Err(InvalidState));
        assert_eq!(c, before);
    }
}

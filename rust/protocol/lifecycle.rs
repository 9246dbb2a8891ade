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
    /// The other endpoint closed the channel for now and will offer it
    /// again (a VMBus host's device across the guest's hibernation): a
    /// client closes as for [`Event::PeerClosed`] but stays enabled and
    /// looks for the offer again; a server treats it as `PeerClosed`.
    PeerSuspended,
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
            Event::PeerSuspended => "peer_suspended",
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

/// Where a channel is in its life, apart from pausing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not enabled (a client whose connection closed is disabled again).
    Disabled,
    /// Enabled and not connected: a server's offer is up, a client looks
    /// for its offer.
    Enabled,
    /// Connected; `Opened` was delivered and its result is awaited.
    Opening,
    /// Connected and opened: packets flow unless paused.
    Open,
}

/// The lifecycle state of one channel.
///
/// # Invariants
///
/// - The channel runs (packets flow) exactly when it is open
///   and not paused; `Started`/`EnableIncoming`/`PostStarted` are emitted
///   on entering that condition and `StopIncoming`/`Suspend`/
///   `DrainIncoming` on leaving it, so they alternate.
/// - While opening, only the `Opened` result is accepted.
/// - `paused` is remembered in every state (KMCL: a Pause before Enable
///   takes effect when the channel connects); a server starts paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    role: Role,
    state: State,
    paused: bool,
}

impl Lifecycle {
    /// A newly allocated, disabled channel.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            state: State::Disabled,
            paused: role == Role::Server,
        }
    }

    /// The channel's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the driver enabled the channel (and it was not closed since,
    /// for a client).
    pub fn is_enabled(&self) -> bool {
        self.state != State::Disabled
    }

    /// Whether the channel is connected to the other endpoint.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Opening | State::Open)
    }

    /// Whether `Opened` was delivered and its result is awaited.
    pub fn is_opening(&self) -> bool {
        self.state == State::Opening
    }

    /// Whether the channel is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Whether packets flow: enabled, connected and not paused.
    pub fn is_running(&self) -> bool {
        self.state == State::Open && !self.paused
    }

    /// Whether init-time settings may still be changed (KMCL: only while
    /// the channel is disabled).
    pub fn accepts_init(&self) -> bool {
        self.state == State::Disabled
    }

    /// Emits the actions of starting to run if the channel runs now but did
    /// not before (`was_running`).
    fn entered(&self, was_running: bool, out: &mut Actions) {
        if !was_running && self.is_running() {
            out.push(Action::Started);
            out.push(Action::EnableIncoming);
            out.push(Action::PostStarted);
        }
    }

    /// Emits the actions of stopping if the channel runs now (before a
    /// change that stops it).
    fn leaving(&self, out: &mut Actions) {
        if self.is_running() {
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
        if self.state == State::Opening && !matches!(event, Event::OpenedOk | Event::OpenedFailed) {
            return Err(InvalidState);
        }
        match event {
            Event::Enable => {
                if self.state != State::Disabled {
                    return Err(InvalidState);
                }
                self.state = State::Enabled;
                out.push(match self.role {
                    Role::Server => Action::Offer,
                    Role::Client => Action::Connect,
                });
            }
            Event::Disable => {
                if self.state == State::Disabled {
                    return Err(InvalidState);
                }
                self.leaving(&mut out);
                if self.state == State::Open {
                    out.push(Action::Closed);
                    out.push(Action::Disconnect);
                }
                if self.role == Role::Server {
                    out.push(Action::Rescind);
                }
                self.state = State::Disabled;
                self.paused = self.role == Role::Server;
            }
            Event::Pause => {
                self.leaving(&mut out);
                self.paused = true;
            }
            Event::Start => {
                if self.state == State::Disabled {
                    return Err(InvalidState);
                }
                let was_running = self.is_running();
                self.paused = false;
                self.entered(was_running, &mut out);
            }
            Event::Connected => {
                if self.state != State::Enabled {
                    return Err(InvalidState);
                }
                self.state = State::Opening;
                out.push(Action::Opened);
            }
            Event::OpenedOk => {
                if self.state != State::Opening {
                    return Err(InvalidState);
                }
                self.state = State::Open;
                self.entered(false, &mut out);
            }
            Event::OpenedFailed => {
                if self.state != State::Opening {
                    return Err(InvalidState);
                }
                out.push(Action::Disconnect);
                self.state = match self.role {
                    Role::Client => State::Disabled,
                    Role::Server => State::Enabled,
                };
            }
            Event::PeerClosed | Event::PeerSuspended => {
                if self.state != State::Open {
                    return Err(InvalidState);
                }
                self.leaving(&mut out);
                out.push(Action::Closed);
                out.push(Action::Disconnect);
                self.paused &= self.role == Role::Server;
                self.state = match (self.role, event) {
                    (Role::Client, Event::PeerSuspended) => {
                        out.push(Action::Connect);
                        State::Enabled
                    }
                    (Role::Client, _) => State::Disabled,
                    (Role::Server, _) => State::Enabled,
                };
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
    fn client_looks_again_when_the_peer_suspends() {
        let mut c = Lifecycle::new(Role::Client);
        run(&mut c, Event::Enable);
        run(&mut c, Event::Connected);
        run(&mut c, Event::OpenedOk);
        run(&mut c, Event::Pause);
        run(&mut c, Event::Start);
        assert_eq!(
            run(&mut c, Event::PeerSuspended),
            [
                StopIncoming,
                Suspend,
                DrainIncoming,
                Closed,
                Disconnect,
                Connect
            ]
        );
        assert!(c.is_enabled() && !c.is_connected() && !c.accepts_init());
        // The offer is back: a fresh open.
        assert_eq!(run(&mut c, Event::Connected), [Opened]);
        assert_eq!(
            run(&mut c, Event::OpenedOk),
            [Started, EnableIncoming, PostStarted]
        );
        assert_eq!(c.apply(Event::Enable), Err(InvalidState));
        // A server stays enabled, as after PeerClosed.
        let mut s = Lifecycle::new(Role::Server);
        run(&mut s, Event::Enable);
        run(&mut s, Event::Connected);
        run(&mut s, Event::OpenedOk);
        assert_eq!(run(&mut s, Event::PeerSuspended), [Closed, Disconnect]);
        assert!(s.is_enabled());
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

// SPDX-License-Identifier: GPL-2.0

//! Property tests: KMCL's callback-order rules hold for any sequence of
//! driver calls and connection events, for both roles.

use kmcl_protocol::lifecycle::{
    Action,
    Event,
    Lifecycle,
    Role, //
};
use proptest::prelude::*;

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        Just(Event::Enable),
        Just(Event::Disable),
        Just(Event::Pause),
        Just(Event::Start),
        Just(Event::Connected),
        Just(Event::OpenedOk),
        Just(Event::OpenedFailed),
        Just(Event::PeerClosed),
        Just(Event::PeerSuspended),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn callback_order(server in any::<bool>(), events in prop::collection::vec(event(), 0..60)) {
        let role = if server { Role::Server } else { Role::Client };
        let mut l = Lifecycle::new(role);
        let mut trace: Vec<Action> = Vec::new();
        // Trace-level state, rebuilt only from the actions.
        let mut open = false; // between Opened and Closed (or a failed open)
        let mut started = false; // between Started and Suspend
        let mut incoming = false; // between EnableIncoming and StopIncoming

        for e in events {
            let before = l;
            let Ok(actions) = l.apply(e) else {
                prop_assert_eq!(l, before, "a rejected event changed the state");
                continue;
            };
            let a = actions.as_slice();
            for (i, act) in a.iter().enumerate() {
                match act {
                    Action::Opened => { prop_assert!(!open); open = true; }
                    Action::Closed => { prop_assert!(open && !started && !incoming); open = false; }
                    Action::Disconnect => {
                        // Either after Closed, or a failed open with no Closed.
                        prop_assert!(!started && !incoming);
                        if e == Event::OpenedFailed { prop_assert!(open); open = false; }
                    }
                    Action::Started => {
                        prop_assert!(open && !started);
                        prop_assert_eq!(&a[i + 1..i + 3], &[Action::EnableIncoming, Action::PostStarted]);
                        started = true;
                    }
                    Action::EnableIncoming => { prop_assert!(started && !incoming); incoming = true; }
                    Action::PostStarted => prop_assert!(incoming),
                    Action::StopIncoming => {
                        prop_assert!(incoming);
                        prop_assert_eq!(&a[i + 1..i + 3], &[Action::Suspend, Action::DrainIncoming]);
                        incoming = false;
                    }
                    Action::Suspend => { prop_assert!(started && !incoming); started = false; }
                    Action::DrainIncoming => prop_assert!(!started),
                    Action::Offer => prop_assert_eq!(role, Role::Server),
                    Action::Rescind => prop_assert_eq!(role, Role::Server),
                    Action::Connect => prop_assert_eq!(role, Role::Client),
                }
                trace.push(*act);
            }
            // The state agrees with the trace.
            prop_assert_eq!(l.is_running(), started && incoming);
            prop_assert_eq!(l.is_connected(), open);
            prop_assert_eq!(
                l.is_running(),
                l.is_enabled() && l.is_connected() && !l.is_opening() && !l.is_paused()
            );
            if role == Role::Client && (e == Event::PeerClosed || e == Event::OpenedFailed) {
                prop_assert!(!l.is_enabled(), "a closed client must be re-enabled");
            }
            if role == Role::Client && e == Event::PeerSuspended {
                prop_assert!(l.is_enabled() && !l.is_connected(), "a suspended client looks again");
                prop_assert_eq!(a.last(), Some(&Action::Connect));
            }
            if e == Event::Disable {
                prop_assert!(l.accepts_init());
            }
        }
    }
}

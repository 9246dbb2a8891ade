// SPDX-License-Identifier: GPL-2.0

//! One offer table for both buses: the offers a bus knows and the client
//! channels waiting for one. A client targeting an interface type (and
//! instance, unless it accepts any) is connected to the first free
//! matching offer, now or when one becomes free.
//!
//! What an offer carries beyond its identity (a loopback server, a VMBus
//! host's device) is the bus's own [`OfferState`].

use kernel::{
    prelude::*,
    sync::Arc, //
};

use crate::engine::{
    channel::{
        Channel,
        Settings, //
    },
    types::{
        Guid,
        RingPageCounts, //
    },
};

/// What a bus keeps about an offer besides its identity.
pub(crate) trait OfferState {
    /// The offer can take a client now.
    fn is_free(&self) -> bool;

    /// For a sub-channel offer, the address of the client channel its
    /// primary's connection serves (only that client's sub-channels may
    /// take it); 0 for a primary offer.
    fn subchannel_of(&self) -> usize {
        0
    }
}

/// An offer: an interface, and where it is visible.
pub(crate) struct Offer<S> {
    pub(crate) interface_type: Guid,
    pub(crate) interface_instance: Guid,
    /// Only clients in this VTL see it (`None`: every client; a VMBus
    /// host's offers are filtered by `hv_vmbus`).
    pub(crate) vtl: Option<u8>,
    pub(crate) state: S,
}

/// What a client channel looks for.
#[derive(Clone, Copy)]
pub(crate) struct Target {
    pub(crate) interface_type: Guid,
    /// All zeroes: any instance.
    pub(crate) interface_instance: Guid,
    /// The VTL the client runs in.
    pub(crate) vtl: u8,
    /// The ring sizes the client donates.
    pub(crate) pages: RingPageCounts,
    /// A sub-channel's: the address of its primary client channel (0: a
    /// primary channel).
    pub(crate) primary: usize,
}

impl Target {
    /// What a client with `settings` looks for.
    pub(crate) fn of(settings: &Settings) -> Self {
        Self {
            interface_type: settings.interface_type,
            interface_instance: settings.interface_instance,
            vtl: settings.vtl,
            pages: RingPageCounts {
                outgoing: settings.outgoing_pages,
                incoming: settings.incoming_pages,
            },
            primary: 0,
        }
    }

    /// Whether `offer` is free and is what this target looks for.
    pub(crate) fn matches<S: OfferState>(&self, offer: &Offer<S>) -> bool {
        // A sub-channel takes a sub-channel offer of its primary's
        // connection, and nothing else takes one.
        if self.primary != 0 || offer.state.subchannel_of() != 0 {
            return offer.state.is_free() && offer.state.subchannel_of() == self.primary;
        }
        offer.state.is_free()
            && self.interface_type == offer.interface_type
            && (self.interface_instance == [0; 16]
                || self.interface_instance == offer.interface_instance)
            && offer.vtl.is_none_or(|vtl| vtl == self.vtl)
    }
}

/// A client channel waiting for an offer.
pub(crate) struct Waiting {
    pub(crate) client: Arc<Channel>,
    pub(crate) target: Target,
}

/// A bus's offers and waiting clients; kept under the bus's lock.
pub(crate) struct OfferTable<S> {
    pub(crate) offers: KVec<Offer<S>>,
    waiting: KVec<Waiting>,
}

impl<S: OfferState> OfferTable<S> {
    /// An empty table.
    pub(crate) const fn new() -> Self {
        Self {
            offers: KVec::new(),
            waiting: KVec::new(),
        }
    }

    /// The first free offer `target` matches.
    pub(crate) fn find(&self, target: &Target) -> Option<usize> {
        self.offers.iter().position(|o| target.matches(o))
    }

    /// Adds `offer`; returns its index.
    pub(crate) fn add(&mut self, offer: Offer<S>) -> Result<usize> {
        self.offers.push(offer, GFP_KERNEL)?;
        Ok(self.offers.len() - 1)
    }

    /// Records `client` as waiting for `target`.
    pub(crate) fn wait(&mut self, client: &Arc<Channel>, target: Target) -> Result {
        self.waiting.push(
            Waiting {
                client: client.clone(),
                target,
            },
            GFP_KERNEL,
        )?;
        Ok(())
    }

    /// Forgets `client` if it is waiting.
    pub(crate) fn cancel(&mut self, client: &Arc<Channel>) {
        self.waiting.retain(|w| !Arc::ptr_eq(&w.client, client));
    }

    /// The first client waiting for offer `idx` (which must be free), as
    /// (its position among the waiting, the client, its target).
    pub(crate) fn first_waiting_for(&self, idx: usize) -> Option<(usize, Arc<Channel>, Target)> {
        let offer = &self.offers[idx];
        let pos = self.waiting.iter().position(|w| w.target.matches(offer))?;
        let w = &self.waiting[pos];
        Some((pos, w.client.clone(), w.target))
    }

    /// The client at position `pos` no longer waits (it was connected).
    pub(crate) fn served(&mut self, pos: usize) {
        let _ = self.waiting.remove(pos);
    }
}

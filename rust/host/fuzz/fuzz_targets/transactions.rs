// SPDX-License-Identifier: GPL-2.0

//! Completion correlation: an arbitrary sequence of sends, completions
//! (with ids we issued or arbitrary forged ones), cancellations, forgotten
//! sends and teardowns, checked against a model. Every transaction ends
//! exactly once; a forged, repeated or stale id never matches.

#![no_main]

use std::collections::HashMap;

use kmcl_protocol::transactions::{
    Matched,
    Slot,
    SlotStore,
    Transactions, //
};
use libfuzzer_sys::fuzz_target;

struct Store(Vec<Slot<u32>>);

impl SlotStore<u32> for Store {
    fn slots(&self) -> usize {
        self.0.len()
    }
    fn slot(&mut self, i: usize) -> &mut Slot<u32> {
        &mut self.0[i]
    }
    fn push(&mut self, slot: Slot<u32>) -> Result<(), Slot<u32>> {
        // A store that runs out of memory now and then.
        if self.0.len() >= 64 {
            return Err(slot);
        }
        self.0.push(slot);
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum State {
    Busy(u32),
    Cancelled,
}

fuzz_target!(|input: &[u8]| {
    let mut t = Transactions::new(Store(Vec::new()));
    let mut model: HashMap<u64, State> = HashMap::new();
    // Every id ever issued, for picking "our" ids.
    let mut issued: Vec<u64> = Vec::new();
    let mut next_value = 0u32;
    let mut bytes = input.iter().copied();
    while let Some(op) = bytes.next() {
        let pick = |b: Option<u8>, issued: &Vec<u64>| -> Option<u64> {
            let b = b?;
            (!issued.is_empty()).then(|| issued[b as usize % issued.len()])
        };
        match op % 6 {
            0 | 1 => {
                next_value += 1;
                match t.insert(next_value) {
                    Ok(id) => {
                        assert_ne!(id, 0);
                        assert!(!model.contains_key(&id), "id {id:#x} handed out twice");
                        model.insert(id, State::Busy(next_value));
                        issued.push(id);
                    }
                    Err((_, v)) => assert_eq!(v, next_value),
                }
            }
            2 => {
                let Some(id) = pick(bytes.next(), &issued) else {
                    continue;
                };
                let want = match model.remove(&id) {
                    Some(State::Busy(v)) => Matched::Done(v),
                    Some(State::Cancelled) => Matched::Late,
                    None => Matched::Unknown,
                };
                assert_eq!(t.complete(id), want);
            }
            3 => {
                // A forged id: eight arbitrary bytes.
                let mut b = [0u8; 8];
                for x in &mut b {
                    *x = bytes.next().unwrap_or(0);
                }
                let id = u64::from_le_bytes(b);
                let want = match model.remove(&id) {
                    Some(State::Busy(v)) => Matched::Done(v),
                    Some(State::Cancelled) => Matched::Late,
                    None => Matched::Unknown,
                };
                assert_eq!(t.complete(id), want);
            }
            4 => {
                let Some(id) = pick(bytes.next(), &issued) else {
                    continue;
                };
                let cancel = bytes.next().unwrap_or(0) & 1 == 0;
                let was = model.get(&id).copied();
                if cancel {
                    let got = t.cancel(id);
                    match was {
                        Some(State::Busy(v)) => {
                            assert_eq!(got, Some(v));
                            model.insert(id, State::Cancelled);
                        }
                        _ => assert_eq!(got, None),
                    }
                } else {
                    let got = t.forget(id);
                    match was {
                        Some(State::Busy(v)) => {
                            assert_eq!(got, Some(v));
                            model.remove(&id);
                        }
                        _ => assert_eq!(got, None),
                    }
                }
            }
            _ => {
                if bytes.next().unwrap_or(0) < 16 {
                    let mut ended = HashMap::new();
                    t.drain(|id, v| assert!(ended.insert(id, v).is_none()));
                    let busy: HashMap<u64, u32> = model
                        .iter()
                        .filter_map(|(id, s)| match s {
                            State::Busy(v) => Some((*id, *v)),
                            State::Cancelled => None,
                        })
                        .collect();
                    assert_eq!(ended, busy);
                    model.clear();
                }
            }
        }
        let busy = model
            .values()
            .filter(|s| matches!(s, State::Busy(_)))
            .count();
        assert_eq!(t.outstanding(), busy);
        assert_eq!(t.cancelled(), model.len() - busy);
    }
});

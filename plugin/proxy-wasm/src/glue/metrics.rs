//! The metric-id cache: counters defined on first use, then incremented by id.

use std::cell::RefCell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use rustc_hash::FxHashMap;

use crate::enforce::{Counter, Total};

/// Counter ids, defined on first use and cached (one cache per root context, shared with its
/// request contexts): the totals by slot, the per-policy counters by rule id and outcome, so
/// that a request increments its counters without building their names.
#[derive(Debug, Default)]
pub(super) struct Metrics {
    totals: RefCell<[Option<u32>; Total::ALL.len()]>,
    policies: RefCell<FxHashMap<String, [Option<u32>; 4]>>,
}

impl Metrics {
    pub(super) fn increment(&self, counter: &Counter<'_>) {
        let define = || hostcalls::define_metric(MetricType::Counter, &counter.name()).ok();
        let id = match counter {
            Counter::Total(t) => {
                let Ok(mut totals) = self.totals.try_borrow_mut() else {
                    return;
                };
                let Some(slot) = totals.get_mut(t.index()) else {
                    return;
                };
                if slot.is_none() {
                    *slot = define();
                }
                *slot
            }
            Counter::Policy { id, outcome } => {
                let Ok(mut policies) = self.policies.try_borrow_mut() else {
                    return;
                };
                let ids = match policies.get_mut(*id) {
                    Some(ids) => ids,
                    None => policies.entry((*id).to_string()).or_default(),
                };
                let Some(slot) = ids.get_mut(outcome.index()) else {
                    return;
                };
                if slot.is_none() {
                    *slot = define();
                }
                *slot
            }
        };
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}

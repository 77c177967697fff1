//! The component's exports: wit-bindgen's bindings for `palisade:policy/engine` and the
//! conversion of [`Instance`]'s answers into WIT records. wasm32 only.
//!
//! The instance state lives in a thread-local: a component instance is single-threaded and
//! its globals are its own, so each instance a host creates has its own engine.

// The bindings wit-bindgen generates implement the canonical ABI with raw pointers.
#![allow(unsafe_code)]

use std::cell::RefCell;

use palisade_engine::SourceFile;
use palisade_engine::container::ContainerDecision as EngineContainerDecision;

use crate::Instance;

wit_bindgen::generate!({
    path: "../../wit",
    world: "engine",
});

use exports::palisade::policy::{admission, decide, loader};

thread_local! {
    static INSTANCE: RefCell<Instance> = RefCell::new(Instance::default());
}

struct Component;

impl loader::Guest for Component {
    fn load_bundle(bundle: Vec<u8>) -> Result<(), String> {
        INSTANCE.with(|i| i.borrow_mut().load_bundle(&bundle))
    }

    fn load_sources(sources: Vec<loader::SourceFile>) -> Result<(), String> {
        let files: Vec<SourceFile> = sources
            .into_iter()
            .map(|s| SourceFile::new(s.name, s.text))
            .collect();
        INSTANCE.with(|i| i.borrow_mut().load_sources(&files))
    }

    fn bundle_digest() -> Option<String> {
        INSTANCE.with(|i| i.borrow().bundle_digest())
    }
}

impl From<EngineContainerDecision> for admission::ContainerDecision {
    fn from(d: EngineContainerDecision) -> Self {
        let explanation = d.to_string();
        admission::ContainerDecision {
            allowed: d.allowed,
            violations: d
                .violations
                .into_iter()
                .map(|v| admission::Violation {
                    control: v.control,
                    policy: v.policy,
                    message: v.message,
                })
                .collect(),
            policies: d.policies,
            container_id: d.subject.id,
            skipped: d.skipped,
            explanation,
        }
    }
}

impl admission::Guest for Component {
    fn admit(
        state_json: String,
        config_json: String,
        annotations: Vec<(String, String)>,
    ) -> Result<admission::ContainerDecision, String> {
        INSTANCE
            .with(|i| i.borrow().admit(&state_json, &config_json, annotations))
            .map(Into::into)
    }

    fn admit_on_host(
        state_json: String,
        config_json: String,
        annotations: Vec<(String, String)>,
        host_facts_json: String,
    ) -> Result<admission::ContainerDecision, String> {
        INSTANCE
            .with(|i| {
                i.borrow()
                    .admit_on_host(&state_json, &config_json, annotations, &host_facts_json)
            })
            .map(Into::into)
    }

    fn admit_request(request_json: String) -> Result<admission::ContainerDecision, String> {
        INSTANCE
            .with(|i| i.borrow().admit_request(&request_json))
            .map(Into::into)
    }
}

impl decide::Guest for Component {
    fn decide(request_json: String) -> Result<decide::Decision, String> {
        let d = INSTANCE.with(|i| i.borrow().decide(&request_json))?;
        let step = serde_json::to_value(d.step)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        Ok(decide::Decision {
            verdict: if d.allowed() {
                decide::Verdict::Allow
            } else {
                decide::Verdict::Deny
            },
            rule_id: d.rule.as_ref().map(|r| r.id.clone()),
            step,
            explanation: d.explain(),
            errors: d.errors.iter().map(ToString::to_string).collect(),
            detail_json: serde_json::to_string(&d).map_err(|e| e.to_string())?,
        })
    }
}

export!(Component);

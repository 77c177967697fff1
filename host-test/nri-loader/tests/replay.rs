//! Recorded NRI `CreateContainer` events (`host-test/testdata/nri/*.json`) replayed through
//! three implementations with the same policy: the NRI plugin's `.wasm` in the stand-in
//! loader, the native engine (`Engine::decide_container` on the same converted request), and
//! the WIT component (`plugin/component`, `admission.admit-request`) under wasmtime's
//! component model. Each must reach the recorded verdict with the same violations.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use palisade_engine::container::ContainerDecision;
use palisade_engine::{Options, SourceFile, compile, load};
use palisade_nri::convert::Converted;
use palisade_nri_loader::events::load_dir;
use palisade_nri_loader::{CallError, Creation};

mod component {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "engine",
    });
}

/// The component, built through cargo in a target directory of our own.
fn component_wasm() -> Vec<u8> {
    if let Some(p) = std::env::var_os("PALISADE_COMPONENT_WASM") {
        return std::fs::read(&p).unwrap();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| common::root().join("target"), PathBuf::from)
        .join("nri-component");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(common::root())
        .args([
            "build",
            "--quiet",
            "-p",
            "palisade-component",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "component",
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success(), "building the component failed");
    std::fs::read(target.join("wasm32-wasip2/component/palisade_component.wasm")).unwrap()
}

struct ComponentGuest {
    store: wasmtime::Store<()>,
    engine: component::Engine,
}

impl ComponentGuest {
    fn new(policy: &str) -> Self {
        let mut config = wasmtime::Config::new();
        config.consume_fuel(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let c = wasmtime::component::Component::new(&engine, component_wasm()).unwrap();
        let mut linker = wasmtime::component::Linker::new(&engine);
        linker.define_unknown_imports_as_traps(&c).unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        store.set_fuel(5_000_000_000).unwrap();
        let instance = component::Engine::instantiate(&mut store, &c, &linker).unwrap();
        let files = [component::exports::palisade::policy::loader::SourceFile {
            name: "policy.yaml".into(),
            text: policy.into(),
        }];
        instance
            .palisade_policy_loader()
            .call_load_sources(&mut store, &files)
            .unwrap()
            .unwrap();
        ComponentGuest {
            store,
            engine: instance,
        }
    }

    /// `allowed` and `<policy> <control>` per violation.
    fn admit(&mut self, request_json: &str) -> (bool, Vec<String>, Vec<String>) {
        self.store.set_fuel(5_000_000_000).unwrap();
        let d = self
            .engine
            .palisade_policy_admission()
            .call_admit_request(&mut self.store, request_json)
            .unwrap()
            .unwrap();
        let v = d
            .violations
            .iter()
            .map(|v| format!("{} {}", v.policy, v.control))
            .collect();
        let messages = d
            .violations
            .iter()
            .map(|v| format!("{} [{}]: {}", v.policy, v.control, v.message))
            .collect();
        (d.allowed, v, messages)
    }
}

fn controls(d: &ContainerDecision) -> Vec<String> {
    d.violations
        .iter()
        .map(|v| format!("{} {}", v.policy, v.control))
        .collect()
}

#[test]
fn recorded_events_decide_the_same_in_the_nri_wasm_the_native_engine_and_the_component() {
    let policy = common::policy();
    let set = load(&[SourceFile::new("policy.yaml", policy.as_str())]).unwrap();
    let native = compile(&set, &Options::default()).unwrap();
    let mut plugin = common::loader().load(&policy).unwrap();
    let mut guest = ComponentGuest::new(&policy);

    let events = load_dir(&common::testdata()).unwrap();
    // `host-test/testdata/nri/01-…json` to `11-…json`: adding a recording means adding it here.
    assert_eq!(events.len(), 15, "{} events", events.len());
    let (mut allowed, mut denied) = (0, 0);
    for (name, event) in &events {
        let req = event.request.to_proto().unwrap();

        // Native: the engine on the converted request.
        let converted = Converted::try_from(&req).unwrap();
        let d = native.decide_container(&converted.request).unwrap();
        assert_eq!(d.allowed, event.expect.allowed, "{name}: native verdict");
        assert_eq!(
            controls(&d),
            event.expect.violations,
            "{name}: native violations"
        );

        // The NRI plugin's .wasm through the loader.
        match plugin.create_container(&req) {
            Creation::Created(rsp) => {
                assert!(d.allowed, "{name}: the wasm allowed what native denied");
                let value: serde_json::Value =
                    serde_json::from_str(&rsp.adjust.unwrap().annotations["palisade.dev/decision"])
                        .unwrap();
                assert_eq!(value["policies"], serde_json::json!(d.policies), "{name}");
                assert_eq!(
                    value["unverified"],
                    serde_json::json!(converted.unseen),
                    "{name}"
                );
                allowed += 1;
            }
            Creation::Failed(CallError::Plugin(msg)) => {
                assert!(
                    !d.allowed,
                    "{name}: the wasm denied what native allowed: {msg}"
                );
                let n = d.violations.len();
                let count = format!("({n} violation{})", if n == 1 { "" } else { "s" });
                assert!(msg.contains(&count), "{name}: {msg}");
                for v in &d.violations {
                    assert!(
                        msg.contains(&v.to_string()),
                        "{name}: `{v}` missing from {msg}"
                    );
                }
                denied += 1;
            }
            Creation::Failed(e) => panic!("{name}: the plugin failed: {e}"),
        }

        // The component, given the same converted request as JSON.
        let json = serde_json::to_string(&converted.request).unwrap();
        let (c_allowed, c_controls, c_messages) = guest.admit(&json);
        assert_eq!(c_allowed, d.allowed, "{name}: component verdict");
        assert_eq!(c_controls, controls(&d), "{name}: component violations");
        let native_messages: Vec<String> = d.violations.iter().map(ToString::to_string).collect();
        assert_eq!(c_messages, native_messages, "{name}: component messages");
    }
    eprintln!(
        "{} events: {allowed} allowed, {denied} denied — same in the NRI wasm, native and the component",
        events.len()
    );
    // The recordings' `expect.allowed`: three allowed, the other twelve denied (08 and 09,
    // privileged, by `devices`; 12-15 are the device, seccomp and mount events).
    assert_eq!((allowed, denied), (3, 12));
}

//! The engine component under wasmtime, and the native engine behind the same call.
//!
//! One [`Guest`] is one component instance in its own store: it loads the policy once, then
//! admits containers. Fuel bounds every call (a runaway guest traps instead of hanging the
//! container start) and the store limits the guest's memory. WASI imports that Rust's standard
//! library declares are defined as traps: the engine does no I/O.

use std::path::Path;

use palisade_engine::container::host::HostFacts;
use palisade_engine::container::{ContainerRequest, Violation};
use palisade_engine::{Options, compile, decode_bundle, load};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};

use crate::cache::{CacheStatus, load_component};
use crate::policy::PolicySource;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "engine",
    });
}

use bindings::exports::palisade::policy::{admission, loader};

/// Fuel for one call into the guest (loading a policy, one admission): far above what a real
/// policy needs (tens of millions of instructions), far below a hang.
pub const DEFAULT_FUEL: u64 = 2_000_000_000;
/// The guest's memory limit.
pub const MEMORY_LIMIT: usize = 256 * 1024 * 1024;

/// An admission decision as the hook reports it, from either the component or the native
/// engine.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Admission {
    /// No violation.
    pub allowed: bool,
    /// Every violated control.
    pub violations: Vec<Violation>,
    /// The selected policies.
    pub policies: Vec<String>,
    /// Why nothing was checked, if nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// The decision as people read it.
    pub explanation: String,
}

/// The wasmtime engine configuration the hook uses (and the cache key depends on).
pub fn wasmtime_engine() -> Result<Engine, String> {
    let mut config = Config::new();
    config.consume_fuel(true);
    Engine::new(&config).map_err(|e| format!("cannot configure wasmtime: {e:#}"))
}

/// A component instance with its store.
pub struct Guest {
    store: Store<StoreLimits>,
    engine: bindings::Engine,
    fuel: u64,
    /// Where the compiled component came from.
    pub cache: CacheStatus,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("fuel", &self.fuel)
            .field("cache", &self.cache)
            .finish()
    }
}

impl Guest {
    /// Loads (from the cache when possible) and instantiates the component at `wasm`.
    pub fn new(wasm: &Path, cache_dir: Option<&Path>, fuel: u64) -> Result<Guest, String> {
        let engine = wasmtime_engine()?;
        let (component, cache) = load_component(&engine, wasm, cache_dir)?;
        let mut linker: Linker<StoreLimits> = Linker::new(&engine);
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|e| format!("cannot link the component: {e:#}"))?;
        let limits = StoreLimitsBuilder::new().memory_size(MEMORY_LIMIT).build();
        let mut store = Store::new(&engine, limits);
        store.limiter(|l| l);
        store
            .set_fuel(fuel)
            .map_err(|e| format!("cannot set fuel: {e:#}"))?;
        let instance = bindings::Engine::instantiate(&mut store, &component, &linker)
            .map_err(|e| format!("cannot instantiate the component: {e:#}"))?;
        Ok(Guest {
            store,
            engine: instance,
            fuel,
            cache,
        })
    }

    fn refuel(&mut self) -> Result<(), String> {
        self.store
            .set_fuel(self.fuel)
            .map_err(|e| format!("cannot set fuel: {e:#}"))
    }

    /// Fuel the last call used.
    pub fn fuel_used(&self) -> u64 {
        self.fuel.saturating_sub(self.store.get_fuel().unwrap_or(0))
    }

    /// Loads the policy into the instance.
    pub fn load(&mut self, policy: &PolicySource) -> Result<(), String> {
        self.refuel()?;
        let l = self.engine.palisade_policy_loader();
        let answer = match policy {
            PolicySource::Bundle(bytes) => l.call_load_bundle(&mut self.store, bytes),
            PolicySource::Yaml(files) => {
                let files: Vec<loader::SourceFile> = files
                    .iter()
                    .map(|f| loader::SourceFile {
                        name: f.name.clone(),
                        text: f.text.clone(),
                    })
                    .collect();
                l.call_load_sources(&mut self.store, &files)
            }
        };
        answer
            .map_err(|e| format!("the policy component failed while loading the policy: {e:#}"))?
            .map_err(|e| format!("invalid policy: {e}"))
    }

    /// Admits a container, with the host's facts when there are any.
    pub fn admit(
        &mut self,
        state_json: &str,
        config_json: &str,
        annotations: &[(String, String)],
        host: Option<&HostFacts>,
    ) -> Result<Admission, String> {
        self.refuel()?;
        let admission = self.engine.palisade_policy_admission();
        let d = match host {
            None => admission.call_admit(&mut self.store, state_json, config_json, annotations),
            Some(h) => {
                let facts = serde_json::to_string(h).map_err(|e| e.to_string())?;
                admission.call_admit_on_host(
                    &mut self.store,
                    state_json,
                    config_json,
                    annotations,
                    &facts,
                )
            }
        }
        .map_err(|e| format!("the policy component failed: {e:#}"))??;
        Ok(from_wit(d))
    }
}

fn from_wit(d: admission::ContainerDecision) -> Admission {
    Admission {
        allowed: d.allowed,
        violations: d
            .violations
            .into_iter()
            .map(|v| Violation {
                control: v.control,
                policy: v.policy,
                message: v.message,
            })
            .collect(),
        policies: d.policies,
        skipped: d.skipped,
        explanation: d.explanation,
    }
}

/// The same admission with the native engine (`--native`).
pub fn admit_native(
    policy: &PolicySource,
    state_json: &str,
    config_json: &str,
    annotations: &[(String, String)],
    host: Option<&HostFacts>,
) -> Result<Admission, String> {
    let engine = match policy {
        PolicySource::Bundle(bytes) => {
            decode_bundle(bytes).map_err(|e| format!("invalid policy: {e}"))?
        }
        PolicySource::Yaml(files) => {
            let set = load(files).map_err(|e| format!("invalid policy: {e}"))?;
            compile(&set, &Options::default()).map_err(|e| format!("invalid policy: {e}"))?
        }
    };
    let mut req = ContainerRequest::from_oci(state_json, config_json)?;
    req.annotations.extend(annotations.iter().cloned());
    req.host = host.cloned();
    let d = engine.decide_container(&req)?;
    let explanation = d.to_string();
    Ok(Admission {
        allowed: d.allowed,
        violations: d.violations,
        policies: d.policies,
        skipped: d.skipped,
        explanation,
    })
}

//! The proxy-wasm host: a module compiled once ([`ProxyWasmHost`]) and the plugins it starts
//! ([`Plugin::configure`]: one [`PluginInstance`] per plugin configuration).

use std::fmt;
use std::sync::Arc;

use wasmtime::{Config, Engine, InstancePre, Linker, Module, Store};

use crate::error::{ConfigRefused, HostError};
use crate::instance::PluginInstance;
use crate::settings::{Bound, EPOCH_TICK_MS, HostSettings};
use crate::state::HostState;

/// A proxy-wasm module compiled once; cheap to clone (the engine and module are shared).
#[derive(Clone)]
pub struct ProxyWasmHost {
    engine: Engine,
    module: Module,
    pre: InstancePre<HostState>,
    settings: Arc<HostSettings>,
}

impl fmt::Debug for ProxyWasmHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyWasmHost")
            .field("imports", &self.module.imports().len())
            .field("exports", &self.module.exports().len())
            .finish()
    }
}

impl ProxyWasmHost {
    /// Compiles a module with the default settings.
    pub fn new(wasm: &[u8]) -> Result<ProxyWasmHost, HostError> {
        ProxyWasmHost::with_settings(wasm, HostSettings::default())
    }

    /// Compiles a module with these settings.
    pub fn with_settings(wasm: &[u8], settings: HostSettings) -> Result<ProxyWasmHost, HostError> {
        let mut config = Config::new();
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // `perf` can name the guest's functions: wasmtime writes /tmp/perf-<pid>.map.
        if std::env::var_os("PALISADE_WASM_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        match settings.bound {
            Bound::Fuel => config.consume_fuel(true),
            Bound::Time { .. } => config.epoch_interruption(true),
        };
        let engine = Engine::new(&config).map_err(|e| HostError::Compile(e.to_string()))?;
        if matches!(settings.bound, Bound::Time { .. }) {
            start_epoch_ticker(&engine).map_err(|e| HostError::Link(e.to_string()))?;
        }
        let module =
            Module::from_binary(&engine, wasm).map_err(|e| HostError::Compile(format!("{e:#}")))?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        crate::imports::define(&mut linker).map_err(|e| HostError::Link(e.to_string()))?;
        // Envoy stubs the rest of WASI; here any other import links, and traps if called.
        linker
            .define_unknown_imports_as_traps(&module)
            .map_err(|e| HostError::Link(e.to_string()))?;
        let exports: Vec<&str> = module.exports().map(|e| e.name()).collect();
        if !exports.contains(&"memory") {
            return Err(HostError::Link("the module exports no `memory`".into()));
        }
        if !exports.contains(&"proxy_on_memory_allocate") && !exports.contains(&"malloc") {
            return Err(HostError::Link(
                "the module exports neither `proxy_on_memory_allocate` nor `malloc`".into(),
            ));
        }
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| HostError::Link(format!("{e:#}")))?;
        Ok(ProxyWasmHost {
            engine,
            module,
            pre,
            settings: Arc::new(settings),
        })
    }

    /// The module's imports, `module.name` each (what the guest asks of its host).
    pub fn imports(&self) -> Vec<String> {
        self.module
            .imports()
            .map(|i| format!("{}.{}", i.module(), i.name()))
            .collect()
    }

    /// A plugin of this module with the host's settings.
    pub fn plugin(&self) -> Plugin {
        Plugin {
            host: self.clone(),
            settings: (*self.settings).clone(),
        }
    }

    /// Starts a VM and configures it (`Plugin::configure` with the host's settings).
    pub fn configure(&self, configuration: &str) -> Result<PluginInstance, ConfigRefused> {
        self.plugin().configure(configuration)
    }
}

/// A plugin about to be configured: the module plus per-plugin settings.
#[derive(Debug, Clone)]
pub struct Plugin {
    host: ProxyWasmHost,
    /// The settings this plugin's VMs get (changeable before `configure`).
    pub settings: HostSettings,
}

impl Plugin {
    /// Starts a VM and runs the configuration sequence with this plugin configuration
    /// (Envoy's `PluginConfig.configuration`, a JSON text for Palisade).
    pub fn configure(&self, configuration: &str) -> Result<PluginInstance, ConfigRefused> {
        let settings = Arc::new(self.settings.clone());
        let state = HostState::new(settings, configuration.as_bytes().to_vec());
        let mut store = Store::new(&self.host.engine, state);
        store.limiter(|s| &mut s.limits);
        let instance = self
            .host
            .pre
            .instantiate(&mut store)
            .map_err(|e| ConfigRefused::Instantiate(format!("{e:#}")))?;
        PluginInstance::start(store, &instance, configuration.len())
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK_MS`] from a thread that ends once the engine
/// is dropped.
fn start_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("palisade-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(EPOCH_TICK_MS));
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        })
        .map(drop)
}

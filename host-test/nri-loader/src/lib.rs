//! A wasmtime stand-in for containerd NRI's WebAssembly plugin loader, so that the test suite
//! can drive Palisade's NRI plugin `.wasm` unchanged where no NRI-enabled containerd runs.
//!
//! It follows NRI v0.12.2's host side step by step — `pkg/adaptation/plugin.go`
//! (`newLaunchedPlugin`, `isWasm`, `configure`, `createContainer`), `pkg/adaptation/
//! wasm-enabled.go` (a wazero runtime with `wasi_snapshot_preview1`) and the generated
//! `pkg/api/api_host.pb.go` (`Load`, one function per method, `_Log`):
//!
//! 1. the file must start with `\0asm\1\0\0\0`, or NRI would launch it as an executable;
//! 2. instantiate with the host module `env` (`log(i32, i32) -> i64`) and WASI preview1, then
//!    run `_initialize` if the module exports it (`WithStartFunctions("_initialize")`);
//! 3. `plugin_api_version()` must return 1;
//! 4. every `plugin_<method>` export of `service Plugin`, `malloc` and `free` must exist
//!    (`"<name> is not exported"` otherwise);
//! 5. a call: encode the request; if it is not empty, `malloc(len)` and write it, else pass
//!    `(0, 0)`; call; split the `i64` reply into `ptr = reply >> 32`, `len = low 32 bits`; bit
//!    31 of `len` set means an error whose text is the bytes; read; `free(ptr)` if not 0, then
//!    `free` the request;
//! 6. `env.log`: read a `LogRequest`, reply with an `Empty` (empty, so `0`, nothing allocated).
//!
//! NRI's runtime-level rules on top ([`Creation`], [`NriPlugin::configure`]): a `Configure`
//! error refuses the plugin; an events mask with bits beyond the valid events is refused, 0
//! means all events; a `CreateContainer` error fails the container's creation.
//!
//! Where this stand-in is stricter than NRI, it says so: each guest call is bounded by fuel and
//! any trap, fuel exhaustion or out-of-range memory access fails the call — closed. (NRI bounds
//! each call by its 2 s request timeout; a timeout is a *fatal* error there, on which NRI closes
//! the plugin and lets the container be created. `isFatalError` in `pkg/adaptation/plugin.go`.)

use prost::Message;
use wasmtime::{
    Caller, Config, Engine, Extern, Func, Instance, Linker, Memory, Module, Store, Val,
};

pub use palisade_nri::proto;
use proto::{
    ConfigureRequest, ConfigureResponse, CreateContainerRequest, CreateContainerResponse, Empty,
    LogRequest, SynchronizeRequest, SynchronizeResponse,
};

pub mod events;

/// NRI's `PluginPluginAPIVersion`.
pub const API_VERSION: u64 = 1;

/// The `plugin_<method>` exports NRI v0.12's loader requires, in `api_host.pb.go`'s order.
pub const REQUIRED_EXPORTS: [&str; 18] = [
    "plugin_configure",
    "plugin_synchronize",
    "plugin_shutdown",
    "plugin_run_pod_sandbox",
    "plugin_update_pod_sandbox",
    "plugin_post_update_pod_sandbox",
    "plugin_stop_pod_sandbox",
    "plugin_remove_pod_sandbox",
    "plugin_create_container",
    "plugin_post_create_container",
    "plugin_start_container",
    "plugin_post_start_container",
    "plugin_update_container",
    "plugin_post_update_container",
    "plugin_stop_container",
    "plugin_remove_container",
    "plugin_state_change",
    "plugin_validate_container_adjustment",
];

/// NRI's valid events mask: `(1 << (Event_LAST - 1)) - 1`, `LAST = 15`.
pub const VALID_EVENTS: i32 = (1 << 14) - 1;

/// Fuel per guest call unless told otherwise.
pub const DEFAULT_FUEL: u64 = 5_000_000_000;

/// Why a module cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a wasm binary by NRI's 8-byte check.
    #[error("not a WASM plugin: the file does not start with `\\0asm\\1\\0\\0\\0`")]
    NotWasm,
    /// wasmtime refused the module or its instantiation.
    #[error("load WASM plugin: {0}")]
    Wasm(String),
    /// An import neither NRI nor this stand-in provides.
    #[error("load WASM plugin: unsupported import `{0}`")]
    Import(String),
    /// A required export is missing (NRI's wording).
    #[error("{0} is not exported")]
    Missing(String),
    /// The API version differs (NRI's wording).
    #[error("API version mismatch, host: {API_VERSION}, plugin: {0}")]
    Version(u64),
    /// `Configure` failed (NRI's wording); NRI then does not start the plugin.
    #[error("failed to configure plugin: {0}")]
    Configure(String),
    /// The plugin subscribed to events NRI does not know (NRI's wording).
    #[error("invalid plugin events: 0x{0:x}")]
    Events(i32),
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin answered with the error bit: its text.
    #[error("{0}")]
    Plugin(String),
    /// The guest trapped (including an exit through `proc_exit`).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The guest ran out of fuel (NRI: the request timeout).
    #[error("plugin ran out of fuel")]
    OutOfFuel,
    /// A pointer and length outside the guest's memory (NRI's `Memory.Read/Write` errors).
    #[error("{0}")]
    Memory(String),
    /// A reply that does not decode as the method's response.
    #[error("malformed reply: {0}")]
    Decode(String),
}

/// What the runtime would do with the container after `CreateContainer`.
#[derive(Debug, Clone, PartialEq)]
pub enum Creation {
    /// Created, with the plugin's adjustment.
    Created(CreateContainerResponse),
    /// Creation fails with this error.
    Failed(CallError),
}

/// One `env.log` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// `LogRequest.Level` as a number (0 unspecified … 4 error).
    pub level: i32,
    /// The message.
    pub msg: String,
}

/// Per-instance state.
#[derive(Debug, Default)]
struct HostState {
    logs: Vec<LogLine>,
    stdio: Vec<u8>,
    exit: Option<i32>,
}

/// A compiled plugin module, loadable many times.
#[derive(Debug)]
pub struct NriLoader {
    engine: Engine,
    module: Module,
    fuel: u64,
}

/// A loaded, configured plugin instance.
#[derive(Debug)]
pub struct NriPlugin {
    store: Store<HostState>,
    instance: Instance,
    memory: Memory,
    malloc: Func,
    free: Func,
    fuel: u64,
    events: i32,
}

impl NriLoader {
    /// Compiles a module after NRI's `isWasm` check.
    pub fn new(wasm: &[u8]) -> Result<Self, LoadError> {
        if wasm.get(..8) != Some(b"\0asm\x01\0\0\0".as_slice()) {
            return Err(LoadError::NotWasm);
        }
        let mut config = Config::new();
        config.consume_fuel(true);
        let engine = Engine::new(&config).map_err(|e| LoadError::Wasm(format!("{e:#}")))?;
        let module = Module::new(&engine, wasm).map_err(|e| LoadError::Wasm(format!("{e:#}")))?;
        Ok(NriLoader {
            engine,
            module,
            fuel: DEFAULT_FUEL,
        })
    }

    /// The fuel each guest call gets.
    pub fn with_fuel(mut self, fuel: u64) -> Self {
        self.fuel = fuel;
        self
    }

    /// Instantiates and checks the module as NRI's `Load` does (no `Configure` yet).
    pub fn instantiate(&self) -> Result<NriPlugin, LoadError> {
        let mut linker: Linker<HostState> = Linker::new(&self.engine);
        linker
            .func_wrap("env", "log", host_log)
            .map_err(|e| LoadError::Wasm(format!("{e:#}")))?;
        for import in self.module.imports() {
            match import.module() {
                "env" if import.name() == "log" => {}
                "wasi_snapshot_preview1" => wasi::define(&mut linker, import.name())?,
                m => return Err(LoadError::Import(format!("{m}.{}", import.name()))),
            }
        }
        let mut store = Store::new(&self.engine, HostState::default());
        store
            .set_fuel(self.fuel)
            .map_err(|e| LoadError::Wasm(format!("{e:#}")))?;
        let instance = linker
            .instantiate(&mut store, &self.module)
            .map_err(|e| LoadError::Wasm(format!("{e:#}")))?;
        if let Some(init) = instance.get_func(&mut store, "_initialize") {
            init.call(&mut store, &[], &mut [])
                .map_err(|e| LoadError::Wasm(format!("_initialize: {e:#}")))?;
        }
        let func = |store: &mut Store<HostState>, name: &str| {
            instance
                .get_func(&mut *store, name)
                .ok_or_else(|| LoadError::Missing(name.to_string()))
        };
        let version = func(&mut store, "plugin_api_version")?;
        store
            .set_fuel(self.fuel)
            .map_err(|e| LoadError::Wasm(format!("{e:#}")))?;
        let mut out = [Val::I64(0)];
        version
            .call(&mut store, &[], &mut out)
            .map_err(|e| LoadError::Wasm(format!("plugin_api_version: {e:#}")))?;
        let got = match out.first() {
            Some(Val::I64(v)) => *v as u64,
            Some(Val::I32(v)) => u64::from(*v as u32),
            _ => {
                return Err(LoadError::Wasm(
                    "invalid plugin_api_version signature".into(),
                ));
            }
        };
        if got != API_VERSION {
            return Err(LoadError::Version(got));
        }
        for name in REQUIRED_EXPORTS {
            func(&mut store, name)?;
        }
        let malloc = func(&mut store, "malloc")?;
        let free = func(&mut store, "free")?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| LoadError::Missing("memory".into()))?;
        Ok(NriPlugin {
            store,
            instance,
            memory,
            malloc,
            free,
            fuel: self.fuel,
            events: 0,
        })
    }

    /// Loads and configures: what NRI does for a pre-installed plugin before it is used.
    pub fn load(&self, config: &str) -> Result<NriPlugin, LoadError> {
        let mut plugin = self.instantiate()?;
        plugin.configure(&ConfigureRequest {
            config: config.to_string(),
            runtime_name: "containerd".into(),
            runtime_version: "v2.2.1".into(),
            registration_timeout: 5000,
            request_timeout: 2000,
            nri_version: "v0.12.2".into(),
        })?;
        Ok(plugin)
    }
}

/// `env.log`: `_Log` in `api_host.pb.go`. A read or decode failure panics there, which wazero
/// turns into a trap of the guest call; here it is a trap too.
fn host_log(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) -> wasmtime::Result<i64> {
    let Some(Extern::Memory(mem)) = caller.get_export("memory") else {
        return Err(wasmtime::Error::msg("env.log: no exported memory"));
    };
    let mut buf = vec![0u8; len as u32 as usize];
    mem.read(&caller, ptr as u32 as usize, &mut buf)
        .map_err(|_| wasmtime::Error::msg(format!("Memory.Read({ptr}, {len}) out of range")))?;
    let req = LogRequest::decode(buf.as_slice())
        .map_err(|e| wasmtime::Error::msg(format!("env.log: {e}")))?;
    caller.data_mut().logs.push(LogLine {
        level: req.level,
        msg: req.msg,
    });
    // The reply is an `Empty`, which encodes to no bytes: `WriteMemory` returns 0 without
    // calling `malloc`, and the reply is `0 << 32 | 0`.
    Ok(0)
}

impl NriPlugin {
    /// The events the plugin subscribed to (after NRI's rule: 0 means all).
    pub fn events(&self) -> i32 {
        self.events
    }

    /// Everything the plugin logged through `env.log`.
    pub fn logs(&self) -> &[LogLine] {
        &self.store.data().logs
    }

    /// The guest's linear memory size in bytes.
    pub fn memory_size(&self) -> usize {
        self.memory.data_size(&self.store)
    }

    /// What the guest wrote to stdout or stderr (NRI discards it).
    pub fn stdio(&self) -> &[u8] {
        &self.store.data().stdio
    }

    /// `Configure`, with NRI's checks on the reply (`plugin.configure`).
    pub fn configure(&mut self, req: &ConfigureRequest) -> Result<ConfigureResponse, LoadError> {
        let rsp: ConfigureResponse = self
            .call("plugin_configure", req)
            .map_err(|e| LoadError::Configure(e.to_string()))?;
        let extra = rsp.events & !VALID_EVENTS;
        if rsp.events != 0 && extra != 0 {
            return Err(LoadError::Events(extra));
        }
        self.events = if rsp.events == 0 {
            VALID_EVENTS
        } else {
            rsp.events
        };
        Ok(rsp)
    }

    /// `Synchronize`.
    pub fn synchronize(
        &mut self,
        req: &SynchronizeRequest,
    ) -> Result<SynchronizeResponse, CallError> {
        self.call("plugin_synchronize", req)
    }

    /// `Shutdown`.
    pub fn shutdown(&mut self) -> Result<Empty, CallError> {
        self.call("plugin_shutdown", &Empty {})
    }

    /// `CreateContainer` as the runtime sees it: NRI calls the plugin only when subscribed;
    /// an error fails the creation.
    pub fn create_container(&mut self, req: &CreateContainerRequest) -> Creation {
        if self.events & (1 << 3) == 0 {
            return Creation::Created(CreateContainerResponse::default());
        }
        match self.call("plugin_create_container", req) {
            Ok(rsp) => Creation::Created(rsp),
            Err(e) => Creation::Failed(e),
        }
    }

    /// One method call, as a generated `pluginPlugin` method does it.
    pub fn call<Req: Message, Rsp: Message + Default>(
        &mut self,
        export: &str,
        req: &Req,
    ) -> Result<Rsp, CallError> {
        let data = req.encode_to_vec();
        let bytes = self.call_raw(export, &data)?;
        Rsp::decode(bytes.as_slice()).map_err(|e| CallError::Decode(e.to_string()))
    }

    /// One call with raw request bytes; the reply bytes, or the plugin's error.
    pub fn call_raw(&mut self, export: &str, data: &[u8]) -> Result<Vec<u8>, CallError> {
        let func = self
            .instance
            .get_func(&mut self.store, export)
            .ok_or_else(|| CallError::Trap(format!("{export} is not exported")))?;
        self.refuel()?;
        let mut data_ptr: u64 = 0;
        if !data.is_empty() {
            data_ptr = self.guest_call(&self.malloc.clone(), &[Val::I32(data.len() as i32)])?;
            if self
                .memory
                .write(&mut self.store, data_ptr as u32 as usize, data)
                .is_err()
            {
                let size = self.memory.data_size(&self.store);
                return Err(CallError::Memory(format!(
                    "Memory.Write({data_ptr}, {}) out of range of memory size {size}",
                    data.len()
                )));
            }
        }
        let result = self.guest_call(
            &func,
            &[
                Val::I32(data_ptr as u32 as i32),
                Val::I32(data.len() as i32),
            ],
        );
        let out = result.and_then(|ptr_size| self.read_reply(ptr_size));
        // `defer p.free.Call(ctx, dataPtr)`: runs last, whatever happened.
        if data_ptr != 0 {
            let _ = self.guest_call(&self.free.clone(), &[Val::I32(data_ptr as u32 as i32)]);
        }
        out
    }

    fn read_reply(&mut self, ptr_size: u64) -> Result<Vec<u8>, CallError> {
        let res_ptr = (ptr_size >> 32) as u32;
        let mut res_size = ptr_size as u32;
        let is_error = res_size & (1 << 31) != 0;
        res_size &= !(1 << 31);
        let mut bytes = vec![0u8; res_size as usize];
        let read = self
            .memory
            .read(&self.store, res_ptr as usize, &mut bytes)
            .map_err(|_| {
                CallError::Memory(format!(
                    "Memory.Read({res_ptr}, {res_size}) out of range of memory size {}",
                    self.memory.data_size(&self.store)
                ))
            });
        // `defer p.free.Call(ctx, uint64(resPtr))` when `resPtr != 0`.
        if res_ptr != 0 {
            let _ = self.guest_call(&self.free.clone(), &[Val::I32(res_ptr as i32)]);
        }
        read?;
        if is_error {
            return Err(CallError::Plugin(
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
        Ok(bytes)
    }

    fn refuel(&mut self) -> Result<(), CallError> {
        self.store
            .set_fuel(self.fuel)
            .map_err(|e| CallError::Trap(format!("{e:#}")))
    }

    /// Calls a guest function and reads its single result as wazero does (a `uint64`).
    fn guest_call(&mut self, func: &Func, args: &[Val]) -> Result<u64, CallError> {
        let ty = func.ty(&self.store);
        let mut results: Vec<Val> = ty.results().map(|_| Val::I32(0)).collect();
        if let Err(e) = func.call(&mut self.store, args, &mut results) {
            if self.store.get_fuel().is_ok_and(|f| f == 0) {
                return Err(CallError::OutOfFuel);
            }
            if let Some(code) = self.store.data().exit {
                return Err(CallError::Trap(format!("exited with code {code}")));
            }
            return Err(CallError::Trap(format!("{e:#}")));
        }
        Ok(match results.first() {
            Some(Val::I64(v)) => *v as u64,
            Some(Val::I32(v)) => u64::from(*v as u32),
            _ => 0,
        })
    }
}

/// The WASI preview1 functions the plugin imports, as NRI's wazero configures them: no
/// arguments, no environment, stdout and stderr discarded (kept here for tests), `proc_exit`
/// ends the call. Any other WASI import is refused at load (wazero has them all; this stand-in
/// does not pretend to).
mod wasi {
    use wasmtime::{Caller, Extern, Linker};

    use super::{HostState, LoadError};

    const ERRNO_SUCCESS: i32 = 0;
    const ERRNO_FAULT: i32 = 21;
    const ERRNO_BADF: i32 = 8;

    fn memory(caller: &mut Caller<'_, HostState>) -> Option<wasmtime::Memory> {
        match caller.get_export("memory") {
            Some(Extern::Memory(m)) => Some(m),
            _ => None,
        }
    }

    fn write_u32(caller: &mut Caller<'_, HostState>, at: i32, v: u32) -> bool {
        memory(caller).is_some_and(|m| {
            m.write(&mut *caller, at as u32 as usize, &v.to_le_bytes())
                .is_ok()
        })
    }

    fn read_u32(caller: &mut Caller<'_, HostState>, at: u32) -> Option<u32> {
        let m = memory(caller)?;
        let mut b = [0u8; 4];
        m.read(&*caller, at as usize, &mut b).ok()?;
        Some(u32::from_le_bytes(b))
    }

    pub(super) fn define(linker: &mut Linker<HostState>, name: &str) -> Result<(), LoadError> {
        const M: &str = "wasi_snapshot_preview1";
        let r = match name {
            "environ_sizes_get" | "args_sizes_get" => linker
                .func_wrap(
                    M,
                    name,
                    |mut c: Caller<'_, HostState>, count: i32, size: i32| -> i32 {
                        if write_u32(&mut c, count, 0) && write_u32(&mut c, size, 0) {
                            ERRNO_SUCCESS
                        } else {
                            ERRNO_FAULT
                        }
                    },
                )
                .map(|_| ()),
            "environ_get" | "args_get" => linker
                .func_wrap(M, name, |_: Caller<'_, HostState>, _: i32, _: i32| -> i32 {
                    ERRNO_SUCCESS
                })
                .map(|_| ()),
            "fd_write" => linker
                .func_wrap(
                    M,
                    name,
                    |mut c: Caller<'_, HostState>,
                     fd: i32,
                     iovs: i32,
                     n: i32,
                     nwritten: i32|
                     -> i32 {
                        if fd != 1 && fd != 2 {
                            return ERRNO_BADF;
                        }
                        let mut total: u32 = 0;
                        for i in 0..n.max(0) as u32 {
                            let at = (iovs as u32).wrapping_add(i.wrapping_mul(8));
                            let (Some(ptr), Some(len)) =
                                (read_u32(&mut c, at), read_u32(&mut c, at.wrapping_add(4)))
                            else {
                                return ERRNO_FAULT;
                            };
                            let Some(m) = memory(&mut c) else {
                                return ERRNO_FAULT;
                            };
                            let mut buf = vec![0u8; len as usize];
                            if m.read(&c, ptr as usize, &mut buf).is_err() {
                                return ERRNO_FAULT;
                            }
                            c.data_mut().stdio.extend_from_slice(&buf);
                            total = total.wrapping_add(len);
                        }
                        if write_u32(&mut c, nwritten, total) {
                            ERRNO_SUCCESS
                        } else {
                            ERRNO_FAULT
                        }
                    },
                )
                .map(|_| ()),
            "proc_exit" => linker
                .func_wrap(
                    M,
                    name,
                    |mut c: Caller<'_, HostState>, code: i32| -> wasmtime::Result<()> {
                        c.data_mut().exit = Some(code);
                        Err(wasmtime::Error::msg(format!("proc_exit({code})")))
                    },
                )
                .map(|_| ()),
            "random_get" => linker
                .func_wrap(
                    M,
                    name,
                    |mut c: Caller<'_, HostState>, buf: i32, len: i32| -> i32 {
                        // Deterministic bytes: tests need repeatable runs, not secrets.
                        let bytes = vec![0x5au8; len.max(0) as usize];
                        match memory(&mut c) {
                            Some(m) if m.write(&mut c, buf as u32 as usize, &bytes).is_ok() => {
                                ERRNO_SUCCESS
                            }
                            _ => ERRNO_FAULT,
                        }
                    },
                )
                .map(|_| ()),
            other => return Err(LoadError::Import(format!("{M}.{other}"))),
        };
        r.map_err(|e| LoadError::Wasm(format!("{e:#}")))
    }
}

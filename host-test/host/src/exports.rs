//! The guest's exports the host calls, looked up and type-checked once per VM.

use wasmtime::{Store, TypedFunc, WasmParams, WasmResults};

/// A guest export, looked up by name and type-checked once per VM (not on every call).
#[derive(Clone)]
pub(crate) enum Export<P, R> {
    /// The guest does not export it: the call is skipped, as Envoy skips it.
    Missing,
    /// Exported with another signature: calling it fails ([`TrapKind::Signature`]).
    Mistyped(String),
    /// Ready to call.
    Func(TypedFunc<P, R>),
}

/// The export `name`, typed.
pub(crate) fn export<T, P: WasmParams, R: WasmResults>(
    instance: &wasmtime::Instance,
    store: &mut Store<T>,
    name: &str,
) -> Export<P, R> {
    match instance.get_func(&mut *store, name) {
        None => Export::Missing,
        Some(f) => match f.typed::<P, R>(&*store) {
            Ok(t) => Export::Func(t),
            Err(e) => Export::Mistyped(e.to_string()),
        },
    }
}

/// The callbacks the host calls, resolved when the VM starts.
pub(crate) struct Exports {
    pub(crate) initialize: Export<(), ()>,
    pub(crate) main: Export<(i32, i32), i32>,
    pub(crate) context_create: Export<(i32, i32), ()>,
    pub(crate) vm_start: Export<(i32, i32), i32>,
    pub(crate) configure: Export<(i32, i32), i32>,
    pub(crate) request_headers: Export<(i32, i32, i32), i32>,
    pub(crate) request_body: Export<(i32, i32, i32), i32>,
    pub(crate) http_call_response: Export<(i32, i32, i32, i32, i32), ()>,
    pub(crate) done: Export<i32, i32>,
    pub(crate) log: Export<i32, ()>,
    pub(crate) delete: Export<i32, ()>,
    pub(crate) new_connection: Export<i32, i32>,
    pub(crate) downstream_data: Export<(i32, i32, i32), i32>,
    pub(crate) connection_close: Export<(i32, i32), ()>,
    pub(crate) tick: Export<i32, ()>,
}

impl Exports {
    /// Every callback of an instance.
    pub(crate) fn of<T>(i: &wasmtime::Instance, s: &mut Store<T>) -> Exports {
        Exports {
            initialize: export(i, s, "_initialize"),
            main: export(i, s, "main"),
            context_create: export(i, s, "proxy_on_context_create"),
            vm_start: export(i, s, "proxy_on_vm_start"),
            configure: export(i, s, "proxy_on_configure"),
            request_headers: export(i, s, "proxy_on_request_headers"),
            request_body: export(i, s, "proxy_on_request_body"),
            http_call_response: export(i, s, "proxy_on_http_call_response"),
            done: export(i, s, "proxy_on_done"),
            log: export(i, s, "proxy_on_log"),
            delete: export(i, s, "proxy_on_delete"),
            new_connection: export(i, s, "proxy_on_new_connection"),
            downstream_data: export(i, s, "proxy_on_downstream_data"),
            connection_close: export(i, s, "proxy_on_downstream_connection_close"),
            tick: export(i, s, "proxy_on_tick"),
        }
    }
}

/// Picks one callback out of [`Exports`].
pub(crate) type Pick<P, R> = fn(&Exports) -> &Export<P, R>;

//! The host functions: one small function per import, each returning a `proxy_status_t`
//! (WASI ones a `wasi_errno_t`). A function fails the call (a trap) only when the guest's own
//! allocator trapped underneath it, or for `proc_exit`.

mod buffers;
mod callouts;
mod lifecycle;
mod maps;
mod memory;
mod metrics;
mod properties;
mod shared;
mod streams;
mod wasi;

use wasmtime::Linker;

use crate::state::HostState;

const ENV: &str = "env";
const WASI: &str = "wasi_snapshot_preview1";

/// Defines every import this host provides: each under its own name, in the module named.
pub(crate) fn define(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    macro_rules! define {
        ($module:expr, [$($m:ident::$f:ident),* $(,)?]) => {
            $(l.func_wrap($module, stringify!($f), $m::$f)?;)*
        };
    }
    define!(
        ENV,
        [
            lifecycle::proxy_log,
            lifecycle::proxy_get_log_level,
            lifecycle::proxy_get_current_time_nanoseconds,
            lifecycle::proxy_set_tick_period_milliseconds,
            buffers::proxy_get_buffer_bytes,
            buffers::proxy_set_buffer_bytes,
            buffers::proxy_get_buffer_status,
            maps::proxy_get_header_map_size,
            maps::proxy_get_header_map_pairs,
            maps::proxy_set_header_map_pairs,
            maps::proxy_get_header_map_value,
            maps::proxy_add_header_map_value,
            maps::proxy_replace_header_map_value,
            maps::proxy_remove_header_map_value,
            streams::proxy_continue_stream,
            streams::proxy_close_stream,
            streams::proxy_get_status,
            streams::proxy_send_local_response,
            callouts::proxy_http_call,
            callouts::proxy_grpc_call,
            callouts::proxy_grpc_stream,
            callouts::proxy_grpc_send,
            callouts::proxy_grpc_cancel,
            callouts::proxy_grpc_close,
            shared::proxy_set_shared_data,
            shared::proxy_get_shared_data,
            shared::proxy_register_shared_queue,
            shared::proxy_resolve_shared_queue,
            shared::proxy_enqueue_shared_queue,
            shared::proxy_dequeue_shared_queue,
            metrics::proxy_define_metric,
            metrics::proxy_increment_metric,
            metrics::proxy_record_metric,
            metrics::proxy_get_metric,
            properties::proxy_get_property,
            properties::proxy_set_property,
            lifecycle::proxy_set_effective_context,
            lifecycle::proxy_done,
            properties::proxy_call_foreign_function,
        ]
    );
    define!(
        WASI,
        [
            wasi::fd_write,
            wasi::fd_read,
            wasi::fd_close,
            wasi::fd_seek,
            wasi::fd_fdstat_get,
            wasi::environ_get,
            wasi::environ_sizes_get,
            wasi::args_get,
            wasi::args_sizes_get,
            wasi::clock_time_get,
            wasi::clock_res_get,
            wasi::random_get,
            wasi::sched_yield,
            wasi::proc_exit,
        ]
    );
    Ok(())
}

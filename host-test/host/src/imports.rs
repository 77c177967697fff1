//! The host functions: one small function per import, each returning a `proxy_status_t`
//! (WASI ones a `wasi_errno_t`). A function fails the call (a trap) only when the guest's own
//! allocator trapped underneath it, or for `proc_exit`.

use std::sync::Arc;

use wasmtime::{Caller, Linker, Memory};

use crate::abi::{self, LogLevel, MetricType, Status};
use crate::host::{Export, HostState, HttpCall, LocalReply, Metric, Pairs, Queue};

type C<'a> = Caller<'a, HostState>;
type R = wasmtime::Result<i32>;

const ENV: &str = "env";
const WASI: &str = "wasi_snapshot_preview1";

/// Defines every import this host provides: each under its own name, in the module named.
pub(crate) fn define(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    macro_rules! define {
        ($module:expr, [$($f:ident),* $(,)?]) => {
            $(l.func_wrap($module, stringify!($f), $f)?;)*
        };
    }
    define!(
        ENV,
        [
            proxy_log,
            proxy_get_log_level,
            proxy_get_current_time_nanoseconds,
            proxy_set_tick_period_milliseconds,
            proxy_get_buffer_bytes,
            proxy_set_buffer_bytes,
            proxy_get_buffer_status,
            proxy_get_header_map_size,
            proxy_get_header_map_pairs,
            proxy_set_header_map_pairs,
            proxy_get_header_map_value,
            proxy_add_header_map_value,
            proxy_replace_header_map_value,
            proxy_remove_header_map_value,
            proxy_continue_stream,
            proxy_close_stream,
            proxy_get_status,
            proxy_send_local_response,
            proxy_http_call,
            proxy_grpc_call,
            proxy_grpc_stream,
            proxy_grpc_send,
            proxy_grpc_cancel,
            proxy_grpc_close,
            proxy_set_shared_data,
            proxy_get_shared_data,
            proxy_register_shared_queue,
            proxy_resolve_shared_queue,
            proxy_enqueue_shared_queue,
            proxy_dequeue_shared_queue,
            proxy_define_metric,
            proxy_increment_metric,
            proxy_record_metric,
            proxy_get_metric,
            proxy_get_property,
            proxy_set_property,
            proxy_set_effective_context,
            proxy_done,
            proxy_call_foreign_function,
        ]
    );
    define!(
        WASI,
        [
            fd_write,
            fd_read,
            fd_close,
            fd_seek,
            fd_fdstat_get,
            environ_get,
            environ_sizes_get,
            args_get,
            args_sizes_get,
            clock_time_get,
            clock_res_get,
            random_get,
            sched_yield,
            proc_exit,
        ]
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Guest memory.

/// A guest pointer or length (an unsigned 32-bit number the guest passes as i32).
fn addr(v: i32) -> usize {
    usize::try_from(u32::from_ne_bytes(v.to_ne_bytes())).unwrap_or(usize::MAX)
}

fn memory(c: &mut C<'_>) -> Option<Memory> {
    c.data().memory
}

/// The guest's memory and the host state, borrowed together (to look a key up in place).
fn guest<'a>(c: &'a mut C<'_>) -> Option<(&'a mut [u8], &'a mut HostState)> {
    let mem = c.data().memory?;
    Some(mem.data_and_store_mut(c))
}

/// `len` bytes at `ptr` of guest memory; `None` outside it.
fn slice(data: &[u8], ptr: i32, len: i32) -> Option<&[u8]> {
    let start = addr(ptr);
    data.get(start..start.checked_add(addr(len))?)
}

/// The host's staging buffer, emptied (it keeps its capacity from call to call).
fn take_scratch(c: &mut C<'_>) -> Vec<u8> {
    let mut b = std::mem::take(&mut c.data_mut().scratch);
    b.clear();
    b
}

/// [`return_bytes`] of the staged bytes, then the buffer goes back for the next call.
fn return_staged(c: &mut C<'_>, staged: Vec<u8>, ptr_ptr: i32, len_ptr: i32) -> R {
    let r = return_bytes(c, &staged, ptr_ptr, len_ptr);
    c.data_mut().scratch = staged;
    r
}

/// Reads `len` bytes at `ptr`; `None` outside memory.
fn read(c: &mut C<'_>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let mem = memory(c)?;
    let start = addr(ptr);
    let end = start.checked_add(addr(len))?;
    mem.data(&*c).get(start..end).map(<[u8]>::to_vec)
}

fn write(c: &mut C<'_>, ptr: i32, bytes: &[u8]) -> Result<(), Status> {
    let mem = memory(c).ok_or(Status::InvalidMemoryAccess)?;
    mem.write(&mut *c, addr(ptr), bytes)
        .map_err(|_| Status::InvalidMemoryAccess)
}

fn write_u32(c: &mut C<'_>, ptr: i32, v: u32) -> Result<(), Status> {
    write(c, ptr, &v.to_le_bytes())
}

fn write_u64(c: &mut C<'_>, ptr: i32, v: u64) -> Result<(), Status> {
    write(c, ptr, &v.to_le_bytes())
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Allocates `size` bytes with the guest's allocator (`proxy_on_memory_allocate`, else
/// `malloc`); `Ok(None)` when it has none or returns 0; `Err` when it trapped.
fn allocate(c: &mut C<'_>, size: usize) -> wasmtime::Result<Option<i32>> {
    let Ok(size) = i32::try_from(size) else {
        return Ok(None);
    };
    // Taken out for the call and put back (cloning a typed function is not free); the
    // allocator does not call the host, so nothing needs it meanwhile.
    let typed = match std::mem::replace(&mut c.data_mut().allocator, Export::Missing) {
        Export::Func(f) => f,
        other => {
            let e = match &other {
                Export::Mistyped(e) => Some(wasmtime::Error::msg(e.clone())),
                _ => None,
            };
            c.data_mut().allocator = other;
            return e.map_or(Ok(None), Err);
        }
    };
    let r = typed.call(&mut *c, size);
    c.data_mut().allocator = Export::Func(typed);
    let ptr = r?;
    Ok((ptr != 0).then_some(ptr))
}

/// Copies bytes into guest memory it allocates, and writes the pointer and length to the
/// guest's return slots (a null pointer for no bytes, as Envoy does).
fn return_bytes(c: &mut C<'_>, bytes: &[u8], ptr_ptr: i32, len_ptr: i32) -> R {
    let ptr = if bytes.is_empty() {
        0
    } else {
        match allocate(c, bytes.len())? {
            Some(p) => p,
            None => return status(Status::InternalFailure),
        }
    };
    let r = write(c, ptr, bytes)
        .and_then(|()| write_u32(c, ptr_ptr, u32::from_ne_bytes(ptr.to_ne_bytes())))
        .and_then(|()| write_u32(c, len_ptr, len_u32(bytes.len())));
    done(r)
}

fn status(s: Status) -> R {
    Ok(s.code())
}

fn done(r: Result<(), Status>) -> R {
    status(r.err().unwrap_or(Status::Ok))
}

fn read_string(c: &mut C<'_>, ptr: i32, len: i32) -> Option<String> {
    read(c, ptr, len).map(|b| String::from_utf8_lossy(&b).into_owned())
}

// ---------------------------------------------------------------------------------------
// Logging, time, timers, lifecycle.

fn proxy_log(mut c: C<'_>, level: i32, ptr: i32, len: i32) -> R {
    let Some(level) = LogLevel::from_code(level) else {
        return status(Status::BadArgument);
    };
    if level < c.data().settings.log_level {
        // Below the host's level: dropped, as Envoy drops it.
        return status(Status::Ok);
    }
    let Some(message) = read_string(&mut c, ptr, len) else {
        return status(Status::InvalidMemoryAccess);
    };
    c.data_mut().log(level, message);
    status(Status::Ok)
}

fn proxy_get_log_level(mut c: C<'_>, ret: i32) -> R {
    let level = c.data().settings.log_level.code();
    done(write_u32(
        &mut c,
        ret,
        len_u32(usize::try_from(level).unwrap_or(0)),
    ))
}

fn proxy_get_current_time_nanoseconds(mut c: C<'_>, ret: i32) -> R {
    let now = c.data().settings.now_nanos;
    done(write_u64(&mut c, ret, now))
}

fn proxy_set_tick_period_milliseconds(mut c: C<'_>, period: i32) -> R {
    c.data_mut().tick_period_ms = u32::from_ne_bytes(period.to_ne_bytes());
    status(Status::Ok)
}

fn proxy_set_effective_context(mut c: C<'_>, context: i32) -> R {
    let id = u32::from_ne_bytes(context.to_ne_bytes());
    let state = c.data_mut();
    if id == 1 || id == state.stream.context {
        state.current_context = id;
        status(Status::Ok)
    } else {
        status(Status::BadArgument)
    }
}

fn proxy_done(mut c: C<'_>) -> R {
    let state = c.data_mut();
    state.done_called = state.done_called.saturating_add(1);
    status(Status::Ok)
}

// ---------------------------------------------------------------------------------------
// Buffers.

fn proxy_get_buffer_bytes(
    mut c: C<'_>,
    t: i32,
    start: i32,
    max: i32,
    ptr_ptr: i32,
    len_ptr: i32,
) -> R {
    let mut staged = take_scratch(&mut c);
    let Some(buffer) = c.data().buffer(t) else {
        return status(Status::BadArgument);
    };
    let start = addr(start);
    if start > buffer.len() && !buffer.is_empty() {
        return status(Status::BadArgument);
    }
    let end = start.saturating_add(addr(max)).min(buffer.len());
    staged.extend_from_slice(buffer.get(start..end).unwrap_or_default());
    return_staged(&mut c, staged, ptr_ptr, len_ptr)
}

fn proxy_set_buffer_bytes(mut c: C<'_>, t: i32, start: i32, size: i32, ptr: i32, len: i32) -> R {
    let Some(value) = read(&mut c, ptr, len) else {
        return status(Status::InvalidMemoryAccess);
    };
    let state = c.data_mut();
    if !matches!(
        t,
        abi::buffer::HTTP_REQUEST_BODY
            | abi::buffer::HTTP_RESPONSE_BODY
            | abi::buffer::DOWNSTREAM_DATA
            | abi::buffer::UPSTREAM_DATA
    ) {
        return status(Status::BadArgument);
    }
    let Some(buffer) = state.stream.buffer_mut(t) else {
        return status(Status::BadArgument);
    };
    let (start, size) = (addr(start), addr(size));
    if start == 0 && size == 0 {
        buffer.splice(0..0, value);
    } else if start >= buffer.len() {
        buffer.extend(value);
    } else {
        let end = start.saturating_add(size).min(buffer.len());
        buffer.splice(start..end, value);
    }
    status(Status::Ok)
}

fn proxy_get_buffer_status(mut c: C<'_>, t: i32, len_ptr: i32, flags_ptr: i32) -> R {
    let Some(len) = c.data().buffer(t).map(<[u8]>::len) else {
        return status(Status::BadArgument);
    };
    done(write_u32(&mut c, len_ptr, len_u32(len)).and_then(|()| write_u32(&mut c, flags_ptr, 0)))
}

// ---------------------------------------------------------------------------------------
// Header maps.

fn key_eq(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Changes a stream's header map (the callout maps are read-only).
fn with_map(c: &mut C<'_>, t: i32, f: impl FnOnce(&mut Pairs)) -> R {
    if !(0..=5).contains(&t) {
        return status(Status::BadArgument);
    }
    match c.data_mut().stream.map_mut(t) {
        Some(m) => {
            f(m);
            status(Status::Ok)
        }
        None => status(Status::BadArgument),
    }
}

fn proxy_get_header_map_size(mut c: C<'_>, t: i32, ret: i32) -> R {
    // Envoy answers the map's byte size.
    let size = c.data().with_map(t, |map| {
        map.iter()
            .map(|(k, v)| k.len().saturating_add(v.len()))
            .sum::<usize>()
    });
    let Some(size) = size else {
        return status(Status::BadArgument);
    };
    done(write_u32(&mut c, ret, len_u32(size)))
}

fn proxy_get_header_map_pairs(mut c: C<'_>, t: i32, ptr_ptr: i32, len_ptr: i32) -> R {
    let mut staged = take_scratch(&mut c);
    if c.data().serialize_map(t, &mut staged).is_none() {
        return status(Status::BadArgument);
    }
    return_staged(&mut c, staged, ptr_ptr, len_ptr)
}

fn proxy_set_header_map_pairs(mut c: C<'_>, t: i32, ptr: i32, len: i32) -> R {
    let Some(bytes) = read(&mut c, ptr, len) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some(pairs) = abi::deserialize_pairs(&bytes) else {
        return status(Status::BadArgument);
    };
    with_map(&mut c, t, |m| *m = pairs)
}

fn proxy_get_header_map_value(
    mut c: C<'_>,
    t: i32,
    kp: i32,
    kl: i32,
    ptr_ptr: i32,
    len_ptr: i32,
) -> R {
    let mut staged = take_scratch(&mut c);
    let Some((data, state)) = guest(&mut c) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some(key) = slice(data, kp, kl) else {
        return status(Status::InvalidMemoryAccess);
    };
    // Envoy returns the first value of a repeated header.
    let found = state.with_map(t, |map| {
        map.iter()
            .find(|(k, _)| key_eq(k, key))
            .map(|(_, v)| staged.extend_from_slice(v))
            .is_some()
    });
    match found {
        None => status(Status::BadArgument),
        Some(false) => {
            c.data_mut().scratch = staged;
            status(Status::NotFound)
        }
        Some(true) => return_staged(&mut c, staged, ptr_ptr, len_ptr),
    }
}

fn proxy_add_header_map_value(mut c: C<'_>, t: i32, kp: i32, kl: i32, vp: i32, vl: i32) -> R {
    let (Some(key), Some(value)) = (read(&mut c, kp, kl), read(&mut c, vp, vl)) else {
        return status(Status::InvalidMemoryAccess);
    };
    with_map(&mut c, t, |m| m.push((key.to_ascii_lowercase(), value)))
}

fn proxy_replace_header_map_value(mut c: C<'_>, t: i32, kp: i32, kl: i32, vp: i32, vl: i32) -> R {
    let (Some(key), Some(value)) = (read(&mut c, kp, kl), read(&mut c, vp, vl)) else {
        return status(Status::InvalidMemoryAccess);
    };
    with_map(&mut c, t, |m| {
        match m.iter().position(|(k, _)| key_eq(k, &key)) {
            Some(i) => {
                if let Some(slot) = m.get_mut(i) {
                    slot.1 = value;
                }
                let mut seen = 0usize;
                m.retain(|(k, _)| {
                    if key_eq(k, &key) {
                        seen = seen.saturating_add(1);
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => m.push((key.to_ascii_lowercase(), value)),
        }
    })
}

fn proxy_remove_header_map_value(mut c: C<'_>, t: i32, kp: i32, kl: i32) -> R {
    let Some(key) = read(&mut c, kp, kl) else {
        return status(Status::InvalidMemoryAccess);
    };
    with_map(&mut c, t, |m| m.retain(|(k, _)| !key_eq(k, &key)))
}

// ---------------------------------------------------------------------------------------
// Streams and local replies.

fn proxy_continue_stream(mut c: C<'_>, t: i32) -> R {
    if !(0..=3).contains(&t) {
        return status(Status::BadArgument);
    }
    c.data_mut().stream.continued.push(t);
    status(Status::Ok)
}

fn proxy_close_stream(mut c: C<'_>, t: i32) -> R {
    if !(0..=3).contains(&t) {
        return status(Status::BadArgument);
    }
    c.data_mut().stream.closed.push(t);
    status(Status::Ok)
}

fn proxy_get_status(mut c: C<'_>, code_ptr: i32, ptr_ptr: i32, len_ptr: i32) -> R {
    if let Err(s) = write_u32(&mut c, code_ptr, 0) {
        return status(s);
    }
    return_bytes(&mut c, b"", ptr_ptr, len_ptr)
}

#[allow(clippy::too_many_arguments, reason = "the ABI's signature")]
fn proxy_send_local_response(
    mut c: C<'_>,
    code: i32,
    dp: i32,
    dl: i32,
    bp: i32,
    bl: i32,
    hp: i32,
    hl: i32,
    grpc: i32,
) -> R {
    let (Some(details), Some(body), Some(headers)) = (
        read_string(&mut c, dp, dl),
        read(&mut c, bp, bl),
        read(&mut c, hp, hl),
    ) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some(headers) = abi::deserialize_pairs(&headers) else {
        return status(Status::BadArgument);
    };
    let state = c.data_mut();
    if state.stream.local_reply.is_none() {
        state.stream.local_reply = Some(LocalReply {
            status: u32::from_ne_bytes(code.to_ne_bytes()),
            details,
            body,
            headers: headers
                .into_iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(&k).into_owned(),
                        String::from_utf8_lossy(&v).into_owned(),
                    )
                })
                .collect(),
            grpc_status: grpc,
        });
    }
    status(Status::Ok)
}

// ---------------------------------------------------------------------------------------
// HTTP callouts (answered from fixtures after the callback returns) and gRPC (none).

#[allow(clippy::too_many_arguments, reason = "the ABI's signature")]
fn proxy_http_call(
    mut c: C<'_>,
    up: i32,
    ul: i32,
    hp: i32,
    hl: i32,
    bp: i32,
    bl: i32,
    tp: i32,
    tl: i32,
    timeout: i32,
    token_ptr: i32,
) -> R {
    let (Some(upstream), Some(headers), Some(body), Some(_trailers)) = (
        read_string(&mut c, up, ul),
        read(&mut c, hp, hl),
        read(&mut c, bp, bl),
        read(&mut c, tp, tl),
    ) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some(headers) = abi::deserialize_pairs(&headers) else {
        return status(Status::BadArgument);
    };
    let headers: Vec<(String, String)> = headers
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect();
    let has = |name: &str| headers.iter().any(|(k, _)| k == name);
    if !has(":method") || !has(":path") || !has(":authority") {
        return status(Status::BadArgument);
    }
    let known = c.data().stream.answers.contains_key(&upstream)
        || c.data().settings.http_fixtures.contains_key(&upstream);
    if !known {
        return status(Status::BadArgument);
    }
    let state = c.data_mut();
    let token = state.next_token;
    state.next_token = state.next_token.saturating_add(1);
    let context = state.current_context;
    state.stream.calls.push(HttpCall {
        upstream,
        headers,
        body,
        timeout_ms: u32::from_ne_bytes(timeout.to_ne_bytes()),
        token,
    });
    state.pending_calls.push_back((token, context));
    done(write_u32(&mut c, token_ptr, token))
}

#[allow(clippy::too_many_arguments, reason = "the ABI's signature")]
fn proxy_grpc_call(
    mut c: C<'_>,
    _up: i32,
    _ul: i32,
    _sp: i32,
    _sl: i32,
    _mp: i32,
    _ml: i32,
    _ip: i32,
    _il: i32,
    _gp: i32,
    _gl: i32,
    _timeout: i32,
    _token_ptr: i32,
) -> R {
    no_grpc(&mut c)
}

#[allow(clippy::too_many_arguments, reason = "the ABI's signature")]
fn proxy_grpc_stream(
    mut c: C<'_>,
    _up: i32,
    _ul: i32,
    _sp: i32,
    _sl: i32,
    _mp: i32,
    _ml: i32,
    _ip: i32,
    _il: i32,
    _token_ptr: i32,
) -> R {
    no_grpc(&mut c)
}

/// The test host has no gRPC upstreams: Envoy's answer for an unknown cluster.
fn no_grpc(c: &mut C<'_>) -> R {
    c.data_mut()
        .log(LogLevel::Warn, "test host: no gRPC upstreams".into());
    status(Status::BadArgument)
}

fn proxy_grpc_send(_c: C<'_>, _token: i32, _p: i32, _l: i32, _eos: i32) -> R {
    status(Status::NotFound)
}

fn proxy_grpc_cancel(_c: C<'_>, _token: i32) -> R {
    status(Status::NotFound)
}

fn proxy_grpc_close(_c: C<'_>, _token: i32) -> R {
    status(Status::NotFound)
}

// ---------------------------------------------------------------------------------------
// Shared data and queues.

fn proxy_set_shared_data(mut c: C<'_>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32) -> R {
    let (Some(key), Some(value)) = (read(&mut c, kp, kl), read(&mut c, vp, vl)) else {
        return status(Status::InvalidMemoryAccess);
    };
    let cas = u32::from_ne_bytes(cas.to_ne_bytes());
    let shared = &mut c.data_mut().shared;
    let current = shared.get(&key).map_or(0, |(_, cas)| *cas);
    if cas != 0 && cas != current {
        return status(Status::CasMismatch);
    }
    shared.insert(key, (value, current.wrapping_add(1).max(1)));
    status(Status::Ok)
}

fn proxy_get_shared_data(
    mut c: C<'_>,
    kp: i32,
    kl: i32,
    ptr_ptr: i32,
    len_ptr: i32,
    cas_ptr: i32,
) -> R {
    let Some(key) = read(&mut c, kp, kl) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some((value, cas)) = c.data().shared.get(&key).cloned() else {
        return status(Status::NotFound);
    };
    if let Err(s) = write_u32(&mut c, cas_ptr, cas) {
        return status(s);
    }
    return_bytes(&mut c, &value, ptr_ptr, len_ptr)
}

fn queue_id(index: usize) -> u32 {
    len_u32(index).saturating_add(1)
}

fn proxy_register_shared_queue(mut c: C<'_>, np: i32, nl: i32, ret: i32) -> R {
    let Some(name) = read_string(&mut c, np, nl) else {
        return status(Status::InvalidMemoryAccess);
    };
    let queues = &mut c.data_mut().queues;
    let index = match queues.iter().position(|q| q.name == name) {
        Some(i) => i,
        None => {
            queues.push(Queue {
                name,
                ..Queue::default()
            });
            queues.len().saturating_sub(1)
        }
    };
    done(write_u32(&mut c, ret, queue_id(index)))
}

fn proxy_resolve_shared_queue(mut c: C<'_>, _vp: i32, _vl: i32, np: i32, nl: i32, ret: i32) -> R {
    let Some(name) = read_string(&mut c, np, nl) else {
        return status(Status::InvalidMemoryAccess);
    };
    match c.data().queues.iter().position(|q| q.name == name) {
        Some(i) => done(write_u32(&mut c, ret, queue_id(i))),
        None => status(Status::NotFound),
    }
}

fn queue(c: &mut C<'_>, id: i32) -> Option<usize> {
    let index = addr(id).checked_sub(1)?;
    (index < c.data().queues.len()).then_some(index)
}

fn proxy_enqueue_shared_queue(mut c: C<'_>, id: i32, p: i32, l: i32) -> R {
    let Some(value) = read(&mut c, p, l) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some(i) = queue(&mut c, id) else {
        return status(Status::NotFound);
    };
    if let Some(q) = c.data_mut().queues.get_mut(i) {
        q.items.push_back(value);
    }
    status(Status::Ok)
}

fn proxy_dequeue_shared_queue(mut c: C<'_>, id: i32, ptr_ptr: i32, len_ptr: i32) -> R {
    let Some(i) = queue(&mut c, id) else {
        return status(Status::NotFound);
    };
    let item = c
        .data_mut()
        .queues
        .get_mut(i)
        .and_then(|q| q.items.pop_front());
    match item {
        Some(v) => return_bytes(&mut c, &v, ptr_ptr, len_ptr),
        None => status(Status::Empty),
    }
}

// ---------------------------------------------------------------------------------------
// Metrics.

fn metric<'a>(c: &'a mut C<'_>, id: i32) -> Option<&'a mut Metric> {
    let index = addr(id).checked_sub(1)?;
    c.data_mut().metrics.get_mut(index)
}

fn proxy_define_metric(mut c: C<'_>, t: i32, np: i32, nl: i32, ret: i32) -> R {
    let Some(kind) = MetricType::from_code(t) else {
        return status(Status::BadArgument);
    };
    let Some(name) = read_string(&mut c, np, nl) else {
        return status(Status::InvalidMemoryAccess);
    };
    let metrics = &mut c.data_mut().metrics;
    let index = match metrics.iter().position(|m| *m.name == *name) {
        Some(i) => i,
        None => {
            metrics.push(Metric {
                name: Arc::from(name),
                kind,
                value: 0,
            });
            metrics.len().saturating_sub(1)
        }
    };
    done(write_u32(&mut c, ret, len_u32(index).saturating_add(1)))
}

fn proxy_increment_metric(mut c: C<'_>, id: i32, offset: i64) -> R {
    let Some(m) = metric(&mut c, id) else {
        return status(Status::NotFound);
    };
    match m.kind {
        MetricType::Counter if offset < 0 => status(Status::BadArgument),
        MetricType::Counter | MetricType::Gauge => {
            m.value = m.value.saturating_add(offset);
            // `metric` found it: the id is a valid index.
            let index = addr(id).saturating_sub(1);
            c.data_mut().stream.increments.push((index, offset));
            status(Status::Ok)
        }
        MetricType::Histogram => status(Status::BadArgument),
    }
}

fn proxy_record_metric(mut c: C<'_>, id: i32, value: i64) -> R {
    let Some(m) = metric(&mut c, id) else {
        return status(Status::NotFound);
    };
    match m.kind {
        MetricType::Counter | MetricType::Gauge => m.value = value,
        MetricType::Histogram => m.value = m.value.saturating_add(1),
    }
    status(Status::Ok)
}

fn proxy_get_metric(mut c: C<'_>, id: i32, ret: i32) -> R {
    let Some(m) = metric(&mut c, id) else {
        return status(Status::NotFound);
    };
    if m.kind == MetricType::Histogram {
        return status(Status::BadArgument);
    }
    let v = u64::from_ne_bytes(m.value.to_ne_bytes());
    done(write_u64(&mut c, ret, v))
}

// ---------------------------------------------------------------------------------------
// Properties and foreign functions.

fn proxy_get_property(mut c: C<'_>, pp: i32, pl: i32, ptr_ptr: i32, len_ptr: i32) -> R {
    let mut staged = take_scratch(&mut c);
    let Some((data, state)) = guest(&mut c) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some(path) = slice(data, pp, pl) else {
        return status(Status::InvalidMemoryAccess);
    };
    match state.property(path) {
        Some(v) => {
            staged.extend_from_slice(v);
            return_staged(&mut c, staged, ptr_ptr, len_ptr)
        }
        None => {
            c.data_mut().scratch = staged;
            status(Status::NotFound)
        }
    }
}

fn proxy_set_property(mut c: C<'_>, pp: i32, pl: i32, vp: i32, vl: i32) -> R {
    let (Some(path), Some(value)) = (read(&mut c, pp, pl), read(&mut c, vp, vl)) else {
        return status(Status::InvalidMemoryAccess);
    };
    c.data_mut().stream.properties.set(&path, value);
    status(Status::Ok)
}

fn proxy_call_foreign_function(
    _c: C<'_>,
    _np: i32,
    _nl: i32,
    _ap: i32,
    _al: i32,
    _ptr_ptr: i32,
    _len_ptr: i32,
) -> R {
    status(Status::NotFound)
}

// ---------------------------------------------------------------------------------------
// WASI (wasi_snapshot_preview1): the handful a Rust reactor imports, deterministic.

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;

/// stdout and stderr become log lines (INFO and ERROR), one per line written.
fn fd_write(mut c: C<'_>, fd: i32, iovs: i32, count: i32, ret: i32) -> R {
    if fd != 1 && fd != 2 {
        return Ok(ERRNO_BADF);
    }
    let mut bytes = Vec::new();
    for i in 0..addr(count) {
        let at = i
            .checked_mul(8)
            .and_then(|o| addr(iovs).checked_add(o))
            .and_then(|a| i32::try_from(a).ok());
        let Some(iov) = at.and_then(|a| read(&mut c, a, 8)) else {
            return Ok(ERRNO_FAULT);
        };
        let word = |r: std::ops::Range<usize>| {
            iov.get(r)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(i32::from_le_bytes)
        };
        let (Some(p), Some(l)) = (word(0..4), word(4..8)) else {
            return Ok(ERRNO_FAULT);
        };
        let Some(chunk) = read(&mut c, p, l) else {
            return Ok(ERRNO_FAULT);
        };
        bytes.extend(chunk);
    }
    let written = len_u32(bytes.len());
    let state = c.data_mut();
    let (buf, level) = if fd == 1 {
        (&mut state.stdout, LogLevel::Info)
    } else {
        (&mut state.stderr, LogLevel::Error)
    };
    buf.extend(bytes);
    let mut lines = Vec::new();
    while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = buf.drain(..=nl).collect();
        lines.push(String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line)).into_owned());
    }
    for line in lines {
        state.log(level, line);
    }
    match write_u32(&mut c, ret, written) {
        Ok(()) => Ok(ERRNO_SUCCESS),
        Err(_) => Ok(ERRNO_FAULT),
    }
}

fn fd_read(_c: C<'_>, _fd: i32, _iovs: i32, _count: i32, _ret: i32) -> R {
    Ok(ERRNO_BADF)
}

fn fd_close(_c: C<'_>, _fd: i32) -> R {
    Ok(ERRNO_BADF)
}

fn fd_seek(_c: C<'_>, _fd: i32, _offset: i64, _whence: i32, _ret: i32) -> R {
    Ok(ERRNO_BADF)
}

fn fd_fdstat_get(_c: C<'_>, _fd: i32, _ret: i32) -> R {
    Ok(ERRNO_BADF)
}

fn wasi_zero_pair(c: &mut C<'_>, a: i32, b: i32) -> R {
    match write_u32(c, a, 0).and_then(|()| write_u32(c, b, 0)) {
        Ok(()) => Ok(ERRNO_SUCCESS),
        Err(_) => Ok(ERRNO_FAULT),
    }
}

/// No environment variables.
fn environ_get(_c: C<'_>, _environ: i32, _buf: i32) -> R {
    Ok(ERRNO_SUCCESS)
}

fn environ_sizes_get(mut c: C<'_>, count: i32, size: i32) -> R {
    wasi_zero_pair(&mut c, count, size)
}

/// No arguments (the spec requires 0/0).
fn args_get(_c: C<'_>, _argv: i32, _buf: i32) -> R {
    Ok(ERRNO_SUCCESS)
}

fn args_sizes_get(mut c: C<'_>, count: i32, size: i32) -> R {
    wasi_zero_pair(&mut c, count, size)
}

/// Every clock reads the frozen time.
fn clock_time_get(mut c: C<'_>, _id: i32, _precision: i64, ret: i32) -> R {
    let now = c.data().settings.now_nanos;
    match write_u64(&mut c, ret, now) {
        Ok(()) => Ok(ERRNO_SUCCESS),
        Err(_) => Ok(ERRNO_FAULT),
    }
}

fn clock_res_get(mut c: C<'_>, _id: i32, ret: i32) -> R {
    match write_u64(&mut c, ret, 1) {
        Ok(()) => Ok(ERRNO_SUCCESS),
        Err(_) => Ok(ERRNO_FAULT),
    }
}

/// Seeded pseudo-random bytes; at most 64 KiB a call, as in Envoy.
fn random_get(mut c: C<'_>, buf: i32, len: i32) -> R {
    let n = addr(len);
    if n > 64 * 1024 {
        return Ok(ERRNO_INVAL);
    }
    let mut bytes = Vec::with_capacity(n);
    while bytes.len() < n {
        bytes.extend(c.data_mut().next_random().to_le_bytes());
    }
    bytes.truncate(n);
    match write(&mut c, buf, &bytes) {
        Ok(()) => Ok(ERRNO_SUCCESS),
        Err(_) => Ok(ERRNO_FAULT),
    }
}

fn sched_yield(_c: C<'_>) -> R {
    Ok(ERRNO_SUCCESS)
}

/// The guest asked to exit: a trap (Envoy never expects a reactor to call it).
fn proc_exit(_c: C<'_>, code: i32) -> wasmtime::Result<()> {
    Err(wasmtime::Error::msg(format!("proc_exit({code})")))
}

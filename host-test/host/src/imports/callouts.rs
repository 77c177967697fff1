//! HTTP callouts (answered from fixtures after the callback returns) and gRPC (none).

use super::memory::{C, R, done, read, read_string, status, write_u32};
use crate::abi::{self, LogLevel, Status};
use crate::outcome::HttpCall;

#[allow(clippy::too_many_arguments, reason = "the ABI's signature")]
pub(super) fn proxy_http_call(
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
pub(super) fn proxy_grpc_call(
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
pub(super) fn proxy_grpc_stream(
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
pub(super) fn no_grpc(c: &mut C<'_>) -> R {
    c.data_mut()
        .log(LogLevel::Warn, "test host: no gRPC upstreams".into());
    status(Status::BadArgument)
}

pub(super) fn proxy_grpc_send(_c: C<'_>, _token: i32, _p: i32, _l: i32, _eos: i32) -> R {
    status(Status::NotFound)
}

pub(super) fn proxy_grpc_cancel(_c: C<'_>, _token: i32) -> R {
    status(Status::NotFound)
}

pub(super) fn proxy_grpc_close(_c: C<'_>, _token: i32) -> R {
    status(Status::NotFound)
}

//! CUSTOM checks through the proxy-wasm ABI: when the engine's decision is `custom-pending`,
//! call the provider it names (`proxy_http_call` or `proxy_grpc_call`), keep the request
//! paused, and on the answer decide again with it (the next provider, then DENY and ALLOW).

use std::time::{Duration, SystemTime};

use palisade_engine::extauthz::{Api, ExtensionProvider};
use palisade_engine::{Decision, Request};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

use super::abi::{self, status_name};
use super::read::connection_attributes;
use crate::attributes::{AttributeError, build_request, decode_pairs};
use crate::config::Plugin;
use crate::enforce::Total;
use crate::extauthz::{
    Answer, CheckAttributes, GRPC_METHOD, GRPC_SERVICE, HttpCheck, grpc_check_request,
    grpc_service, http_check_headers,
};
use palisade_engine::Needs;

/// A call in flight: the request it is for, the provider, the host's token, when it started.
#[derive(Debug)]
pub(super) struct Check {
    /// The request, to decide again with the answer.
    pub request: Request,
    /// The provider asked.
    pub provider: ExtensionProvider,
    /// The host's callout token.
    pub token: u32,
    /// When the call started (to tell a timeout).
    pub started: Option<SystemTime>,
}

impl Check {
    /// Whether the call ran for at least the provider's timeout.
    /// Within 10 ms: the host's clock and its timers disagree by a few milliseconds (a 300 ms
    /// timeout was seen to fire after 296 ms by the clock).
    pub fn timed_out(&self) -> bool {
        let limit = Duration::from_millis(self.provider.timeout_ms());
        self.elapsed()
            .is_some_and(|d| d + Duration::from_millis(10) >= limit)
    }

    /// How long the call has run.
    pub fn elapsed(&self) -> Option<Duration> {
        let now = hostcalls::get_current_time().ok()?;
        now.duration_since(self.started?).ok()
    }
}

/// `answer` with how long the call ran added to an error's reason (for the log).
pub(super) fn timed(check: &Check, answer: Answer) -> Answer {
    match answer {
        Answer::Error { timeout, reason } => Answer::Error {
            timeout,
            reason: match check.elapsed() {
                Some(d) => format!("{reason} after {} ms", d.as_millis()),
                None => reason,
            },
        },
        other => other,
    }
}

/// The provider a pending decision asks.
pub(super) fn provider_of<'p>(
    plugin: &'p Plugin,
    decision: &Decision,
) -> Result<&'p ExtensionProvider, String> {
    let name = decision
        .custom
        .last()
        .map(|c| c.provider.as_str())
        .ok_or("a pending decision names no provider")?;
    plugin
        .engine
        .options()
        .extension_providers
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| format!("provider `{name}` is not declared"))
}

/// Every request header as strings (values converted lossily), in the host's order.
fn all_request_headers() -> Result<Vec<(String, String)>, String> {
    let map = abi::get_header_map_pairs(MapType::HttpRequestHeaders as u32)
        .map_err(|s| format!("cannot read the request headers: {}", status_name(s)))?;
    let pairs = decode_pairs(&map).ok_or("the request headers do not decode")?;
    Ok(pairs
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).to_ascii_lowercase(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect())
}

/// The connection's peers for a gRPC check: addresses and the source principal.
fn peers(plugin: &Plugin) -> Result<CheckAttributes, AttributeError> {
    let full = build_request(connection_attributes(&Needs::ALL)?, plugin)?;
    let addr = |ip: Option<std::net::IpAddr>, port: Option<u16>| {
        ip.map(|ip| (ip.to_string(), u32::from(port.unwrap_or(0))))
    };
    Ok(CheckAttributes {
        source: addr(full.source.ip, full.source.port),
        source_principal: full.source.principal.unwrap_or_default(),
        destination: addr(full.destination.ip, full.destination.port),
        http: None,
    })
}

/// Starts the call for `request` to `provider`; `http` is whether this is the HTTP filter.
pub(super) fn start(
    plugin: &Plugin,
    provider: &ExtensionProvider,
    request: Request,
    http: bool,
) -> Result<Check, String> {
    let timeout = Duration::from_millis(provider.timeout_ms());
    let token = match provider.api() {
        Some(Api::Http(h)) if http => {
            let headers = http_check_headers(h, &all_request_headers()?);
            let refs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            hostcalls::dispatch_http_call(&provider.cluster(), refs, None, vec![], timeout)
                .map_err(|s| format!("the HTTP call to `{}` failed: {s:?}", provider.cluster()))?
        }
        Some(Api::Grpc(_)) => {
            let mut attrs = peers(plugin).map_err(|e| e.0)?;
            if http {
                let headers = all_request_headers()?;
                let get = |n: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let protocol = hostcalls::get_property(vec!["request", "protocol"])
                    .ok()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                attrs.http = Some(HttpCheck {
                    id: get("x-request-id"),
                    method: get(":method"),
                    path: get(":path"),
                    host: get(":authority"),
                    scheme: get(":scheme"),
                    protocol,
                    headers,
                });
            }
            let message = grpc_check_request(&attrs);
            // The service as a serialised GrpcService (cluster and Istio's authority); the
            // SDK takes a string, which the protobuf bytes are for names under 128 bytes.
            // Longer: the bare cluster name (Envoy then uses it as the authority).
            let service = grpc_service(provider);
            let cluster = provider.cluster();
            let upstream = std::str::from_utf8(&service).unwrap_or(&cluster);
            hostcalls::dispatch_grpc_call(
                upstream,
                GRPC_SERVICE,
                GRPC_METHOD,
                vec![],
                Some(&message),
                timeout,
            )
            .map_err(|s| format!("the gRPC call to `{cluster}` failed: {s:?}"))?
        }
        _ => {
            return Err(format!(
                "provider `{}` has no API this filter can call",
                provider.name
            ));
        }
    };
    Ok(Check {
        request,
        provider: provider.clone(),
        token,
        started: hostcalls::get_current_time().ok(),
    })
}

/// The HTTP call's answer, read from the host.
pub(super) fn http_answer(check: &Check, body_size: usize) -> Answer {
    let Some(Api::Http(h)) = check.provider.api() else {
        return Answer::Error {
            timeout: false,
            reason: "not an HTTP provider".into(),
        };
    };
    let headers: Vec<(String, String)> =
        match abi::get_header_map_pairs(MapType::HttpCallResponseHeaders as u32) {
            Ok(map) => decode_pairs(&map)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).to_ascii_lowercase(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect(),
            Err(_) => Vec::new(),
        };
    let status = headers
        .iter()
        .find(|(k, _)| k == ":status")
        .and_then(|(_, v)| v.parse::<u32>().ok());
    let body = if body_size > 0 {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let answer = crate::extauthz::http_answer(h, status, &headers, &body, check.timed_out());
    timed(check, answer)
}

/// The gRPC call's answer, read from the host; a failed call that ran for the whole timeout
/// counts as a timeout whatever its status (Envoy may report `UNAVAILABLE` for a provider
/// that never completed its handshake).
pub(super) fn grpc_answer(check: &Check, status: u32, size: usize) -> Answer {
    let answer = match grpc_answer_of(status, size) {
        Answer::Error { timeout, reason } => Answer::Error {
            timeout: timeout || check.timed_out(),
            reason,
        },
        other => other,
    };
    timed(check, answer)
}

fn grpc_answer_of(status: u32, size: usize) -> Answer {
    let body = if status == 0 {
        hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    crate::extauthz::grpc_answer(status, &body)
}

/// The counters of a call's end.
pub(super) fn answer_counters(answer: &Answer) -> Vec<Total> {
    match answer {
        Answer::Error { timeout: true, .. } => vec![Total::ExtAuthzErrors, Total::ExtAuthzTimeouts],
        Answer::Error { .. } => vec![Total::ExtAuthzErrors],
        _ => Vec::new(),
    }
}

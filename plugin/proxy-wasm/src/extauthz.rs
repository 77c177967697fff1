//! Asking a CUSTOM policy's provider, as Envoy's `ext_authz` filter does when Istio configures
//! it: the call to make (an HTTP call or a gRPC `Check`), and the provider's answer turned into
//! allow (with headers for the upstream request) or a reply to the client. Pure, so it builds
//! and is tested natively; `glue` makes the calls through the proxy-wasm ABI.
//!
//! HTTP (Envoy's `RawHttpClientImpl`): the check request has the original method, the path
//! with `pathPrefix` prepended, the original `:authority`, `content-length: 0`, the
//! `authorization` header and the headers `includeRequestHeadersInCheck` names. A 200 answer
//! allows and copies the answer's headers `headersToUpstreamOnAllow` names into the request; a
//! 5xx answer (the async client's own 503 for an unreachable provider and 504 for a timeout
//! included) is an error; any other status denies with that status, the answer's body, and its
//! headers `headersToDownstreamOnDeny` names (all but `host` when the list is empty).
//!
//! gRPC (`envoy.service.auth.v3.Authorization/Check`): the `CheckRequest` carries the peers'
//! addresses, the source principal (the peer certificate's URI SAN) and, for HTTP, the
//! request's id, method, path, host, scheme, protocol and every header (names lower-case).
//! Status `OK` allows (the `ok_response` headers are set on the request); any other status
//! denies with the `denied_response` status (403 when absent), headers and body; a failed call
//! is an error. An error allows when `failOpen` is set and otherwise replies `statusOnError`
//! with an empty body (`ext_authz_error`).
//!
//! The messages are a handful of `prost`-derived structs with the field numbers of Envoy's
//! protos, not the `envoy-types` crate: the plugin needs six messages, and linking the whole of
//! Envoy's API (and its `tonic` dependency) into a module Envoy compiles per worker would
//! multiply its size for nothing.

use std::collections::HashMap;

use palisade_engine::ExtAuthzAnswer;
use palisade_engine::extauthz::{ExtensionProvider, HttpProvider, any_pattern_matches};
use prost::Message;

/// The gRPC service and method Envoy's `ext_authz` calls.
pub const GRPC_SERVICE: &str = "envoy.service.auth.v3.Authorization";
/// The method.
pub const GRPC_METHOD: &str = "Check";

/// The response code details Envoy's `ext_authz` gives a denial.
pub const DETAILS_DENIED: &str = "ext_authz_denied";
/// The response code details of a failed check (without `failOpen`).
pub const DETAILS_ERROR: &str = "ext_authz_error";

/// The request headers Envoy's HTTP `ext_authz` always forwards (besides `content-length`,
/// which it sets to 0).
const ALWAYS_FORWARDED: [&str; 4] = [":method", ":path", ":authority", "authorization"];

/// An HTTP check request: the headers to send (pseudo-headers first, a repeated header once
/// with its values joined by `,`, as Envoy sends it) to the provider's cluster.
pub fn http_check_headers(p: &HttpProvider, request: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(request.len().min(8) + 1);
    for (name, value) in request {
        let name = name.to_ascii_lowercase();
        if name == "content-length" {
            continue;
        }
        let forwarded = ALWAYS_FORWARDED.contains(&name.as_str())
            || any_pattern_matches(&p.include_request_headers_in_check, &name);
        if !forwarded {
            continue;
        }
        let value = if name == ":path" && !p.path_prefix.is_empty() {
            format!("{}{value}", p.path_prefix)
        } else {
            value.clone()
        };
        // Envoy's CheckRequest holds a header once, its repeated values joined with `,`, and
        // the HTTP client copies that: the provider sees one header.
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push(',');
                v.push_str(&value);
            }
            None => out.push((name, value)),
        }
    }
    // Pseudo-headers lead (the host rejects a map where they follow regular headers).
    out.sort_by_key(|(n, _)| !n.starts_with(':'));
    out.push(("content-length".into(), "0".into()));
    out
}

/// What the provider answered, before `failOpen` and `statusOnError` apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Allowed: headers to set on the upstream request.
    Allow(Vec<(String, String)>),
    /// Denied: the reply to send.
    Deny(Reply),
    /// The call failed (unreachable, timed out, 5xx, unreadable answer).
    Error {
        /// Whether it failed by running out of time.
        timeout: bool,
        /// Why, for the log.
        reason: String,
    },
}

/// A reply to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status.
    pub status: u32,
    /// Headers to add.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Envoy's response code details.
    pub details: &'static str,
}

/// The provider's HTTP answer (`status` is `None` when the host gave no `:status`, which is
/// how a failed call arrives). `timed_out` tells a timeout from other failures.
pub fn http_answer(
    p: &HttpProvider,
    status: Option<u32>,
    headers: &[(String, String)],
    body: &[u8],
    timed_out: bool,
) -> Answer {
    let Some(status) = status else {
        return Answer::Error {
            timeout: timed_out,
            reason: "the provider's answer has no status".into(),
        };
    };
    if (500..=599).contains(&status) {
        return Answer::Error {
            timeout: timed_out || status == 504,
            reason: format!("the provider answered {status}"),
        };
    }
    let regular = |(n, _): &&(String, String)| !n.starts_with(':');
    if status == 200 {
        let set = headers
            .iter()
            .filter(regular)
            .filter(|(n, _)| any_pattern_matches(&p.headers_to_upstream_on_allow, n))
            .cloned()
            .collect();
        return Answer::Allow(set);
    }
    let downstream: Vec<(String, String)> = headers
        .iter()
        .filter(regular)
        .filter(|(n, _)| {
            if p.headers_to_downstream_on_deny.is_empty() {
                !n.eq_ignore_ascii_case("host")
            } else {
                any_pattern_matches(&p.headers_to_downstream_on_deny, n)
                    || ["content-length", "www-authenticate", "location"]
                        .iter()
                        .any(|k| n.eq_ignore_ascii_case(k))
            }
        })
        // The local reply sets its own length.
        .filter(|(n, _)| !n.eq_ignore_ascii_case("content-length"))
        .cloned()
        .collect();
    Answer::Deny(Reply {
        status,
        headers: downstream,
        body: body.to_vec(),
        details: DETAILS_DENIED,
    })
}

/// The provider's gRPC answer: `grpc_status` is the call's status (0 OK), `body` the
/// serialised `CheckResponse` when OK.
pub fn grpc_answer(grpc_status: u32, body: &[u8]) -> Answer {
    if grpc_status != 0 {
        return Answer::Error {
            // DEADLINE_EXCEEDED.
            timeout: grpc_status == 4,
            reason: format!("the Check call failed with gRPC status {grpc_status}"),
        };
    }
    let response = match pb::CheckResponse::decode(body) {
        Ok(r) => r,
        Err(e) => {
            return Answer::Error {
                timeout: false,
                reason: format!("the CheckResponse does not decode: {e}"),
            };
        }
    };
    let pairs = |options: &[pb::HeaderValueOption]| -> Vec<(String, String)> {
        options
            .iter()
            .filter_map(|o| o.header.as_ref())
            .map(|h| {
                let value = if h.value.is_empty() {
                    String::from_utf8_lossy(&h.raw_value).into_owned()
                } else {
                    h.value.clone()
                };
                (h.key.to_ascii_lowercase(), value)
            })
            .collect()
    };
    if response.status.as_ref().map_or(0, |s| s.code) == 0 {
        let headers = response
            .ok_response
            .as_ref()
            .map(|ok| pairs(&ok.headers))
            .unwrap_or_default();
        return Answer::Allow(headers);
    }
    let denied = response.denied_response.unwrap_or_default();
    let status = denied
        .status
        .as_ref()
        .map(|s| s.code)
        .filter(|c| *c > 0)
        .and_then(|c| u32::try_from(c).ok())
        .unwrap_or(403);
    Answer::Deny(Reply {
        status,
        headers: pairs(&denied.headers),
        body: denied.body.into_bytes(),
        details: DETAILS_DENIED,
    })
}

/// What the filter does with an answer: allow (with headers to set) or reply, and what the
/// engine is told the provider said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The answer as the engine takes it (an error is a deny unless `failOpen`).
    pub answer: ExtAuthzAnswer,
    /// Allow: headers to set on the upstream request.
    pub upstream_headers: Vec<(String, String)>,
    /// Deny: the reply.
    pub reply: Option<Reply>,
}

/// Applies `failOpen` and `statusOnError` to an answer.
pub fn resolve(provider: &ExtensionProvider, answer: Answer) -> Resolution {
    match answer {
        Answer::Allow(headers) => Resolution {
            answer: ExtAuthzAnswer::Allow,
            upstream_headers: headers,
            reply: None,
        },
        Answer::Deny(reply) => Resolution {
            answer: ExtAuthzAnswer::Deny,
            upstream_headers: Vec::new(),
            reply: Some(reply),
        },
        Answer::Error { .. } if provider.fail_open() => Resolution {
            answer: ExtAuthzAnswer::Allow,
            upstream_headers: Vec::new(),
            reply: None,
        },
        Answer::Error { .. } => Resolution {
            answer: ExtAuthzAnswer::Deny,
            upstream_headers: Vec::new(),
            reply: Some(Reply {
                status: u32::from(provider.status_on_error()),
                headers: Vec::new(),
                body: Vec::new(),
                details: DETAILS_ERROR,
            }),
        },
    }
}

/// What a gRPC `CheckRequest` says about the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckAttributes {
    /// The downstream peer's address and port.
    pub source: Option<(String, u32)>,
    /// The peer certificate's URI SAN (empty without mTLS).
    pub source_principal: String,
    /// The local address and port.
    pub destination: Option<(String, u32)>,
    /// HTTP only: the request (`None` on TCP).
    pub http: Option<HttpCheck>,
}

/// The HTTP part of a `CheckRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpCheck {
    /// `x-request-id`.
    pub id: String,
    /// `:method`.
    pub method: String,
    /// `:path`, query included.
    pub path: String,
    /// `:authority`.
    pub host: String,
    /// `:scheme`.
    pub scheme: String,
    /// `HTTP/1.1`, `HTTP/2`, …
    pub protocol: String,
    /// Every request header, lower-case, repeated values joined with `,` (as Envoy does).
    pub headers: Vec<(String, String)>,
}

/// The serialised `CheckRequest`.
pub fn grpc_check_request(a: &CheckAttributes) -> Vec<u8> {
    let peer = |addr: &Option<(String, u32)>, principal: &str| pb::Peer {
        address: addr.as_ref().map(|(ip, port)| pb::Address {
            socket_address: Some(pb::SocketAddress {
                address: ip.clone(),
                port_value: *port,
            }),
        }),
        principal: principal.to_string(),
    };
    let request = a.http.as_ref().map(|h| {
        let mut headers: HashMap<String, String> = HashMap::new();
        for (k, v) in &h.headers {
            headers
                .entry(k.to_ascii_lowercase())
                .and_modify(|e| {
                    e.push(',');
                    e.push_str(v);
                })
                .or_insert_with(|| v.clone());
        }
        pb::Request {
            http: Some(pb::HttpRequest {
                id: h.id.clone(),
                method: h.method.clone(),
                headers,
                path: h.path.clone(),
                host: h.host.clone(),
                scheme: h.scheme.clone(),
                protocol: h.protocol.clone(),
            }),
        }
    });
    pb::CheckRequest {
        attributes: Some(pb::AttributeContext {
            source: Some(peer(&a.source, &a.source_principal)),
            destination: Some(peer(&a.destination, "")),
            request,
        }),
    }
    .encode_to_vec()
}

/// The `envoy.config.core.v3.GrpcService` naming the provider's cluster, with the authority
/// Istio gives it (the cluster name with `|` replaced by `_.`: `|` is not valid in an
/// authority), serialised for `proxy_dispatch_grpc_call`.
pub fn grpc_service(provider: &ExtensionProvider) -> Vec<u8> {
    let cluster = provider.cluster();
    pb::GrpcService {
        envoy_grpc: Some(pb::EnvoyGrpc {
            authority: cluster.replace('|', "_."),
            cluster_name: cluster,
        }),
    }
    .encode_to_vec()
}

/// Minimal messages with the field numbers of Envoy's protos (`envoy/service/auth/v3`,
/// `envoy/config/core/v3`, `google/rpc/status.proto`); fields Palisade neither sends nor
/// reads are left out (protobuf skips unknown fields when decoding).
pub mod pb {
    use std::collections::HashMap;

    /// `envoy.service.auth.v3.CheckRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CheckRequest {
        /// `attributes`.
        #[prost(message, optional, tag = "1")]
        pub attributes: Option<AttributeContext>,
    }

    /// `envoy.service.auth.v3.AttributeContext`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeContext {
        /// `source`.
        #[prost(message, optional, tag = "1")]
        pub source: Option<Peer>,
        /// `destination`.
        #[prost(message, optional, tag = "2")]
        pub destination: Option<Peer>,
        /// `request`.
        #[prost(message, optional, tag = "4")]
        pub request: Option<Request>,
    }

    /// `AttributeContext.Peer`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Peer {
        /// `address`.
        #[prost(message, optional, tag = "1")]
        pub address: Option<Address>,
        /// `principal`.
        #[prost(string, tag = "4")]
        pub principal: String,
    }

    /// `envoy.config.core.v3.Address`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Address {
        /// `socket_address`.
        #[prost(message, optional, tag = "1")]
        pub socket_address: Option<SocketAddress>,
    }

    /// `envoy.config.core.v3.SocketAddress`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SocketAddress {
        /// `address`.
        #[prost(string, tag = "2")]
        pub address: String,
        /// `port_value`.
        #[prost(uint32, tag = "3")]
        pub port_value: u32,
    }

    /// `AttributeContext.Request`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        /// `http`.
        #[prost(message, optional, tag = "2")]
        pub http: Option<HttpRequest>,
    }

    /// `AttributeContext.HttpRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HttpRequest {
        /// `id`.
        #[prost(string, tag = "1")]
        pub id: String,
        /// `method`.
        #[prost(string, tag = "2")]
        pub method: String,
        /// `headers`.
        #[prost(map = "string, string", tag = "3")]
        pub headers: HashMap<String, String>,
        /// `path`.
        #[prost(string, tag = "4")]
        pub path: String,
        /// `host`.
        #[prost(string, tag = "5")]
        pub host: String,
        /// `scheme`.
        #[prost(string, tag = "6")]
        pub scheme: String,
        /// `protocol`.
        #[prost(string, tag = "10")]
        pub protocol: String,
    }

    /// `envoy.service.auth.v3.CheckResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CheckResponse {
        /// `status` (`google.rpc.Status`).
        #[prost(message, optional, tag = "1")]
        pub status: Option<RpcStatus>,
        /// `denied_response`.
        #[prost(message, optional, tag = "2")]
        pub denied_response: Option<DeniedHttpResponse>,
        /// `ok_response`.
        #[prost(message, optional, tag = "3")]
        pub ok_response: Option<OkHttpResponse>,
    }

    /// `google.rpc.Status`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RpcStatus {
        /// `code`.
        #[prost(int32, tag = "1")]
        pub code: i32,
        /// `message`.
        #[prost(string, tag = "2")]
        pub message: String,
    }

    /// `envoy.service.auth.v3.DeniedHttpResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DeniedHttpResponse {
        /// `status` (`envoy.type.v3.HttpStatus`).
        #[prost(message, optional, tag = "1")]
        pub status: Option<HttpStatus>,
        /// `headers`.
        #[prost(message, repeated, tag = "2")]
        pub headers: Vec<HeaderValueOption>,
        /// `body`.
        #[prost(string, tag = "3")]
        pub body: String,
    }

    /// `envoy.service.auth.v3.OkHttpResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OkHttpResponse {
        /// `headers`.
        #[prost(message, repeated, tag = "2")]
        pub headers: Vec<HeaderValueOption>,
    }

    /// `envoy.type.v3.HttpStatus`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HttpStatus {
        /// `code`.
        #[prost(int32, tag = "1")]
        pub code: i32,
    }

    /// `envoy.config.core.v3.HeaderValueOption`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderValueOption {
        /// `header`.
        #[prost(message, optional, tag = "1")]
        pub header: Option<HeaderValue>,
    }

    /// `envoy.config.core.v3.HeaderValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderValue {
        /// `key`.
        #[prost(string, tag = "1")]
        pub key: String,
        /// `value`.
        #[prost(string, tag = "2")]
        pub value: String,
        /// `raw_value`.
        #[prost(bytes = "vec", tag = "3")]
        pub raw_value: Vec<u8>,
    }

    /// `envoy.config.core.v3.GrpcService`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GrpcService {
        /// `envoy_grpc`.
        #[prost(message, optional, tag = "1")]
        pub envoy_grpc: Option<EnvoyGrpc>,
    }

    /// `GrpcService.EnvoyGrpc`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EnvoyGrpc {
        /// `cluster_name`.
        #[prost(string, tag = "1")]
        pub cluster_name: String,
        /// `authority`.
        #[prost(string, tag = "2")]
        pub authority: String,
    }
}

#[cfg(test)]
mod tests;

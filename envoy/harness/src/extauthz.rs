//! A stub external authorizer on loopback, following the logic of Istio's
//! `samples/extauthz` server, for the CUSTOM parity test; and an authorizer that never answers
//! (for timeouts).
//!
//! - HTTP (`ext_authz` HTTP API): allow (200, `x-ext-authz-check-result: allowed`) when the
//!   check request has `x-ext-authz: allow`; otherwise 403 with
//!   `x-ext-authz-check-result: denied` and the sample's body.
//! - gRPC (`envoy.service.auth.v3.Authorization/Check`): allow (status OK, an `ok_response`
//!   setting `x-ext-authz-check-result: allowed`) when the request's headers have
//!   `x-ext-authz: allow` or the source principal ends in `/sa/a`; otherwise
//!   `PERMISSION_DENIED` with a 403 `denied_response` (same header, same body).
//!
//! The gRPC side is a small HTTP/2 server written on `std` rather than `tonic`: the workspace has
//! no async runtime, the stub serves one unary method to one well-behaved client (Envoy), and it
//! never needs to decode a header block (the decision reads only the message), so frames,
//! SETTINGS/PING acknowledgements, window updates and a literal-only HPACK encoder are all it
//! takes. Bringing in tokio, hyper, h2 and tonic for that would more than double the harness's
//! build on the CI machine.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use prost::Message;

use crate::error::{Context, Result};

/// The header the sample checks.
pub const CHECK_HEADER: &str = "x-ext-authz";
/// The value that allows.
pub const ALLOWED_VALUE: &str = "allow";
/// The header the sample answers with.
pub const RESULT_HEADER: &str = "x-ext-authz-check-result";
/// The sample's denial body.
pub const DENY_BODY: &str =
    "denied by ext_authz for not found header `x-ext-authz: allow` in the request";

/// A running stub: its port and how many checks it answered.
#[derive(Debug, Clone)]
pub struct Stub {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Checks answered so far.
    pub checks: Arc<AtomicUsize>,
}

impl Stub {
    /// Checks answered so far.
    pub fn count(&self) -> usize {
        self.checks.load(Ordering::SeqCst)
    }
}

fn serve(name: &str, handle: fn(TcpStream, &AtomicUsize)) -> Result<Stub> {
    let listener = TcpListener::bind("127.0.0.1:0").context(|| format!("binding {name}"))?;
    let port = listener
        .local_addr()
        .context(|| format!("{name} address"))?
        .port();
    let checks = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&checks);
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let counter = Arc::clone(&counter);
            thread::spawn(move || handle(conn, &counter));
        }
    });
    Ok(Stub { port, checks })
}

/// Starts the HTTP stub.
pub fn start_http() -> Result<Stub> {
    serve("the HTTP authorizer", http_connection)
}

/// Starts the gRPC stub (HTTP/2 without TLS, prior knowledge).
pub fn start_grpc() -> Result<Stub> {
    serve("the gRPC authorizer", grpc_connection)
}

/// Starts a server that accepts connections and never answers (a provider that times out).
pub fn start_black_hole() -> Result<Stub> {
    serve("the silent authorizer", |mut conn, _| {
        let mut buf = [0u8; 4096];
        while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
    })
}

// ---- HTTP ---------------------------------------------------------------------------------

fn http_connection(mut conn: TcpStream, checks: &AtomicUsize) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // One request head (the check request has no body: `content-length: 0`).
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            match conn.read(&mut chunk) {
                Ok(n) if n > 0 => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                _ => return,
            }
        };
        let head = String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).into_owned();
        buf.drain(..end + 4);
        let allowed = head.lines().skip(1).any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case(CHECK_HEADER) && v.trim() == ALLOWED_VALUE
            })
        });
        checks.fetch_add(1, Ordering::SeqCst);
        let response = if allowed {
            format!("HTTP/1.1 200 OK\r\n{RESULT_HEADER}: allowed\r\ncontent-length: 0\r\n\r\n")
        } else {
            format!(
                "HTTP/1.1 403 Forbidden\r\n{RESULT_HEADER}: denied\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{DENY_BODY}",
                DENY_BODY.len()
            )
        };
        if conn.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

// ---- gRPC over a minimal HTTP/2 -----------------------------------------------------------

/// The fields of `envoy.service.auth.v3` messages the stub reads and writes.
mod pb {
    use std::collections::HashMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CheckRequest {
        #[prost(message, optional, tag = "1")]
        pub attributes: Option<AttributeContext>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeContext {
        #[prost(message, optional, tag = "1")]
        pub source: Option<Peer>,
        #[prost(message, optional, tag = "4")]
        pub request: Option<Request>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Peer {
        #[prost(string, tag = "4")]
        pub principal: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(message, optional, tag = "2")]
        pub http: Option<HttpRequest>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HttpRequest {
        #[prost(map = "string, string", tag = "3")]
        pub headers: HashMap<String, String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CheckResponse {
        #[prost(message, optional, tag = "1")]
        pub status: Option<RpcStatus>,
        #[prost(message, optional, tag = "2")]
        pub denied_response: Option<DeniedHttpResponse>,
        #[prost(message, optional, tag = "3")]
        pub ok_response: Option<OkHttpResponse>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RpcStatus {
        #[prost(int32, tag = "1")]
        pub code: i32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DeniedHttpResponse {
        #[prost(message, optional, tag = "1")]
        pub status: Option<HttpStatus>,
        #[prost(message, repeated, tag = "2")]
        pub headers: Vec<HeaderValueOption>,
        #[prost(string, tag = "3")]
        pub body: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OkHttpResponse {
        #[prost(message, repeated, tag = "2")]
        pub headers: Vec<HeaderValueOption>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HttpStatus {
        #[prost(int32, tag = "1")]
        pub code: i32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderValueOption {
        #[prost(message, optional, tag = "1")]
        pub header: Option<HeaderValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
}

/// The sample's gRPC decision on a serialised `CheckRequest`, as a serialised `CheckResponse`.
pub fn grpc_decide(request: &[u8]) -> Vec<u8> {
    let req = pb::CheckRequest::decode(request).unwrap_or_default();
    let attrs = req.attributes.unwrap_or_default();
    let header = attrs
        .request
        .and_then(|r| r.http)
        .and_then(|h| h.headers.get(CHECK_HEADER).cloned());
    let principal = attrs.source.map(|s| s.principal).unwrap_or_default();
    let allowed = header.as_deref() == Some(ALLOWED_VALUE) || principal.ends_with("/sa/a");
    let result = |v: &str| pb::HeaderValueOption {
        header: Some(pb::HeaderValue {
            key: RESULT_HEADER.into(),
            value: v.into(),
        }),
    };
    let response = if allowed {
        pb::CheckResponse {
            status: Some(pb::RpcStatus { code: 0 }),
            denied_response: None,
            ok_response: Some(pb::OkHttpResponse {
                headers: vec![result("allowed")],
            }),
        }
    } else {
        pb::CheckResponse {
            // PERMISSION_DENIED.
            status: Some(pb::RpcStatus { code: 7 }),
            denied_response: Some(pb::DeniedHttpResponse {
                status: Some(pb::HttpStatus { code: 403 }),
                headers: vec![result("denied")],
                body: DENY_BODY.into(),
            }),
            ok_response: None,
        }
    };
    response.encode_to_vec()
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(0);
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(len.to_be_bytes().get(1..).unwrap_or_default());
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK literal header field without indexing, new name, no Huffman coding.
fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    for s in [name, value] {
        // Lengths below 127 fit the 7-bit prefix, which is all the stub sends.
        out.push(u8::try_from(s.len()).unwrap_or(0x7f).min(0x7e));
        out.extend_from_slice(s.as_bytes());
    }
}

fn read_exact(conn: &mut TcpStream, n: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; n];
    conn.read_exact(&mut buf).ok()?;
    Some(buf)
}

fn grpc_connection(mut conn: TcpStream, checks: &AtomicUsize) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    if read_exact(&mut conn, PREFACE.len()).as_deref() != Some(PREFACE) {
        return;
    }
    if conn.write_all(&frame(SETTINGS, 0, 0, &[])).is_err() {
        return;
    }
    let mut bodies: HashMap<u32, Vec<u8>> = HashMap::new();
    loop {
        let Some(head) = read_exact(&mut conn, 9) else {
            return;
        };
        let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = head.as_slice() else {
            return;
        };
        let len = usize::from(*l0) << 16 | usize::from(*l1) << 8 | usize::from(*l2);
        let stream = u32::from_be_bytes([*s0, *s1, *s2, *s3]) & 0x7fff_ffff;
        let Some(payload) = read_exact(&mut conn, len) else {
            return;
        };
        let mut out = Vec::new();
        match *kind {
            SETTINGS if flags & ACK == 0 => out.extend(frame(SETTINGS, ACK, 0, &[])),
            PING if flags & ACK == 0 => out.extend(frame(PING, ACK, 0, &payload)),
            GOAWAY => return,
            HEADERS => {
                // The header block is not decoded: the decision reads only the message.
                bodies.entry(stream).or_default();
            }
            DATA => {
                let data = if flags & PADDED != 0 {
                    let pad = usize::from(payload.first().copied().unwrap_or(0));
                    payload
                        .get(1..payload.len().saturating_sub(pad))
                        .unwrap_or_default()
                        .to_vec()
                } else {
                    payload.clone()
                };
                if len > 0 {
                    let inc = u32::try_from(len).unwrap_or(0).to_be_bytes();
                    out.extend(frame(WINDOW_UPDATE, 0, 0, &inc));
                }
                bodies.entry(stream).or_default().extend_from_slice(&data);
                if flags & END_STREAM != 0 {
                    let body = bodies.remove(&stream).unwrap_or_default();
                    // A gRPC message: compressed flag, 4-byte length, the message.
                    let message = body.get(5..).unwrap_or_default();
                    checks.fetch_add(1, Ordering::SeqCst);
                    let answer = grpc_decide(message);
                    let mut headers = vec![0x88]; // `:status: 200`, HPACK static entry 8.
                    literal(&mut headers, "content-type", "application/grpc");
                    out.extend(frame(HEADERS, END_HEADERS, stream, &headers));
                    let mut data = vec![0u8];
                    data.extend_from_slice(&u32::try_from(answer.len()).unwrap_or(0).to_be_bytes());
                    data.extend_from_slice(&answer);
                    out.extend(frame(DATA, 0, stream, &data));
                    let mut trailers = Vec::new();
                    literal(&mut trailers, "grpc-status", "0");
                    out.extend(frame(HEADERS, END_HEADERS | END_STREAM, stream, &trailers));
                }
            }
            _ => {}
        }
        if !out.is_empty() && conn.write_all(&out).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn request(header: Option<&str>, principal: &str) -> Vec<u8> {
        let mut headers = HashMap::new();
        if let Some(h) = header {
            headers.insert(CHECK_HEADER.to_string(), h.to_string());
        }
        pb::CheckRequest {
            attributes: Some(pb::AttributeContext {
                source: Some(pb::Peer {
                    principal: principal.into(),
                }),
                request: Some(pb::Request {
                    http: Some(pb::HttpRequest { headers }),
                }),
            }),
        }
        .encode_to_vec()
    }

    #[test]
    fn the_grpc_stub_decides_as_istios_sample() {
        let code = |b: Vec<u8>| {
            pb::CheckResponse::decode(b.as_slice())
                .unwrap()
                .status
                .unwrap()
                .code
        };
        let cases = [
            ("the header allows", Some("allow"), "", 0),
            ("another value denies", Some("deny"), "", 7),
            ("no header, no principal denies", None, "", 7),
            (
                "principal ending in /sa/a allows",
                None,
                "spiffe://cluster.local/ns/x/sa/a",
                0,
            ),
            (
                "principal /sa/ab denies",
                None,
                "spiffe://cluster.local/ns/x/sa/ab",
                7,
            ),
        ];
        for (name, header, principal, want) in cases {
            assert_eq!(
                code(grpc_decide(&request(header, principal))),
                want,
                "{name}"
            );
        }
    }
}

//! What a VM showed: the log lines, local replies and callouts of a stream, and the outcome
//! of one HTTP request or TCP connection.

use std::sync::Arc;

use crate::abi::{Action, LogLevel};
use crate::trap::GuestTrap;

/// One `proxy_log` call (or a line the guest wrote to stdout/stderr through WASI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its level (stdout is INFO, stderr ERROR, as in Envoy).
    pub level: LogLevel,
    /// The text.
    pub message: String,
    /// The context that was current when it was logged.
    pub context_id: u32,
}

/// A `proxy_send_local_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// The HTTP status.
    pub status: u32,
    /// The response code details (`%RESPONSE_CODE_DETAILS%`).
    pub details: String,
    /// The body.
    pub body: Vec<u8>,
    /// The added response headers, in order.
    pub headers: Vec<(String, String)>,
    /// The gRPC status, -1 when not a gRPC reply.
    pub grpc_status: i32,
}

/// A `proxy_http_call` the guest made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    /// The upstream cluster.
    pub upstream: String,
    /// The request headers, pseudo-headers included.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The timeout.
    pub timeout_ms: u32,
    /// The token returned to the guest.
    pub token: u32,
}

/// What happened to one HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOutcome {
    /// The request went on to the upstream: the headers callback (and the body callback, if
    /// any) continued, and the guest neither replied locally nor closed the stream.
    pub allowed: bool,
    /// The local reply's status (`None` when the request went on); 503 when the VM failed.
    pub status: Option<u32>,
    /// The local reply's response code details.
    pub details: Option<String>,
    /// The local reply's headers.
    pub headers: Vec<(String, String)>,
    /// The local reply's body.
    pub body: Vec<u8>,
    /// Log lines emitted while the request was processed.
    pub logs: Vec<LogLine>,
    /// What `proxy_on_request_headers` returned.
    pub action: Option<Action>,
    /// The request headers as the guest left them (it may add or remove some).
    pub request_headers: Vec<(String, String)>,
    /// HTTP callouts made while processing the request.
    pub http_calls: Vec<HttpCall>,
    /// The trap, when the VM failed (the request is then refused: fail closed).
    pub trap: Option<GuestTrap>,
}

/// What happened to one TCP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpOutcome {
    /// The connection went on: the callbacks continued and nothing was closed.
    pub allowed: bool,
    /// The guest closed the downstream (or upstream) connection.
    pub closed: bool,
    /// Log lines emitted while the connection was processed.
    pub logs: Vec<LogLine>,
    /// The trap, when the VM failed (the connection is then closed: fail closed).
    pub trap: Option<GuestTrap>,
}

/// What one stream showed Envoy, without the copies an [`HttpOutcome`] makes (its log lines,
/// the request headers as the guest left them): what a replay of many requests reads back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    /// The request or connection went on (as [`HttpOutcome::allowed`], [`TcpOutcome::allowed`]).
    pub allowed: bool,
    /// HTTP: the local reply's status and response code details (503 `wasm_fail_stream` when
    /// the VM failed).
    pub reply: Option<(u32, String)>,
    /// HTTP: the local reply's `x-palisade-policy` header.
    pub policy_header: Option<String>,
    /// The metric increments the guest made during the stream, in order: name and offset.
    pub increments: Vec<(Arc<str>, i64)>,
    /// The trap, when the VM failed.
    pub trap: Option<GuestTrap>,
}

//! The HTTP listener: `GET /v1/bundles/{scope}` (ETag, `If-None-Match`, long polling with
//! `?wait=`), `GET /v1/status`, `GET /metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use palisade_engine::Scope;
use percent_encoding::percent_decode_str;
use tokio::net::TcpListener;

use crate::state::{Served, Shared, Snapshot};

/// The longest `?wait=` honoured: longer waits are cut to it.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// The header a client names itself with in `/v1/status`.
pub const CLIENT_HEADER: &str = "x-palisade-client";

type Reply = Response<Full<Bytes>>;

/// Accepts connections until the runtime shuts down.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, peer, req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn handle(shared: &Shared, peer: SocketAddr, req: Request<Incoming>) -> Reply {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/v1/status" => match serde_json::to_vec_pretty(&shared.status()) {
            Ok(body) => {
                let mut r = Response::new(Full::new(Bytes::from(body)));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                r
            }
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        },
        "/metrics" => {
            let mut r = text(StatusCode::OK, shared.metrics_text());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        _ => match path.strip_prefix("/v1/bundles/") {
            Some(scope) => bundle(shared, peer, &req, scope).await,
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        },
    }
}

/// `30s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_wait(text: &str) -> Option<Duration> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().ok()?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        _ => return None,
    };
    Some(d.min(MAX_WAIT))
}

/// The revisions an `If-None-Match` names (`"a", W/"b"`); `*` matches any.
fn etags(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|t| {
            let t = t.trim();
            let t = t.strip_prefix("W/").unwrap_or(t);
            t.trim_matches('"').to_string()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

fn current(snapshot: &Snapshot, scope: &str) -> Option<Arc<Served>> {
    snapshot.bundles.get(scope).cloned()
}

/// Counts a waiting request in the long-pollers gauge for as long as it waits.
struct Waiting<'a>(&'a Shared);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.metrics.long_pollers.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn bundle(shared: &Shared, peer: SocketAddr, req: &Request<Incoming>, raw: &str) -> Reply {
    let decoded = percent_decode_str(raw).decode_utf8_lossy().to_string();
    let scope: Scope = match decoded.parse() {
        Ok(s) => s,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let key = scope.to_string();
    if !shared.scopes.contains(&scope) {
        let served: Vec<String> = shared.scopes.iter().map(ToString::to_string).collect();
        return text(
            StatusCode::NOT_FOUND,
            format!("scope {key} is not served; served: {}\n", served.join(", ")),
        );
    }
    let mut wait = None;
    for pair in req.uri().query().unwrap_or("").split('&') {
        if let Some(v) = pair.strip_prefix("wait=") {
            match parse_wait(v) {
                Some(d) => wait = Some(d),
                None => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("`wait={v}`: write e.g. `wait=30s` or `wait=500ms`\n"),
                    );
                }
            }
        }
    }
    let held = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(etags)
        .unwrap_or_default();
    let client = req
        .headers()
        .get(CLIENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 253)
        .map_or_else(|| peer.ip().to_string(), str::to_string);
    let fresh = |s: &Option<Arc<Served>>| match s {
        Some(s) => !held.iter().any(|h| h == "*" || *h == s.revision),
        None => false,
    };
    let mut receiver = shared.current.subscribe();
    let mut served = current(&receiver.borrow_and_update(), &key);
    if !fresh(&served)
        && let Some(wait) = wait
    {
        shared.metrics.long_pollers.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(shared);
        let deadline = tokio::time::Instant::now() + wait;
        while !fresh(&served) {
            match tokio::time::timeout_at(deadline, receiver.changed()).await {
                Ok(Ok(())) => served = current(&receiver.borrow_and_update(), &key),
                // The deadline passed, or the server is shutting down.
                Ok(Err(_)) | Err(_) => break,
            }
        }
    }
    let Some(served) = served else {
        let mut r = text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no bundle for {key} yet: no compile has succeeded (see /v1/status)\n"),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let etag = HeaderValue::from_str(&format!("\"{}\"", served.revision))
        .unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    shared.saw(&client, &key, &served.revision);
    let mut r = if fresh(&Some(served.clone())) {
        shared
            .metrics
            .bundles_served
            .fetch_add(1, Ordering::Relaxed);
        let mut r = Response::new(Full::new(if req.method() == Method::HEAD {
            Bytes::new()
        } else {
            served.bytes.clone()
        }));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.palisade.bundle"),
        );
        r
    } else {
        shared.metrics.not_modified.fetch_add(1, Ordering::Relaxed);
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    };
    r.headers_mut().insert(header::ETAG, etag);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn waits_are_read_in_seconds_milliseconds_and_minutes_and_capped() {
        assert_eq!(parse_wait("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_wait("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_wait("1000m"), Some(MAX_WAIT));
        assert_eq!(parse_wait("30h"), None);
        assert_eq!(parse_wait("-1s"), None);
        assert_eq!(parse_wait(""), None);
    }

    #[test]
    fn if_none_match_lists_strong_and_weak_tags() {
        assert_eq!(etags(r#""a", W/"b",*"#), vec!["a", "b", "*"]);
        assert_eq!(etags(""), Vec::<String>::new());
    }
}

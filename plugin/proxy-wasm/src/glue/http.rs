//! The HTTP context: one per request.

use std::rc::Rc;

use palisade_engine::Needs;
use palisade_engine::{Decision, Request, Verdict};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, StreamType};

use super::read::http_attributes;
use super::{Shared, abi, apply_answer, custom, for_log, host_logs, log, record, source_text};
use crate::attributes::build;
use crate::config::{Mode, Plugin, error_decision};
use crate::enforce::{Counter, Level, POLICY_HEADER, Total, outcome_with, serialize_pairs};
use crate::extauthz::{Answer, Reply};

/// The log line's description of an HTTP request.
fn describe_http(plugin: &Plugin, r: &Request) -> String {
    let shown = Needs {
        headers: true,
        ..Needs::default()
    };
    let r = for_log(r, plugin, shown);
    let h = r.http.clone().unwrap_or_default();
    format!("{} {}{} from {}", h.method, h.host, h.path, source_text(&r))
}

/// One per HTTP request.
pub(super) struct Http {
    plugin: Option<Rc<Plugin>>,
    shared: Rc<Shared>,
    /// The CUSTOM call in flight, if any.
    check: Option<custom::Check>,
}

impl Http {
    pub(super) fn new(plugin: Option<Rc<Plugin>>, shared: Rc<Shared>) -> Http {
        Http {
            plugin,
            shared,
            check: None,
        }
    }

    /// Acts on a decision: a pending CUSTOM check (enforce mode) starts the provider's call and
    /// pauses; otherwise count, log, and continue or reply (the provider's `reply` when it
    /// denied, else the RBAC-style denial).
    fn settle(
        &mut self,
        plugin: &Plugin,
        request: Request,
        decision: Decision,
        reply: Option<Reply>,
    ) -> Action {
        if decision.verdict == Verdict::CustomPending && plugin.mode == Mode::Enforce {
            self.shared
                .metrics
                .increment(&Counter::Total(Total::ExtAuthzCalls));
            let provider = match custom::provider_of(plugin, &decision) {
                Ok(p) => p,
                Err(e) => return self.settle(plugin, request, error_decision(e), None),
            };
            match custom::start(plugin, provider, request.clone(), true) {
                Ok(check) => {
                    self.check = Some(check);
                    return Action::Pause;
                }
                Err(reason) => {
                    let mut request = request;
                    let answer = Answer::Error {
                        timeout: false,
                        reason,
                    };
                    let (decision, reply) =
                        apply_answer(&self.shared, plugin, &mut request, provider, answer);
                    return self.settle(plugin, request, decision, reply);
                }
            }
        }
        let o = outcome_with(
            &decision,
            plugin,
            || describe_http(plugin, &request),
            host_logs,
        );
        record(&self.shared, &o);
        if !o.block {
            return Action::Continue;
        }
        let sent = match &reply {
            Some(r) => {
                let mut pairs: Vec<(&str, &str)> = r
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                pairs.push((POLICY_HEADER, o.policy));
                abi::send_local_response(r.status, r.details, &r.body, &serialize_pairs(&pairs))
            }
            None => {
                let headers = serialize_pairs(&[(POLICY_HEADER, o.policy)]);
                abi::send_local_response(o.status, &o.details, o.body.as_bytes(), &headers)
            }
        };
        if sent != 0 {
            log(
                Level::Warn,
                &format!("palisade: local reply failed (status {sent}); resetting the stream"),
            );
            let _ = hostcalls::reset_http_request();
        }
        Action::Pause
    }

    /// A provider's answer arrived: decide again, then resume, ask the next provider, or reply.
    fn answered(&mut self, token: u32, answer: impl FnOnce(&custom::Check) -> Answer) {
        let Some(plugin) = self.plugin.clone() else {
            return;
        };
        let Some(check) = self.check.take_if(|c| c.token == token) else {
            return;
        };
        let answer = answer(&check);
        let custom::Check {
            mut request,
            provider,
            ..
        } = check;
        let (decision, reply) =
            apply_answer(&self.shared, &plugin, &mut request, &provider, answer);
        if self.settle(&plugin, request, decision, reply) == Action::Continue {
            let status = abi::continue_stream(StreamType::HttpRequest as u32);
            if status != 0 {
                log(
                    Level::Warn,
                    &format!("palisade: cannot resume the request (status {status}); resetting it"),
                );
                let _ = hostcalls::reset_http_request();
            }
        }
    }
}

impl Context for Http {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body: usize, _: usize) {
        self.answered(token, |c| custom::http_answer(c, body));
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        self.answered(token, |c| custom::grpc_answer(c, status, size));
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(plugin) = self.plugin.clone() else {
            // No configuration: Envoy does not create contexts for a refused one; deny anyway.
            let _ = abi::send_local_response(403, "palisade_not_configured", b"", &[]);
            return Action::Pause;
        };
        let raw = http_attributes(&plugin, &plugin.needs);
        // `build` keeps a request whose direct peer Envoy does not show (a sidecar behind a
        // gateway): `Built::decide` then decides without it, or fails closed.
        match raw.and_then(|r| build(r, &plugin)) {
            Ok(built) => {
                let decision = built.decide(&plugin);
                self.settle(&plugin, built.request, decision, None)
            }
            Err(e) => {
                let decision = error_decision(e.0);
                let o = outcome_with(&decision, &plugin, || "request".to_string(), host_logs);
                record(&self.shared, &o);
                let headers = serialize_pairs(&[(POLICY_HEADER, o.policy)]);
                let _ = abi::send_local_response(o.status, &o.details, o.body.as_bytes(), &headers);
                Action::Pause
            }
        }
    }
}

//! The TCP context: one per connection of a network filter that decides.

use std::rc::Rc;

use palisade_engine::Needs;
use palisade_engine::{Decision, Request, Verdict};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, StreamContext};
use proxy_wasm::types::{Action, StreamType};

use super::read::connection_attributes;
use super::recorder;
use super::{Shared, abi, apply_answer, custom, for_log, host_logs, record, source_text};
use crate::attributes::build_request;
use crate::config::{Mode, Plugin, error_decision};
use crate::enforce::{Counter, Total, outcome_with};
use crate::extauthz::Answer;

/// The log line's description of a TCP connection.
fn describe_tcp(plugin: &Plugin, r: &Request) -> String {
    let shown = Needs {
        destination_port: true,
        ..Needs::default()
    };
    let r = for_log(r, plugin, shown);
    let port = r
        .destination
        .port
        .map_or_else(String::new, |p| p.to_string());
    format!("connection to port {port} from {}", source_text(&r))
}

/// One per TCP connection: decides once, on the first data in either direction (the peer
/// certificate is only known after the TLS handshake, which precedes any data). A CUSTOM
/// check keeps the connection paused until the provider answers.
pub(super) struct Tcp {
    plugin: Option<Rc<Plugin>>,
    shared: Rc<Shared>,
    decided: Option<bool>,
    /// The CUSTOM call in flight, if any.
    check: Option<custom::Check>,
    /// A `peerRecorder`'s connection: records the peer, decides nothing.
    recorder: bool,
}

impl Tcp {
    pub(super) fn new(plugin: Option<Rc<Plugin>>, shared: Rc<Shared>) -> Tcp {
        Tcp {
            plugin,
            shared,
            decided: None,
            check: None,
            recorder: false,
        }
    }

    /// A `peerRecorder`'s connection: never decided, always let through.
    pub(super) fn recorder(shared: Rc<Shared>) -> Tcp {
        Tcp {
            plugin: None,
            shared,
            decided: Some(true),
            check: None,
            recorder: true,
        }
    }

    /// Whether the connection may proceed (deciding it the first time); `None` while a CUSTOM
    /// provider is being asked.
    fn allowed(&mut self) -> Option<bool> {
        if let Some(allowed) = self.decided {
            return Some(allowed);
        }
        if self.check.is_some() {
            return None;
        }
        let Some(plugin) = self.plugin.clone() else {
            return Some(self.finish(false, false));
        };
        let raw = connection_attributes(&plugin.needs);
        let (request, decision) = match raw.and_then(|r| build_request(r, &plugin)) {
            Ok(request) => {
                let decision = plugin.decide(&request);
                (Some(request), decision)
            }
            Err(e) => (None, error_decision(e.0)),
        };
        self.settle(&plugin, request, decision)
    }

    /// Acts on a decision (see [`Http::settle`]); `None` while a provider is asked.
    fn settle(
        &mut self,
        plugin: &Plugin,
        request: Option<Request>,
        decision: Decision,
    ) -> Option<bool> {
        if let (Verdict::CustomPending, Mode::Enforce, Some(request)) =
            (decision.verdict, plugin.mode, &request)
        {
            self.shared
                .metrics
                .increment(&Counter::Total(Total::ExtAuthzCalls));
            let provider = match custom::provider_of(plugin, &decision) {
                Ok(p) => p,
                Err(e) => return self.settle(plugin, None, error_decision(e)),
            };
            match custom::start(plugin, provider, request.clone(), false) {
                Ok(check) => {
                    self.check = Some(check);
                    return None;
                }
                Err(reason) => {
                    let mut request = request.clone();
                    let answer = Answer::Error {
                        timeout: false,
                        reason,
                    };
                    let (decision, _) =
                        apply_answer(&self.shared, plugin, &mut request, provider, answer);
                    return self.settle(plugin, Some(request), decision);
                }
            }
        }
        let what = |r: &Request| describe_tcp(plugin, r);
        let o = match &request {
            Some(r) => outcome_with(&decision, plugin, || what(r), host_logs),
            None => outcome_with(&decision, plugin, || "connection".to_string(), host_logs),
        };
        record(&self.shared, &o);
        Some(self.finish(!o.block, false))
    }

    /// Records the verdict; closes a refused connection, and resumes an allowed one that was
    /// paused for a provider.
    fn finish(&mut self, allowed: bool, resume: bool) -> bool {
        self.decided = Some(allowed);
        if !allowed {
            let _ = hostcalls::close_downstream();
            let _ = hostcalls::close_upstream();
        } else if resume {
            // Only the downstream direction: Envoy cannot resume a network filter's upstream
            // direction (`Unimplemented`), see docs/custom-authorization.md.
            if abi::continue_stream(StreamType::Downstream as u32) != 0 {
                self.decided = Some(false);
                let _ = hostcalls::close_downstream();
                let _ = hostcalls::close_upstream();
                return false;
            }
        }
        allowed
    }
}

impl Context for Tcp {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        let Some(plugin) = self.plugin.clone() else {
            return;
        };
        let Some(check) = self.check.take_if(|c| c.token == token) else {
            return;
        };
        let answer = custom::grpc_answer(&check, status, size);
        let custom::Check {
            mut request,
            provider,
            ..
        } = check;
        let (decision, _) = apply_answer(&self.shared, &plugin, &mut request, &provider, answer);
        if let Some(allowed) = self.settle(&plugin, Some(request), decision) {
            // `settle` closed a refused connection; an allowed one was paused.
            if allowed {
                self.finish(true, true);
            }
        }
    }
}

impl StreamContext for Tcp {
    fn on_new_connection(&mut self) -> Action {
        if self.recorder {
            recorder::record_peer();
        }
        Action::Continue
    }

    fn on_downstream_data(&mut self, _size: usize, _end_of_stream: bool) -> Action {
        if self.allowed() == Some(true) {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_upstream_data(&mut self, _size: usize, _end_of_stream: bool) -> Action {
        // A server-first protocol sends before the client: decide before relaying it.
        if self.allowed() == Some(true) {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

//! The [`Engine`]: the compiled, indexed policy set, and [`Engine::decide`], which combines
//! AuthorizationPolicy (CUSTOM, DENY, ALLOW, in Istio's order) at the destination workload
//! with NetworkPolicy at both ends. A [`RuleSet`](crate::index::RuleSet) holds the rules of one
//! group (DENY, ALLOW, AUDIT, dry-run ALLOW, dry-run DENY) for one workload and protocol,
//! sorted in Envoy's order (by policy name, the order in which RBAC reports the effective
//! policy), with an index that narrows the rules a request can match.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::authn::{self, Authenticated};
use crate::authz::translate::{CompiledPolicy, CompiledRule, translate};
use crate::container::{ContainerDecision, ContainerPolicy, ContainerRequest};
use crate::decision::{CustomCheck, Decision, RuleRef, ShadowResult, Step, Verdict};
use crate::diag::Errors;
use crate::error::{ContainerError, DecisionError};
use crate::index::RuleSet;
use crate::inventory::{AddressOwner, Inventory};
use crate::load::PolicySet;
use crate::needs::Needs;
use crate::netpol::{self, CompiledNetwork};
use crate::options::Options;
use crate::predicate::Facts;
use crate::request::{ExtAuthzAnswer, Protocol, Request, WorkloadRef};
use crate::view::{Groups, ViewCache, ViewInputs, WorkloadView};

/// The compiled, indexed policy set: decide requests, or encode it as a bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engine {
    /// The options it was compiled with.
    options: Options,
    /// AuthorizationPolicies.
    policies: Vec<CompiledPolicy>,
    /// All rules.
    rules: Vec<CompiledRule>,
    /// The inventory.
    inventory: Inventory,
    /// A view per inventory workload (same order as `inventory.workloads`).
    views: Vec<WorkloadView>,
    /// NetworkPolicies.
    network: CompiledNetwork,
    /// ContainerPolicies (decided by [`Engine::decide_container`]).
    container: Vec<ContainerPolicy>,
    /// RequestAuthentications: which workloads run `jwt_authn` and with which providers.
    /// Empty when the input holds none (see [`authn::authenticate`]).
    authentication: Vec<authn::CompiledRequestAuthentication>,
    /// Views built for destinations described inline (namespace and labels, not an inventory
    /// workload), kept so that [`Engine::decide`] builds each one once. Not part of the
    /// compiled policy: not encoded in bundles, not compared, empty in a clone.
    #[serde(skip)]
    inline_views: ViewCache,
}

impl Engine {
    /// The options it was compiled with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The inventory it was compiled with.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The compiled NetworkPolicies.
    pub fn network(&self) -> &CompiledNetwork {
        &self.network
    }

    /// The ContainerPolicies (decided by [`Engine::decide_container`]).
    pub fn container_policies(&self) -> &[ContainerPolicy] {
        &self.container
    }

    /// The AuthorizationPolicies, as compiled, in input order.
    pub fn policies(&self) -> &[CompiledPolicy] {
        &self.policies
    }

    /// How many AuthorizationPolicy rules it holds (each rule once, whatever applies it).
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// A view per inventory workload, in the inventory's order.
    pub fn views(&self) -> &[WorkloadView] {
        &self.views
    }

    /// The views built so far for destinations described inline.
    pub fn inline_views(&self) -> &ViewCache {
        &self.inline_views
    }

    /// Drops what a host deciding for one workload's requests never reads: the other
    /// workloads' views and the ContainerPolicies (the proxy-wasm plugin keeps its own view).
    pub fn drop_views_and_container_policies(&mut self) {
        self.views = Vec::new();
        self.container = Vec::new();
    }
}

/// Compiles a validated policy set.
pub fn compile(set: &PolicySet, options: &Options) -> Result<Engine, Errors> {
    crate::extauthz::validate_all(&options.extension_providers).map_err(|e| {
        Errors::one(
            crate::diag::Diagnostic::new(format!("invalid extension providers: {e}"))
                .with_help("fix the mesh's `extensionProviders`"),
        )
    })?;
    let mut engine = Engine {
        options: options.clone(),
        inventory: set.inventory.clone(),
        ..Engine::default()
    };
    for p in &set.authorization {
        let policy = translate(p, options, &mut engine.rules);
        engine.policies.push(policy);
    }
    engine.network = netpol::compile(&set.network, &set.inventory)?;
    engine.container.clone_from(&set.container);
    engine.authentication = authn::compile(&set.authentication);
    let views: Vec<WorkloadView> = engine
        .inventory
        .workloads
        .iter()
        .map(|w| engine.build_view(&w.namespace, &w.labels_vec()))
        .collect();
    engine.views = views;
    Ok(engine)
}

impl Engine {
    /// The first rule of `set` that matches, by index lookup.
    fn first_match(&self, set: &RuleSet, proto: Protocol, f: &Facts<'_>) -> Option<u32> {
        set.first_match(&self.rules, proto, f)
    }

    fn rule_ref(&self, id: Option<u32>) -> Option<Arc<RuleRef>> {
        id.and_then(|i| self.rules.get(i as usize))
            .map(|r| r.rule.clone())
    }

    /// Decides with a view (the plugin's path: its workload's view is built once).
    pub fn decide_in_view(&self, view: &WorkloadView, req: &Request) -> Decision {
        self.decide_in_view_with(view, req, None)
    }

    /// [`Engine::decide_in_view`], with a verifier for a request's raw `jwtToken`.
    pub fn decide_in_view_with(
        &self,
        view: &WorkloadView,
        req: &Request,
        verifier: Option<&dyn authn::TokenVerifier>,
    ) -> Decision {
        let proto = req.protocol;
        let configured = !self.authentication.is_empty();
        // `jwt_authn` is an HTTP filter: on TCP no token is read and none is refused.
        let auth = match (proto, &req.jwt, &req.jwt_token) {
            (Protocol::Tcp, _, _) => Authenticated::Anonymous,
            (Protocol::Http, None, Some(token)) => {
                authn::authenticate_token(configured, &view.jwt_providers, token, verifier)
            }
            (Protocol::Http, jwt, _) => {
                authn::authenticate(configured, &view.jwt_providers, jwt.as_ref())
            }
        };
        let jwt = match auth {
            Authenticated::Anonymous => None,
            Authenticated::Payload(p) => Some(p),
            Authenticated::Rejected(why) => return jwt_rejected(why),
            Authenticated::Unverifiable(why) => {
                return error_decision(DecisionError::UnverifiableToken(why));
            }
        };
        let facts = Facts::with_jwt(req, &self.options, jwt);
        let g = match proto {
            Protocol::Http => &view.http,
            Protocol::Tcp => &view.tcp,
        };
        let mut shadow = Vec::new();
        if g.has_shadow_allow {
            let m = self.first_match(&g.shadow_allow, proto, &facts);
            shadow.push(ShadowResult {
                action: "ALLOW".into(),
                verdict: if m.is_some() {
                    Verdict::Allow
                } else {
                    Verdict::Deny
                },
                matched: self.rule_ref(m),
            });
        }
        if g.has_shadow_deny {
            let m = self.first_match(&g.shadow_deny, proto, &facts);
            shadow.push(ShadowResult {
                action: "DENY".into(),
                verdict: if m.is_some() {
                    Verdict::Deny
                } else {
                    Verdict::Allow
                },
                matched: self.rule_ref(m),
            });
        }
        let audit = self.rule_ref(self.first_match(&g.audit, proto, &facts));
        let (custom, outcome) = self.decide_custom(g, proto, &facts, req);
        let (verdict, step, rule) = if let Some(outcome) = outcome {
            outcome
        } else if let Some(id) = self.first_match(&g.deny, proto, &facts) {
            (Verdict::Deny, Step::DenyMatched, self.rule_ref(Some(id)))
        } else if !g.has_allow {
            (Verdict::Allow, Step::NoAllowPolicies, None)
        } else if let Some(id) = self.first_match(&g.allow, proto, &facts) {
            (Verdict::Allow, Step::AllowMatched, self.rule_ref(Some(id)))
        } else {
            (Verdict::Deny, Step::NoAllowMatched, None)
        };
        Decision {
            verdict,
            step,
            rule,
            shadow,
            audit,
            network: None,
            errors: Vec::new(),
            custom,
        }
    }

    /// Istio step 1, CUSTOM, provider by provider in Envoy's filter order. An undeclared
    /// provider's matching rule denies; a declared one's matching dry-run rule denies (Istio
    /// master makes them enforced DENY rules of the provider's RBAC filter); a matching
    /// enforced rule asks the provider: its answer in the request allows (go on to the next
    /// provider, then DENY and ALLOW) or denies, and no answer leaves the request pending.
    /// Returns the providers asked and, when CUSTOM decided, the verdict.
    fn decide_custom(
        &self,
        g: &Groups,
        proto: Protocol,
        facts: &Facts<'_>,
        req: &Request,
    ) -> (Vec<CustomCheck>, Option<Settled>) {
        let mut asked = Vec::new();
        for cg in &g.custom {
            if !cg.declared {
                if let Some(id) = self.first_match(&cg.enforced, proto, facts) {
                    let outcome = (
                        Verdict::Deny,
                        Step::CustomProviderMissing,
                        self.rule_ref(Some(id)),
                    );
                    return (asked, Some(outcome));
                }
                continue;
            }
            if let Some(id) = self.first_match(&cg.dry_run, proto, facts) {
                let outcome = (Verdict::Deny, Step::DenyMatched, self.rule_ref(Some(id)));
                return (asked, Some(outcome));
            }
            let Some(id) = self.first_match(&cg.enforced, proto, facts) else {
                continue;
            };
            let Some(rule) = self.rule_ref(Some(id)) else {
                continue;
            };
            let answer = req.ext_authz.get(&cg.provider).copied();
            asked.push(CustomCheck {
                provider: cg.provider.clone(),
                rule: Arc::clone(&rule),
                answer,
            });
            match answer {
                Some(ExtAuthzAnswer::Allow) => {}
                Some(ExtAuthzAnswer::Deny) => {
                    return (asked, Some((Verdict::Deny, Step::CustomDenied, Some(rule))));
                }
                None => {
                    let outcome = (Verdict::CustomPending, Step::CustomPending, Some(rule));
                    return (asked, Some(outcome));
                }
            }
        }
        (asked, None)
    }

    /// The inventory index of the destination workload, or its namespace and labels.
    fn resolve<'a>(
        &self,
        w: Option<&'a WorkloadRef>,
        ip: Option<IpAddr>,
    ) -> Result<Resolved<'a>, DecisionError> {
        match w {
            Some(WorkloadRef {
                namespace,
                name: Some(name),
                ..
            }) => self
                .inventory
                .workloads
                .iter()
                .position(|x| &x.namespace == namespace && &x.name == name)
                .map(Resolved::Known)
                .ok_or_else(|| DecisionError::UnknownWorkload {
                    namespace: namespace.clone(),
                    name: name.clone(),
                }),
            Some(w) => Ok(Resolved::Inline(w)),
            None => match ip {
                Some(ip) => match self.inventory.owner_of(ip) {
                    AddressOwner::Workload(i) => Ok(Resolved::Known(i)),
                    AddressOwner::Node(node) => Err(DecisionError::NodeAddress {
                        ip,
                        node: node.to_string(),
                    }),
                    AddressOwner::Ambiguous(a, b) => {
                        let name = |i: usize| {
                            self.inventory
                                .workloads
                                .get(i)
                                .map_or_else(String::new, |w| {
                                    format!("`{}/{}`", w.namespace, w.name)
                                })
                        };
                        Err(DecisionError::AmbiguousAddress {
                            ip,
                            first: name(a),
                            second: name(b),
                        })
                    }
                    AddressOwner::External => Err(DecisionError::NoWorkloadForAddress { ip }),
                },
                None => Err(DecisionError::NoDestination),
            },
        }
    }

    /// Decides a request: AuthorizationPolicy at the destination workload, then
    /// NetworkPolicy (source egress and destination ingress); both must allow.
    pub fn decide(&self, req: &Request) -> Decision {
        self.decide_with(req, None)
    }

    /// [`Engine::decide`], with a verifier for a request's raw `jwtToken` (see
    /// [`authn::verify_token`]).
    pub fn decide_with(
        &self,
        req: &Request,
        verifier: Option<&dyn authn::TokenVerifier>,
    ) -> Decision {
        let dst = self.resolve(req.destination.workload.as_ref(), req.destination.ip);
        let mut decision = match dst {
            Ok(Resolved::Known(i)) => match self.views.get(i) {
                Some(v) => self.decide_in_view_with(v, req, verifier),
                None => error_decision(DecisionError::ViewMissing),
            },
            Ok(Resolved::Inline(w)) => {
                let view = self
                    .inline_views
                    .get_or_build(&w.namespace, &w.labels, |ns, labels| {
                        self.build_view(ns, labels)
                    });
                self.decide_in_view_with(&view, req, verifier)
            }
            Err(e) if !self.policies.is_empty() => error_decision(e),
            Err(_) => Decision {
                verdict: Verdict::Allow,
                step: Step::NoAllowPolicies,
                rule: None,
                shadow: Vec::new(),
                audit: None,
                network: None,
                errors: Vec::new(),
                custom: Vec::new(),
            },
        };
        // A refused token never reaches a decision NetworkPolicy could add to.
        if matches!(decision.step, Step::Error | Step::JwtRejected) || self.network.is_empty() {
            return decision;
        }
        match netpol::evaluate(
            &self.network,
            &self.inventory,
            req,
            self.options.node_traffic,
        ) {
            Ok(outcome) => decision.join_network(outcome),
            Err(e) => return error_decision(e.into()),
        }
        decision
    }

    /// Builds the indexed view of everything that applies to one workload.
    pub fn build_view(&self, namespace: &str, labels: &[(String, String)]) -> WorkloadView {
        ViewInputs {
            options: &self.options,
            policies: &self.policies,
            rules: &self.rules,
            authentication: &self.authentication,
        }
        .build_view(namespace, labels)
    }

    /// What the rules of `view` can test on `protocol` (see [`Needs`]). NetworkPolicies
    /// resolve both endpoints by address or identity and test the port, so with any
    /// NetworkPolicy the connection attributes are all needed.
    pub fn needs(&self, view: &WorkloadView, protocol: Protocol) -> Needs {
        crate::needs::needs(&self.rules, !self.network.is_empty(), view, protocol)
    }

    /// The request headers the rules of `view` test by name on `protocol`
    /// (`request.headers[<name>]`), each once, in the order first met. `hosts`, `methods` and
    /// `paths` are not among them (see [`Needs::headers`]).
    pub fn tested_headers(&self, view: &WorkloadView, protocol: Protocol) -> Vec<String> {
        crate::needs::tested_headers(&self.rules, view, protocol)
    }

    /// The CIDRs the rules of `view` test the direct peer against on `protocol` (`ipBlocks`,
    /// `notIpBlocks`, `source.ip`), each once, in the order first met. A decision depends on
    /// `source.ip` only through membership in these (NetworkPolicy aside, which also looks the
    /// peer up in the inventory): hosts that cannot see the peer use them to tell whether it
    /// matters.
    pub fn source_ip_cidrs(&self, view: &WorkloadView, protocol: Protocol) -> Vec<IpNet> {
        crate::needs::source_ip_cidrs(&self.rules, view, protocol)
    }

    /// The view of an inventory workload.
    pub fn view_of(&self, namespace: &str, name: &str) -> Option<&WorkloadView> {
        let i = self
            .inventory
            .workloads
            .iter()
            .position(|w| w.namespace == namespace && w.name == name)?;
        self.views.get(i)
    }
}

/// A verdict, the step that gave it and the deciding rule.
type Settled = (Verdict, Step, Option<Arc<RuleRef>>);

enum Resolved<'a> {
    Known(usize),
    Inline(&'a WorkloadRef),
}

/// `jwt_authn` refused the token (HTTP 401 or 403): RBAC never runs.
fn jwt_rejected(why: &'static str) -> Decision {
    Decision {
        verdict: Verdict::Deny,
        step: Step::JwtRejected,
        rule: None,
        shadow: Vec::new(),
        audit: None,
        network: None,
        errors: vec![DecisionError::JwtRejected(why)],
        custom: Vec::new(),
    }
}

fn error_decision(e: DecisionError) -> Decision {
    Decision {
        verdict: Verdict::Deny,
        step: Step::Error,
        rule: None,
        shadow: Vec::new(),
        audit: None,
        network: None,
        errors: vec![e],
        custom: Vec::new(),
    }
}

impl Engine {
    /// Decides a container start with the compiled engine's ContainerPolicies and inventory.
    pub fn decide_container(
        &self,
        req: &ContainerRequest,
    ) -> Result<ContainerDecision, ContainerError> {
        crate::container::decide_container(&self.container, &self.inventory, req)
    }
}

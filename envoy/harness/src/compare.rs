//! Running one case on both sides: the golden RBAC filters in a real Envoy, and the input
//! policy in `palisade-engine`, over the same generated probes — and, when
//! [`Harness::plugin`] is set, on a third side: the Palisade proxy-wasm plugin with the input
//! policy, on a second set of listeners in the same Envoy process (see [`plugin_address`]).

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use serde_json::{Value, json};

use crate::bootstrap::{ListenerKind, ListenerSpec, bootstrap};
use crate::cases::Case;
use crate::cases::TrustDomainBundle;
use crate::certs::Pki;
use crate::client::{HttpRequest, Transport, probe_tcp, send_http, send_http_full};
use crate::envoy::{EnvoyProcess, validate_config};
use crate::error::{Context, Error, Result};
use crate::generate::{Context as GenContext, Generated, Kind, Peer, Probe, generate};
use crate::jwt::mint;
use crate::plugin::{POLICY_HEADER, http_filter, network_filter};
use crate::yaml::yaml_to_json;

/// The address every listener of this process binds (a distinct 127/8 address per process so
/// that concurrent runs do not collide on the fixed policy ports).
pub fn listen_address() -> Ipv4Addr {
    let pid = std::process::id();
    let b = u8::try_from((pid >> 8) % 200).unwrap_or(0);
    let c = u8::try_from(pid % 250).unwrap_or(0);
    Ipv4Addr::new(127, 10u8.saturating_add(b), c.saturating_add(1), 1)
}

/// The address of the plugin's listeners in the same process: [`listen_address`] with the last
/// octet 2, so that they can take the same ports (a policy's `ports` must see the port the
/// probe names). The destination address differs from the RBAC listeners'; no case drives
/// `destination.ip` with a loopback value (see [`crate::generate`]), so no decision depends on it.
pub fn plugin_address() -> Ipv4Addr {
    let [a, b, c, _] = listen_address().octets();
    Ipv4Addr::new(a, b, c, 2)
}

/// The plugin configuration for a case: the input policy inline, the golden files' proxy
/// (namespace `foo`, labels `app=httpbin, version=v1`), and the case's trust domain and
/// aliases. Nothing about `x-forwarded-for`: the listeners are sidecar-shaped
/// (`use_remote_address: false`, no trusted hops), where the plugin reads `remote.ip` from
/// `source.address` as RBAC reads `remote_ip`. (`protocol: tcp` is added by
/// [`crate::plugin::network_filter`].)
pub fn plugin_configuration(input: &str, _kind: Kind, bundle: &TrustDomainBundle) -> Value {
    json!({
        "policy": input,
        "workload": {"namespace": "foo", "labels": {"app": "httpbin", "version": "v1"}},
        "trustDomain": bundle.trust_domain,
        "trustDomainAliases": bundle.aliases,
    })
}

/// Decides a probe sent to a listener at this address: (allowed, explanation).
pub type Decide = Box<dyn Fn(&Probe, Ipv4Addr) -> (bool, String)>;

/// The implementation compared with Envoy (the engine, see [`crate::engine`]).
pub trait Oracle {
    /// Loads a case's input policies (file name and text) with the case's trust domains and
    /// returns its decision function.
    fn prepare(&self, name: &str, text: &str, bundle: &TrustDomainBundle) -> Result<Decide>;
}

/// What Envoy did with a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvoyAnswer {
    /// HTTP 200 or TCP bytes back.
    Allow,
    /// HTTP 403 or TCP closed with nothing.
    Deny,
    /// Anything else (e.g. HTTP 400 for a request Envoy refuses to parse): not comparable.
    Other(String),
}

/// One probe where Envoy's RBAC filters and the plugin disagree.
#[derive(Debug, Clone)]
pub struct ParityDifference {
    /// The case name.
    pub case: String,
    /// The probe.
    pub request: String,
    /// The RBAC listener's answer.
    pub rbac: String,
    /// The plugin listener's answer (with `x-palisade-policy`).
    pub plugin: String,
    /// The engine's answer and explanation, for the investigation.
    pub engine: String,
}

/// One probe where the two sides disagree.
#[derive(Debug, Clone)]
pub struct Difference {
    /// The case name.
    pub case: String,
    /// The probe.
    pub request: String,
    /// Envoy's answer.
    pub envoy: String,
    /// The engine's answer and explanation.
    pub engine: String,
}

/// The result of one case.
#[derive(Debug, Clone, Default)]
pub struct CaseReport {
    /// Case name.
    pub name: String,
    /// Probes sent to Envoy.
    pub sent: usize,
    /// Probes compared (Envoy answered allow or deny).
    pub compared: usize,
    /// Envoy allowed.
    pub allowed: usize,
    /// Envoy denied.
    pub denied: usize,
    /// Probes Envoy answered otherwise (with the answer).
    pub not_comparable: Vec<String>,
    /// Compared probes that carried a JWT.
    pub with_token: usize,
    /// Compared probes whose engine verdict changes when their JWT is removed (so the token's
    /// claims, checked by Envoy's RBAC metadata matchers, decided the outcome).
    pub token_decisive: usize,
    /// Probes whose token Envoy's `jwt_authn` rejected (HTTP 401): a harness fault, since the
    /// engine is given the payload as verified.
    pub token_rejected: Vec<String>,
    /// Disagreements.
    pub differences: Vec<Difference>,
    /// Attributes not varied.
    pub undrivable: Vec<String>,
    /// Probes compared between the RBAC listener and the plugin listener (both answered allow
    /// or deny); 0 when the plugin is not run.
    pub plugin_compared: usize,
    /// Probes the plugin allowed / denied.
    pub plugin_allowed: usize,
    /// See [`CaseReport::plugin_allowed`].
    pub plugin_denied: usize,
    /// Disagreements between the RBAC listener and the plugin listener (a plugin answer other
    /// than allow or deny when RBAC gave one counts as a disagreement).
    pub plugin_differences: Vec<ParityDifference>,
}

/// Everything a case run needs besides the case itself.
#[derive(Debug)]
pub struct Harness<'a> {
    /// The Envoy binary.
    pub envoy: &'a Path,
    /// The corpus folder.
    pub corpus: &'a Path,
    /// A scratch directory (certificates, configuration, logs).
    pub work: &'a Path,
    /// The CA and certificates.
    pub pki: &'a Pki,
    /// The TCP upstream's port.
    pub echo_port: u16,
    /// The Palisade plugin (`.wasm`): when set, every case also gets one plugin listener per
    /// port at [`plugin_address`], loaded with the case's input policy
    /// ([`plugin_configuration`]; HTTP listeners run the same `jwt_authn` filter before it),
    /// every probe is sent there too, and the answers are compared with the RBAC listener's.
    pub plugin: Option<&'a Path>,
}

impl Harness<'_> {
    /// Runs one case: generate probes, start Envoy with the golden filters, send the probes,
    /// decide them with the engine and compare.
    pub fn run_case(&self, case: &Case, oracle: &dyn Oracle) -> Result<CaseReport> {
        let read = |rel: &str| {
            let p = self.corpus.join(rel);
            fs::read_to_string(&p).context(|| format!("reading {}", p.display()))
        };
        let input_text = read(&case.input)?;
        let input = yaml_to_json(&input_text)?;
        let mut filters = Vec::new();
        for w in &case.want {
            filters.extend(yaml_to_json(&read(w)?)?);
        }
        let kind = if case.kind == "tcp" {
            Kind::Tcp
        } else {
            Kind::Http
        };
        let (td, aliases) = match &case.trust_domain_bundle {
            Some(b) => (b.trust_domain.clone(), b.aliases.clone()),
            None => ("cluster.local".to_string(), Vec::new()),
        };
        let ctx = GenContext {
            trust_domain: td.clone(),
            aliases: aliases.clone(),
        };
        let Generated {
            probes,
            ports,
            undrivable,
        } = generate(&input, kind, &ctx);

        // Engine side.
        let bundle = TrustDomainBundle {
            trust_domain: td,
            aliases,
        };
        let decide = oracle.prepare(&case.input, &input_text, &bundle)?;

        // Envoy side.
        let addr = listen_address();
        let mut listeners: Vec<ListenerSpec> = ports
            .iter()
            .map(|&port| ListenerSpec {
                name: format!("{}_{port}", case.kind),
                address: addr,
                port,
                kind: match kind {
                    Kind::Http => ListenerKind::Http(filters.clone()),
                    Kind::Tcp => ListenerKind::Tcp(filters.clone()),
                },
            })
            .collect();
        if let Some(wasm) = self.plugin {
            let config = plugin_configuration(&input_text, kind, &bundle);
            let filter = match kind {
                Kind::Http => ListenerKind::Http(vec![http_filter(wasm, &config)]),
                Kind::Tcp => ListenerKind::Tcp(vec![network_filter(wasm, &config)]),
            };
            listeners.extend(ports.iter().map(|&port| ListenerSpec {
                name: format!("plugin_{}_{port}", case.kind),
                address: plugin_address(),
                port,
                kind: filter.clone(),
            }));
        }
        let dir = self.work.join(&case.name);
        fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let cfg = dir.join("envoy.json");
        let json = serde_json::to_vec_pretty(&bootstrap(&listeners, self.pki, self.echo_port))
            .context(|| "serialising bootstrap".into())?;
        fs::write(&cfg, json).context(|| format!("writing {}", cfg.display()))?;
        validate_config(self.envoy, &cfg)?;
        let proc = EnvoyProcess::start(self.envoy, &cfg, &dir)?;

        let mut report = CaseReport {
            name: case.name.clone(),
            undrivable: undrivable.into_iter().collect(),
            ..CaseReport::default()
        };
        for probe in &probes {
            report.sent += 1;
            let envoy_answer = match self.send(addr, probe) {
                Ok(a) => a,
                Err(e) => {
                    return Err(Error(format!(
                        "case {}: {}: {e}\n{}",
                        case.name,
                        probe.describe(),
                        proc.log_tail()
                    )));
                }
            };
            if self.plugin.is_some() {
                let plugin_answer = match self.send(plugin_address(), probe) {
                    Ok(a) => a,
                    Err(e) => {
                        return Err(Error(format!(
                            "case {} (plugin listener): {}: {e}\n{}",
                            case.name,
                            probe.describe(),
                            proc.log_tail()
                        )));
                    }
                };
                self.compare_plugin(
                    &mut report,
                    case,
                    probe,
                    &envoy_answer,
                    &plugin_answer,
                    || decide(probe, addr),
                );
            }
            let envoy_allowed = match envoy_answer {
                EnvoyAnswer::Allow => true,
                EnvoyAnswer::Deny => false,
                EnvoyAnswer::Other(what) if probe.jwt.is_some() && what == "HTTP 401" => {
                    report.token_rejected.push(probe.describe());
                    continue;
                }
                EnvoyAnswer::Other(what) => {
                    report
                        .not_comparable
                        .push(format!("{} -> {what}", probe.describe()));
                    continue;
                }
            };
            report.compared += 1;
            if envoy_allowed {
                report.allowed += 1;
            } else {
                report.denied += 1;
            }
            let (engine_allowed, explanation) = decide(probe, addr);
            if probe.jwt.is_some() {
                report.with_token += 1;
                let tokenless = Probe {
                    jwt: None,
                    ..probe.clone()
                };
                if decide(&tokenless, addr).0 != engine_allowed {
                    report.token_decisive += 1;
                }
            }
            if engine_allowed != envoy_allowed {
                report.differences.push(Difference {
                    case: case.name.clone(),
                    request: probe.describe(),
                    envoy: verdict(envoy_allowed).into(),
                    engine: format!("{}: {explanation}", verdict(engine_allowed)),
                });
            }
        }
        drop(proc);
        Ok(report)
    }

    /// Records the RBAC listener's and the plugin listener's answers to one probe.
    fn compare_plugin(
        &self,
        report: &mut CaseReport,
        case: &Case,
        probe: &Probe,
        rbac: &EnvoyAnswer,
        plugin: &EnvoyAnswer,
        engine: impl Fn() -> (bool, String),
    ) {
        let rbac_allowed = match rbac {
            EnvoyAnswer::Allow => true,
            EnvoyAnswer::Deny => false,
            // Not comparable on the RBAC side (e.g. a 400 from the codec, a 401 from
            // jwt_authn): the plugin listener runs the same connection manager and filters in
            // front of it, so it is recorded with the RBAC side's answer.
            EnvoyAnswer::Other(_) => return,
        };
        let plugin_allowed = match plugin {
            EnvoyAnswer::Allow => true,
            EnvoyAnswer::Deny => false,
            EnvoyAnswer::Other(what) => {
                let (allowed, why) = engine();
                report.plugin_differences.push(ParityDifference {
                    case: case.name.clone(),
                    request: probe.describe(),
                    rbac: verdict(rbac_allowed).into(),
                    plugin: what.clone(),
                    engine: format!("{}: {why}", verdict(allowed)),
                });
                return;
            }
        };
        report.plugin_compared += 1;
        if plugin_allowed {
            report.plugin_allowed += 1;
        } else {
            report.plugin_denied += 1;
        }
        if plugin_allowed != rbac_allowed {
            let (allowed, why) = engine();
            report.plugin_differences.push(ParityDifference {
                case: case.name.clone(),
                request: probe.describe(),
                rbac: verdict(rbac_allowed).into(),
                plugin: verdict(plugin_allowed).into(),
                engine: format!("{}: {why}", verdict(allowed)),
            });
        }
    }

    fn send(&self, addr: Ipv4Addr, probe: &Probe) -> Result<EnvoyAnswer> {
        let transport = match &probe.peer {
            Peer::Plain => Transport::Plain,
            Peer::TlsNoCert => Transport::Tls {
                sni: probe.sni.clone(),
                client: None,
            },
            Peer::Mtls(uri) => Transport::Tls {
                sni: probe.sni.clone(),
                client: Some(self.pki.client(uri)?),
            },
        };
        let to = SocketAddr::from((addr, probe.port));
        let from = Some(IpAddr::V4(probe.source_ip));
        match probe.kind {
            Kind::Tcp => Ok(if probe_tcp(from, to, &transport)? {
                EnvoyAnswer::Allow
            } else {
                EnvoyAnswer::Deny
            }),
            Kind::Http => {
                let mut headers = probe.headers.clone();
                if let Some(x) = &probe.xff {
                    headers.push(("x-forwarded-for".into(), x.clone()));
                }
                if let Some(payload) = probe.jwt_payload() {
                    headers.push((
                        "authorization".into(),
                        format!("Bearer {}", mint(&payload)?),
                    ));
                }
                let req = HttpRequest {
                    method: probe.method.clone(),
                    host: probe.host.clone(),
                    path: probe.path.clone(),
                    headers,
                };
                if addr == plugin_address() {
                    // The plugin names its reason: `x-palisade-policy: error` is a fail-closed
                    // internal error, not a policy decision.
                    let r = send_http_full(from, to, &transport, &req)?;
                    return Ok(match (r.status, r.header(POLICY_HEADER)) {
                        (403, Some("error")) => {
                            EnvoyAnswer::Other("HTTP 403 (plugin error, failed closed)".into())
                        }
                        (200, _) => EnvoyAnswer::Allow,
                        (403, _) => EnvoyAnswer::Deny,
                        (other, _) => EnvoyAnswer::Other(format!("HTTP {other}")),
                    });
                }
                Ok(match send_http(from, to, &transport, &req)? {
                    200 => EnvoyAnswer::Allow,
                    403 => EnvoyAnswer::Deny,
                    other => EnvoyAnswer::Other(format!("HTTP {other}")),
                })
            }
        }
    }
}

fn verdict(allowed: bool) -> &'static str {
    if allowed { "allow" } else { "deny" }
}

//! What a view can test: the request attributes a host must read for a decision.

use ipnet::IpNet;

use crate::authz::translate::{CompiledRule, body_of};
use crate::predicate::{Attr, Pred, Values};
use crate::request::Protocol;
use crate::view::WorkloadView;

/// The request attributes the rules of a view can test on one protocol (every group:
/// enforced ALLOW and DENY, AUDIT, dry-run ALLOW and DENY), plus the NetworkPolicies'
/// needs when there are any. A host that reads its attributes one call at a time (the
/// proxy-wasm plugin) reads only these: an attribute no rule tests cannot change the
/// decision, so leaving it out of the [`Request`](crate::Request) (absent) decides exactly as reading it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// The direct peer address (`ipBlocks`, `source.ip`).
    pub source_ip: bool,
    /// The original client address (`remoteIpBlocks`, `remote.ip`): `x-forwarded-for` and
    /// the direct peer (its fallback).
    pub remote_ip: bool,
    /// The local address (`destination.ip`).
    pub destination_ip: bool,
    /// The local port (`ports`, `destination.port`).
    pub destination_port: bool,
    /// The peer principal (`principals`, `namespaces`, service accounts, trust domains):
    /// mTLS and the peer certificate's URI SAN.
    pub principal: bool,
    /// The TLS SNI (`connection.sni`).
    pub sni: bool,
    /// The request headers (`hosts`, `methods`, `paths`, `request.headers[...]`).
    pub headers: bool,
    /// The verified JWT payload (`requestPrincipals`, `request.auth.*`).
    pub jwt: bool,
}

impl Needs {
    /// Every attribute.
    pub const ALL: Needs = Needs {
        source_ip: true,
        remote_ip: true,
        destination_ip: true,
        destination_port: true,
        principal: true,
        sni: true,
        headers: true,
        jwt: true,
    };

    fn add(&mut self, attr: &Attr) {
        match attr {
            Attr::Principal | Attr::SourceNamespace => self.principal = true,
            Attr::RequestPrincipal | Attr::Claim(_) => self.jwt = true,
            Attr::SourceIp => self.source_ip = true,
            Attr::RemoteIp => self.remote_ip = true,
            Attr::DestinationIp => self.destination_ip = true,
            Attr::DestinationPort => self.destination_port = true,
            Attr::Host | Attr::Method | Attr::Path | Attr::Header(_) => self.headers = true,
            Attr::Sni => self.sni = true,
            Attr::Missing => {}
        }
    }
}

/// What the rules of `view` can test on `protocol` (see [`Needs`]). NetworkPolicies
/// resolve both endpoints by address or identity and test the port, so with any
/// NetworkPolicy the connection attributes are all needed.
pub(crate) fn needs(
    rules: &[CompiledRule],
    network: bool,
    view: &WorkloadView,
    protocol: Protocol,
) -> Needs {
    let mut needs = Needs::default();
    if network {
        needs.source_ip = true;
        needs.destination_ip = true;
        needs.destination_port = true;
        needs.principal = true;
    }
    each_pred(rules, view, protocol, |p| needs.add(&p.attr));
    // With `jwt_authn` on the workload a payload can be refused whatever the rules test.
    if protocol == Protocol::Http && !view.jwt_providers.is_empty() {
        needs.jwt = true;
    }
    needs
}

/// The request headers the rules of `view` test by name on `protocol`
/// (`request.headers[<name>]`), each once, in the order first met. `hosts`, `methods` and
/// `paths` are not among them (see [`Needs::headers`]).
pub(crate) fn tested_headers(
    rules: &[CompiledRule],
    view: &WorkloadView,
    protocol: Protocol,
) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    each_pred(rules, view, protocol, |p| {
        if let Attr::Header(name) = &p.attr
            && !names.contains(name)
        {
            names.push(name.clone());
        }
    });
    names
}

/// The CIDRs the rules of `view` test the direct peer against on `protocol` (`ipBlocks`,
/// `notIpBlocks`, `source.ip`), each once, in the order first met. A decision depends on
/// `source.ip` only through membership in these (NetworkPolicy aside, which also looks the
/// peer up in the inventory): hosts that cannot see the peer use them to tell whether it
/// matters.
pub(crate) fn source_ip_cidrs(
    rules: &[CompiledRule],
    view: &WorkloadView,
    protocol: Protocol,
) -> Vec<IpNet> {
    let mut nets: Vec<IpNet> = Vec::new();
    each_pred(rules, view, protocol, |p| {
        if p.attr == Attr::SourceIp
            && let Values::Cidr(v) = &p.values
        {
            for n in v {
                if !nets.contains(n) {
                    nets.push(*n);
                }
            }
        }
    });
    nets
}

/// Every predicate of every rule of `view` on `protocol` (all groups).
fn each_pred(
    rules: &[CompiledRule],
    view: &WorkloadView,
    protocol: Protocol,
    mut f: impl FnMut(&Pred),
) {
    let g = match protocol {
        Protocol::Http => &view.http,
        Protocol::Tcp => &view.tcp,
    };
    let sets = [&g.deny, &g.allow, &g.audit, &g.shadow_allow, &g.shadow_deny];
    let custom = g.custom.iter().flat_map(|c| [&c.enforced, &c.dry_run]);
    for id in sets.into_iter().chain(custom).flat_map(|s| s.rules.iter()) {
        let Some(b) = body_of(rules, *id, protocol) else {
            continue;
        };
        for p in b.from.iter().chain(b.to.iter()).flatten().chain(&b.when) {
            f(p);
        }
    }
}

//! Reading a NetworkPolicy's `spec`, with positions and field paths.

use ipnet::IpNet;

use super::*;
use crate::meta::Origin;
use crate::selector::parse_selector;
use crate::yaml::{At, DResult, Fields};

/// Reads a NetworkPolicy's `spec` (the caller has taken `apiVersion`, `kind` and `metadata`).
pub fn parse(
    mut top: Fields<'_>,
    name: String,
    namespace: String,
    origin: Origin,
) -> DResult<NetworkPolicy> {
    let spec = top.take("spec");
    top.ignore(&["status"]);
    top.finish(&["apiVersion", "kind", "metadata", "spec", "status"])?;
    let mut policy = NetworkPolicy {
        name,
        namespace,
        pod_selector: LabelSelector::default(),
        policy_types: PolicyTypes {
            ingress: true,
            egress: false,
        },
        ingress: Vec::new(),
        egress: Vec::new(),
        origin,
    };
    // No spec: Kubernetes' zero value, an empty selector isolating every pod for ingress.
    let Some(spec) = spec else {
        return Ok(policy);
    };
    let at = spec.at();
    let mut f = at.fields()?;
    let pod_selector = f.take("podSelector");
    let policy_types = f.take("policyTypes");
    let ingress = f.take("ingress");
    let egress = f.take("egress");
    f.finish(&["podSelector", "policyTypes", "ingress", "egress"])?;

    if let Some(s) = &pod_selector {
        policy.pod_selector = parse_selector(s.at())?;
    }
    if let Some(rules) = &ingress {
        policy.ingress = parse_rules(rules.at(), Direction::Ingress)?;
    }
    if let Some(rules) = &egress {
        policy.egress = parse_rules(rules.at(), Direction::Egress)?;
    }
    let mut types = PolicyTypes::default();
    if let Some(pt) = &policy_types {
        let list = pt.at().strings()?;
        if list.len() > 2 {
            return Err(pt
                .at()
                .error("`policyTypes` may not list more than two types"));
        }
        for s in &list {
            match s.value.as_str() {
                "Ingress" => types.ingress = true,
                "Egress" => types.egress = true,
                other => {
                    return Err(s
                        .error(format!("unknown policy type `{other}`"))
                        .with_help("expected `Ingress` or `Egress`"));
                }
            }
        }
    }
    if types == PolicyTypes::default() {
        // Kubernetes' default: Ingress always, Egress when there are egress rules.
        types = PolicyTypes {
            ingress: true,
            egress: !policy.egress.is_empty(),
        };
    }
    policy.policy_types = types;
    Ok(policy)
}

fn parse_rules(at: At<'_>, dir: Direction) -> DResult<Vec<Rule>> {
    let mut rules = Vec::new();
    for (item, path) in at.items()? {
        rules.push(parse_rule(item.with_path(&path), dir)?);
    }
    Ok(rules)
}

fn parse_rule(at: At<'_>, dir: Direction) -> DResult<Rule> {
    let peers_key = dir.peers_field();
    let mut f = at.fields()?;
    let peers = f.take(peers_key);
    let ports = f.take("ports");
    f.finish(&[peers_key, "ports"])?;
    let mut rule = Rule::default();
    if let Some(peers) = &peers {
        for (item, path) in peers.at().items()? {
            rule.peers.push(parse_peer(item.with_path(&path))?);
        }
    }
    if let Some(ports) = &ports {
        for (item, path) in ports.at().items()? {
            rule.ports.push(parse_port(item.with_path(&path))?);
        }
    }
    Ok(rule)
}

fn parse_peer(at: At<'_>) -> DResult<Peer> {
    let mut f = at.fields()?;
    let pods = f.take("podSelector");
    let namespaces = f.take("namespaceSelector");
    let ip_block = f.take("ipBlock");
    f.finish(&["podSelector", "namespaceSelector", "ipBlock"])?;
    if let Some(ip) = &ip_block {
        if pods.is_some() || namespaces.is_some() {
            return Err(ip
                .at()
                .error("`ipBlock` cannot be combined with `podSelector` or `namespaceSelector`")
                .with_help("write two peers instead: the entries of `from`/`to` are ORed"));
        }
        return parse_ip_block(ip.at());
    }
    if pods.is_none() && namespaces.is_none() {
        return Err(at
            .error("a peer needs `podSelector`, `namespaceSelector` or `ipBlock`")
            .with_help("to allow any peer, leave out `from`/`to` (or write `namespaceSelector: {}` for every pod in the cluster)"));
    }
    Ok(Peer::Pods {
        pods: pods.map(|p| parse_selector(p.at())).transpose()?,
        namespaces: namespaces.map(|n| parse_selector(n.at())).transpose()?,
    })
}

fn parse_ip_block(at: At<'_>) -> DResult<Peer> {
    let mut f = at.fields()?;
    let cidr_f = f.require("cidr")?;
    let except_f = f.take("except");
    f.finish(&["cidr", "except"])?;
    let cidr_at = cidr_f.at();
    let text = cidr_at.string()?;
    let cidr = text
        .parse::<IpNet>()
        .map_err(|_| {
            cidr_at.error(format!("invalid CIDR `{text}`")).with_help(
                "write an address and a prefix length, e.g. `10.0.0.0/16` or `2001:db8::/32`",
            )
        })?
        .trunc();
    let mut except = Vec::new();
    if let Some(e) = &except_f {
        for s in e.at().strings()? {
            let net = s
                .value
                .parse::<IpNet>()
                .map_err(|_| {
                    s.error(format!("invalid CIDR `{}`", s.value))
                        .with_help("write an address and a prefix length, e.g. `10.0.1.0/24`")
                })?
                .trunc();
            if !(cidr.contains(&net) && net.prefix_len() > cidr.prefix_len()) {
                return Err(s
                    .error(format!(
                        "`except` entry `{}` is not inside `cidr` `{text}`",
                        s.value
                    ))
                    .with_help("each `except` entry must be a strict subset of `cidr`"));
            }
            except.push(net);
        }
    }
    Ok(Peer::IpBlock { cidr, except })
}

fn parse_port(at: At<'_>) -> DResult<PortMatch> {
    let mut f = at.fields()?;
    let protocol_f = f.take("protocol");
    let port_f = f.take("port");
    let end_f = f.take("endPort");
    f.finish(&["protocol", "port", "endPort"])?;
    let protocol = match &protocol_f {
        Some(p) => parse_transport(p.at())?,
        None => Transport::Tcp,
    };
    let port = match &port_f {
        None => None,
        Some(p) => {
            let p = p.at();
            let text = p.string()?;
            if text.parse::<i64>().is_ok() {
                Some(PortRef::Number(to_port(p.integer(1, 65535)?)))
            } else if valid_port_name(&text) {
                Some(PortRef::Name(text))
            } else {
                return Err(p
                    .error(format!("invalid port `{text}`"))
                    .with_help("a port is a number (1-65535) or a container port's name: at most 15 lower-case letters, digits and `-`, with at least one letter"));
            }
        }
    };
    let end_port = match &end_f {
        None => None,
        Some(e) => {
            let e = e.at();
            let end = to_port(e.integer(1, 65535)?);
            match &port {
                Some(PortRef::Number(start)) if end >= *start => Some(end),
                Some(PortRef::Number(start)) => {
                    return Err(e.error(format!("`endPort` {end} is less than `port` {start}")));
                }
                Some(PortRef::Name(name)) => {
                    return Err(e
                        .error(format!(
                            "`endPort` needs a numeric `port`, not the named port `{name}`"
                        ))
                        .with_help("a port range is written with port numbers"));
                }
                None => {
                    return Err(e
                        .error("`endPort` needs a numeric `port`")
                        .with_help("add `port`: the first port of the range"));
                }
            }
        }
    };
    Ok(PortMatch {
        protocol,
        port,
        end_port,
    })
}

/// Range-checked by the caller (1..=65535).
fn to_port(v: i64) -> u16 {
    u16::try_from(v).unwrap_or(0)
}

/// An IANA service name, as Kubernetes validates container port names.
fn valid_port_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.chars().any(|c| c.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

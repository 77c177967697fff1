//! Indexes over the rules of a group: every rule is filed under one necessary condition —
//! an exact, prefix or suffix string of its most selective attribute, a CIDR, a port — so a
//! decision looks up the request's values and evaluates only the rules that can match,
//! whatever the number of rules.

use std::net::IpAddr;

use ipnet::IpNet;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::authz::translate::{CompiledRule, body_of};
use crate::pattern::{Glob, GlobPart, StrMatch};
use crate::predicate::{Attr, Body, Facts, Values};
use crate::request::Protocol;

/// Rule candidates from the indexes, kept inline up to 16 (a decision looks them up a few
/// times, so a heap allocation each time would show).
type Candidates = smallvec::SmallVec<[u32; 16]>;

/// A string-keyed index with exact, prefix and suffix keys; prefix and suffix keys are
/// looked up by every length that occurs (few), so lookups cost a handful of hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrIndex {
    exact: FxHashMap<String, Vec<u32>>,
    prefix: FxHashMap<String, Vec<u32>>,
    prefix_lens: Vec<usize>,
    suffix: FxHashMap<String, Vec<u32>>,
    suffix_lens: Vec<usize>,
}

impl StrIndex {
    fn add(&mut self, key: &Key, id: u32) {
        match key {
            Key::Exact(s) => self.exact.entry(s.clone()).or_default().push(id),
            Key::Prefix(s) => {
                self.prefix.entry(s.clone()).or_default().push(id);
                if !self.prefix_lens.contains(&s.len()) {
                    self.prefix_lens.push(s.len());
                    self.prefix_lens.sort_unstable();
                }
            }
            Key::Suffix(s) => {
                self.suffix.entry(s.clone()).or_default().push(id);
                if !self.suffix_lens.contains(&s.len()) {
                    self.suffix_lens.push(s.len());
                    self.suffix_lens.sort_unstable();
                }
            }
            Key::Cidr(_) | Key::Port(_) => {}
        }
    }

    fn lookup(&self, v: &str, out: &mut Candidates) {
        if let Some(ids) = self.exact.get(v) {
            out.extend_from_slice(ids);
        }
        for &l in &self.prefix_lens {
            if l > v.len() {
                break;
            }
            if let Some(ids) = v.get(..l).and_then(|p| self.prefix.get(p)) {
                out.extend_from_slice(ids);
            }
        }
        for &l in &self.suffix_lens {
            if l > v.len() {
                break;
            }
            if let Some(ids) = v.get(v.len() - l..).and_then(|s| self.suffix.get(s)) {
                out.extend_from_slice(ids);
            }
        }
    }
}

/// An index over address ranges: one hash table per prefix length that occurs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CidrIndex {
    nets: FxHashMap<IpNet, Vec<u32>>,
    lens: Vec<(bool, u8)>,
}

impl CidrIndex {
    fn add(&mut self, net: IpNet, id: u32) {
        let k = (net.addr().is_ipv4(), net.prefix_len());
        if !self.lens.contains(&k) {
            self.lens.push(k);
        }
        self.nets.entry(net.trunc()).or_default().push(id);
    }

    fn lookup(&self, ip: IpAddr, out: &mut Candidates) {
        for &(v4, len) in &self.lens {
            if v4 != ip.is_ipv4() {
                continue;
            }
            if let Ok(net) = IpNet::new(ip, len)
                && let Some(ids) = self.nets.get(&net.trunc())
            {
                out.extend_from_slice(ids);
            }
        }
    }
}

/// An index key: a necessary condition of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Cidr(IpNet),
    Port(u16),
}

/// Attributes that can anchor a rule in the index, most selective first.
const ANCHORS: &[Attr] = &[
    Attr::Path,
    Attr::Principal,
    Attr::SourceNamespace,
    Attr::Host,
    Attr::Sni,
    Attr::RemoteIp,
    Attr::SourceIp,
    Attr::DestinationIp,
    Attr::Method,
    Attr::DestinationPort,
];

/// The index of one rule set: per anchor attribute a string, CIDR or port table, plus the
/// rules no index can narrow (always evaluated).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    strs: Vec<(Attr, StrIndex)>,
    cidrs: Vec<(Attr, CidrIndex)>,
    ports: FxHashMap<u16, Vec<u32>>,
    always: Vec<u32>,
}

/// The rules of one group for one workload and protocol, in Envoy's evaluation order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSet {
    /// Indices into [`Engine::rules`], sorted by rule id (Envoy's order).
    pub rules: Vec<u32>,
    /// Positions in `rules`, by anchor.
    pub index: Index,
}

/// The index keys of a predicate's values, when every value has one.
fn keys_of(attr: &Attr, values: &Values) -> Option<Vec<Key>> {
    let mut keys = Vec::new();
    match values {
        Values::Cidr(nets) => keys.extend(nets.iter().map(|n| Key::Cidr(*n))),
        Values::Port(ports) => keys.extend(ports.iter().map(|p| Key::Port(*p))),
        Values::Str(ms) => {
            for m in ms {
                let k = match (attr, m) {
                    (Attr::SourceNamespace, StrMatch::Glob(Glob(parts))) => {
                        match parts.as_slice() {
                            [GlobPart::Star, GlobPart::Lit(l), GlobPart::Star] => {
                                let ns = l.strip_prefix("/ns/")?.strip_suffix('/')?;
                                if ns.contains('/') || ns.is_empty() {
                                    return None;
                                }
                                Key::Exact(ns.to_string())
                            }
                            _ => return None,
                        }
                    }
                    (Attr::SourceNamespace, _) => return None,
                    (Attr::Principal, StrMatch::Glob(Glob(parts))) => match parts.as_slice() {
                        [GlobPart::Lit(_), GlobPart::Star, GlobPart::Lit(s)] if !s.is_empty() => {
                            Key::Suffix(s.clone())
                        }
                        _ => return None,
                    },
                    (_, StrMatch::Exact(s)) => Key::Exact(s.clone()),
                    (_, StrMatch::Prefix(s)) if !s.is_empty() => Key::Prefix(s.clone()),
                    (_, StrMatch::Suffix(s)) if !s.is_empty() => Key::Suffix(s.clone()),
                    (Attr::Path, StrMatch::Template(t)) if !t.literal_prefix().is_empty() => {
                        Key::Prefix(t.literal_prefix().to_string())
                    }
                    _ => return None,
                };
                keys.push(k);
            }
        }
        Values::IssSub(_) | Values::Nothing => return None,
    }
    if keys.is_empty() { None } else { Some(keys) }
}

/// A necessary condition of the rule, on its most selective attribute.
fn anchor_of(body: &Body) -> Option<(Attr, Vec<Key>)> {
    let mut best: Option<(usize, Attr, Vec<Key>)> = None;
    let mut consider = |attr: &Attr, keys: Vec<Key>| {
        let Some(rank) = ANCHORS.iter().position(|a| a == attr) else {
            return;
        };
        if best.as_ref().is_none_or(|(r, _, _)| rank < *r) {
            best = Some((rank, attr.clone(), keys));
        }
    };
    for p in &body.when {
        if !p.negate
            && let Some(keys) = keys_of(&p.attr, &p.values)
        {
            consider(&p.attr, keys);
        }
    }
    for group in [&body.from, &body.to] {
        if group.is_empty() {
            continue;
        }
        for attr in ANCHORS {
            // Every alternative must require the attribute positively.
            let mut keys = Vec::new();
            let all = group.iter().all(|conj| {
                conj.iter()
                    .find(|p| !p.negate && p.attr == *attr)
                    .and_then(|p| keys_of(&p.attr, &p.values))
                    .map(|k| keys.extend(k))
                    .is_some()
            });
            if all {
                consider(attr, keys);
            }
        }
    }
    best.map(|(_, a, k)| (a, k))
}

impl RuleSet {
    /// The first rule of the set (in Envoy's order) that matches, by index lookup: its index
    /// in `rules`.
    pub(crate) fn first_match(
        &self,
        rules: &[CompiledRule],
        proto: Protocol,
        f: &Facts<'_>,
    ) -> Option<u32> {
        let idx = &self.index;
        let mut cand: Candidates = idx.always.iter().copied().collect();
        for (attr, s) in &idx.strs {
            lookup_str(f, attr, s, &mut cand);
        }
        for (attr, c) in &idx.cidrs {
            let ip = match attr {
                Attr::SourceIp => f.req.source.ip,
                Attr::RemoteIp => f.req.remote_ip(),
                Attr::DestinationIp => f.req.destination.ip,
                _ => None,
            };
            if let Some(ip) = ip {
                c.lookup(ip, &mut cand);
            }
        }
        if let Some(ids) = f.req.destination.port.and_then(|p| idx.ports.get(&p)) {
            cand.extend_from_slice(ids);
        }
        cand.sort_unstable();
        cand.dedup();
        cand.into_iter().find_map(|pos| {
            let id = *self.rules.get(pos as usize)?;
            let body = body_of(rules, id, proto)?;
            f.body_matches(body).then_some(id)
        })
    }
}

/// The request's value for an anchor attribute, looked up in a string index.
fn lookup_str(f: &Facts<'_>, attr: &Attr, idx: &StrIndex, out: &mut Candidates) {
    match attr {
        Attr::Path => idx.lookup(&f.path, out),
        Attr::Principal => {
            if let Some(p) = f.principal {
                idx.lookup(p, out);
            }
        }
        Attr::SourceNamespace => {
            for ns in f.namespaces() {
                idx.lookup(ns, out);
            }
        }
        Attr::Host => idx.lookup(&f.host, out),
        Attr::Sni => idx.lookup(f.req.sni.as_deref().unwrap_or(""), out),
        Attr::Method => {
            if let Some(h) = &f.req.http {
                idx.lookup(&h.method, out);
            }
        }
        _ => {}
    }
}

/// The rule set of `ids` on `proto`, sorted in Envoy's order and indexed.
pub(crate) fn build_set(rules: &[CompiledRule], ids: &[u32], proto: Protocol) -> RuleSet {
    let mut set: Vec<u32> = ids
        .iter()
        .copied()
        .filter(|id| body_of(rules, *id, proto).is_some())
        .collect();
    set.sort_by(|a, b| {
        let ra = rules.get(*a as usize).map(|r| r.rule.id.as_str());
        let rb = rules.get(*b as usize).map(|r| r.rule.id.as_str());
        ra.cmp(&rb)
    });
    set.dedup();
    let mut index = Index::default();
    for (pos, id) in set.iter().enumerate() {
        let pos = u32::try_from(pos).unwrap_or(u32::MAX);
        let anchor = body_of(rules, *id, proto).and_then(anchor_of);
        match anchor {
            None => index.always.push(pos),
            Some((attr, keys)) => {
                for key in keys {
                    match key {
                        Key::Port(p) => index.ports.entry(p).or_default().push(pos),
                        Key::Cidr(net) => {
                            let slot = match index.cidrs.iter_mut().find(|(a, _)| *a == attr) {
                                Some(s) => s,
                                None => {
                                    index.cidrs.push((attr.clone(), CidrIndex::default()));
                                    match index.cidrs.last_mut() {
                                        Some(s) => s,
                                        None => continue,
                                    }
                                }
                            };
                            slot.1.add(net, pos);
                        }
                        k => {
                            let slot = match index.strs.iter_mut().find(|(a, _)| *a == attr) {
                                Some(s) => s,
                                None => {
                                    index.strs.push((attr.clone(), StrIndex::default()));
                                    match index.strs.last_mut() {
                                        Some(s) => s,
                                        None => continue,
                                    }
                                }
                            };
                            slot.1.add(&k, pos);
                        }
                    }
                }
            }
        }
    }
    RuleSet { rules: set, index }
}

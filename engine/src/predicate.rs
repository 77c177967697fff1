//! What a compiled rule tests: predicates over request attributes ([`Pred`]), ORs of ANDs of
//! them ([`Body`]), and a request's attributes prepared once per decision ([`Facts`]) to test
//! them against.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::normalize::{normalize, strip_query};
use crate::options::Options;
use crate::pattern::StrMatch;
use crate::request::Request;

/// The request attribute a predicate tests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Attr {
    /// The peer certificate's URI SAN; false without mTLS.
    Principal,
    /// The namespace part of the peer principal (`…/ns/<ns>/…`); false without mTLS.
    SourceNamespace,
    /// The JWT `iss` and `sub` pair.
    RequestPrincipal,
    /// The direct peer address.
    SourceIp,
    /// The original client address.
    RemoteIp,
    /// The local (destination) address.
    DestinationIp,
    /// The local (destination) port.
    DestinationPort,
    /// `:authority`, lower-cased.
    Host,
    /// `:method`.
    Method,
    /// The normalised path without query.
    Path,
    /// A request header (lower-case name), each value separately.
    Header(String),
    /// A JWT claim by path: a string, or any string of a list.
    Claim(Vec<String>),
    /// The TLS SNI.
    Sni,
    /// Envoy dynamic metadata, which Palisade's hosts do not carry: never present.
    Missing,
}

impl Attr {
    pub(crate) fn http_only(&self) -> bool {
        matches!(
            self,
            Attr::RequestPrincipal
                | Attr::Host
                | Attr::Method
                | Attr::Path
                | Attr::Header(_)
                | Attr::Claim(_)
        )
    }
}

/// The values a predicate accepts (ORed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Values {
    /// String matchers.
    Str(Vec<StrMatch>),
    /// Address ranges.
    Cidr(Vec<IpNet>),
    /// Port numbers.
    Port(Vec<u16>),
    /// JWT `(iss, sub)` matcher pairs.
    IssSub(Vec<(StrMatch, StrMatch)>),
    /// Matches nothing (attribute never present).
    Nothing,
}

/// "The attribute matches one of the values", possibly negated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pred {
    /// What is tested.
    pub attr: Attr,
    /// The accepted values.
    pub values: Values,
    /// `not*` fields and `notValues`.
    pub negate: bool,
}

/// The compiled body of a rule: any `from` AND any `to` AND every `when`.
/// An empty `from`/`to` list means "any"; an empty inner AND is true.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// ORed sources, each an AND of predicates.
    pub from: Vec<Vec<Pred>>,
    /// ORed operations, each an AND of predicates.
    pub to: Vec<Vec<Pred>>,
    /// ANDed conditions.
    pub when: Vec<Pred>,
}

/// A request's values for one attribute (a header's values, a principal's namespaces, a
/// claim's strings): almost always one or two, kept inline.
type Strs<'a> = smallvec::SmallVec<[&'a str; 2]>;

/// A request's attributes, prepared once per decision.
#[derive(Debug)]
pub struct Facts<'r> {
    pub(crate) req: &'r Request,
    /// The JWT payload as the rules see it (after `jwt_authn`, see [`authn::authenticate`]).
    jwt: Option<std::borrow::Cow<'r, serde_json::Value>>,
    pub(crate) principal: Option<&'r str>,
    pub(crate) path: std::borrow::Cow<'r, str>,
    /// `:path` as a header condition sees it (normalised path and query), built on first use.
    path_header: std::cell::OnceCell<String>,
    pub(crate) host: std::borrow::Cow<'r, str>,
}

impl<'r> Facts<'r> {
    /// Prepares a request: normalises the path and lower-cases the host; `jwt` is the payload
    /// the rules see (after `jwt_authn`).
    pub(crate) fn with_jwt(
        req: &'r Request,
        options: &Options,
        jwt: Option<std::borrow::Cow<'r, serde_json::Value>>,
    ) -> Self {
        let principal = if req.is_mtls() {
            req.source.principal.as_deref()
        } else {
            None
        };
        let (path, host) = match &req.http {
            Some(h) => (
                normalize(strip_query(&h.path), options.path_normalization),
                if h.host.bytes().any(|b| b.is_ascii_uppercase()) {
                    std::borrow::Cow::Owned(h.host.to_ascii_lowercase())
                } else {
                    std::borrow::Cow::Borrowed(h.host.as_str())
                },
            ),
            None => (
                std::borrow::Cow::Borrowed(""),
                std::borrow::Cow::Borrowed(""),
            ),
        };
        Facts {
            req,
            jwt,
            principal,
            path,
            path_header: std::cell::OnceCell::new(),
            host,
        }
    }

    /// `:path` for a header condition: the normalised path with the query kept.
    fn path_header(&self) -> &str {
        self.path_header.get_or_init(|| {
            let full = self.req.http.as_ref().map_or("", |h| h.path.as_str());
            let query = full.get(strip_query(full).len()..).unwrap_or("");
            format!("{}{query}", self.path)
        })
    }

    fn header_values(&self, name: &str) -> Strs<'_> {
        let Some(h) = &self.req.http else {
            return Strs::new();
        };
        match name {
            ":method" => smallvec::smallvec![h.method.as_str()],
            ":path" => smallvec::smallvec![self.path_header()],
            ":authority" | "host" => smallvec::smallvec![h.host.as_str()],
            _ => h
                .headers
                .get(name)
                .map(|v| v.iter().map(String::as_str).collect())
                .unwrap_or_default(),
        }
    }

    pub(crate) fn namespaces(&self) -> Strs<'_> {
        let Some(p) = self.principal else {
            return Strs::new();
        };
        let mut out = Strs::new();
        let mut rest = p;
        while let Some(i) = rest.find("/ns/") {
            let after = rest.get(i + 4..).unwrap_or("");
            if let Some(end) = after.find('/') {
                out.push(after.get(..end).unwrap_or(""));
            }
            rest = after;
        }
        out
    }

    fn claim(&self, path: &[String]) -> Strs<'_> {
        let mut v = match &self.jwt {
            Some(j) => j.as_ref(),
            None => return Strs::new(),
        };
        for key in path {
            match v.get(key) {
                Some(next) => v = next,
                None => return Strs::new(),
            }
        }
        match v {
            serde_json::Value::String(s) => smallvec::smallvec![s.as_str()],
            serde_json::Value::Array(items) => items.iter().filter_map(|i| i.as_str()).collect(),
            _ => Strs::new(),
        }
    }

    fn matches(&self, p: &Pred) -> bool {
        self.test(p) != p.negate
    }

    fn test(&self, p: &Pred) -> bool {
        let any_str = |values: &[&str]| match &p.values {
            Values::Str(ms) => values.iter().any(|v| ms.iter().any(|m| m.matches(v))),
            _ => false,
        };
        let ip_in = |ip: Option<IpAddr>| match (&p.values, ip) {
            (Values::Cidr(nets), Some(ip)) => nets.iter().any(|n| n.contains(&ip)),
            _ => false,
        };
        match &p.attr {
            Attr::Principal => self.principal.is_some_and(|v| any_str(&[v])),
            Attr::SourceNamespace => self.principal.is_some_and(|v| any_str(&[v])),
            Attr::RequestPrincipal => {
                // `iss` and `sub` must be strings (a verifier rejects anything else).
                let string_claim = |k: &str| self.jwt.as_ref()?.get(k)?.as_str();
                match (&p.values, string_claim("iss"), string_claim("sub")) {
                    (Values::IssSub(pairs), Some(i), Some(s)) => {
                        pairs.iter().any(|(mi, ms)| mi.matches(i) && ms.matches(s))
                    }
                    _ => false,
                }
            }
            Attr::SourceIp => ip_in(self.req.source.ip),
            Attr::RemoteIp => ip_in(self.req.remote_ip()),
            Attr::DestinationIp => ip_in(self.req.destination.ip),
            Attr::DestinationPort => match (&p.values, self.req.destination.port) {
                (Values::Port(ports), Some(port)) => ports.contains(&port),
                _ => false,
            },
            Attr::Host => self.req.http.is_some() && any_str(&[self.host.as_ref()]),
            Attr::Method => self
                .req
                .http
                .as_ref()
                .is_some_and(|h| any_str(&[h.method.as_str()])),
            Attr::Path => self.req.http.is_some() && any_str(&[self.path.as_ref()]),
            Attr::Header(name) => any_str(&self.header_values(name)),
            Attr::Claim(path) => any_str(&self.claim(path)),
            Attr::Sni => any_str(&[self.req.sni.as_deref().unwrap_or("")]),
            Attr::Missing => false,
        }
    }

    pub(crate) fn body_matches(&self, b: &Body) -> bool {
        let conj = |c: &Vec<Pred>| c.iter().all(|p| self.matches(p));
        (b.from.is_empty() || b.from.iter().any(conj))
            && (b.to.is_empty() || b.to.iter().any(conj))
            && b.when.iter().all(|p| self.matches(p))
    }
}

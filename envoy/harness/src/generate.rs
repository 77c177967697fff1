//! Turning an input AuthorizationPolicy into probes (requests to send to both sides).
//!
//! For every attribute value in the policy the generator makes a matching and a non-matching
//! variant of a neutral baseline request (exact, `prefix*`, `*suffix` and `*` forms, path
//! templates, header presence, plaintext vs TLS vs mTLS). It also builds, for each rule and
//! each `from` × `to` pair, a request satisfying every drivable field at once (so ALLOW rules
//! really match end to end) and then mutates one field at a time: other matching values,
//! non-matching values, and values hitting the `not*` twin. That satisfying request and its
//! mutations are built twice: on the baseline, and on a *contrast* baseline where one field of
//! every other rule of the case is set to a value that keeps that rule from matching, so that
//! the rule under test alone decides (otherwise a broad ALLOW rule such as `methods: [GET]`
//! elsewhere in the case would allow every GET probe whatever the rule under test says).
//!
//! JWT attributes (`requestPrincipals`, `request.auth.principal`, `request.auth.audiences`,
//! `request.auth.presenter`, `request.auth.claims[..]`) are driven with HS256 tokens whose
//! claims the generator chooses (see [`crate::jwt`]): for each value a token that matches it,
//! tokens that miss it (near-miss issuer or subject, empty or missing `sub`, the other split of
//! a principal with several `/`, empty strings for `*`, list-valued claims that do or do not
//! contain a match, a nested claim flattened or put one level up, the claim missing) and no
//! token at all. Claims Envoy's JWT verification insists on typing (`iss`, `sub`, `jti` must be
//! strings, `exp`/`nbf`/`iat` numbers) only get values it accepts.
//!
//! Values a loopback test cannot produce are not varied and are listed per case in
//! [`Generated::undrivable`]: peer and destination addresses outside `127.0.0.0/8`,
//! `experimental.envoy.filters.*` metadata, methods that are not HTTP tokens, paths not
//! starting with `/`, and JWT attributes on TCP listeners (a TCP connection carries no token).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use serde_json::{Map, Value};

use crate::jwt::EXPIRY;

/// Which listener type a probe goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// HTTP/1.1 request.
    Http,
    /// TCP connection (first bytes).
    Tcp,
}

/// The peer's transport and identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// Plaintext.
    Plain,
    /// TLS without a client certificate.
    TlsNoCert,
    /// Mutual TLS with a client certificate whose URI SAN is this.
    Mtls(String),
}

/// A JWT claim value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Claim {
    /// A string.
    Str(String),
    /// A list of strings.
    List(Vec<String>),
}

impl Claim {
    fn to_json(&self) -> Value {
        match self {
            Claim::Str(s) => Value::String(s.clone()),
            Claim::List(l) => Value::Array(l.iter().cloned().map(Value::String).collect()),
        }
    }
}

/// The claims of a token: key path (top-level claim, then nested keys) to value. No path is
/// a prefix of another.
pub type Claims = BTreeMap<Vec<String>, Claim>;

/// One request to send to Envoy and to decide with the engine.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Probe {
    /// HTTP or TCP.
    pub kind: Kind,
    /// Destination port (a listener exists for each).
    pub port: u16,
    /// Source address (loopback).
    pub source_ip: Ipv4Addr,
    /// Transport and client identity.
    pub peer: Peer,
    /// SNI (sent only over TLS).
    pub sni: Option<String>,
    /// HTTP method.
    pub method: String,
    /// `Host`.
    pub host: String,
    /// Request target.
    pub path: String,
    /// Extra headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// `x-forwarded-for` (drives `remote.ip`).
    pub xff: Option<String>,
    /// The claims of the JWT sent as `Authorization: Bearer` (HTTP only); `None`: no token.
    pub jwt: Option<Claims>,
}

impl Probe {
    /// Whether the connection uses TLS.
    pub fn tls(&self) -> bool {
        !matches!(self.peer, Peer::Plain)
    }

    /// The token's payload: `exp` ([`EXPIRY`]) and the claims, nested paths as nested objects.
    pub fn jwt_payload(&self) -> Option<Value> {
        let claims = self.jwt.as_ref()?;
        let mut obj = Map::new();
        obj.insert("exp".into(), Value::from(EXPIRY));
        for (path, claim) in claims {
            insert_path(&mut obj, path, claim.to_json());
        }
        Some(Value::Object(obj))
    }

    /// A one-line description.
    pub fn describe(&self) -> String {
        let peer = match &self.peer {
            Peer::Plain => "plaintext".to_string(),
            Peer::TlsNoCert => "tls(no cert)".to_string(),
            Peer::Mtls(p) => format!("mtls({p})"),
        };
        let sni = self
            .sni
            .as_ref()
            .map(|s| format!(" sni={s}"))
            .unwrap_or_default();
        match self.kind {
            Kind::Tcp => format!("tcp :{} from {} {peer}{sni}", self.port, self.source_ip),
            Kind::Http => {
                let mut s = format!(
                    "{} {} host={} :{} from {} {peer}{sni}",
                    self.method, self.path, self.host, self.port, self.source_ip
                );
                for (k, v) in &self.headers {
                    s.push_str(&format!(" {k}={v}"));
                }
                if let Some(x) = &self.xff {
                    s.push_str(&format!(" xff={x}"));
                }
                if let Some(p) = self.jwt_payload() {
                    s.push_str(&format!(" jwt={p}"));
                }
                s
            }
        }
    }
}

fn insert_path(obj: &mut Map<String, Value>, path: &[String], v: Value) {
    match path {
        [] => {}
        [k] => {
            obj.insert(k.clone(), v);
        }
        [k, rest @ ..] => {
            let e = obj
                .entry(k.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !e.is_object() {
                *e = Value::Object(Map::new());
            }
            if let Value::Object(m) = e {
                insert_path(m, rest, v);
            }
        }
    }
}

/// The probes for a case and what could not be driven.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    /// Deduplicated probes.
    pub probes: Vec<Probe>,
    /// Every destination port used (one listener each).
    pub ports: BTreeSet<u16>,
    /// Attributes (field or key, with the value) that were not varied, and why.
    pub undrivable: BTreeSet<String>,
}

/// A port no policy in the corpus names.
pub const NEUTRAL_PORT: u16 = 7070;

/// Trust domains used to spell identities (the case's own first, then its aliases).
#[derive(Debug, Clone)]
pub struct Context {
    /// The mesh trust domain.
    pub trust_domain: String,
    /// Its aliases.
    pub aliases: Vec<String>,
}

/// One drivable dimension of a request and a value for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Set {
    Peer(Peer),
    Method(String),
    Host(String),
    Path(String),
    Port(u16),
    Header(String, Option<String>),
    Sni(Option<String>),
    Xff(Option<String>),
    SourceIp(Ipv4Addr),
    /// Send a token with these claims set (`Some`) or removed (`None`), the other claims
    /// staying as they are.
    Jwt(Vec<(Vec<String>, Option<Claim>)>),
    /// Send no token.
    NoJwt,
}

impl Set {
    /// Which dimensions it sets (two settings of one dimension conflict). A JWT claim's
    /// dimension is its top-level key.
    fn dims(&self) -> Vec<String> {
        let one = |d: String| vec![d];
        match self {
            Set::Peer(_) => one("peer".into()),
            Set::Method(_) => one("method".into()),
            Set::Host(_) => one("host".into()),
            Set::Path(_) => one("path".into()),
            Set::Port(_) => one("port".into()),
            Set::Header(n, _) => one(format!("header:{n}")),
            Set::Sni(_) => one("sni".into()),
            Set::Xff(_) => one("xff".into()),
            Set::SourceIp(_) => one("source-ip".into()),
            Set::Jwt(claims) => claims
                .iter()
                .map(|(p, _)| format!("jwt:{}", p.first().map(String::as_str).unwrap_or("")))
                .collect(),
            Set::NoJwt => one("jwt".into()),
        }
    }

    /// Whether the two cannot both be applied (one would undo the other).
    fn conflicts(&self, other: &Set) -> bool {
        let token = |s: &Set| matches!(s, Set::Jwt(_) | Set::NoJwt);
        if (matches!(self, Set::NoJwt) && token(other))
            || (matches!(other, Set::NoJwt) && token(self))
        {
            return true;
        }
        let mine = self.dims();
        other.dims().iter().any(|d| mine.contains(d))
    }
}

/// The JWT settings for a request principal: `iss` and `sub` (`None`: claim absent).
fn rp(iss: Option<&str>, sub: Option<&str>) -> Set {
    let c = |v: Option<&str>| v.map(|s| Claim::Str(s.to_string()));
    Set::Jwt(vec![
        (vec!["iss".into()], c(iss)),
        (vec!["sub".into()], c(sub)),
    ])
}

/// A principal string `iss/sub` split at its last `/`; without `/` it is all issuer and the
/// subject is empty.
fn rp_split(s: &str) -> Set {
    match s.rsplit_once('/') {
        Some((iss, sub)) => rp(Some(iss), Some(sub)),
        None => rp(Some(s), Some("")),
    }
}

/// `request.auth.claims[a][b]` → `[a, b]`.
fn claim_path(key: &str) -> Option<Vec<String>> {
    let mut rest = key.strip_prefix("request.auth.claims")?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (k, after) = rest.strip_prefix('[')?.split_once(']')?;
        if k.is_empty() {
            return None;
        }
        out.push(k.to_string());
        rest = after;
    }
    (!out.is_empty()).then_some(out)
}

/// One field of a rule: settings that match it and settings that do not.
#[derive(Debug, Clone, Default)]
struct Field {
    matching: Vec<Set>,
    non_matching: Vec<Set>,
}

/// A `from`/`to`/`when` field of a rule with its positive and negated values.
#[derive(Debug, Clone, Default)]
struct RuleField {
    positive: Option<Field>,
    negative: Option<Field>,
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| match x {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Strings matching an Istio string pattern (exact, `p*`, `*s`, `*`).
fn matching(v: &str, filler: &str) -> Vec<String> {
    if v == "*" {
        vec![filler.to_string()]
    } else if let Some(p) = v.strip_suffix('*') {
        vec![p.to_string(), format!("{p}{filler}")]
    } else if let Some(s) = v.strip_prefix('*') {
        vec![s.to_string(), format!("{filler}{s}")]
    } else {
        vec![v.to_string()]
    }
}

/// Strings not matching an Istio string pattern (none for `*`).
fn non_matching(v: &str, filler: &str) -> Vec<String> {
    if v == "*" {
        vec![]
    } else if let Some(p) = v.strip_suffix('*') {
        vec![format!("{filler}{p}")]
    } else if let Some(s) = v.strip_prefix('*') {
        vec![format!("{s}{filler}")]
    } else {
        vec![format!("{v}{filler}"), format!("{filler}{v}")]
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn spiffe(td: &str, ns: &str, sa: &str) -> Peer {
    Peer::Mtls(format!("spiffe://{td}/ns/{ns}/sa/{sa}"))
}

/// Everything the generator needs while walking one case.
struct Walker<'a> {
    ctx: &'a Context,
    kind: Kind,
    undrivable: BTreeSet<String>,
}

impl Walker<'_> {
    fn tds(&self) -> Vec<String> {
        let mut v = vec![self.ctx.trust_domain.clone()];
        v.extend(self.ctx.aliases.iter().cloned());
        if !v.iter().any(|t| t == "cluster.local") {
            v.push("cluster.local".into());
        }
        v.push("other-td".into());
        v
    }

    /// Principal values (`cluster.local/ns/x/sa/y`, wildcards) to peers.
    fn principal_field(&self, values: &[String]) -> Field {
        let mut f = Field::default();
        let tds = self.tds();
        for v in values {
            let mut m: Vec<String> = matching(v, "any-td/ns/foo/sa/any");
            // The same identity under every trust domain (aliases are migrated).
            for td in &tds {
                if let Some(rest) = v.strip_prefix(&format!("{td}/")) {
                    for other in &tds {
                        m.push(format!("{other}/{rest}"));
                    }
                }
            }
            f.matching.extend(
                m.into_iter()
                    .map(|p| Set::Peer(Peer::Mtls(format!("spiffe://{p}")))),
            );
            f.non_matching.extend(
                non_matching(v, "x")
                    .into_iter()
                    .map(|p| Set::Peer(Peer::Mtls(format!("spiffe://{p}")))),
            );
            if v == "*" {
                f.non_matching.push(Set::Peer(Peer::TlsNoCert));
            }
        }
        f.non_matching.push(Set::Peer(Peer::Plain));
        f
    }

    fn namespace_field(&self, values: &[String]) -> Field {
        let mut f = Field::default();
        let td = self.ctx.trust_domain.clone();
        for v in values {
            for m in matching(v, "x") {
                f.matching.push(Set::Peer(spiffe(&td, &m, "default")));
            }
            for m in non_matching(v, "x") {
                f.non_matching.push(Set::Peer(spiffe(&td, &m, "default")));
            }
        }
        f.non_matching.push(Set::Peer(Peer::Plain));
        f.non_matching.push(Set::Peer(Peer::TlsNoCert));
        f
    }

    fn service_account_field(&self, values: &[String]) -> Field {
        let mut f = Field::default();
        for v in values {
            let (ns, sa) = v.split_once('/').unwrap_or(("foo", v.as_str()));
            for td in self.tds() {
                f.matching.push(Set::Peer(spiffe(&td, ns, sa)));
            }
            f.matching.push(Set::Peer(Peer::Mtls(format!(
                "spiffe://{}/ns/{ns}/extra/sa/{sa}",
                self.ctx.trust_domain
            ))));
            f.non_matching.push(Set::Peer(spiffe(
                &self.ctx.trust_domain,
                ns,
                &format!("{sa}x"),
            )));
            f.non_matching.push(Set::Peer(spiffe(
                &self.ctx.trust_domain,
                &format!("{ns}x"),
                sa,
            )));
        }
        f.non_matching.push(Set::Peer(Peer::Plain));
        f
    }

    fn trust_domain_field(&self, values: &[String]) -> Field {
        let mut f = Field::default();
        for v in values {
            for m in matching(v, "x") {
                f.matching.push(Set::Peer(spiffe(&m, "foo", "sa")));
            }
            for m in non_matching(v, "x") {
                f.non_matching.push(Set::Peer(spiffe(&m, "foo", "sa")));
            }
        }
        f.non_matching.push(Set::Peer(Peer::Plain));
        f
    }

    fn string_field(
        &mut self,
        what: &str,
        values: &[String],
        make: impl Fn(String) -> Set,
        valid: impl Fn(&str) -> bool,
    ) -> Field {
        let mut f = Field::default();
        for v in values {
            let m = matching(v, "x");
            if m.iter().all(|s| !valid(s)) {
                self.undrivable
                    .insert(format!("{what} `{v}`: cannot be sent on the wire"));
            }
            f.matching
                .extend(m.into_iter().filter(|s| valid(s)).map(&make));
            f.non_matching.extend(
                non_matching(v, "x")
                    .into_iter()
                    .filter(|s| valid(s))
                    .map(&make),
            );
        }
        f
    }

    fn method_field(&mut self, values: &[String]) -> Field {
        let mut f = self.string_field("method", values, Set::Method, is_token);
        if values.iter().any(|v| v == "*") && f.matching.is_empty() {
            f.matching.push(Set::Method("GET".into()));
        }
        f.non_matching.push(Set::Method("PATCH".into()));
        f
    }

    fn host_field(&mut self, values: &[String]) -> Field {
        let mut f = self.string_field("host", values, Set::Host, |s| {
            !s.is_empty() && !s.contains(char::is_whitespace)
        });
        let extra: Vec<Set> = f
            .matching
            .iter()
            .filter_map(|s| match s {
                Set::Host(h) => Some(Set::Host(h.to_ascii_uppercase())),
                _ => None,
            })
            .collect();
        f.matching.extend(extra);
        let ported: Vec<Set> = f
            .matching
            .iter()
            .filter_map(|s| match s {
                Set::Host(h) => Some(Set::Host(format!("{h}:80"))),
                _ => None,
            })
            .take(2)
            .collect();
        // `host:port` may or may not match: both sides must agree either way.
        f.non_matching.extend(ported);
        f
    }

    fn path_field(&mut self, values: &[String]) -> Field {
        let mut f = Field::default();
        for v in values {
            let (m, n): (Vec<String>, Vec<String>) = if v.contains('{') {
                (
                    vec![
                        v.replace("{**}", "a/b").replace("{*}", "seg"),
                        v.replace("{**}", "z").replace("{*}", "seg"),
                    ],
                    vec![
                        v.replace("{**}", "a/b").replace("{*}", "a/b"),
                        v.replace("/{**}", "").replace("{*}", ""),
                    ],
                )
            } else if v == "*" {
                (vec!["/anything".into()], vec![])
            } else {
                (matching(v, "/x"), non_matching(v, "x"))
            };
            if !m.iter().any(|p| p.starts_with('/')) {
                self.undrivable
                    .insert(format!("path `{v}`: does not start with `/`"));
            }
            for p in m.into_iter().filter(|p| p.starts_with('/')) {
                f.matching.push(Set::Path(format!("{p}?q=1")));
                f.matching.push(Set::Path(format!("/norm/..{p}")));
                f.matching.push(Set::Path(p));
            }
            f.non_matching
                .extend(n.into_iter().filter(|p| p.starts_with('/')).map(Set::Path));
        }
        f
    }

    fn port_field(&mut self, values: &[String]) -> Field {
        let mut f = Field::default();
        for v in values {
            match v.parse::<u16>() {
                Ok(p) if p != 0 => f.matching.push(Set::Port(p)),
                _ => {
                    self.undrivable.insert(format!("port `{v}`: not a port"));
                }
            }
        }
        f.non_matching.push(Set::Port(NEUTRAL_PORT));
        f
    }

    fn header_field(&mut self, name: &str, values: &[String]) -> Field {
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            ":method" => return self.method_field(values),
            ":authority" | "host" => return self.host_field(values),
            _ if name.starts_with(':') => {
                self.undrivable
                    .insert(format!("request.headers[{name}]: pseudo-header"));
                return Field::default();
            }
            _ => {}
        }
        let mut f = Field::default();
        for v in values {
            for m in matching(v, "x") {
                f.matching.push(Set::Header(name.clone(), Some(m)));
            }
            for m in non_matching(v, "x") {
                f.non_matching.push(Set::Header(name.clone(), Some(m)));
            }
        }
        f.non_matching.push(Set::Header(name, None));
        f
    }

    fn sni_field(&mut self, values: &[String]) -> Field {
        let valid = |s: &str| rustls::pki_types::ServerName::try_from(s.to_string()).is_ok();
        let mut f = self.string_field("sni", values, |s| Set::Sni(Some(s)), valid);
        f.non_matching.push(Set::Sni(None));
        f
    }

    /// CIDR or address values: `remote.ip` via XFF (HTTP only), `source.ip` only inside 127/8.
    fn ip_field(&mut self, what: &str, values: &[String], remote: bool) -> Field {
        let mut f = Field::default();
        for v in values {
            let (addr, len) = match v.split_once('/') {
                Some((a, l)) => (a.to_string(), l.parse::<u8>().unwrap_or(32)),
                None => (v.clone(), 32),
            };
            let Ok(IpAddr::V4(a)) = addr.parse::<IpAddr>() else {
                self.undrivable
                    .insert(format!("{what} `{v}`: not an IPv4 address"));
                continue;
            };
            let inside = if len == 32 {
                a
            } else {
                Ipv4Addr::from(u32::from(a).saturating_add(1))
            };
            if remote && self.kind == Kind::Http {
                f.matching.push(Set::Xff(Some(inside.to_string())));
            } else if a.is_loopback() && !remote {
                f.matching.push(Set::SourceIp(inside));
            } else {
                self.undrivable.insert(format!(
                    "{what} `{v}`: the peer address is loopback{}",
                    if remote {
                        " (no x-forwarded-for on TCP)"
                    } else {
                        ""
                    }
                ));
            }
        }
        if remote && self.kind == Kind::Http {
            f.non_matching.push(Set::Xff(Some("203.0.113.7".into())));
            f.non_matching.push(Set::Xff(None));
        }
        f
    }

    /// `requestPrincipals` / `request.auth.principal` values (`iss/sub`, split at the last
    /// `/`; `p*`, `*s`, `*`) to tokens.
    fn request_principal_field(&self, values: &[String]) -> Field {
        let mut f = Field::default();
        for v in values {
            if v == "*" {
                f.matching.push(rp(Some("issuer"), Some("subject")));
                f.matching
                    .push(rp(Some("https://issuer.example.com"), Some("subject")));
                f.non_matching.push(rp(Some("issuer"), Some("")));
                f.non_matching.push(rp(Some(""), Some("subject")));
                f.non_matching.push(rp(None, Some("subject")));
                f.non_matching.push(rp(Some("issuer"), None));
            } else if let Some(p) = v.strip_suffix('*') {
                if p.contains('/') {
                    f.matching.push(rp_split(&format!("{p}x")));
                    f.non_matching.push(rp_split(p));
                    f.non_matching.push(rp_split(&format!("{p}x/y")));
                    f.non_matching.push(rp_split(&format!("x{p}x")));
                } else {
                    f.matching.push(rp_split(&format!("{p}x/subject")));
                    f.matching.push(rp(Some(p), Some("subject")));
                    f.non_matching.push(rp(Some(&format!("{p}x")), Some("")));
                    f.non_matching.push(rp(Some(&format!("{p}x")), None));
                    f.non_matching.push(rp_split(&format!("x{p}/subject")));
                }
            } else if let Some(sfx) = v.strip_prefix('*') {
                if sfx.contains('/') {
                    f.matching.push(rp_split(&format!("issuer{sfx}")));
                    f.non_matching.push(rp_split(&format!("issuer{sfx}x")));
                    f.non_matching.push(rp_split(&format!("issuer/x{sfx}")));
                } else {
                    f.matching.push(rp_split(&format!("issuer/x{sfx}")));
                    f.matching.push(rp(Some("issuer"), Some(sfx)));
                    f.non_matching
                        .push(rp(Some("issuer"), Some(&format!("{sfx}x"))));
                    f.non_matching.push(rp(Some(sfx), Some("")));
                    f.non_matching.push(rp(Some(""), Some(&format!("x{sfx}"))));
                    f.non_matching.push(rp(None, Some(&format!("x{sfx}"))));
                }
            } else {
                f.matching.push(rp_split(v));
                f.non_matching.push(rp_split(&format!("{v}x")));
                f.non_matching.push(rp_split(&format!("x{v}")));
                if let Some((iss, sub)) = v.rsplit_once('/') {
                    f.non_matching.push(rp(Some(iss), Some("")));
                    f.non_matching.push(rp(Some(iss), None));
                    f.non_matching.push(rp(Some(v), Some("")));
                    f.non_matching
                        .push(rp(Some(iss), Some(&format!("{sub}/x"))));
                    if let Some((first_iss, first_sub)) = v.split_once('/')
                        && first_iss != iss
                    {
                        f.non_matching.push(rp(Some(first_iss), Some(first_sub)));
                    }
                } else {
                    f.non_matching.push(rp(Some(v), None));
                    f.non_matching.push(rp(Some(v), Some("x")));
                    f.non_matching.push(rp(Some(v), Some("/")));
                }
            }
        }
        f.non_matching.push(Set::NoJwt);
        f
    }

    /// `request.auth.audiences` (`aud`), `request.auth.presenter` (`azp`) and
    /// `request.auth.claims[..]` values to tokens: string claims, lists with and without a
    /// match, empty strings and lists, the claim missing, nested claims misplaced, no token.
    fn claim_field(&mut self, key: &str, path: &[String], values: &[String]) -> Option<Field> {
        let top = path.first().map(String::as_str).unwrap_or("");
        if path.len() == 1 && ["exp", "nbf", "iat"].contains(&top) {
            self.undrivable.insert(format!(
                "{key}: Envoy verifies `{top}` as a time (a number), Istio matches strings"
            ));
            return None;
        }
        // Envoy rejects tokens whose `iss`, `sub` or `jti` is not a string.
        let lists = !(path.len() == 1 && ["iss", "sub", "jti"].contains(&top));
        let set = |c: Option<Claim>| Set::Jwt(vec![(path.to_vec(), c)]);
        let str_set = |s: &str| set(Some(Claim::Str(s.to_string())));
        let list_set =
            |l: &[&str]| set(Some(Claim::List(l.iter().map(|s| s.to_string()).collect())));
        let mut f = Field::default();
        for v in values {
            for m in matching(v, "x") {
                f.matching.push(str_set(&m));
                if lists {
                    f.matching.push(list_set(&[&m]));
                    f.matching.push(list_set(&["other", &m]));
                }
            }
            for n in non_matching(v, "x") {
                f.non_matching.push(str_set(&n));
                if lists {
                    f.non_matching.push(list_set(&[&n, "y"]));
                }
            }
            if v == "*" {
                f.non_matching.push(str_set(""));
                if lists {
                    f.non_matching.push(list_set(&[""]));
                    f.non_matching.push(list_set(&[]));
                }
            }
            if path.len() > 1
                && let Some(m) = matching(v, "x").into_iter().next()
            {
                // The value one level up, and under the dotted key.
                for misplaced in [vec![top.to_string()], vec![path.join(".")]] {
                    f.non_matching.push(Set::Jwt(vec![
                        (path.to_vec(), None),
                        (misplaced, Some(Claim::Str(m.clone()))),
                    ]));
                }
            }
        }
        f.non_matching.push(set(None));
        f.non_matching.push(Set::NoJwt);
        Some(f)
    }

    /// A JWT attribute: driven on HTTP, impossible on TCP.
    fn jwt_field(&mut self, key: &str, values: &[String]) -> Option<Field> {
        if self.kind == Kind::Tcp {
            self.undrivable
                .insert(format!("{key}: HTTP-only, a TCP connection carries no JWT"));
            return None;
        }
        match key {
            "requestPrincipals" | "request.auth.principal" => {
                Some(self.request_principal_field(values))
            }
            "request.auth.audiences" => self.claim_field(key, &["aud".into()], values),
            "request.auth.presenter" => self.claim_field(key, &["azp".into()], values),
            _ => match claim_path(key) {
                Some(path) => self.claim_field(key, &path, values),
                None => {
                    self.undrivable
                        .insert(format!("{key}: not a request.auth key the harness knows"));
                    None
                }
            },
        }
    }

    /// A `source` or `operation` key (or a `when` key) with its values.
    fn field(&mut self, key: &str, values: &[String]) -> Option<Field> {
        let f = match key {
            "principals" | "source.principal" => self.principal_field(values),
            "namespaces" | "source.namespace" => self.namespace_field(values),
            "serviceAccounts" | "source.serviceAccount" => self.service_account_field(values),
            "trustDomains" | "source.trustDomain" => self.trust_domain_field(values),
            "methods" => self.method_field(values),
            "hosts" => self.host_field(values),
            "paths" => self.path_field(values),
            "ports" | "destination.port" => self.port_field(values),
            "connection.sni" => self.sni_field(values),
            "ipBlocks" | "source.ip" => self.ip_field(key, values, false),
            "remoteIpBlocks" | "remote.ip" => self.ip_field(key, values, true),
            "requestPrincipals" => return self.jwt_field(key, values),
            _ if key.starts_with("request.auth.") => return self.jwt_field(key, values),
            _ => {
                if let Some(name) = key
                    .strip_prefix("request.headers[")
                    .and_then(|k| k.strip_suffix(']'))
                {
                    self.header_field(name, values)
                } else {
                    let why = if key == "destination.ip" {
                        "the destination is a loopback listener"
                    } else if key.starts_with("experimental.") {
                        "needs filter metadata no filter sets"
                    } else {
                        "not supported by the harness"
                    };
                    self.undrivable.insert(format!("{key}: {why}"));
                    return None;
                }
            }
        };
        Some(f)
    }
}

fn rule_fields(w: &mut Walker<'_>, obj: Option<&Value>) -> Vec<RuleField> {
    let Some(map) = obj.and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut out: BTreeMap<String, RuleField> = BTreeMap::new();
    for (k, v) in map {
        let values = str_list(v);
        let (base, negative) = match k.strip_prefix("not") {
            Some(rest) => {
                let mut c = rest.chars();
                let first = c.next().map(|c| c.to_ascii_lowercase()).unwrap_or_default();
                (format!("{first}{}", c.as_str()), true)
            }
            None => (k.clone(), false),
        };
        if let Some(f) = w.field(&base, &values) {
            let e = out.entry(base).or_default();
            if negative {
                e.negative = Some(f);
            } else {
                e.positive = Some(f);
            }
        }
    }
    out.into_values().collect()
}

fn when_fields(w: &mut Walker<'_>, when: Option<&Value>) -> Vec<RuleField> {
    let mut out = Vec::new();
    for c in when.and_then(Value::as_array).into_iter().flatten() {
        let key = c.get("key").and_then(Value::as_str).unwrap_or_default();
        let mut rf = RuleField::default();
        if let Some(v) = c.get("values") {
            rf.positive = w.field(key, &str_list(v));
        }
        if let Some(v) = c.get("notValues") {
            rf.negative = w.field(key, &str_list(v));
        }
        if rf.positive.is_some() || rf.negative.is_some() {
            out.push(rf);
        }
    }
    out
}

fn baseline(kind: Kind) -> Probe {
    Probe {
        kind,
        port: NEUTRAL_PORT,
        source_ip: Ipv4Addr::LOCALHOST,
        peer: Peer::Plain,
        sni: None,
        method: "GET".into(),
        host: "httpbin.foo.svc.cluster.local".into(),
        path: "/".into(),
        headers: Vec::new(),
        xff: None,
        jwt: None,
    }
}

fn apply(mut p: Probe, sets: &[&Set]) -> Probe {
    for s in sets {
        match s {
            Set::Peer(peer) => p.peer = peer.clone(),
            Set::Method(m) => p.method = m.clone(),
            Set::Host(h) => p.host = h.clone(),
            Set::Path(x) => p.path = x.clone(),
            Set::Port(n) => p.port = *n,
            Set::Header(n, v) => {
                p.headers.retain(|(k, _)| k != n);
                if let Some(v) = v {
                    p.headers.push((n.clone(), v.clone()));
                }
            }
            Set::Sni(s) => p.sni = s.clone(),
            Set::Xff(x) => p.xff = x.clone(),
            Set::SourceIp(ip) => p.source_ip = *ip,
            Set::Jwt(entries) => {
                let claims = p.jwt.get_or_insert_with(Claims::new);
                for (path, claim) in entries {
                    claims.retain(|k, _| !(k.starts_with(path) || path.starts_with(k)));
                    if let Some(c) = claim {
                        claims.insert(path.clone(), c.clone());
                    }
                }
            }
            Set::NoJwt => p.jwt = None,
        }
    }
    // SNI needs TLS.
    if p.sni.is_some() && p.peer == Peer::Plain {
        p.peer = Peer::TlsNoCert;
    }
    if p.kind == Kind::Tcp {
        let b = baseline(Kind::Tcp);
        p.method = b.method;
        p.host = b.host;
        p.path = b.path;
        p.headers.clear();
        p.xff = None;
        p.jwt = None;
    }
    p.headers.sort();
    p
}

/// Generates the probes for one input policy file (all its documents).
pub fn generate(policies: &[Value], kind: Kind, ctx: &Context) -> Generated {
    let mut w = Walker {
        ctx,
        kind,
        undrivable: BTreeSet::new(),
    };
    let mut probes: BTreeSet<Probe> = BTreeSet::new();
    let base = baseline(kind);
    // The fields of every rule, one entry per `from` × `to` pair.
    let mut combos: Vec<Vec<RuleField>> = Vec::new();
    // Neutral connections.
    for peer in [
        Peer::Plain,
        Peer::TlsNoCert,
        spiffe(&ctx.trust_domain, "foo", "default"),
    ] {
        probes.insert(apply(base.clone(), &[&Set::Peer(peer)]));
    }
    for policy in policies {
        let rules = policy
            .pointer("/spec/rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for rule in &rules {
            let froms: Vec<Option<&Value>> = match rule.get("from").and_then(Value::as_array) {
                Some(a) if !a.is_empty() => a.iter().map(|f| f.get("source")).collect(),
                _ => vec![None],
            };
            let tos: Vec<Option<&Value>> = match rule.get("to").and_then(Value::as_array) {
                Some(a) if !a.is_empty() => a.iter().map(|t| t.get("operation")).collect(),
                _ => vec![None],
            };
            let when = when_fields(&mut w, rule.get("when"));
            for from in &froms {
                let from_fields = rule_fields(&mut w, *from);
                for to in &tos {
                    let mut fields = from_fields.clone();
                    fields.extend(rule_fields(&mut w, *to));
                    fields.extend(when.iter().cloned());
                    combos.push(fields);
                }
            }
        }
    }
    for (i, fields) in combos.iter().enumerate() {
        single_probes(&base, fields, &mut probes);
        let chosen = choose(fields);
        satisfying_probes(&base, fields, &chosen, &mut probes);
        let others: Vec<&[RuleField]> = combos
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, f)| f.as_slice())
            .collect();
        let breakers = contrast(&others, &chosen);
        if !breakers.is_empty() {
            let refs: Vec<&Set> = breakers.iter().collect();
            let contrast_base = apply(base.clone(), &refs);
            satisfying_probes(&contrast_base, fields, &chosen, &mut probes);
        }
    }
    let ports = probes.iter().map(|p| p.port).collect();
    Generated {
        probes: probes.into_iter().collect(),
        ports,
        undrivable: w.undrivable,
    }
}

/// Each value of each field alone on the baseline.
fn single_probes(base: &Probe, fields: &[RuleField], out: &mut BTreeSet<Probe>) {
    for rf in fields {
        for f in rf.positive.iter().chain(rf.negative.iter()) {
            for s in f.matching.iter().chain(f.non_matching.iter()) {
                out.insert(apply(base.clone(), &[s]));
            }
        }
    }
}

/// Settings that each keep one of `others` (the fields of the other rules) from matching:
/// per rule the first setting (a non-matching value of a positive field, or a matching value
/// of a negated one) that neither undoes an earlier pick nor touches what `keep` (the rule
/// under test's choice) sets. A rule with no such setting is left alone.
fn contrast(others: &[&[RuleField]], keep: &[&Set]) -> Vec<Set> {
    let mut out: Vec<Set> = Vec::new();
    for fields in others {
        let mut candidates = fields.iter().flat_map(|rf| {
            rf.positive
                .iter()
                .flat_map(|f| f.non_matching.iter())
                .chain(rf.negative.iter().flat_map(|f| f.matching.iter()))
        });
        if let Some(s) = candidates.find(|s| {
            out.contains(s)
                || (!out.iter().any(|c| c.conflicts(s)) && !keep.iter().any(|k| k.conflicts(s)))
        }) && !out.contains(s)
        {
            out.push(s.clone());
        }
    }
    out
}

/// One matching value per positive field, for a request satisfying the whole rule.
fn choose(fields: &[RuleField]) -> Vec<&Set> {
    // One matching value per positive field (first one that does not undo an earlier choice,
    // or that was already chosen), avoiding values the field's negated twin names.
    let mut chosen: Vec<&Set> = Vec::new();
    for rf in fields {
        if let Some(pos) = &rf.positive {
            let neg: Vec<&Set> = rf.negative.iter().flat_map(|n| n.matching.iter()).collect();
            if let Some(s) = pos.matching.iter().find(|s| {
                !neg.contains(s) && (chosen.contains(s) || !chosen.iter().any(|c| c.conflicts(s)))
            }) && !chosen.contains(&s)
            {
                chosen.push(s);
            }
        }
    }
    chosen
}

/// The request satisfying the rule (`chosen` on `base`) and its one-field mutations.
fn satisfying_probes(
    base: &Probe,
    fields: &[RuleField],
    chosen: &[&Set],
    out: &mut BTreeSet<Probe>,
) {
    let satisfying = apply(base.clone(), chosen);
    out.insert(satisfying);
    for rf in fields {
        for f in rf.positive.iter().chain(rf.negative.iter()) {
            for s in f.matching.iter().chain(f.non_matching.iter()) {
                let mut sets: Vec<&Set> =
                    chosen.iter().copied().filter(|c| !c.conflicts(s)).collect();
                sets.push(s);
                out.insert(apply(base.clone(), &sets));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        Context {
            trust_domain: "cluster.local".into(),
            aliases: vec![],
        }
    }

    #[test]
    fn wildcard_forms_give_matching_and_non_matching_strings() {
        assert_eq!(matching("abc*", "x"), ["abc", "abcx"]);
        assert_eq!(non_matching("abc*", "x"), ["xabc"]);
        assert_eq!(matching("*abc", "x"), ["abc", "xabc"]);
        assert_eq!(non_matching("*abc", "x"), ["abcx"]);
        assert_eq!(matching("*", "x"), ["x"]);
        assert!(non_matching("*", "x").is_empty());
        assert_eq!(non_matching("abc", "x"), ["abcx", "xabc"]);
    }

    #[test]
    fn a_rule_yields_a_request_satisfying_all_its_fields_at_once() {
        let policy = json!({"spec": {"rules": [{
            "from": [{"source": {"principals": ["cluster.local/ns/a/sa/b"]}}],
            "to": [{"operation": {"methods": ["POST"], "paths": ["/x"], "ports": ["8080"]}}],
            "when": [{"key": "request.headers[X-A]", "values": ["v"]}],
        }]}});
        let g = generate(&[policy], Kind::Http, &ctx());
        assert!(g.probes.iter().any(|p| p.method == "POST"
            && p.path == "/x"
            && p.port == 8080
            && p.peer == Peer::Mtls("spiffe://cluster.local/ns/a/sa/b".into())
            && p.headers == [("x-a".to_string(), "v".to_string())]));
        assert!(g.ports.contains(&8080) && g.ports.contains(&NEUTRAL_PORT));
        assert!(g.undrivable.is_empty(), "{:?}", g.undrivable);
    }

    #[test]
    fn foreign_addresses_are_reported_not_varied_and_jwts_are_driven() {
        let policy = json!({"spec": {"rules": [{
            "from": [{"source": {"requestPrincipals": ["i/s"], "ipBlocks": ["10.0.0.1"]}}],
        }]}});
        let g = generate(&[policy], Kind::Http, &ctx());
        assert_eq!(g.undrivable.len(), 1, "{:?}", g.undrivable);
        assert!(g.undrivable.iter().all(|u| u.starts_with("ipBlocks")));
        let payloads: Vec<Value> = g.probes.iter().filter_map(Probe::jwt_payload).collect();
        let has = |p: Value| payloads.contains(&p);
        assert!(has(json!({"iss": "i", "sub": "s", "exp": EXPIRY})));
        assert!(has(json!({"iss": "i", "sub": "sx", "exp": EXPIRY})));
        assert!(has(json!({"iss": "i", "exp": EXPIRY})));
        assert!(g.probes.iter().any(|p| p.jwt.is_none()));
    }

    #[test]
    fn jwt_attributes_on_tcp_are_reported() {
        let policy = json!({"spec": {"rules": [{
            "from": [{"source": {"requestPrincipals": ["i/s"]}}],
            "when": [{"key": "request.auth.audiences", "values": ["a"]}],
        }]}});
        let g = generate(&[policy], Kind::Tcp, &ctx());
        assert_eq!(g.undrivable.len(), 2, "{:?}", g.undrivable);
        assert!(g.probes.iter().all(|p| p.jwt.is_none()));
    }

    #[test]
    fn request_principal_forms_give_istio_split_tokens() {
        let f = |v: &str| {
            let policy =
                json!({"spec": {"rules": [{"from": [{"source": {"requestPrincipals": [v]}}]}]}});
            generate(&[policy], Kind::Http, &ctx())
                .probes
                .iter()
                .filter_map(Probe::jwt_payload)
                .map(|mut p| {
                    p.as_object_mut().unwrap().remove("exp");
                    p
                })
                .collect::<Vec<_>>()
        };
        // Last-slash split of a URL issuer, and the first-slash split as a near miss.
        let url = f("https://example.com/sub");
        assert!(url.contains(&json!({"iss": "https://example.com", "sub": "sub"})));
        assert!(url.contains(&json!({"iss": "https:", "sub": "/example.com/sub"})));
        // No slash: all issuer, empty subject; missing subject as a near miss.
        let bare = f("iss");
        assert!(bare.contains(&json!({"iss": "iss", "sub": ""})));
        assert!(bare.contains(&json!({"iss": "iss"})));
        let prefix = f("https://example.com/*");
        assert!(prefix.contains(&json!({"iss": "https://example.com", "sub": "x"})));
        assert!(prefix.contains(&json!({"iss": "https://example.com", "sub": ""})));
        let suffix = f("*-sfx");
        assert!(suffix.contains(&json!({"iss": "issuer", "sub": "x-sfx"})));
        assert!(suffix.contains(&json!({"sub": "x-sfx"})));
        let any = f("*");
        assert!(any.contains(&json!({"iss": "issuer", "sub": "subject"})));
        assert!(any.contains(&json!({"iss": "", "sub": "subject"})));
    }

    #[test]
    fn claims_are_driven_as_strings_lists_nested_and_misplaced() {
        let policy = json!({"spec": {"rules": [{"when": [
            {"key": "request.auth.audiences", "values": ["aud-*"]},
            {"key": "request.auth.claims[iss]", "values": ["i"]},
            {"key": "request.auth.claims[n1][n2]", "values": ["v"]},
        ]}]}});
        let g = generate(&[policy], Kind::Http, &ctx());
        assert!(g.undrivable.is_empty(), "{:?}", g.undrivable);
        let payloads: Vec<Value> = g.probes.iter().filter_map(Probe::jwt_payload).collect();
        // One token satisfying all three conditions at once.
        assert!(payloads.iter().any(|p| p["aud"] == json!("aud-")
            && p["iss"] == json!("i")
            && p["n1"] == json!({"n2": "v"})));
        assert!(
            payloads
                .iter()
                .any(|p| p["aud"] == json!(["other", "aud-x"]))
        );
        assert!(payloads.iter().any(|p| p["aud"] == json!(["xaud-", "y"])));
        assert!(payloads.iter().any(|p| p["n1"] == json!("v")));
        assert!(payloads.iter().any(|p| p["n1.n2"] == json!("v")));
        // `iss` stays a string (Envoy rejects other types).
        assert!(payloads.iter().all(|p| !p["iss"].is_array()));
    }

    #[test]
    fn tcp_probes_drop_http_attributes() {
        let policy = json!({"spec": {"rules": [{"to": [{"operation": {"methods": ["GET"], "ports": ["80"]}}]}]}});
        let g = generate(&[policy], Kind::Tcp, &ctx());
        assert!(
            g.probes
                .iter()
                .all(|p| p.method == "GET" && p.path == "/" && p.headers.is_empty())
        );
        assert!(g.ports.contains(&80));
    }
}

//! Fixtures shared by the targets: a policy set using every field, requests, and the
//! calls every decided engine goes through. Harness code: it may panic on a broken fixture.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use palisade_engine::{
    Endpoint, Engine, HttpAttributes, Options, PathNormalization, Protocol, Request, SourceFile,
    Transport, WorkloadRef, compile, load,
};

/// Every AuthorizationPolicy field, dry-run, audit, a root-namespace policy, an inventory and
/// NetworkPolicies with `ipBlock.except`, named ports and `endPort`.
pub const POLICY: &str = include_str!("../policies/decide.yaml");

/// The option sets the fixed policy is compiled with: every path normalisation, and trust
/// domain aliases.
pub fn option_sets() -> Vec<Options> {
    let mut out: Vec<Options> = [
        PathNormalization::None,
        PathNormalization::Base,
        PathNormalization::MergeSlashes,
        PathNormalization::DecodeAndMergeSlashes,
    ]
    .into_iter()
    .map(|path_normalization| Options {
        path_normalization,
        ..Options::default()
    })
    .collect();
    out.push(Options {
        trust_domain_aliases: vec!["td-alias".into(), "old.local".into()],
        ..Options::default()
    });
    out
}

/// The fixed policy compiled with each of [`option_sets`].
pub fn engines() -> &'static [Engine] {
    static ENGINES: OnceLock<Vec<Engine>> = OnceLock::new();
    ENGINES.get_or_init(|| {
        let set = load(&[SourceFile::new("decide.yaml", POLICY)]).expect("fixture policy loads");
        option_sets()
            .iter()
            .map(|o| compile(&set, o).expect("fixture policy compiles"))
            .collect()
    })
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
}

/// An mTLS HTTP request to `foo/httpbin` using every request field.
pub fn http_request() -> Request {
    let mut headers = BTreeMap::new();
    headers.insert("x-header".to_string(), vec!["header-prefix-1".to_string()]);
    headers.insert("x-admin".to_string(), vec![String::new()]);
    Request {
        protocol: Protocol::Http,
        transport: Transport::Tcp,
        source: Endpoint {
            ip: v4(10, 0, 1, 2),
            port: Some(40000),
            principal: Some("spiffe://cluster.local/ns/foo/sa/client".into()),
            workload: None,
        },
        destination: Endpoint {
            ip: v4(10, 0, 1, 1),
            port: Some(8080),
            principal: None,
            workload: Some(WorkloadRef {
                namespace: "foo".into(),
                labels: [
                    ("app".to_string(), "httpbin".to_string()),
                    ("version".to_string(), "v1".to_string()),
                ]
                .into(),
                ..WorkloadRef::default()
            }),
        },
        remote_ip: v4(192, 168, 10, 3),
        mtls: None,
        sni: Some("httpbin.foo.svc".into()),
        http: Some(HttpAttributes {
            method: "GET".into(),
            host: "exact.com".into(),
            path: "/admin/../exact?x=1".into(),
            headers,
        }),
        jwt: Some(serde_json::json!({
            "iss": "https://issuer.example", "sub": "admin", "aud": ["aud-1"],
            "azp": "presenter", "groups": ["admins"], "nested1": {"nested2": "nested"}
        })),
        jwt_token: None,
        ext_authz: Default::default(),
    }
}

/// A TCP connection to the `bar/db` workload, found by address.
pub fn tcp_request() -> Request {
    Request {
        protocol: Protocol::Tcp,
        source: Endpoint {
            ip: v4(10, 0, 1, 2),
            principal: Some("spiffe://cluster.local/ns/foo/sa/client".into()),
            ..Endpoint::default()
        },
        destination: Endpoint {
            ip: v4(10, 1, 2, 3),
            port: Some(5432),
            ..Endpoint::default()
        },
        ..Request::default()
    }
}

/// Decides `req` through every entry point, and renders the decision every way a host does.
pub fn exercise(engine: &Engine, req: &Request) {
    let mut reqs = vec![req.clone()];
    let mut flipped = req.clone();
    flipped.protocol = match req.protocol {
        Protocol::Http => Protocol::Tcp,
        Protocol::Tcp => Protocol::Http,
    };
    reqs.push(flipped);
    for r in &reqs {
        let d = engine.decide(r);
        let _ = d.allowed();
        let _ = d.explain();
        let _ = d.envoy_details();
        let _ = serde_json::to_string(&d);
        for view in engine.views() {
            let _ = engine.decide_in_view(view, r).explain();
        }
    }
}

// ---- structured requests ------------------------------------------------------------------

/// Text that hits the policy's matchers often: known pieces, raw text, or both joined.
#[derive(Debug, Arbitrary)]
pub enum FuzzStr {
    Known(u8),
    Raw(String),
    Join(u8, String, u8),
}

const PIECES: &[&str] = &[
    "",
    "spiffe://cluster.local/ns/foo/sa/admin",
    "spiffe://cluster.local/ns/foo/sa/client",
    "spiffe://td-alias/ns/bar/sa/x",
    "spiffe://old.local/ns/my-ns/sa/my-sa",
    "cluster.local/ns/foo/sa/admin",
    "principal-prefix-",
    "-suffix-principal",
    "/ns/",
    "/sa/",
    "/admin/",
    "/admin/public/",
    "/api/",
    "/secret",
    "/files/",
    "/raw",
    "/exact",
    "/prefix/",
    "/suffix",
    "/path/template/",
    "/log",
    "..",
    "%2e",
    "%2E%2e",
    "%2F",
    "%5C",
    "//",
    "\\",
    "?",
    "#",
    "/.env",
    ".php",
    "POST",
    "GET",
    "DELETE",
    "method-prefix-",
    "exact.com",
    ".suffix.com",
    "prefix.",
    "internal.",
    ":8080",
    "header-prefix-",
    "https://issuer.example/",
    "https://issuer.example/admin",
    "requestPrincipals",
    "aud-",
    "admins",
    "nested",
    "iss",
    ".svc",
    "é",
    "\u{0}",
    "\n",
    "*",
    "{*}",
    "{**}",
];

impl FuzzStr {
    pub fn text(&self) -> String {
        let piece = |i: &u8| {
            PIECES
                .get(usize::from(*i) % PIECES.len())
                .copied()
                .unwrap_or("")
        };
        match self {
            FuzzStr::Known(i) => piece(i).to_string(),
            FuzzStr::Raw(s) => s.clone(),
            FuzzStr::Join(a, s, b) => format!("{}{s}{}", piece(a), piece(b)),
        }
    }
}

/// An address: arbitrary, or one the policies name.
#[derive(Debug, Arbitrary)]
pub enum FuzzIp {
    V4(u32),
    V6(u128),
    Known(u8),
}

const IPS: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)),
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2)),
    IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
    IpAddr::V4(Ipv4Addr::new(10, 0, 9, 1)),
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, 200)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
    IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)),
    IpAddr::V4(Ipv4Addr::new(5, 6, 7, 8)),
    IpAddr::V4(Ipv4Addr::new(9, 2, 0, 1)),
    IpAddr::V4(Ipv4Addr::new(192, 168, 10, 9)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
    IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0101)),
];

impl FuzzIp {
    pub fn ip(&self) -> IpAddr {
        match self {
            FuzzIp::V4(a) => IpAddr::V4(Ipv4Addr::from(*a)),
            FuzzIp::V6(a) => IpAddr::V6(Ipv6Addr::from(*a)),
            FuzzIp::Known(i) => IPS
                .get(usize::from(*i) % IPS.len())
                .copied()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        }
    }
}

#[derive(Debug, Arbitrary)]
pub enum FuzzWorkload {
    Absent,
    Named(FuzzStr, FuzzStr),
    Inline {
        namespace: FuzzStr,
        labels: Vec<(FuzzStr, FuzzStr)>,
        service_account: Option<FuzzStr>,
    },
}

impl FuzzWorkload {
    fn workload(&self) -> Option<WorkloadRef> {
        match self {
            FuzzWorkload::Absent => None,
            FuzzWorkload::Named(ns, name) => Some(WorkloadRef {
                namespace: ns.text(),
                name: Some(name.text()),
                ..WorkloadRef::default()
            }),
            FuzzWorkload::Inline {
                namespace,
                labels,
                service_account,
            } => Some(WorkloadRef {
                namespace: namespace.text(),
                name: None,
                labels: labels.iter().map(|(k, v)| (k.text(), v.text())).collect(),
                service_account: service_account.as_ref().map(FuzzStr::text),
            }),
        }
    }
}

#[derive(Debug, Arbitrary)]
pub struct FuzzEndpoint {
    ip: Option<FuzzIp>,
    port: Option<u16>,
    principal: Option<FuzzStr>,
    workload: FuzzWorkload,
}

impl FuzzEndpoint {
    fn endpoint(&self) -> Endpoint {
        Endpoint {
            ip: self.ip.as_ref().map(FuzzIp::ip),
            port: self.port,
            principal: self.principal.as_ref().map(FuzzStr::text),
            workload: self.workload.workload(),
        }
    }
}

#[derive(Debug, Arbitrary)]
pub struct FuzzHttp {
    method: FuzzStr,
    host: FuzzStr,
    path: Vec<FuzzStr>,
    headers: Vec<(FuzzStr, Vec<FuzzStr>)>,
}

/// A JWT payload, nested as deep as the input allows.
#[derive(Debug, Arbitrary)]
pub enum FuzzJson {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(FuzzStr),
    Arr(Vec<FuzzJson>),
    Obj(Vec<(FuzzStr, FuzzJson)>),
}

impl FuzzJson {
    fn value(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            FuzzJson::Null => Value::Null,
            FuzzJson::Bool(b) => Value::Bool(*b),
            FuzzJson::Int(i) => Value::from(*i),
            FuzzJson::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            FuzzJson::Str(s) => Value::String(s.text()),
            FuzzJson::Arr(a) => Value::Array(a.iter().map(FuzzJson::value).collect()),
            FuzzJson::Obj(o) => {
                Value::Object(o.iter().map(|(k, v)| (k.text(), v.value())).collect())
            }
        }
    }
}

/// A request built from fuzz input; `engine` picks one of [`engines`].
#[derive(Debug, Arbitrary)]
pub struct FuzzRequest {
    pub engine: u8,
    tcp: bool,
    transport: u8,
    source: FuzzEndpoint,
    destination: FuzzEndpoint,
    remote_ip: Option<FuzzIp>,
    mtls: Option<bool>,
    sni: Option<FuzzStr>,
    http: Option<FuzzHttp>,
    jwt: Option<FuzzJson>,
}

impl FuzzRequest {
    pub fn request(&self) -> Request {
        Request {
            protocol: if self.tcp {
                Protocol::Tcp
            } else {
                Protocol::Http
            },
            transport: match self.transport % 3 {
                0 => Transport::Tcp,
                1 => Transport::Udp,
                _ => Transport::Sctp,
            },
            source: self.source.endpoint(),
            destination: self.destination.endpoint(),
            remote_ip: self.remote_ip.as_ref().map(FuzzIp::ip),
            mtls: self.mtls,
            sni: self.sni.as_ref().map(FuzzStr::text),
            http: self.http.as_ref().map(|h| HttpAttributes {
                method: h.method.text(),
                host: h.host.text(),
                path: h.path.iter().map(FuzzStr::text).collect(),
                headers: h
                    .headers
                    .iter()
                    .map(|(k, v)| (k.text(), v.iter().map(FuzzStr::text).collect()))
                    .collect(),
            }),
            jwt: self.jwt.as_ref().map(FuzzJson::value),
            jwt_token: None,
            ext_authz: Default::default(),
        }
    }
}

//! Property tests: the matchers against simple models (Istio's wildcard forms, the regex
//! globs, CIDR containment), `ipBlocks`/`notIpBlocks` and `ports`/`notPorts` end to end
//! against set models, `decide` on hostile requests, and the bundle round trip.
//!
//! Each property runs 256 cases, so the file takes seconds.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use palisade_engine::pattern::{Glob, GlobPart, StrMatch, parse_cidr};
use palisade_engine::{
    Endpoint, Engine, HttpAttributes, Options, PathNormalization, Protocol, Request, SourceFile,
    Verdict, WorkloadRef, compile, decode_bundle, encode_bundle, load,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

// ---- fixtures ------------------------------------------------------------------------------

/// A plaintext HTTP request from `src` to `shop/cart` (labels `app: cart`) on `port`.
fn conn(src: IpAddr, port: u16, protocol: Protocol) -> Request {
    Request {
        protocol,
        source: Endpoint {
            ip: Some(src),
            port: Some(40000),
            ..Endpoint::default()
        },
        destination: Endpoint {
            ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1))),
            port: Some(port),
            workload: Some(WorkloadRef {
                namespace: "shop".into(),
                labels: [("app".to_string(), "cart".to_string())].into(),
                ..WorkloadRef::default()
            }),
            ..Endpoint::default()
        },
        http: Some(HttpAttributes {
            method: "GET".into(),
            host: "cart".into(),
            path: "/".into(),
            headers: BTreeMap::new(),
        }),
        ..Request::default()
    }
}

/// An ALLOW policy on `shop/cart` with one rule (YAML flow text).
fn allow_engine(rule: &str) -> Engine {
    let yaml = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: cart}}}}\n  rules:\n  - {rule}\n"
    );
    let set = load(&[SourceFile::new("p.yaml", yaml.as_str())])
        .unwrap_or_else(|e| panic!("policy does not load: {e}\n{yaml}"));
    compile(&set, &Options::default()).unwrap()
}

/// Every AuthorizationPolicy field and condition key, every action, dry-run, a mesh-wide
/// policy and an inventory: the set random requests are decided against.
const EVERY_FIELD: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-all-fields, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/shop/sa/frontend", "p-*", "*-p", "*"]
        notPrincipals: ["cluster.local/ns/shop/sa/evil"]
        requestPrincipals: ["https://issuer/*", "*"]
        notRequestPrincipals: ["https://issuer/banned"]
        namespaces: ["shop", "ns-*", "*-ns"]
        notNamespaces: ["kube-system"]
        trustDomains: ["cluster.local", "td-*", "*-td"]
        notTrustDomains: ["evil.example"]
        ipBlocks: ["10.0.0.0/8", "fd00::/8", "1.2.3.4"]
        notIpBlocks: ["10.9.0.0/16"]
        remoteIpBlocks: ["192.168.0.0/16", "2001:db8::/32"]
        notRemoteIpBlocks: ["192.168.9.9"]
    - source:
        serviceAccounts: ["frontend", "other/sa"]
        notServiceAccounts: ["shop/evil"]
    to:
    - operation:
        hosts: ["cart", "*.example.com", "api.*"]
        notHosts: ["admin.example.com"]
        ports: ["8080", "443"]
        notPorts: ["9090"]
        methods: ["GET", "POST", "P*"]
        notMethods: ["DELETE"]
        paths: ["/api/*", "*/x", "/exact", "/t/{*}/a", "/r/{**}/b", "/{**}"]
        notPaths: ["/api/admin/*"]
    when:
    - {key: "request.headers[x-token]", values: ["tok-*"], notValues: ["tok-bad"]}
    - {key: source.ip, values: ["10.0.0.0/8"], notValues: ["10.1.1.1"]}
    - {key: remote.ip, values: ["0.0.0.0/0", "::/0"]}
    - {key: source.namespace, values: ["shop"]}
    - {key: source.principal, values: ["*"]}
    - {key: source.serviceAccount, values: ["shop/frontend"]}
    - {key: source.trustDomain, values: ["cluster.local"]}
    - {key: request.auth.principal, values: ["https://issuer/*"]}
    - {key: request.auth.audiences, values: ["aud"]}
    - {key: request.auth.presenter, values: ["*"]}
    - {key: "request.auth.claims[groups]", values: ["g-*"]}
    - {key: "request.auth.claims[a][b]", notValues: ["x"]}
    - {key: destination.ip, values: ["10.0.1.0/24"]}
    - {key: destination.port, values: ["8080"]}
    - {key: connection.sni, values: ["*.svc"]}
    - {key: "experimental.envoy.filters.a.b[c]", values: ["v"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-some, namespace: shop}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin/*", "*.php"], notMethods: ["GET"]}}]
  - from: [{source: {notPrincipals: ["*"]}}]
    to: [{operation: {ports: ["22"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: shop}
spec:
  action: AUDIT
  rules: [{to: [{operation: {paths: ["/log/*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: dry
  namespace: shop
  annotations: {"istio.io/dry-run": "true"}
spec:
  action: DENY
  rules: [{from: [{source: {namespaces: ["*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh, namespace: istio-system}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/.env"]}}]}]
---
apiVersion: palisade.dev/v1alpha1
kind: Inventory
metadata: {name: inv}
spec:
  workloads:
  - {name: cart, namespace: shop, labels: {app: cart}, ips: [10.0.1.1, "fd00::1"], ports: [{name: http, port: 8080}]}
  - {name: frontend, namespace: shop, serviceAccount: frontend, labels: {app: frontend}, ips: [10.0.2.1]}
"#;

fn every_field_engines() -> &'static [Engine] {
    static ENGINES: OnceLock<Vec<Engine>> = OnceLock::new();
    ENGINES.get_or_init(|| {
        let set = load(&[SourceFile::new("every-field.yaml", EVERY_FIELD)])
            .unwrap_or_else(|e| panic!("fixture does not load: {e}"));
        let mut options: Vec<Options> = [
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
        options.push(Options {
            trust_domain_aliases: vec!["old.local".into()],
            ..Options::default()
        });
        options.iter().map(|o| compile(&set, o).unwrap()).collect()
    })
}

// ---- strategies ----------------------------------------------------------------------------

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        ipv4().prop_map(IpAddr::V4),
        ipv6().prop_map(IpAddr::V6),
        prop::sample::select(vec![
            "10.0.2.1",
            "10.9.1.1",
            "10.1.1.1",
            "1.2.3.4",
            "192.168.9.9",
            "fd00::1",
            "2001:db8::5",
            "::ffff:10.0.0.1",
        ])
        .prop_map(|s| s.parse().unwrap()),
    ]
}

/// Text built from pieces the policies and normalisers care about, plus random unicode.
fn hostile_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "/",
            "//",
            "..",
            ".",
            "%2e",
            "%2E",
            "%2f",
            "%2F",
            "%5c",
            "%00",
            "%",
            "%zz",
            "\\",
            "?",
            "#",
            ";",
            "*",
            "{*}",
            "{**}",
            "api",
            "admin",
            "x",
            "log",
            ".env",
            ".php",
            "tok-",
            "g-",
            "https://issuer/",
            "spiffe://",
            "cluster.local",
            "/ns/",
            "shop",
            "/sa/",
            "frontend",
            "td-",
            "p-",
            "-p",
            ".svc",
            "é",
            "\u{1F600}",
            "\u{202E}",
            "\n",
            "\r",
            "\0",
            " ",
            "\u{FEFF}",
        ])
        .prop_map(str::to_string),
        "\\PC{0,6}",
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

prop_compose! {
    fn hostile_request()(
        tcp in any::<bool>(),
        src_ip in prop::option::of(any_ip()),
        dst_ip in prop::option::of(any_ip()),
        remote_ip in prop::option::of(any_ip()),
        port in prop::option::of(prop_oneof![Just(8080u16), Just(443), Just(9090), Just(22), any::<u16>()]),
        principal in prop::option::of(hostile_text()),
        mtls in prop::option::of(any::<bool>()),
        sni in prop::option::of(hostile_text()),
        workload in prop_oneof![
            Just(None),
            Just(Some(WorkloadRef { namespace: "shop".into(), name: Some("cart".into()), ..WorkloadRef::default() })),
            Just(Some(WorkloadRef { namespace: "shop".into(), labels: [("app".to_string(), "cart".to_string())].into(), ..WorkloadRef::default() })),
            (hostile_text(), hostile_text()).prop_map(|(ns, name)| Some(WorkloadRef { namespace: ns, name: Some(name), ..WorkloadRef::default() })),
        ],
        http in prop::option::of((
            prop_oneof![Just("GET".to_string()), Just("POST".to_string()), Just("DELETE".to_string()), hostile_text()],
            prop_oneof![Just("cart".to_string()), Just("a.example.com:443".to_string()), hostile_text()],
            hostile_text(),
            prop::collection::btree_map(
                prop_oneof![Just("x-token".to_string()), hostile_text()],
                prop::collection::vec(hostile_text(), 0..3),
                0..3,
            ),
        )),
        jwt in prop::option::of(prop_oneof![
            Just(serde_json::json!({"iss": "https://issuer", "sub": "x", "aud": "aud", "groups": ["g-1"], "a": {"b": 1}})),
            (hostile_text(), hostile_text()).prop_map(|(iss, sub)| serde_json::json!({"iss": iss, "sub": sub, "aud": [sub], "a": {"b": [iss]}})),
            Just(serde_json::json!([1, 2])),
            Just(serde_json::Value::Null),
        ]),
    ) -> Request {
        Request {
            protocol: if tcp { Protocol::Tcp } else { Protocol::Http },
            source: Endpoint { ip: src_ip, port: Some(1234), principal, workload: None },
            destination: Endpoint { ip: dst_ip, port, principal: None, workload },
            remote_ip,
            mtls,
            sni,
            http: http.map(|(method, host, path, headers)| HttpAttributes { method, host, path, headers }),
            jwt,
            ..Request::default()
        }
    }
}

// ---- (a) wildcards -------------------------------------------------------------------------

/// Istio's string forms, written from the documentation: `*` alone is presence (non-empty
/// here), a trailing `*` a prefix, a leading `*` a suffix, anything else exact.
fn istio_model(pattern: &str, v: &str) -> bool {
    let chars: Vec<char> = pattern.chars().collect();
    match chars.as_slice() {
        ['*'] => !v.is_empty(),
        [head @ .., '*'] => v.starts_with(&head.iter().collect::<String>()),
        ['*', tail @ ..] => v.ends_with(&tail.iter().collect::<String>()),
        _ => v == pattern,
    }
}

/// A token of the reference glob model, over chars.
#[derive(Debug, Clone)]
enum Tok {
    Char(char),
    /// RE2 `.*`: any run of characters but newline.
    Star,
    /// RE2 `.+`.
    Plus,
    /// RE2 `[^/]*` (which does match newline).
    NoSlash,
}

fn tokens(parts: &[GlobPart]) -> Vec<Tok> {
    parts
        .iter()
        .flat_map(|p| match p {
            GlobPart::Lit(l) => l.chars().map(Tok::Char).collect(),
            GlobPart::Star => vec![Tok::Star],
            GlobPart::Plus => vec![Tok::Plus],
            GlobPart::NoSlash => vec![Tok::NoSlash],
        })
        .collect()
}

/// The textbook backtracking matcher: one token at a time, wildcards try every length.
fn model_match(p: &[Tok], v: &[char]) -> bool {
    let Some((first, rest)) = p.split_first() else {
        return v.is_empty();
    };
    let run = |ok: fn(char) -> bool, min: usize| {
        let limit = v.iter().take_while(|c| ok(**c)).count();
        (min..=limit).any(|n| model_match(rest, &v[n..]))
    };
    match first {
        Tok::Char(c) => v.first() == Some(c) && model_match(rest, &v[1..]),
        Tok::Star => run(|c| c != '\n', 0),
        Tok::Plus => run(|c| c != '\n', 1),
        Tok::NoSlash => run(|c| c != '/', 0),
    }
}

fn small_text() -> impl Strategy<Value = String> {
    "[ab/\n]{0,8}"
}

fn glob_part() -> impl Strategy<Value = GlobPart> {
    prop_oneof![
        "[ab/\n]{1,3}".prop_map(GlobPart::Lit),
        Just(GlobPart::Star),
        Just(GlobPart::Plus),
        Just(GlobPart::NoSlash),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn istio_wildcard_forms_agree_with_the_model(
        pattern in prop_oneof!["[ab]{0,3}", "[ab]{0,3}\\*", "\\*[ab]{0,3}", Just("*".to_string())],
        value in "[ab]{0,5}",
        prefix_of_value in any::<bool>(),
    ) {
        // Half the time, make the value start or end with the pattern's text so matches occur.
        let value = if prefix_of_value { format!("{}{value}", pattern.trim_matches('*')) } else { value };
        let m = StrMatch::istio(&pattern, StrMatch::NonEmpty);
        prop_assert_eq!(m.matches(&value), istio_model(&pattern, &value), "{:?} vs {:?}", m, value);
    }

    #[test]
    fn star_text_globs_agree_with_the_backtracking_model(
        pieces in prop::collection::vec("[ab/\n]{0,3}", 1..5),
        value in small_text(),
    ) {
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let parts = Glob::from_star_text(&refs);
        // Also try a value built from the pieces, so matches occur.
        let joined = pieces.join("x");
        for v in [value.as_str(), joined.as_str()] {
            let chars: Vec<char> = v.chars().collect();
            prop_assert_eq!(
                Glob(parts.clone()).matches(v),
                model_match(&tokens(&parts), &chars),
                "{:?} vs {:?}", parts, v
            );
        }
    }

    #[test]
    fn every_glob_agrees_with_the_backtracking_model(
        parts in prop::collection::vec(glob_part(), 0..6),
        value in small_text(),
    ) {
        let chars: Vec<char> = value.chars().collect();
        prop_assert_eq!(
            Glob(parts.clone()).matches(&value),
            model_match(&tokens(&parts), &chars),
            "{:?} vs {:?}", parts, value
        );
    }
}

// ---- (b) CIDR ------------------------------------------------------------------------------

fn mask4(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

fn in4(net: (u32, u8), x: u32) -> bool {
    (net.0 ^ x) & mask4(net.1) == 0
}

fn in6(net: (u128, u8), x: u128) -> bool {
    (net.0 ^ x) & mask6(net.1) == 0
}

/// A v4 address near `base`: random low bits flipped, so both sides of the boundary occur.
fn near4(base: u32, noise: u32, shift: u32) -> u32 {
    base ^ noise.checked_shr(shift % 33).unwrap_or(0)
}

/// The same for v6.
fn near6(base: u128, noise: u128, shift: u32) -> u128 {
    base ^ noise.checked_shr(shift % 129).unwrap_or(0)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ipv4_cidr_containment_agrees_with_bit_masks(
        a in any::<u32>(), len in 0u8..=32, noise in any::<u32>(), shift in any::<u32>(),
    ) {
        let net = parse_cidr(&format!("{}/{len}", Ipv4Addr::from(a))).unwrap();
        prop_assert_eq!(net.prefix_len(), len);
        let x = near4(a, noise, shift);
        prop_assert_eq!(net.contains(&IpAddr::V4(Ipv4Addr::from(x))), in4((a, len), x));
        // A bare address is a /32.
        let single = parse_cidr(&Ipv4Addr::from(a).to_string()).unwrap();
        prop_assert_eq!(single.contains(&IpAddr::V4(Ipv4Addr::from(x))), x == a);
        // Never an IPv6 address.
        prop_assert!(!net.contains(&IpAddr::V6(Ipv6Addr::from(u128::from(x)))));
    }

    #[test]
    fn ipv6_cidr_containment_agrees_with_bit_masks(
        a in any::<u128>(), len in 0u8..=128, noise in any::<u128>(), shift in any::<u32>(),
    ) {
        let net = parse_cidr(&format!("{}/{len}", Ipv6Addr::from(a))).unwrap();
        prop_assert_eq!(net.prefix_len(), len);
        let x = near6(a, noise, shift);
        prop_assert_eq!(net.contains(&IpAddr::V6(Ipv6Addr::from(x))), in6((a, len), x));
    }

    #[test]
    fn out_of_range_prefixes_are_refused(a in any::<u32>(), b in any::<u128>(), l4 in 33u16..300, l6 in 129u16..300) {
        let v4 = format!("{}/{}", Ipv4Addr::from(a), l4);
        let v6 = format!("{}/{}", Ipv6Addr::from(b), l6);
        prop_assert!(parse_cidr(&v4).is_none());
        prop_assert!(parse_cidr(&v6).is_none());
    }

    #[test]
    fn ip_blocks_minus_not_ip_blocks_end_to_end_v4(
        a in any::<u32>(), len in 0u8..=32, e_noise in any::<u32>(), e_len in 0u8..=32,
        noise in any::<u32>(), shift in any::<u32>(), tcp in any::<bool>(),
    ) {
        // The exception usually lies inside (or overlaps) the block.
        let e = near4(a, e_noise, u32::from(e_len));
        let engine = allow_engine(&format!(
            "from: [{{source: {{ipBlocks: [\"{}/{len}\"], notIpBlocks: [\"{}/{e_len}\"]}}}}]",
            Ipv4Addr::from(a), Ipv4Addr::from(e)
        ));
        let x = near4(a, noise, shift);
        let want = in4((a, len), x) && !in4((e, e_len), x);
        let proto = if tcp { Protocol::Tcp } else { Protocol::Http };
        let d = engine.decide(&conn(IpAddr::V4(Ipv4Addr::from(x)), 8080, proto));
        prop_assert_eq!(d.allowed(), want, "{} in {}/{} minus {}/{}: {}",
            Ipv4Addr::from(x), Ipv4Addr::from(a), len, Ipv4Addr::from(e), e_len, d.explain());
    }

    #[test]
    fn ip_blocks_minus_not_ip_blocks_end_to_end_v6(
        a in any::<u128>(), len in 0u8..=128, e_noise in any::<u128>(), e_len in 0u8..=128,
        noise in any::<u128>(), shift in any::<u32>(),
    ) {
        let e = near6(a, e_noise, u32::from(e_len));
        let engine = allow_engine(&format!(
            "from: [{{source: {{ipBlocks: [\"{}/{len}\"], notIpBlocks: [\"{}/{e_len}\"]}}}}]",
            Ipv6Addr::from(a), Ipv6Addr::from(e)
        ));
        let x = near6(a, noise, shift);
        let want = in6((a, len), x) && !in6((e, e_len), x);
        let d = engine.decide(&conn(IpAddr::V6(Ipv6Addr::from(x)), 8080, Protocol::Http));
        prop_assert_eq!(d.allowed(), want, "{}: {}", Ipv6Addr::from(x), d.explain());
        // An IPv4 peer is never in an IPv6 block.
        let v4 = engine.decide(&conn(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)), 8080, Protocol::Http));
        prop_assert!(!v4.allowed(), "{}", v4.explain());
    }
}

// ---- (c) ports -----------------------------------------------------------------------------

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![3 => 1u16..8, 1 => any::<u16>()]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ports_minus_not_ports_end_to_end(
        ports in prop::collection::vec(port(), 0..4),
        not_ports in prop::collection::vec(port(), 0..3),
        p in port(),
        tcp in any::<bool>(),
    ) {
        prop_assume!(!ports.is_empty() || !not_ports.is_empty());
        let list = |v: &[u16]| v.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ");
        let mut op = Vec::new();
        if !ports.is_empty() {
            op.push(format!("ports: [{}]", list(&ports)));
        }
        if !not_ports.is_empty() {
            op.push(format!("notPorts: [{}]", list(&not_ports)));
        }
        let engine = allow_engine(&format!("to: [{{operation: {{{}}}}}]", op.join(", ")));
        let want = (ports.is_empty() || ports.contains(&p)) && !not_ports.contains(&p);
        let proto = if tcp { Protocol::Tcp } else { Protocol::Http };
        let d = engine.decide(&conn(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)), p, proto));
        prop_assert_eq!(d.allowed(), want, "port {} ports {:?} notPorts {:?}: {}", p, ports, not_ports, d.explain());
    }

    #[test]
    fn destination_port_condition_end_to_end(
        values in prop::collection::vec(port(), 1..4),
        not_values in prop::collection::vec(port(), 0..3),
        p in port(),
    ) {
        let list = |v: &[u16]| v.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ");
        let engine = allow_engine(&format!(
            "when: [{{key: destination.port, values: [{}], notValues: [{}]}}]",
            list(&values), list(&not_values)
        ));
        let want = values.contains(&p) && !not_values.contains(&p);
        let d = engine.decide(&conn(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)), p, Protocol::Http));
        prop_assert_eq!(d.allowed(), want, "{}", d.explain());
    }
}

// ---- (d) decide never panics, (e) bundles round trip -----------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn deciding_hostile_requests_never_panics(req in hostile_request(), which in any::<prop::sample::Index>()) {
        let engines = every_field_engines();
        let engine = which.get(engines);
        let d = engine.decide(&req);
        let _ = (d.explain(), d.envoy_details(), serde_json::to_string(&d).unwrap());
        for view in engine.views() {
            let _ = engine.decide_in_view(view, &req);
        }
        // Requests that round trip through JSON decide the same (the CLI's and browser's path).
        let json = serde_json::to_string(&req).unwrap();
        if let Ok(back) = serde_json::from_str::<Request>(&json) {
            prop_assert_eq!(engine.decide(&back).verdict, d.verdict);
        }
    }

    #[test]
    fn bundles_round_trip_to_an_equal_engine_that_decides_the_same(
        req in hostile_request(), which in any::<prop::sample::Index>(),
    ) {
        let engine = which.get(every_field_engines());
        let bundle = encode_bundle(engine).unwrap();
        let back = decode_bundle(&bundle).unwrap();
        prop_assert!(&back == engine, "the decoded engine differs");
        prop_assert_eq!(back.decide(&req), engine.decide(&req));
    }
}

#[test]
fn the_every_field_fixture_decides_without_errors() {
    // Guards the fixture: a typo that made every request an error would make (d) vacuous.
    let engine = &every_field_engines()[1];
    let denied = engine.decide(&conn(
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)),
        8080,
        Protocol::Http,
    ));
    assert_eq!(denied.verdict, Verdict::Deny);
    assert_ne!(
        denied.step,
        palisade_engine::Step::Error,
        "{}",
        denied.explain()
    );
    let tcp = engine.decide(&conn(
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)),
        22,
        Protocol::Tcp,
    ));
    assert_ne!(tcp.step, palisade_engine::Step::Error, "{}", tcp.explain());
}

// ---- NetworkPolicy: ipBlock {cidr, except}, port/endPort -----------------------------------

/// `shop/db` at 10.0.2.7 (or fd00::7), isolated for ingress by one NetworkPolicy rule.
fn netpol_engine(rule: &str) -> Engine {
    let yaml = format!(
        "apiVersion: palisade.dev/v1alpha1\nkind: Inventory\nmetadata: {{name: inv}}\nspec:\n  workloads:\n  - {{name: db, namespace: shop, labels: {{app: db}}, ips: [10.0.2.7, \"fd00::7\"]}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np, namespace: shop}}\nspec:\n  podSelector: {{matchLabels: {{app: db}}}}\n  ingress:\n  - {rule}\n"
    );
    let set = load(&[SourceFile::new("np.yaml", yaml.as_str())])
        .unwrap_or_else(|e| panic!("policy does not load: {e}\n{yaml}"));
    compile(&set, &Options::default()).unwrap()
}

/// A TCP connection from an address outside the cluster to `shop/db`.
fn tcp_to_db(
    src: IpAddr,
    dst: IpAddr,
    port: u16,
    transport: palisade_engine::Transport,
) -> Request {
    Request {
        protocol: Protocol::Tcp,
        transport,
        source: Endpoint {
            ip: Some(src),
            ..Endpoint::default()
        },
        destination: Endpoint {
            ip: Some(dst),
            port: Some(port),
            ..Endpoint::default()
        },
        ..Request::default()
    }
}

const DB4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 7);
const DB6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7);

proptest! {
    #![proptest_config(config())]

    #[test]
    fn netpol_ip_block_minus_except_v4(
        a in any::<u32>(), len in 0u8..=32,
        excepts in prop::collection::vec((any::<u32>(), 1u8..=32), 0..3),
        noise in any::<u32>(), shift in any::<u32>(),
    ) {
        // Each `except` lies strictly inside the block (the API server's rule): the block's
        // bits, then random ones, with a longer prefix.
        let excepts: Vec<(u32, u8)> = excepts
            .into_iter()
            .filter(|(_, extra)| len < 32 && *extra <= 32 - len)
            .map(|(bits, extra)| {
                let e_len = len + extra;
                ((a & mask4(len)) | (bits & !mask4(len)), e_len)
            })
            .collect();
        let except_list = excepts
            .iter()
            .map(|(e, l)| format!("\"{}/{l}\"", Ipv4Addr::from(*e)))
            .collect::<Vec<_>>()
            .join(", ");
        let engine = netpol_engine(&format!(
            "from: [{{ipBlock: {{cidr: \"{}/{len}\", except: [{except_list}]}}}}]",
            Ipv4Addr::from(a)
        ));
        // Aim inside the block, and sometimes at an exception.
        let x = match excepts.first() {
            Some((e, _)) if noise % 3 == 0 => near4(*e, noise, shift),
            _ => near4(a, noise, shift),
        };
        prop_assume!(x != u32::from(DB4));
        let want = in4((a, len), x) && !excepts.iter().any(|e| in4(*e, x));
        let d = engine.decide(&tcp_to_db(IpAddr::V4(Ipv4Addr::from(x)), IpAddr::V4(DB4), 5432, palisade_engine::Transport::Tcp));
        prop_assert_eq!(d.allowed(), want, "{} in {}/{} except [{}]: {}",
            Ipv4Addr::from(x), Ipv4Addr::from(a), len, except_list, d.explain());
    }

    #[test]
    fn netpol_ip_block_minus_except_v6(
        a in any::<u128>(), len in 0u8..128, bits in any::<u128>(), extra in 1u8..=128,
        noise in any::<u128>(), shift in any::<u32>(), toward_except in any::<bool>(),
    ) {
        let e_len = len.saturating_add(extra).min(128);
        let e = (a & mask6(len)) | (bits & !mask6(len));
        let engine = netpol_engine(&format!(
            "from: [{{ipBlock: {{cidr: \"{}/{len}\", except: [\"{}/{e_len}\"]}}}}]",
            Ipv6Addr::from(a), Ipv6Addr::from(e)
        ));
        let x = near6(if toward_except { e } else { a }, noise, shift);
        prop_assume!(x != u128::from(DB6));
        let want = in6((a, len), x) && !in6((e, e_len), x);
        let d = engine.decide(&tcp_to_db(IpAddr::V6(Ipv6Addr::from(x)), IpAddr::V6(DB6), 5432, palisade_engine::Transport::Tcp));
        prop_assert_eq!(d.allowed(), want, "{}: {}", Ipv6Addr::from(x), d.explain());
        // An IPv4 client is never in an IPv6 block.
        let v4 = engine.decide(&tcp_to_db(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), IpAddr::V6(DB6), 5432, palisade_engine::Transport::Tcp));
        prop_assert!(!v4.allowed(), "{}", v4.explain());
    }

    #[test]
    fn netpol_port_and_end_port_ranges(
        ranges in prop::collection::vec((port().prop_map(|p| p.max(1)), prop::option::of(0u16..6), 0u8..3), 1..4),
        p in port(),
        transport in 0u8..3,
    ) {
        use palisade_engine::Transport;
        let transports = [Transport::Tcp, Transport::Udp, Transport::Sctp];
        let names = ["TCP", "UDP", "SCTP"];
        let ports: Vec<(u16, Option<u16>, u8)> = ranges
            .into_iter()
            .map(|(start, width, proto)| (start, width.map(|w| start.saturating_add(w)), proto))
            .collect();
        let list = ports
            .iter()
            .map(|(start, end, proto)| {
                let end = end.map(|e| format!(", endPort: {e}")).unwrap_or_default();
                format!("{{port: {start}{end}, protocol: {}}}", names[usize::from(*proto)])
            })
            .collect::<Vec<_>>()
            .join(", ");
        let engine = netpol_engine(&format!("from: [{{ipBlock: {{cidr: 0.0.0.0/0}}}}]\n    ports: [{list}]"));
        let want = ports.iter().any(|(start, end, proto)| {
            *proto == transport && (*start..=end.unwrap_or(*start)).contains(&p)
        });
        let d = engine.decide(&tcp_to_db(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V4(DB4),
            p,
            transports[usize::from(transport)],
        ));
        prop_assert_eq!(d.allowed(), want, "port {} {} against [{}]: {}", p, names[usize::from(transport)], list, d.explain());
    }
}

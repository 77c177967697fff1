//! Unit tables for AuthorizationPolicy: every field and its `not*` twin, every wildcard form,
//! the evaluation order, scope, the TCP downgrade and dry-run. One named case a row.
//!
//! Every row decides one request against one policy set applied to the workload
//! `shop/cart` (labels `app: cart`), built with the canonical fixtures below.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]

use palisade_engine::{
    Decision, HttpAttributes, Options, Protocol, Request, SourceFile, Step, Verdict, WorkloadRef,
    compile, load,
};

// ---- fixtures ----------------------------------------------------------------------------

/// A plaintext connection from 10.0.0.9 to cart:8080.
fn plaintext_conn() -> Request {
    Request {
        protocol: Protocol::Http,
        source: palisade_engine::Endpoint {
            ip: Some("10.0.0.9".parse().unwrap()),
            port: Some(40000),
            ..Default::default()
        },
        destination: palisade_engine::Endpoint {
            ip: Some("10.0.1.1".parse().unwrap()),
            port: Some(8080),
            workload: Some(WorkloadRef {
                namespace: "shop".into(),
                labels: [("app".to_string(), "cart".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        http: Some(HttpAttributes {
            method: "GET".into(),
            host: "cart.shop.svc.cluster.local".into(),
            path: "/".into(),
            headers: Default::default(),
        }),
        ..Default::default()
    }
}

/// An mTLS connection from `ns/sa` in trust domain cluster.local.
fn mtls_conn(id: &str) -> Request {
    let (ns, sa) = id.split_once('/').unwrap();
    let mut r = plaintext_conn();
    r.source.principal = Some(format!("spiffe://cluster.local/ns/{ns}/sa/{sa}"));
    r
}

trait With {
    fn get(self, path: &str) -> Self;
    fn method(self, m: &str) -> Self;
    fn host(self, h: &str) -> Self;
    fn header(self, k: &str, v: &str) -> Self;
    fn port(self, p: u16) -> Self;
    fn src_ip(self, ip: &str) -> Self;
    fn remote_ip(self, ip: &str) -> Self;
    fn dst_ip(self, ip: &str) -> Self;
    fn sni(self, s: &str) -> Self;
    fn jwt(self, j: serde_json::Value) -> Self;
    fn principal(self, p: &str) -> Self;
    fn tcp(self) -> Self;
}

impl With for Request {
    fn get(mut self, path: &str) -> Self {
        self.http.as_mut().unwrap().path = path.into();
        self
    }
    fn method(mut self, m: &str) -> Self {
        self.http.as_mut().unwrap().method = m.into();
        self
    }
    fn host(mut self, h: &str) -> Self {
        self.http.as_mut().unwrap().host = h.into();
        self
    }
    fn header(mut self, k: &str, v: &str) -> Self {
        self.http
            .as_mut()
            .unwrap()
            .headers
            .entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.into());
        self
    }
    fn port(mut self, p: u16) -> Self {
        self.destination.port = Some(p);
        self
    }
    fn src_ip(mut self, ip: &str) -> Self {
        self.source.ip = Some(ip.parse().unwrap());
        self
    }
    fn remote_ip(mut self, ip: &str) -> Self {
        self.remote_ip = Some(ip.parse().unwrap());
        self
    }
    fn dst_ip(mut self, ip: &str) -> Self {
        self.destination.ip = Some(ip.parse().unwrap());
        self
    }
    fn sni(mut self, s: &str) -> Self {
        self.sni = Some(s.into());
        self
    }
    fn jwt(mut self, j: serde_json::Value) -> Self {
        self.jwt = Some(j);
        self
    }
    fn principal(mut self, p: &str) -> Self {
        self.source.principal = Some(p.into());
        self
    }
    fn tcp(mut self) -> Self {
        self.protocol = Protocol::Tcp;
        self.http = None;
        self
    }
}

/// A policy on `shop/cart` with the given action and one rule (YAML flow text).
fn policy(name: &str, action: &str, rule: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: cart}}}}\n  action: {action}\n  rules:\n  - {rule}\n---\n"
    )
}

fn allow(rule: &str) -> String {
    policy("p", "ALLOW", rule)
}

fn decide_with(yaml: &str, options: &Options, req: &Request) -> Decision {
    let set = load(&[SourceFile::new("test.yaml", yaml)])
        .unwrap_or_else(|e| panic!("policy does not load: {e}\n{yaml}"));
    compile(&set, options).unwrap().decide(req)
}

fn decide(yaml: &str, req: &Request) -> Decision {
    decide_with(yaml, &Options::default(), req)
}

use Verdict::{Allow, Deny};

fn run(rows: &[(&str, String, Request, Verdict)]) {
    let mut failures = Vec::new();
    for (name, yaml, req, want) in rows {
        let got = decide(yaml, req);
        if got.verdict != *want {
            failures.push(format!(
                "{name}: want {want}, got {} ({})",
                got.verdict,
                got.explain()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing rows:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---- source fields -------------------------------------------------------------------------

#[test]
fn principals_and_not_principals() {
    let p = |v: &str| allow(&format!("from: [{{source: {{principals: [\"{v}\"]}}}}]"));
    let n = |v: &str| allow(&format!("from: [{{source: {{notPrincipals: [\"{v}\"]}}}}]"));
    run(&[
        (
            "exact principal matches its peer",
            p("cluster.local/ns/shop/sa/frontend"),
            mtls_conn("shop/frontend"),
            Allow,
        ),
        (
            "exact principal refuses another peer",
            p("cluster.local/ns/shop/sa/frontend"),
            mtls_conn("shop/other"),
            Deny,
        ),
        (
            "prefix principal matches",
            p("cluster.local/ns/shop/*"),
            mtls_conn("shop/x"),
            Allow,
        ),
        (
            "prefix principal refuses other namespace",
            p("cluster.local/ns/shop/*"),
            mtls_conn("web/x"),
            Deny,
        ),
        (
            "suffix principal matches",
            p("*/sa/frontend"),
            mtls_conn("web/frontend"),
            Allow,
        ),
        (
            "suffix principal refuses",
            p("*/sa/frontend"),
            mtls_conn("web/backend"),
            Deny,
        ),
        (
            "star principal matches any mTLS peer",
            p("*"),
            mtls_conn("a/b"),
            Allow,
        ),
        (
            "star principal refuses a plaintext peer",
            p("*"),
            plaintext_conn(),
            Deny,
        ),
        (
            "exact principal refuses a plaintext peer",
            p("cluster.local/ns/shop/sa/frontend"),
            plaintext_conn(),
            Deny,
        ),
        (
            "notPrincipals refuses the listed peer",
            n("cluster.local/ns/shop/sa/frontend"),
            mtls_conn("shop/frontend"),
            Deny,
        ),
        (
            "notPrincipals allows another peer",
            n("cluster.local/ns/shop/sa/frontend"),
            mtls_conn("shop/other"),
            Allow,
        ),
        (
            "notPrincipals star allows plaintext",
            n("*"),
            plaintext_conn(),
            Allow,
        ),
        (
            "notPrincipals star refuses mTLS",
            n("*"),
            mtls_conn("a/b"),
            Deny,
        ),
        (
            "notPrincipals prefix refuses matching peer",
            n("cluster.local/ns/bad/*"),
            mtls_conn("bad/x"),
            Deny,
        ),
        (
            "notPrincipals suffix allows non-matching",
            n("*/sa/bad"),
            mtls_conn("a/good"),
            Allow,
        ),
        (
            "mtls false hides the principal",
            p("*"),
            mtls_conn("a/b").tcp_mtls_off(),
            Deny,
        ),
    ]);
}

trait MtlsOff {
    fn tcp_mtls_off(self) -> Self;
}
impl MtlsOff for Request {
    fn tcp_mtls_off(mut self) -> Self {
        self.mtls = Some(false);
        self
    }
}

#[test]
fn namespaces_and_not_namespaces() {
    let p = |v: &str| allow(&format!("from: [{{source: {{namespaces: [\"{v}\"]}}}}]"));
    let n = |v: &str| allow(&format!("from: [{{source: {{notNamespaces: [\"{v}\"]}}}}]"));
    run(&[
        (
            "exact namespace matches",
            p("shop"),
            mtls_conn("shop/a"),
            Allow,
        ),
        (
            "exact namespace refuses a longer one",
            p("shop"),
            mtls_conn("shopping/a"),
            Deny,
        ),
        (
            "prefix namespace matches",
            p("team-*"),
            mtls_conn("team-a/x"),
            Allow,
        ),
        (
            "prefix namespace refuses",
            p("team-*"),
            mtls_conn("web/x"),
            Deny,
        ),
        (
            "suffix namespace matches",
            p("*-prod"),
            mtls_conn("shop-prod/x"),
            Allow,
        ),
        (
            "suffix namespace refuses",
            p("*-prod"),
            mtls_conn("shop-dev/x"),
            Deny,
        ),
        (
            "star namespace matches any mTLS peer",
            p("*"),
            mtls_conn("x/y"),
            Allow,
        ),
        (
            "namespace never matches plaintext",
            p("*"),
            plaintext_conn(),
            Deny,
        ),
        (
            "notNamespaces refuses listed",
            n("web"),
            mtls_conn("web/a"),
            Deny,
        ),
        (
            "notNamespaces allows other",
            n("web"),
            mtls_conn("shop/a"),
            Allow,
        ),
        (
            "notNamespaces star allows plaintext",
            n("*"),
            plaintext_conn(),
            Allow,
        ),
    ]);
}

#[test]
fn service_accounts_and_not_service_accounts() {
    let p = |v: &str| {
        allow(&format!(
            "from: [{{source: {{serviceAccounts: [\"{v}\"]}}}}]"
        ))
    };
    let n = |v: &str| {
        allow(&format!(
            "from: [{{source: {{notServiceAccounts: [\"{v}\"]}}}}]"
        ))
    };
    run(&[
        (
            "bare service account is in the policy namespace",
            p("frontend"),
            mtls_conn("shop/frontend"),
            Allow,
        ),
        (
            "bare service account refuses other namespace",
            p("frontend"),
            mtls_conn("web/frontend"),
            Deny,
        ),
        (
            "ns/sa matches",
            p("web/frontend"),
            mtls_conn("web/frontend"),
            Allow,
        ),
        (
            "ns/sa refuses other sa",
            p("web/frontend"),
            mtls_conn("web/backend"),
            Deny,
        ),
        (
            "service account never matches plaintext",
            p("frontend"),
            plaintext_conn(),
            Deny,
        ),
        (
            "notServiceAccounts refuses listed",
            n("frontend"),
            mtls_conn("shop/frontend"),
            Deny,
        ),
        (
            "notServiceAccounts allows other",
            n("frontend"),
            mtls_conn("shop/cart"),
            Allow,
        ),
        (
            "notServiceAccounts allows plaintext",
            n("frontend"),
            plaintext_conn(),
            Allow,
        ),
    ]);
}

#[test]
fn trust_domains_and_not_trust_domains() {
    let p = |v: &str| allow(&format!("from: [{{source: {{trustDomains: [\"{v}\"]}}}}]"));
    let n = |v: &str| {
        allow(&format!(
            "from: [{{source: {{notTrustDomains: [\"{v}\"]}}}}]"
        ))
    };
    run(&[
        (
            "trust domain matches",
            p("cluster.local"),
            mtls_conn("a/b"),
            Allow,
        ),
        (
            "trust domain refuses other",
            p("other.local"),
            mtls_conn("a/b"),
            Deny,
        ),
        (
            "trust domain prefix matches",
            p("cluster*"),
            mtls_conn("a/b"),
            Allow,
        ),
        (
            "trust domain suffix matches",
            p("*.local"),
            mtls_conn("a/b"),
            Allow,
        ),
        (
            "notTrustDomains refuses listed",
            n("cluster.local"),
            mtls_conn("a/b"),
            Deny,
        ),
        (
            "notTrustDomains allows other",
            n("evil.local"),
            mtls_conn("a/b"),
            Allow,
        ),
    ]);
}

#[test]
fn request_principals_and_claims() {
    let jwt = serde_json::json!({
        "iss": "https://issuer.example", "sub": "alice", "aud": ["shop", "web"], "azp": "spa",
        "groups": ["admins", "devs"], "org": {"team": "payments"}
    });
    let rp = |v: &str| {
        allow(&format!(
            "from: [{{source: {{requestPrincipals: [\"{v}\"]}}}}]"
        ))
    };
    let nrp = |v: &str| {
        allow(&format!(
            "from: [{{source: {{notRequestPrincipals: [\"{v}\"]}}}}]"
        ))
    };
    let when = |k: &str, vals: &str| allow(&format!("when: [{{key: \"{k}\", {vals}}}]"));
    let r = || plaintext_conn().jwt(jwt.clone());
    run(&[
        (
            "exact request principal iss/sub matches",
            rp("https://issuer.example/alice"),
            r(),
            Allow,
        ),
        (
            "request principal with other sub refuses",
            rp("https://issuer.example/bob"),
            r(),
            Deny,
        ),
        (
            "request principal star needs a token",
            rp("*"),
            plaintext_conn(),
            Deny,
        ),
        (
            "request principal star matches a token",
            rp("*"),
            r(),
            Allow,
        ),
        (
            "request principal iss/* matches",
            rp("https://issuer.example/*"),
            r(),
            Allow,
        ),
        ("request principal */sub matches", rp("*/alice"), r(), Allow),
        (
            "request principal prefix splits at the last slash like Istio",
            rp("https://issuer*"),
            r(),
            Deny,
        ),
        (
            "request principal prefix without slash matches the issuer",
            rp("issuer-*"),
            plaintext_conn().jwt(serde_json::json!({"iss": "issuer-a", "sub": "x"})),
            Allow,
        ),
        (
            "request principal suffix splits at the last slash",
            rp("*example/alice"),
            plaintext_conn()
                .jwt(serde_json::json!({"iss": "https://issuer.example", "sub": "alice"})),
            Allow,
        ),
        (
            "notRequestPrincipals refuses listed",
            nrp("https://issuer.example/alice"),
            r(),
            Deny,
        ),
        (
            "notRequestPrincipals allows without token",
            nrp("*"),
            plaintext_conn(),
            Allow,
        ),
        (
            "request.auth.principal condition",
            when(
                "request.auth.principal",
                "values: [\"https://issuer.example/alice\"]",
            ),
            r(),
            Allow,
        ),
        (
            "audiences match an element of a list",
            when("request.auth.audiences", "values: [web]"),
            r(),
            Allow,
        ),
        (
            "audiences refuse a missing audience",
            when("request.auth.audiences", "values: [admin]"),
            r(),
            Deny,
        ),
        (
            "audiences notValues refuse a present one",
            when("request.auth.audiences", "notValues: [shop]"),
            r(),
            Deny,
        ),
        (
            "presenter matches azp",
            when("request.auth.presenter", "values: [spa]"),
            r(),
            Allow,
        ),
        (
            "claims match a list element",
            when("request.auth.claims[groups]", "values: [admins]"),
            r(),
            Allow,
        ),
        (
            "claims prefix match",
            when("request.auth.claims[groups]", "values: [\"dev*\"]"),
            r(),
            Allow,
        ),
        (
            "nested claims match",
            when("request.auth.claims[org][team]", "values: [payments]"),
            r(),
            Allow,
        ),
        (
            "nested claims refuse",
            when("request.auth.claims[org][team]", "values: [cart]"),
            r(),
            Deny,
        ),
        (
            "claims notValues allow without the claim",
            when("request.auth.claims[missing]", "notValues: [x]"),
            r(),
            Allow,
        ),
        (
            "claims refuse without a token",
            when("request.auth.claims[groups]", "values: [\"*\"]"),
            plaintext_conn(),
            Deny,
        ),
    ]);
}

#[test]
fn ip_blocks_and_remote_ip_blocks() {
    let f = |k: &str, v: &str| allow(&format!("from: [{{source: {{{k}: [\"{v}\"]}}}}]"));
    run(&[
        (
            "ipBlocks CIDR matches the peer",
            f("ipBlocks", "10.0.0.0/24"),
            plaintext_conn(),
            Allow,
        ),
        (
            "ipBlocks single address matches",
            f("ipBlocks", "10.0.0.9"),
            plaintext_conn(),
            Allow,
        ),
        (
            "ipBlocks refuses other peer",
            f("ipBlocks", "192.168.0.0/16"),
            plaintext_conn(),
            Deny,
        ),
        (
            "ipBlocks ignores the forwarded client",
            f("ipBlocks", "203.0.113.0/24"),
            plaintext_conn().remote_ip("203.0.113.5"),
            Deny,
        ),
        (
            "notIpBlocks refuses listed",
            f("notIpBlocks", "10.0.0.0/8"),
            plaintext_conn(),
            Deny,
        ),
        (
            "notIpBlocks allows other",
            f("notIpBlocks", "192.168.0.0/16"),
            plaintext_conn(),
            Allow,
        ),
        (
            "remoteIpBlocks match the forwarded client",
            f("remoteIpBlocks", "203.0.113.0/24"),
            plaintext_conn().remote_ip("203.0.113.5"),
            Allow,
        ),
        (
            "remoteIpBlocks default to the peer",
            f("remoteIpBlocks", "10.0.0.9"),
            plaintext_conn(),
            Allow,
        ),
        (
            "notRemoteIpBlocks refuse listed",
            f("notRemoteIpBlocks", "203.0.113.0/24"),
            plaintext_conn().remote_ip("203.0.113.5"),
            Deny,
        ),
        (
            "IPv6 peer in IPv6 block",
            f("ipBlocks", "fd00::/8"),
            plaintext_conn().src_ip("fd00::1"),
            Allow,
        ),
        (
            "IPv6 peer not in IPv4 block",
            f("ipBlocks", "10.0.0.0/8"),
            plaintext_conn().src_ip("fd00::1"),
            Deny,
        ),
    ]);
}

// ---- operation fields ----------------------------------------------------------------------

#[test]
fn hosts_and_not_hosts() {
    let p = |v: &str| allow(&format!("to: [{{operation: {{hosts: [\"{v}\"]}}}}]"));
    let n = |v: &str| allow(&format!("to: [{{operation: {{notHosts: [\"{v}\"]}}}}]"));
    let r = |h: &str| plaintext_conn().host(h);
    run(&[
        (
            "exact host matches",
            p("cart.example.com"),
            r("cart.example.com"),
            Allow,
        ),
        (
            "host match is case-insensitive",
            p("Cart.Example.com"),
            r("CART.example.COM"),
            Allow,
        ),
        (
            "host with port does not match host without",
            p("cart.example.com"),
            r("cart.example.com:8080"),
            Deny,
        ),
        (
            "host with port matches when written with port",
            p("cart.example.com:8080"),
            r("cart.example.com:8080"),
            Allow,
        ),
        (
            "suffix host matches",
            p("*.example.com"),
            r("a.example.com"),
            Allow,
        ),
        (
            "suffix host refuses with port",
            p("*.example.com"),
            r("a.example.com:443"),
            Deny,
        ),
        ("prefix host matches", p("cart.*"), r("cart.shop"), Allow),
        ("star host matches any", p("*"), r("anything"), Allow),
        (
            "notHosts refuses listed",
            n("admin.example.com"),
            r("ADMIN.example.com"),
            Deny,
        ),
        (
            "notHosts allows other",
            n("admin.example.com"),
            r("cart.example.com"),
            Allow,
        ),
    ]);
}

#[test]
fn ports_and_not_ports() {
    let p = |v: &str| allow(&format!("to: [{{operation: {{ports: [\"{v}\"]}}}}]"));
    let n = |v: &str| allow(&format!("to: [{{operation: {{notPorts: [\"{v}\"]}}}}]"));
    run(&[
        (
            "port matches the destination port",
            p("8080"),
            plaintext_conn(),
            Allow,
        ),
        (
            "port refuses another port",
            p("9090"),
            plaintext_conn(),
            Deny,
        ),
        ("notPorts refuses listed", n("8080"), plaintext_conn(), Deny),
        ("notPorts allows other", n("9090"), plaintext_conn(), Allow),
        (
            "ports apply on TCP",
            p("5432"),
            plaintext_conn().tcp().port(5432),
            Allow,
        ),
    ]);
}

#[test]
fn methods_and_not_methods() {
    let p = |v: &str| allow(&format!("to: [{{operation: {{methods: [\"{v}\"]}}}}]"));
    let n = |v: &str| allow(&format!("to: [{{operation: {{notMethods: [\"{v}\"]}}}}]"));
    run(&[
        ("method matches", p("GET"), plaintext_conn(), Allow),
        ("method is case-sensitive", p("get"), plaintext_conn(), Deny),
        ("method refuses other", p("POST"), plaintext_conn(), Deny),
        (
            "method prefix",
            p("PO*"),
            plaintext_conn().method("POST"),
            Allow,
        ),
        (
            "method suffix",
            p("*CH"),
            plaintext_conn().method("PATCH"),
            Allow,
        ),
        ("method star", p("*"), plaintext_conn(), Allow),
        (
            "notMethods refuses listed",
            n("DELETE"),
            plaintext_conn().method("DELETE"),
            Deny,
        ),
        (
            "notMethods allows other",
            n("DELETE"),
            plaintext_conn(),
            Allow,
        ),
    ]);
}

#[test]
fn paths_and_not_paths() {
    let p = |v: &str| allow(&format!("to: [{{operation: {{paths: [\"{v}\"]}}}}]"));
    let n = |v: &str| allow(&format!("to: [{{operation: {{notPaths: [\"{v}\"]}}}}]"));
    let r = |path: &str| plaintext_conn().get(path);
    run(&[
        ("exact path", p("/api/items"), r("/api/items"), Allow),
        (
            "exact path ignores the query",
            p("/api/items"),
            r("/api/items?page=2"),
            Allow,
        ),
        (
            "exact path refuses a longer path",
            p("/api/items"),
            r("/api/items/1"),
            Deny,
        ),
        ("prefix path", p("/api/*"), r("/api/items/1"), Allow),
        (
            "prefix path refuses outside",
            p("/api/*"),
            r("/admin"),
            Deny,
        ),
        ("suffix path", p("*.css"), r("/static/site.css"), Allow),
        ("star path matches any", p("*"), r("/x"), Allow),
        (
            "template one segment",
            p("/items/{*}"),
            r("/items/42"),
            Allow,
        ),
        (
            "template one segment refuses two",
            p("/items/{*}"),
            r("/items/42/x"),
            Deny,
        ),
        (
            "template rest",
            p("/static/{**}"),
            r("/static/a/b/c.js"),
            Allow,
        ),
        (
            "template rest needs the slash",
            p("/static/{**}"),
            r("/static"),
            Deny,
        ),
        (
            "template in the middle",
            p("/store/{**}/cart"),
            r("/store/a/b/cart"),
            Allow,
        ),
        (
            "dot segments are normalised before matching",
            p("/public"),
            r("/public/../public"),
            Allow,
        ),
        (
            "escaped dots cannot reach a private path",
            p("/public/*"),
            r("/public/%2E%2E/private"),
            Deny,
        ),
        (
            "notPaths refuses listed",
            n("/admin/*"),
            r("/admin/users"),
            Deny,
        ),
        (
            "notPaths refuses after normalisation",
            n("/admin/*"),
            r("/public/../admin/users"),
            Deny,
        ),
        ("notPaths allows other", n("/admin/*"), r("/api"), Allow),
    ]);
}

// ---- when conditions -------------------------------------------------------------------------

#[test]
fn when_conditions_every_key() {
    let w = |k: &str, vals: &str| allow(&format!("when: [{{key: \"{k}\", {vals}}}]"));
    let r = plaintext_conn;
    run(&[
        (
            "header value matches",
            w("request.headers[x-user]", "values: [alice]"),
            r().header("x-user", "alice"),
            Allow,
        ),
        (
            "header name is case-insensitive",
            w("request.headers[X-User]", "values: [alice]"),
            r().header("x-user", "alice"),
            Allow,
        ),
        (
            "header refuses other value",
            w("request.headers[x-user]", "values: [alice]"),
            r().header("x-user", "bob"),
            Deny,
        ),
        (
            "missing header refuses",
            w("request.headers[x-user]", "values: [\"*\"]"),
            r(),
            Deny,
        ),
        (
            "header star accepts empty value",
            w("request.headers[x-user]", "values: [\"*\"]"),
            r().header("x-user", ""),
            Allow,
        ),
        (
            "repeated header matched value by value",
            w("request.headers[x-role]", "values: [admin]"),
            r().header("x-role", "user").header("x-role", "admin"),
            Allow,
        ),
        (
            "repeated header is not joined",
            w("request.headers[x-role]", "values: [\"user,admin\"]"),
            r().header("x-role", "user").header("x-role", "admin"),
            Deny,
        ),
        (
            "header notValues refuses listed",
            w("request.headers[x-user]", "notValues: [mallory]"),
            r().header("x-user", "mallory"),
            Deny,
        ),
        (
            "header notValues allows missing header",
            w("request.headers[x-user]", "notValues: [mallory]"),
            r(),
            Allow,
        ),
        (
            "header prefix and suffix",
            w("request.headers[x-id]", "values: [\"abc*\", \"*xyz\"]"),
            r().header("x-id", "00xyz"),
            Allow,
        ),
        (
            "source.ip",
            w("source.ip", "values: [10.0.0.0/24]"),
            r(),
            Allow,
        ),
        (
            "source.ip notValues",
            w("source.ip", "notValues: [10.0.0.9]"),
            r(),
            Deny,
        ),
        (
            "remote.ip",
            w("remote.ip", "values: [203.0.113.0/24]"),
            r().remote_ip("203.0.113.7"),
            Allow,
        ),
        (
            "source.namespace",
            w("source.namespace", "values: [shop]"),
            mtls_conn("shop/a"),
            Allow,
        ),
        (
            "source.namespace notValues",
            w("source.namespace", "notValues: [shop]"),
            mtls_conn("shop/a"),
            Deny,
        ),
        (
            "source.principal",
            w("source.principal", "values: [cluster.local/ns/shop/sa/a]"),
            mtls_conn("shop/a"),
            Allow,
        ),
        (
            "source.principal plaintext",
            w("source.principal", "values: [\"*\"]"),
            r(),
            Deny,
        ),
        (
            "source.serviceAccount",
            w("source.serviceAccount", "values: [shop/a]"),
            mtls_conn("shop/a"),
            Allow,
        ),
        (
            "source.serviceAccount other",
            w("source.serviceAccount", "values: [shop/a]"),
            mtls_conn("shop/b"),
            Deny,
        ),
        (
            "destination.ip",
            w("destination.ip", "values: [10.0.1.0/24]"),
            r(),
            Allow,
        ),
        (
            "destination.ip other",
            w("destination.ip", "values: [10.0.1.0/24]"),
            r().dst_ip("10.9.9.9"),
            Deny,
        ),
        (
            "destination.port",
            w("destination.port", "values: [\"8080\"]"),
            r(),
            Allow,
        ),
        (
            "destination.port notValues",
            w("destination.port", "notValues: [\"8080\"]"),
            r(),
            Deny,
        ),
        (
            "connection.sni exact",
            w("connection.sni", "values: [cart.shop]"),
            r().sni("cart.shop"),
            Allow,
        ),
        (
            "connection.sni suffix",
            w("connection.sni", "values: [\"*.shop\"]"),
            r().sni("cart.shop"),
            Allow,
        ),
        (
            "connection.sni star needs an SNI",
            w("connection.sni", "values: [\"*\"]"),
            r(),
            Deny,
        ),
        (
            "experimental metadata is never present",
            w("experimental.envoy.filters.a.b[c]", "values: [x]"),
            r(),
            Deny,
        ),
        (
            "experimental metadata notValues match",
            w("experimental.envoy.filters.a.b[c]", "notValues: [x]"),
            r(),
            Allow,
        ),
        (
            "values and notValues both apply",
            w(
                "request.headers[x-env]",
                "values: [\"prod*\"], notValues: [prod-eu]",
            ),
            r().header("x-env", "prod-eu"),
            Deny,
        ),
    ]);
}

// ---- combining -------------------------------------------------------------------------------

#[test]
fn evaluation_order_deny_then_no_allow_then_allow() {
    let deny_admin = policy(
        "deny-admin",
        "DENY",
        "to: [{operation: {paths: [\"/admin*\"]}}]",
    );
    let allow_frontend = policy(
        "allow-frontend",
        "ALLOW",
        "from: [{source: {principals: [cluster.local/ns/shop/sa/frontend]}}]",
    );
    let audit_all = policy("audit-all", "AUDIT", "{}");
    let both = format!("{deny_admin}{allow_frontend}{audit_all}");
    let rows: &[(&str, String, Request, Verdict, Step, Option<&str>)] = &[
        (
            "no policy at all allows",
            String::new(),
            plaintext_conn(),
            Allow,
            Step::NoAllowPolicies,
            None,
        ),
        (
            "deny only: non-matching request is allowed (no ALLOW policies)",
            deny_admin.clone(),
            plaintext_conn(),
            Allow,
            Step::NoAllowPolicies,
            None,
        ),
        (
            "deny only: matching request is denied",
            deny_admin.clone(),
            plaintext_conn().get("/admin"),
            Deny,
            Step::DenyMatched,
            Some("ns[shop]-policy[deny-admin]-rule[0]"),
        ),
        (
            "deny overrides allow",
            both.clone(),
            mtls_conn("shop/frontend").get("/admin"),
            Deny,
            Step::DenyMatched,
            Some("ns[shop]-policy[deny-admin]-rule[0]"),
        ),
        (
            "allow matches",
            both.clone(),
            mtls_conn("shop/frontend"),
            Allow,
            Step::AllowMatched,
            Some("ns[shop]-policy[allow-frontend]-rule[0]"),
        ),
        (
            "allow policies exist and none match",
            both.clone(),
            mtls_conn("shop/other"),
            Deny,
            Step::NoAllowMatched,
            None,
        ),
        (
            "audit alone never decides",
            audit_all.clone(),
            plaintext_conn(),
            Allow,
            Step::NoAllowPolicies,
            None,
        ),
    ];
    for (name, yaml, req, verdict, step, rule) in rows {
        let d = decide(yaml, req);
        assert_eq!(
            (d.verdict, d.step),
            (*verdict, *step),
            "{name}: {}",
            d.explain()
        );
        assert_eq!(d.rule.as_ref().map(|r| r.id.as_str()), *rule, "{name}");
    }
    let d = decide(&both, &mtls_conn("shop/frontend"));
    assert_eq!(
        d.audit.unwrap().id,
        "ns[shop]-policy[audit-all]-rule[0]",
        "audit is reported"
    );
}

#[test]
fn the_first_matching_rule_in_envoy_order_is_reported() {
    // Envoy RBAC checks policies by name: rule[10] sorts before rule[2].
    let mut rules = String::new();
    for i in 0..12 {
        rules.push_str(&format!(
            "  - to: [{{operation: {{paths: [\"/x{i}\", \"/all\"]}}}}]\n"
        ));
    }
    let yaml = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: b, namespace: shop}}\nspec:\n  rules:\n{rules}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: a, namespace: shop}}\nspec:\n  rules:\n  - to: [{{operation: {{paths: [\"/all\"]}}}}]\n"
    );
    let d = decide(&yaml, &plaintext_conn().get("/all"));
    assert_eq!(d.rule.unwrap().id, "ns[shop]-policy[a]-rule[0]");
    let d = decide(&yaml, &plaintext_conn().get("/x2"));
    assert_eq!(d.rule.unwrap().id, "ns[shop]-policy[b]-rule[2]");
    let only_b = yaml.split("---").next().unwrap().to_string();
    let d = decide(&only_b, &plaintext_conn().get("/all"));
    assert_eq!(d.rule.unwrap().id, "ns[shop]-policy[b]-rule[0]");
    let d = decide(&only_b, &plaintext_conn().get("/x10"));
    assert_eq!(d.rule.unwrap().id, "ns[shop]-policy[b]-rule[10]");
}

#[test]
fn rules_absent_matches_nothing_and_empty_rule_matches_everything() {
    let nil = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: none, namespace: shop}\nspec: {}\n";
    let empty = policy("all", "ALLOW", "{}");
    let deny_all = policy("deny-all", "DENY", "{}");
    run(&[
        (
            "ALLOW without rules denies everything",
            nil.to_string(),
            mtls_conn("shop/frontend"),
            Deny,
        ),
        (
            "ALLOW with an empty rule allows everything",
            empty,
            plaintext_conn(),
            Allow,
        ),
        (
            "DENY with an empty rule denies everything",
            deny_all,
            mtls_conn("shop/frontend"),
            Deny,
        ),
    ]);
}

#[test]
fn scope_selector_namespace_and_root_namespace() {
    let deny = |ns: &str, selector: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: d, namespace: {ns}}}\nspec:\n  {selector}\n  action: DENY\n  rules: [{{}}]\n"
        )
    };
    run(&[
        (
            "selector matching the workload applies",
            deny("shop", "selector: {matchLabels: {app: cart}}"),
            plaintext_conn(),
            Deny,
        ),
        (
            "selector not matching does not apply",
            deny("shop", "selector: {matchLabels: {app: web}}"),
            plaintext_conn(),
            Allow,
        ),
        (
            "namespace-wide applies",
            deny("shop", ""),
            plaintext_conn(),
            Deny,
        ),
        (
            "another namespace does not apply",
            deny("web", ""),
            plaintext_conn(),
            Allow,
        ),
        (
            "root namespace applies mesh-wide",
            deny("istio-system", ""),
            plaintext_conn(),
            Deny,
        ),
        (
            "root namespace with selector applies across namespaces",
            deny("istio-system", "selector: {matchLabels: {app: cart}}"),
            plaintext_conn(),
            Deny,
        ),
        (
            "targetRefs policies apply to gateways, not workloads",
            deny(
                "shop",
                "targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]",
            ),
            plaintext_conn(),
            Allow,
        ),
    ]);
    let custom_root = Options {
        root_namespace: "mesh-root".into(),
        ..Options::default()
    };
    let d = decide_with(&deny("mesh-root", ""), &custom_root, &plaintext_conn());
    assert_eq!(d.verdict, Deny, "configured root namespace is mesh-wide");
}

// ---- TCP downgrade and dry-run -----------------------------------------------------------

#[test]
fn tcp_downgrade_drops_allow_rules_and_strips_deny_rules() {
    let allow_http = policy(
        "a",
        "ALLOW",
        "from: [{source: {namespaces: [shop]}}]\n    to: [{operation: {methods: [GET]}}]",
    );
    let allow_tcp = policy(
        "t",
        "ALLOW",
        "from: [{source: {namespaces: [shop]}}]\n    to: [{operation: {ports: [\"5432\"]}}]",
    );
    let deny_http_only = policy("d", "DENY", "to: [{operation: {methods: [GET]}}]");
    let deny_mixed = policy(
        "m",
        "DENY",
        "from: [{source: {namespaces: [web]}}]\n    to: [{operation: {methods: [POST], ports: [\"5432\"]}}]",
    );
    let tcp = || mtls_conn("shop/a").tcp().port(5432);
    run(&[
        (
            "ALLOW rule with an HTTP field matches on HTTP",
            allow_http.clone(),
            mtls_conn("shop/a"),
            Allow,
        ),
        (
            "ALLOW rule with an HTTP field is dropped on TCP",
            allow_http,
            tcp(),
            Deny,
        ),
        (
            "ALLOW rule with TCP fields applies on TCP",
            allow_tcp,
            tcp(),
            Allow,
        ),
        (
            "DENY rule with only HTTP fields denies all TCP",
            deny_http_only.clone(),
            tcp(),
            Deny,
        ),
        (
            "the same DENY rule on HTTP only denies GET",
            deny_http_only,
            mtls_conn("shop/a").method("POST"),
            Allow,
        ),
        (
            "DENY rule keeps its TCP fields: other namespace passes",
            deny_mixed.clone(),
            tcp(),
            Allow,
        ),
        (
            "DENY rule keeps its TCP fields: listed namespace denied on any method",
            deny_mixed,
            mtls_conn("web/a").tcp().port(5432),
            Deny,
        ),
    ]);
}

#[test]
fn dry_run_is_reported_and_never_decides() {
    let dry = |name: &str, action: &str, rule: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: shop\n  annotations: {{\"istio.io/dry-run\": \"true\"}}\nspec:\n  action: {action}\n  rules:\n  - {rule}\n---\n"
        )
    };
    let dry_deny = dry("dd", "DENY", "to: [{operation: {paths: [\"/admin\"]}}]");
    let d = decide(&dry_deny, &plaintext_conn().get("/admin"));
    assert_eq!(d.verdict, Allow, "a dry-run DENY does not deny");
    assert_eq!(d.shadow.len(), 1);
    assert_eq!(d.shadow[0].verdict, Deny);
    assert_eq!(
        d.shadow[0].matched.as_ref().unwrap().id,
        "ns[shop]-policy[dd]-rule[0]"
    );

    let dry_allow = dry("da", "ALLOW", "to: [{operation: {paths: [\"/ok\"]}}]");
    let d = decide(&dry_allow, &plaintext_conn().get("/other"));
    assert_eq!(
        d.verdict, Allow,
        "a dry-run ALLOW does not make ALLOW policies exist"
    );
    assert_eq!(
        (d.shadow[0].action.as_str(), d.shadow[0].verdict),
        ("ALLOW", Deny)
    );

    let real = policy("real", "ALLOW", "to: [{operation: {paths: [\"/other\"]}}]");
    let d = decide(
        &format!("{dry_allow}{real}"),
        &plaintext_conn().get("/other"),
    );
    assert_eq!((d.verdict, d.step), (Allow, Step::AllowMatched));
    assert_eq!(d.shadow[0].verdict, Deny);
}

#[test]
fn trust_domain_aliases_expand_principals() {
    let yaml = allow("from: [{source: {principals: [old-td/ns/shop/sa/frontend]}}]");
    let options = Options {
        trust_domain: "new-td".into(),
        trust_domain_aliases: vec!["old-td".into()],
        ..Options::default()
    };
    let new_peer = plaintext_conn().principal("spiffe://new-td/ns/shop/sa/frontend");
    let old_peer = plaintext_conn().principal("spiffe://old-td/ns/shop/sa/frontend");
    let other = plaintext_conn().principal("spiffe://evil-td/ns/shop/sa/frontend");
    assert_eq!(decide_with(&yaml, &options, &new_peer).verdict, Allow);
    assert_eq!(decide_with(&yaml, &options, &old_peer).verdict, Allow);
    assert_eq!(decide_with(&yaml, &options, &other).verdict, Deny);
    assert_eq!(
        decide(&yaml, &new_peer).verdict,
        Deny,
        "without aliases only old-td matches"
    );
}

#[test]
fn unknown_destination_fails_closed() {
    let yaml = policy("p", "ALLOW", "{}");
    let mut req = plaintext_conn();
    req.destination.workload = None;
    let d = decide(&yaml, &req);
    assert_eq!((d.verdict, d.step), (Deny, Step::Error));
    assert!(!d.errors.is_empty());
}

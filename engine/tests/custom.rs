//! Unit tables for `action: CUSTOM`: Istio's order (CUSTOM, then DENY, then ALLOW), the
//! provider's answer carried by the request, `custom-pending` without one, undeclared
//! providers (Istio's deny rules), several providers (sorted, asked in turn), dry-run CUSTOM
//! (Istio master: enforced DENY rules of the provider's RBAC filter), TCP (gRPC providers only)
//! and validation. One named case a row; the workload is `shop/cart` (labels `app: cart`).
//!
//! Rule names and the undeclared-provider suffix are Istio's: golden files
//! `http/custom-grpc-provider-out1.yaml` and `http/custom-bad-multiple-providers-out1.yaml`
//! of `pilot/pkg/security/authz/builder/testdata` (Istio master, 2026-08).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use palisade_engine::extauthz::{ExtensionProvider, GrpcProvider, HttpProvider};
use palisade_engine::{
    Decision, ExtAuthzAnswer, Options, Request, SourceFile, Step, Verdict, compile, load,
};

// ---- fixtures ----------------------------------------------------------------------------

fn http_provider(name: &str) -> ExtensionProvider {
    ExtensionProvider {
        name: name.into(),
        envoy_ext_authz_http: Some(HttpProvider {
            service: "foo/ext-authz.foo.svc.cluster.local".into(),
            port: 8000,
            ..HttpProvider::default()
        }),
        envoy_ext_authz_grpc: None,
    }
}

fn grpc_provider(name: &str) -> ExtensionProvider {
    ExtensionProvider {
        name: name.into(),
        envoy_ext_authz_http: None,
        envoy_ext_authz_grpc: Some(GrpcProvider {
            service: "foo/ext-authz.foo.svc.cluster.local".into(),
            port: 9000,
            ..GrpcProvider::default()
        }),
    }
}

fn options(providers: Vec<ExtensionProvider>) -> Options {
    Options {
        extension_providers: providers,
        ..Options::default()
    }
}

/// A policy on `shop/cart`: action, optional provider, one rule (YAML flow text).
fn policy(name: &str, action: &str, provider: Option<&str>, rule: &str) -> String {
    let provider = provider.map_or(String::new(), |p| format!("  provider: {{name: {p}}}\n"));
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: cart}}}}\n  action: {action}\n{provider}  rules:\n  - {rule}\n---\n"
    )
}

fn dry_run(yaml: String) -> String {
    yaml.replacen(
        "namespace: shop}",
        "namespace: shop, annotations: {istio.io/dry-run: \"true\"}}",
        1,
    )
}

/// A request to `shop/cart`: `protocol` `http` or `tcp`, method, path, the providers' answers.
fn request(method: &str, path: &str, answers: &[(&str, &str)]) -> Request {
    let answers: serde_json::Map<String, serde_json::Value> = answers
        .iter()
        .map(|(p, a)| (p.to_string(), serde_json::Value::from(*a)))
        .collect();
    serde_json::from_value(serde_json::json!({
        "source": {"ip": "10.0.0.9", "port": 40000},
        "destination": {"ip": "10.0.1.1", "port": 8080,
            "workload": {"namespace": "shop", "labels": {"app": "cart"}}},
        "http": {"method": method, "host": "cart", "path": path},
        "extAuthz": answers,
    }))
    .unwrap()
}

fn tcp(port: u16, answers: &[(&str, &str)]) -> Request {
    let mut r = request("GET", "/", answers);
    r.protocol = palisade_engine::Protocol::Tcp;
    r.http = None;
    r.destination.port = Some(port);
    r
}

fn decide(yaml: &str, options: &Options, req: &Request) -> Decision {
    let set = load(&[SourceFile::new("test.yaml", yaml)])
        .unwrap_or_else(|e| panic!("policy does not load: {e}\n{yaml}"));
    compile(&set, options).unwrap().decide(req)
}

/// One row: name, policies, options, request, then the verdict, step and deciding rule wanted,
/// and the providers asked with their answers.
struct Row {
    name: &'static str,
    yaml: String,
    options: Options,
    request: Request,
    verdict: Verdict,
    step: Step,
    rule: Option<&'static str>,
    asked: Vec<(&'static str, Option<ExtAuthzAnswer>)>,
}

fn run(rows: Vec<Row>) {
    let mut failures = Vec::new();
    for r in &rows {
        let d = decide(&r.yaml, &r.options, &r.request);
        let asked: Vec<(String, Option<ExtAuthzAnswer>)> = d
            .custom
            .iter()
            .map(|c| (c.provider.clone(), c.answer))
            .collect();
        let want_asked: Vec<(String, Option<ExtAuthzAnswer>)> =
            r.asked.iter().map(|(p, a)| (p.to_string(), *a)).collect();
        let got = (
            d.verdict,
            d.step,
            d.rule.as_ref().map(|x| x.id.clone()),
            asked,
        );
        let want = (r.verdict, r.step, r.rule.map(String::from), want_asked);
        if got != want {
            failures.push(format!("{}:\n  got  {got:?}\n  want {want:?}", r.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

use ExtAuthzAnswer::{Allow as Said, Deny as Refused};
use Verdict::{Allow, CustomPending, Deny};

const CUSTOM_RULE: &str = "istio-ext-authz-authz-ns[shop]-policy[ext]-rule[0]";

/// CUSTOM on `/custom*` (provider `authz`), DENY on `/custom/admin`, ALLOW for GET.
fn shop() -> String {
    policy(
        "ext",
        "CUSTOM",
        Some("authz"),
        "to: [{operation: {paths: [\"/custom*\"]}}]",
    ) + &policy(
        "deny-admin",
        "DENY",
        None,
        "to: [{operation: {paths: [\"/custom/admin\"]}}]",
    ) + &policy(
        "allow-get",
        "ALLOW",
        None,
        "to: [{operation: {methods: [\"GET\"]}}]",
    )
}

#[test]
fn custom_is_asked_first_and_cannot_bypass_deny_or_allow() {
    let o = || options(vec![http_provider("authz")]);
    let row = |name, request, verdict, step, rule, asked| Row {
        name,
        yaml: shop(),
        options: o(),
        request,
        verdict,
        step,
        rule,
        asked,
    };
    run(vec![
        row(
            "a request no CUSTOM rule matches goes on to ALLOW, no provider asked",
            request("GET", "/public", &[]),
            Allow,
            Step::AllowMatched,
            Some("ns[shop]-policy[allow-get]-rule[0]"),
            vec![],
        ),
        row(
            "a CUSTOM match without the provider's answer is pending",
            request("GET", "/custom", &[]),
            CustomPending,
            Step::CustomPending,
            Some(CUSTOM_RULE),
            vec![("authz", None)],
        ),
        row(
            "the provider's allow goes on to ALLOW",
            request("GET", "/custom", &[("authz", "allow")]),
            Allow,
            Step::AllowMatched,
            Some("ns[shop]-policy[allow-get]-rule[0]"),
            vec![("authz", Some(Said))],
        ),
        row(
            "the provider's deny denies",
            request("GET", "/custom", &[("authz", "deny")]),
            Deny,
            Step::CustomDenied,
            Some(CUSTOM_RULE),
            vec![("authz", Some(Refused))],
        ),
        row(
            "the provider's allow does not bypass ALLOW policies: POST matches no ALLOW rule",
            request("POST", "/custom", &[("authz", "allow")]),
            Deny,
            Step::NoAllowMatched,
            None,
            vec![("authz", Some(Said))],
        ),
        row(
            "the provider's allow does not bypass a DENY rule",
            request("GET", "/custom/admin", &[("authz", "allow")]),
            Deny,
            Step::DenyMatched,
            Some("ns[shop]-policy[deny-admin]-rule[0]"),
            vec![("authz", Some(Said))],
        ),
        row(
            "CUSTOM comes before DENY: a DENY-matched request is still pending without an answer",
            request("GET", "/custom/admin", &[]),
            CustomPending,
            Step::CustomPending,
            Some(CUSTOM_RULE),
            vec![("authz", None)],
        ),
        row(
            "an answer from a provider no rule asks changes nothing",
            request("GET", "/public", &[("authz", "deny")]),
            Allow,
            Step::AllowMatched,
            Some("ns[shop]-policy[allow-get]-rule[0]"),
            vec![],
        ),
        row(
            "adversarial: another provider's allow does not answer for `authz`",
            request("GET", "/custom", &[("other", "allow")]),
            CustomPending,
            Step::CustomPending,
            Some(CUSTOM_RULE),
            vec![("authz", None)],
        ),
        row(
            "adversarial: a dot segment is normalised before CUSTOM matches (no bypass)",
            request("GET", "/./custom", &[]),
            CustomPending,
            Step::CustomPending,
            Some(CUSTOM_RULE),
            vec![("authz", None)],
        ),
        row(
            "adversarial: a query does not hide the path from CUSTOM",
            request("GET", "/custom?x=/public", &[("authz", "deny")]),
            Deny,
            Step::CustomDenied,
            Some(CUSTOM_RULE),
            vec![("authz", Some(Refused))],
        ),
    ]);
}

#[test]
fn an_undeclared_provider_denies_what_its_rules_match_as_istio_generates_it() {
    let yaml = policy(
        "ghost",
        "CUSTOM",
        Some("missing"),
        "to: [{operation: {paths: [\"/ghost\"]}}]",
    );
    let o = || options(vec![http_provider("authz")]);
    let bad =
        "istio-ext-authz-missing-ns[shop]-policy[ghost]-rule[0]-deny-due-to-bad-CUSTOM-action";
    let row = |name, request, verdict, step, rule| Row {
        name,
        yaml: yaml.clone(),
        options: o(),
        request,
        verdict,
        step,
        rule,
        asked: vec![],
    };
    run(vec![
        row(
            "a request the rule matches is denied by Istio's bad-CUSTOM-action rule",
            request("GET", "/ghost", &[]),
            Deny,
            Step::CustomProviderMissing,
            Some(bad),
        ),
        row(
            "adversarial: an answer for the undeclared provider does not lift the denial",
            request("GET", "/ghost", &[("missing", "allow")]),
            Deny,
            Step::CustomProviderMissing,
            Some(bad),
        ),
        row(
            "a request the rule does not match is allowed (no ALLOW policy)",
            request("GET", "/other", &[]),
            Allow,
            Step::NoAllowPolicies,
            None,
        ),
    ]);
    // With no provider declared at all, the same rule denies.
    let d = decide(&yaml, &Options::default(), &request("GET", "/ghost", &[]));
    assert_eq!(
        (d.verdict, d.step, d.rule.unwrap().id.as_str()),
        (Deny, Step::CustomProviderMissing, bad)
    );
}

#[test]
fn several_providers_are_asked_in_name_order_each_for_its_own_rules() {
    let yaml = policy(
        "pa",
        "CUSTOM",
        Some("a"),
        "to: [{operation: {paths: [\"/both\", \"/a\"]}}]",
    ) + &policy(
        "pb",
        "CUSTOM",
        Some("b"),
        "to: [{operation: {paths: [\"/both\"]}}]",
    );
    let o = || options(vec![grpc_provider("b"), http_provider("a")]);
    let ra = "istio-ext-authz-a-ns[shop]-policy[pa]-rule[0]";
    let rb = "istio-ext-authz-b-ns[shop]-policy[pb]-rule[0]";
    let row = |name, request, verdict, step, rule, asked| Row {
        name,
        yaml: yaml.clone(),
        options: o(),
        request,
        verdict,
        step,
        rule,
        asked,
    };
    run(vec![
        row(
            "the first provider by name is asked first",
            request("GET", "/both", &[]),
            CustomPending,
            Step::CustomPending,
            Some(ra),
            vec![("a", None)],
        ),
        row(
            "after the first allows, the second is asked",
            request("GET", "/both", &[("a", "allow")]),
            CustomPending,
            Step::CustomPending,
            Some(rb),
            vec![("a", Some(Said)), ("b", None)],
        ),
        row(
            "the second's deny denies",
            request("GET", "/both", &[("a", "allow"), ("b", "deny")]),
            Deny,
            Step::CustomDenied,
            Some(rb),
            vec![("a", Some(Said)), ("b", Some(Refused))],
        ),
        row(
            "the first's deny denies and the second is never asked",
            request("GET", "/both", &[("a", "deny"), ("b", "allow")]),
            Deny,
            Step::CustomDenied,
            Some(ra),
            vec![("a", Some(Refused))],
        ),
        row(
            "both allow: on to DENY and ALLOW (none here)",
            request("GET", "/both", &[("a", "allow"), ("b", "allow")]),
            Allow,
            Step::NoAllowPolicies,
            None,
            vec![("a", Some(Said)), ("b", Some(Said))],
        ),
        row(
            "a path only the first provider's rule matches asks only it",
            request("GET", "/a", &[("a", "allow")]),
            Allow,
            Step::NoAllowPolicies,
            None,
            vec![("a", Some(Said))],
        ),
    ]);
}

#[test]
fn dry_run_custom_rules_deny_as_istio_master_generates_them() {
    let yaml = dry_run(policy(
        "dry",
        "CUSTOM",
        Some("authz"),
        "to: [{operation: {paths: [\"/dry\"]}}]",
    ));
    let row = |name, options, request, verdict, step, rule| Row {
        name,
        yaml: yaml.clone(),
        options,
        request,
        verdict,
        step,
        rule,
        asked: vec![],
    };
    run(vec![
        row(
            "a dry-run CUSTOM rule of a declared provider is an enforced DENY rule of its RBAC filter",
            options(vec![http_provider("authz")]),
            request("GET", "/dry", &[("authz", "allow")]),
            Deny,
            Step::DenyMatched,
            Some("istio-ext-authz-authz-ns[shop]-policy[dry]-rule[0]"),
        ),
        row(
            "a dry-run CUSTOM rule of an undeclared provider generates nothing",
            Options::default(),
            request("GET", "/dry", &[]),
            Allow,
            Step::NoAllowPolicies,
            None,
        ),
    ]);
}

#[test]
fn on_tcp_only_grpc_providers_apply_and_http_fields_are_dropped_as_for_deny() {
    // Rule 0 needs an HTTP field only (kept on TCP without it: matches every connection);
    // rule 1 needs port 9090.
    let rules =
        "to: [{operation: {methods: [\"GET\"]}}]\n  - to: [{operation: {ports: [\"9090\"]}}]";
    let yaml = policy("ext", "CUSTOM", Some("authz"), rules);
    let row = |name, options, request, verdict, step, rule, asked| Row {
        name,
        yaml: yaml.clone(),
        options,
        request,
        verdict,
        step,
        rule,
        asked,
    };
    run(vec![
        row(
            "a gRPC provider's CUSTOM rule matches a TCP connection once its HTTP field is dropped",
            options(vec![grpc_provider("authz")]),
            tcp(8080, &[]),
            CustomPending,
            Step::CustomPending,
            Some(CUSTOM_RULE),
            vec![("authz", None)],
        ),
        row(
            "the gRPC provider's deny closes the connection",
            options(vec![grpc_provider("authz")]),
            tcp(8080, &[("authz", "deny")]),
            Deny,
            Step::CustomDenied,
            Some(CUSTOM_RULE),
            vec![("authz", Some(Refused))],
        ),
        row(
            "an HTTP provider's CUSTOM rules are ignored on TCP, as Istio generates no filter",
            options(vec![http_provider("authz")]),
            tcp(8080, &[]),
            Allow,
            Step::NoAllowPolicies,
            None,
            vec![],
        ),
        row(
            "an undeclared provider's rules still deny on TCP",
            Options::default(),
            tcp(8080, &[]),
            Deny,
            Step::CustomProviderMissing,
            Some(
                "istio-ext-authz-authz-ns[shop]-policy[ext]-rule[0]-deny-due-to-bad-CUSTOM-action",
            ),
            vec![],
        ),
    ]);
}

#[test]
fn custom_policies_are_validated_as_istio_validates_them() {
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "CUSTOM without a provider is refused",
            policy("p", "CUSTOM", None, "{}"),
            "action `CUSTOM` needs a `provider`",
        ),
        (
            "a provider with ALLOW is refused",
            policy("p", "ALLOW", Some("authz"), "{}"),
            "`provider` is only allowed with action `CUSTOM`",
        ),
        (
            "an empty provider name is refused",
            policy("p", "CUSTOM", Some("\"\""), "{}"),
            "`provider.name` must not be empty",
        ),
        (
            "principals are refused in CUSTOM rules",
            policy(
                "p",
                "CUSTOM",
                Some("authz"),
                "from: [{source: {principals: [\"cluster.local/ns/a/sa/b\"]}}]",
            ),
            "From.Principals is currently not supported with CUSTOM action",
        ),
        (
            "notNamespaces are refused in CUSTOM rules",
            policy(
                "p",
                "CUSTOM",
                Some("authz"),
                "from: [{source: {notNamespaces: [\"a\"]}}]",
            ),
            "From.NotNamespaces is currently not supported with CUSTOM action",
        ),
        (
            "requestPrincipals are refused in CUSTOM rules",
            policy(
                "p",
                "CUSTOM",
                Some("authz"),
                "from: [{source: {requestPrincipals: [\"*\"]}}]",
            ),
            "From.RequestPrincipals is currently not supported with CUSTOM action",
        ),
        (
            "request.auth.claims conditions are refused in CUSTOM rules",
            policy(
                "p",
                "CUSTOM",
                Some("authz"),
                "when: [{key: \"request.auth.claims[groups]\", values: [\"a\"]}]",
            ),
            "When.Key `request.auth.claims[groups]` is currently not supported with CUSTOM action",
        ),
        (
            "source.principal conditions are refused in CUSTOM rules",
            policy(
                "p",
                "CUSTOM",
                Some("authz"),
                "when: [{key: source.principal, values: [\"a\"]}]",
            ),
            "When.Key `source.principal` is currently not supported with CUSTOM action",
        ),
    ];
    for (name, yaml, want) in cases {
        let e = load(&[SourceFile::new("test.yaml", yaml)]).expect_err(name);
        let text = e.to_string();
        assert!(text.contains(want), "{name}: `{text}` lacks `{want}`");
    }
    // Fields CUSTOM accepts: ipBlocks, serviceAccounts are not authentication-only fields.
    let ok = policy(
        "p",
        "CUSTOM",
        Some("authz"),
        "from: [{source: {ipBlocks: [\"10.0.0.0/8\"]}}]",
    );
    load(&[SourceFile::new("test.yaml", ok)]).unwrap();
}

#[test]
fn compile_refuses_invalid_providers_instead_of_denying() {
    let mut p = http_provider("authz");
    p.envoy_ext_authz_http.as_mut().unwrap().port = 0;
    let set = load(&[SourceFile::new("t.yaml", shop())]).unwrap();
    let e = compile(&set, &options(vec![p])).unwrap_err();
    assert_eq!(
        e.diagnostics[0].message,
        "invalid extension providers: extension provider `authz`: port must be in the range [1, 65535], found: 0"
    );
}

#[test]
fn decisions_explain_custom_and_name_envoys_details() {
    let o = options(vec![http_provider("authz")]);
    let pending = decide(&shop(), &o, &request("GET", "/custom", &[]));
    assert_eq!(
        pending.explain(),
        format!("pending: CUSTOM rule {CUSTOM_RULE} matched; ask provider `authz`")
    );
    let denied = decide(
        &shop(),
        &o,
        &request("GET", "/custom", &[("authz", "deny")]),
    );
    assert_eq!(denied.envoy_details(), "ext_authz_denied");
    assert_eq!(
        denied.explain(),
        format!("denied: CUSTOM rule {CUSTOM_RULE} matched and provider `authz` denied")
    );
    let allowed = decide(
        &shop(),
        &o,
        &request("GET", "/custom", &[("authz", "allow")]),
    );
    assert_eq!(
        allowed.explain(),
        format!(
            "allowed: ALLOW rule ns[shop]-policy[allow-get]-rule[0] matched; provider `authz` allowed ({CUSTOM_RULE})"
        )
    );
    let json = serde_json::to_value(&pending).unwrap();
    assert_eq!(json["verdict"], "custom-pending");
    assert_eq!(json["step"], "custom-pending");
    assert_eq!(json["custom"][0]["provider"], "authz");
}
